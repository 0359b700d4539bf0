from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.expressions import ExpressionError, evaluate, parse

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
