"""Compile the REST ``search`` and ``orderBy`` query parameters into parameterised PostgreSQL.

Upstream Maestro feeds ``search`` to two parsers: a TSL-like SQL subset (``name = 'x' and version > 2``)
and, when the text contains ``->>`` or ``@>``, ocm-common's JSONB parser
(``payload->'metadata'->'labels'->>'app' = 'x'``, ``payload->'metadata'->'labels' @> '{"a":"b"}'``).
We accept the union of both in one recursive-descent grammar, plus ``labels.env`` dot paths and
``is [not] null`` (``deleted_at is null``). The Go source client emits ``->>'key' <> null`` for the
label selector ``exists``, so ``= null`` / ``<> null`` mean ``IS NULL`` / ``IS NOT NULL``.

Invariants that make this safe to splice after ``WHERE``:

- every user value (literal, JSON path key, JSON document) becomes a positional asyncpg parameter
  ``$n`` with an explicit cast; nothing the user typed is ever copied into the SQL text;
- identifiers are resolved only through the caller's :class:`Schema` whitelist, and the SQL emitted
  for them is the schema's own ``sql`` string;
- every comparison and every boolean combination is parenthesised, so the fragment composes with
  ``AND``/``OR`` written by the caller without precedence surprises.

Indexed JSON: a :class:`Schema` may name JSONB expressions that carry a GIN (``jsonb_path_ops``) index
(``resources.payload -> 'metadata'``). An equality or ``in`` on a path below one (``->>``, or a dot path), or an
``@>`` with an object or array below one, then compiles to ``(<as before> AND (<indexed> @> $n::text::jsonb OR
...))``: the containment is implied by the original comparison, so the pair selects exactly the rows the
comparison alone selects, and PostgreSQL can answer the containment from the index. ``->>`` compares text and
containment compares JSON, so ``= '5'`` adds both ``"5"`` and ``5`` (and ``'true'`` both ``"true"`` and
``true``); a text that could be an object's or array's JSON text is not rewritten. The pair turns "unknown"
(a missing key) into false, which changes nothing unless a ``not`` is above it, so nothing under a ``not`` is
rewritten. Nor are paths with an array index (``->0``), whose containment would mean "any element".

Anything outside the grammar raises :class:`SearchError` with a user-facing message and a 0-based
position; the HTTP layer maps it to 400 (code 23 for ``search``, 21 for ``orderBy``).
"""

import contextlib
import dataclasses
import datetime
import json
import re
from collections.abc import Iterator, Mapping
from typing import Final, Literal

MAX_SEARCH_LENGTH: Final = 4096
"""Longer inputs are refused before tokenising; no legitimate client query comes close."""

MAX_NESTING: Final = 32
"""Parentheses plus ``not`` prefixes; bounds recursion so hostile input cannot exhaust the stack."""

_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_PREFIX: Final = "Failed to parse search query: "

ColumnKind = Literal["text", "int", "timestamp", "bool"]


class SearchError(ValueError):
    """A ``search`` or ``orderBy`` value that we refuse; the message is safe to show to the client."""


@dataclasses.dataclass(frozen=True)
class Column:
    """One searchable/orderable column: its SQL expression and the type user literals convert to."""

    sql: str
    kind: ColumnKind


@dataclasses.dataclass(frozen=True)
class Schema:
    """The whitelist of user-visible names for one list endpoint."""

    columns: Mapping[str, Column]
    jsonb: Mapping[str, str]
    indexed_json: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    """JSONB column SQL → the object keys of a GIN-indexed expression below it: ``{"resources.payload":
    ("metadata",)}`` declares an index on ``(resources.payload -> 'metadata')``; the key text is ours (the
    migration's), never the user's."""


# -- Tokens -----------------------------------------------------------------------------------------

TokenKind = Literal["ident", "keyword", "string", "int", "op", "lparen", "rparen", "comma", "end"]

_KEYWORDS: Final = frozenset({"and", "or", "not", "like", "ilike", "in", "is", "null", "true", "false"})
_IDENT_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*")
_INT_RE: Final = re.compile(r"-?[0-9]+")
_OPERATORS: Final = ("->>", "->", "@>", "<=", ">=", "<>", "!=", "=", "<", ">")
_INT_TEXT_RE: Final = re.compile(r"\s*[-+]?[0-9]+\s*")
_ARRAY_INDEX_RE: Final = re.compile(r"-?[0-9]+")
"""A path key ``#>``/``#>>`` would apply to an array as an index."""
_JSON_NUMBER_RE: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")


@dataclasses.dataclass(frozen=True)
class _Token:
    kind: TokenKind
    text: str
    """Keywords are lower-cased; strings hold the unescaped value."""
    pos: int


