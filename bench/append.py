"""Event store append throughput and latency: `python bench/append.py --help`.

Provisions a throwaway event store database (and grants on the shared key database) on
$CRM_BENCH_DATABASE_URL, else on postgresql://postgres@127.0.0.1:5432/postgres if it answers,
else on an embedded PostgreSQL; runs concurrent writers against PostgresEventStore and prints
figures next to the targets. Nothing is asserted. Everything it created is dropped at the end
(unless --keep).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import math
import os
import platform
import pstats
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import asyncpg
from cpu import TreeCpu, listener_pid
from crm_cli.infra import Postgres, free_port, provide_postgres
from crm_eventstore.hashing import event_hash
from crm_eventstore.ids import new_id
from crm_eventstore.keyring import Keyring
from crm_eventstore.provision import (
    KEYS_DATABASE,
    database_url,
    provision_event_store,
    provision_keyring,
)
from crm_eventstore.store import CommandContext, PostgresEventStore, StreamState, create_pool
from crm_schemas.contacts import CustomerRegistered
from crm_schemas.envelope import ActorRef, EventEnvelope
from latency import Latencies
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

ENV_URL = "CRM_BENCH_DATABASE_URL"
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
NAME = "株式会社ベンチ商事"

console = Console()


@dataclass(frozen=True)
class Scenario:
    """One way of appending: events per append and how the expected version is passed."""

    key: str
    title: str
    batch: int
    pass_state: bool
    target_events_per_s: int
    target_p99_ms: float | None


SCENARIOS = {
    "A": Scenario("A", "single events, expected=StreamState (fast path)", 1, True, 3_000, 15.0),
    "B": Scenario("B", "5-event commands, expected=StreamState", 5, True, 10_000, None),
    "C": Scenario("C", "single events, expected=int (store reads the head)", 1, False, 3_000, 15.0),
}


@dataclass
class Outcome:
    """What one scenario measured."""

    scenario: str
    title: str
    writers: int
    events: int
    appends: int
    streams: int
    seconds: float
    client_cpu_s: float
    server_cpu_s: float | None
    latency: Latencies = field(repr=False)
    first_append: Latencies = field(repr=False)
    later_appends: Latencies = field(repr=False)

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds

    @property
    def appends_per_s(self) -> float:
        return self.appends / self.seconds

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures."""
        return {
            "scenario": self.scenario,
            "title": self.title,
            "writers": self.writers,
            "events": self.events,
            "appends": self.appends,
            "streams": self.streams,
            "seconds": self.seconds,
            "events_per_s": self.events_per_s,
            "appends_per_s": self.appends_per_s,
            "client_cpu_s": self.client_cpu_s,
            "server_cpu_s": self.server_cpu_s,
            "latency_ms": self.latency.summary(),
            "first_append_ms": self.first_append.summary(),
            "later_appends_ms": self.later_appends.summary(),
        }


# ------------------------------------------------------------------------------------------
# Database: where it runs, what we create on it, and how we remove it again
# ------------------------------------------------------------------------------------------


async def _answers(url: str) -> bool:
    try:
        conn = await asyncpg.connect(url, timeout=2)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


def admin_server() -> tuple[Postgres, Path | None]:
    """The server to benchmark on, and the embedded data dir to delete afterwards (if any)."""
    url = os.environ.get(ENV_URL, "").strip()
    if url:
        return Postgres(url, stop=lambda: None), None
    if asyncio.run(_answers(DEFAULT_ADMIN_URL)):
        return Postgres(DEFAULT_ADMIN_URL, stop=lambda: None), None
    data = Path(tempfile.mkdtemp(prefix="crm-bench-pg-"))
    console.print(f"no PostgreSQL on {DEFAULT_ADMIN_URL}: starting an embedded one in {data}")
    return provide_postgres(data / "pgdata", free_port(), ENV_URL), data


