"""Every destination meterbridge can send bills to, found by name. To add one, write its
two packages (``domain/destinations/<name>/``, ``workers/destinations/<name>/``) and add
it here and in ``workers.destinations.registry``."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from domain.destinations.chargebee import CHARGEBEE
from domain.destinations.netsuite import NETSUITE
from domain.destinations.paddle import PADDLE
from domain.destinations.quickbooks import QUICKBOOKS
from domain.destinations.spec import DestinationOptions, DestinationSpec
from domain.destinations.stripe import STRIPE
from domain.destinations.xero import XERO
from domain.errors import InvalidInput
from domain.integrations.errors import ConfigInvalid

DESTINATIONS: dict[str, DestinationSpec] = {
    spec.name: spec for spec in (CHARGEBEE, NETSUITE, PADDLE, QUICKBOOKS, STRIPE, XERO)
}


def destination(name: str) -> DestinationSpec:
    spec = DESTINATIONS.get(name)
    if spec is None:
        supported = ", ".join(sorted(DESTINATIONS))
        raise InvalidInput(
            f"destination {name!r} is not available yet (supported: {supported})",
            field="destination",
        )
    return spec


def check_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The destination's options, validated, with defaults filled in. Raises
    ``InvalidInput`` naming the field (``destination_config.<path>``)."""
    try:
        checked = destination(name).options.model_validate(options)
    except ValidationError as exc:
        raise invalid_input(exc, prefix="destination_config") from None
    return checked.model_dump(mode="json")


def options_for_run(name: str, options: dict[str, Any]) -> DestinationOptions:
    """A stored config's options; options that no longer validate fail that run alone."""
    try:
        return destination(name).options.model_validate(options)
    except ValidationError as exc:
        raise ConfigInvalid(f"the {name} options cannot be used: {exc}") from None
    except InvalidInput as exc:
        raise ConfigInvalid(str(exc)) from None


def invalid_input(exc: ValidationError, *, prefix: str = "") -> InvalidInput:
    """A plug-in model's first validation error as meterbridge's ``InvalidInput``, its
    field the full path (``destination_config.price_id_mapping.TIPS.[key]``)."""
    first = exc.errors()[0]
    path = [prefix] if prefix else []
    path += [str(part) for part in first["loc"]]
    return InvalidInput(first["msg"], field=".".join(path) or None)
