"""Delivering notification emails through a real SMTP server, and to files without one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from domain.errors import PermanentError, TransientError
from domain.notifications.emails import Email
from domain.notifications.rendering import DisabledNotice, render_disabled_notice
from domain.settings import Settings
from tests.support.processes import free_port
from tests.support.smtp import SmtpServer, html_of, text_of
from workers.mail import deliver

NOTICE = DisabledNotice(
    "integration",
    "int_1",
    "Chargebee <prod>",
    "disabled automatically after 10 successive errors",
    None,
    [(None, "integration.authentication.error: Chargebee 401")],
    "meterbridge integrations enable int_1 --org org_1",
    "POST /api/v1/integrations/int_1/enable",
)


def email(to: str = "ada@example.com") -> Email:
    rendered = render_disabled_notice(NOTICE, "Ada")
    return Email(
        id="eml_1",
        org_id="org_1",
        notice_event_id="evt_1",
        user_id="usr_1",
        to_address=to,
        subject=rendered.subject,
        text_body=rendered.text,
        html_body=rendered.html,
    )


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


def test_the_email_names_the_config_its_errors_and_how_to_enable_it(
    smtp: SmtpServer, tmp_path: Path
) -> None:
    message_id = deliver(Settings(data_dir=tmp_path, smtp_url=smtp.url), email())
    [message] = smtp.to("ada@example.com")
    assert message["Message-ID"] == message_id == "<eml_1@meterbridge>"
    assert message["Subject"] == "meterbridge: integration 'Chargebee <prod>' was disabled"
    text, body = text_of(message), html_of(message)
    assert "Chargebee 401" in text
    assert "meterbridge integrations enable int_1 --org org_1" in text
    assert "POST /api/v1/integrations/int_1/enable" in text
    assert "Chargebee &lt;prod&gt;" in body  # escaped in HTML
    assert "<li>" in body


def test_a_server_that_is_down_is_a_transient_error(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, smtp_url=f"smtp://127.0.0.1:{free_port()}")
    with pytest.raises(TransientError, match="cannot send"):
        deliver(settings, email())


def test_a_refused_recipient_is_a_permanent_error(tmp_path: Path) -> None:
    class Refusing(SmtpServer):
        async def handle_RCPT(self, server, session, envelope, address, options):
            return "550 no such user here"

    server = Refusing().start()
    try:
        with pytest.raises(PermanentError, match="refused"):
            deliver(Settings(data_dir=tmp_path, smtp_url=server.url), email())
    finally:
        server.stop()


def test_without_smtp_messages_are_written_as_files(tmp_path: Path) -> None:
    deliver(Settings(data_dir=tmp_path, smtp_url=""), email())
    written = (tmp_path / "mail" / "eml_1.eml").read_text()
    assert "Subject: meterbridge: integration 'Chargebee <prod>' was disabled" in written
    assert "multipart/alternative" in written
