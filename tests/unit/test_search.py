"""The ``search``/``orderBy`` compiler: exact SQL and parameters, and the refusal of everything else.

The property tests are the safety net: whatever the input, either SearchError or SQL built only from
whitelisted identifiers, ``$n`` placeholders, operators and keywords.
"""

import datetime
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.store import search

SCHEMA = search.Schema(
    columns={
        "id": search.Column("resources.id", "text"),
        "source": search.Column("resources.source", "text"),
        "name": search.Column("resources.name", "text"),
        "consumer_name": search.Column("resources.consumer_name", "text"),
        "version": search.Column("resources.version", "int"),
        "created_at": search.Column("resources.created_at", "timestamp"),
        "deleted_at": search.Column("resources.deleted_at", "timestamp"),
        "enabled": search.Column("resources.enabled", "bool"),
    },
    jsonb={"payload": "resources.payload", "labels": "resources.labels"},
)

UTC = datetime.UTC


def compile_(text: str, *, first_param: int = 1) -> tuple[str, list[object]]:
    return search.compile_search(text, schema=SCHEMA, first_param=first_param)


@pytest.mark.parametrize(
    ("text", "sql", "params"),
    [
        pytest.param("", "TRUE", [], id="empty"),
        pytest.param("   \t\n", "TRUE", [], id="blank"),
        pytest.param("name = 'a'", "(resources.name = $1::text)", ["a"], id="eq"),
        pytest.param("name='a'", "(resources.name = $1::text)", ["a"], id="eq-no-spaces"),
        pytest.param("name != 'a'", "(resources.name <> $1::text)", ["a"], id="ne-bang"),
        pytest.param("name <> 'a'", "(resources.name <> $1::text)", ["a"], id="ne-angle"),
        pytest.param("name like 'prod%'", "(resources.name LIKE $1::text)", ["prod%"], id="like"),
        pytest.param("name LIKE 'p_'", "(resources.name LIKE $1::text)", ["p_"], id="like-upper"),
        pytest.param("name not like 'x%'", "(resources.name NOT LIKE $1::text)", ["x%"], id="not-like"),
        pytest.param("name ilike 'X%'", "(resources.name ILIKE $1::text)", ["X%"], id="ilike"),
        pytest.param("name Not ILike 'X%'", "(resources.name NOT ILIKE $1::text)", ["X%"], id="not-ilike"),
        pytest.param("name in ('a')", "(resources.name IN ($1::text))", ["a"], id="in-one"),
        pytest.param(
            "name in ('a', 'b','c')",
            "(resources.name IN ($1::text, $2::text, $3::text))",
            ["a", "b", "c"],
            id="in-many",
        ),
        pytest.param("name not in ('a','b')", "(resources.name NOT IN ($1::text, $2::text))", ["a", "b"], id="not-in"),
        pytest.param("version < 3", "(resources.version < $1::bigint)", [3], id="lt"),
        pytest.param("version <= 3", "(resources.version <= $1::bigint)", [3], id="le"),
        pytest.param("version > 3", "(resources.version > $1::bigint)", [3], id="gt"),
        pytest.param("version >= -3", "(resources.version >= $1::bigint)", [-3], id="ge-negative"),
        pytest.param("version in (1, '2')", "(resources.version IN ($1::bigint, $2::bigint))", [1, 2], id="in-int"),
        pytest.param("deleted_at is null", "(resources.deleted_at IS NULL)", [], id="is-null"),
        pytest.param("deleted_at IS NOT NULL", "(resources.deleted_at IS NOT NULL)", [], id="is-not-null"),
        pytest.param("deleted_at = null", "(resources.deleted_at IS NULL)", [], id="eq-null"),
        pytest.param("deleted_at <> null", "(resources.deleted_at IS NOT NULL)", [], id="ne-null"),
        pytest.param("enabled = true", "(resources.enabled = $1::boolean)", [True], id="bool"),
        pytest.param("enabled != 'FALSE'", "(resources.enabled <> $1::boolean)", [False], id="bool-string"),
        pytest.param("name = 'it''s'", "(resources.name = $1::text)", ["it's"], id="quote-escape"),
        pytest.param("name = ''", "(resources.name = $1::text)", [""], id="empty-string"),
        pytest.param("name = 42", "(resources.name = $1::text)", ["42"], id="int-to-text"),
        pytest.param("name = true", "(resources.name = $1::text)", ["true"], id="bool-to-text"),
        pytest.param("resources.name = 'a'", "(resources.name = $1::text)", ["a"], id="table-prefix"),
        pytest.param("NAME = 'a'", "(resources.name = $1::text)", ["a"], id="ident-case-insensitive"),
        pytest.param(
            "name = 'x; drop table consumers; --'",
            "(resources.name = $1::text)",
            ["x; drop table consumers; --"],
            id="injection-inside-string-is-data",
        ),
    ],
)
def test_comparisons(text: str, sql: str, params: list[object]) -> None:
    assert compile_(text) == (sql, params)


