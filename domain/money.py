"""Decimal arithmetic for amounts and quantities."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

#: ISO 4217 currencies without minor units; every other currency is taken to have cents.
ZERO_DECIMAL_CURRENCIES = frozenset(
    {
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "ISK",
        "JPY",
        "KMF",
        "KRW",
        "PYG",
        "RWF",
        "UGX",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    }
)


def round_half_up(value: Decimal, places: int) -> Decimal:
    """0.13333 → 0.133 and 0.16666 → 0.167 at three places; halves go away from zero."""
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def minor_units(amount: Decimal, currency: str) -> int:
    """An amount in the currency's smallest unit (cents), rounded half up."""
    places = 0 if currency.upper() in ZERO_DECIMAL_CURRENCIES else 2
    return int(round_half_up(amount, places).scaleb(places))


def plain(value: Decimal) -> str:
    """A decimal as a plain string without exponent: Decimal('1E+2') → '100'."""
    text = format(value, "f")
    return text