def _fail(detail: str, pos: int) -> SearchError:
    return SearchError(f"{_PREFIX}{detail} at position {pos}")


def _describe(token: _Token) -> str:
    if token.kind == "end":
        return "end of input"
    text = token.text if len(token.text) <= 40 else token.text[:37] + "..."
    if token.kind == "string":
        return "string '" + text.replace("'", "''") + "'"
    if token.kind == "int":
        return f"integer {text}"
    return f"token '{text}'"


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char.isspace():
            pos += 1
        elif text.startswith("--", pos) or text.startswith("/*", pos):
            raise _fail("comments are not allowed", pos)
        elif char == "'":
            pos = _read_string(text, pos, tokens)
        elif char in "(),":
            kind: TokenKind = "lparen" if char == "(" else "rparen" if char == ")" else "comma"
            tokens.append(_Token(kind, char, pos))
            pos += 1
        elif match := _INT_RE.match(text, pos):
            end = match.end()
            if end < len(text) and (text[end].isalnum() or text[end] in "_."):
                raise _fail(f"malformed number '{text[pos : end + 1]}'", pos)
            tokens.append(_Token("int", match.group(), pos))
            pos = end
        elif match := _IDENT_RE.match(text, pos):
            word = match.group()
            if word.lower() in _KEYWORDS:
                tokens.append(_Token("keyword", word.lower(), pos))
            else:
                tokens.append(_Token("ident", word, pos))
            pos = match.end()
        elif op := next((op for op in _OPERATORS if text.startswith(op, pos)), None):
            tokens.append(_Token("op", op, pos))
            pos += len(op)
        elif char == ";":
            raise _fail("unexpected character ';' (statement separators are not allowed)", pos)
        else:
            raise _fail(f"unexpected character {char!r}", pos)
    tokens.append(_Token("end", "", len(text)))
    return tokens


def _read_string(text: str, start: int, tokens: list[_Token]) -> int:
    """Read a single-quoted literal where ``''`` is an escaped quote; return the position after it."""
    chunks: list[str] = []
    pos = start + 1
    while True:
        close = text.find("'", pos)
        if close < 0:
            raise _fail("unterminated string literal", start)
        chunks.append(text[pos:close])
        if text.startswith("''", close):
            chunks.append("'")
            pos = close + 2
        else:
            tokens.append(_Token("string", "".join(chunks), start))
            return close + 1


# -- Operands -----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Operand:
    """The left-hand side of a comparison, already rendered to SQL (its path bound as a parameter)."""

    sql: str
    kind: ColumnKind | Literal["jsonb"]
    name: str
    pos: int
    root: str | None = None
    """For a JSON path: the JSONB column's SQL, so the path can also be searched by containment."""
    path: tuple[str, ...] = ()


