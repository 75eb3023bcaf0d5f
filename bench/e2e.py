"""Command → visible in the customer timeline, through the whole local stack: `python bench/e2e.py --help`.

Starts `crm up`'s stack (crm_cli.stack.start) in a temporary CRM_HOME with embedded PostgreSQL and
tansu on free ports (the HTTP ports 8000-8003 and metrics ports 9100-9103 are fixed: if anything
listens there the benchmark says who and stops). Then, for each rate asked for, sends
POST /customers open-loop (each command is issued on its own timetable slot, never waiting for the
previous one) with an X-Correlation-ID per command, while a separate watcher process polls the
projections database every ~2 ms and notes when each correlation id first appears in
timeline_entries. Latency = first appearance − issue time. Prints figures next to the targets;
nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import platform
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import psutil
from cpu import TreeCpu, busiest_others, every_process, listener_pid, machine_busy, wait_quiet
from crm_cli import stack as local_stack
from crm_cli.infra import free_port
from crm_eventstore.provision import database_url
from latency import Latencies
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

TARGET_P50_MS = 15.0
TARGET_P99_MS = 50.0
FIXED_PORTS = {
    **{f"http {name}": port for name, port in local_stack.HTTP_PORTS.items()},
    **{f"metrics {name}": port for name, port in local_stack.METRICS_PORTS.items()},
}
# Variables that would point the stack at someone else's servers instead of its own.
REDIRECTS = (
    "CRM_DATABASE_URL",
    "CRM_KAFKA_BOOTSTRAP_SERVERS",
    "CRM_KEYS_DATABASE_URL",
    "CRM_CONTACTS_DATABASE_URL",
    "CRM_DEALS_DATABASE_URL",
    "CRM_SUPPORT_DATABASE_URL",
    "CRM_PROJECTIONS_DATABASE_URL",
)

console = Console(width=None if sys.stdout.isatty() else 150)

# --what-if: candidate fixes patched into every process of the stack at interpreter start-up
# (libs/ untouched), to measure what each is worth before anyone writes the real patch.
WHAT_IF_SITE = """
import os

_wait = os.environ.get("CRM_BENCH_FETCH_MAX_WAIT_MS")
if _wait:
    from faststream.kafka.broker.registrator import KafkaRegistrator

    _subscriber = KafkaRegistrator.subscriber

    def _patched_subscriber(self, *topics, **kwargs):
        kwargs["fetch_max_wait_ms"] = int(_wait)
        return _subscriber(self, *topics, **kwargs)

    KafkaRegistrator.subscriber = _patched_subscriber

if os.environ.get("CRM_BENCH_POOL_RESET") == "off":
    import asyncpg

    _create_pool = asyncpg.create_pool

    async def _keep_session(conn):
        return None

    def _patched_create_pool(*args, **kwargs):
        kwargs.setdefault("reset", _keep_session)
        return _create_pool(*args, **kwargs)

    asyncpg.create_pool = _patched_create_pool
"""
WHAT_IFS = {"fetch-wait": "CRM_BENCH_FETCH_MAX_WAIT_MS", "pool-reset": "CRM_BENCH_POOL_RESET"}


# ------------------------------------------------------------------------------------------
# The watcher: a process of its own, so that the load generator never delays an observation
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sighting:
    """When a command's event first showed up in the timeline, and its timestamps on the way."""

    seen_mono_ns: int
    seen_wall_ns: int
    recorded_at_ns: int
    consumer_tx_ns: int


_NEW_ROWS = (
    "SELECT t.seq, t.correlation_id, t.recorded_at, p.processed_at FROM timeline_entries t"
    " JOIN processed_events p ON p.projection = 'timeline' AND p.event_id = t.event_id"
    " WHERE t.seq > $1 ORDER BY t.seq"
)
# Identity values are taken at insert time but become visible at commit, so a row may appear
# behind a higher seq already seen; looking back this many values (and skipping rows already
# seen) catches those.
_LOOKBACK = 64


