"""The handler registry: which functions process an event of (provider, type).

A handler receives the session of its own transaction and the event. It must not commit;
its effects and the ledger row that proves them commit together. An event type with no
handler is recorded as ignored.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from sqlmodel import Session

if TYPE_CHECKING:
    from domain.retry import Decision


@dataclass(frozen=True)
class InboundEvent:
    """What a handler sees of an event: its identity and its parsed payload."""

    id: str
    org_id: str
    source_id: str | None
    provider: str
    type: str
    external_id: str | None
    occurred_at: datetime | None
    received_at: datetime
    raw_payload: str = field(repr=False)

    @cached_property
    def payload(self) -> Any:
        return json.loads(self.raw_payload)


HandlerFunc = Callable[[Session, InboundEvent], None]
#: Called in the transaction that records a failed attempt, with the retry decision.
FailureHook = Callable[[Session, InboundEvent, BaseException, "Decision"], None]


@dataclass(frozen=True, slots=True)
class Handler:
    name: str
    provider: str
    event_type: str
    func: HandlerFunc
    #: It commits on its own or calls out: it gets a transaction to itself rather than a
    #: savepoint in a batch's shared one.
    isolated: bool = False


class HandlerRegistry:
    def __init__(self) -> None:
        self._handlers: dict[tuple[str, str], list[Handler]] = {}
        self._failure_hooks: dict[tuple[str, str], list[FailureHook]] = {}

    def register(
        self, provider: str, event_type: str, *, name: str | None = None, isolated: bool = False
    ) -> Callable[[HandlerFunc], HandlerFunc]:
        def decorator(func: HandlerFunc) -> HandlerFunc:
            handler_name = name or f"{func.__module__}.{func.__qualname__}"
            handlers = self._handlers.setdefault((provider, event_type), [])
            if any(existing.name == handler_name for existing in handlers):
                raise ValueError(f"handler {handler_name!r} is already registered")
            handlers.append(Handler(handler_name, provider, event_type, func, isolated))
            return func

        return decorator

    def on_failure(self, provider: str, event_type: str) -> Callable[[FailureHook], FailureHook]:
        """Register what to record when processing such an event fails: a retry is
        scheduled (``Retry``) or the event is dead (``GiveUp``)."""

        def decorator(hook: FailureHook) -> FailureHook:
            hooks = self._failure_hooks.setdefault((provider, event_type), [])
            if hook not in hooks:
                hooks.append(hook)
            return hook

        return decorator

    def failure_hooks(self, provider: str, event_type: str) -> list[FailureHook]:
        return list(self._failure_hooks.get((provider, event_type), ()))

    def for_event(self, provider: str, event_type: str) -> list[Handler]:
        return list(self._handlers.get((provider, event_type), ()))

    def all(self) -> list[Handler]:
        return [handler for handlers in self._handlers.values() for handler in handlers]


registry = HandlerRegistry()


def load_handler_modules(modules: Iterable[str]) -> None:
    """Import modules whose import registers handlers (``METERBRIDGE_HANDLER_MODULES``)."""
    for module in modules:
        importlib.import_module(module)