@pytest.mark.parametrize(
    ("text", "sql"),
    [
        pytest.param(
            "name = 'a' and id = 'b'", "((resources.name = $1::text) AND (resources.id = $2::text))", id="and"
        ),
        pytest.param("name = 'a' or id = 'b'", "((resources.name = $1::text) OR (resources.id = $2::text))", id="or"),
        pytest.param(
            "name = 'a' or id = 'b' and version = 1",
            "((resources.name = $1::text) OR ((resources.id = $2::text) AND (resources.version = $3::bigint)))",
            id="and-binds-tighter-than-or",
        ),
        pytest.param(
            "(name = 'a' or id = 'b') and version = 1",
            "(((resources.name = $1::text) OR (resources.id = $2::text)) AND (resources.version = $3::bigint))",
            id="parentheses-override",
        ),
        pytest.param(
            "not name = 'a' and id = 'b'",
            "((NOT (resources.name = $1::text)) AND (resources.id = $2::text))",
            id="not-binds-tighter-than-and",
        ),
        pytest.param(
            "not (name = 'a' and id = 'b')",
            "(NOT ((resources.name = $1::text) AND (resources.id = $2::text)))",
            id="not-group",
        ),
        pytest.param("not not name = 'a'", "(NOT (NOT (resources.name = $1::text)))", id="double-not"),
        pytest.param("((((name = 'a'))))", "(resources.name = $1::text)", id="redundant-parentheses"),
        pytest.param(
            "name = 'a' AND id = 'b' Or version = 1 aNd version = 2",
            "(((resources.name = $1::text) AND (resources.id = $2::text))"
            " OR ((resources.version = $3::bigint) AND (resources.version = $4::bigint)))",
            id="mixed-case-keywords",
        ),
    ],
)
def test_precedence(text: str, sql: str) -> None:
    assert compile_(text)[0] == sql


def test_upstream_source_client_query() -> None:
    sql, params = compile_("source='maestro' and (consumer_name='a' or consumer_name = 'b')")
    assert sql == (
        "((resources.source = $1::text) AND "
        "((resources.consumer_name = $2::text) OR (resources.consumer_name = $3::text)))"
    )
    assert params == ["maestro", "a", "b"]


def test_first_param_offsets_placeholders() -> None:
    sql, params = compile_("name = 'a' and labels.env = 'prod'", first_param=5)
    assert sql == "((resources.name = $5::text) AND ((resources.labels #>> $6::text[]) = $7::text))"
    assert params == ["a", ["env"], "prod"]


def test_first_param_must_be_positive() -> None:
    with pytest.raises(ValueError, match="first_param"):
        compile_("name = 'a'", first_param=0)