def _epoch_ns(value: datetime) -> int:
    return int(value.timestamp() * 1e9)


async def _watch(
    dsn: str,
    interval: float,
    stop: MpEvent,
    ready: MpEvent,
    seen_count: Synchronized[int],
    backend: Synchronized[int],
    out: mp.Queue[Any],
) -> None:
    conn = await asyncpg.connect(dsn)
    # Which server process serves us, so that its CPU is not booked as the stack's.
    backend.value = await conn.fetchval("SELECT pg_backend_pid()")
    sightings: dict[UUID, Sighting] = {}
    seen_seq: set[int] = set()
    high = 0
    polls = 0
    poll_ns = 0
    began = time.monotonic_ns()
    try:
        ready.set()
        while not stop.is_set():
            started = time.monotonic_ns()
            rows = await conn.fetch(_NEW_ROWS, high - _LOOKBACK)
            now_mono, now_wall = time.monotonic_ns(), time.time_ns()
            polls += 1
            poll_ns += now_mono - started
            for row in rows:
                if row["seq"] in seen_seq:
                    continue
                seen_seq.add(row["seq"])
                high = max(high, row["seq"])
                sightings.setdefault(
                    row["correlation_id"],
                    Sighting(now_mono, now_wall, _epoch_ns(row["recorded_at"]), _epoch_ns(row["processed_at"])),
                )
            seen_count.value = len(seen_seq)
            await asyncio.sleep(interval)
    finally:
        await conn.close()
        elapsed = time.monotonic_ns() - began
        out.put({"sightings": sightings, "polls": polls, "poll_ns": poll_ns, "elapsed_ns": elapsed})


def watch(
    dsn: str,
    interval: float,
    stop: MpEvent,
    ready: MpEvent,
    seen_count: Synchronized[int],
    backend: Synchronized[int],
    out: mp.Queue[Any],
) -> None:
    """Watcher process main: poll for new timeline rows until stop is set, then report."""
    asyncio.run(_watch(dsn, interval, stop, ready, seen_count, backend, out))


# ------------------------------------------------------------------------------------------
# The load generator
# ------------------------------------------------------------------------------------------


@dataclass
class Command:
    """One POST /customers: when it was due, issued, put on the wire and answered."""

    correlation_id: UUID
    due_ns: int
    issued_ns: int = 0
    issued_wall_ns: int = 0
    posted_ns: int = 0
    done_ns: int = 0
    status: int = 0
    error: str = ""


@dataclass
class Load:
    """Every command of one phase."""

    commands: list[Command] = field(default_factory=list)

    @property
    def ok(self) -> list[Command]:
        return [c for c in self.commands if c.status == 201]


async def _send(client: httpx.AsyncClient, window: asyncio.Semaphore, token: str, command: Command, index: int) -> None:
    headers = {"Authorization": f"Bearer {token}", "X-Correlation-ID": str(command.correlation_id)}
    body = {"kind": "company", "name": f"株式会社ベンチ{index:06d}"}
    command.issued_wall_ns = time.time_ns()
    command.issued_ns = time.monotonic_ns()
    # The in-flight window queues commands here, cheaply: thousands of requests waiting inside
    # httpx's own pool cost more CPU than the services they wait for on a small machine.
    async with window:
        command.posted_ns = time.monotonic_ns()
        try:
            response = await client.post("/customers", json=body, headers=headers)
            command.status = response.status_code
            if response.status_code != 201:
                command.error = response.text[:200]
        except httpx.HTTPError as exc:
            command.error = repr(exc)
        command.done_ns = time.monotonic_ns()