@dataclass(frozen=True)
class BenchDatabase:
    """A throwaway event store database and runtime role."""

    admin_url: str
    name: str
    role: str
    password: str

    @classmethod
    def fresh(cls, admin_url: str) -> BenchDatabase:
        suffix = secrets.token_hex(4)
        return cls(admin_url, f"crm_bench_append_{suffix}", f"crm_bench_{suffix}", secrets.token_urlsafe(18))

    async def provision(self) -> tuple[str, str]:
        """(store URL, keys URL), both as the runtime role."""
        store_url = await provision_event_store(self.admin_url, self.name, self.role, self.password)
        await provision_keyring(self.admin_url, [self.role])
        keys_url = database_url(self.admin_url, KEYS_DATABASE, self.role, self.password)
        return store_url, keys_url

    async def settings(self) -> dict[str, str]:
        """Server settings that decide commit cost."""
        conn = await asyncpg.connect(self.admin_url)
        try:
            rows = await conn.fetch(
                "SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[])",
                ["server_version", "fsync", "synchronous_commit", "wal_sync_method", "shared_buffers"],
            )
        finally:
            await conn.close()
        return {r["name"]: r["setting"] for r in rows}

    async def drop(self, customer_ids: list[UUID]) -> None:
        """Remove the database, the role, its grants and the data keys the run created."""
        keys = await asyncpg.connect(database_url(self.admin_url, KEYS_DATABASE))
        try:
            await keys.execute("DELETE FROM customer_keys WHERE customer_id = ANY($1::uuid[])", customer_ids)
            await keys.execute(f'DROP OWNED BY "{self.role}"')
        finally:
            await keys.close()
        admin = await asyncpg.connect(self.admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            await admin.execute(f'DROP OWNED BY "{self.role}"')
            await admin.execute(f'DROP ROLE IF EXISTS "{self.role}"')
        finally:
            await admin.close()


def server_cpu(admin_url: str) -> TreeCpu:
    """CPU meter on the postmaster and its backends when the server runs on this machine."""
    parts = urlsplit(admin_url)
    local = parts.hostname in ("127.0.0.1", "localhost", "::1")
    return TreeCpu(listener_pid(parts.port or 5432) if local else None)


# ------------------------------------------------------------------------------------------
# Writers
# ------------------------------------------------------------------------------------------


def _events(customer_id: UUID, count: int) -> list[CustomerRegistered]:
    now = datetime.now(UTC)
    return [
        CustomerRegistered(customer_id=customer_id, occurred_at=now, kind="company", name=NAME) for _ in range(count)
    ]


@dataclass
class Counter:
    """Events appended so far, read by the progress bar."""

    events: int = 0


async def _writer(
    store: PostgresEventStore,
    ctx: CommandContext,
    scenario: Scenario,
    appends: int,
    streams: int,
    customers: list[UUID],
    first: Latencies,
    later: Latencies,
    counter: Counter,
) -> None:
    ids = [new_id() for _ in range(streams)]
    customers.extend(ids)
    heads = [StreamState(0)] * streams
    for i in range(appends):
        slot = i % streams
        head = heads[slot]
        events = _events(ids[slot], scenario.batch)
        # A brand-new stream is always appended with expected=0 (the store reads the head);
        # afterwards the writer passes what the previous append returned, like a handler that
        # just loaded the stream.
        expected: int | StreamState = head if scenario.pass_state and head.version else head.version
        started = time.perf_counter_ns()
        result = await store.append(f"customer-{ids[slot]}", expected, events, ctx)
        elapsed = time.perf_counter_ns() - started
        (first if head.version == 0 else later).add(elapsed)
        heads[slot] = StreamState(result.version, result.events[-1].hash)
        counter.events += scenario.batch


async def _tick(progress: Progress, task: Any, counter: Counter, stop: asyncio.Event) -> None:
    while not stop.is_set():
        progress.update(task, completed=counter.events)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)
    progress.update(task, completed=counter.events)


