from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.expressions import MAX_DEPTH, MAX_LENGTH, ExpressionError, evaluate, parse

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
