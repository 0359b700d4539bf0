"""Bulk replay benchmark: 100k dead letters sent back with ``meterbridge dead-letters replay
--all`` while a worker processes them, against the end-to-end rate measured in the same
run; and the replay command's resident memory while it streams.

    python -m bench.replay                                        # 100k dead letters
    python -m bench.replay --dead 2000 --e2e-events 1000 --warmup 100   # smoke run

How: the end-to-end rate comes first, as in ``bench.end_to_end`` (``--e2e-events``
signed webhooks through the receiver and a worker, first receipt to last finish). Then
``--dead`` dead letters are written straight into the log (``INSERT ... SELECT
generate_series``: events ``dead`` after one permanent failure, with that attempt), of
the type the benchmark's real handler processes. The replay command runs as a user runs
it, with the worker already up; the replay rate is the dead letters divided by the time
from the command's start (the database clock) to the last one's ``finished_at``. The
command's VmRSS is sampled every 0.1 s: growth is the largest sample of the last tenth of
its run against the largest of its third tenth (past start-up).
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bench.common import (
    CLI,
    Bench,
    Proc,
    Row,
    bench,
    event_body,
    machine_note,
    parser,
    print_table,
    pyplot,
    span_of,
    through_pipeline,
    wait_processed,
    write_results,
)
from bench.handlers import EVENT_TYPE
from domain.organisations import DEFAULT_ORG_ID

DEAD_PREFIX = "dead"
PREFILL_DEAD = sa.text("""
WITH ins AS (
  INSERT INTO event (id, org_id, source_id, provider, type, external_id, occurred_at,
                     received_at, payload, headers, status, attempts, replays, sweeps,
                     finished_at, dead_at, dead_reason, last_error)
  SELECT 'evt_00' || lpad(upper(to_hex(g)), 24, '0'), :org, :source, 'generic', :type,
         :prefix || '-' || g, ts, ts, :payload, CAST('{}' AS json), 'dead', 1, 0, 0,
         ts, ts, 'permanent', 'PermanentError: the benchmark said so'
  FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS g,
       LATERAL (SELECT now() - interval '1 day' + g * interval '1 millisecond') AS t(ts)
  RETURNING id, org_id, finished_at
)
INSERT INTO attempt (event_id, org_id, number, replay, worker, started_at, finished_at,
                     duration_ms, outcome, error_class, error_message)
SELECT id, org_id, 1, 0, 'prefill', finished_at, finished_at, 1.0, 'dead',
       'domain.errors.PermanentError', 'the benchmark said so'
