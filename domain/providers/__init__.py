"""Inbound providers: how each one signs its webhooks and where its envelope keeps the
event id, type and time. New providers register in ``PROVIDERS``."""

from __future__ import annotations

from domain.errors import InvalidInput
from domain.providers.base import Envelope, Provider
from domain.providers.chargebee import ChargebeeProvider
from domain.providers.generic import GenericProvider
from domain.providers.paddle import PaddleProvider
from domain.providers.stripe import StripeProvider

PROVIDERS: dict[str, Provider] = {
    "generic": GenericProvider(),
    "chargebee": ChargebeeProvider(),
    "stripe": StripeProvider(),
    "paddle": PaddleProvider(),
}


def provider_for(name: str) -> Provider:
    try:
        return PROVIDERS[name]
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise InvalidInput(f"unknown provider {name!r}; known providers: {known}") from None


__all__ = ["PROVIDERS", "Envelope", "Provider", "provider_for"]
