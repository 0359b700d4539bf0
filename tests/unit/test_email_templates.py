"""Emails from templates: every catalogue type has its own, values are escaped in HTML
and only there, a name a template lacks is an error, and a subject is one short line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from jinja2 import UndefinedError

from domain import catalogue
from domain.catalogue import CATALOGUE, AccountFields, EventType, event_types
from domain.notifications import rendering
from domain.notifications.rendering import (
    GENERIC,
    SUBJECT_MAX,
    DisabledNotice,
    RenderedEmail,
    environment,
    render_disabled_notice,
    render_email,
    render_event_email,
    uses_generic_template,
)

#: Catalogue types whose email is the generic one (events/generic.*.j2). Give a new type
#: templates of its own, or name it here on purpose.
RELY_ON_GENERIC: set[str] = set()

HOSTILE = '<script>alert("x")</script> & \'Tom & Jerry\' "quoted"'
ESCAPED = (
    "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; "
    "&amp; &#39;Tom &amp; Jerry&#39; &#34;quoted&#34;"
)
WHEN = datetime(2026, 11, 1, 10, 30, tzinfo=UTC)


def sample(event_type: EventType, *, optional: bool = True) -> dict[str, Any]:
    """A payload built from the type's schema: every text field hostile. ``optional=False``:
    every field that may be null is."""
    schema = event_type.schema
    payload = {}
    for name, field in schema["properties"].items():
        options = [o for o in field.get("anyOf", [field]) if o.get("type") != "null"]
        if not optional and len(options) < len(field.get("anyOf", [field])):
            payload[name] = None
            continue
        [option] = options
        payload[name] = _value(name, option)
    event_type.validate(payload)  # the sample is one the model accepts
    return payload


def _value(name: str, schema: dict[str, Any]) -> Any:
    kind, format = schema.get("type"), schema.get("format")
    if format == "date":
        return "2026-11-01" if name.endswith("_end") else "2026-10-01"
    if format == "date-time":
        return "2026-10-31T23:59:59+02:00"
    if format == "decimal":
        return "5000.00"
    if kind == "integer":
        return max(schema.get("minimum", 0), 3)
    if kind == "object":
        return {"note": HOSTILE}
    if kind == "array":
        return []
    assert kind == "string", (name, schema)
    return HOSTILE


def event_email(name: str, payload: dict[str, Any], **overrides: Any) -> RenderedEmail:
    arguments = {
        "rule_name": HOSTILE,
        "user_name": HOSTILE,
        "event_id": "evt_1",
        "occurred_at": WHEN,
    }
    return render_event_email(name, payload, **{**arguments, **overrides})


def test_every_catalogue_type_has_templates_of_its_own_or_is_named_as_generic() -> None:
    assert set(uses_generic_template(list(CATALOGUE))) == RELY_ON_GENERIC
    for name in set(CATALOGUE) - RELY_ON_GENERIC:
        text = environment.get_template(f"events/{name}.txt.j2")
        environment.get_template(f"events/{name}.html.j2")
        # rendered alone, so they must be in the type's own template
        assert {"subject", "summary"} <= set(text.blocks), name


def test_a_catalogue_type_without_templates_of_its_own_gets_the_generic_email(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    new_type = EventType(
        "schedule.example", 1, "Something <scheduled> & due.", catalogue.SourceDisabledFields
    )
    monkeypatch.setitem(catalogue.CATALOGUE, new_type.name, new_type)
    assert uses_generic_template([new_type.name, "bill.approved"]) == [new_type.name]

    email = event_email(new_type.name, sample(new_type))

    assert email.subject == "meterbridge: schedule.example evt_1"
    assert "\nSomething <scheduled> & due.\n" in email.text  # the description as summary
    assert "<p>Something &lt;scheduled&gt; &amp; due.</p>" in email.html
    assert f"  source_id           {HOSTILE}\n" in email.text


def test_the_generic_email_shows_any_type_s_payload(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rendering, "template_for", lambda event_type: GENERIC)
    for event_type in event_types():
        email = event_email(event_type.name, sample(event_type))
        assert email.subject == f"meterbridge: {event_type.name} evt_1"
        assert event_type.description in email.text
        assert HOSTILE in email.text
        assert ESCAPED in email.html
        assert "<script>" not in email.html


@pytest.mark.parametrize("optional", [True, False], ids=["all-set", "nullable-null"])
@pytest.mark.parametrize("event_type", event_types(), ids=lambda event_type: event_type.name)
def test_every_type_renders_every_field_escaped_in_html_and_verbatim_in_text(
    event_type: EventType, optional: bool
) -> None:
    payload = sample(event_type, optional=optional)
    email = event_email(event_type.name, payload)

    assert email.text.startswith(f"Hello {HOSTILE},\n")
    assert f'notification rule "{HOSTILE}"' in email.text
    assert "evt_1 at 2026-11-01 10:30:00 UTC" in email.text
    assert event_type.description in email.text
    assert email.html.startswith(f"<html><body>\n<p>Hello {ESCAPED},</p>")
    assert f"<strong>{ESCAPED}</strong>" in email.html
    for name in payload:
        assert f"\n  {name} " in email.text
        assert f"<code>{name}</code>" in email.html
    if HOSTILE in payload.values():
        assert f"  {HOSTILE}\n" in email.text
        assert f">{ESCAPED}</td>" in email.html
    # nothing of a value reaches the HTML unescaped
    for raw in ("<script>", '"x"', "'Tom", "& 'Tom"):
        assert raw not in email.html
    assert "&amp;amp;" not in email.html  # nor escaped twice

    assert email.subject.startswith("meterbridge: ")
    assert "\n" not in email.subject
    assert "\r" not in email.subject
    assert len(email.subject) <= SUBJECT_MAX
    assert email.subject.strip() == email.subject
    # the summary comes before the rule's name, and is the same sentence in both parts
    summary = email.text.split("\n")[2]
    assert summary
    assert summary not in (f'Your notification rule "{HOSTILE}" matched this event:', "")


def test_the_summary_of_an_approved_bill() -> None:
    payload = {
        "bill_id": "bil_x",
        "account_id": "acc_y",
        "version": 2,
        "currency": "USD",
        "period_start": "2026-10-01",
        "period_end": "2026-11-01",
        "total": "5000.00",
    }
    email = event_email("bill.approved", payload)
    summary = (
        "Bill bil_x for account acc_y approved: 5000.00 USD for 2026-10-01 \N{EN DASH} 2026-10-31"
    )
    assert email.subject == "meterbridge: bill bil_x approved (5000.00 USD)"
    assert f"\n{summary}\n" in email.text
    assert f"<p>{summary}</p>" in email.html
    unknown = event_email("bill.approved", {**payload, "total": None})
    assert "approved: an unknown total in USD for" in unknown.text


def test_times_are_shown_in_utc() -> None:
    payload = sample(CATALOGUE["event.dead"])
    email = event_email(
        "event.dead", payload, occurred_at=WHEN.astimezone(timezone(timedelta(hours=-5)))
    )
    assert "evt_1 at 2026-11-01 10:30:00 UTC" in email.text
    assert "2026-10-31 21:59:59 UTC" in email.text  # dead_at, given at +02:00


def test_a_subject_is_one_line_of_at_most_the_columns_length() -> None:
    payload = {"message": "line one\r\nline two\n\n" + "x" * 1000, "run_id": "run_1"}
    email = event_email("integration.perform.error", payload)
    assert email.subject.startswith("meterbridge: integration perform error: line one line two x")
    assert len(email.subject) == SUBJECT_MAX
    assert email.subject.endswith("x…")
    # the text keeps the message as it is
    assert "line one\r\nline two\n\n" in email.text


def test_a_name_the_context_lacks_is_an_error_not_blank() -> None:
    account = AccountFields(
        account_id="acc_1",
        code="A1",
        name="A",
        email=None,
        currency=None,
        address={},
        custom_fields={},
    )
    context = {
        "event_type": "bill.approved",
        "description": "",
        "payload": account,  # no bill_id, total, ...
        "fields": [],
        "rule_name": "r",
        "user_name": "u",
        "event_id": "evt_1",
        "occurred_at": WHEN,
    }
    with pytest.raises(UndefinedError, match="bill_id"):
        render_email("events/bill.approved", context)
    for name in ("events/base.txt.j2", "events/base.html.j2", "disabled_notice.html.j2"):
        with pytest.raises(UndefinedError):
            environment.get_template(name).render()


def test_an_event_type_not_in_the_catalogue_or_a_payload_it_does_not_accept_is_refused() -> None:
    from pydantic import ValidationError

    from domain.errors import NotFound

    with pytest.raises(NotFound):
        event_email("no.such.type", {})
    with pytest.raises(ValidationError):
        event_email("bill.approved", {"bill_id": "bil_1"})


NOTICE = DisabledNotice(
    "integration",
    "int_1",
    HOSTILE,
    f"reason {HOSTILE}",
    datetime(2026, 1, 2, 3, 4, 5),
    [(datetime(2026, 1, 1), f"error {HOSTILE}"), (None, "another")],
    "meterbridge integrations enable int_1 --org org_1",
    "POST /api/v1/integrations/int_1/enable",
)


def test_the_disabled_notice_is_escaped_in_html_and_verbatim_in_text() -> None:
    email = render_disabled_notice(NOTICE, HOSTILE)
    assert email.subject == f"meterbridge: integration {HOSTILE!r} was disabled"
    assert email.text == "\n".join(
        [
            f"Hello {HOSTILE},",
            "",
            f"The integration {HOSTILE!r} (int_1) was disabled at 2026-01-02 03:04:05 UTC: "
            f"reason {HOSTILE}.",
            "Its work is kept, not sent, until it is enabled again.",
            "",
            "Most recent errors:",
            f"  2026-01-01 00:00:00 UTC  error {HOSTILE}",
            "  an unknown time  another",
            "",
            "When the cause is fixed, enable it again; the held work is then released in order:",
            "  meterbridge integrations enable int_1 --org org_1",
            "  or POST /api/v1/integrations/int_1/enable",
            "",
            "You receive this because you are on its list of users to notify.",
        ]
    )
    assert f"<p>Hello {ESCAPED},</p>" in email.html
    assert f"<strong>{ESCAPED}</strong>" in email.html
    assert f"reason {ESCAPED}." in email.html
    assert f"<li><code>2026-01-01 00:00:00 UTC  error {ESCAPED}</code></li>" in email.html
    assert "<script>" not in email.html


def test_a_disabled_notice_without_errors_says_so() -> None:
    email = render_disabled_notice(
        DisabledNotice("source", "src_1", "S", "r", None, [], "cli", "api"), "Ada"
    )
    assert "Most recent errors:\n  (none recorded)\n" in email.text
    assert "<li>(none recorded)</li>" in email.html
    assert "disabled at an unknown time: r." in email.text
