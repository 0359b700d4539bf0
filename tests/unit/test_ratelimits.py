"""Rate limits as values: the text a config or credential holds, and back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from domain.ratelimits import MAX_COUNT, Limit


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("25/second", Limit(25, 1)),
        ("240/minute", Limit(240, 60)),
        ("20/hour", Limit(20, 3600)),
        ("1000/day", Limit(1000, 86400)),
        ("100/10 seconds", Limit(100, 10)),
        ("5 / 2 Minutes", Limit(5, 120)),
        ("3/1 hours", Limit(3, 3600)),
    ],
)
def test_limits_are_read_from_text(text: str, limit: Limit) -> None:
    assert Limit.parse(text) == limit


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("25", "is not <count>/<period>"),
        ("25/", "is not <count>/<period>"),
        ("/second", "is not <count>/<period>"),
        ("2.5/second", "is not <count>/<period>"),
        ("-1/second", "is not <count>/<period>"),
        ("25/sec", "unknown unit 'sec'"),
        ("25/fortnight", "unknown unit 'fortnight'"),
        ("0/second", "the count must be 1 to"),
        (f"{MAX_COUNT + 1}/second", "the count must be 1 to"),
        ("25/0 seconds", "a period of zero"),
    ],
)
def test_a_malformed_limit_says_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match="rate limit") as raised:
        Limit.parse(text)
    assert problem in str(raised.value)
    assert repr(text) in str(raised.value)


@given(count=st.integers(1, MAX_COUNT), period=st.integers(1, 10 * 86400))
def test_text_round_trips(count: int, period: int) -> None:
    limit = Limit(count, period)
    assert Limit.parse(str(limit)) == limit


def test_the_text_is_the_plain_one() -> None:
    assert [str(Limit(25, 1)), str(Limit(240, 60)), str(Limit(20, 3600))] == [
        "25/second",
        "240/minute",
        "20/hour",
    ]
    assert str(Limit(100, 10)) == "100/10 seconds"
    assert str(Limit(7, 7200)) == "7/2 hours"


def test_a_limit_cannot_be_built_out_of_range_or_changed() -> None:
    with pytest.raises(ValueError, match="count"):
        Limit(0, 1)
    with pytest.raises(ValueError, match="period"):
        Limit(1, 0)
    with pytest.raises(TypeError):
        Limit(1, 0.5)  # type: ignore[arg-type]
    limit = Limit(1, 1)
    with pytest.raises(AttributeError):
        limit.count = 2  # type: ignore[misc]
    assert {Limit(1, 1), Limit(1, 1), Limit(2, 1)} == {Limit(1, 1), Limit(2, 1)}


class Credential(BaseModel):
    rate_limit: Limit = Limit(25, 1)


def test_a_limit_is_a_pydantic_field_read_and_written_as_text() -> None:
    assert Credential().model_dump(mode="json") == {"rate_limit": "25/second"}
    assert Credential.model_validate_json('{"rate_limit": "240/minute"}').rate_limit == Limit(
        240, 60
    )
    assert Credential(rate_limit=Limit(20, 3600)).model_dump_json() == '{"rate_limit":"20/hour"}'
    schema = Credential.model_json_schema()["properties"]["rate_limit"]
    assert (schema["type"], schema["default"]) == ("string", "25/second")


@pytest.mark.parametrize("value", ["25/fortnight", 25, None])
def test_a_bad_field_is_one_error_at_its_path(value: object) -> None:
    with pytest.raises(ValidationError) as raised:
        Credential.model_validate({"rate_limit": value})
    errors = raised.value.errors()
    assert [error["loc"] for error in errors] == [("rate_limit",)]
    assert "rate limit" in errors[0]["msg"]
