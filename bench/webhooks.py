"""Webhook delivery benchmark: signed webhook messages delivered per second by real
workers to a fast local receiver, against a plain ``httpx.Client`` POST loop sending the
same bodies to the same receiver in the same run; and each message's created-to-delivered
latency.

    python -m bench.webhooks                          # 100 destinations x 100 bills
    python -m bench.webhooks --destinations 20 --bills 10 --warmup-bills 1   # smoke run

How: the receiver is ``bench/static_server.py`` answering 200 on 127.0.0.1 (one uvloop
process; its ceiling is far above these rates). ``--destinations`` webhook destinations
all point at it (``/d0``, ``/d1``, ...; ``METERBRIDGE_WEBHOOK_ALLOWED_NETWORKS`` is
``127.0.0.0/8``), and one notification rule that ``always_fire``s on ``bill.approved``
sends to all of them. One bill is approved for real (so the handlers of ``bill.approved``
find it); then ``--bills`` ``bill.approved`` events for it are appended to the log with
``domain.eventlog.append_internal`` in one transaction and published to the run's queue,
as the bill API does after its commit. ``meterbridge worker`` processes them: the rule
fires once per event and creates one message per destination, each delivered by its own
``webhook.deliver`` work item through the SSRF-checked sender (one connection per message,
by design). The rate is the batch's messages divided by the time from the first
message's ``created_at`` to the last ``delivered_at`` (the ``webhook_message`` table).
``--warmup-bills`` go through first and are not counted.

The baselines run after the workers have stopped, against the same receiver: the
batch's exact message bodies POSTed to the same URLs by a plain ``httpx.Client``
(keep-alive, no proxy from the environment, no signing), sequentially in this process,
and spread over as many threads as the worker has processes (a client each). A third,
for scale only: those threads with a new connection per request, as the sender makes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import httpx
import redis
import sqlalchemy as sa
from celery import Celery
from pydantic import SecretStr

from bench.common import (
    CLOCK_TICKS,
    Bench,
    Proc,
    Row,
    bench,
    cpu_seconds,
    free_port,
    machine_note,
    parser,
    print_table,
    write_results,
)
from domain import routing
from domain.accounts import create_account
from domain.bills import LineItem, LineItemType, approve_bill, generate_bill
from domain.db import transaction
from domain.eventlog import APPENDED, append_internal
from domain.notifications.rules import create_rule
from domain.organisations import DEFAULT_ORG_ID
from domain.secrets import secret_box
from domain.settings import Settings, SettingsError, celery_config, load_settings
from domain.webhooks.destinations import create_destination
from workers.webhooks.sender import check_url

ALLOWED_NETWORKS = "127.0.0.0/8"
EVENT = "bill.approved"


def _default_concurrency() -> int:
    """What ``meterbridge worker`` runs with on this machine: METERBRIDGE_WORKER_CONCURRENCY
    (environment or .env), else its default."""
    try:
        return load_settings().worker_concurrency
    except SettingsError:
        return int(Settings.model_fields["worker_concurrency"].default)


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = parser(__doc__)
    p.add_argument("--destinations", type=int, default=100, help="destinations the rule sends to")
    p.add_argument("--bills", type=int, default=100, help="bill.approved events in the batch")
    p.add_argument("--warmup-bills", type=int, default=2, help="events before the batch")
    p.add_argument(
        "--concurrency",
        type=int,
        default=_default_concurrency(),
        help="worker processes (prefork); the default is this machine's "
        "METERBRIDGE_WORKER_CONCURRENCY",
    )
    p.add_argument(
        "--stall-timeout",
        type=float,
        default=120,
        help="give up when no message is delivered for this many seconds",
    )
    args = p.parse_args(argv)
    if min(args.destinations, args.bills, args.concurrency) < 1 or args.warmup_bills < 0:
        p.error("--destinations, --bills and --concurrency must be at least 1, --warmup-bills 0")
    return args


# -- the setup ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    bill_payload: dict[str, Any]
    urls: list[str]


def _settings(run: Bench) -> Settings:
    return Settings(
        _env_file=None,
        secret_key=SecretStr(run.env["METERBRIDGE_SECRET_KEY"]),
        webhook_allowed_networks=(ip_network(ALLOWED_NETWORKS),),
    )


def set_up(run: Bench, port: int, destinations: int, publisher: Celery) -> Setup:
    """An approved bill (its events processed, before any rule exists), the destinations,
    and the rule that sends every ``bill.approved`` to all of them."""
    settings = _settings(run)
    with transaction(run.engine) as session:
        account = create_account(session, DEFAULT_ORG_ID, code="bench", name="Bench")
        bill, _ = generate_bill(
            session,
            DEFAULT_ORG_ID,
            account_id=account.id,
            period_start=date(2026, 10, 1),
            period_end=date(2026, 11, 1),
            currency="USD",
            line_items=[
                LineItem(
                    type=LineItemType.STANDING_CHARGE,
                    quantity=Decimal(1),
                    unit_price=Decimal("10.00"),
                    subtotal=Decimal("10.00"),
                )
            ],
        )
        _, approved = approve_bill(session, DEFAULT_ORG_ID, bill.id)
        assert approved is not None
        payload = json.loads(approved.payload)  # what the bill API logged
        appended = list(session.info.get(APPENDED, []))
    publish(run, publisher, appended)
    wait_events_done(run, [event_id for event_id, _ in appended], run.procs)

    urls = [f"http://127.0.0.1:{port}/d{n}" for n in range(destinations)]
    box = secret_box(settings)

    def check(url: str) -> object:
        return check_url(url, allowed_networks=settings.webhook_allowed_networks)

    with transaction(run.engine) as session:
        ids = [
            create_destination(
                session, box, DEFAULT_ORG_ID, url=url, description="", user_ids=[], check_url=check
            ).destination.id
            for url in urls
        ]
        create_rule(
            session,
            DEFAULT_ORG_ID,
            code="bench-all",
            name="Every approved bill to every destination",
            event_name=EVENT,
            always_fire=True,
            webhook_destination_ids=ids,
        )
    return Setup(payload, urls)


def publisher_app(run: Bench) -> Celery:
    """A Celery client on the run's broker and queue, with meterbridge's Celery settings."""
    settings = Settings(
        _env_file=None, broker_url=run.env["METERBRIDGE_BROKER_URL"], queue=run.queue
    )
    app = Celery("bench-webhooks", set_as_current=False)
    app.conf.update(celery_config(settings))
    return app


def publish(run: Bench, app: Celery, events: Sequence[tuple[str, str]]) -> None:
    """The messages ``tasks.publish.enqueue`` would send for these (id, type) pairs."""
    with app.producer_or_acquire() as producer:
        for task, task_args in routing.messages(events):
            app.send_task(task, args=task_args, producer=producer, queue=run.queue, retry=False)


def append_bills(run: Bench, payload: dict[str, Any], count: int) -> list[str]:
    """``count`` ``bill.approved`` events for the bill, in one transaction."""
    with transaction(run.engine) as session:
        return [
            append_internal(session, org_id=DEFAULT_ORG_ID, type=EVENT, payload=payload).id
            for _ in range(count)
        ]


# -- waiting and reading the log ---------------------------------------------------------


def wait_events_done(run: Bench, event_ids: list[str], procs: list[Proc]) -> None:
    query = sa.text(
        "SELECT count(*) FROM event WHERE id = ANY(:ids) "
        "AND status IN ('processed', 'ignored', 'dead')"
    )
    deadline = time.monotonic() + 120
    while True:
        with run.engine.connect() as connection:
            if connection.execute(query, {"ids": event_ids}).scalar_one() == len(event_ids):
                return
        for proc in procs:
            proc.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"the setup's {len(event_ids)} events were not processed")
        time.sleep(0.2)


@dataclass(frozen=True)
class Batch:
    messages: int
    delivered: int
    failed: int
    attempts: int
    first_created: datetime | None
    last_delivered: datetime | None
    first_event: datetime | None  # the first bill event's received_at
    last_created: datetime | None
    first_delivered: datetime | None

    @property
    def seconds(self) -> float:
        if self.first_created is None or self.last_delivered is None:
            return float("nan")
        return (self.last_delivered - self.first_created).total_seconds()

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds if self.seconds > 0 else float("nan")

    @property
    def rate_from_events(self) -> float:
        if self.first_event is None or self.last_delivered is None:
            return float("nan")
        return self.delivered / (self.last_delivered - self.first_event).total_seconds()

    @property
    def creating_seconds(self) -> float:
        """From the first message created to the last: the rule fanning out."""
        return _between(self.first_created, self.last_created)

    @property
    def first_wait_seconds(self) -> float:
        """From the first message created to the first delivered."""
        return _between(self.first_created, self.first_delivered)

    @property
    def delivering_rate(self) -> float:
        """Messages/s from the first delivered to the last: delivery alone."""
        seconds = _between(self.first_delivered, self.last_delivered)
        return self.delivered / seconds if seconds > 0 else float("nan")


def _between(start: datetime | None, end: datetime | None) -> float:
    return float("nan") if start is None or end is None else (end - start).total_seconds()


BATCH = sa.text("""
SELECT count(*), count(*) FILTER (WHERE status = 'succeeded'),
       count(*) FILTER (WHERE status IN ('failed', 'held')), coalesce(sum(attempts), 0),
       min(created_at), max(delivered_at),
       (SELECT min(received_at) FROM event WHERE id = ANY(:ids)),
       max(created_at), min(delivered_at)