@pytest.mark.parametrize(
    ("text", "sql", "params"),
    [
        pytest.param(
            "labels.env = 'prod'",
            "((resources.labels #>> $1::text[]) = $2::text)",
            [["env"], "prod"],
            id="dot",
        ),
        pytest.param(
            "payload.metadata.name like 'web%'",
            "((resources.payload #>> $1::text[]) LIKE $2::text)",
            [["metadata", "name"], "web%"],
            id="dot-deep",
        ),
        pytest.param(
            "resources.labels.env = 'x'",
            "((resources.labels #>> $1::text[]) = $2::text)",
            [["env"], "x"],
            id="dot-table-prefixed",
        ),
        pytest.param(
            "labels.Env = 'x'",
            "((resources.labels #>> $1::text[]) = $2::text)",
            [["Env"], "x"],
            id="keys-keep-case",
        ),
        pytest.param(
            "payload->'metadata'->'labels'->>'app' = 'x'",
            "((resources.payload #>> $1::text[]) = $2::text)",
            [["metadata", "labels", "app"], "x"],
            id="arrow-text",
        ),
        pytest.param(
            "payload -> 'metadata' ->> 'name' in ('a', 'b')",
            "((resources.payload #>> $1::text[]) IN ($2::text, $3::text))",
            [["metadata", "name"], "a", "b"],
            id="arrow-in-spaced",
        ),
        pytest.param(
            "payload->'metadata'->'labels'->>'env'in('a')",
            "((resources.payload #>> $1::text[]) IN ($2::text))",
            [["metadata", "labels", "env"], "a"],
            id="go-client-in",
        ),
        pytest.param(
            "payload->'metadata'->'labels'->>'a'<>'b' and payload->'metadata'->'labels'->>'c'<>'d'",
            "(((resources.payload #>> $1::text[]) <> $2::text) AND ((resources.payload #>> $3::text[]) <> $4::text))",
            [["metadata", "labels", "a"], "b", ["metadata", "labels", "c"], "d"],
            id="go-client-not-equals",
        ),
        pytest.param(
            "payload->'metadata'->'labels'->>'a'<>null",
            "((resources.payload #>> $1::text[]) IS NOT NULL)",
            [["metadata", "labels", "a"]],
            id="go-client-exists",
        ),
        pytest.param(
            "payload->'metadata'->'labels'->>'api.openshift.com/id'='abc'",
            "((resources.payload #>> $1::text[]) = $2::text)",
            [["metadata", "labels", "api.openshift.com/id"], "abc"],
            id="key-with-dots-and-slash",
        ),
        pytest.param(
            "payload->'manifests'->0->>'kind' = 'Deployment'",
            "((resources.payload #>> $1::text[]) = $2::text)",
            [["manifests", "0", "kind"], "Deployment"],
            id="array-index",
        ),
        pytest.param(
            """payload->'metadata'->'labels'@>'{"a":"b"}'""",
            "((resources.payload #> $1::text[]) @> $2::text::jsonb)",
            [["metadata", "labels"], '{"a":"b"}'],
            id="containment",
        ),
        pytest.param(
            """labels @> '{"a": "b", "c": "d"}'""",
            "(resources.labels @> $1::text::jsonb)",
            ['{"a": "b", "c": "d"}'],
            id="containment-root",
        ),
        pytest.param(
            "payload->'spec' is null",
            "((resources.payload #> $1::text[]) IS NULL)",
            [["spec"]],
            id="json-is-null",
        ),
        pytest.param("labels is not null", "(resources.labels IS NOT NULL)", [], id="root-is-not-null"),
        pytest.param(
            "payload->'it''s'->>'k' = 'v'",
            "((resources.payload #>> $1::text[]) = $2::text)",
            [["it's", "k"], "v"],
            id="quoted-key-escape",
        ),
    ],
)
def test_jsonb(text: str, sql: str, params: list[object]) -> None:
    assert compile_(text) == (sql, params)


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("'2024-01-02T03:04:05Z'", datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("'2024-01-02T03:04:05.123456789Z'", datetime.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)),
        (
            "'2024-01-02T03:04:05+02:00'",
            datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
        ),
        ("'2024-01-02 03:04:05'", datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("'2024-01-02'", datetime.datetime(2024, 1, 2, tzinfo=UTC)),
    ],
)
def test_timestamp_literals_become_aware_datetimes(literal: str, expected: datetime.datetime) -> None:
    sql, params = compile_(f"created_at > {literal}")
    assert sql == "(resources.created_at > $1::timestamptz)"
    assert params == [expected]
    assert isinstance(params[0], datetime.datetime)
    assert params[0].tzinfo is not None


