"""The ASGI application: ``uvicorn --factory receiver.app:create_app``."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from domain.db import make_engine
from domain.logs import configure_logging
from domain.schema import require_migrated
from domain.secrets import secret_box
from domain.settings import Settings, load_settings
from receiver import api, errors, health, oauth, webhooks
from receiver.intake import Intake
from receiver.metrics import IntakeMetrics
from receiver.publisher import Publisher
from receiver.source_cache import SourceCache
from receiver.writer import IntakeWriter

#: With METERBRIDGE_RECEIVER_DOCS off: no /docs, /redoc or /openapi.json.
NO_DOCS: dict[str, Any] = {"docs_url": None, "redoc_url": None, "openapi_url": None}


def build_intake(settings: Settings) -> Intake:
    engine = make_engine(settings)
    require_migrated(engine)
    publisher = Publisher(settings)
    metrics = IntakeMetrics()
    metrics.watch(engine, publisher.queue_depth)
    return Intake(
        settings=settings,
        engine=engine,
        sources=SourceCache(engine, secret_box(settings)),
        writer=IntakeWriter(engine),
        publisher=publisher,
        metrics=metrics,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    configure_logging(settings.log_level, settings.log_format)
    settings.ensure_dirs()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The writer and publisher threads share the GIL with the event loop; handing it
        # over every millisecond instead of every five keeps requests from waiting on them.
        sys.setswitchinterval(0.001)
        intake = build_intake(settings)
        intake.start()
        app.state.intake = intake
        try:
            yield
        finally:
            intake.stop()
            intake.engine.dispose()

    app = FastAPI(
        title="meterbridge",
        summary="Webhook intake and admin API of the meterbridge integration engine.",
        version="0.1.0",
        lifespan=lifespan,
        **({} if settings.receiver_docs else NO_DOCS),
    )
    errors.install(app)
    app.include_router(webhooks.router)
    app.include_router(health.router)
    app.include_router(oauth.router)
    if settings.receiver_metrics:
        app.include_router(health.metrics_router)
    app.include_router(api.router)
    return app
