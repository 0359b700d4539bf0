"""Enable an integration config and release the runs held while it was disabled: the
service the admin API and the CLI both call (``domain.integrations.runs.enable_config``
does the change inside a transaction; this owns the transaction and publishes after it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlmodel import Session

from domain.db import transaction
from domain.integrations.configs import IntegrationConfig
from domain.integrations.runs import RUN_REQUESTED, enable_config
from domain.routing import Publish


@dataclass(frozen=True, slots=True)
class ConfigEnabled:
    config: IntegrationConfig
    released: list[str]  # ids of the run request events published, oldest run first


def enable_and_release(
    engine: Engine, find: Callable[[Session], IntegrationConfig], publish: Publish
) -> ConfigEnabled:
    """Enable the config ``find`` reads (the API finds it in the caller's organisation,
    the CLI in any), start its count of errors again and release its held runs, in one
    transaction; then ``publish`` their request events, oldest first (a lost publish is
    found by the sweeper)."""
    with transaction(engine) as session:
        config = find(session)
        released = enable_config(session, config)
    if released:
        publish((event_id, RUN_REQUESTED) for event_id in released)
    return ConfigEnabled(config, released)