class _Compiler:
    """Recursive descent over the token list, emitting SQL and collecting parameters in one pass."""

    def __init__(self, tokens: list[_Token], *, schema: Schema, first_param: int) -> None:
        self._tokens = tokens
        self._index = 0
        self._schema = schema
        self._first_param = first_param
        self._depth = 0
        self._negations = 0
        self.params: list[object] = []

    # Token helpers.

    def _peek(self, offset: int = 0) -> _Token:
        return self._tokens[min(self._index + offset, len(self._tokens) - 1)]

    def _next(self) -> _Token:
        token = self._peek()
        self._index += 1
        return token

    def _at_keyword(self, *words: str) -> bool:
        token = self._peek()
        return token.kind == "keyword" and token.text in words

    def _expect(self, kind: TokenKind, what: str) -> _Token:
        token = self._next()
        if token.kind != kind:
            raise _fail(f"expected {what}, got {_describe(token)}", token.pos)
        return token

    def _bind(self, value: object, cast: str) -> str:
        self.params.append(value)
        return f"${self._first_param + len(self.params) - 1}::{cast}"

    # Grammar: or_expr := and_expr ('or' and_expr)*; and_expr := not_expr ('and' not_expr)*.

    def compile(self) -> str:
        sql = self._or_expr()
        token = self._peek()
        if token.kind != "end":
            raise _fail(f"unexpected {_describe(token)}", token.pos)
        return sql

    def _or_expr(self) -> str:
        parts = [self._and_expr()]
        while self._at_keyword("or"):
            self._next()
            parts.append(self._and_expr())
        return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"

    def _and_expr(self) -> str:
        parts = [self._not_expr()]
        while self._at_keyword("and"):
            self._next()
            parts.append(self._not_expr())
        return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"

    def _not_expr(self) -> str:
        token = self._peek()
        if token.kind == "keyword" and token.text == "not":
            self._next()
            with self._nested(token):
                self._negations += 1
                try:
                    return f"(NOT {self._not_expr()})"
                finally:
                    self._negations -= 1
        if token.kind == "lparen":
            self._next()
            with self._nested(token):
                sql = self._or_expr()
            self._expect("rparen", "')'")
            return sql
        return self._comparison()

    @contextlib.contextmanager
    def _nested(self, token: _Token) -> Iterator[None]:
        """Count nesting so deep input fails with a message rather than a RecursionError."""
        self._depth += 1
        if self._depth > MAX_NESTING:
            raise _fail(f"query nests deeper than {MAX_NESTING} levels", token.pos)
        try:
            yield
        finally:
            self._depth -= 1

    # Comparisons.

    def _comparison(self) -> str:
        left = self._operand()
        token = self._next()
        negated = False
        if token.kind == "keyword" and token.text == "not":
            negated = True
            token = self._next()
            if not (token.kind == "keyword" and token.text in ("like", "ilike", "in")):
                raise _fail(f"expected 'like', 'ilike' or 'in' after 'not', got {_describe(token)}", token.pos)
        if token.kind == "keyword" and token.text == "is":
            return self._is_null(left)
        if token.kind == "keyword" and token.text in ("like", "ilike"):
            return self._like(left, token, negated=negated)
        if token.kind == "keyword" and token.text == "in":
            return self._in(left, token, negated=negated)
        if token.kind == "op" and token.text in ("=", "!=", "<>", "<", "<=", ">", ">="):
            return self._compare(left, token)
        if token.kind == "op" and token.text == "@>":
            return self._contains(left, token)
        raise _fail(f"expected an operator after '{left.name}', got {_describe(token)}", token.pos)

    def _is_null(self, left: _Operand) -> str:
        negated = self._at_keyword("not")
        if negated:
            self._next()
        token = self._next()
        if not (token.kind == "keyword" and token.text == "null"):
            raise _fail(f"expected 'null', got {_describe(token)}", token.pos)
        return f"({left.sql} IS {'NOT ' if negated else ''}NULL)"

    def _like(self, left: _Operand, op: _Token, *, negated: bool) -> str:
        if left.kind != "text":
            raise _fail(f"operator '{op.text}' needs a text field, '{left.name}' is {left.kind}", op.pos)
        literal = self._next()
        if literal.kind != "string":
            raise _fail(f"operator '{op.text}' needs a string, got {_describe(literal)}", literal.pos)
        sql_op = ("NOT " if negated else "") + op.text.upper()
        return f"({left.sql} {sql_op} {self._bind(literal.text, 'text')})"

    def _in(self, left: _Operand, op: _Token, *, negated: bool) -> str:
        self._expect("lparen", "'(' after 'in'")
        if self._peek().kind == "rparen":
            raise _fail("empty 'in' list", self._peek().pos)
        literals = [self._next()]
        placeholders = [self._bind_literal(left, literals[0])]
        while self._peek().kind == "comma":
            self._next()
            literals.append(self._next())
            placeholders.append(self._bind_literal(left, literals[-1]))
        self._expect("rparen", "',' or ')' in 'in' list")
        sql_op = "NOT IN" if negated else "IN"
        sql = f"({left.sql} {sql_op} ({', '.join(placeholders)}))"
        return sql if negated else self._with_index(sql, left, [t.text for t in literals])

    def _compare(self, left: _Operand, op: _Token) -> str:
        literal = self._next()
        if literal.kind == "keyword" and literal.text == "null":
            if op.text in ("=", "!=", "<>"):
                return f"({left.sql} IS {'' if op.text == '=' else 'NOT '}NULL)"
            raise _fail(f"operator '{op.text}' cannot compare with null", literal.pos)
        if op.text in ("<", "<=", ">", ">=") and left.kind not in ("int", "timestamp"):
            raise _fail(
                f"operator '{op.text}' needs an integer or timestamp field, '{left.name}' is {left.kind}",
                op.pos,
            )
        sql_op = "<>" if op.text == "!=" else op.text
        sql = f"({left.sql} {sql_op} {self._bind_literal(left, literal)})"
        return self._with_index(sql, left, [literal.text]) if sql_op == "=" else sql

    def _contains(self, left: _Operand, op: _Token) -> str:
        if left.kind != "jsonb":
            raise _fail(f"operator '@>' needs a JSON object or array, '{left.name}' is {left.kind}", op.pos)
        literal = self._next()
        if literal.kind != "string":
            raise _fail(f"operator '@>' needs a JSON string literal, got {_describe(literal)}", literal.pos)
        try:
            document = json.loads(literal.text)
        except ValueError as e:
            raise _fail(f"invalid JSON in '@>' literal ({e})", literal.pos) from None
        # NB: bound as text and cast in SQL: the pool's jsonb codec would encode a str as a JSON string.
        sql = f"({left.sql} @> {self._bind(literal.text, 'text')}::jsonb)"
        # NB: only an object or array: a scalar is contained in a top-level array but not in a nested one.
        if isinstance(document, dict | list) and left.root is not None:
            return self._with_containment(sql, left, [literal.text])
        return sql

    def _bind_literal(self, left: _Operand, literal: _Token) -> str:
        """Convert one literal to the operand's type and bind it; the cast lets asyncpg encode it."""
        if literal.kind not in ("string", "int") and not (
            literal.kind == "keyword" and literal.text in ("true", "false")
        ):
            if literal.kind == "keyword" and literal.text == "null":
                raise _fail("null is only allowed with '=', '<>' or 'is'", literal.pos)
            raise _fail(f"expected a literal value, got {_describe(literal)}", literal.pos)
        match left.kind:
            case "text":
                return self._bind(literal.text, "text")
            case "int":
                return self._bind(_to_int(literal), "bigint")
            case "timestamp":
                return self._bind(_to_timestamp(literal), "timestamptz")
            case "bool":
                return self._bind(_to_bool(literal), "boolean")
            case "jsonb":
                raise _fail(
                    f"'{left.name}' is a JSON value; use ->> to compare it as text, or @> for containment",
                    literal.pos,
                )

    # Identifiers.

    def _operand(self) -> _Operand:
        token = self._next()
        if token.kind != "ident":
            raise _fail(f"expected a field name, got {_describe(token)}", token.pos)
        column = _find_column(self._schema, token.text)
        if column is not None:
            if self._peek().kind == "op" and self._peek().text in ("->", "->>"):
                raise _fail(f"'{token.text}' is not a JSON field", self._peek().pos)
            return _Operand(column.sql, column.kind, token.text, token.pos)
        found = _find_jsonb(self._schema, token.text)
        if found is None:
            raise _fail(f"unknown field '{token.text}'", token.pos)
        root, path = found
        if path:
            # NB: a dot path (``labels.env``) always reads the value as text, like ``->>``.
            sql = self._json_sql(root, path, as_text=True)
            return _Operand(sql, "text", token.text, token.pos, root=root, path=tuple(path))
        return self._arrow_path(root, token)

    def _arrow_path(self, root: str, token: _Token) -> _Operand:
        path: list[str] = []
        as_text = False
        while not as_text and self._peek().kind == "op" and self._peek().text in ("->", "->>"):
            as_text = self._next().text == "->>"
            key = self._next()
            if key.kind not in ("string", "int"):
                raise _fail(f"expected a quoted JSON key or array index, got {_describe(key)}", key.pos)
            path.append(key.text)
        if not path:
            return _Operand(root, "jsonb", token.text, token.pos, root=root)
        sql = self._json_sql(root, path, as_text=as_text)
        return _Operand(sql, "text" if as_text else "jsonb", token.text, token.pos, root=root, path=tuple(path))

    def _json_sql(self, root: str, path: list[str], *, as_text: bool) -> str:
        operator = "#>>" if as_text else "#>"
        return f"({root} {operator} {self._bind(path, 'text[]')})"

    # Indexed JSON (see the module docstring).

    def _with_index(self, sql: str, left: _Operand, texts: list[str]) -> str:
        """Add the containment implied by ``<path as text> = one of texts``, when an index can answer it."""
        if left.root is None or left.kind != "text" or any(t.startswith(("{", "[")) for t in texts):
            return sql
        leaves = [json.dumps(t, ensure_ascii=False) for t in texts]
        # NB: ``->>`` gives a number's or boolean's JSON text, so '5' also matches 5, 'true' also true.
        leaves += [t for t in texts if t in ("true", "false") or _JSON_NUMBER_RE.fullmatch(t)]
        return self._with_containment(sql, left, leaves)

    def _with_containment(self, sql: str, left: _Operand, leaves: list[str]) -> str:
        """``(sql AND (indexed @> doc OR ...))``, one document per JSON leaf at ``left``'s path, or ``sql`` alone."""
        assert left.root is not None
        prefix = self._schema.indexed_json.get(left.root)
        if (
            prefix is None
            or self._negations
            or left.path[: len(prefix)] != prefix
            or any(_ARRAY_INDEX_RE.fullmatch(key) for key in left.path)
        ):
            return sql
        indexed = "(" + left.root + "".join(f" -> {_sql_string(key)}" for key in prefix) + ")"
        rest = left.path[len(prefix) :]
        documents = []
        for leaf in leaves:
            for key in reversed(rest):
                leaf = "{" + json.dumps(key, ensure_ascii=False) + ": " + leaf + "}"
            documents.append(f"{indexed} @> {self._bind(leaf, 'text')}::jsonb")
        return f"({sql} AND ({' OR '.join(documents)}))"


