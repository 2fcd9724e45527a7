"""Status feedback: the values a manifest's ``feedbackRules`` read from the live object, and the
``StatusFeedbackSynced`` condition that goes with them.

This mirrors the OCM work agent's status reader (ocm ``pkg/work/spoke/statusfeedback``, called from the
available-status controller). A rule path is a kubectl JSONPath, evaluated as one ``{...}`` action with missing
keys allowed (client-go ``util/jsonpath`` semantics, re-implemented here). One match is typed ``Integer``,
``String`` or ``Boolean``; anything else (an object, a list, a float, or several matches) becomes compact JSON
in Go's encoding (``RawFeedbackJsonString`` is on in Maestro), refused when longer than the configured cap.
A path that matches nothing, or only ``null``, yields no value and no error. Every failing path adds to one
``StatusFeedbackSynced=False`` message, and the values that could be read are still returned.

Pure: no I/O. Differences from client-go, all on inputs no feedback rule needs: ``range``/``end`` blocks and
a ``}`` inside a path are rejected, ``*``/``..`` do not split strings into bytes, and map wildcards follow the
object's key order (Go's is random).
"""

from __future__ import annotations

import dataclasses
import decimal
import functools
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

from protocol import payloads

WELL_KNOWN_STATUS: Mapping[tuple[str, str, str], tuple[tuple[str, str], ...]] = {
    ("apps", "v1", "Deployment"): (
        ("ReadyReplicas", ".status.readyReplicas"),
        ("Replicas", ".status.replicas"),
        ("AvailableReplicas", ".status.availableReplicas"),
    ),
    ("apps", "v1", "DaemonSet"): (
        ("NumberReady", ".status.numberReady"),
        ("DesiredNumberScheduled", ".status.desiredNumberScheduled"),
        ("NumberAvailable", ".status.numberAvailable"),
    ),
    ("batch", "v1", "Job"): (
        ("JobComplete", '.status.conditions[?(@.type=="Complete")].status'),
        ("JobSucceeded", ".status.succeeded"),
    ),
    ("", "v1", "Pod"): (
        ("PodReady", '.status.conditions[?(@.type=="Ready")].status'),
        ("PodPhase", ".status.phase"),
    ),
}
"""``WellKnownStatus`` paths by (group, version, kind), as OCM hard-codes them; other kinds are an error."""

Synced: TypeAlias = tuple[payloads.ConditionStatus, str, str]


@dataclasses.dataclass(frozen=True)
class Feedback:
    """What one manifest reports: feedback values, and ``StatusFeedbackSynced`` as (status, reason, message).

    ``synced`` is None when there was no object to read: OCM then leaves the previous values and condition
    as they were, and so should the caller.
    """

    values: list[payloads.FeedbackValue]
    synced: Synced | None


class JSONPathSyntaxError(ValueError):
    """The path cannot be parsed."""


class JSONPathEvalError(ValueError):
    """The path parses but cannot be applied to this object (e.g. an index out of bounds)."""


def jsonpath(obj: Any, path: str) -> list[Any]:
    """All values ``path`` selects in ``obj``, in order; ``[]`` when nothing matches."""
    return _walk(_parse(path), [obj])


def evaluate(
    obj: Mapping[str, Any] | None,
    rules: Sequence[Mapping[str, Any]],
    *,
    group: str,
    kind: str,
    max_json_raw_length: int,
) -> Feedback:
    """Apply a manifest's ``feedbackRules`` to its live object.

    ``group`` and ``kind`` name the resource; the version is the object's own ``apiVersion``, which
    ``WellKnownStatus`` lookups and a path's ``version`` are checked against, as in OCM.
    """
    if obj is None:
        return Feedback(values=[], synced=None)
    if not rules:
        return Feedback(values=[], synced=("True", "NoStatusFeedbackSynced", ""))
    version = _version(obj.get("apiVersion"))
    values: list[payloads.FeedbackValue] = []
    errors: list[str] = []

    def read(name: str, path: str) -> None:
        try:
            value = _read(obj, name, path, max_json_raw_length)
        except _Unreadable as e:
            errors.append(str(e))
        else:
            if value is not None:
                values.append(value)

    for rule in rules:
        if rule.get("type") == "WellKnownStatus":
            known = WELL_KNOWN_STATUS.get((group, version, kind))
            if known is None:
                errors.append(
                    f"cannot find the wellknown statuses for resource with gvk {group}/{version}, Kind={kind}"
                )
            for name, path in known or ():
                read(name, path)
        elif rule.get("type") == "JSONPaths":
            for entry in rule.get("jsonPaths") or []:
                if not isinstance(entry, Mapping):
                    continue
                name = str(entry.get("name", ""))
                wanted = entry.get("version") or ""
                if wanted and wanted != version:
                    errors.append(f"version set in the path {name} is not matched for the related resource")
                else:
                    read(name, str(entry.get("path", "")))
        # NB: OCM silently ignores rules of any other type.
    if errors:
        message = f"Sync status feedback failed with error {_aggregate(errors)}"
        return Feedback(values=values, synced=("False", "StatusFeedbackSyncFailed", message))
    return Feedback(values=values, synced=("True", "StatusFeedbackSynced", ""))


