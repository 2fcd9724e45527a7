"""The REST API's JSON items, written by PostgreSQL: a list never decodes a row's JSONB in Python.

Each item is one text value, built by concatenating JSON text: ``'{' || concat_ws(',', <pairs>) || '}'``, where
a pair is ``"name":<value's JSON text>`` or NULL when the field is absent (``deleted_at`` of a live row, ``status``
before any report), which ``concat_ws`` skips. The hub only joins the items' texts into the list envelope.

The shapes are those of :mod:`server.http.presenters` (which still renders single objects, and stays the
reference: a test compares the two over varied rows, ``fields=`` projections included). Top-level keys come in
the presenters' order; objects the presenters assemble from JSONB (``metadata``, a bundle's ``status``) come in
JSONB's key order, and JSON from JSONB is PostgreSQL's text (``{"a": 1}``): the same JSON, other bytes.

``fields=`` is projected here too, with the presenters' rules (:func:`select`): names are dot paths
(``metadata.labels``, ``x.*`` for all of ``x``); a key named is kept when present; a path below a present key
keeps an object of what it finds (possibly empty). Path keys are the user's text, so they are bound parameters.

One thing SQL cannot do without failing: a single resource's ``ContentStatus`` is the agent's ``jsonRaw`` text
parsed as JSON, and PostgreSQL 15 has no cast that answers NULL for invalid JSON. A row with invalid ``jsonRaw``
makes the query fail with a data error (:class:`ProjectionError`); the caller then renders that page with the
Python presenters, which answer ``null`` there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Final

from server.errors import API_PATH


class ProjectionError(Exception):
    """PostgreSQL could not render a page (invalid ``jsonRaw`` feedback): render it in Python instead."""


@dataclasses.dataclass(frozen=True)
class Field:
    """One top-level key: the SQL of its value's JSON text, and when it is present (``None``: always)."""

    name: str
    text: str
    present: str | None = None


_FALSY: Final = ("null", "false", "0", '""', "[]", "{}")
"""The JSON values Python's ``or`` skips: ``data.get("manifests") or []``."""


def _truthy_or_null(value: str) -> str:
    """``value``, or NULL where Python's ``or`` would skip it; ``value`` is evaluated once (nested ``NULLIF``s
    read their first argument once, where ``CASE WHEN value ... THEN value`` computes it twice or more, and
    ``_or`` nests)."""
    for falsy in _FALSY:
        value = f"NULLIF({value}, '{falsy}')"
    return value


def _or(value: str, default: str) -> str:
    """``value or default`` as Python reads decoded JSON, on jsonb."""
    return f"COALESCE({_truthy_or_null(value)}, '{default}'::jsonb)"


def _truthy(value: str) -> str:
    return f"({_truthy_or_null(value)} IS NOT NULL)"


def _string(sql: str) -> str:
    return f"to_json({sql})::text"