FROM ins
""")
PREFILL_CHUNK = 50_000


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = parser(__doc__)
    p.add_argument("--dead", type=int, default=100_000, help="dead letters to replay")
    p.add_argument("--e2e-events", type=int, default=20_000, help="events in the e2e batch")
    p.add_argument("--warmup", type=int, default=500, help="warm-up events")
    p.add_argument("--connections", type=int, default=32, help="concurrent connections")
    p.add_argument("--concurrency", type=int, default=2, help="worker processes (prefork)")
    return p.parse_args(argv)


def prefill_dead(engine: Engine, source_id: str, count: int) -> None:
    started = time.monotonic()
    params: dict[str, Any] = {"org": DEFAULT_ORG_ID, "source": source_id, "type": EVENT_TYPE}
    params |= {"payload": event_body(0).decode(), "prefix": DEAD_PREFIX}
    for low in range(1, count + 1, PREFILL_CHUNK):
        high = min(count, low + PREFILL_CHUNK - 1)
        with engine.begin() as connection:
            connection.execute(PREFILL_DEAD, params | {"first": low, "last": high})
        print(f"    wrote {high:,} dead letters ({time.monotonic() - started:.0f}s)", flush=True)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for table in ("event", "attempt"):
            connection.execute(sa.text(f"VACUUM ANALYZE {table}"))


class RssSampler:
    """VmRSS of one process every ``interval`` seconds, until it exits."""

    def __init__(self, proc: Proc, interval: float = 0.1) -> None:
        self.proc = proc
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        started = time.monotonic()
        while self.proc.popen.poll() is None:
            kb = self.proc.rss_kb()
            if kb:
                self.samples.append((time.monotonic() - started, kb))
            time.sleep(self.interval)

    def join(self) -> None:
        self._thread.join()

    def growth(self) -> tuple[int, int, int]:
        """(largest kB once warmed up, largest in the last tenth, largest overall).
        Warmed up: the third tenth of the run, past start-up and the first chunks."""
        end = self.samples[-1][0]
        warm = max(kb for t, kb in self.samples if end * 0.2 <= t <= end * 0.3)
        last = max(kb for t, kb in self.samples if t >= end * 0.9)
        return warm, last, max(kb for _, kb in self.samples)


def db_now(engine: Engine) -> Any:
    with engine.connect() as connection:
        return connection.execute(sa.text("SELECT clock_timestamp()")).scalar_one()


def measure(run: Bench, args: argparse.Namespace) -> dict[str, Any]:
    receiver, port = run.start_receiver()
    worker = run.start_worker(args.concurrency)
    target = run.create_target(port)
    through_pipeline(run, target, f"{run.token}-warm", args.warmup)
    e2e = through_pipeline(
        run, target, f"{run.token}-e2e", args.e2e_events, connections=args.connections
    )
    print(f"  end to end: {e2e.span.rate:,.1f} events/s")
    run.stop(receiver)

    prefill_dead(run.engine, target.source_id, args.dead)
    started_at = db_now(run.engine)
    clock = time.monotonic()
    replay = run.start("replay", [*CLI, "dead-letters", "replay", "--all"])
    sampler = RssSampler(replay).start()
    replay.popen.wait(timeout=3600)
    command_seconds = time.monotonic() - clock
    sampler.join()
    if replay.popen.returncode != 0:
        raise RuntimeError(f"replay exited {replay.popen.returncode}:\n{replay.tail()}")
    wait_processed(run.engine, [worker])
    span = span_of(run.engine, DEAD_PREFIX)
    if span.count != args.dead:
        raise RuntimeError(f"only {span.count} of {args.dead} replayed dead letters processed")
    replay_seconds = (span.last_finished - started_at).total_seconds()
    first, last, peak = sampler.growth()
    print(f"  replay: {args.dead / replay_seconds:,.1f} events/s, command {command_seconds:.1f}s")
    run.stop(worker)
    return {
        "e2e_rate": e2e.span.rate,
        "replay_rate": args.dead / replay_seconds,
        "replay_seconds": replay_seconds,
        "command_seconds": command_seconds,
        "publish_rate": args.dead / command_seconds,
        "rss_warm_kb": first,
        "rss_last_tenth_kb": last,
        "rss_peak_kb": peak,
        "rss_samples": sampler.samples,
    }


def report(result: dict[str, Any], args: argparse.Namespace) -> None:
    first, last = result["rss_warm_kb"], result["rss_last_tenth_kb"]
    rows = [
        Row(
            "replay: dead letters/s, command start to processed",
            result["replay_rate"],
            result["e2e_rate"],
        ),
        Row("replay command: dead letters moved and queued per s", result["publish_rate"]),
        Row("replay command: seconds", result["command_seconds"], unit="s"),
        Row("replay command RSS, last tenth vs third tenth (MB)", last / 1024, first / 1024),
        Row("replay command RSS, peak (MB)", result["rss_peak_kb"] / 1024),
    ]
    print_table(
        f"bulk replay: {args.dead:,} dead letters, worker concurrency {args.concurrency} "
        f"(prefork); baseline: end to end, {args.e2e_events:,} webhooks",
        rows,
        baseline_name="baseline",
    )
    print(f"  {machine_note()}")
    data = {k: v for k, v in result.items() if k != "rss_samples"}
    data["args"] = {k: str(v) for k, v in vars(args).items()}
    write_results(args.out, "replay", data, _chart(result, args))


def _chart(result: dict[str, Any], args: argparse.Namespace) -> Any:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    rates = [result["replay_rate"], result["e2e_rate"]]
    left.bar(["bulk replay", "end to end"], rates, color=["tab:blue", "tab:gray"])
    for index, rate in enumerate(rates):
        left.annotate(f"{rate:,.0f}/s", (index, rate), ha="center", va="bottom")
    left.set_ylim(0, max(rates) * 1.15)
    left.set_ylabel("events/s")
    left.set_title(f"{args.dead:,} dead letters replayed")
    seconds = [t for t, _ in result["rss_samples"]]
    megabytes = [kb / 1024 for _, kb in result["rss_samples"]]
    right.plot(seconds, megabytes)
    right.set_ylim(0, max(megabytes) * 1.2)
    right.set_xlabel("seconds since the replay command started")
    right.set_ylabel("RSS (MB)")
    right.set_title("replay command memory")
    return fig


def main(argv: list[str] | None = None) -> None:
    args = _args(argv)
    print("bulk replay benchmark")
    with bench(args, "replay") as run:
        result = measure(run, args)
    report(result, args)


if __name__ == "__main__":
    main()