async def run_scenario(
    store: PostgresEventStore,
    ctx: CommandContext,
    scenario: Scenario,
    args: argparse.Namespace,
    customers: list[UUID],
    meter: TreeCpu,
    progress: Progress | None,
) -> Outcome:
    """Run one scenario's writers to completion and collect their figures."""
    appends_per_writer = max(1, args.events // (args.writers * scenario.batch))
    streams_per_writer = max(1, math.ceil(appends_per_writer / args.appends_per_stream))
    first, later, counter = Latencies(), Latencies(), Counter()
    total = appends_per_writer * args.writers * scenario.batch
    stop = asyncio.Event()
    ticker = None
    if progress is not None:
        task = progress.add_task(f"{scenario.key}: {scenario.title}", total=total)
        ticker = asyncio.create_task(_tick(progress, task, counter, stop))
    server_before, cpu_before = meter.sample(), time.process_time()
    started = time.perf_counter()
    await asyncio.gather(
        *(
            _writer(store, ctx, scenario, appends_per_writer, streams_per_writer, customers, first, later, counter)
            for _ in range(args.writers)
        )
    )
    seconds = time.perf_counter() - started
    client_cpu = time.process_time() - cpu_before
    server = TreeCpu.used(server_before, meter.sample()) if meter.pid else None
    stop.set()
    if ticker is not None:
        await ticker
    everything = Latencies()
    everything.extend(first)
    everything.extend(later)
    return Outcome(
        scenario.key,
        scenario.title,
        args.writers,
        counter.events,
        appends_per_writer * args.writers,
        streams_per_writer * args.writers,
        seconds,
        client_cpu,
        server,
        everything,
        first,
        later,
    )


# ------------------------------------------------------------------------------------------
# Where an append's client-side time goes (no I/O)
# ------------------------------------------------------------------------------------------


async def _mean_us(fn: Callable[[], Awaitable[object] | object], rounds: int) -> float:
    started = time.perf_counter_ns()
    for _ in range(rounds):
        out = fn()
        if asyncio.iscoroutine(out):
            await out
    return (time.perf_counter_ns() - started) / rounds / 1e3


async def seal_breakdown(store: PostgresEventStore, ctx: CommandContext, rounds: int) -> dict[str, float]:
    """Mean microseconds per event of each CPU step an append does before its INSERT."""
    customer = new_id()
    event = _events(customer, 1)[0]
    personal = event.personal_fields()
    event_id = new_id()
    await store.keyring.encrypt_fields(customer, event_id, event.to_payload(), personal)  # cache the key
    payload = await store.keyring.encrypt_fields(customer, event_id, event.to_payload(), personal)
    now = datetime.now(UTC)
    body = {
        "event_id": event_id,
        "type": event.type,
        "schema_version": event.schema_version,
        "service": "contacts",
        "stream_id": f"customer-{customer}",
        "version": 2,
        "customer_id": customer,
        "occurred_at": now,
        "recorded_at": now,
        "actor": ctx.actor.model_dump(mode="json"),
        "correlation_id": ctx.correlation_id,
        "causation_id": None,
        "traceparent": None,
        "payload": payload,
        "prev_hash": "0" * 64,
    }
    envelope = EventEnvelope.model_validate({**body, "hash": event_hash(body)})
    head = StreamState(1, "0" * 64)
    steps: dict[str, Callable[[], Awaitable[object] | object]] = {
        "build CustomerRegistered": lambda: _events(customer, 1),
        "new_id (UUIDv7)": new_id,
        "to_payload": event.to_payload,
        "encrypt_fields (key cached)": lambda: store.keyring.encrypt_fields(
            customer, event_id, event.to_payload(), personal
        ),
        "to_payload, no personal fields": lambda: store.keyring.encrypt_fields(
            customer, event_id, event.to_payload(), frozenset()
        ),
        "actor.model_dump": lambda: ctx.actor.model_dump(mode="json"),
        "event_hash": lambda: event_hash(body),
        "EventEnvelope.model_validate": lambda: EventEnvelope.model_validate({**body, "hash": "0" * 64}),
        "_row (incl. actor dump)": lambda: store._row(envelope),
        "_seal, 1 event (all of the above)": lambda: store._seal("customer-x", head, [event], ctx),
    }
    return {name: await _mean_us(fn, rounds) for name, fn in steps.items()}


async def round_trip_floor(pool: asyncpg.Pool, rounds: int) -> dict[str, float]:
    """Latency floor of the wire: a bare SELECT 1, on a held connection and through the pool."""
    held = Latencies()
    async with pool.acquire() as conn:
        for _ in range(rounds):
            started = time.perf_counter_ns()
            await conn.fetchval("SELECT 1")
            held.add(time.perf_counter_ns() - started)
    pooled = Latencies()
    for _ in range(rounds):
        started = time.perf_counter_ns()
        await pool.fetchval("SELECT 1")
        pooled.add(time.perf_counter_ns() - started)
    return {
        "SELECT 1 on a held connection, p50 ms": held.summary()["p50"],
        "pool.fetchval('SELECT 1') (acquire + reset on release), p50 ms": pooled.summary()["p50"],
    }


# ------------------------------------------------------------------------------------------
# Output
# ------------------------------------------------------------------------------------------


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def results_table(outcomes: list[Outcome]) -> Table:
    """One row per scenario, targets alongside."""
    table = Table(title="Append throughput and latency (ms)", show_lines=False)
    for name in ("scenario", "events", "events/s", "appends/s", "p50", "p95", "p99", "max", "target"):
        table.add_column(name, justify="right" if name not in ("scenario", "target") else "left")
    table.add_column("client CPU", justify="right")
    table.add_column("PG CPU", justify="right")
    for o in outcomes:
        s = SCENARIOS[o.scenario]
        lat = o.latency.summary()
        target = f"≥ {s.target_events_per_s:,} ev/s"
        if s.target_p99_ms is not None:
            target += f", p99 ≤ {s.target_p99_ms:.0f} ms"
        table.add_row(
            f"{o.scenario}: {o.title}",
            f"{o.events:,}",
            f"{o.events_per_s:,.0f}",
            f"{o.appends_per_s:,.0f}",
            _ms(lat["p50"]),
            _ms(lat["p95"]),
            _ms(lat["p99"]),
            _ms(lat["max"]),
            target,
            f"{o.client_cpu_s / o.seconds:.0%}",
            "-" if o.server_cpu_s is None else f"{o.server_cpu_s / o.seconds:.0%}",
        )
    return table


def split_table(outcomes: list[Outcome]) -> Table:
    """First append of a stream (creates the customer's data key) vs later appends."""
    table = Table(title="First append of a stream vs later appends (ms)")
    for name in ("scenario", "kind", "n", "p50", "p95", "p99", "max"):
        table.add_column(name, justify="left" if name in ("scenario", "kind") else "right")
    for o in outcomes:
        for kind, lat in (("first (new data key)", o.first_append), ("later", o.later_appends)):
            summary = lat.summary()
            table.add_row(
                o.scenario,
                kind,
                f"{len(lat):,}",
                *(_ms(summary[k]) for k in ("p50", "p95", "p99", "max")),
            )
    return table


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg_1m_at_start": os.getloadavg()[0],
    }


