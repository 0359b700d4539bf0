"""Intake benchmark: durable accepts per second of signed webhooks through
``POST /webhooks/{source_id}`` (one receiver process on Postgres and Redis), against a bare
ASGI handler that parses the same JSON and answers 202 (same uvicorn settings), and the
load generator's ceiling against a static HTTP server.

Load comes from wrk (a Lua script replays a pool of pre-signed requests, each with its
own webhook-id) when it is installed, else from bench/loadgen.py (asyncio streams).

    python -m bench.intake                      # 30 s per target
    python -m bench.intake --duration 3 --warmup 1 --max-rate 3000   # smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.common import (
    REPO,
    Bench,
    Proc,
    Row,
    Target,
    bench,
    event_body,
    free_port,
    machine_note,
    parser,
    print_table,
    pyplot,
    signed_headers,
    signed_request,
    webhook_requests,
    write_results,
)
from bench.loadgen import run_load

LUA = REPO / "bench" / "wrk_pool.lua"
MAX_SIGNED_AGE = 280  # seconds; the receiver refuses timestamps more than 300 s old


@dataclass
class Measured:
    target: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    seconds: float
    errors: int
    loadgen_cpu_share: float  # CPU seconds of the load generator per second (1.0 = a core)
    reused: int = 0  # wrk ran past its pool: repeats of already-sent webhook ids


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = parser(__doc__)
    p.add_argument("--duration", type=int, default=30, help="measured seconds per target")
    p.add_argument("--warmup", type=int, default=5, help="warm-up seconds per target")
    p.add_argument("--connections", type=int, default=32, help="concurrent connections")
    p.add_argument(
        "--max-rate",
        type=int,
        default=5000,
        help="pre-signed pool size per second of run (distinct webhook ids); must exceed "
        "what the receiver reaches, or repeats are reported",
    )
    p.add_argument("--receiver-workers", type=int, default=1, help="uvicorn processes")
    p.add_argument("--wrk-threads", type=int, default=1, help="wrk threads")
    p.add_argument(
        "--loadgen",
        choices=["auto", "wrk", "asyncio"],
        default="auto",
        help="auto: wrk when installed, else the asyncio generator",
    )
    args = p.parse_args(argv)
    if args.warmup + args.duration > MAX_SIGNED_AGE - 40:
        p.error(f"--warmup plus --duration must stay under {MAX_SIGNED_AGE - 40} s")
    return args


def _loadgen(choice: str) -> str:
    if choice == "auto":
        return "wrk" if shutil.which("wrk") else "asyncio"
    if choice == "wrk" and not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install -y wrk)")
    return choice


# -- wrk ---------------------------------------------------------------------------------


def write_pool(target: Target, prefix: str, count: int, threads: int, directory: Path) -> Path:
    """Pre-sign ``count`` webhooks into one file per wrk thread; returns the file prefix."""
    pool = directory / prefix
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(Path(f"{pool}.{n}").open("w")) for n in range(threads)]
        for number in range(count):
            msg_id, body = f"{prefix}-{number}", event_body(number)
            timestamp, signature = signed_headers(target, msg_id, body)
            files[number % threads].write(f"{msg_id}\t{timestamp}\t{signature}\t{body.decode()}\n")
    return pool


def run_wrk(name: str, port: int, path: str, pool: Path, seconds: int, args: Any) -> Measured:
    out = pool.parent / f"wrk-{name}.out"
    argv = [
        "wrk",
        f"-t{args.wrk_threads}",
        f"-c{args.connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        f"http://127.0.0.1:{port}",
        "--",
        str(pool),
        path,
    ]
    with out.open("wb") as handle:
        proc = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    text = out.read_text()
    if status != 0 or "BENCHJSON " not in text:
        raise RuntimeError(f"wrk failed ({status}):\n{text[-2000:]}")
    data = json.loads(text.split("BENCHJSON ", 1)[1].splitlines()[0])
    elapsed = data["duration_us"] / 1e6
    errors = sum(data[key] for key in data if key.endswith("errors") or key == "timeouts")
    return Measured(
        target=name,
        requests_per_s=data["requests"] / elapsed,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        requests=data["requests"],
        seconds=elapsed,
        errors=errors,
        loadgen_cpu_share=(usage.ru_utime + usage.ru_stime) / elapsed,
        reused=data["reused"],
    )


# -- the asyncio generator (when wrk is not installed) -----------------------------------


def run_asyncio(name: str, port: int, requests: Any, seconds: int, args: Any) -> Measured:
    result = run_load("127.0.0.1", port, requests, connections=args.connections, duration=seconds)
    return Measured(
        target=name,
        requests_per_s=result.count(200, 202) / result.elapsed,
        p50_ms=result.percentile_ms(50),
        p99_ms=result.percentile_ms(99),
        requests=result.requests,
        seconds=result.elapsed,
        errors=result.errors + result.requests - result.count(200, 202),
        loadgen_cpu_share=result.cpu_share,
    )


# -- the three targets -------------------------------------------------------------------


class Driver:
    """Warm-up then measured run against one server, with wrk or the asyncio generator."""

    def __init__(self, run: Bench, target: Target, args: argparse.Namespace, loadgen: str):
        self.run, self.target, self.args, self.loadgen = run, target, args, loadgen
        self.pools: dict[str, Path] = {}

    def sign_pools(self) -> None:
        """Pre-sign the warm-up and measured pools (wrk only), just before they are used."""
        if self.loadgen != "wrk":
            return
        started = time.monotonic()
        for phase, seconds in (("warm", self.args.warmup), ("main", self.args.duration)):
            count = max(1000, seconds * self.args.max_rate)
            prefix = f"{self.run.token}-{phase}"
            self.pools[phase] = write_pool(
                self.target, prefix, count, self.args.wrk_threads, self.run.tmp
            )
        print(f"  signed the request pools in {time.monotonic() - started:.1f}s")

    def measure(self, name: str, port: int) -> Measured:
        if self.args.warmup:
            self._once(f"{name}-warm", port, "warm", self.args.warmup)
        measured = self._once(name, port, "main", self.args.duration)
        reused = f", repeats {measured.reused}" if name == "meterbridge" else ""
        print(
            f"  {name}: {measured.requests_per_s:,.0f} req/s, p50 {measured.p50_ms:.2f} ms, "
            f"p99 {measured.p99_ms:.2f} ms, errors {measured.errors}{reused}"
        )
        return measured

    def _once(self, name: str, port: int, phase: str, seconds: int) -> Measured:
        if self.loadgen == "wrk":
            pool = self.pools[phase]
            return run_wrk(name, port, self.target.path, pool, seconds, self.args)
        return run_asyncio(name, port, self._requests(name, phase), seconds, self.args)

    def _requests(self, name: str, phase: str) -> Any:
        prefix = f"{self.run.token}-{phase}"
        if name.startswith("meterbridge"):  # signed as sent: every id distinct, never stale
            return webhook_requests(self.target, prefix, 10**9)
        pool = [signed_request(self.target, f"{prefix}-{n}", event_body(n)) for n in range(1000)]
        return itertools.cycle(pool)


def stored_rows(run: Bench) -> int:
    query = sa.text("SELECT count(*) FROM event WHERE external_id LIKE :pattern")
    with run.engine.connect() as connection:
        return int(connection.execute(query, {"pattern": f"{run.token}-main-%"}).scalar_one())


def measure_all(run: Bench, args: argparse.Namespace, loadgen: str) -> dict[str, Any]:
    receiver, port = run.start_receiver(args.receiver_workers)
    driver = Driver(run, run.create_target(port), args, loadgen)
    driver.sign_pools()
    mb = driver.measure("meterbridge", port)
    stored = stored_rows(run)
    run.stop(receiver)
    bare = _serve(run, driver, "bare", ["bench.bare_app", "--workers", str(args.receiver_workers)])
    fastapi = _serve(
        run,
        driver,
        "bare-fastapi",
        ["bench.bare_app", "--workers", str(args.receiver_workers), "--framework", "fastapi"],
    )
    static = _serve(run, driver, "static", ["bench.static_server"])
    return {"meterbridge": mb, "bare": bare, "fastapi": fastapi, "static": static, "stored": stored}


def _serve(run: Bench, driver: Driver, name: str, module_argv: list[str]) -> Measured:
    port = free_port()
    argv = [sys.executable, "-m", module_argv[0], "--port", str(port), *module_argv[1:]]
    server: Proc = run.start_http(name, argv, port)
    try:
        return driver.measure(name, port)
    finally:
        run.stop(server)


# -- report ------------------------------------------------------------------------------


def report(results: dict[str, Any], args: argparse.Namespace, loadgen: str) -> None:
    mb, bare, static = results["meterbridge"], results["bare"], results["static"]
    accepts = results["stored"] / mb.seconds
    rows = [
        Row("requests/s answered 2xx", mb.requests_per_s, bare.requests_per_s),
        Row("durable accepts/s (rows stored)", accepts, bare.requests_per_s),
        Row("p50 latency", mb.p50_ms, bare.p50_ms, "ms"),
        Row("p99 latency", mb.p99_ms, bare.p99_ms, "ms"),
        Row(
            "durable accepts/s vs a bare FastAPI handler",
            accepts,
            results["fastapi"].requests_per_s,
        ),
        Row("p99 latency vs a bare FastAPI handler", mb.p99_ms, results["fastapi"].p99_ms, "ms"),
        Row("ceiling: static server requests/s", static.requests_per_s),
        Row("bare handler vs ceiling, requests/s", bare.requests_per_s, static.requests_per_s),
        Row("load generator CPU at the ceiling (cores)", static.loadgen_cpu_share),
    ]
    print_table(
        f"intake: {args.connections} connections, {args.duration}s measured per target, "
        f"{args.receiver_workers} server process(es), load from {loadgen}",
        rows,
        baseline_name="bare ASGI",
    )
    if loadgen != "wrk":
        print("  note: wrk was not available; load came from bench/loadgen.py (asyncio streams)")
    if mb.reused:
        print(f"  warning: wrk ran past its pool; {mb.reused} repeats (raise --max-rate)")
    print(f"  {machine_note()}")
    data = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "loadgen": loadgen,
        "durable_accepts_per_s": accepts,
        **{name: asdict(m) for name, m in results.items() if isinstance(m, Measured)},
        "stored": results["stored"],
    }
    write_results(args.out, "intake", data, _chart(mb, bare, static, args))


def _chart(mb: Measured, bare: Measured, static: Measured, args: argparse.Namespace) -> Any:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    names = ["meterbridge\n(durable)", "bare ASGI", "static\n(ceiling)"]
    rates = [m.requests_per_s for m in (mb, bare, static)]
    left.bar(names, rates, color=["tab:blue", "tab:gray", "lightgray"])
    left.set_yscale("log")
    left.set_ylim(top=max(rates) * 3)
    left.set_ylabel("requests/s (log scale)")
    left.set_title(f"Intake throughput, {args.connections} connections")
    for index, rate in enumerate(rates):
        left.annotate(f"{rate:,.0f}", (index, rate), ha="center", va="bottom")
    width = 0.35
    xs = range(3)
    right.bar(
        [x - width / 2 for x in xs], [m.p50_ms for m in (mb, bare, static)], width, label="p50"
    )
    right.bar(
        [x + width / 2 for x in xs], [m.p99_ms for m in (mb, bare, static)], width, label="p99"
    )
    right.set_xticks(list(xs), names)
    right.set_yscale("log")
    right.set_ylabel("latency (ms, log scale)")
    right.set_title("Latency")
    right.legend()
    return fig


def main(argv: list[str] | None = None) -> None:
    args = _args(argv)
    loadgen = _loadgen(args.loadgen)
    print(f"intake benchmark; load generator: {loadgen}")
    with bench(args, "intake") as run:
        results = measure_all(run, args, loadgen)
    report(results, args, loadgen)


if __name__ == "__main__":
    main()
