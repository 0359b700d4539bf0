"""The event catalogue: every system event meterbridge emits, with a versioned schema.

An event type is a name, a version, a description and a pydantic model of its payload
(the ``fields``), from which its JSON Schema comes. The catalogue is what a notification
rule may reference and what its calculation is checked against (``domain.expressions.
check(calculation, event_type.schema)``), and what ``GET /api/v1/event-types`` lists.

The payload models forbid fields they do not name, so a payload that grows a field
without the catalogue saying so fails the catalogue's tests. Changing what a field means,
or removing one, is a new version.

Money is text in JSON (``"5000.00"``, never a float), marked ``"format": "decimal"`` in
the schema; the expression language compares such fields as decimals.

Not in the catalogue: the log's own work items (``integration.run.requested``,
``email.send``), which are instructions to a worker rather than news for anyone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cached_property
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from domain.errors import NotFound
from domain.money import plain

#: Decimal text as the schema states it: digits, an optional sign and fraction.
DECIMAL_PATTERN = r"^-?\d+(\.\d+)?$"

Money = Annotated[
    Decimal,
    PlainSerializer(plain, return_type=str, when_used="json"),
    WithJsonSchema(
        {"type": "string", "format": "decimal", "pattern": DECIMAL_PATTERN, "examples": ["49.90"]}
    ),
]


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BillFields(Payload):
    bill_id: str = Field(description="The bill.")
    account_id: str = Field(description="The account billed.")
    version: int = Field(ge=1, description="Generation of the bill: 1, then +1 per regeneration.")
    currency: str = Field(description="ISO 4217 code of the bill's amounts, e.g. USD.")
    period_start: date = Field(description="First day of the billed period.")
    period_end: date = Field(description="Day after the billed period (exclusive end).")
    total: Money | None = Field(
        description="Sum of the line items' subtotals; null when a line leaves its price "
        "to the destination (no subtotal), so the total is not known here."
    )


class IntegrationErrorFields(Payload):
    message: str = Field(description="What went wrong, for a person.")
    run_id: str | None = Field(None, description="The integration run that failed (bills out).")
    config_id: str | None = Field(None, description="The run's integration config.")
    bill_id: str | None = Field(None, description="The bill the run was sending.")
    error_class: str | None = Field(None, description="The failure's class, e.g. PerformFailed.")
    event_id: str | None = Field(
        None, description="The inbound event that could not be applied (subscriptions in)."
    )
    source_id: str | None = Field(None, description="The inbound event's source.")
    provider: str | None = Field(None, description="The inbound event's provider.")


class ConfigDisabledFields(Payload):
    config_id: str = Field(description="The integration config switched off.")
    consecutive_errors: int = Field(ge=1, description="Failed runs in a row.")
    reason: str = Field(description="Why it was disabled.")


class SourceDisabledFields(Payload):
    source_id: str = Field(description="The source switched off.")
    consecutive_errors: int = Field(ge=1, description="Dead events in a row.")
    reason: str = Field(description="Why it was disabled.")


class WebhookDestinationDisabledFields(Payload):
    destination_id: str = Field(description="The webhook destination switched off.")
    consecutive_errors: int = Field(
        ge=0, description="Failed messages in a row (a 410 disables it whatever the count)."
    )
    reason: str = Field(description="Why it was disabled.")


class RunCompletedFields(Payload):
    run_id: str = Field(description="The integration run.")
    config_id: str = Field(description="Its integration config.")
    destination: str = Field(description="Where the bill went: chargebee, stripe, paddle, ...")
    bill_id: str = Field(description="The bill sent.")
    bill_version: int = Field(ge=1, description="The bill's version the run sent.")
    trigger: str = Field(description="The event that started it: bill.generated or bill.approved.")
    invoice_id: str | None = Field(description="The destination's document, when it made one.")
    items_added: int = Field(ge=0, description="Lines added at the destination.")
    items_removed: int = Field(ge=0, description="Lines removed at the destination.")
    attempts: int = Field(ge=1, description="Attempts the run took.")
    finished_at: datetime = Field(description="When the run completed.")


class AccountFields(Payload):
    account_id: str = Field(description="The account.")
    code: str = Field(description="Its code, unique in the organisation.")
    name: str
    email: str | None
    currency: str | None = Field(description="ISO 4217 code, when the account has one.")
    address: dict[str, Any] = Field(description="Free-form address fields.")
    custom_fields: dict[str, Any] = Field(description="Free-form custom fields.")


class AccountPlanFields(Payload):
    account_plan_id: str = Field(description="The account plan.")
    account_id: str = Field(description="The account on the plan.")
    plan_id: str = Field(description="The plan.")
    provider: str = Field(description="The subscription's provider: chargebee, stripe, paddle.")
    external_subscription_id: str = Field(description="The provider's subscription.")
    status: str = Field(description="The subscription's status at the provider.")
    start_at: datetime | None = Field(description="When the plan starts.")
    end_at: datetime | None = Field(description="When the plan ends; null: open-ended.")


class DeadEventFields(Payload):
    event_id: str = Field(description="The event that ended dead (a dead letter).")
    source_id: str | None = Field(description="Its source; null for an internal event.")
    provider: str = Field(description="Its provider; meterbridge for an internal event.")
    type: str = Field(description="Its type.")
    attempts: int = Field(ge=0, description="Attempts made.")
    dead_reason: str | None = Field(description="Why it stopped: e.g. permanent, exhausted.")
    last_error: str | None = Field(description="The last attempt's error.")
    dead_at: datetime = Field(description="When it ended dead.")


# Scheduled events (``schedule.*``): made by beat for one notification rule when its
# schedule is due (``domain.notifications.scheduled``). Each covers a window, from the due
# time of the rule's previous scheduled event to this one's (the first: one interval, or
# from the cron time before, back from the due time); counts "in the window" take
# ``window_start`` inclusive and ``window_end`` exclusive. Figures of the present state
# (open dead letters, bills not approved, error streaks, disabled configs) are read when
# the event is made, ``evaluated_at``, and ages are measured to that time.

_WINDOW_START = (
    "Start of the window (inclusive): the due time of the rule's previous scheduled "
    "event; for its first, one interval (or from the cron time before) back from window_end."
)
_WINDOW_END = "End of the window (exclusive): the due time this event was made for."
_EVALUATED_AT = "When the figures were read (beat's check, shortly after window_end)."


class ScheduledDeadLettersFields(Payload):
    count: int = Field(ge=0, description="Dead letters of the organisation open now (dead).")
    oldest_age_seconds: int | None = Field(
        ge=0,
        description="Seconds from the oldest open dead letter's death to evaluated_at; "
        "null when there is none.",
    )
    oldest_event_id: str | None = Field(
        description="The oldest open dead letter (earliest dead_at); null when there is none."
    )
    died_in_window: int = Field(
        ge=0, description="Open dead letters that ended dead in the window."
    )
    window_start: datetime = Field(description=_WINDOW_START)
    window_end: datetime = Field(description=_WINDOW_END)
    evaluated_at: datetime = Field(description=_EVALUATED_AT)


class ScheduledBillsAwaitingApprovalFields(Payload):
    count: int = Field(ge=0, description="Bills of the organisation generated, not approved.")
    oldest_age_seconds: int | None = Field(
        ge=0,
        description="Seconds from the oldest such bill's first generation to evaluated_at; "
        "null when there is none.",
    )
    oldest_bill_id: str | None = Field(
        description="The bill awaiting approval the longest; null when there is none."
    )
    generated_in_window: int = Field(
        ge=0, description="Bills awaiting approval that were first generated in the window."
    )
    approved_in_window: int = Field(ge=0, description="Bills approved in the window.")
    window_start: datetime = Field(description=_WINDOW_START)
    window_end: datetime = Field(description=_WINDOW_END)
    evaluated_at: datetime = Field(description=_EVALUATED_AT)


class ConfigHealth(Payload):
    config_id: str = Field(description="The integration config.")
    name: str = Field(description="Its name.")
    destination: str = Field(description="Where it sends bills: chargebee, stripe, paddle, ...")
    enabled: bool = Field(description="Whether it is enabled now.")
    runs: int = Field(ge=0, description="Its runs that finished in the window, either way.")
    errors: int = Field(
        ge=0, description="Of those, the runs that ended in error (ERROR or AUTH_FAILED)."
    )
    consecutive_errors: int = Field(ge=0, description="Its failed runs in a row, now.")


class ScheduledIntegrationHealthFields(Payload):
    window_start: datetime = Field(description=_WINDOW_START)
    window_end: datetime = Field(description=_WINDOW_END)
    evaluated_at: datetime = Field(description=_EVALUATED_AT)
    configs: list[ConfigHealth] = Field(
        description="Every integration config of the organisation, in id order."
    )
    runs: int = Field(ge=0, description="Runs of all configs that finished in the window.")
    errors: int = Field(ge=0, description="Of those, the runs that ended in error.")
    configs_failing: int = Field(ge=0, description="Configs with at least one error in the window.")
    max_consecutive_errors: int = Field(
        ge=0, description="The longest streak of failed runs of any config, now (0: none)."
    )
    disabled_configs: int = Field(ge=0, description="Configs disabled now.")


@dataclass(frozen=True)
class EventType:
    name: str
    version: int
    description: str
    fields: type[Payload]
    #: False: in the catalogue (rules may reference it) but nothing appends it yet.
    emitted: bool = True

    @cached_property
    def schema(self) -> dict[str, Any]:
        """The payload's JSON Schema, as the payload is sent (money as decimal text)."""
        schema = self.fields.model_json_schema(mode="serialization")
        return {"title": self.name, "description": self.description, **_without_title(schema)}

    def validate(self, payload: Mapping[str, Any]) -> Payload:
        """The payload read by its model; raises pydantic's ``ValidationError``."""
        return self.fields.model_validate(payload)