class _Unreadable(Exception):
    pass


def _read(obj: Mapping[str, Any], name: str, path: str, max_length: int) -> payloads.FeedbackValue | None:
    try:
        found = jsonpath(obj, path)
    except JSONPathSyntaxError as e:
        raise _Unreadable(f"failed to parse json path {path} of {name} with error: {e}") from e
    except JSONPathEvalError as e:
        raise _Unreadable(f"failed to find value for {name} with error: {e}") from e
    if not found:
        return None
    value = found[0] if len(found) == 1 else found
    if value is None:
        return None
    if isinstance(value, bool):
        return {"name": name, "fieldValue": {"type": "Boolean", "boolean": value}}
    if isinstance(value, int) and _INT64[0] <= value <= _INT64[1]:
        return {"name": name, "fieldValue": {"type": "Integer", "integer": value}}
    if isinstance(value, str):
        return {"name": name, "fieldValue": {"type": "String", "string": value}}
    try:
        raw = _marshal(value)
    except ValueError as e:
        raise _Unreadable(f"failed to parse the resource to json string for name {name}: {e}") from e
    if len(raw.encode()) > max_length:
        raise _Unreadable(
            f"the length of returned json raw string for name {name} is larger than the maximum length {max_length}"
        )
    return {"name": name, "fieldValue": {"type": "JsonRaw", "jsonRaw": raw}}


def _version(api_version: object) -> str:
    # As apimachinery's ParseGroupVersion: "v1", "apps/v1"; anything else has no version.
    if not isinstance(api_version, str) or api_version.count("/") > 1:
        return ""
    return api_version.rpartition("/")[2]


def _aggregate(messages: list[str]) -> str:
    # As apimachinery's error aggregate: duplicates collapse, several distinct messages are bracketed.
    distinct = list(dict.fromkeys(messages))
    return distinct[0] if len(distinct) == 1 else "[" + ", ".join(distinct) + "]"


# Go's encoding/json, so JsonRaw strings (and the status hash over them) match OCM's byte for byte:
# sorted keys, no spaces, HTML-safe escapes, and Go's float format.

_INT64 = (-(2**63), 2**63 - 1)
_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_GO_ESCAPED = re.compile("[<>&\u2028\u2029]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _marshal(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if _INT64[0] <= value <= _INT64[1] else _go_float(float(value))
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, str):
        return _go_string(value)
    if isinstance(value, Mapping):
        items = sorted((str(k), v) for k, v in value.items())
        return "{" + ",".join(f"{_go_string(k)}:{_marshal(v)}" for k, v in items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_marshal(v) for v in value) + "]"
    raise ValueError(f"json: unsupported type: {type(value).__name__}")


def _go_string(text: str) -> str:
    quoted = json.dumps(_SURROGATE.sub("\ufffd", text), ensure_ascii=False)
    return _GO_ESCAPED.sub(lambda m: _GO_ESCAPES[m.group()], quoted)


