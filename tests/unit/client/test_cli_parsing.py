"""Arguments, search clauses, error bodies and the status words, without a hub."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from client import cli, consumers, objects, rest, waiting, works
from client.errors import APIError, CLIError
from client.objects import BUNDLE, RESOURCE


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30.0), ("2m", 120.0), ("500ms", 0.5), ("1h", 3600.0), ("7", 7.0)]
)
def test_durations(text: str, seconds: float) -> None:
    assert cli.duration(text) == seconds


def test_bad_duration() -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        cli.duration("soon")


def test_search_clauses_are_quoted_and_combined() -> None:
    assert objects.quote("it's") == "'it''s'"
    assert objects.search(None, "") is None
    assert objects.search("a = 1") == "a = 1"
    assert objects.search("a = 1", None, "b = 2 or c = 3") == "(a = 1) and (b = 2 or c = 3)"


def test_labels_to_set_and_remove() -> None:
    assert consumers.parse_labels(["env=prod", "empty=", "old-"]) == ({"env": "prod", "empty": ""}, {"old"})
    for bad in ("=x", "noequals", "-"):
        with pytest.raises(CLIError):
            consumers.parse_labels([bad])


def test_the_hubs_reason_is_the_message() -> None:
    body = b'{"kind":"Error","id":"7","code":"maestro-7","reason":"Consumer with id=\'x\'\\nnot found"}'
    error = rest._error(404, "Not Found", body)
    assert isinstance(error, APIError)
    assert (error.message, error.status, error.code) == ("Consumer with id='x' not found", 404, "maestro-7")
    proxy = rest._error(502, "Bad Gateway", b"<html>\n<body>upstream down</body></html>")
    assert proxy.message == "HTTP 502 Bad Gateway: <html> <body>upstream down</body></html>"


def test_rest_urls() -> None:
    assert rest.Rest("http://h:1/")._target("consumers", {"search": "a = 'b'", "page": 1, "x": None}) == (
        "/api/maestro/v1/consumers?search=a+%3D+%27b%27&page=1"
    )
    assert (
        rest.Rest("https://h/prefix/api/maestro/v1")._target("/resources/x", None)
        == "/prefix/api/maestro/v1/resources/x"
    )
    with pytest.raises(CLIError, match="not an http"):
        rest.Rest("ftp://h")


def bundle(version: int, observed: int | None, **conditions: str) -> dict[str, Any]:
    obj: dict[str, Any] = {"id": "i", "name": "b", "consumer_name": "c1", "version": version}
    if observed is not None:
        obj["status"] = {
            "ObservedVersion": observed,
            "conditions": [
                {"type": k, "status": v, "reason": f"R{k}", "message": f"m {k}"} for k, v in conditions.items()
            ],
        }
    return obj


@pytest.mark.parametrize(
    ("obj", "word"),
    [
        (bundle(1, None), "Pending"),
        (bundle(2, 1, Applied="True", Available="True"), "Pending"),
        (bundle(2, 2, Applied="True", Available="True"), "Available"),
        (bundle(2, 2, Applied="True", Available="False"), "Applied"),
        (bundle(2, 2, Applied="False", Available="Unknown"), "Failed"),
        (bundle(2, 2), "Unknown"),
        ({**bundle(2, 2, Applied="True"), "deleted_at": "2026-01-01T00:00:00Z"}, "Deleting"),
    ],
)
def test_status_words(obj: dict[str, Any], word: str) -> None:
    assert works.state(BUNDLE, obj) == word


def test_a_single_resources_status_is_its_reconcile_status() -> None:
    obj = {
        "version": 3,
        "status": {"ReconcileStatus": {"ObservedVersion": 3, "Conditions": [{"type": "Applied", "status": "True"}]}},
    }
    assert objects.current_conditions(RESOURCE, obj) == [{"type": "Applied", "status": "True"}]
    assert works.state(RESOURCE, obj) == "Applied"


def test_why_a_wait_failed() -> None:
    assert "no status from the agent of consumer 'c1'" in waiting._why(BUNDLE, bundle(1, None), None)
    assert waiting._why(BUNDLE, bundle(2, 1), None) == "the agent still reports version 1"
    failing = bundle(1, 1, Applied="False")
    assert waiting._why(BUNDLE, failing, None) == "Applied=False (RApplied): m Applied"
    assert waiting._why(BUNDLE, bundle(1, 1, Applied="True"), None) == "the agent reports no Available condition"