def _sql_string(text: str) -> str:
    """A SQL string literal, for the schema's own (trusted) index keys only."""
    return "'" + text.replace("'", "''") + "'"


def _find_column(schema: Schema, name: str) -> Column | None:
    """Match a user-visible column name, or the table-qualified SQL name, case-insensitively."""
    lowered = name.lower()
    for key, column in schema.columns.items():
        if key.lower() == lowered or column.sql.lower() == lowered:
            return column
    return None


def _find_jsonb(schema: Schema, name: str) -> tuple[str, list[str]] | None:
    """Split ``root.key.key`` into the JSONB column SQL and the (case-sensitive) path keys."""
    parts = name.split(".")
    for size in range(len(parts), 0, -1):
        prefix = ".".join(parts[:size]).lower()
        for key, sql in schema.jsonb.items():
            if key.lower() == prefix or sql.lower() == prefix:
                return sql, parts[size:]
    return None


# -- Literal conversion -------------------------------------------------------------------------------


def _to_int(literal: _Token) -> int:
    if literal.kind == "keyword" or (literal.kind == "string" and not _INT_TEXT_RE.fullmatch(literal.text)):
        raise _fail(f"expected an integer, got {_describe(literal)}", literal.pos)
    value = int(literal.text)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise _fail(f"integer {literal.text} is out of range", literal.pos)
    return value