def _without_title(schema: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in schema.items() if key not in ("title", "description")}


_RUN_ERROR = (
    "An integration run ended without sending its bill, {what}; or (missing account "
    "mapping only) an inbound subscription event named a customer no account maps to. "
    "A run's error sets run_id, config_id, bill_id and error_class; an inbound event's "
    "sets event_id, source_id and provider."
)

_TYPES = [
    EventType(
        "bill.generated",
        1,
        "A bill was generated or regenerated (its version goes up); it may still change.",
        BillFields,
    ),
    EventType("bill.approved", 1, "A bill was approved: it is final.", BillFields),
    EventType(
        "integration.run.completed",
        1,
        "An integration run sent its bill to the destination.",
        RunCompletedFields,
    ),
    EventType(
        "integration.authentication.error",
        1,
        _RUN_ERROR.format(
            what="because the destination refused the credential (or none is attached)"
        ),
        IntegrationErrorFields,
    ),
    EventType(
        "integration.perform.error",
        1,
        _RUN_ERROR.format(
            what="because the destination refused a request or the result could not be kept exact"
        ),
        IntegrationErrorFields,
    ),
    EventType(
        "integration.validation.error",
        1,
        _RUN_ERROR.format(what="because the bill cannot be mapped with the config"),
        IntegrationErrorFields,
    ),
    EventType(
        "integration.missingaccountmapping.error",
        1,
        _RUN_ERROR.format(what="because the bill's account maps to no remote customer"),
        IntegrationErrorFields,
    ),
    EventType(
        "integration.disabled.error",
        1,
        "An integration config disabled itself after successive failed runs.",
        ConfigDisabledFields,
    ),
    EventType(
        "source.disabled",
        1,
        "A source disabled itself after successive dead events.",
        SourceDisabledFields,
    ),
    EventType(
        "webhook_destination.disabled",
        1,
        "A webhook destination was disabled: its receiver answered 410 Gone, or 10 "
        "messages in a row used up their retries.",
        WebhookDestinationDisabledFields,
    ),
    EventType(
        "account.created",
        1,
        "An account was created: through the API, or for a provider's customer that an "
        "inbound customer or subscription event named.",
        AccountFields,
    ),
    EventType(
        "account_plan.created",
        1,
        "An account was put on a plan: an inbound subscription event named a new subscription.",
        AccountPlanFields,
    ),
    EventType(
        "account_plan.updated",
        1,
        "An account plan changed (status, dates, plan or account), other than getting an "
        "end date (that is account_plan.ended); a reactivation that clears the end is one.",
        AccountPlanFields,
    ),
    EventType(
        "account_plan.ended",
        1,
        "An account plan got an end date: its subscription was cancelled, at once or from "
        "a later date (end_at says when, and may still be ahead). A new plan that already "
        "has one logs account_plan.created, then this.",
        AccountPlanFields,
    ),
    EventType(
        "event.dead",
        1,
        "An event used up its attempts or failed permanently and waits in the dead letters. "
        "Not logged for event.dead itself, nor for a notification's delivery (email.send and "
        "the other types with a task of their own), which keeps its own failure record.",
        DeadEventFields,
    ),
    EventType(
        "schedule.dead_letters",
        1,
        "Scheduled (a rule's cron or interval): the organisation's open dead letters, how "
        "many and how old the oldest is, and how many ended dead in the window.",
        ScheduledDeadLettersFields,
    ),
    EventType(
        "schedule.bills_awaiting_approval",
        1,
        "Scheduled (a rule's cron or interval): the organisation's bills generated but not "
        "approved, how many and how long the oldest has waited; and those generated and "
        "approved in the window.",
        ScheduledBillsAwaitingApprovalFields,
    ),
    EventType(
        "schedule.integration_health",
        1,
        "Scheduled (a rule's cron or interval): per integration config, its runs and errors "
        "finished in the window and its failed runs in a row now; with the totals.",
        ScheduledIntegrationHealthFields,
    ),
]