@pytest.mark.parametrize(("literal", "expected"), [("3", 3), ("'3'", 3), ("' 7 '", 7), ("'-2'", -2)])
def test_int_literals(literal: str, expected: int) -> None:
    assert compile_(f"version = {literal}")[1] == [expected]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # Injection-looking input.
        (
            "name = 'x'; drop table consumers; --",
            "unexpected character ';' (statement separators are not allowed) at position 10",
        ),
        ("name = 'x' drop table consumers", "unexpected token 'drop' at position 11"),
        ("1=1", "expected a field name, got integer 1 at position 0"),
        ("name = 'a' or 1=1", "expected a field name, got integer 1 at position 14"),
        ("name = 'a' or 1=1 --", "comments are not allowed at position 18"),
        ("name = 'a' /* x */", "comments are not allowed at position 11"),
        ("name = 'a' or 'a'='a'", "expected a field name, got string 'a' at position 14"),
        ("name = 'a' union select 1", "unexpected token 'union' at position 11"),
        ("\"name\" = 'a'", "unexpected character '\"' at position 0"),
        ("name = $1", "unexpected character '$' at position 7"),
        ("name = 'a' || 'b'", "unexpected character '|' at position 11"),
        ("name = name", "expected a literal value, got token 'name' at position 7"),
        ("pg_sleep(10) = 1", "unknown field 'pg_sleep' at position 0"),
        ("name = 'a'::text", "unexpected character ':' at position 10"),
        # Structure.
        ("(name = 'a'", "expected ')', got end of input at position 11"),
        ("name = 'a')", "unexpected token ')' at position 10"),
        ("()", "expected a field name, got token ')' at position 1"),
        ("name = 'a' and", "expected a field name, got end of input at position 14"),
        ("and name = 'a'", "expected a field name, got token 'and' at position 0"),
        ("name = 'a' name = 'b'", "unexpected token 'name' at position 11"),
        ("name", "expected an operator after 'name', got end of input at position 4"),
        ("name =", "expected a literal value, got end of input at position 6"),
        ("name == 'a'", "expected a literal value, got token '=' at position 6"),
        ("name ~ 'a'", "unexpected character '~' at position 5"),
        ("name not = 'a'", "expected 'like', 'ilike' or 'in' after 'not', got token '=' at position 9"),
        ("name is 'a'", "expected 'null', got string 'a' at position 8"),
        ("name = 'abc", "unterminated string literal at position 7"),
        ("name = 'a''", "unterminated string literal at position 7"),
        ("version = 3.5", "malformed number '3.' at position 10"),
        ("version = 12abc", "malformed number '12a' at position 10"),
        ("name.", "unexpected character '.' at position 4"),
        # Lists.
        ("name in ()", "empty 'in' list at position 9"),
        ("name in 'a'", "expected '(' after 'in', got string 'a' at position 8"),
        ("name in ('a',)", "expected a literal value, got token ')' at position 13"),
        ("name in ('a' 'b')", "expected ',' or ')' in 'in' list, got string 'b' at position 13"),
        ("name in ('a', null)", "null is only allowed with '=', '<>' or 'is' at position 14"),
        # Unknown names.
        ("nope = 'a'", "unknown field 'nope' at position 0"),
        ("consumers.name = 'a'", "unknown field 'consumers.name' at position 0"),
        ("name.first = 'a'", "unknown field 'name.first' at position 0"),
        ("name->'a' = 'b'", "'name' is not a JSON field at position 4"),
        # Types.
        ("version = 'abc'", "expected an integer, got string 'abc' at position 10"),
        ("version = true", "expected an integer, got token 'true' at position 10"),
        ("version = 99999999999999999999", "integer 99999999999999999999 is out of range at position 10"),
        ("created_at > 'yesterday'", "invalid timestamp string 'yesterday' at position 13"),
        ("created_at > 5", "expected an RFC 3339 timestamp string, got integer 5 at position 13"),
        ("enabled = 'yes'", "expected true or false, got string 'yes' at position 10"),
        ("name < 'b'", "operator '<' needs an integer or timestamp field, 'name' is text at position 5"),
        (
            "enabled >= true",
            "operator '>=' needs an integer or timestamp field, 'enabled' is bool at position 8",
        ),
        ("version like '1%'", "operator 'like' needs a text field, 'version' is int at position 8"),
        ("name like 3", "operator 'like' needs a string, got integer 3 at position 10"),
        ("version > null", "operator '>' cannot compare with null at position 10"),
        # JSONB.
        ("payload->'metadata' = 'x'", "'payload' is a JSON value; use ->> to compare it as text"),
        ("labels = 'x'", "'labels' is a JSON value; use ->> to compare it as text"),
        (
            "payload->metadata->>'a' = 'x'",
            "expected a quoted JSON key or array index, got token 'metadata' at position 9",
        ),
        ("payload->>'a'->>'b' = 'x'", "expected an operator after 'payload', got token '->>' at position 13"),
        ("payload->'a' @> '{bad'", "invalid JSON in '@>' literal"),
        ("payload->'a' @> 3", "operator '@>' needs a JSON string literal, got integer 3 at position 16"),
        ("name @> '{}'", "operator '@>' needs a JSON object or array, 'name' is text at position 5"),
        (
            "labels.env @> '{}'",
            "operator '@>' needs a JSON object or array, 'labels.env' is text at position 11",
        ),
    ],
)
def test_rejections(text: str, message: str) -> None:
    with pytest.raises(search.SearchError) as info:
        compile_(text)
    assert str(info.value).startswith("Failed to parse search query: ")
    assert message in str(info.value)


