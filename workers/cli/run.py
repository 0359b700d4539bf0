"""Commands that run processes: dev, receiver, worker, beat, flower, and migrate."""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import ipaddress
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from domain.db import make_engine
from domain.providers.generic import sign as sign_generic
from domain.schema import current_revision, head_revision, upgrade
from domain.secrets import generate_key
from domain.settings import Settings
from workers.cli.common import (
    console,
    fail,
    migrated_engine,
    settings,
    signed_curl,
    use_embedded_servers,
)
from workers.embedded import detach_process

STOP_TIMEOUT_SECONDS = 20


def register(app: typer.Typer) -> None:
    for command in (dev, receiver, worker, beat, flower, migrate, secret_key, sign):
        app.command()(command)


def migrate() -> None:
    """Apply the database migrations (safe to run again; does nothing when up to date)."""
    config = settings()
    config.ensure_dirs()
    use_embedded_servers(config)
    engine = make_engine(config)
    try:
        before = current_revision(engine)
        upgrade(engine)
    except Exception as exc:
        fail(f"migration failed: {type(exc).__name__}: {exc}")
    finally:
        engine.dispose()
    head = head_revision(engine)
    if config.embedded_database:
        console.print(f"database at revision {head} (the embedded one is kept up to date)")
    elif before == head:
        console.print(f"database already at revision {head}")
    else:
        console.print(f"database migrated from {before or 'empty'} to {head}")


def receiver(
    host: Annotated[
        str | None, typer.Option(help="Bind address [default: METERBRIDGE_RECEIVER_HOST]")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port [default: METERBRIDGE_RECEIVER_PORT]")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Server processes.")] = 1,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
) -> None:
    """Serve webhook intake and the admin API (uvicorn)."""
    import uvicorn

    # The app reads its own settings (and so do the processes of --workers): the options
    # go there too, so that what it says about itself (OAuth callback URLs) is true.
    if host is not None:
        os.environ["METERBRIDGE_RECEIVER_HOST"] = host
    if port is not None:
        os.environ["METERBRIDGE_RECEIVER_PORT"] = str(port)
    config = settings()
    config.ensure_dirs()
    migrated_engine(config).dispose()
    _ensure_descriptors(config.receiver_max_connections)
    # uvicorn raises SIGTERM again once it has shut down; with the default action that
    # would end the process before its exit hooks detach it from the embedded servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(
        "receiver.app:create_app",
        factory=True,
        host=config.receiver_host,
        port=config.receiver_port,
        workers=workers,
        access_log=access_log,
        log_config=None,
        timeout_graceful_shutdown=10,
        http="receiver.server:LimitedHttpToolsProtocol",
        timeout_keep_alive=config.receiver_keep_alive_seconds,
    )


#: Descriptors a receiver process needs besides its connections: database pool, broker,
#: logs, the interpreter's own files.
DESCRIPTOR_RESERVE = 128


