"""Growth benchmark: per-event cost (intake + processing) with a small log (10k events)
and a large one (1M), and the receiver's and worker's resident memory over a long run.

    python -m bench.growth                                   # 10k vs 1M, 100k-event run
    python -m bench.growth --base 1000 --large 5000 --events 200 --warmup 50 \\
        --rss-events 300                                     # smoke run

How: the log is pre-filled in Postgres with ``INSERT ... SELECT generate_series`` (events
``processed``, each with its attempt, ledger row and projection row, as processing leaves
them), then analysed. At each size a batch of ``--events`` signed webhooks goes through the
receiver and a worker (closed loop); the cost is wall time per event (first receipt to
last finish, from the ``event`` table) and CPU time per event of the receiver, the
worker (all its processes) and the database's backends (/proc/<pid>/stat). The long run
sends ``--rss-events`` more while sampling VmRSS (/proc/<pid>/status) of the receiver
and of the worker's processes; growth is measured from the end of the warm-up (the first
``--warmup-fraction`` of the events) to the end.
"""

from __future__ import annotations

import argparse
import bisect
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bench.common import (
    Bench,
    Proc,
    Row,
    Target,
    bench,
    cpu_seconds,
    event_body,
    machine_note,
    parser,
    print_table,
    pyplot,
    through_pipeline,
    write_results,
)
from bench.handlers import EVENT_TYPE, HANDLER_NAME
from domain.organisations import DEFAULT_ORG_ID

PREFILL_CHUNK = 100_000
PREFILL = sa.text("""
WITH ins AS (
  INSERT INTO event (id, org_id, source_id, provider, type, external_id, occurred_at,
                     received_at, payload, headers, status, attempts, replays, sweeps,
                     finished_at)
  SELECT 'evt_00' || lpad(upper(to_hex(g)), 24, '0'), :org, :source, 'generic', :type,
         'prefill-' || g, ts, ts, :payload, CAST('{}' AS json), 'processed', 1, 0, 0,
         ts + interval '20 milliseconds'
  FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS g,
       LATERAL (SELECT now() - interval '30 days' + g * interval '1 second') AS t(ts)
  RETURNING id, org_id, finished_at
), attempts AS (
  INSERT INTO attempt (event_id, org_id, number, replay, worker, started_at, finished_at,
                       duration_ms, outcome)
  SELECT id, org_id, 1, 0, 'prefill', finished_at, finished_at, 5.0, 'succeeded' FROM ins
), ledger AS (
  INSERT INTO ledger (event_id, handler, org_id, committed_at)
  SELECT id, :handler, org_id, finished_at FROM ins
)
INSERT INTO bench_projection (event_id, account, amount, received_at)
SELECT id, 'acc_' || lpad((abs(hashtext(id)) % 1000)::text, 4, '0'), 1, finished_at
FROM ins
""")
ANALYZED = ("event", "attempt", "ledger", "bench_projection")


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = parser(__doc__)
    p.add_argument("--base", type=int, default=10_000, help="events in the small log")
    p.add_argument("--large", type=int, default=1_000_000, help="events in the large log")
    p.add_argument("--events", type=int, default=10_000, help="events measured at each size")
    p.add_argument("--warmup", type=int, default=500, help="warm-up events before each")
    p.add_argument("--rss-events", type=int, default=100_000, help="events in the long run")
    p.add_argument("--warmup-fraction", type=float, default=0.1, help="of the long run")
    p.add_argument("--sample-seconds", type=float, default=1.0, help="RSS sampling interval")
    p.add_argument("--connections", type=int, default=32, help="concurrent connections")
    p.add_argument("--concurrency", type=int, default=2, help="worker processes (prefork)")
    args = p.parse_args(argv)
    if args.large <= args.base:
        p.error("--large must be more than --base")
    return args


# -- the log -----------------------------------------------------------------------------


