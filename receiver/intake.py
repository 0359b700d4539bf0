"""The intake's parts, built once per process and shared by the requests."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from domain.settings import Settings
from receiver.metrics import IntakeMetrics
from receiver.publisher import Publisher
from receiver.source_cache import SourceCache
from receiver.writer import IntakeWriter


@dataclass(frozen=True, slots=True)
class Intake:
    settings: Settings
    engine: Engine
    sources: SourceCache
    writer: IntakeWriter
    publisher: Publisher
    metrics: IntakeMetrics

    def start(self) -> None:
        self.writer.start()
        self.publisher.start()

    def stop(self) -> None:
        self.writer.stop()
        self.publisher.stop()