def _timestamp(sql: str) -> str:
    """As ``presenters.timestamp``: RFC 3339 in UTC, microseconds only when there are any."""
    text = f"""to_char({sql} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""
    return f"""('"' || replace({text}, '.000000Z', 'Z') || '"')"""


def _seconds(sql: str) -> str:
    """The timestamp truncated to the second, as a jsonb string (a bundle's ``metadata.creationTimestamp``)."""
    return f"""to_jsonb(to_char({sql} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))"""


def _common(table: str, *, kind: str, collection: str) -> list[Field]:
    return [
        Field("id", _string(f"{table}.id")),
        Field("kind", f"'\"{kind}\"'"),
        Field("href", _string(f"'{API_PATH}/{collection}/' || {table}.id")),
        Field("name", _string(f"{table}.name")),
        Field("consumer_name", _string(f"{table}.consumer_name")),
        Field("version", f"{table}.version::text"),
        Field("created_at", _timestamp(f"{table}.created_at")),
        Field("updated_at", _timestamp(f"{table}.updated_at")),
        Field("deleted_at", _timestamp(f"{table}.deleted_at"), present=f"{table}.deleted_at IS NOT NULL"),
    ]


_STATUS_KEYS: Final = "'{ObservedVersion,SequenceID,conditions,resourceStatus}'::text[]"

BUNDLE: Final = (
    *_common("resources", kind="ResourceBundle", collection="resource-bundles"),
    Field(
        "metadata",
        # NB: one ``||`` per row (each rebuilds the object), not a second one with '{}' for a live row.
        "(" + _or("(resources.payload -> 'metadata')", "{}") + " || CASE WHEN resources.deleted_at IS NULL"
        + " THEN jsonb_build_object('creationTimestamp', " + _seconds("resources.created_at") + ")"
        + " ELSE jsonb_build_object('creationTimestamp', " + _seconds("resources.created_at")
        + ", 'deletionTimestamp', " + _seconds("resources.deleted_at") + ") END)::text",
    ),
    Field("manifests", _or("(resources.payload #> '{data,manifests}')", "[]") + "::text"),
    Field("manifest_configs", _or("(resources.payload #> '{data,manifestConfigs}')", "[]") + "::text"),
    Field("delete_option", _or("(resources.payload #> '{data,deleteOption}')", "{}") + "::text"),
    # NB: the keys the agent sends are those kept; only a status with others pays for listing its keys.
    Field(
        "status",
        "(CASE WHEN resources.status - " + _STATUS_KEYS + " = '{}'::jsonb THEN resources.status"
        " ELSE resources.status - ARRAY(SELECT k FROM jsonb_object_keys(resources.status) AS k"
        " WHERE k <> ALL (" + _STATUS_KEYS + ")) END)::text",
        present=_truthy("resources.status"),
    ),
)  # fmt: skip

# A single resource's status, from its only manifest's status (``presenters._single_status``).
_FIRST: Final = "COALESCE(" + _or("(resources.status -> 'resourceStatus')", "[]") + " -> 0, '{}'::jsonb)"
_VALUES: Final = _or("(" + _or("(" + _FIRST + " -> 'statusFeedback')", "{}") + " -> 'values')", "[]")
_JSON_RAW: Final = (
    "jsonb_path_query_first(" + _VALUES + """, '$[*] ? (@.name == "status" && @.fieldValue.type == "JsonRaw")')"""
    " -> 'fieldValue' ->> 'jsonRaw'"
)
_CONTENT: Final = "(COALESCE(NULLIF(" + _JSON_RAW + ", ''), 'null')::jsonb)::text"
_CONDITIONS: Final = _or("(" + _FIRST + " -> 'conditions')", "[]") + "::text"
_OBSERVED: Final = "COALESCE(resources.status -> 'ObservedVersion', 'null'::jsonb)::text"
_SEQUENCE: Final = "COALESCE(resources.status -> 'SequenceID', 'null'::jsonb)::text"
_SINGLE_STATUS: Final = (
    """'{"ContentStatus":' || """ + _CONTENT
    + """ || ',"ReconcileStatus":{"Conditions":' || """ + _CONDITIONS
    + """ || ',"ObservedGeneration":' || """ + _OBSERVED
    + """ || ',"ObservedVersion":' || """ + _OBSERVED
    + """ || ',"SequenceID":' || """ + _SEQUENCE + " || '}}'"
)  # fmt: skip
_CONFIGS: Final = _or("(resources.payload #> '{data,manifestConfigs}')", "[{}]")

_UPDATE_STRATEGY: Final = _or("(" + _CONFIGS + " -> 0 -> 'updateStrategy')", '{"type": "ServerSideApply"}')
_DELETE_OPTION: Final = _or("(resources.payload #> '{data,deleteOption}')", '{"propagationPolicy": "Foreground"}')

SINGLE: Final = (
    *_common("resources", kind="Resource", collection="resources"),
    Field("manifest", "(resources.payload #> '{data,manifests,0}')::text"),
    Field("update_strategy", _UPDATE_STRATEGY + "::text"),
    Field("delete_option", _DELETE_OPTION + "::text"),
    Field("status", _SINGLE_STATUS, present=_truthy("resources.status")),
)

CONSUMER: Final = (
    Field("id", _string("consumers.id")),
    Field("kind", "'\"Consumer\"'"),
    Field("href", _string(f"'{API_PATH}/consumers/' || consumers.id")),
    Field("name", _string("consumers.name")),
    Field("created_at", _timestamp("consumers.created_at")),
    Field("updated_at", _timestamp("consumers.updated_at")),
    Field("labels", "consumers.labels::text", present=_truthy("consumers.labels")),
)


def select(fields: Sequence[Field], names: Sequence[str] | None, *, first_param: int = 1) -> tuple[str, list[object]]:
    """The SQL of one item's JSON text, and its parameters (numbered from ``first_param``).

    ``names``: the ``fields=`` projection (validated top-level names, ``id`` included), or ``None`` for all.
    """
    params: list[object] = []

    def bind(value: str) -> str:
        params.append(value)
        return f"${first_param + len(params) - 1}::text"

    by_name = {f.name: f for f in fields}
    if names is None:
        pairs = [_pair(f"'\"{f.name}\":'", f.text, f.present) for f in fields]
    else:
        pairs = []
        for name, subpaths in _tree([n.removesuffix(".*").split(".") for n in names]):
            field = by_name[name]
            text = field.text if [] in subpaths else _nested(f"({field.text})::jsonb", subpaths, bind)
            pairs.append(_pair(f"'\"{name}\":'", text, field.present))
    return f"'{{' || concat_ws(',', {', '.join(pairs)}) || '}}'", params


def _pair(key_text: str, value_text: str, present: str | None) -> str:
    pair = f"{key_text} || {value_text}"
    return pair if present is None else f"CASE WHEN {present} THEN {pair} END"


def _tree(paths: list[list[str]]) -> list[tuple[str, list[list[str]]]]:
    """Group paths by their first key, in order of first appearance: ``[(key, [rest, ...]), ...]``."""
    groups: dict[str, list[list[str]]] = {}
    for path in paths:
        groups.setdefault(path[0], []).append(path[1:])
    return list(groups.items())


def _nested(value: str, subpaths: list[list[str]], bind: Callable[[str], str]) -> str:
    """``{key: value[key] or its projection, ...}`` of the keys ``value`` has, as JSON text; ``{}`` for a
    non-object (the presenters' projection creates the object before it looks inside)."""
    pairs = []
    for key, rest in _tree(subpaths):
        param = bind(key)
        inner = f"({value} -> {param})"
        text = f"{inner}::text" if [] in rest else _nested(inner, rest, bind)
        pairs.append(f"CASE WHEN {value} ? {param} THEN to_json({param})::text || ':' || {text} END")
    if not pairs:
        return "'{}'"
    return (
        f"CASE WHEN jsonb_typeof({value}) = 'object' THEN '{{' || concat_ws(',', {', '.join(pairs)}) || '}}'"
        " ELSE '{}' END"
    )
