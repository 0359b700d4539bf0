"""Chargebee's options and credential, one for one with the product's Chargebee bill
integration (see the README's "Integration configs" section)."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from domain.destinations.spec import ApiKeyCredential, DestinationOptions

SITE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class ChargebeeConfig(DestinationOptions):
    create_invoice: bool = False
    use_multidecimal: bool = False
    multidecimal_price_places: int = Field(4, ge=0, le=10)
    multidecimal_units_places: int = Field(4, ge=0, le=10)


class ChargebeeCredential(ApiKeyCredential):
    site: str = Field(
        min_length=1,
        max_length=63,
        description="The Chargebee site, e.g. acme-test: lower-case letters, digits, '-'.",
    )

    @field_validator("site")
    @classmethod
    def _site_name(cls, site: str) -> str:
        if not SITE.match(site):
            raise ValueError(
                "site must be the Chargebee site name: lower-case letters, digits, '-'"
            )
        return site