async def drive(
    client: httpx.AsyncClient,
    token: str,
    rate: float,
    count: int,
    in_flight: int,
    progress: tuple[Progress, Any] | None = None,
) -> Load:
    """Issue `count` commands at `rate` per second on a fixed timetable (open loop)."""
    load = Load()
    window = asyncio.Semaphore(in_flight)
    period_ns = int(1e9 / rate)
    start = time.monotonic_ns() + 20_000_000
    tasks: set[asyncio.Task[None]] = set()
    for i in range(count):
        command = Command(uuid4(), start + i * period_ns)
        load.commands.append(command)
        delay = (command.due_ns - time.monotonic_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(_send(client, window, token, command, i))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        if progress is not None and i % 20 == 0:
            progress[0].update(progress[1], completed=i + 1)
    if tasks:
        await asyncio.gather(*tasks)
    if progress is not None:
        progress[0].update(progress[1], completed=count)
    return load


async def wait_seen(
    seen: Synchronized[int],
    expected: int,
    timeout: float,
    progress: tuple[Progress, Any] | None = None,
    counted_from: int = 0,
) -> bool:
    """Wait until the watcher has seen `expected` rows in all (or the timeout passes).

    The progress bar shows rows seen beyond `counted_from`.
    """
    deadline = time.monotonic() + timeout
    while True:
        if progress is not None:
            progress[0].update(progress[1], completed=seen.value - counted_from)
        if seen.value >= expected:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)


# ------------------------------------------------------------------------------------------
# The stack
# ------------------------------------------------------------------------------------------


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def taken_ports() -> list[str]:
    """The fixed ports of the stack that something already listens on, with who."""
    taken = []
    for name, port in FIXED_PORTS.items():
        if _port_in_use(port):
            pid = listener_pid(port)
            who = "unknown process"
            if pid is not None:
                with contextlib.suppress(psutil.Error):
                    who = f"pid {pid}: {' '.join(psutil.Process(pid).cmdline())[:120]}"
            taken.append(f"{port} ({name}) is taken by {who}")
    return taken


def component_meters(
    stack: local_stack.Stack, pg_port: int, kafka_port: int, watcher_backend: int
) -> dict[str, TreeCpu]:
    """A CPU meter per component of the running stack, and for the watcher and its server process."""
    meters = {child.name: TreeCpu(child.proc.pid if child.proc else None) for child in stack.children}
    meters["postgres (all databases)"] = TreeCpu(listener_pid(pg_port), skip=lambda pid, _: pid == watcher_backend)
    meters["postgres backend of the watcher (this benchmark)"] = TreeCpu(watcher_backend)
    meters["tansu (Kafka)"] = TreeCpu(listener_pid(kafka_port))
    return meters


# ------------------------------------------------------------------------------------------
# Figures
# ------------------------------------------------------------------------------------------


