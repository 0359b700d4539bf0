from __future__ import annotations

import operator
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.expressions import MAX_DEPTH, MAX_LENGTH, ExpressionError, check, evaluate, parse
from domain.money import plain

ACCOUNT = {
    "id": "acc_1",
    "code": "ACME",
    "name": "Acme Ltd",
    "email": None,
    "currency": "GBP",
    "address": {"country": "GB", "city": "Leeds"},
    "custom_fields": {"country": "UK", "seats": 12, "tier": "gold", "vip": True},
}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('customFields != null AND customFields.country == "UK"', True),  # the product's example
        ("custom_fields.country = 'UK'", True),
        ('custom_fields.country = "US"', False),
        ("custom_fields.seats > 10", True),
        ("custom_fields.seats <= 11.5", False),
        ("custom_fields.vip = true", True),
        ("custom_fields.missing = null", True),
        ("email = null", True),
        ("email != null", False),
        ('currency = "GBP" AND (address.country = "GB" OR address.country = "IE")', True),
        ('NOT currency = "USD"', True),
        ('not (code = "ACME")', False),
        ('code = "ACME" or code = "OTHER" and name = "nobody"', True),  # AND binds tighter
        ('name >= "Acme"', True),
        ("custom_fields.seats = '12'", True),  # numeric text compares as a number with one
        ("custom_fields.tier > 3", False),  # text against a number: false, not an error
        ('address.city = "Leeds"', True),
        ('name = "Acme \\"Ltd\\""', False),
    ],
)
def test_evaluates_over_the_account(expression: str, expected: bool) -> None:
    assert evaluate(parse(expression), ACCOUNT) is expected


@pytest.mark.parametrize(
    ("expression", "position", "reason"),
    [
        ("custom_fields.country = = UK", 24, "expected a field or a value"),
        ("custom_fields.country = UK", 24, "unknown field 'UK'"),
        ("currency = ", 11, "end of expression"),
        ('(currency = "GBP"', 17, "expected ')'"),
        ('currency = "GBP', 11, "unterminated string"),
        ("currency = 'GBP' AND", 20, "end of expression"),
        ("balance > 3", 0, "unknown field 'balance'"),
        ("custom_fields. = 1", 15, "expected a name after '.'"),
        ("currency ~ 'x'", 9, "unexpected character '~'"),
        ("", 0, "empty expression"),
        ("code = 'x' code", 11, "unexpected 'code'"),
    ],
)
def test_mistakes_are_reported_with_their_position(
    expression: str, position: int, reason: str
) -> None:
    with pytest.raises(ExpressionError) as raised:
        parse(expression)
    assert raised.value.position == position
    assert reason in raised.value.reason


@given(st.text(max_size=60))
def test_any_text_parses_or_fails_cleanly(text: str) -> None:
    try:
        node = parse(text)
    except ExpressionError as exc:
        position = exc.position
        assert 0 <= position <= len(text)
    else:
        assert evaluate(node, ACCOUNT) in (True, False)


# --- bounds: no input reaches a RecursionError (a 500 on save, a crash on every bill) -------

GRAMMAR_PIECES = st.sampled_from(
    [
        "(",
        ")",
        "NOT ",
        " AND ",
        " OR ",
        "not ",
        "id",
        "custom_fields.seats",
        " = ",
        " > ",
        "'x'",
        '"y',
        "12",
        "-3.5",
        "true",
        "null",
        ".",
        "==",
        " ",
        "\\",
        "é",
    ]
)


def _nested(opening: str, depth: int, closing: str = "") -> str:
    return opening * depth + "code = 'ACME'" + closing * depth


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 189, 5000])
@pytest.mark.parametrize(("opening", "closing", "width"), [("(", ")", 1), ("NOT ", "", 4)])
def test_nesting_past_the_bound_is_an_expression_error_at_the_token(
    depth: int, opening: str, closing: str, width: int
) -> None:
    source = _nested(opening, depth, closing)[:MAX_LENGTH]
    with pytest.raises(ExpressionError) as raised:
        parse(source)
    assert raised.value.position == MAX_DEPTH * width  # the first token past the bound
    assert f"nested deeper than {MAX_DEPTH} levels" in raised.value.reason


@pytest.mark.parametrize(("opening", "closing"), [("(", ")"), ("NOT ", "")])
def test_nesting_up_to_the_bound_parses_and_evaluates(opening: str, closing: str) -> None:
    expected = MAX_DEPTH % 2 == 0 if opening == "NOT " else True
    assert evaluate(parse(_nested(opening, MAX_DEPTH, closing)), ACCOUNT) is expected


def test_parentheses_and_nots_count_together_and_closing_frees_a_level() -> None:
    with pytest.raises(ExpressionError) as raised:
        parse("(" * 16 + "NOT " * 17 + "id" + ")" * 16)
    assert raised.value.position == 16 + 16 * 4
    sideways = " AND ".join([_nested("(", MAX_DEPTH, ")")] * 3)  # siblings, not nesting
    assert evaluate(parse(sideways), ACCOUNT) is True


