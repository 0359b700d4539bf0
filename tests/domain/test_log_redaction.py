"""A SQL error is logged and recorded as its class and its statement: the parameters (which
can be ciphertexts) and the driver's quotes of values never reach a log line or a
``last_error``."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
import structlog
from sqlalchemy.exc import DBAPIError

from domain.logs import describe_error, redact_sql_errors
from domain.processing import _describe
from tests.support.environment import Environment

SECRET = "gAAAAABciphertext-SECRET"


def sql_error(env: Environment) -> DBAPIError:
    with pytest.raises(DBAPIError) as raised, env.engine.connect() as connection:
        # the driver's message quotes the value, and SQLAlchemy appends the parameters
        connection.execute(sa.text("SELECT CAST(:ciphertext AS integer)"), {"ciphertext": SECRET})
    assert SECRET in str(raised.value)  # what used to be logged and stored
    return raised.value


def rendered(error: BaseException) -> str:
    """One log line as the JSON processors of ``configure_logging`` render it."""
    event = {"event": "handler.unexpected_error", "exc_info": error, "error": error}
    event = redact_sql_errors(None, "warning", event)
    event = structlog.processors.format_exc_info(None, "warning", event)
    return str(structlog.processors.JSONRenderer()(None, "warning", event))


def test_a_sql_error_is_described_by_class_and_statement(env: Environment) -> None:
    error = sql_error(env)

    described = describe_error(error)
    assert SECRET not in described
    assert described.startswith("DataError: InvalidTextRepresentation (22P02)")
    assert "[SQL: SELECT CAST(%(ciphertext)s AS integer)]" in described
    assert SECRET not in _describe(error)  # an attempt's error and an event's last_error


def test_a_logged_sql_error_keeps_its_traceback_without_the_values(env: Environment) -> None:
    error = sql_error(env)
    try:
        raise RuntimeError(f"the handler failed: {error}") from error  # a careless wrapper
    except RuntimeError as wrapped:
        line = rendered(wrapped)

    assert SECRET not in line
    record = json.loads(line)
    assert "exc_info" not in record
    assert "Traceback (most recent call last)" in record["exception"]
    assert (
        "sqlalchemy.exc.DataError: InvalidTextRepresentation (22P02) [SQL: SELECT"
        in record["exception"]
    )
    assert "RuntimeError: [message withheld: caused by a SQL error]" in record["exception"]


def test_other_errors_are_logged_as_before() -> None:
    try:
        raise ValueError("plain")
    except ValueError as error:
        line = json.loads(rendered(error))
    assert "ValueError: plain" in line["exception"]
    assert describe_error(ValueError("plain")) == "ValueError: plain"


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """The test configures logging as a process does; put it back afterwards, or later
    log lines (of other threads too) go to this test's closed capture stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    config = structlog.get_config()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)


@pytest.mark.usefixtures("restored_logging")
def test_the_processor_is_in_every_process_logging_chain(
    env: Environment, capsys: pytest.CaptureFixture[str]
) -> None:
    from domain import logs

    monkey = pytest.MonkeyPatch()
    monkey.setattr(logs, "_configured", False)
    try:
        logs.configure_logging(fmt="json")
        error = sql_error(env)
        structlog.get_logger("test").warning("handler.unexpected_error", exc_info=error)
        logging.getLogger("stdlib").error("foreign", exc_info=error)
    finally:
        monkey.undo()
    err = capsys.readouterr().err
    assert "handler.unexpected_error" in err
    assert "foreign" in err
    assert SECRET not in err