def test_search_error_is_a_value_error() -> None:
    assert issubclass(search.SearchError, ValueError)


def test_rejects_overlong_input() -> None:
    text = "name = '" + "a" * 5000 + "'"
    with pytest.raises(search.SearchError, match="longer than 4096 characters"):
        compile_(text)


def test_accepts_input_at_the_length_limit() -> None:
    text = "name = '" + "a" * (4096 - 9) + "'"
    assert len(text) == 4096
    assert compile_(text)[1] == ["a" * (4096 - 9)]


@pytest.mark.parametrize("opener", ["(", "not "])
def test_rejects_deep_nesting(opener: str) -> None:
    closer = ")" if opener == "(" else ""
    assert compile_(opener * 32 + "name = 'a'" + closer * 32)[1] == ["a"]
    with pytest.raises(search.SearchError, match="nests deeper than 32 levels at position"):
        compile_(opener * 33 + "name = 'a'" + closer * 33)


def test_deep_nesting_fails_cleanly_before_recursion_limit() -> None:
    with pytest.raises(search.SearchError, match="nests deeper"):
        compile_("(" * 2000 + "name = 'a'" + ")" * 2000)


def test_long_flat_chains_are_fine() -> None:
    text = " or ".join(f"name = '{i}'" for i in range(200))
    sql, params = compile_(text)
    assert params == [str(i) for i in range(200)]
    assert "$200::text" in sql


# -- orderBy ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ""),
        ("  ", ""),
        ("name", "resources.name ASC"),
        ("name desc", "resources.name DESC"),
        ("name, created_at desc", "resources.name ASC, resources.created_at DESC"),
        ("  name   ASC ,version DESC  ", "resources.name ASC, resources.version DESC"),
        ("resources.created_at", "resources.created_at ASC"),
        ("NAME Desc", "resources.name DESC"),
    ],
)
def test_order_by(text: str, expected: str) -> None:
    assert search.compile_order_by(text, schema=SCHEMA) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nope", "bad order value 'nope': unknown column 'nope'"),
        ("name sideways", "bad order value 'name sideways': expected asc or desc"),
        ("name asc nulls", "bad order value 'name asc nulls'"),
        ("name,", "bad order value ''"),
        (",name", "bad order value ''"),
        ("name; drop table resources", "bad order value 'name; drop table resources'"),
        ("name desc; --", "bad order value 'name desc; --'"),
        ("labels.env", "bad order value 'labels.env': unknown column 'labels.env'"),
        ("(select 1)", "bad order value '(select 1)': unknown column '(select'"),
        ("n" * 5000, "bad order value: longer than 4096 characters"),
    ],
)
def test_order_by_rejections(text: str, message: str) -> None:
    with pytest.raises(search.SearchError) as info:
        search.compile_order_by(text, schema=SCHEMA)
    assert str(info.value).startswith("bad order value")
    assert message in str(info.value)


# -- Properties -----------------------------------------------------------------------------------------

_IDENTIFIERS = sorted({c.sql for c in SCHEMA.columns.values()} | set(SCHEMA.jsonb.values()), key=len, reverse=True)
_SQL_TOKEN = re.compile(
    "|".join(
        [
            r"\s+",
            *(re.escape(name) for name in _IDENTIFIERS),
            r"\$[0-9]+::(?:text\[\]|text::jsonb|text|bigint|timestamptz|boolean)",
            r"#>>|#>|@>|<=|>=|<>|=|<|>",
            r"[(),]",
            r"\b(?:AND|OR|NOT|IN|LIKE|ILIKE|IS|NULL|TRUE)\b",
        ]
    )
)


