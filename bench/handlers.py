"""The benchmarks' real handler: one projection row per ``generic``/``bench.write`` event.

Workers load it with ``METERBRIDGE_HANDLER_MODULES='["bench.handlers"]'`` (and the repo on
``PYTHONPATH``); the benchmark creates the table itself from ``metadata``.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Session

from domain.handlers import InboundEvent, registry

EVENT_TYPE = "bench.write"
HANDLER_NAME = "bench.write_projection"

metadata = sa.MetaData()

projection = sa.Table(
    "bench_projection",
    metadata,
    sa.Column("event_id", sa.String(40), primary_key=True),
    sa.Column("account", sa.String(64), nullable=False, index=True),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
)


@registry.register("generic", EVENT_TYPE, name=HANDLER_NAME)
def write_projection(session: Session, event: InboundEvent) -> None:
    data = event.payload["data"]
    session.execute(
        projection.insert().values(
            event_id=event.id,
            account=str(data["account"]),
            amount=int(data["amount"]),
            received_at=event.received_at,
        )
    )
