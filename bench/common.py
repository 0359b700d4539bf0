"""What every benchmark shares: a fresh database and queue, real processes started and
stopped as process groups, signed webhooks, event-log queries, tables and charts.

Nothing here touches shared state beyond what it made: the database is created for the
run and dropped after it; the Redis keys removed are those of the run's own queue and
the run's own workers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import redis
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from bench import handlers
from bench.loadgen import LoadResult, run_load
from domain.db import make_engine, transaction
from domain.organisations import DEFAULT_ORG_ID
from domain.providers.generic import sign
from domain.schema import upgrade
from domain.secrets import generate_key, secret_box
from domain.settings import Settings
from domain.sources import create_source
from tests.support.processes import Proc as TestProc
from workers.embedded import EmbeddedServers

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "bench" / "out"
CLI = [sys.executable, "-m", "workers.cli"]
DEFAULT_DATABASE_URL = (
    os.environ.get("METERBRIDGE_BENCH_DATABASE_URL")
    or os.environ.get("METERBRIDGE_TEST_DATABASE_URL")
    or "postgresql://postgres@127.0.0.1:5432/test"
)
DEFAULT_REDIS_URL = (
    os.environ.get("METERBRIDGE_BENCH_REDIS_URL")
    or os.environ.get("METERBRIDGE_TEST_REDIS_URL")
    or "redis://127.0.0.1:6379/0"
)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
DONE_STATUSES = ("processed", "ignored", "dead")


# -- arguments ---------------------------------------------------------------------------


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Option defaults shown, the module's docstring kept as written."""


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark has."""
    p = argparse.ArgumentParser(description=description, formatter_class=_HelpFormatter)
    p.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help="Postgres server (any database on it); a fresh database is created and dropped",
    )
    p.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="Redis broker")
    p.add_argument(
        "--embedded",
        action="store_true",
        help="instead of --database-url and --redis-url, start the embedded PostgreSQL and "
        "Redis from the wheels with the settings `meterbridge dev` gives them (durable), "
        "in a temporary directory",
    )
    p.add_argument("--out", type=Path, default=OUT_DIR, help="where the PNG and JSON go")
    p.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO"],
        help="METERBRIDGE_LOG_LEVEL of the processes (INFO is the production default; "
        "workers are known ready by their INFO line 'ready.')",
    )
    p.add_argument("--keep-logs", action="store_true", help="keep the processes' log files")
    return p


# -- processes ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], Any], *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)
    return value


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()  # fields from 3 (state) on


def group_pids(pgid: int) -> list[int]:
    """Live processes of a process group (a worker and its prefork children)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                if int(_stat_fields(int(entry.name))[2]) == pgid:
                    pids.append(int(entry.name))
    return pids


def rss_kb(pid: int) -> int:
    """Resident memory from /proc/<pid>/status (VmRSS), 0 when gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of one process, 0 when gone."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = _stat_fields(pid)
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return 0.0


class Proc(TestProc):
    """A process in a process group of its own, logging to a file (the test suite's
    ``Proc``), with what a benchmark reads of it: memory and CPU of the whole group."""

    def pids(self) -> list[int]:
        return group_pids(self.pid)

    def rss_kb(self) -> int:
        return sum(rss_kb(pid) for pid in self.pids())

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids())

    def tail(self, chars: int = 3000) -> str:
        return self.log()[-chars:]

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            raise RuntimeError(f"{self.name} exited ({self.popen.returncode}):\n{self.tail()}")


# -- the environment of one run ----------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A webhook endpoint and what it takes to sign for it."""

    host: str
    port: int
    source_id: str
    secret: str

    @property
    def path(self) -> str:
        return f"/webhooks/{self.source_id}"


