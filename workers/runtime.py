"""What a worker process builds once: settings, database engine, the processor, the
rate limiter.

Built lazily in the process that uses it, so a prefork child never shares its parent's
database or Redis connections.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from domain.db import make_engine
from domain.handlers import load_handler_modules, registry
from domain.logs import configure_logging
from domain.processing import Processor
from domain.retry import RetryPolicy
from domain.secrets import SecretBox, secret_box
from domain.settings import Settings, load_settings
from domain.webhooks.messages import WEBHOOK_DELIVER
from workers.metrics import observe_handler
from workers.ratelimits import RateLimiter

#: Modules whose import registers meterbridge's own event handlers.
BUILTIN_HANDLER_MODULES = (
    "domain.integrations.runs",
    "domain.notifications.emails",
    "domain.notifications.matching",
    "domain.webhooks.delivery",
    "domain.subscriptions.handlers",
    "tasks.integration_runs",
    "tasks.emails",
    "tasks.webhooks",
)


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    engine: Engine
    processor: Processor
    box: SecretBox
    #: Turns under the destinations' rate limits, shared with every other worker process.
    limiter: RateLimiter


_runtime: Runtime | None = None
_pid: int | None = None


def runtime() -> Runtime:
    global _runtime, _pid
    if _runtime is not None and _pid != os.getpid():
        # A forked pool process: leave the parent's pooled connections to the parent.
        _runtime.engine.dispose(close=False)
        _runtime = None
    if _runtime is None:
        _runtime, _pid = _build(load_settings()), os.getpid()
    return _runtime


def _build(settings: Settings) -> Runtime:
    configure_logging(settings.log_level, settings.log_format)
    load_handler_modules([*BUILTIN_HANDLER_MODULES, *settings.handler_modules])
    engine = make_engine(settings)
    policy = RetryPolicy(
        base_seconds=settings.retry_base_seconds,
        cap_seconds=settings.retry_cap_seconds,
        max_attempts=settings.retry_max_attempts,
    )
    processor = Processor(
        engine,
        registry,
        policy,
        lease_seconds=settings.lease_seconds,
        countdown_limit_seconds=settings.countdown_limit_seconds,
        grace_seconds=settings.outbox_grace_seconds,
        observe_handler=observe_handler,
        policies={
            WEBHOOK_DELIVER: RetryPolicy.scheduled(
                tuple(settings.webhook_retry_schedule), settings.webhook_retry_spread
            )
        },
    )
    limiter = RateLimiter.from_url(settings.rate_limit_redis_url)  # connects on first use
    return Runtime(settings, engine, processor, secret_box(settings), limiter)
