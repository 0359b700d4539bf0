"""Rate limits as values: how many calls a destination allows per period.

A ``Limit`` is written as text in configs and credentials, ``"25/second"``,
``"240/minute"``, ``"20/hour"`` or ``"100/10 seconds"``, and validates as a pydantic field
from that text::

    class StripeCredential(BaseModel):
        rate_limit: Limit = Limit(25, 1)

Enforcing a limit is the workers' business (``workers.ratelimits``: one window in Redis
that every worker process shares); this module holds no state and does no I/O.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
#: The moving window keeps one timestamp per call it allows, so a window holds at most this.
MAX_COUNT = 100_000

_SYNTAX = re.compile(r"(?P<count>\d+)\s*/\s*(?:(?P<multiple>\d+)\s*)?(?P<unit>[a-z]+)")
_EXAMPLES = "as in 25/second, 240/minute, 20/hour or 100/10 seconds"


class Limit:
    """At most ``count`` calls in any ``period_seconds`` (a moving window, not a clock
    minute: 240/minute never allows 241 calls in any 60 seconds). Immutable.

    Not a dataclass on purpose: pydantic writes a dataclass default into a JSON schema as
    an object, and a form built from the schema should show ``"25/second"``."""

    __slots__ = ("count", "period_seconds")
    count: int
    period_seconds: int

    def __init__(self, count: int, period_seconds: int) -> None:
        for name, value in (("count", count), ("period_seconds", period_seconds)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, not {type(value).__name__}")
        if not 1 <= count <= MAX_COUNT:
            raise ValueError(f"rate limit count must be 1 to {MAX_COUNT}, not {count}")
        if period_seconds < 1:
            raise ValueError(f"rate limit period must be at least 1 second, not {period_seconds}")
        object.__setattr__(self, "count", count)
        object.__setattr__(self, "period_seconds", period_seconds)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("a Limit cannot be changed")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Limit):
            return NotImplemented
        return (self.count, self.period_seconds) == (other.count, other.period_seconds)

    def __hash__(self) -> int:
        return hash((self.count, self.period_seconds))

    def __repr__(self) -> str:
        return f"Limit({self.count}, {self.period_seconds})"

    def __reduce__(self) -> tuple[type[Limit], tuple[int, int]]:
        return (Limit, (self.count, self.period_seconds))

    @classmethod
    def parse(cls, text: str) -> Limit:
        """``"<count>/<unit>"`` or ``"<count>/<n> <units>"``; units are second, minute,
        hour and day (plurals allowed). The ``ValueError`` says what is wrong."""
        if not isinstance(text, str):
            raise TypeError(f"a rate limit is text {_EXAMPLES}, not {type(text).__name__}")
        match = _SYNTAX.fullmatch(text.strip().lower())
        if match is None:
            raise ValueError(f"rate limit {text!r} is not <count>/<period>, {_EXAMPLES}")
        unit = match["unit"]
        seconds = UNITS.get(unit) or UNITS.get(unit.removesuffix("s"))
        if seconds is None:
            raise ValueError(
                f"rate limit {text!r} has unknown unit {unit!r}: use second, minute, hour "
                f"or day, {_EXAMPLES}"
            )
        multiple = int(match["multiple"]) if match["multiple"] is not None else 1
        if multiple < 1:
            raise ValueError(f"rate limit {text!r} has a period of zero")
        count = int(match["count"])
        if not 1 <= count <= MAX_COUNT:
            raise ValueError(f"rate limit {text!r}: the count must be 1 to {MAX_COUNT}")
        return cls(count, multiple * seconds)

    def __str__(self) -> str:
        """The text ``parse`` reads back: ``25/second``, ``240/minute``, ``100/10 seconds``."""
        for unit, seconds in reversed(UNITS.items()):
            if self.period_seconds % seconds == 0:
                multiple = self.period_seconds // seconds
                if multiple == 1:
                    return f"{self.count}/{unit}"
                return f"{self.count}/{multiple} {unit}s"
        raise AssertionError("every period is a whole number of seconds")

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._validate,
            serialization=core_schema.plain_serializer_function_ser_schema(str),
        )

    @classmethod
    def _validate(cls, value: object) -> Limit:
        if isinstance(value, Limit):
            return value
        if not isinstance(value, str):
            # a ValueError, not a TypeError: pydantic reports it as the field's error
            raise ValueError(f"a rate limit is text {_EXAMPLES}, not {type(value).__name__}")
        return cls.parse(value)

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "string",
            "pattern": r"^\s*\d+\s*/\s*(\d+\s*)?[A-Za-z]+\s*$",
            "description": f"At most <count> calls per period, {_EXAMPLES}.",
            "examples": ["25/second", "240/minute", "20/hour"],
        }


__all__ = ["MAX_COUNT", "Limit"]