# ------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000, help="events per scenario (default 20000)")
    parser.add_argument("--writers", type=int, default=16, help="concurrent writers (default 16)")
    parser.add_argument(
        "--appends-per-stream", type=int, default=20, help="appends to each stream before a writer moves on"
    )
    parser.add_argument("--pool-size", type=int, default=20, help="event store pool size (production: 20)")
    parser.add_argument("--keys-pool-size", type=int, default=5, help="key database pool (production: 5)")
    parser.add_argument("--scenarios", default="ABC", help="which scenarios to run, e.g. AB (default ABC)")
    parser.add_argument("--warmup", type=int, default=1_000, help="events appended before measuring")
    parser.add_argument("--breakdown-rounds", type=int, default=3_000, help="rounds of the CPU breakdown")
    parser.add_argument("--profile", action="store_true", help="also run scenario A under cProfile")
    parser.add_argument("--json", type=Path, help="write the figures to this file as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database and role")
    return parser.parse_args(argv)


async def bench(args: argparse.Namespace, db: BenchDatabase) -> dict[str, Any]:
    store_url, keys_url = await db.provision()
    console.print(f"database [bold]{db.name}[/bold] (role {db.role}) on {urlsplit(db.admin_url).netloc}")
    pool = await create_pool(store_url, min_size=args.pool_size, max_size=args.pool_size)
    keys_pool = await create_pool(keys_url, min_size=1, max_size=args.keys_pool_size)
    store = PostgresEventStore(pool, "contacts", Keyring(keys_pool, os.urandom(32)))
    ctx = CommandContext(ActorRef(subject="bench", role="admin", team="bench", department="bench"))
    customers: list[UUID] = []
    meter = server_cpu(db.admin_url)
    report: dict[str, Any] = {"machine": machine(), "server": await db.settings(), "args": vars(args)}
    report["args"] = {k: str(v) if isinstance(v, Path) else v for k, v in report["args"].items()}
    try:
        warm = argparse.Namespace(**{**vars(args), "events": args.warmup})
        await run_scenario(store, ctx, SCENARIOS["B"], warm, customers, meter, None)
        await run_scenario(store, ctx, SCENARIOS["A"], warm, customers, meter, None)
        outcomes: list[Outcome] = []
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=False) as progress:
            for key in args.scenarios.upper():
                outcomes.append(await run_scenario(store, ctx, SCENARIOS[key], args, customers, meter, progress))
        console.print(results_table(outcomes))
        console.print(split_table(outcomes))
        console.print(
            "client CPU = this benchmark process (100% = one core); PG CPU = postmaster + backends"
            f" (this machine has {os.cpu_count()} cores)."
        )
        floor = await round_trip_floor(pool, 2_000)
        breakdown = await seal_breakdown(store, ctx, args.breakdown_rounds)
        table = Table(title="Per-event client CPU before the INSERT (µs, mean) and the wire floor")
        table.add_column("step")
        table.add_column("value", justify="right")
        for name, us in breakdown.items():
            table.add_row(name, f"{us:.1f} µs")
        for name, ms in floor.items():
            table.add_row(name, f"{ms:.3f} ms")
        console.print(table)
        report |= {"outcomes": [o.as_dict() for o in outcomes], "seal_us": breakdown, "floor_ms": floor}
        if args.profile:
            report["profile"] = await profile(store, ctx, args, customers, meter)
    finally:
        await pool.close()
        await keys_pool.close()
        if not args.keep:
            await db.drop(customers)
    return report


async def profile(
    store: PostgresEventStore,
    ctx: CommandContext,
    args: argparse.Namespace,
    customers: list[UUID],
    meter: TreeCpu,
) -> str:
    """Scenario A under cProfile; prints and returns the top functions by own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    outcome = await run_scenario(store, ctx, SCENARIOS["A"], args, customers, meter, None)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("tottime")
    stats.print_stats(25)
    console.print(f"[bold]cProfile of scenario A[/bold] ({outcome.events_per_s:,.0f} events/s under the profiler)")
    console.print(out.getvalue(), markup=False, highlight=False)
    return out.getvalue()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    server, embedded_dir = admin_server()
    try:
        db = BenchDatabase.fresh(server.admin_url)
        report = asyncio.run(bench(args, db))
        if args.json:
            args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str))
            console.print(f"figures written to {args.json}")
    finally:
        server.stop()
        if embedded_dir is not None:
            shutil.rmtree(embedded_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
