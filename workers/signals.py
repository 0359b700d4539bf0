"""Worker signals: refuse to start on an unmigrated database, serve metrics, bind task
context to logs."""

from __future__ import annotations

import logging
from typing import Any

import structlog
from celery.signals import setup_logging, task_postrun, task_prerun, worker_init, worker_ready

from domain.logs import configure_logging
from domain.schema import require_migrated
from domain.settings import load_settings
from workers import metrics
from workers.runtime import runtime

log = structlog.get_logger(__name__)


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


@worker_ready.connect
def _serve_metrics(**_: Any) -> None:
    settings = runtime().settings
    if settings.worker_metrics_port is None:
        return
    try:
        metrics.serve(settings.worker_metrics_port, settings.worker_metrics_address)
    except OSError as error:  # a taken port must not stop the work
        log.error("metrics.not_served", port=settings.worker_metrics_port, error=str(error))
        return
    log.info(
        "metrics.serving",
        address=settings.worker_metrics_address,
        port=settings.worker_metrics_port,
    )


@task_prerun.connect
def _bind_task(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(task_id=task_id, task=getattr(task, "name", None))


@task_postrun.connect
def _unbind_task(**_: Any) -> None:
    structlog.contextvars.clear_contextvars()