def test_an_expression_longer_than_the_bound_is_refused_at_the_bound() -> None:
    with pytest.raises(ExpressionError) as raised:
        parse("id = 1" + " " * MAX_LENGTH)
    assert raised.value.position == MAX_LENGTH
    assert f"longer than {MAX_LENGTH} characters" in raised.value.reason


def test_a_long_flat_chain_is_one_flat_node() -> None:
    chain = " AND ".join(["id"] * 285)  # 1,993 characters: as long as the bound allows
    assert len(chain) <= MAX_LENGTH
    node = parse(chain)
    assert node[0] == "and"
    assert len(node) == 286  # no depth, however long the chain
    assert evaluate(node, ACCOUNT) is True
    assert evaluate(parse(chain + " OR id"), ACCOUNT) is True


def _parsed_or_refused(text: str) -> Any:
    try:
        return parse(text)
    except ExpressionError as refused:
        return refused


def _only_typed_errors(text: str) -> None:
    outcome = _parsed_or_refused(text)
    if isinstance(outcome, ExpressionError):
        assert 0 <= outcome.position <= len(text)
        assert outcome.reason
        return
    # anything that parses also evaluates, to a boolean, over any account
    assert evaluate(outcome, ACCOUNT) in (True, False)
    assert evaluate(outcome, {}) in (True, False)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=3000))
def test_arbitrary_text_only_ever_raises_the_typed_error(text: str) -> None:
    _only_typed_errors(text)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(GRAMMAR_PIECES, max_size=400).map("".join))
def test_arbitrary_grammar_soup_only_ever_raises_the_typed_error(text: str) -> None:
    _only_typed_errors(text)


@settings(max_examples=100)
@given(
    st.lists(st.sampled_from(["(", "NOT ", "not ", "( NOT ", "(("]), min_size=1, max_size=4),
    st.integers(0, 700),
    st.sampled_from(["id", "code = 'ACME'", ""]),
    st.integers(0, 1500),
)
def test_arbitrary_deep_nesting_only_ever_raises_the_typed_error(
    unit: list[str], repeats: int, core: str, closings: int
) -> None:
    _only_typed_errors("".join(unit) * repeats + core + ")" * closings)


@given(st.floats(allow_nan=True), st.sampled_from(["<", "<=", ">", ">=", "=", "!="]))
def test_odd_numbers_in_the_account_never_raise(value: float, operator: str) -> None:
    account = {**ACCOUNT, "custom_fields": {"n": value}}
    assert evaluate(parse(f"custom_fields.n {operator} 1"), account) in (True, False)


# --- calculations: the same language over an event's fields, typed by its schema -----------

#: An event's schema as the catalogue writes one: money as decimal text, a nullable field,
#: a nested model behind a $ref, a free-form object and a list.
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "total": {"type": "string", "format": "decimal"},
        "amount": {"anyOf": [{"type": "string", "format": "decimal"}, {"type": "null"}]},
        "version": {"type": "integer"},
        "currency": {"type": "string"},
        "paid": {"type": "boolean"},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "plan": {"$ref": "#/$defs/Plan"},
        "custom_fields": {"type": "object", "additionalProperties": True},
        "lines": {"type": "array", "items": {"type": "object"}},
        "status": {"enum": ["open", "closed"]},
    },
    "$defs": {
        "Plan": {
            "type": "object",
            "properties": {"tier": {"type": "string"}, "seats": {"type": "integer"}},
            "additionalProperties": False,
        }
    },
}
EVENT = {
    "total": "5000.25",
    "amount": "999.5",
    "version": 3,
    "currency": "USD",
    "paid": False,
    "note": None,
    "plan": {"tier": "gold", "seats": 12},
    "custom_fields": {"region": "EU", "seats": 4},
    "lines": [],
    "status": "open",
}


def test_the_products_example_over_bill_approved() -> None:
    from domain.catalogue import CATALOGUE

    rule = check('total >= 5000 AND currency == "USD"', CATALOGUE["bill.approved"].schema)

    assert evaluate(rule, {"total": "5000.00", "currency": "USD"}) is True
    assert evaluate(rule, {"total": "4999.99", "currency": "USD"}) is False
    assert evaluate(rule, {"total": "12000", "currency": "EUR"}) is False
    assert evaluate(rule, {"total": None, "currency": "USD"}) is False  # unknown total


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("total >= 5000", True),
        ("total > 5000.25", False),
        ("total = 5000.250", True),  # as decimals, not as text
        ("total > amount", True),  # two decimal texts: "5000.25" < "999.5" as text
        ("amount < 1000 AND version >= 3", True),
        ('currency = "USD" AND NOT paid', True),
        ("paid = false OR total < 0", True),
        ("note = null AND amount != null", True),
        ("lines != null AND plan != null", True),  # an object or a list against null
        ('plan.tier == "gold" AND plan.seats > 10', True),
        ('custom_fields.region = "EU" AND custom_fields.seats < plan.seats', True),
        ("custom_fields.missing = null", True),
        ('status = "open"', True),
        ("(total > 1) = true", True),
        ("NOT (total < 1 OR version = 1)", True),
    ],
)
def test_a_checked_calculation_evaluates_over_the_event(expression: str, expected: bool) -> None:
    assert evaluate(check(expression, SCHEMA), EVENT) is expected