def _ensure_descriptors(max_connections: int) -> None:
    """Raise the soft open-files limit as far as the hard one allows, and refuse to start
    when it cannot hold the connection cap plus a reserve: a receiver out of descriptors
    fails every request, not only the extra ones."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = max_connections + DESCRIPTOR_RESERVE
    if soft < needed and (hard == resource.RLIM_INFINITY or hard > soft):
        soft = needed if hard == resource.RLIM_INFINITY else min(hard, max(needed, soft))
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft < needed:
        fail(
            f"METERBRIDGE_RECEIVER_MAX_CONNECTIONS={max_connections} needs {needed} open "
            f"files, but this process may open {soft} (ulimit -n); lower the setting or "
            "raise the limit",
            code=2,
        )


def worker(
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Processes [default: METERBRIDGE_WORKER_CONCURRENCY]")
    ] = None,
    pool: Annotated[str, typer.Option(help="prefork, threads or solo.")] = "prefork",
    hostname: Annotated[str | None, typer.Option(help="Worker name, as Flower shows it.")] = None,
) -> None:
    """Run a Celery worker that processes events. Start more (here or on other machines,
    with the same configuration) to scale out. With METERBRIDGE_WORKER_METRICS_PORT set,
    it serves Prometheus metrics of all its processes there."""
    config = settings()
    config.ensure_dirs()
    migrated_engine(config).dispose()
    _use_multiprocess_metrics_dir()
    from workers.celery_app import app

    argv = [
        "worker",
        f"--concurrency={concurrency or config.worker_concurrency}",
        f"--pool={pool}",
        f"--queues={config.queue}",
        "--task-events",
    ]
    if hostname:
        argv.append(f"--hostname={hostname}")
    app.worker_main(argv)


def _use_multiprocess_metrics_dir() -> None:
    """Give this worker and the pool processes it forks a fresh directory for their
    metrics (prometheus_client's multiprocess mode), removed when the worker exits.
    prometheus_client reads the variable when first imported, so this runs before."""
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before its multiprocess dir was set")
    path = tempfile.mkdtemp(prefix="meterbridge-worker-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    owner = os.getpid()

    def remove() -> None:
        if os.getpid() == owner:  # not in a pool process that inherited the hook
            shutil.rmtree(path, ignore_errors=True)

    atexit.register(remove)


def beat() -> None:
    """Run Celery beat: the schedule that starts the outbox sweeper. Run exactly one."""
    config = settings()
    config.ensure_dirs()
    migrated_engine(config).dispose()
    from workers.celery_app import app

    app.start(["beat"])


def flower(
    port: Annotated[
        int | None, typer.Option(help="Port [default: METERBRIDGE_FLOWER_PORT]")
    ] = None,
    address: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
) -> None:
    """Run Flower, the web monitor for workers and tasks."""
    config = settings()
    config.ensure_dirs()
    if not _loopback(address) and not os.environ.get("FLOWER_BASIC_AUTH"):
        fail(
            f"Flower on {address} is reachable from other machines: set FLOWER_BASIC_AUTH="
            "user:password (or bind 127.0.0.1)",
            code=2,
        )
    use_embedded_servers(config)
    from workers.celery_app import app

    app.start(["flower", f"--port={port or config.flower_port}", f"--address={address}"])


def _loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # a host name: it may be reachable from elsewhere


def dev(
    with_flower: Annotated[bool, typer.Option("--flower", help="Also run Flower.")] = False,
    port: Annotated[int | None, typer.Option(help="Receiver port.")] = None,
) -> None:
    """Run everything on this machine: with no database or broker URL set, start the
    embedded PostgreSQL and Redis under METERBRIDGE_DATA_DIR, migrate, then run receiver,
    worker and beat (and Flower with --flower). Ctrl-C stops them all, servers included.
    One `dev` per data dir."""
    config = settings()
    config.ensure_dirs()
    with _only_dev_of(config):
        started = use_embedded_servers(config)
        migrate()
        receiver_url = f"http://{config.receiver_host}:{port or config.receiver_port}"
        _print_dev_banner(config, receiver_url, started, with_flower)
        dev_file = config.data_dir / "run" / "dev.json"
        written = dev_file.with_suffix(".tmp")  # renamed into place: never read half written
        written.write_text(json.dumps({"pid": os.getpid(), "receiver_url": receiver_url}))
        written.replace(dev_file)
        try:
            exit_code = _supervise(_dev_commands(port, with_flower))
        finally:
            dev_file.unlink(missing_ok=True)
            if detach_process():
                console.print("stopped the embedded PostgreSQL and Redis")
    raise typer.Exit(exit_code)


@contextlib.contextmanager
def _only_dev_of(config: Settings) -> Iterator[None]:
    """Hold the data dir's dev lock, or say who holds it."""
    state = config.data_dir / "run"
    state.mkdir(parents=True, exist_ok=True)
    with open(state / "dev.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fail(
                f"another `meterbridge dev` is running on {config.data_dir.resolve()} "
                f"({_running_dev(state)}); stop it first, or set METERBRIDGE_DATA_DIR to "
                "another directory"
            )
        yield


def _running_dev(state: Path) -> str:
    try:
        running = json.loads((state / "dev.json").read_text())
        return f"pid {running['pid']}, receiver {running['receiver_url']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "starting up"


def _dev_commands(port: int | None, with_flower: bool) -> dict[str, list[str]]:
    base = [sys.executable, "-m", "workers.cli"]
    commands = {
        "receiver": [*base, "receiver", *(["--port", str(port)] if port else [])],
        "worker": [*base, "worker"],
        "beat": [*base, "beat"],
    }
    if with_flower:
        commands["flower"] = [*base, "flower"]
    return commands


def _print_dev_banner(
    config: Settings, receiver_url: str, started: list[str], with_flower: bool
) -> None:
    console.print(f"receiver  {receiver_url}  (docs at /docs)")
    if with_flower:
        console.print(f"flower    http://127.0.0.1:{config.flower_port}")
    console.print(f"data      {config.data_dir.resolve()}")
    if config.embedded_database:
        console.print(f"postgres  {config.sqlalchemy_url.replace('+psycopg', '')}")
    if config.embedded_broker:
        console.print(f"redis     {config.celery_broker_url}")
    if started:
        console.print(f"started   embedded {' and '.join(started)}")
    console.print("Ctrl-C stops everything.\n", highlight=False)


def _supervise(commands: dict[str, list[str]]) -> int:
    stopping = False

    def request_stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    # Each child leads its own process group, so the terminal's Ctrl-C reaches only us and
    # we stop them in order; killing the group also ends prefork children.
    children = {
        name: subprocess.Popen(command, start_new_session=True)
        for name, command in commands.items()
    }
    exit_code = 0
    while not stopping:
        for name, child in children.items():
            if child.poll() is not None:
                console.print(f"[red]{name} exited with {child.returncode}; stopping the rest[/]")
                exit_code, stopping = 1, True
                break
        time.sleep(0.3)
    _stop_all(children)
    return exit_code


def _stop_all(children: dict[str, subprocess.Popen[bytes]]) -> None:
    # SIGTERM to each leader only: a Celery worker then shuts its pool down itself.
    for child in children.values():
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    for name, child in children.items():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            console.print(f"{name} did not stop in {STOP_TIMEOUT_SECONDS}s; killing it")
        _signal_group(child, signal.SIGKILL)  # stragglers in the group, if any
        child.wait()
    console.print("stopped")


def _signal_group(child: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signum)


def secret_key() -> None:
    """Print a new key for METERBRIDGE_SECRET_KEY."""
    typer.echo(generate_key())


def sign(
    secret: Annotated[
        str, typer.Option(help="The source's whsec_ secret.", envvar="WEBHOOK_SECRET")
    ],
    data: Annotated[str | None, typer.Option(help="The JSON body.")] = None,
    file: Annotated[Path | None, typer.Option(help="Read the JSON body from a file.")] = None,
    msg_id: Annotated[str | None, typer.Option("--id", help="webhook-id [default: random]")] = None,
    url: Annotated[str | None, typer.Option(help="Print a curl command for this URL.")] = None,
) -> None:
    """Sign a body with the Standard Webhooks scheme, as a sender would (for trying a source)."""
    if (data is None) == (file is None):
        fail("give exactly one of --data or --file", code=2)
    body = file.read_bytes() if file else (data or "").encode()
    try:
        json.loads(body)
    except ValueError as exc:
        fail(f"the body is not JSON: {exc}", code=2)
    if url is not None:
        typer.echo(signed_curl(url, secret, body, msg_id))
        return
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    timestamp = int(time.time())
    typer.echo(f"webhook-id: {msg_id}")
    typer.echo(f"webhook-timestamp: {timestamp}")
    typer.echo(f"webhook-signature: {sign_generic(secret, msg_id, timestamp, body)}")
