"""Emails from templates: the disabled-config notice, and one email per event type.

The templates are in ``templates/`` next to this module (package data, so an installed
wheel has them):

- ``disabled_notice.txt.j2`` / ``disabled_notice.html.j2``: the notice a config or source
  that disabled itself emails its chosen users; its subject is the text template's
  ``subject`` block.
- ``events/<event type>.txt.j2`` / ``events/<event type>.html.j2``: what a notification
  rule emails for one event of that type, both extending ``events/base.txt.j2`` /
  ``events/base.html.j2`` (the rule's name, the event's type, id, time and catalogue
  description, and a table of every payload field). The text template of a type defines
  two blocks: ``subject`` and ``summary`` (a sentence for a person); the summary is then
  shown by both bases, escaped in HTML like everything else.
- ``events/generic.txt.j2`` / ``events/generic.html.j2``: the email of a catalogue type
  without templates of its own (``uses_generic_template``).

HTML templates (``.html.j2``) are autoescaped; text templates and subjects are not. Any
name a template uses that the context does not hold is an error (``StrictUndefined``),
never an empty string. A subject is one line of at most ``SUBJECT_MAX`` characters.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, select_autoescape

from domain.catalogue import Payload, get_event_type
from domain.money import plain

TEMPLATES = Path(__file__).resolve().parent / "templates"

#: The length of the ``Email.subject`` column.
SUBJECT_MAX = 300

#: The template of an event type without its own (``events/generic.*.j2``).
GENERIC = "generic"


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class DisabledNotice:
    kind: str  # "integration" or "source"
    config_id: str
    name: str
    reason: str
    disabled_at: datetime | None
    recent_errors: list[tuple[datetime | None, str]]
    enable_cli: str
    enable_api: str


def when(at: datetime | None) -> str:
    """A time for a person, in UTC (a naive time is taken to be UTC already)."""
    if at is None:
        return "an unknown time"
    if at.tzinfo is not None:
        at = at.astimezone(UTC)
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


def shown(value: Any) -> str:
    """A payload field's value as text: money as plain decimals, times in UTC, free-form
    objects as JSON, a missing value as ``(none)``."""
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return plain(value)
    if isinstance(value, datetime):
        return when(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return str(value)


def money(amount: Decimal | None, currency: str) -> str:
    """``5000.00 USD``; a bill whose total is not known here says so."""
    if amount is None:
        return f"an unknown total in {currency}"
    return f"{plain(amount)} {currency}"


def period(start: date, end: date) -> str:
    """A billed period as people read it: its first and last day (``end`` is exclusive)."""
    return f"{start.isoformat()} \N{EN DASH} {(end - timedelta(days=1)).isoformat()}"


def quoted(text: str) -> str:
    """The text in quotes, as Python writes it (``'Chargebee <prod>'``): how the disabled
    notice has always named a config."""
    return repr(str(text))


environment = Environment(
    loader=FileSystemLoader(TEMPLATES),
    # The names end in .j2: ".html.j2" must be listed for HTML to be escaped at all.
    autoescape=select_autoescape(["html", "htm", "xml", "html.j2", "htm.j2", "xml.j2"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,
)
environment.filters.update(when=when, shown=shown, money=money, period=period, quoted=quoted)


def render_disabled_notice(notice: DisabledNotice, user_name: str) -> RenderedEmail:
    """The email a config or source that disabled itself sends each of its chosen users."""
    return render_email(
        "disabled_notice",
        {
            "notice": notice,
            "user_name": user_name,
            "recent_errors": [f"{when(at)}  {message}" for at, message in notice.recent_errors],
        },
    )


def render_event_email(
    event_type: str,
    payload: Mapping[str, Any],
    *,
    rule_name: str,
    user_name: str,
    event_id: str,
    occurred_at: datetime,
) -> RenderedEmail:
    """The email a notification rule sends ``user_name`` for one event.

    ``event_type`` must be in the catalogue (``NotFound`` otherwise) and ``payload`` must
    be valid for its model (pydantic's ``ValidationError`` otherwise); the templates see
    the payload as its model reads it (dates, decimals), as ``payload``.
    """
    catalogued = get_event_type(event_type)
    fields = catalogued.validate(payload)
    context: dict[str, Any] = {
        "event_type": catalogued.name,
        "description": catalogued.description,
        "payload": fields,
        "fields": field_rows(fields),
        "rule_name": rule_name,
        "user_name": user_name,
        "event_id": event_id,
        "occurred_at": occurred_at,
    }
    return render_email(f"events/{template_for(event_type)}", context)


def field_rows(fields: Payload) -> list[tuple[str, str]]:
    """Every field of the payload's model, in the model's order, with its value as text."""
    return [(name, shown(getattr(fields, name))) for name in type(fields).model_fields]


def template_for(event_type: str) -> str:
    """The name of the event type's templates under ``events/``: its own, or ``generic``."""
    own = TEMPLATES / "events" / f"{event_type}.txt.j2"
    return event_type if own.is_file() else GENERIC


def uses_generic_template(event_types: list[str]) -> list[str]:
    """Those of the event types that have no templates of their own."""
    return [name for name in event_types if template_for(name) == GENERIC]


def render_email(name: str, context: Mapping[str, Any]) -> RenderedEmail:
    """Render ``<name>.txt.j2`` and ``<name>.html.j2`` with the context.

    The text template's ``subject`` block is the subject. If it has a ``summary`` block,
    that is rendered first and both templates get it as ``summary``.
    """
    text = environment.get_template(f"{name}.txt.j2")
    html = environment.get_template(f"{name}.html.j2")
    context = dict(context)
    if "summary" in text.blocks:
        context["summary"] = _block(text, "summary", context).strip()
    subject = one_line(_block(text, "subject", context))
    return RenderedEmail(subject=subject, text=text.render(context), html=html.render(context))


def one_line(text: str, limit: int = SUBJECT_MAX) -> str:
    """The text on one line (every run of whitespace, newlines too, one space), cut to
    ``limit`` characters with an ellipsis."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def _block(template: Template, block: str, context: Mapping[str, Any]) -> str:
    """One block of the template rendered alone. The block must be in the template itself
    (not only in one it extends), and imports it uses must be inside it."""
    try:
        render = template.blocks[block]
    except KeyError:
        raise LookupError(f"template {template.name} has no {block!r} block") from None
    return "".join(render(template.new_context(dict(context))))