@dataclass
class Figures:
    """Everything one phase measured."""

    rate: float
    commands: int
    ok: int
    errors: dict[str, int]
    issued_rate: float
    answered_rate: float
    visible_rate: float
    visible: Latencies
    not_visible: int
    http: Latencies
    client_queue: Latencies
    schedule_lag: Latencies
    to_recorded: Latencies
    recorded_to_consumer: Latencies
    consumer_to_seen: Latencies
    cpu_cores: dict[str, float]
    others: list[tuple[str, float]]
    watcher_polls_per_s: float
    watcher_poll_ms: float

    def cpu_ms_per_command(self) -> dict[str, float]:
        """CPU milliseconds each component spent per command that became visible."""
        if not self.visible_rate:
            return {}
        return {name: cores * 1e3 / self.visible_rate for name, cores in self.cpu_cores.items()}

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures."""
        return {
            "rate_asked_per_s": self.rate,
            "commands": self.commands,
            "ok": self.ok,
            "errors": self.errors,
            "issued_rate_per_s": round(self.issued_rate, 1),
            "answered_201_rate_per_s": round(self.answered_rate, 1),
            "visible_rate_per_s": round(self.visible_rate, 1),
            "visible_ms": self.visible.summary(),
            "not_visible": self.not_visible,
            "http_ms": self.http.summary(),
            "client_queue_ms": self.client_queue.summary(),
            "schedule_lag_ms": self.schedule_lag.summary(),
            "stages_ms": {
                "issue_to_recorded_at": self.to_recorded.summary(),
                "recorded_at_to_consumer_tx": self.recorded_to_consumer.summary(),
                "consumer_tx_to_seen": self.consumer_to_seen.summary(),
            },
            "cpu_cores": {k: round(v, 3) for k, v in self.cpu_cores.items()},
            "cpu_ms_per_command": {k: round(v, 2) for k, v in self.cpu_ms_per_command().items()},
            "busiest_other_processes_cores": [[label, round(cores, 2)] for label, cores in self.others],
            "watcher_polls_per_s": round(self.watcher_polls_per_s, 1),
            "watcher_poll_ms": round(self.watcher_poll_ms, 3),
        }


def _rate(count: int, first_ns: int, stamps: list[int]) -> float:
    if not stamps:
        return 0.0
    return count / max(1e-9, (max(stamps) - first_ns) / 1e9)


def figures(
    rate: float,
    load: Load,
    sightings: dict[UUID, Sighting],
    cpu_cores: dict[str, float],
    others: list[tuple[str, float]],
    polls: tuple[int, int, int],
) -> Figures:
    """Join what was issued with what the watcher saw."""
    visible, http, client_queue, lag = Latencies(), Latencies(), Latencies(), Latencies()
    to_recorded, to_consumer, to_seen = Latencies(), Latencies(), Latencies()
    errors: dict[str, int] = {}
    not_visible = 0
    answered_at: list[int] = []
    seen_at: list[int] = []
    for c in load.commands:
        lag.add(max(0, c.issued_ns - c.due_ns))
        client_queue.add(c.posted_ns - c.issued_ns)
        if c.status != 201:
            key = f"{c.status or 'no response'}: {c.error[:80]}"
            errors[key] = errors.get(key, 0) + 1
            continue
        http.add(c.done_ns - c.posted_ns)
        answered_at.append(c.done_ns)
        seen = sightings.get(c.correlation_id)
        if seen is None:
            not_visible += 1
            continue
        seen_at.append(seen.seen_mono_ns)
        visible.add(seen.seen_mono_ns - c.issued_ns)
        to_recorded.add(max(0, seen.recorded_at_ns - c.issued_wall_ns))
        to_consumer.add(max(0, seen.consumer_tx_ns - seen.recorded_at_ns))
        to_seen.add(max(0, seen.seen_wall_ns - seen.consumer_tx_ns))
    first = load.commands[0].issued_ns
    issued = [c.issued_ns for c in load.commands]
    # n commands issued over n-1 periods: scale so that a perfect run reads as the asked rate.
    issued_rate = _rate(len(issued) - 1, first, issued) if len(issued) > 1 else 0.0
    count, poll_ns, elapsed_ns = polls
    return Figures(
        rate,
        len(load.commands),
        len(load.ok),
        errors,
        issued_rate,
        _rate(len(answered_at), first, answered_at),
        _rate(len(seen_at), first, seen_at),
        visible,
        not_visible,
        http,
        client_queue,
        lag,
        to_recorded,
        to_consumer,
        to_seen,
        cpu_cores,
        others,
        count / (elapsed_ns / 1e9) if elapsed_ns else 0.0,
        poll_ns / count / 1e6 if count else 0.0,
    )


def _row(name: str, lat: Latencies, target: str = "") -> list[str]:
    s = lat.summary()
    return [name, f"{len(lat):,}", *(f"{s[k]:.1f}" for k in ("p50", "p95", "p99", "max")), target]


def print_phase(f: Figures, in_flight: int) -> None:
    """The tables of one phase."""
    table = Table(title=f"{f.rate:.0f} commands/s open loop: command → visible in timeline_entries (ms)")
    for name in ("measure", "n", "p50", "p95", "p99", "max", "target"):
        table.add_column(name, justify="left" if name in ("measure", "target") else "right")
    target = f"p50 ≤ {TARGET_P50_MS:.0f}, p99 ≤ {TARGET_P99_MS:.0f}"
    table.add_row(*_row("issue → visible (watcher)", f.visible, target))
    table.add_row(*_row(f"  client queue (in-flight window {in_flight})", f.client_queue))
    table.add_row(*_row("  HTTP POST /customers on the wire → 201", f.http))
    table.add_row(*_row("  stage: issue → recorded_at (contacts)", f.to_recorded))
    table.add_row(*_row("  stage: recorded_at → consumer tx start", f.recorded_to_consumer))
    table.add_row(*_row("  stage: consumer tx start → seen", f.consumer_to_seen))
    table.add_row(*_row("issue lag (issued − due)", f.schedule_lag))
    console.print(table)
    console.print(
        f"issued {f.commands:,} at {f.issued_rate:,.1f}/s (asked {f.rate:.0f}/s); {f.ok:,} answered 201"
        f" (at {f.answered_rate:,.1f}/s); visible at {f.visible_rate:,.1f}/s; {f.not_visible:,} never seen;"
        f" errors: {f.errors or 'none'}. Watcher: {f.watcher_polls_per_s:,.0f} polls/s,"
        f" {f.watcher_poll_ms:.2f} ms per poll."
    )
    cpu = Table(title=f"CPU from the first issue until the last event was seen ({os.cpu_count()} cores)")
    cpu.add_column("component")
    cpu.add_column("cores", justify="right")
    cpu.add_column("CPU ms per command", justify="right")
    per = f.cpu_ms_per_command()
    for name, cores in sorted(f.cpu_cores.items(), key=lambda kv: -kv[1]):
        cpu.add_row(name, f"{cores:.2f}", f"{per[name]:.2f}" if name in per else "-")
    console.print(cpu)
    if f.others:
        console.print(
            "busiest other processes: " + "; ".join(f"{label} ({cores:.2f} cores)" for label, cores in f.others)
        )


def print_summary(phases: list[Figures]) -> None:
    """One row per rate."""
    table = Table(title="Summary: command → visible (ms), per asked rate")
    columns = ["asked/s", "issued/s", "visible/s", "p50", "p95", "p99", "max", "HTTP p50", "HTTP p99", "target"]
    for name in columns:
        table.add_column(name, justify="left" if name == "target" else "right")
    for f in phases:
        v, h = f.visible.summary(), f.http.summary()
        table.add_row(
            f"{f.rate:.0f}",
            f"{f.issued_rate:.1f}",
            f"{f.visible_rate:.1f}",
            *(f"{v[k]:.1f}" for k in ("p50", "p95", "p99", "max")),
            f"{h['p50']:.1f}",
            f"{h['p99']:.1f}",
            f"p50 ≤ {TARGET_P50_MS:.0f}, p99 ≤ {TARGET_P99_MS:.0f}",
        )
    console.print(table)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False, timeout=5
        ).stdout.strip()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "git_head": commit,
        "loadavg_1m_at_start": os.getloadavg()[0],
    }


# ------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--rates", default="200", help="commands per second, one phase each, e.g. 50,100,200 (default 200)"
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each phase (default 30)")
    parser.add_argument("--in-flight", type=int, default=64, help="most requests on the wire at once (64)")
    parser.add_argument("--warmup", type=int, default=200, help="commands issued (at 50/s) before measuring")
    parser.add_argument("--poll-ms", type=float, default=2.0, help="watcher poll interval (default 2 ms)")
    parser.add_argument("--drain", type=float, default=300.0, help="seconds to wait for a phase's last events")
    parser.add_argument(
        "--quiet-cores", type=float, default=0.5, help="before each phase, wait until the machine is below this"
    )
    parser.add_argument("--quiet-timeout", type=float, default=120.0, help="...but no longer than this (s)")
    parser.add_argument(
        "--what-if",
        default="",
        help="patch candidate fixes into the stack's processes: fetch-wait=MS (projection consumer's"
        " fetch_max_wait_ms) and/or pool-reset=off (asyncpg pools skip the reset query),"
        " comma-separated",
    )
    parser.add_argument("--json", type=Path, help="write the figures to this file as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temporary CRM_HOME (logs, data)")
    return parser.parse_args(argv)


def apply_what_ifs(spec: str, home: Path) -> dict[str, str]:
    """Environment for the stack's processes that turns on the asked-for candidate fixes."""
    if not spec:
        return {}
    env: dict[str, str] = {}
    for item in spec.split(","):
        name, _, value = item.partition("=")
        if name not in WHAT_IFS or not value:
            raise SystemExit(f"--what-if: unknown item {item!r} (fetch-wait=MS, pool-reset=off)")
        env[WHAT_IFS[name]] = value
    site = home / "bench-what-if"
    site.mkdir()
    (site / "sitecustomize.py").write_text(WHAT_IF_SITE)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH", "")]))
    console.print(f"[yellow]what-if run[/yellow]: {spec} patched into every process of the stack")
    return env


