"""Delivering email: SMTP from ``METERBRIDGE_SMTP_URL``, or files when none is set.

``smtp://user:pass@host:587`` sends with STARTTLS when the server offers it
(``?starttls=require`` insists, ``?starttls=off`` never tries); ``smtps://host:465`` is
TLS from the first byte. Without a URL each message is written to
``<data dir>/mail/<email id>.eml``. Refusals with a 5xx code are permanent; an unreachable
server, a timeout or a 4xx code are transient and retried with backoff.
"""

from __future__ import annotations

import os
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from urllib.parse import parse_qs, unquote, urlsplit

import structlog

from domain.errors import PermanentError, TransientError
from domain.notifications.emails import Email
from domain.settings import Settings

log = structlog.get_logger(__name__)


def build_message(email: Email, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = email.to_address
    message["Subject"] = email.subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    # Derived from the email's id, so a resend after a lost answer carries the same id.
    message["Message-ID"] = f"<{email.id}@meterbridge>"
    message.set_content(email.text_body)
    message.add_alternative(email.html_body, subtype="html")
    return message


def deliver(settings: Settings, email: Email) -> str:
    """Send the email; returns its Message-ID."""
    message = build_message(email, settings.mail_from)
    if not settings.smtp_url:
        return _write_file(settings, email, message)
    url = urlsplit(settings.smtp_url)
    starttls = parse_qs(url.query).get("starttls", ["auto"])[0]
    port = url.port or (465 if url.scheme == "smtps" else 25)
    try:
        if url.scheme == "smtps":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                url.hostname or "localhost",
                port,
                timeout=settings.smtp_timeout_seconds,
                context=ssl.create_default_context(),
            )
        else:
            client = smtplib.SMTP(
                url.hostname or "localhost", port, timeout=settings.smtp_timeout_seconds
            )
        with client:
            client.ehlo()
            if url.scheme == "smtp" and (
                starttls == "require" or (starttls == "auto" and client.has_extn("starttls"))
            ):
                client.starttls(context=ssl.create_default_context())
                client.ehlo()
            if url.username:
                client.login(unquote(url.username), unquote(url.password or ""))
            client.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        if all(code >= 500 for code in codes):
            raise PermanentError(f"the SMTP server refused {email.to_address}: {codes}") from exc
        raise TransientError(f"the SMTP server deferred {email.to_address}: {codes}") from exc
    except smtplib.SMTPResponseException as exc:
        text = f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"
        if exc.smtp_code >= 500:
            raise PermanentError(text) from exc
        raise TransientError(text) from exc
    except (OSError, smtplib.SMTPException) as exc:
        raise TransientError(
            f"cannot send through {url.hostname}:{port}: {type(exc).__name__}"
        ) from exc
    log.info("email.sent", email_id=email.id, server=f"{url.hostname}:{port}")
    return str(message["Message-ID"])


def _write_file(settings: Settings, email: Email, message: EmailMessage) -> str:
    folder = settings.data_dir / "mail"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{email.id}.eml"
    partial = path.with_suffix(".eml.partial")
    partial.write_bytes(bytes(message))
    os.replace(partial, path)
    log.info("email.written", email_id=email.id, path=str(path))
    return str(message["Message-ID"])