def assert_safe(sql: str, params: list[object], *, first_param: int = 1) -> None:
    """Only whitelisted pieces in the SQL, and placeholders numbered 1..n exactly once each."""
    assert "'" not in sql
    assert '"' not in sql
    assert ";" not in sql
    assert "--" not in sql
    pos = 0
    while pos < len(sql):
        match = _SQL_TOKEN.match(sql, pos)
        assert match is not None, f"unexpected SQL at {pos}: {sql[pos:]!r}"
        pos = match.end()
    numbers = [int(n) for n in re.findall(r"\$([0-9]+)", sql)]
    assert numbers == list(range(first_param, first_param + len(params)))


_PROPERTY_SETTINGS = settings(
    max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@_PROPERTY_SETTINGS
@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=120))
def test_random_printable_input_is_refused_or_safe(text: str) -> None:
    try:
        sql, params = compile_(text)
    except search.SearchError:
        return
    assert_safe(sql, params)


_FRAGMENTS = st.sampled_from(
    [
        "name",
        "version",
        "created_at",
        "deleted_at",
        "enabled",
        "labels",
        "labels.env",
        "payload",
        "resources.name",
        "nope",
        "=",
        "!=",
        "<>",
        "<",
        ">=",
        "like",
        "not",
        "in",
        "is",
        "null",
        "and",
        "or",
        "(",
        ")",
        ",",
        "->",
        "->>",
        "@>",
        "true",
        "false",
        "3",
        "-7",
        "'2024-01-01T00:00:00Z'",
        "'{\"a\": 1}'",
        ";",
        "--",
        "1=1",
        "'",
        "''",
        "drop",
        "$1",
        "::",
    ]
)
_STRING_LITERALS = st.text(max_size=20).map(lambda s: "'" + s.replace("'", "''") + "'")


@_PROPERTY_SETTINGS
@given(st.lists(st.one_of(_FRAGMENTS, _STRING_LITERALS), max_size=14), st.integers(1, 50))
def test_token_soup_is_refused_or_safe(parts: list[str], first_param: int) -> None:
    try:
        sql, params = compile_(" ".join(parts), first_param=first_param)
    except search.SearchError:
        return
    assert_safe(sql, params, first_param=first_param)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


_Case = tuple[str, list[str | int]]
_TEXT_VALUES = st.text(max_size=15)


@st.composite
def _comparisons(draw: st.DrawFn) -> _Case:
    """One valid comparison, with the user values it carries."""
    match draw(st.integers(0, 3)):
        case 0:
            field = draw(st.sampled_from(["name", "id", "labels.env", "payload->'metadata'->>'name'"]))
            op = draw(st.sampled_from(["=", "!=", "<>", "like", "not like", "ilike"]))
            value = draw(_TEXT_VALUES)
            return f"{field} {op} {_quote(value)}", [value]
        case 1:
            op = draw(st.sampled_from(["=", "<", ">=", "<>"]))
            number = draw(st.integers(-(2**63), 2**63 - 1))
            return f"version {op} {number}", [number]
        case 2:
            values: list[str | int] = list(draw(st.lists(_TEXT_VALUES, min_size=1, max_size=4)))
            return "consumer_name in (" + ", ".join(_quote(str(v)) for v in values) + ")", values
        case _:
            return draw(st.sampled_from(["deleted_at is null", "deleted_at is not null"])), []


@st.composite
def _expressions(draw: st.DrawFn) -> _Case:
    """A random valid search, with the user values it carries (in order)."""
    text, values = draw(_comparisons())
    for _ in range(draw(st.integers(0, 3))):
        other, other_values = draw(_comparisons())
        joiner = draw(st.sampled_from([" and ", " or ", " AND not "]))
        text, values = f"({text}){joiner}{other}", [*values, *other_values]
    return text, values


@_PROPERTY_SETTINGS
@given(_expressions())
def test_valid_searches_carry_every_value_as_a_parameter(case: _Case) -> None:
    text, values = case
    sql, params = compile_(text)
    assert_safe(sql, params)
    assert [p for p in params if not isinstance(p, list)] == values


@st.composite
def _mutated(draw: st.DrawFn) -> str:
    """A valid search with a few fragments spliced in or cut out: near misses that probe the edges."""
    text, _ = draw(_expressions())
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        if draw(st.booleans()):
            text = text[:at] + draw(st.one_of(_FRAGMENTS, _STRING_LITERALS)) + text[at:]
        else:
            text = text[:at] + text[at + draw(st.integers(1, 5)) :]
    return text