def _go_float(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        shown = "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
        raise ValueError(f"json: unsupported value: {shown}")
    size = abs(value)
    if size != 0 and (size < 1e-6 or size >= 1e21):
        return re.sub(r"e-0(\d)$", r"e-\1", repr(value))  # Go writes "1e-7" where Python writes "1e-07".
    return format(decimal.Decimal(repr(value)).normalize(), "f")


# JSONPath syntax tree. A path is a tuple of nodes, applied left to right to a list of current values.


@dataclasses.dataclass(frozen=True)
class _Field:
    name: str


@dataclasses.dataclass(frozen=True)
class _Wildcard:
    pass


@dataclasses.dataclass(frozen=True)
class _Recursive:
    pass


@dataclasses.dataclass(frozen=True)
class _Slice:
    start: int | None
    end: int | None
    step: int | None
    derived: bool  # "[i]" is the slice [i:i+1], with i+1 wrapping like a negative index.


@dataclasses.dataclass(frozen=True)
class _Union:
    branches: tuple[tuple[_Node, ...], ...]


@dataclasses.dataclass(frozen=True)
class _Filter:
    left: tuple[_Node, ...]
    operator: str  # "exists" when there is no comparison.
    right: tuple[_Node, ...]


@dataclasses.dataclass(frozen=True)
class _Literal:
    value: str | int | float | bool
    per_input: bool  # Numbers and booleans repeat once per current value; quoted text appears once.


@dataclasses.dataclass(frozen=True)
class _Identifier:
    name: str


_Node: TypeAlias = _Field | _Wildcard | _Recursive | _Slice | _Union | _Filter | _Literal | _Identifier

_TERMINATORS = frozenset(" \t\r\n.,[]$@{}")
_SLICE = re.compile(r"(-?[0-9]*)(:-?[0-9]*)?(:-?[0-9]*)?")
_DICT_KEY = re.compile(r"'([^']*)'")
_COMPARISON = re.compile(r"([^!<>=]+)([!<>=]+)(.+?)")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)")
_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}
_ESCAPE = re.compile(r"\\(?:x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|([0-7]{3})|(.))", re.DOTALL)


@functools.lru_cache(maxsize=1024)
def _parse(path: str) -> tuple[_Node, ...]:
    return _Parser(path).parse()


def _is_alnum(char: str) -> bool:
    return char == "_" or char.isalpha() or char.isdigit()