@dataclass
class Watcher:
    """The watcher process and its channels."""

    process: Any
    stop: MpEvent
    seen: Synchronized[int]
    backend: Synchronized[int]
    out: mp.Queue[Any]

    @classmethod
    def start(cls, dsn: str, poll_ms: float) -> Watcher:
        ctx = mp.get_context("spawn")
        stop, ready, seen, backend = ctx.Event(), ctx.Event(), ctx.Value("i", 0), ctx.Value("i", 0)
        out: mp.Queue[Any] = ctx.Queue()
        process = ctx.Process(target=watch, args=(dsn, poll_ms / 1000, stop, ready, seen, backend, out), name="watcher")
        process.start()
        while not ready.wait(0.1):
            if not process.is_alive():
                raise RuntimeError("the watcher process died before it was ready")
        return cls(process, stop, seen, backend, out)

    def finish(self) -> dict[str, Any]:
        """Stop polling; everything it saw."""
        self.stop.set()
        try:
            watched: dict[str, Any] = self.out.get(timeout=30)
        except queue.Empty:
            watched = {"sightings": {}, "polls": 0, "poll_ns": 0, "elapsed_ns": 0}
        self.process.join(10)
        return watched


async def measure(
    args: argparse.Namespace, home: Path, stack: local_stack.Stack, pg_port: int, kafka_port: int
) -> list[Figures]:
    """Warm up, run one phase per rate, and return their figures."""
    token = (home / "dev-token").read_text().strip()
    endpoints = json.loads((home / "endpoints.json").read_text())
    # timeline_entries has no index on seq; without one every 2 ms poll would scan the table.
    admin = await asyncpg.connect(database_url(endpoints["admin_database_url"], "crm_projections"))
    try:
        await admin.execute("CREATE INDEX IF NOT EXISTS bench_timeline_seq ON timeline_entries (seq)")
    finally:
        await admin.close()
    watcher = Watcher.start(endpoints["database_urls"]["projections"], args.poll_ms)
    meters = component_meters(stack, pg_port, kafka_port, watcher.backend.value)
    meters["watcher (this benchmark)"] = TreeCpu(watcher.process.pid)
    # Idle connections are dropped before uvicorn's 5 s keep-alive timeout, so that a request
    # never races the server closing the connection it picked.
    limits = httpx.Limits(
        max_connections=args.in_flight, max_keepalive_connections=args.in_flight, keepalive_expiry=2.0
    )
    phases: list[tuple[float, Load, dict[str, float], list[tuple[str, float]]]] = []
    try:
        async with httpx.AsyncClient(
            base_url=endpoints["services"]["contacts"], limits=limits, timeout=300.0
        ) as client:
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            with Progress(*columns, console=console) as bar:
                task = bar.add_task("warm-up: issued at 50/s", total=args.warmup)
                warm = await drive(client, token, 50.0, args.warmup, args.in_flight, (bar, task))
                task = bar.add_task("warm-up: visible", total=len(warm.ok))
                if not await wait_seen(watcher.seen, len(warm.ok), 120.0, (bar, task)):
                    console.print(f"[red]warm-up: {watcher.seen.value} of {len(warm.ok)} visible after 120 s")
                for rate in (float(r) for r in args.rates.split(",")):
                    count = int(rate * args.seconds)
                    issued = bar.add_task(f"{rate:.0f}/s: issued", total=count)
                    visible = bar.add_task(f"{rate:.0f}/s: visible", total=count)
                    # Other tenants of a small machine move these figures more than anything we change.
                    await wait_quiet(args.quiet_cores, args.quiet_timeout)
                    expected_before = watcher.seen.value
                    everyone_before = every_process()
                    before = {name: m.sample() for name, m in meters.items()}
                    client_before, machine_before = time.process_time(), machine_busy()
                    started = time.monotonic()
                    sender = asyncio.create_task(drive(client, token, rate, count, args.in_flight, (bar, issued)))
                    while not sender.done():
                        bar.update(visible, completed=watcher.seen.value - expected_before)
                        await asyncio.sleep(0.1)
                    load = sender.result()
                    expected = expected_before + len(load.ok)
                    if not await wait_seen(watcher.seen, expected, args.drain, (bar, visible), expected_before):
                        console.print(f"[red]{rate:.0f}/s: not all events visible after --drain {args.drain:.0f} s")
                    window = time.monotonic() - started
                    after = {name: m.sample() for name, m in meters.items()}
                    ours = {os.getpid(), *(pid for sample in [*before.values(), *after.values()] for pid in sample)}
                    others = [
                        (label, used / window) for label, used in busiest_others(everyone_before, every_process(), ours)
                    ]
                    cpu = {name: TreeCpu.used(before[name], after[name]) / window for name in meters}
                    cpu["load generator (this benchmark)"] = (time.process_time() - client_before) / window
                    cpu["everything else on the machine"] = max(
                        0.0, (machine_busy() - machine_before) / window - sum(cpu.values())
                    )
                    phases.append((rate, load, cpu, others))
    finally:
        watched = watcher.finish()
    results = []
    for rate, load, cpu, others in phases:
        polls = (watched["polls"], watched["poll_ns"], watched["elapsed_ns"])
        result = figures(rate, load, watched["sightings"], cpu, others, polls)
        print_phase(result, args.in_flight)
        results.append(result)
    print_summary(results)
    return results


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    taken = taken_ports()
    if taken:
        console.print("[red]The stack's fixed ports are in use; not starting it:[/red]")
        for line in taken:
            console.print(f"  {line}")
        raise SystemExit(2)
    for name in REDIRECTS:
        if os.environ.pop(name, None) is not None:
            console.print(f"ignoring ${name}: this benchmark runs its own stack")
    home = Path(tempfile.mkdtemp(prefix="crm-bench-e2e-"))
    pg_port, kafka_port = free_port(), free_port()
    os.environ |= {
        "CRM_HOME": str(home),
        "CRM_PG_PORT": str(pg_port),
        "CRM_KAFKA_PORT": str(kafka_port),
        "CRM_INFRA_NO_DOCKER": "1",
    }
    os.environ |= apply_what_ifs(args.what_if, home)
    about = machine()
    started = time.monotonic()
    stack = local_stack.start(home)
    console.print(f"stack up in {time.monotonic() - started:.1f}s (CRM_HOME {home})")
    try:
        results = asyncio.run(measure(args, home, stack, pg_port, kafka_port))
        if args.json:
            report = {
                "machine": about,
                "args": {k: str(v) for k, v in vars(args).items()},
                "what_if": args.what_if or None,
                "phases": [r.as_dict() for r in results],
            }
            args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str))
            console.print(f"figures written to {args.json}")
    finally:
        stack.stop()
        if args.keep:
            console.print(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
