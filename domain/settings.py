"""Configuration from ``METERBRIDGE_*`` environment variables (and a ``.env`` file).

With no URL set, meterbridge runs embedded: a PostgreSQL and a Redis server shipped as
wheels, under ``METERBRIDGE_DATA_DIR``, reached on unix sockets whose paths follow from
the data dir alone (so every process finds them without asking anyone). Production points
the URLs at its own Postgres, Redis or RabbitMQ and SMTP. There is one SQL dialect and one
broker family either way.
"""

from __future__ import annotations

import hashlib
from functools import cached_property
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    PositiveFloat,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from domain.webhooks.addresses import parse_networks

ENV_PREFIX = "METERBRIDGE_"

URL_SCHEMES = {
    "database_url": ("postgresql", "postgresql+psycopg", "postgres"),
    "broker_url": ("redis", "rediss", "redis+socket", "amqp", "amqps", "pyamqp"),
    "redis_url": ("redis", "rediss", "redis+socket", "redis+unix", "unix"),
    "smtp_url": ("smtp", "smtps"),
}


#: The embedded servers' socket names inside ``Settings.socket_dir``, and the database.
POSTGRES_SOCKET_NAME = ".s.PGSQL.5432"
REDIS_SOCKET_NAME = "redis.sock"
EMBEDDED_DATABASE = "meterbridge"
#: sun_path holds 108 bytes on Linux (104 on macOS); keep well inside both.
MAX_SOCKET_PATH = 100


