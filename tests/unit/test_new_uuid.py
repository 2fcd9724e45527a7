"""The ids the hub mints (resource ids, operation ids) are random version 4 UUIDs in the forms uuid.uuid4() has."""

from __future__ import annotations

import uuid

from server.services import validation


def test_new_uuids_are_canonical_random_version_4_uuids() -> None:
    made = [validation.new_uuid() for _ in range(2000)]
    assert len(set(made)) == len(made)
    for text in made:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert validation.is_uuid(text)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
    # Every variant digit (8, 9, a, b) and every other digit turn up: the random bits are all used.
    assert {text[19] for text in made} == set("89ab")
    assert {c for text in made for c in text.replace("-", "")} == set("0123456789abcdef")


def test_new_uuid_hex_is_the_32_digit_form() -> None:
    made = [validation.new_uuid_hex() for _ in range(2000)]
    assert len(set(made)) == len(made)
    for text in made:
        parsed = uuid.UUID(hex=text)
        assert parsed.hex == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
    assert {text[16] for text in made} == set("89ab")