@dataclass
class Bench:
    name: str
    args: argparse.Namespace
    token: str
    tmp: Path
    database_url: str
    env: dict[str, str]
    engine: Engine
    procs: list[Proc] = field(default_factory=list)

    @property
    def queue(self) -> str:
        return self.env["METERBRIDGE_QUEUE"]

    @property
    def database(self) -> str:
        return str(make_url(self.database_url).database)

    def process_env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("METERBRIDGE_")}
        env.update(self.env)
        env.update(overrides)
        env["PYTHONPATH"] = str(REPO)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start(self, name: str, argv: list[str], **env: str) -> Proc:
        count = sum(1 for proc in self.procs if proc.name == name)
        log = self.tmp / f"{name}-{count}.log"
        proc = Proc(name, argv, self.process_env(**env), log)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)

    def start_http(self, name: str, argv: list[str], port: int) -> Proc:
        """Start a server and wait until it answers (any status) on ``port``."""
        proc = self.start(name, argv)
        wait_until(lambda: _answers(port, proc), timeout=60, what=f"{name} on port {port}")
        return proc

    def start_receiver(self, workers: int = 1) -> tuple[Proc, int]:
        port = free_port()
        argv = [*CLI, "receiver", "--port", str(port), "--workers", str(workers)]
        return self.start_http("receiver", argv, port), port

    def start_worker(self, concurrency: int, index: int = 0) -> Proc:
        hostname = self.worker_hostname(index)
        argv = [*CLI, "worker", "--concurrency", str(concurrency), "--hostname", hostname]
        proc = self.start("worker", argv)
        proc.wait_for_log(" ready.", timeout=90)
        return proc

    def worker_hostname(self, index: int) -> str:
        return f"mbbench-{self.token}-w{index}@%h"

    def create_target(self, port: int, name: str = "bench") -> Target:
        settings = Settings(_env_file=None, secret_key=self.env["METERBRIDGE_SECRET_KEY"])
        with transaction(self.engine) as session:
            source, secret = create_source(
                session, secret_box(settings), org_id=DEFAULT_ORG_ID, name=name, provider="generic"
            )
        return Target("127.0.0.1", port, source.id, secret)

    def close(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                proc.stop()
        self.procs.clear()
        self.engine.dispose()
        try:
            _drop_database(self.args.database_url, self.database)
        finally:
            _delete_redis_keys(self.args.redis_url, self.queue, self.token)


def _answers(port: int, proc: Proc) -> bool:
    proc.check_alive()
    try:
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
    except httpx.HTTPError:
        return False
    return True


def _admin_engine(server_url: str) -> Engine:
    url = make_url(server_url).set(drivername="postgresql+psycopg")
    return sa.create_engine(url, isolation_level="AUTOCOMMIT")


def _create_database(server_url: str, name: str) -> str:
    admin = _admin_engine(server_url)
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(server_url).set(drivername="postgresql", database=name)
    return url.render_as_string(hide_password=False)


def _drop_database(server_url: str, name: str) -> None:
    admin = _admin_engine(server_url)
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _delete_redis_keys(redis_url: str, queue: str, token: str) -> None:
    """The run's queues (with their priority lists and bindings), and the run's members
    of shared binding sets; nothing else."""
    # kombu spells a unix socket redis+socket://, redis-py unix://
    client = redis.Redis.from_url(redis_url.replace("redis+socket://", "unix://", 1))
    patterns = (f"{queue}*", f"_kombu.binding.{queue}*", f"_kombu.binding_permanent.{queue}*")
    try:
        for pattern in patterns:
            for key in client.scan_iter(match=pattern):
                client.delete(key)
        for key in client.scan_iter(match="_kombu.binding*"):
            if client.type(key) == b"set":
                members = list(client.sscan_iter(key, match=f"*{token}*"))
                if members:
                    client.srem(key, *members)
    finally:
        client.close()


def _raise_on_sigterm() -> None:
    def stop(_signum: int, _frame: object) -> None:
        raise SystemExit(143)  # so the cleanup in `bench` runs

    signal.signal(signal.SIGTERM, stop)


@contextlib.contextmanager
def bench(args: argparse.Namespace, name: str, **settings: str) -> Iterator[Bench]:
    """A fresh database (migrated, with the bench tables), a queue of its own, and every
    process started through it stopped at the end; the database dropped."""
    _raise_on_sigterm()
    with _servers(args), _bench(args, name, **settings) as run:
        yield run


@contextlib.contextmanager
def _servers(args: argparse.Namespace) -> Iterator[None]:
    """With ``--embedded``: the wheels' servers, as `meterbridge dev` runs them."""
    if not args.embedded:
        yield
        return
    root = Path(tempfile.mkdtemp(prefix="mbbench-embedded-", dir="/tmp"))
    root.chmod(0o755)  # as root, PostgreSQL runs as another user that must enter it
    servers = EmbeddedServers(Settings(_env_file=None, data_dir=root))
    assert servers.postgres is not None
    assert servers.redis is not None
    try:
        servers.postgres.start()
        servers.redis.start()
        args.database_url, args.redis_url = servers.postgres.url(), servers.redis.url
        print(f"embedded PostgreSQL and Redis in {root}")
        yield
    finally:
        servers.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def _bench(args: argparse.Namespace, name: str, **settings: str) -> Iterator[Bench]:
    token = secrets.token_hex(4)
    tmp = Path(tempfile.mkdtemp(prefix=f"mbbench-{name}-"))
    database_url = _create_database(args.database_url, f"mbbench_{name}_{token}")
    env = {
        "METERBRIDGE_DATA_DIR": str(tmp / "data"),
        "METERBRIDGE_DATABASE_URL": database_url,
        "METERBRIDGE_BROKER_URL": args.redis_url,
        "METERBRIDGE_SECRET_KEY": generate_key(),
        "METERBRIDGE_QUEUE": f"mbbench-{token}",
        "METERBRIDGE_HANDLER_MODULES": '["bench.handlers"]',
        "METERBRIDGE_LOG_LEVEL": args.log_level,
        "METERBRIDGE_LOG_FORMAT": "json",
        **{f"METERBRIDGE_{key.upper()}": value for key, value in settings.items()},
    }
    run = Bench(name, args, token, tmp, database_url, env, _engine(database_url))
    try:
        upgrade(run.engine)
        handlers.metadata.create_all(run.engine)
        yield run
    finally:
        run.close()
        _remove_tmp(tmp, keep=args.keep_logs)


def _engine(database_url: str) -> Engine:
    return make_engine(Settings(_env_file=None, database_url=database_url))


def _remove_tmp(tmp: Path, *, keep: bool) -> None:
    if keep:
        print(f"logs kept in {tmp}")
        return
    for path in sorted(tmp.rglob("*"), reverse=True):
        if path.is_dir():
            path.rmdir()
        else:
            path.unlink()
    tmp.rmdir()


# -- webhooks ----------------------------------------------------------------------------


def event_body(number: int) -> bytes:
    """A usage event for the bench handler (about 150 bytes)."""
    body = {
        "type": handlers.EVENT_TYPE,
        "timestamp": datetime.now(UTC).isoformat(),
        "data": {"account": f"acc_{number % 1000:04d}", "amount": number, "unit": "api_call"},
    }
    return json.dumps(body, separators=(",", ":")).encode()


def signed_headers(target: Target, msg_id: str, body: bytes) -> tuple[int, str]:
    timestamp = int(time.time())
    return timestamp, sign(target.secret, msg_id, timestamp, body)


def signed_request(target: Target, msg_id: str, body: bytes) -> bytes:
    """One raw HTTP/1.1 request, signed now (Standard Webhooks)."""
    timestamp, signature = signed_headers(target, msg_id, body)
    head = (
        f"POST {target.path} HTTP/1.1\r\n"
        f"host: {target.host}:{target.port}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        f"webhook-id: {msg_id}\r\n"
        f"webhook-timestamp: {timestamp}\r\n"
        f"webhook-signature: {signature}\r\n\r\n"
    )
    return head.encode() + body


def webhook_requests(target: Target, prefix: str, count: int) -> Iterator[bytes]:
    """``count`` requests with distinct webhook ids ``<prefix>-<n>``, each signed when it
    is about to be sent (so a long run never sends a stale timestamp)."""
    for number in range(count):
        yield signed_request(target, f"{prefix}-{number}", event_body(number))


# -- the event log -----------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """Events of one batch: how many are done, first receipt, last finish."""

    count: int
    first_received: datetime | None
    last_finished: datetime | None

    @property
    def seconds(self) -> float:
        if self.first_received is None or self.last_finished is None:
            return float("nan")
        return (self.last_finished - self.first_received).total_seconds()

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else float("nan")


def open_events(engine: Engine) -> int:
    """Events not yet done (uses the partial index ``ix_event_open``, so it stays cheap)."""
    query = "SELECT count(*) FROM event WHERE status IN ('pending', 'processing', 'retrying')"
    with engine.connect() as connection:
        return int(connection.execute(sa.text(query)).scalar_one())


def wait_processed(engine: Engine, procs: list[Proc], *, stall_timeout: float = 60) -> None:
    """Until no event is open; fails if the count stops falling for ``stall_timeout``."""
    best, since = open_events(engine), time.monotonic()
    while best:
        time.sleep(0.2)
        for proc in procs:
            proc.check_alive()
        now_open = open_events(engine)
        if now_open < best:
            best, since = now_open, time.monotonic()
        elif time.monotonic() - since > stall_timeout:
            raise TimeoutError(f"{now_open} events still open after {stall_timeout:.0f}s")


def span_of(engine: Engine, prefix: str) -> Span:
    query = sa.text(
        "SELECT count(*), min(received_at), max(finished_at) FROM event "
        "WHERE external_id LIKE :pattern AND status = 'processed'"
    )
    with engine.connect() as connection:
        count, first, last = connection.execute(query, {"pattern": f"{prefix}-%"}).one()
    return Span(int(count), first, last)


def latencies_ms(engine: Engine, prefix: str) -> dict[str, float]:
    """Receipt to processed (``received_at`` to ``finished_at``) percentiles, in ms."""
    query = sa.text(
        "SELECT count(*), "
        "percentile_cont(0.5) WITHIN GROUP (ORDER BY d), "
        "percentile_cont(0.99) WITHIN GROUP (ORDER BY d), max(d) FROM ("
        "  SELECT extract(epoch FROM finished_at - received_at) * 1000 AS d FROM event"
        "  WHERE external_id LIKE :pattern AND status = 'processed') AS t"
    )
    with engine.connect() as connection:
        count, p50, p99, worst = connection.execute(query, {"pattern": f"{prefix}-%"}).one()
    return {"count": count, "p50": _num(p50), "p99": _num(p99), "max": _num(worst)}


def _num(value: Any) -> float:
    return float(value) if value is not None else float("nan")


# -- a batch through the pipeline --------------------------------------------------------


@dataclass(frozen=True)
class PipelineRun:
    load: LoadResult
    span: Span


def pump(
    target: Target, prefix: str, count: int, *, connections: int = 32, rate: float | None = None
) -> LoadResult:
    """Send ``count`` signed webhooks (closed loop, or paced at ``rate``)."""
    requests = webhook_requests(target, prefix, count)
    return run_load(target.host, target.port, requests, connections=connections, rate=rate)


def through_pipeline(
    run: Bench,
    target: Target,
    prefix: str,
    count: int,
    *,
    connections: int = 32,
    rate: float | None = None,
) -> PipelineRun:
    """Send a batch, wait until every event is processed, and read its span from the log."""
    load = pump(target, prefix, count, connections=connections, rate=rate)
    accepted = load.count(202)
    if accepted != count:
        raise RuntimeError(f"only {accepted} of {count} accepted: {dict(load.statuses)}")
    wait_processed(run.engine, run.procs)
    return PipelineRun(load, span_of(run.engine, prefix))


# -- reports -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    figure: str
    value: float
    baseline: float | None = None
    unit: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0) or self.baseline != self.baseline:  # None, 0 or NaN
            return None
        return self.value / self.baseline  # type: ignore[operator]


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if value != value:  # NaN
        return "n/a"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"
    return f"{text} {unit}".strip()