def prefill(engine: Engine, source_id: str, first: int, last: int) -> None:
    """Processed events ``first``..``last`` (with attempts, ledger and projection rows)."""
    started = time.monotonic()
    payload = event_body(0).decode()
    for low in range(first, last + 1, PREFILL_CHUNK):
        high = min(last, low + PREFILL_CHUNK - 1)
        params = {"org": DEFAULT_ORG_ID, "source": source_id, "type": EVENT_TYPE}
        params |= {"payload": payload, "handler": HANDLER_NAME, "first": low, "last": high}
        with engine.begin() as connection:
            connection.execute(PREFILL, params)
        print(f"    pre-filled {high:,} events ({time.monotonic() - started:.0f}s)", flush=True)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for table in ANALYZED:
            connection.execute(sa.text(f"VACUUM ANALYZE {table}"))


def log_rows(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.text("SELECT count(*) FROM event")).scalar_one())


# -- cost per event ----------------------------------------------------------------------


def backend_pids(engine: Engine) -> list[int]:
    query = sa.text(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND backend_type = 'client backend'"
    )
    with engine.connect() as connection:
        return [int(pid) for pid in connection.execute(query).scalars()]


@dataclass
class CpuMeter:
    """CPU seconds of each process group, and of the database's backends, over a span."""

    engine: Engine
    procs: dict[str, Proc]
    start: dict[str, dict[int, float]] = field(default_factory=dict)

    def _sample(self) -> dict[str, dict[int, float]]:
        sample = {
            name: {pid: cpu_seconds(pid) for pid in p.pids()} for name, p in self.procs.items()
        }
        sample["postgres"] = {pid: cpu_seconds(pid) for pid in backend_pids(self.engine)}
        return sample

    def begin(self) -> None:
        self.start = self._sample()

    def end(self) -> dict[str, float]:
        """CPU seconds used since ``begin`` by processes alive at both ends."""
        now = self._sample()
        used = {}
        for name, pids in now.items():
            before = self.start.get(name, {})
            used[name] = sum(cpu - before[pid] for pid, cpu in pids.items() if pid in before)
        return used


def cost_at(run: Bench, target: Target, procs: dict[str, Proc], label: str, args: Any) -> dict:
    through_pipeline(run, target, f"{run.token}-{label}-warm", args.warmup)
    meter = CpuMeter(run.engine, procs)
    meter.begin()
    batch = through_pipeline(
        run, target, f"{run.token}-{label}", args.events, connections=args.connections
    )
    cpu = meter.end()
    result = {
        "log_rows": log_rows(run.engine),
        "events_per_s": batch.span.rate,
        "wall_ms_per_event": 1000 / batch.span.rate,
        **{
            f"{name}_cpu_ms_per_event": 1000 * seconds / args.events
            for name, seconds in cpu.items()
        },
    }
    print(
        f"  log of {result['log_rows']:,}: {batch.span.rate:,.1f} events/s, "
        f"{result['wall_ms_per_event']:.2f} ms/event"
    )
    return result


# -- memory over a long run --------------------------------------------------------------


class RssSampler:
    """VmRSS of each process group every ``interval`` seconds, in a thread."""

    def __init__(self, procs: dict[str, Proc], interval: float) -> None:
        self.procs = procs
        self.interval = interval
        self.samples: list[tuple[float, dict[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), {n: p.rss_kb() for n, p in self.procs.items()}))
            self._stop.wait(self.interval)


def finish_times(engine: Engine, prefix: str) -> list[float]:
    query = sa.text(
        "SELECT extract(epoch FROM finished_at) FROM event "
        "WHERE external_id LIKE :pattern AND finished_at IS NOT NULL ORDER BY 1"
    )
    with engine.connect() as connection:
        return [float(v) for v in connection.execute(query, {"pattern": f"{prefix}-%"}).scalars()]


def rss_run(run: Bench, target: Target, procs: dict[str, Proc], args: Any) -> dict[str, Any]:
    prefix = f"{run.token}-rss"
    with RssSampler(procs, args.sample_seconds) as sampler:
        through_pipeline(run, target, prefix, args.rss_events, connections=args.connections)
    finished = finish_times(run.engine, prefix)
    # each sample, with how many events of the run were processed by then
    series = [(bisect.bisect_right(finished, t), rss) for t, rss in sampler.samples]
    series = [point for point in series if point[0] < len(finished)] or series
    warm = int(len(finished) * args.warmup_fraction)
    after_warm = [point for point in series if point[0] >= warm] or series
    first, last = after_warm[0], after_warm[-1]
    growth = {}
    for name in procs:
        start_kb, end_kb, peak = first[1][name], last[1][name], max(p[1][name] for p in series)
        growth[name] = {"after_warmup_kb": start_kb, "end_kb": end_kb, "peak_kb": peak}
    events_span = max(1, last[0] - first[0])
    print(f"  long run: {len(finished):,} events, {len(series)} samples")
    return {"series": series, "growth": growth, "events_after_warmup": events_span}


