"""The Celery application: ``celery -A workers.celery_app ...``.

Tasks are named in ``domain.routing`` (``meterbridge.*``) and take ids, never objects;
the database holds the truth, the broker only says "look at this event now".
"""

from __future__ import annotations

from celery import Celery

from domain import routing
from domain.settings import Settings, celery_config, load_settings

TASK_MODULES = [
    "tasks.process_event",
    "tasks.sweep",
    "tasks.emails",
    "tasks.webhooks",
    "tasks.scheduled",
]


def create_celery_app(settings: Settings) -> Celery:
    app = Celery("meterbridge", include=TASK_MODULES)
    app.conf.update(celery_config(settings))
    app.conf.beat_schedule = {
        routing.SWEEP_TASK: {
            "task": routing.SWEEP_TASK,
            "schedule": settings.sweep_interval_seconds,
            # A sweep nobody ran in time is worthless; the next one covers it.
            "options": {"expires": max(1.0, settings.sweep_interval_seconds * 2)},
        },
        routing.SCHEDULED_EVENTS_TASK: {
            "task": routing.SCHEDULED_EVENTS_TASK,
            "schedule": settings.schedule_check_seconds,
            # Likewise: a late check is covered by the next, which finds the same rules due.
            "options": {"expires": max(1.0, settings.schedule_check_seconds * 2)},
        },
    }
    app.conf.beat_schedule_filename = str((settings.data_dir / "celerybeat-schedule").resolve())
    return app


app = create_celery_app(load_settings())

import workers.signals  # noqa: E402,F401  (connects the worker's signal handlers)