def print_table(title: str, rows: list[Row], *, baseline_name: str = "baseline") -> None:
    cells = [("figure", "value", baseline_name, "ratio")]
    for row in rows:
        ratio = f"{row.ratio:.3f}" if row.ratio is not None else "-"
        cells.append((row.figure, fmt(row.value, row.unit), fmt(row.baseline, row.unit), ratio))
    widths = [max(len(cell[i]) for cell in cells) for i in range(4)]
    print(f"\n{title}")
    for index, cell in enumerate(cells):
        first = cell[0].ljust(widths[0])
        rest = "  ".join(
            text.rjust(width) for text, width in zip(cell[1:], widths[1:], strict=True)
        )
        print(f"  {first}  {rest}")
        if index == 0:
            print("  " + "  ".join("-" * width for width in widths))


def write_results(out: Path, name: str, data: dict[str, Any], figure: Any) -> None:
    """``<out>/<name>.json`` and ``<out>/<name>.png``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    figure.tight_layout()
    figure.savefig(out / f"{name}.png", dpi=120)
    print(f"\nwrote {out / f'{name}.png'} and {out / f'{name}.json'}")


def pyplot() -> Any:
    """matplotlib's pyplot without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def machine_note() -> str:
    return f"{os.cpu_count()} CPUs; load generator, servers, Postgres and Redis share them"