class SettingsError(Exception):
    """A configuration value is missing or malformed; the message names the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True
    )

    data_dir: Path = Field(
        Path(".meterbridge"), description="Embedded PostgreSQL and Redis, mail, beat schedule."
    )
    database_url: str = Field("", description="Empty: the embedded PostgreSQL in the data dir.")
    broker_url: str = Field("", description="Empty: the embedded Redis in the data dir.")
    redis_url: str = Field(
        "",
        description="The Redis holding the rate limits every worker shares. Empty: the "
        "broker when it is Redis, else the embedded Redis in the data dir.",
    )
    smtp_url: str = Field("", description="Empty: emails are written as .eml files.")
    secret_key: SecretStr | None = Field(
        None,
        description="Fernet key for secrets at rest; empty (embedded database only): a key "
        "file in the data dir.",
    )
    queue: str = Field("meterbridge", pattern=r"^[A-Za-z0-9_.-]{1,100}$")
    handler_modules: list[str] = Field(default_factory=list)

    receiver_host: str = "127.0.0.1"
    receiver_port: int = Field(8000, ge=1, le=65535)
    flower_port: int = Field(5555, ge=1, le=65535)
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    receiver_max_connections: int = Field(
        1000, ge=1, description="Open connections per receiver process; past it: 503."
    )
    receiver_max_header_bytes: int = Field(
        32 * 1024, ge=1024, le=1024 * 1024, description="Request line and headers; past: 431."
    )
    receiver_header_timeout_seconds: float = Field(
        10.0, gt=0, description="Time for a request's headers to arrive; past it: 408."
    )
    receiver_body_timeout_seconds: float = Field(
        30.0, gt=0, description="Longest pause between parts of a body; past it: 408."
    )
    receiver_keep_alive_seconds: int = Field(
        5, ge=1, description="An idle keep-alive connection is closed after this."
    )
    receiver_docs: bool = Field(True, description="Serve /docs, /redoc and /openapi.json.")
    receiver_metrics: bool = Field(True, description="Serve /metrics.")
    metrics_token: SecretStr | None = Field(
        None, description="When set, /metrics needs `Authorization: Bearer <token>`."
    )
    publish_linger_ms: float = Field(
        100.0, ge=0, le=1000, description="How long intake waits to batch events per message."
    )
    signature_tolerance_seconds: int = Field(300, ge=1)

    retry_base_seconds: float = Field(2.0, gt=0)
    retry_cap_seconds: float = Field(600.0, gt=0)
    retry_max_attempts: int = Field(8, ge=1)
    task_time_limit_seconds: int = Field(300, ge=1)
    visibility_timeout_seconds: int = Field(3600, ge=10)
    outbox_grace_seconds: float = Field(30.0, gt=0)
    sweep_interval_seconds: float = Field(5.0, gt=0)
    schedule_check_seconds: float = Field(
        30.0, gt=0, description="How often beat looks for scheduled events that are due."
    )
    worker_concurrency: int = Field(2, ge=1)
    worker_metrics_port: int | None = Field(
        None, ge=1, le=65535, description="Where a worker serves Prometheus metrics; unset: off."
    )
    worker_metrics_address: str = "127.0.0.1"

    chargebee_url_template: str = Field(
        "https://{site}.chargebee.com/api/v2",
        description="Where a Chargebee site's API lives; {site} comes from the credential.",
    )
    stripe_api_base: str = Field("https://api.stripe.com", description="Where Stripe's API lives.")
    stripe_jitter_margin_seconds: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Room for network jitter under a Stripe rate limit: any rate + 1 requests "
        "to one endpoint are sent at least 1 s plus this apart.",
    )
    paddle_api_base: str = Field(
        "https://api.paddle.com", description="Paddle Billing's API, for live API keys."
    )
    paddle_sandbox_api_base: str = Field(
        "https://sandbox-api.paddle.com",
        description="Paddle Billing's sandbox API, for sandbox API keys.",
    )
    http_timeout_seconds: float = Field(30.0, gt=0)
    xero_authorize_url: str = Field(
        "https://login.xero.com/identity/connect/authorize",
        description="Xero's consent page (OAuth 2.0 authorization endpoint).",
    )
    xero_token_url: str = Field(
        "https://identity.xero.com/connect/token", description="Xero's OAuth 2.0 token endpoint."
    )
    xero_api_base: str = Field(
        "https://api.xero.com", description="Where Xero's /connections and /api.xro/2.0 live."
    )
    quickbooks_authorize_url: str = Field(
        "https://appcenter.intuit.com/connect/oauth2",
        description="Intuit's consent page (OAuth 2.0 authorization endpoint).",
    )
    quickbooks_token_url: str = Field(
        "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer",
        description="Intuit's OAuth 2.0 token endpoint.",
    )
    quickbooks_api_base: str = Field(
        "https://quickbooks.api.intuit.com", description="QuickBooks Online's API, production."
    )
    quickbooks_sandbox_api_base: str = Field(
        "https://sandbox-quickbooks.api.intuit.com",
        description="QuickBooks Online's API for sandbox companies.",
    )
    netsuite_url_template: str = Field(
        "https://{account}.suitetalk.api.netsuite.com",
        description="Where a NetSuite account's REST web services live; {account} is the "
        "account id as NetSuite writes it in host names (123456_SB1 → 123456-sb1).",
    )
    public_url: str = Field(
        "",
        description="Where browsers reach the receiver, for OAuth callbacks, e.g. "
        "https://billing.example.com. Empty: http://<receiver_host>:<receiver_port>.",
    )
    webhook_allowed_networks: Annotated[tuple[IPv4Network | IPv6Network, ...], NoDecode] = Field(
        (),
        description="Comma-separated CIDRs that webhook destinations may reach although "
        "loopback, private or otherwise inside; plain http is allowed only to these.",
    )
    webhook_retry_schedule: Annotated[list[PositiveFloat], NoDecode] = Field(
        [5, 300, 1800, 7200, 18000, 36000, 36000],
        min_length=1,
        max_length=20,
        description="Seconds between a webhook message's attempts (comma-separated); one "
        "attempt more than the delays is made.",
    )
    webhook_retry_spread: float = Field(
        0.2, ge=0, lt=1, description="Each webhook retry delay is spread by ± this fraction."
    )
    webhook_timeout_seconds: float = Field(
        15.0, gt=0, le=60, description="A webhook message's whole attempt, connect to answer."
    )
    mail_from: str = Field("meterbridge@localhost", min_length=3, max_length=320)
    smtp_timeout_seconds: float = Field(10.0, gt=0)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"

    def oauth_redirect_uri(self, destination: str) -> str:
        """Where a provider sends a person back after consent (register it with the
        provider's app): ``<public_url>/oauth/<destination>/callback``."""
        base = self.public_url or f"http://{self.receiver_host}:{self.receiver_port}"
        return f"{base.rstrip('/')}/oauth/{destination}/callback"

    @field_validator("database_url", "broker_url", "redis_url", "smtp_url")
    @classmethod
    def _check_scheme(cls, value: str, info: ValidationInfo) -> str:
        schemes = URL_SCHEMES[info.field_name or ""]
        if value and value.split("://", 1)[0] not in schemes:
            raise ValueError(f"scheme must be one of {', '.join(schemes)}")
        return value

    @field_validator("webhook_retry_schedule", mode="before")
    @classmethod
    def _parse_schedule(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("webhook_allowed_networks", mode="before")
    @classmethod
    def _parse_networks(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return parse_networks(value)
        return value

    @property
    def embedded_database(self) -> bool:
        return not self.database_url

    @property
    def embedded_broker(self) -> bool:
        return not self.broker_url

    @property
    def embedded_redis(self) -> bool:
        """Whether the data dir's own Redis is needed: as the broker, or for rate limits
        when neither ``redis_url`` nor a Redis broker is set."""
        return self.embedded_broker or not (self.redis_url or _is_redis(self.broker_url))

    @cached_property
    def socket_dir(self) -> Path:
        """Where the embedded servers put their unix sockets: ``<data dir>/run``, or a
        directory in /tmp named after it when that path is too long for a socket."""
        preferred = self.data_dir.resolve() / "run"
        if len(str(preferred / POSTGRES_SOCKET_NAME)) <= MAX_SOCKET_PATH:
            return preferred
        digest = hashlib.sha256(str(preferred).encode()).hexdigest()[:16]
        return Path("/tmp") / f"meterbridge-{digest}"  # noqa: S108 -- a short, fixed-name dir

    @cached_property
    def sqlalchemy_url(self) -> str:
        if self.embedded_database:
            return f"postgresql+psycopg://postgres@/{EMBEDDED_DATABASE}?host={self.socket_dir}"
        scheme, rest = self.database_url.split("://", 1)
        if scheme in ("postgres", "postgresql"):
            return f"postgresql+psycopg://{rest}"
        return self.database_url

    @property
    def celery_broker_url(self) -> str:
        if self.embedded_broker:
            return f"redis+socket://{self.socket_dir / REDIS_SOCKET_NAME}"
        return self.broker_url

    @property
    def rate_limit_redis_url(self) -> str:
        """The Redis of the shared rate limits, as the ``limits`` package spells it
        (``redis://``, ``rediss://`` or ``redis+unix:///path``)."""
        url = self.redis_url or (self.broker_url if _is_redis(self.broker_url) else "")
        if not url:
            return f"redis+unix://{self.socket_dir / REDIS_SOCKET_NAME}"
        return limits_redis_url(url)

    @property
    def lease_seconds(self) -> int:
        """How long a claimed event belongs to one worker: a little past the hard time
        limit, after which Celery has killed the task whatever it was doing."""
        return self.task_time_limit_seconds + 5

    @property
    def countdown_limit_seconds(self) -> float:
        """Longest retry wait kept as a broker countdown; longer waits wait in the database."""
        return self.visibility_timeout_seconds / 2

    def broker_transport_options(self) -> dict[str, Any]:
        return {"visibility_timeout": self.visibility_timeout_seconds}

    def ensure_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)


def _is_redis(url: str) -> bool:
    return url.split("://", 1)[0] in ("redis", "rediss", "redis+socket")


def limits_redis_url(url: str) -> str:
    """A Redis URL as the ``limits`` package reads it: kombu's ``redis+socket://`` and
    redis-py's ``unix://`` for a unix socket are ``redis+unix://`` there."""
    scheme, rest = url.split("://", 1)
    if scheme in ("redis+socket", "unix"):
        return f"redis+unix://{rest}"
    return url


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def load_settings(**overrides: Any) -> Settings:
    """Read settings, turning pydantic's report into one line per bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            problems.append(f"{env_name(field)}: {error['msg']}")
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(problems)) from None


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings shared by the worker app and the receiver's publishing client."""
    return {
        "broker_url": settings.celery_broker_url,
        "broker_transport_options": settings.broker_transport_options(),
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 4,
        "task_default_queue": settings.queue,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "result_backend": None,
        # A task is acknowledged after it ran; a worker killed mid-task gives it back.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_time_limit": settings.task_time_limit_seconds,
        "task_soft_time_limit": settings.task_time_limit_seconds * 0.9,
        # Messages carry batches: one in hand per process keeps the queue in the broker,
        # where any free process can take it.
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        # Flower and `celery events` need task events.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
    }