class _Parser:
    """Reads one JSONPath action (the text client-go would see between ``{`` and ``}``)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def parse(self) -> tuple[_Node, ...]:
        nodes: list[_Node] = []
        while self.pos < len(self.text):
            rest = self.text[self.pos :]
            char = rest[0]
            if rest.startswith("[?("):
                nodes.append(self._filter())
            elif rest.startswith(".."):
                if nodes and isinstance(nodes[-1], _Recursive):
                    raise JSONPathSyntaxError("invalid multiple recursive descent")
                self.pos += 2
                nodes.append(_Recursive())
                if self.pos < len(self.text) and _is_alnum(self.text[self.pos]):
                    nodes.append(self._field())
            elif char in "\r\n":
                raise JSONPathSyntaxError("unclosed action")
            elif char == "}":
                raise JSONPathSyntaxError("unexpected '}': a feedback path is a single expression")
            elif char in " @$":
                self.pos += 1
            elif char == "[":
                nodes.extend(self._array())
            elif char in "\"'":
                nodes.append(self._quoted(char))
            elif char == ".":
                self.pos += 1
                nodes.append(self._field())
            elif char in "+-" or char.isdigit():
                nodes.append(self._number())
            elif _is_alnum(char):
                word = self._scan_word(escapes=False)
                nodes.append(
                    _Literal(word == "true", per_input=True) if word in ("true", "false") else _Identifier(word)
                )
            else:
                raise JSONPathSyntaxError(f"unrecognized character in action: U+{ord(char):04X} '{char}'")
        return tuple(nodes)

    def _scan_word(self, *, escapes: bool) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _TERMINATORS:
            self.pos += 2 if escapes and self.text[self.pos] == "\\" else 1
        self.pos = min(self.pos, len(self.text))
        return self.text[start : self.pos]

    def _field(self) -> _Node:
        name = self._scan_word(escapes=True)
        return _Wildcard() if name == "*" else _Field(name.replace("\\", ""))

    def _number(self) -> _Node:
        start = self.pos
        self.pos += 1
        while self.pos < len(self.text) and (self.text[self.pos] == "." or self.text[self.pos].isdigit()):
            self.pos += 1
        text = self.text[start : self.pos]
        if _INTEGER.fullmatch(text):
            return _Literal(int(text), per_input=True)
        if _FLOAT.fullmatch(text):
            return _Literal(float(text), per_input=True)
        raise JSONPathSyntaxError(f"cannot parse number {text}")

    def _quoted(self, quote: str) -> _Node:
        start = self.pos
        self.pos += 1
        while True:
            if self.pos >= len(self.text) or self.text[self.pos] == "\n":
                raise JSONPathSyntaxError("unterminated quoted string")
            self.pos += 1
            if self.text[self.pos - 1] == quote and self.text[self.pos - 2] != "\\":
                break
        literal = self.text[start : self.pos]
        try:
            return _Literal(_unquote(literal[1:-1], quote), per_input=False)
        except ValueError as e:
            raise JSONPathSyntaxError(f"unquote string {literal} error invalid syntax") from e

    def _array(self) -> list[_Node]:
        close = self.text.find("]", self.pos)
        newline = self.text.find("\n", self.pos)
        if close < 0 or 0 <= newline < close:
            raise JSONPathSyntaxError("unterminated array")
        inner = self.text[self.pos + 1 : close]
        self.pos = close + 1
        if inner == "*":
            inner = ":"
        parts = inner.split(",")
        if len(parts) > 1:
            return [_Union(tuple(_Parser(f"[{part.strip(' ')}]").parse() for part in parts))]
        if key := _DICT_KEY.fullmatch(inner):
            # NB: as in kubectl, ['a.b'] is .a.b; a dot inside a key must be escaped: ['a\.b'].
            return list(_Parser(f".{key.group(1)}").parse())
        return [_slice(inner)]

    def _filter(self) -> _Node:
        self.pos += 3
        start = self.pos
        opened = closed = False
        pair = ""
        while True:
            if self.pos >= len(self.text) or self.text[self.pos] == "\n":
                raise JSONPathSyntaxError("unterminated filter")
            char = self.text[self.pos]
            self.pos += 1
            if char in "\"'":
                if not opened:
                    opened, pair = True, char
                elif char == pair and self.text[self.pos - 2] != "\\":
                    closed = True
            elif char == ")" and opened == closed:
                break
        if self.text[self.pos : self.pos + 1] != "]":
            raise JSONPathSyntaxError("unclosed array expect ]")
        self.pos += 1
        inner = self.text[start : self.pos - 2]
        comparison = _COMPARISON.fullmatch(inner)
        if comparison is None:
            return _Filter(_Parser(inner).parse(), "exists", ())
        left, operator, right = comparison.groups()
        return _Filter(_Parser(left).parse(), operator, _Parser(right).parse())


def _slice(text: str) -> _Slice:
    match = _SLICE.fullmatch(text)
    if match is None:
        raise JSONPathSyntaxError(f"invalid array index {text}")
    bounds: list[int | None] = []
    for i, group in enumerate(match.groups()):
        part = (group or "")[1:] if i else group or ""
        if not part:
            bounds.append(None)
            continue
        try:
            bounds.append(int(part))
        except ValueError:
            raise JSONPathSyntaxError(f"array index {part} is not a number") from None
    start, end, step = bounds
    if match.group(2) is None:  # "[i]": one element.
        return _Slice(start, (start or 0) + 1, step, derived=True)
    return _Slice(start, end, step, derived=False)


def _unquote(body: str, quote: str) -> str:
    def replace(match: re.Match[str]) -> str:
        hex2, hex4, hex8, octal, other = match.groups()
        if hex2 or hex4 or hex8:
            return chr(int(hex2 or hex4 or hex8, 16))
        if octal:
            if int(octal, 8) > 255:
                raise ValueError(octal)
            return chr(int(octal, 8))
        if other == quote or other in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES.get(other, other)
        raise ValueError(other)

    if quote in _ESCAPE.sub("", body):
        raise ValueError(quote)
    return _ESCAPE.sub(replace, body)


# Evaluation.


def _walk(nodes: tuple[_Node, ...], values: list[Any]) -> list[Any]:
    for node in nodes:
        values = _step(node, values)
    return values


def _children(value: Any) -> list[Any]:
    if isinstance(value, Mapping):
        return list(value.values())
    return list(value) if isinstance(value, list) else []


def _step(node: _Node, values: list[Any]) -> list[Any]:
    match node:
        case _Field(name):
            return [v[name] for v in values if isinstance(v, Mapping) and name in v]
        case _Wildcard():
            return [child for v in values for child in _children(v)]
        case _Recursive():
            found: list[Any] = []
            for v in values:
                if children := _children(v):
                    found.append(v)
                    found.extend(_step(node, children))
            return found
        case _Slice():
            return _apply_slice(node, values)
        case _Union(branches):
            return [v for branch in branches for v in _walk(branch, values)]
        case _Filter():
            return _apply_filter(node, values)
        case _Literal(value, per_input):
            return [value] * len(values) if per_input else [value]
        case _Identifier("end"):
            raise JSONPathEvalError("not in range, nothing to end")
        case _Identifier(name):
            raise JSONPathEvalError(f"unrecognized identifier {name}")
    raise AssertionError(node)  # pragma: no cover


def _apply_slice(node: _Slice, values: list[Any]) -> list[Any]:
    found: list[Any] = []
    for value in values:
        if value is None:
            continue
        if not isinstance(value, list):
            raise JSONPathEvalError(f"{_go_type(value)} is not array or slice")
        length = len(value)
        start = node.start or 0
        start += length if start < 0 else 0
        end = length if node.end is None else node.end
        end += length if end < 0 or (end == 0 and node.derived) else 0
        if end == start:
            return found  # NB: client-go stops here, even with values left to visit.
        if not 0 <= start < length:
            raise JSONPathEvalError(f"array index out of bounds: index {start}, length {length}")
        if not 0 <= end <= length:
            raise JSONPathEvalError(f"array index out of bounds: index {end - 1}, length {length}")
        if start > end:
            raise JSONPathEvalError(f"starting index {start} is greater than ending index {end}")
        if node.step is not None and node.step <= 0:
            raise JSONPathEvalError("step must be > 0")
        found.extend(value[start : end : node.step or 1])
    return found


def _apply_filter(node: _Filter, values: list[Any]) -> list[Any]:
    found: list[Any] = []
    for value in values:
        if not isinstance(value, list):
            raise JSONPathEvalError(f"{_go_text(value)} is not array or slice and cannot be filtered")
        for item in value:
            if node.operator == "exists":
                try:
                    if _walk(node.left, [item]):
                        found.append(item)
                except JSONPathEvalError:
                    pass
                continue
            left = _single(_walk(node.left, [item]))
            if left is _NOTHING:
                continue
            right = _single(_walk(node.right, [item]))
            if right is _NOTHING:
                continue
            if _compare(node.operator, left, right):
                found.append(item)
    return found


_NOTHING = object()


def _single(values: list[Any]) -> Any:
    if len(values) > 1:
        raise JSONPathEvalError("can only compare one element at a time")
    return values[0] if values else _NOTHING


def _comparable_kind(value: Any) -> type:
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind
    raise JSONPathEvalError("invalid type for comparison")


def _compare(operator: str, left: Any, right: Any) -> bool:
    # Go template rules: both sides must be the same basic kind (an int never equals a float), and
    # booleans only support == and !=.
    if operator not in ("==", "!=", "<", "<=", ">", ">="):
        raise JSONPathEvalError(f"unrecognized filter operator {operator}")
    kind = _comparable_kind(left)
    if _comparable_kind(right) is not kind:
        raise JSONPathEvalError("incompatible types for comparison")
    if operator in ("==", "!="):
        return (left == right) is (operator == "==")
    if kind is bool:
        raise JSONPathEvalError("invalid type for comparison")
    less = bool(left < right)
    return {"<": less, "<=": less or left == right, ">": not less and left != right, ">=": not less}[operator]


def _go_type(value: Any) -> str:
    kinds = {dict: "map[string]interface {}", str: "string", bool: "bool", int: "int64", float: "float64"}
    return next((name for kind, name in kinds.items() if type(value) is kind), type(value).__name__)


def _go_text(value: Any) -> str:
    # Roughly Go's %v, for error messages only.
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{_go_text(value[k])}" for k in sorted(value)) + "]"
    return str(value)
