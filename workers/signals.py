"""Worker signals: refuse to start on an unmigrated database; bind task context to logs."""

from __future__ import annotations

import logging
from typing import Any

import structlog
from celery.signals import setup_logging, task_postrun, task_prerun, worker_init

from domain.logs import configure_logging
from domain.schema import require_migrated
from domain.settings import load_settings
from workers.runtime import runtime


@setup_logging.connect
def _logging(**_: Any) -> None:
    """Connected, so Celery leaves logging to us: worker and beat log like the receiver."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    # One line per event comes from meterbridge itself (event.done, event.retry, ...);
    # Celery's own received/succeeded lines per task would double the log volume.
    if settings.log_level != "DEBUG":
        for name in ("celery.app.trace", "celery.worker.strategy"):
            logging.getLogger(name).setLevel(logging.WARNING)


@worker_init.connect
def _check_schema(**_: Any) -> None:
    require_migrated(runtime().engine)


@task_prerun.connect
def _bind_task(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(task_id=task_id, task=getattr(task, "name", None))


@task_postrun.connect
def _unbind_task(**_: Any) -> None:
    structlog.contextvars.clear_contextvars()