FROM webhook_message WHERE event_id = ANY(:ids)
""")


def batch_of(run: Bench, event_ids: list[str]) -> Batch:
    with run.engine.connect() as connection:
        row = connection.execute(BATCH, {"ids": event_ids}).one()
    return Batch(*row)


def wait_delivered(
    run: Bench, event_ids: list[str], expected: int, *, stall_timeout: float
) -> Batch:
    """Until ``expected`` messages of these events are delivered; fails when one fails
    for good, or when none is delivered for ``stall_timeout`` seconds."""
    best, since = -1, time.monotonic()
    while True:
        batch = batch_of(run, event_ids)
        if batch.failed:
            raise RuntimeError(f"{batch.failed} messages failed or were held: {batch}")
        if batch.delivered >= expected:
            return batch
        for proc in run.procs:
            proc.check_alive()
        if batch.delivered > best:
            best, since = batch.delivered, time.monotonic()
        elif time.monotonic() - since > stall_timeout:
            raise TimeoutError(
                f"{batch.delivered} of {expected} messages delivered; none for {stall_timeout:.0f}s"
            )
        time.sleep(0.2)


def latencies_ms(run: Bench, event_ids: list[str]) -> list[float]:
    query = sa.text(
        "SELECT extract(epoch FROM delivered_at - created_at) * 1000 FROM webhook_message "
        "WHERE event_id = ANY(:ids) AND status = 'succeeded' ORDER BY 1"
    )
    with run.engine.connect() as connection:
        return [float(v) for v in connection.execute(query, {"ids": event_ids}).scalars()]


def percentile(values: list[float], share: float) -> float:
    """Linear interpolation between closest ranks (PostgreSQL's ``percentile_cont``)."""
    if not values:
        return float("nan")
    position = (len(values) - 1) * share
    low = int(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


def requests_of(run: Bench, event_ids: list[str]) -> list[tuple[str, bytes]]:
    """(URL, body) of every message of the batch, in the order they were created."""
    query = sa.text(
        "SELECT d.url, m.body FROM webhook_message m "
        "JOIN webhook_destination d ON d.id = m.destination_id "
        "WHERE m.event_id = ANY(:ids) ORDER BY m.id"
    )
    with run.engine.connect() as connection:
        return [(url, body.encode()) for url, body in connection.execute(query, {"ids": event_ids})]


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs spent busy since boot (/proc/stat: user, nice, system, irq,
    softirq), so that a run can say whether something else shared the machine."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return (user + nice + system + irq + softirq) / CLOCK_TICKS


def backend_cpu(run: Bench) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend connected to the run's database."""
    query = sa.text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
    with run.engine.connect() as connection:
        return {pid: cpu_seconds(pid) for pid in connection.execute(query).scalars()}


def broker_pid(run: Bench) -> int | None:
    """The Redis server's pid when it runs on this machine (``INFO server``), else None."""
    url = run.env["METERBRIDGE_BROKER_URL"].replace("redis+socket://", "unix://", 1)
    client = redis.Redis.from_url(url)
    try:
        info: dict[str, Any] = client.info("server")  # type: ignore[assignment]
        pid = int(info["process_id"])
    except (redis.RedisError, KeyError, ValueError):
        return None
    finally:
        client.close()
    return pid if Path(f"/proc/{pid}").exists() else None


@dataclass(frozen=True)
class CpuSample:
    at: float
    machine: float
    worker: float
    receiver: float
    postgres: dict[int, float]
    redis: float  # the broker's server process, when it runs on this machine
    own: float  # this process

    @classmethod
    def take(cls, run: Bench, worker: Proc, receiver: Proc, redis_pid: int | None) -> CpuSample:
        return cls(
            time.monotonic(),
            machine_busy_seconds(),
            worker.cpu_seconds(),
            receiver.cpu_seconds(),
            backend_cpu(run),
            cpu_seconds(redis_pid) if redis_pid else 0.0,
            time.process_time(),
        )

    def cores_since(self, start: CpuSample) -> dict[str, float]:
        """Cores used between ``start`` and this sample (1.0 = one CPU all the time).
        A backend that ended in between is missed, so ``others`` can be a little high."""
        wall = self.at - start.at
        postgres = sum(cpu - start.postgres.get(pid, 0.0) for pid, cpu in self.postgres.items())
        ours = {
            "worker": self.worker - start.worker,
            "postgres": postgres,
            "receiver": self.receiver - start.receiver,
            "redis": self.redis - start.redis,
            "bench": self.own - start.own,
        }
        machine = self.machine - start.machine
        cores = {name: seconds / wall for name, seconds in ours.items()}
        cores["machine"] = machine / wall
        cores["others"] = max(0.0, machine - sum(ours.values())) / wall
        return cores


# -- meterbridge -------------------------------------------------------------------------


def measure_meterbridge(
    run: Bench, args: argparse.Namespace, port: int, receiver: Proc
) -> dict[str, Any]:
    publisher = publisher_app(run)
    worker = run.start_worker(args.concurrency)
    setup = set_up(run, port, args.destinations, publisher)
    print(f"  {args.destinations} destinations, one rule; worker concurrency {args.concurrency}")

    if args.warmup_bills:
        warm = append_bills(run, setup.bill_payload, args.warmup_bills)
        publish(run, publisher, [(event_id, EVENT) for event_id in warm])
        wait_delivered(
            run, warm, args.warmup_bills * args.destinations, stall_timeout=args.stall_timeout
        )
        print(f"  warm-up: {args.warmup_bills * args.destinations} messages delivered")

    expected = args.bills * args.destinations
    events = append_bills(run, setup.bill_payload, args.bills)
    redis_pid = broker_pid(run)
    before = CpuSample.take(run, worker, receiver, redis_pid)
    publish(run, publisher, [(event_id, EVENT) for event_id in events])
    batch = wait_delivered(run, events, expected, stall_timeout=args.stall_timeout)
    after = CpuSample.take(run, worker, receiver, redis_pid)
    print(f"  meterbridge: {expected} messages in {batch.seconds:.1f}s = {batch.rate:,.1f}/s")
    latencies = latencies_ms(run, events)
    requests = requests_of(run, events)
    run.stop(worker)
    publisher.close()
    return {
        "batch": batch,
        "cores": after.cores_since(before),
        "worker_cpu_ms_per_message": (after.worker - before.worker) * 1000 / batch.messages,
        "latencies": latencies,
        "requests": requests,
        "body_bytes": sum(len(body) for _, body in requests) / len(requests),
    }


# -- the httpx baselines -----------------------------------------------------------------


def _post_all(requests: list[tuple[str, bytes]], *, new_connections: bool) -> None:
    headers = {"content-type": "application/json"}
    if new_connections:
        headers["connection"] = "close"
    with httpx.Client(timeout=15, trust_env=False) as client:
        for url, body in requests:
            answer = client.post(url, content=body, headers=headers)
            if answer.status_code != 200:
                raise RuntimeError(f"the receiver answered {answer.status_code}")


def httpx_rate(
    requests: list[tuple[str, bytes]], threads: int, *, new_connections: bool = False
) -> float:
    """Requests/s of ``threads`` threads, each with a client of its own, sharing the
    requests; one thread is a plain sequential loop."""
    post = partial(_post_all, new_connections=new_connections)
    _post_all(requests[:100], new_connections=new_connections)  # warm-up, not counted
    chunks = [requests[index::threads] for index in range(threads)]
    started = time.perf_counter()
    if threads == 1:
        post(requests)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(post, chunks))
    return len(requests) / (time.perf_counter() - started)


def measure_baselines(
    requests: list[tuple[str, bytes]], threads: int, receiver: Proc
) -> dict[str, float]:
    busy, own, server, clock = (
        machine_busy_seconds(),
        time.process_time(),
        receiver.cpu_seconds(),
        time.monotonic(),
    )
    sequential = httpx_rate(requests, 1)
    print(f"  httpx, sequential: {sequential:,.1f} requests/s")
    threaded = httpx_rate(requests, threads)
    print(f"  httpx, {threads} threads: {threaded:,.1f} requests/s")
    fresh = httpx_rate(requests, threads, new_connections=True)
    print(f"  httpx, {threads} threads, a connection per request: {fresh:,.1f} requests/s")
    wall = time.monotonic() - clock
    ours = time.process_time() - own + receiver.cpu_seconds() - server
    others = max(0.0, machine_busy_seconds() - busy - ours) / wall
    return {
        "sequential": sequential,
        "threaded": threaded,
        "threaded_new_connections": fresh,
        "others_cores": others,
    }


# -- report ------------------------------------------------------------------------------


def report(mb: dict[str, Any], base: dict[str, float], args: argparse.Namespace) -> None:
    batch: Batch = mb["batch"]
    latencies: list[float] = mb["latencies"]
    cores: dict[str, float] = mb["cores"]
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    threads = args.concurrency
    rows = [
        Row(f"deliveries/s vs httpx, {threads} threads (keep-alive)", batch.rate, base["threaded"]),
        Row("deliveries/s vs httpx, sequential (keep-alive)", batch.rate, base["sequential"]),
        Row(
            f"deliveries/s vs httpx, {threads} threads, a connection per request",
            batch.rate,
            base["threaded_new_connections"],
        ),
        Row("deliveries/s, counted from the first bill event", batch.rate_from_events),
        Row("deliveries/s, first delivered to last delivered", batch.delivering_rate),
        Row("first message created to last created", batch.creating_seconds, unit="s"),
        Row("first message created to first delivered", batch.first_wait_seconds, unit="s"),
        Row("p50 message created->delivered", p50, unit="ms"),
        Row("p99 message created->delivered", p99, unit="ms"),
        Row(
            "max message created->delivered",
            latencies[-1] if latencies else float("nan"),
            unit="ms",
        ),
        Row("attempts per message", batch.attempts / batch.messages, 1.0),
        Row("worker CPU per message", mb["worker_cpu_ms_per_message"], unit="ms"),
        Row("cores busy in the batch: worker (all processes)", cores["worker"]),
        Row("cores busy in the batch: this run's Postgres backends", cores["postgres"]),
        Row("cores busy in the batch: receiving server", cores["receiver"]),
        Row("cores busy in the batch: Redis", cores["redis"]),
        Row("cores busy in the batch: whole machine", cores["machine"]),
        Row("cores busy in the batch: anything else (other work, kernel)", cores["others"]),
        Row("cores busy in the httpx runs: anything else", base["others_cores"]),
        Row("message body (bytes)", mb["body_bytes"]),
    ]
    print_table(
        f"webhook delivery: {args.destinations} destinations x {args.bills} bills = "
        f"{batch.messages:,} messages, worker concurrency {args.concurrency} (prefork)",
        rows,
        baseline_name="baseline",
    )
    print(f"  {machine_note()}")
    data = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "messages": batch.messages,
        "seconds": batch.seconds,
        "deliveries_per_s": batch.rate,
        "deliveries_per_s_from_first_event": batch.rate_from_events,
        "deliveries_per_s_first_to_last_delivered": batch.delivering_rate,
        "creating_seconds": batch.creating_seconds,
        "first_wait_seconds": batch.first_wait_seconds,
        "latency_ms": {"p50": p50, "p99": p99, "max": latencies[-1] if latencies else None},
        "attempts": batch.attempts,
        "cores": cores,
        "worker_cpu_ms_per_message": mb["worker_cpu_ms_per_message"],
        "body_bytes": mb["body_bytes"],
        "httpx": base,
    }
    _write(args, data, mb, base)