# -- report ------------------------------------------------------------------------------


def report(base: dict, large: dict, rss: dict, args: argparse.Namespace) -> None:
    rows = [
        Row("events in the log", large["log_rows"], base["log_rows"]),
        Row("events/s, receipt to processed", large["events_per_s"], base["events_per_s"]),
        Row("wall time per event", large["wall_ms_per_event"], base["wall_ms_per_event"], "ms"),
    ]
    for name in ("receiver", "worker", "postgres"):
        key = f"{name}_cpu_ms_per_event"
        rows.append(Row(f"{name} CPU per event", large[key], base[key], "ms"))
    print_table(
        f"growth: cost per event with {args.large:,} vs {args.base:,} events in the log "
        f"({args.events:,} events measured at each)",
        rows,
        baseline_name=f"{args.base:,} log",
    )
    memory = []
    for name, figures in rss["growth"].items():
        start_mb, end_mb = figures["after_warmup_kb"] / 1024, figures["end_kb"] / 1024
        memory.append(Row(f"{name} RSS at end vs after warm-up", end_mb, start_mb, "MB"))
        per_10k = (end_mb - start_mb) * 10_000 / rss["events_after_warmup"]
        memory.append(Row(f"{name} RSS growth per 10k events", per_10k, unit="MB"))
    print_table(
        f"memory over {args.rss_events:,} events (warm-up: first {args.warmup_fraction:.0%})",
        memory,
        baseline_name="after warm-up",
    )
    print("  worker RSS is the sum over its processes (the parent and its prefork children)")
    print(f"  {machine_note()}")
    data = {"args": {k: str(v) for k, v in vars(args).items()}, "base": base, "large": large}
    data["rss"] = {"growth": rss["growth"], "series": rss["series"]}
    write_results(args.out, "growth", data, _chart(base, large, rss, args))


def _chart(base: dict, large: dict, rss: dict, args: argparse.Namespace) -> Any:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    names = ["wall", "receiver CPU", "worker CPU", "postgres CPU"]
    keys = [
        "wall_ms_per_event",
        *(f"{n}_cpu_ms_per_event" for n in ("receiver", "worker", "postgres")),
    ]
    width = 0.38
    xs = range(len(names))
    left.bar(
        [x - width / 2 for x in xs], [base[k] for k in keys], width, label=f"{args.base:,} in log"
    )
    left.bar(
        [x + width / 2 for x in xs], [large[k] for k in keys], width, label=f"{args.large:,} in log"
    )
    left.set_xticks(list(xs), names)
    left.set_ylabel("ms per event")
    left.set_title("Cost per event")
    left.legend()
    for name in rss["growth"]:
        right.plot(
            [p[0] for p in rss["series"]], [p[1][name] / 1024 for p in rss["series"]], label=name
        )
    right.axvline(
        int(args.rss_events * args.warmup_fraction),
        color="gray",
        linestyle=":",
        label="end of warm-up",
    )
    right.set_xlabel("events processed in the long run")
    right.set_ylabel("RSS (MB)")
    right.set_title("Resident memory")
    right.legend()
    return fig


def main(argv: list[str] | None = None) -> None:
    args = _args(argv)
    print("growth benchmark")
    with bench(args, "growth") as run:
        receiver, port = run.start_receiver()
        target = run.create_target(port)
        print(f"  pre-filling the log to {args.base:,} events")
        prefill(run.engine, target.source_id, 1, args.base)
        worker = run.start_worker(args.concurrency)
        procs = {"receiver": receiver, "worker": worker}
        base = cost_at(run, target, procs, "base", args)
        print(f"  pre-filling the log to {args.large:,} events")
        prefill(run.engine, target.source_id, args.base + 1, args.large)
        large = cost_at(run, target, procs, "large", args)
        rss = rss_run(run, target, procs, args)
    report(base, large, rss, args)


if __name__ == "__main__":
    main()
