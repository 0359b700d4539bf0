"""End-to-end benchmark: sustained events per second from receipt to processed (signed
webhooks into the receiver, a Celery worker running a real handler that writes a
projection row), against raw Celery no-op tasks drained by a worker with the same
settings on the same broker; and receipt-to-processed latency at half the sustained rate.

    python -m bench.end_to_end                              # 20,000 events, 60 s paced
    python -m bench.end_to_end --events 300 --warmup 50 --latency-seconds 3   # smoke run

How: the sustained rate is a batch of ``--events`` sent as fast as ``--connections``
connections allow, divided by the time from the first event's ``received_at`` to the last
one's ``finished_at`` (the ``event`` table), so intake and processing share the machine
as they do in production. The baseline publishes the same number of no-op tasks over one
producer and counts them done with Celery's task events. The latency run then sends
paced (open loop) at ``--rate-fraction`` of the sustained rate for ``--latency-seconds``.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import sqlalchemy as sa

from bench import noop_app
from bench.common import (
    Bench,
    PipelineRun,
    Row,
    bench,
    latencies_ms,
    machine_note,
    parser,
    print_table,
    pyplot,
    through_pipeline,
    wait_until,
    write_results,
)
from domain.settings import Settings


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = parser(__doc__)
    p.add_argument("--events", type=int, default=20_000, help="events in the sustained batch")
    p.add_argument("--warmup", type=int, default=500, help="warm-up events (and no-op tasks)")
    p.add_argument("--connections", type=int, default=32, help="concurrent connections")
    p.add_argument("--concurrency", type=int, default=2, help="worker processes (prefork)")
    p.add_argument("--latency-seconds", type=float, default=60, help="length of the paced run")
    p.add_argument(
        "--rate-fraction", type=float, default=0.5, help="paced rate, as a share of sustained"
    )
    return p.parse_args(argv)


# -- meterbridge -------------------------------------------------------------------------


def measure_meterbridge(run: Bench, args: argparse.Namespace) -> dict[str, Any]:
    receiver, port = run.start_receiver()
    worker = run.start_worker(args.concurrency)
    target = run.create_target(port)
    through_pipeline(run, target, f"{run.token}-warm", args.warmup)
    sustained = through_pipeline(
        run, target, f"{run.token}-sat", args.events, connections=args.connections
    )
    print(f"  meterbridge sustained: {sustained.span.rate:,.1f} events/s")
    paced_rate = sustained.span.rate * args.rate_fraction
    count = max(1, round(paced_rate * args.latency_seconds))
    paced = through_pipeline(
        run, target, f"{run.token}-half", count, connections=args.connections, rate=paced_rate
    )
    latency = latencies_ms(run.engine, f"{run.token}-half")
    print(
        f"  paced at {paced_rate:,.1f}/s: p50 {latency['p50']:.1f} ms, p99 {latency['p99']:.1f} ms"
    )
    result = {
        "sustained": sustained,
        "paced": paced,
        "paced_rate": paced_rate,
        "latency": latency,
        "latency_list": _latency_list(run, f"{run.token}-half"),
        "projection_rows": _projection_rows(run),
        "events_total": args.warmup + args.events + count,
    }
    run.stop(worker)
    run.stop(receiver)
    return result


def _latency_list(run: Bench, prefix: str) -> list[float]:
    query = sa.text(
        "SELECT extract(epoch FROM finished_at - received_at) * 1000 FROM event "
        "WHERE external_id LIKE :pattern AND status = 'processed' ORDER BY 1"
    )
    with run.engine.connect() as connection:
        return [float(v) for v in connection.execute(query, {"pattern": f"{prefix}-%"}).scalars()]


def _projection_rows(run: Bench) -> int:
    with run.engine.connect() as connection:
        query = sa.text("SELECT count(*) FROM bench_projection")
        return int(connection.execute(query).scalar_one())


# -- the Celery no-op baseline -----------------------------------------------------------


def measure_noop(run: Bench, args: argparse.Namespace) -> dict[str, Any]:
    queue = f"{run.queue}-noop"
    app = noop_app.create_app(Settings(_env_file=None, broker_url=run.args.redis_url, queue=queue))
    hostname = f"mbbench-{run.token}-noop@bench"
    argv = [sys.executable, "-m", "bench.noop_app", "--concurrency", str(args.concurrency)]
    worker = run.start("noop-worker", [*argv, "--hostname", hostname], METERBRIDGE_QUEUE=queue)
    timeout = 60 + args.events / 50
    with noop_app.watching(app, hostname, f"mbbench-{run.token}.celeryev") as watcher:
        wait_until(lambda: _seen(watcher, worker), timeout=90, what="the no-op worker's events")
        noop_app.publish(app, queue, args.warmup)
        watcher.wait_for(args.warmup, timeout)
        watcher.reset()
        started = time.time()
        noop_app.publish(app, queue, args.events)
        published = time.time()
        last = watcher.wait_for(args.events, timeout)
    run.stop(worker)
    rate = args.events / (last - started)
    print(f"  celery no-op: {rate:,.1f} tasks/s (published in {published - started:.2f}s)")
    return {"rate": rate, "publish_seconds": published - started, "seconds": last - started}


def _seen(watcher: noop_app.TaskWatcher, worker: Any) -> bool:
    worker.check_alive()
    return watcher.seen_worker


# -- report ------------------------------------------------------------------------------


def report(mb: dict[str, Any], noop: dict[str, Any], args: argparse.Namespace) -> None:
    sustained: PipelineRun = mb["sustained"]
    latency, paced_rate = mb["latency"], mb["paced_rate"]
    half = f"at {paced_rate:,.0f}/s ({args.rate_fraction:.0%} of sustained)"
    rows = [
        Row("events/s, receipt to processed (sustained)", sustained.span.rate, noop["rate"]),
        Row("intake accept rate during that batch (req/s)", sustained.load.rate),
        Row(f"p50 receipt->processed {half}", latency["p50"], unit="ms"),
        Row(f"p99 receipt->processed {half}", latency["p99"], unit="ms"),
        Row(f"max receipt->processed {half}", latency["max"], unit="ms"),
        Row("paced run: events", float(latency["count"])),
        Row("load generator CPU in the sustained batch (cores)", sustained.load.cpu_share),
        Row("projection rows written / events sent", mb["projection_rows"], mb["events_total"]),
    ]
    print_table(
        f"end to end: {args.events} events, {args.connections} connections, "
        f"worker concurrency {args.concurrency} (prefork)",
        rows,
        baseline_name="celery no-op",
    )
    print(f"  {machine_note()}")
    data = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "sustained_events_per_s": sustained.span.rate,
        "sustained_seconds": sustained.span.seconds,
        "intake_rate": sustained.load.rate,
        "paced_rate": paced_rate,
        "latency_ms": latency,
        "noop": noop,
        "projection_rows": mb["projection_rows"],
        "events_total": mb["events_total"],
    }
    write_results(args.out, "end_to_end", data, _chart(mb, noop, args))


def _chart(mb: dict[str, Any], noop: dict[str, Any], args: argparse.Namespace) -> Any:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    rates = [mb["sustained"].span.rate, noop["rate"]]
    left.bar(
        ["meterbridge\n(handler writes a row)", "Celery no-op"],
        rates,
        color=["tab:blue", "tab:gray"],
    )
    for index, rate in enumerate(rates):
        left.annotate(f"{rate:,.0f}/s", (index, rate), ha="center", va="bottom")
    left.set_ylim(0, max(rates) * 1.15)
    left.set_ylabel("events/s")
    left.set_title(f"Sustained, concurrency {args.concurrency}")
    values = mb["latency_list"]
    if values:
        shares = [(index + 1) / len(values) for index in range(len(values))]
        right.plot(values, shares)
        right.axvline(mb["latency"]["p99"], color="tab:red", linestyle="--", label="p99")
        right.legend()
    right.set_xlabel("receipt to processed (ms)")
    right.set_ylabel("share of events")
    right.set_title(f"Latency at {mb['paced_rate']:,.0f} events/s")
    return fig


def main(argv: list[str] | None = None) -> None:
    args = _args(argv)
    print("end-to-end benchmark")
    with bench(args, "e2e") as run:
        mb = measure_meterbridge(run, args)
        noop = measure_noop(run, args)
    report(mb, noop, args)


if __name__ == "__main__":
    main()