def _write(
    args: argparse.Namespace, data: dict[str, Any], mb: dict[str, Any], base: dict[str, float]
) -> None:
    """JSON and PNG; only the JSON when matplotlib is not installed."""
    if importlib.util.find_spec("matplotlib") is None:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / "webhooks.json"
        path.write_text(json.dumps(data, indent=2, default=str) + "\n")
        print(f"\nwrote {path} (no PNG: pip install -r bench/requirements.txt)")
        return
    write_results(args.out, "webhooks", data, _chart(mb, base, args))


def _chart(mb: dict[str, Any], base: dict[str, float], args: argparse.Namespace) -> Any:
    from bench.common import pyplot

    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    labels = [
        "meterbridge\n(signed, 1 conn/msg)",
        f"httpx\n{args.concurrency} threads",
        "httpx\nsequential",
        f"httpx {args.concurrency} thr.\n1 conn/req",
    ]
    rates = [
        mb["batch"].rate,
        base["threaded"],
        base["sequential"],
        base["threaded_new_connections"],
    ]
    left.bar(labels, rates, color=["tab:blue", "tab:gray", "tab:gray", "tab:gray"])
    for index, rate in enumerate(rates):
        left.annotate(f"{rate:,.0f}/s", (index, rate), ha="center", va="bottom")
    left.set_ylim(0, max(rates) * 1.15)
    left.set_ylabel("deliveries (requests)/s")
    left.set_title(f"Concurrency {args.concurrency}")
    values = mb["latencies"]
    if values:
        shares = [(index + 1) / len(values) for index in range(len(values))]
        right.plot([v / 1000 for v in values], shares)
    right.set_xlabel("message created to delivered (s)")
    right.set_ylabel("share of messages")
    right.set_title(f"{mb['batch'].messages:,} messages in one batch")
    return fig


def main(argv: list[str] | None = None) -> None:
    args = _args(argv)
    print("webhook delivery benchmark")
    with bench(args, "webhooks", webhook_allowed_networks=ALLOWED_NETWORKS) as run:
        port = free_port()
        argv_server = [sys.executable, "-m", "bench.static_server", "--port", str(port)]
        receiver = run.start_http("receiver", [*argv_server, "--status", "200"], port)
        mb = measure_meterbridge(run, args, port, receiver)
        base = measure_baselines(mb["requests"], args.concurrency, receiver)
    report(mb, base, args)


if __name__ == "__main__":
    main()
