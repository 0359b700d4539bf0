"""Scale-out benchmark: end-to-end events per second with 1, 2 and 4 worker processes
(``meterbridge worker`` each, on the same database and broker), one receiver; and the
command that adds a worker on another machine.

    python -m bench.scale_out                                 # 10,000 events per step
    python -m bench.scale_out --events 200 --warmup 50 --workers 1,2   # smoke run

How: for each count, that many workers are started (``--concurrency`` prefork processes
each; 1 by default, so N workers are N processes doing work), a warm-up batch runs, then
a batch of ``--events`` signed webhooks is sent as fast as ``--connections`` allow; the
rate is the batch over first ``received_at`` to last ``finished_at``. The workers are
stopped before the next count. On one machine the workers share its cores with the
receiver, Postgres, Redis and the load generator, so this shows contention as much as
scaling; run the printed command on other machines to scale for real.
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from bench.common import (
    Bench,
    Row,
    bench,
    machine_note,
    parser,
    print_table,
    pyplot,
    through_pipeline,
    write_results,
)


def _counts(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of positive counts")
    return counts


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = parser(__doc__)
    p.add_argument("--workers", type=_counts, default="1,2,4", help="worker counts")
    p.add_argument("--concurrency", type=int, default=1, help="prefork processes per worker")
    p.add_argument("--events", type=int, default=10_000, help="events measured per count")
    p.add_argument("--warmup", type=int, default=300, help="warm-up events per count")
    p.add_argument("--connections", type=int, default=32, help="concurrent connections")
    return p.parse_args(argv)


def rate_with(run: Bench, target: Any, count: int, args: argparse.Namespace) -> float:
    workers = [run.start_worker(args.concurrency, index) for index in range(count)]
    try:
        through_pipeline(run, target, f"{run.token}-w{count}-warm", args.warmup)
        batch = through_pipeline(
            run, target, f"{run.token}-w{count}", args.events, connections=args.connections
        )
    finally:
        for worker in workers:
            run.stop(worker)
    print(f"  {count} worker(s): {batch.span.rate:,.1f} events/s")
    return batch.span.rate


def add_worker_command(run: Bench, args: argparse.Namespace) -> str:
    """What a user runs on another machine: ``meterbridge worker`` with the same
    METERBRIDGE_* configuration as the receiver and the other workers."""
    handlers = shlex.quote(run.env["METERBRIDGE_HANDLER_MODULES"])
    return "\n".join(
        [
            "export METERBRIDGE_DATABASE_URL=postgresql://USER:PASSWORD@DB_HOST:5432/DATABASE",
            "export METERBRIDGE_BROKER_URL=redis://REDIS_HOST:6379/0",
            "export METERBRIDGE_SECRET_KEY=...   # the same key as every other process",
            f"export METERBRIDGE_QUEUE={run.queue}   # the same queue (default: meterbridge)",
            f"export METERBRIDGE_HANDLER_MODULES={handlers}   # the same handler modules",
            f"meterbridge worker --concurrency {args.concurrency} --hostname w2@%h",
        ]
    )


def report(rates: dict[int, float], command: str, args: argparse.Namespace) -> None:
    first = min(rates)
    rows = [
        Row(f"{count} worker(s) x {args.concurrency}: events/s", rate, rates[first])
        for count, rate in rates.items()
    ]
    rows += [
        Row(f"{count} worker(s): share of ideal scaling", rate / (rates[first] * count / first))
        for count, rate in rates.items()
        if count != first
    ]
    print_table(
        f"scale-out: {args.events:,} events per count, {args.connections} connections, "
        "one receiver",
        rows,
        baseline_name=f"{first} worker(s)",
    )
    print(f"  {machine_note()}")
    print("\nTo add workers on other machines, run there (same configuration as every process):")
    print("\n".join(f"    {line}" for line in command.splitlines()))
    data = {"args": {k: str(v) for k, v in vars(args).items()}, "rates": rates, "command": command}
    write_results(args.out, "scale_out", data, _chart(rates, args))


def _chart(rates: dict[int, float], args: argparse.Namespace) -> Any:
    plt = pyplot()
    fig, axes = plt.subplots(figsize=(6, 4))
    counts = list(rates)
    first = counts[0]
    axes.plot(counts, [rates[c] for c in counts], marker="o", label="measured")
    axes.plot(counts, [rates[first] * c / first for c in counts], linestyle="--", label="ideal")
    axes.set_xticks(counts)
    axes.set_xlabel(f"workers (concurrency {args.concurrency} each)")
    axes.set_ylabel("events/s, receipt to processed")
    axes.set_title("Scale-out on one machine")
    axes.legend()
    return fig


def main(argv: list[str] | None = None) -> None:
    args = _args(argv)
    print("scale-out benchmark")
    with bench(args, "scale") as run:
        _, port = run.start_receiver()
        target = run.create_target(port)
        rates = {count: rate_with(run, target, count, args) for count in sorted(args.workers)}
        command = add_worker_command(run, args)
    report(rates, command, args)


if __name__ == "__main__":
    main()
