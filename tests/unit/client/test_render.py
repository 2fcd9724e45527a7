"""Tables, ages and the readings of objects the CLI prints."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from client import render

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)


def test_table_aligns_columns_two_spaces_apart() -> None:
    columns = [render.Column("NAME"), render.Column("AGE")]
    assert render.table(columns, [["a", "5s"], ["longer", "2d"]]) == "NAME    AGE\na       5s\nlonger  2d"


def test_flexible_columns_shrink_to_fit_and_names_do_not() -> None:
    columns = [render.Column("NAME"), render.Column("LABELS", flexible=True), render.Column("AGE")]
    rows = [["nginx-deployment-with-a-long-name", "env=prod,tier=gold,team=platform,owner=someone", "5s"]]
    text = render.table(columns, rows, max_width=60)
    assert all(len(line) <= 60 for line in text.splitlines())
    assert "nginx-deployment-with-a-long-name" in text
    assert "…" in text.splitlines()[1]


def test_without_a_width_nothing_is_cut() -> None:
    rows = [["x" * 200, "y" * 50]]
    text = render.table([render.Column("A"), render.Column("B", flexible=True)], rows)
    assert "y" * 50 in text


def test_a_flexible_column_never_goes_below_its_minimum() -> None:
    columns = [render.Column("NAME"), render.Column("OBJECT", flexible=True, minimum=12)]
    text = render.table(columns, [["n" * 70, "Deployment default/nginx"]], max_width=80)
    assert text.splitlines()[1].split("  ")[1].rstrip() == "Deployment …"


def test_cells_are_one_line() -> None:
    assert render.table([render.Column("M")], [["two\nlines"]]) == "M\ntwo lines"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5, "5s"), (59, "59s"), (60, "1m"), (3599, "59m"), (7199, "119m"), (7200, "2h"), (172800, "2d")],
)
def test_age(seconds: int, text: str) -> None:
    then = datetime.fromtimestamp(NOW.timestamp() - seconds, tz=UTC).isoformat().replace("+00:00", "Z")
    assert render.age(then, now=NOW) == text


def test_age_of_nothing_and_of_garbage() -> None:
    assert render.age(None) == "-"
    assert render.age("yesterday") == "?"


def test_short_name_shortens_only_a_name_that_is_the_id() -> None:
    rid = "3f28c601-5028-47f4-9264-5cc43f2f27fb"
    assert render.short_name({"id": rid, "name": rid}) == "3f28c601"
    assert render.short_name({"id": rid, "name": "web"}) == "web"
    assert render.short_name({"id": rid, "metadata": {"name": "work"}}) == "work"


def test_manifest_ref() -> None:
    assert render.manifest_ref({"kind": "Deployment", "metadata": {"name": "n", "namespace": "d"}}) == "Deployment d/n"
    assert render.manifest_ref({"kind": "Namespace", "metadata": {"name": "prod"}}) == "Namespace prod"
    assert render.manifest_ref({}) == "? ?"


def test_condition_summary_carries_the_message_of_what_is_not_true() -> None:
    conditions = [
        {"type": "Applied", "status": "False", "message": "the apiserver\nsaid no"},
        {"type": "Available", "status": "True", "message": "fine"},
    ]
    assert render.condition_summary(conditions) == "Applied=False (the apiserver said no) Available=True"
    assert render.condition_summary([]) == "no conditions"