CATALOGUE: Mapping[str, EventType] = {event_type.name: event_type for event_type in _TYPES}


def event_types() -> list[EventType]:
    return sorted(CATALOGUE.values(), key=lambda event_type: event_type.name)


def get_event_type(name: str) -> EventType:
    try:
        return CATALOGUE[name]
    except KeyError:
        raise NotFound(f"no event type {name!r}") from None


def sample(event_type: EventType) -> dict[str, Any]:
    """A payload of the type with a plausible value in every field, made from its schema
    (what ``POST /api/v1/webhook-destinations/{id}/test`` sends); it validates."""
    schema = event_type.schema
    defs = schema.get("$defs", {})
    payload = {
        name: _sample_value(name, prop, defs)
        for name, prop in schema.get("properties", {}).items()
    }
    event_type.validate(payload)
    return payload


def _sample_value(name: str, prop: Mapping[str, Any], defs: Mapping[str, Any]) -> Any:
    if "$ref" in prop:
        return _sample_value(name, defs[prop["$ref"].rsplit("/", 1)[-1]], defs)
    for branch in prop.get("anyOf", ()):
        if branch.get("type") != "null":
            return _sample_value(name, branch, defs)
    kind, text_format = prop.get("type"), prop.get("format")
    if kind == "integer":
        return max(1, int(prop.get("minimum", 1)))
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    if kind == "object":
        return {}
    if kind == "array":
        return []
    samples = {"decimal": "49.90", "date": "2026-11-01", "date-time": "2026-11-01T09:30:00Z"}
    if text_format in samples:
        return samples[text_format]
    if name == "currency":
        return "USD"
    return f"{name.removesuffix('_id')}_sample" if name.endswith("_id") else f"sample {name}"