@_PROPERTY_SETTINGS
@given(_mutated())
def test_mutated_searches_are_refused_or_safe(text: str) -> None:
    try:
        sql, params = compile_(text)
    except search.SearchError:
        return
    assert_safe(sql, params)


# -- Indexed JSON -------------------------------------------------------------------------------------

INDEXED = search.Schema(columns=SCHEMA.columns, jsonb=SCHEMA.jsonb, indexed_json={"resources.payload": ("metadata",)})
_LABEL = ["metadata", "labels", "app"]


@pytest.mark.parametrize(
    ("text", "sql", "params"),
    [
        pytest.param(
            "payload->'metadata'->'labels'->>'app' = 'x'",
            "(((resources.payload #>> $1::text[]) = $2::text)"
            " AND ((resources.payload -> 'metadata') @> $3::text::jsonb))",
            [_LABEL, "x", '{"labels": {"app": "x"}}'],
            id="arrow-eq",
        ),
        pytest.param(
            "payload.metadata.labels.app = 5",
            "(((resources.payload #>> $1::text[]) = $2::text)"
            " AND ((resources.payload -> 'metadata') @> $3::text::jsonb"
            " OR (resources.payload -> 'metadata') @> $4::text::jsonb))",
            [_LABEL, "5", '{"labels": {"app": "5"}}', '{"labels": {"app": 5}}'],
            id="dot-eq-number-text",
        ),
        pytest.param(
            "payload.metadata.labels.app in ('x', 'true')",
            "(((resources.payload #>> $1::text[]) IN ($2::text, $3::text))"
            " AND ((resources.payload -> 'metadata') @> $4::text::jsonb"
            " OR (resources.payload -> 'metadata') @> $5::text::jsonb"
            " OR (resources.payload -> 'metadata') @> $6::text::jsonb))",
            [
                _LABEL,
                "x",
                "true",
                '{"labels": {"app": "x"}}',
                '{"labels": {"app": "true"}}',
                '{"labels": {"app": true}}',
            ],
            id="dot-in",
        ),
        pytest.param(
            """payload->'metadata'->'labels' @> '{"app":"x"}'""",
            "(((resources.payload #> $1::text[]) @> $2::text::jsonb)"
            " AND ((resources.payload -> 'metadata') @> $3::text::jsonb))",
            [["metadata", "labels"], '{"app":"x"}', '{"labels": {"app":"x"}}'],
            id="contains",
        ),
        pytest.param(
            "not (payload.metadata.labels.app = 'x')",
            "(NOT ((resources.payload #>> $1::text[]) = $2::text))",
            [_LABEL, "x"],
            id="not-is-left-alone",
        ),
        pytest.param(
            "payload.metadata.labels.app <> 'x'",
            "((resources.payload #>> $1::text[]) <> $2::text)",
            [_LABEL, "x"],
            id="ne-is-left-alone",
        ),
        pytest.param(
            """payload.metadata.labels.app = '{"a": 1}'""",
            "((resources.payload #>> $1::text[]) = $2::text)",
            [_LABEL, '{"a": 1}'],
            id="object-text-is-left-alone",
        ),
        pytest.param(
            """payload->'metadata'->'labels'->'app' @> '"x"'""",
            "((resources.payload #> $1::text[]) @> $2::text::jsonb)",
            [_LABEL, '"x"'],
            id="scalar-containment-is-left-alone",
        ),
        pytest.param(
            "payload->'metadata'->0->>'app' = 'x'",
            "((resources.payload #>> $1::text[]) = $2::text)",
            [["metadata", "0", "app"], "x"],
            id="array-index-is-left-alone",
        ),
        pytest.param(
            "payload->'manifests'->>'kind' = 'x'",
            "((resources.payload #>> $1::text[]) = $2::text)",
            [["manifests", "kind"], "x"],
            id="outside-the-index",
        ),
        pytest.param(
            "labels.app = 'x'",
            "((resources.labels #>> $1::text[]) = $2::text)",
            [["app"], "x"],
            id="column-without-index",
        ),
    ],
)
def test_indexed_json(text: str, sql: str, params: list[object]) -> None:
    assert search.compile_search(text, schema=INDEXED) == (sql, params)