def _to_timestamp(literal: _Token) -> datetime.datetime:
    if literal.kind != "string":
        raise _fail(f"expected an RFC 3339 timestamp string, got {_describe(literal)}", literal.pos)
    try:
        value = datetime.datetime.fromisoformat(literal.text.strip())
    except ValueError:
        raise _fail(f"invalid timestamp {_describe(literal)}", literal.pos) from None
    # NB: a zone-less timestamp means UTC, not the database session's zone, so results do not
    # depend on server configuration.
    return value if value.tzinfo is not None else value.replace(tzinfo=datetime.UTC)


def _to_bool(literal: _Token) -> bool:
    text = literal.text.lower() if literal.kind in ("keyword", "string") else ""
    if text not in ("true", "false"):
        raise _fail(f"expected true or false, got {_describe(literal)}", literal.pos)
    return text == "true"


# -- Public API ---------------------------------------------------------------------------------------


def compile_search(search: str, *, schema: Schema, first_param: int = 1) -> tuple[str, list[object]]:
    """Return ``(sql_fragment, params)`` for a ``WHERE`` clause; blank search gives ``("TRUE", [])``.

    Placeholders are numbered from ``first_param`` so the caller can put its own parameters first.
    """
    if first_param < 1:
        raise ValueError(f"first_param must be >= 1, got {first_param}")
    if len(search) > MAX_SEARCH_LENGTH:
        raise SearchError(f"{_PREFIX}query is longer than {MAX_SEARCH_LENGTH} characters")
    if not search.strip():
        return "TRUE", []
    compiler = _Compiler(_tokenize(search), schema=schema, first_param=first_param)
    sql = compiler.compile()
    return sql, compiler.params


def compile_order_by(order_by: str, *, schema: Schema) -> str:
    """Translate ``'name, created_at desc'`` into ``'consumers.name ASC, consumers.created_at DESC'``.

    Only whitelisted columns are accepted (no JSON paths, no expressions); blank input gives ``''``.
    """
    if not order_by.strip():
        return ""
    if len(order_by) > MAX_SEARCH_LENGTH:
        raise SearchError(f"bad order value: longer than {MAX_SEARCH_LENGTH} characters")
    clauses: list[str] = []
    for item in order_by.split(","):
        words = item.split()
        if not words or len(words) > 2:
            raise SearchError(f"bad order value '{item.strip()}'")
        column = _find_column(schema, words[0])
        if column is None:
            raise SearchError(f"bad order value '{item.strip()}': unknown column '{words[0]}'")
        direction = words[1].lower() if len(words) == 2 else "asc"
        if direction not in ("asc", "desc"):
            raise SearchError(f"bad order value '{item.strip()}': expected asc or desc")
        clauses.append(f"{column.sql} {direction.upper()}")
    return ", ".join(clauses)
