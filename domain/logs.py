"""structlog for every process: JSON lines when not on a terminal, readable otherwise.

Context (event_id, source_id, task_id, attempt) is bound with contextvars, so every line
a task writes carries it. Payload bodies and secrets are never passed to a logger.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from types import TracebackType
from typing import Any

import structlog
from sqlalchemy.exc import DBAPIError, StatementError
from structlog.typing import EventDict, WrappedLogger

_configured = False


def configure_logging(level: str = "INFO", fmt: str = "auto") -> None:
    global _configured
    if _configured:
        return
    _configured = True
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_sql_errors,
        _drop_sensitive,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info if as_json else _identity,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


SENSITIVE_KEYS = frozenset({"payload", "body", "secret", "password", "api_key", "authorization"})


def _drop_sensitive(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    for key in SENSITIVE_KEYS & event_dict.keys():
        event_dict[key] = "[redacted]"
    return event_dict


def _identity(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    return event_dict


# --- SQL errors: the class and the statement, never the parameters -------------------------
#
# A SQLAlchemy error's text carries the statement's parameters (ciphertexts, emails, payload
# fields) and the driver's message can quote a row's values ("DETAIL: Key (x)=(...)"). Such
# an error is logged, and stored as an event's ``last_error``, as its class, the driver's
# error class and the statement with its placeholders: never a value.


def _sql_in_chain(error: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, StatementError) or _is_driver_error(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _is_driver_error(error: BaseException) -> bool:
    return type(error).__module__.split(".")[0] in ("psycopg", "psycopg2", "sqlite3", "asyncpg")


def describe_error(error: BaseException) -> str:
    """``Class: message`` for any error; for a SQL error, the redacted form."""
    if isinstance(error, StatementError):
        driver = type(error.orig).__name__ if error.orig is not None else None
        code = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
        parts = [type(error).__name__]
        if driver:
            parts.append(f"{driver}{f' ({code})' if code else ''}")
        statement = " ".join(str(error.statement or "").split())
        return ": ".join(parts) + f" [SQL: {statement}]"
    if _is_driver_error(error) or isinstance(error, DBAPIError):
        code = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
        return f"{type(error).__name__}{f' ({code})' if code else ''}"
    if _sql_in_chain(error):  # a wrapper's text may quote the SQL error's values
        return f"{type(error).__name__}: [message withheld: caused by a SQL error]"
    return f"{type(error).__name__}: {strip_sql_values(str(error))}"


_PARAMETERS = re.compile(r"\[parameters: .*?\](?=\s*(?:\(Background|\Z))", re.DOTALL)
_DETAIL = re.compile(r"^DETAIL:.*$", re.MULTILINE)


def strip_sql_values(text: str) -> str:
    """A message that quotes a SQL error's text (a wrapper's ``f"... {exc}"``), without
    the parameters and the driver's DETAIL line."""
    return _DETAIL.sub("DETAIL: [redacted]", _PARAMETERS.sub("[parameters redacted]", text))


def _redacted_traceback(error: BaseException) -> str:
    """The traceback as Python prints it, each exception's text replaced by
    ``describe_error`` when it is a SQL error (and the chain followed the same way)."""
    lines: list[str] = []
    chain: list[tuple[BaseException, str | None]] = []
    seen: set[int] = set()
    current: BaseException | None = error
    link: str | None = None
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append((current, link))
        if current.__cause__ is not None:
            current, link = current.__cause__, "The above exception was the direct cause"
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, "During handling of the above exception"
        else:
            current = None
    links = [*[link for _, link in chain][1:], None]
    for (exc, _), following in zip(reversed(chain), reversed(links), strict=True):
        if following is not None:
            lines.append(f"\n{following} ...:\n\n")
        tb: TracebackType | None = exc.__traceback__
        if tb is not None:
            lines.append("Traceback (most recent call last):\n")
            lines.extend(traceback.format_tb(tb))
        lines.append(f"{type(exc).__module__}.{describe_error(exc)}\n")
    return "".join(lines)


def _exception(exc_info: Any) -> BaseException | None:
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple) and len(exc_info) == 3:
        return exc_info[1] if isinstance(exc_info[1], BaseException) else None
    if exc_info is True:
        return sys.exc_info()[1]
    return None


def redact_sql_errors(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """A logged exception with SQL anywhere in its chain is rendered here, redacted,
    instead of by the formatter (which would print the parameters)."""
    error = _exception(event_dict.get("exc_info"))
    if error is not None and _sql_in_chain(error):
        del event_dict["exc_info"]
        event_dict["exception"] = _redacted_traceback(error)
    for key in ("error", "reason"):
        value = event_dict.get(key)
        if isinstance(value, BaseException) and _sql_in_chain(value):
            event_dict[key] = describe_error(value)
    return event_dict
