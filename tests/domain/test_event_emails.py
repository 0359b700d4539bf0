"""Every event meterbridge appends today, as the log holds it, renders as a rule's email."""

from __future__ import annotations

from datetime import UTC, datetime

from domain.catalogue import CATALOGUE
from domain.notifications.rendering import render_event_email
from tests.domain.test_catalogue import appended, emit_every_event_type
from tests.support.environment import Environment


def test_every_appended_catalogue_event_renders_as_an_email(env: Environment) -> None:
    emit_every_event_type(env)
    rendered = set()
    for event_type, payload in appended(env):
        if event_type not in CATALOGUE:
            continue  # a work item
        email = render_event_email(
            event_type,
            payload,
            rule_name="Everything",
            user_name="Ada",
            event_id="evt_1",
            occurred_at=datetime(2026, 11, 1, tzinfo=UTC),
        )
        assert email.subject.startswith("meterbridge: "), event_type
        assert event_type in email.text
        assert event_type in email.html
        rendered.add(event_type)
    # which types these are is test_catalogue's business: all those appended today
    assert {"bill.approved", "integration.disabled.error", "source.disabled"} <= rendered