@pytest.mark.parametrize(
    ("expression", "position", "reason"),
    [
        ("totl > 1", 0, "unknown field 'totl'"),
        ("code = 'x'", 0, "unknown field 'code'"),  # the account's fields are not an event's
        ('total >= "5000"', 9, "'total' is a number but '5000' is text"),
        ("currency > 3", 11, "'currency' is text but 3 is a number"),
        ("version = true", 10, "cannot be compared"),
        ("total > amount AND plan.tier = 1", 31, "'plan.tier' is text but 1 is a number"),
        ("plan.tier.x = 1", 10, "unknown field 'plan.tier.x'"),
        ("plan.colour = 'red'", 5, "unknown field 'plan.colour'"),
        ("plan = 1", 0, "'plan' is an object: compare one of its fields"),
        ("lines != 1", 0, "'lines' is a list"),
        ("paid < true", 0, "only numbers and text can be compared with '<'"),
        ("version > null", 10, "only numbers and text"),
        ("total", 0, "'total' is a number, not a condition"),
        ("NOT amount", 4, "'amount' is null or a number, not a condition"),
        ("total > 1 AND 5", 14, "5 is a number, not a condition"),
        ('currency = "USD" OR "EUR"', 20, "'EUR' is text, not a condition"),
        ("status = 1", 9, "'status' is text but 1 is a number"),
        ("total >", 7, "end of expression"),  # the parser's own errors come through
    ],
)
def test_check_reports_a_wrong_calculation_at_the_offending_token(
    expression: str, position: int, reason: str
) -> None:
    with pytest.raises(ExpressionError) as raised:
        check(expression, SCHEMA)
    assert (raised.value.position, reason in raised.value.reason) == (position, True), raised.value


def test_check_takes_a_parsed_node_too() -> None:
    node = parse("total > 1 AND missing = 2", fields=frozenset({"total", "missing"}))
    with pytest.raises(ExpressionError) as raised:
        check(node, SCHEMA)
    assert (raised.value.position, raised.value.reason) == (14, "unknown field 'missing'")


def test_the_root_fields_are_a_parameter_and_the_filter_keeps_its_own() -> None:
    fields = frozenset({"total"})
    assert evaluate(parse("total = 1", fields=fields), {"total": 1}) is True
    with pytest.raises(ExpressionError) as raised:
        parse("code = 'ACME'", fields=fields)
    assert raised.value.reason.startswith("unknown field 'code' (fields: total;")
    assert evaluate(parse("code = 'ACME'"), ACCOUNT) is True  # FIELDS by default
    with pytest.raises(ExpressionError):
        parse("total = 1")


DECIMALS = st.decimals(
    min_value=Decimal("-1e12"), max_value=Decimal("1e12"), places=4, allow_nan=False
)
OPERATORS = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "=": operator.eq,
    "!=": operator.ne,
}


@given(DECIMALS, DECIMALS, st.sampled_from(sorted(OPERATORS)))
def test_decimal_comparisons_agree_with_pythons_decimal(
    left: Decimal, right: Decimal, symbol: str
) -> None:
    expected = OPERATORS[symbol](left, right)
    event = {"total": plain(left), "amount": plain(right)}
    # a decimal field against a literal, against a JSON number, and against another field
    assert evaluate(check(f"total {symbol} {plain(right)}", SCHEMA), event) is expected
    assert evaluate(check(f"version {symbol} {plain(right)}", SCHEMA), {"version": left}) is (
        expected
    )
    assert evaluate(check(f"total {symbol} amount", SCHEMA), event) is expected


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | DECIMALS.map(plain),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
CALCULATION_PIECES = st.sampled_from(
    [
        "(",
        ")",
        "NOT ",
        " AND ",
        " OR ",
        "total",
        "amount",
        "version",
        "currency",
        "paid",
        "plan",
        ".",
        "tier",
        "custom_fields.x",
        " = ",
        " != ",
        " < ",
        " >= ",
        "'x'",
        "12",
        "-3.5",
        "true",
        "null",
        "lines",
    ]
)


def _checked_or_refused(text: str) -> Any:
    try:
        return check(text, SCHEMA)
    except ExpressionError as refused:
        return refused


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(CALCULATION_PIECES, max_size=60).map("".join),
    st.dictionaries(st.sampled_from(sorted(SCHEMA["properties"])), JSON_VALUES),
)
def test_check_only_ever_raises_the_typed_error_and_what_passes_evaluates(
    text: str, event: dict[str, Any]
) -> None:
    outcome = _checked_or_refused(text)
    if isinstance(outcome, ExpressionError):
        assert 0 <= outcome.position <= len(text)
        return
    node = outcome
    # whatever the payload holds (a wrong type, a missing field), the answer is a boolean
    assert evaluate(node, event) in (True, False)
    assert evaluate(node, EVENT) in (True, False)
