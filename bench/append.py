"""Event store append throughput and latency: `python bench/append.py --help`.

Provisions a throwaway event store database (and grants on the shared key database) on
$CRM_BENCH_DATABASE_URL, else on postgresql://postgres@127.0.0.1:5432/postgres if it answers,
else on an embedded PostgreSQL; runs concurrent writers against PostgresEventStore and prints
figures next to the targets. Nothing is asserted. Everything the run created (database, role,
grants, data keys) is dropped at the end unless --keep.

--what-if reruns scenario A with candidate fixes applied in this process only (libs/ untouched)
to show what each one is worth.
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
import re
import secrets
import shutil
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import asyncpg
from bench_server import admin_server
from cpu import TreeCpu, busiest_others, every_process, listener_pid, machine_busy, wait_quiet
from crm_eventstore import hashing
from crm_eventstore.hashing import event_hash
from crm_eventstore.ids import new_id
from crm_eventstore.keyring import Keyring
from crm_eventstore.provision import (
    KEYS_DATABASE,
    database_url,
    provision_event_store,
    provision_keyring,
)
from crm_eventstore.store import (
    CommandContext,
    PostgresEventStore,
    StreamState,
    create_pool,
    init_connection,
)
from crm_schemas.contacts import CustomerRegistered
from crm_schemas.envelope import ActorRef, EventEnvelope
from latency import Latencies
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

NAME = "株式会社ベンチ商事"

console = Console(width=None if sys.stdout.isatty() else 150)


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
    "A": Scenario("A", "1 event/append, expected=StreamState", 1, True, 3_000, 15.0),
    "B": Scenario("B", "5 events/append, expected=StreamState", 5, True, 10_000, None),
    "C": Scenario("C", "1 event/append, expected=int", 1, False, 3_000, 15.0),
}


@dataclass
class Outcome:
    """What one run of a scenario measured."""

    scenario: str
    writers: int
    events: int
    appends: int
    streams: int
    seconds: float
    client_cpu_s: float
    server_cpu_s: float | None
    machine_cpu_s: float
    first_append: Latencies = field(repr=False)
    later_appends: Latencies = field(repr=False)
    others: list[tuple[str, float]] = field(default_factory=list)

    @property
    def latency(self) -> Latencies:
        both = Latencies()
        both.extend(self.first_append)
        both.extend(self.later_appends)
        return both

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds

    @property
    def appends_per_s(self) -> float:
        return self.appends / self.seconds

    @property
    def other_cpu_s(self) -> float | None:
        """CPU that neither this process nor the PostgreSQL server used (other tenants)."""
        if self.server_cpu_s is None:
            return None
        return max(0.0, self.machine_cpu_s - self.client_cpu_s - self.server_cpu_s)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures."""
        return {
            "scenario": self.scenario,
            "writers": self.writers,
            "events": self.events,
            "appends": self.appends,
            "streams": self.streams,
            "seconds": round(self.seconds, 3),
            "events_per_s": round(self.events_per_s, 1),
            "appends_per_s": round(self.appends_per_s, 1),
            "client_cpu_us_per_event": round(self.client_cpu_s / self.events * 1e6, 1),
            "server_cpu_us_per_event": None
            if self.server_cpu_s is None
            else round(self.server_cpu_s / self.events * 1e6, 1),
            "other_cpu_cores": None if self.other_cpu_s is None else round(self.other_cpu_s / self.seconds, 2),
            "latency_ms": self.latency.summary(),
            "first_append_ms": self.first_append.summary(),
            "later_appends_ms": self.later_appends.summary(),
            "busiest_other_processes_cores": [[label, round(cores, 2)] for label, cores in self.others],
        }


# ------------------------------------------------------------------------------------------
# Database: where it runs, what we create on it, and how we remove it again
# ------------------------------------------------------------------------------------------


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

    async def as_admin(self, sql: str) -> None:
        """Run DDL in the benchmark database as the admin."""
        conn = await asyncpg.connect(database_url(self.admin_url, self.name))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

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


def server_cpu(admin_url: str, role: str) -> TreeCpu:
    """CPU meter on the postmaster, its background processes and our backends, if the server is local."""
    parts = urlsplit(admin_url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        return TreeCpu(None)
    # A client backend's title is "postgres: user database host(port) state"; the server may be
    # shared, so other users' backends are left out (background writers and WAL stay in).
    client = re.compile(r"^postgres: \S+ \S+ \S+\(\d+\)")
    return TreeCpu(listener_pid(parts.port or 5432), skip=lambda _, cmd: bool(client.match(cmd)) and role not in cmd)


# ------------------------------------------------------------------------------------------
# Candidate fixes, applied in this process only (for --what-if)
# ------------------------------------------------------------------------------------------


async def _keep_session(conn: asyncpg.Connection) -> None:
    # asyncpg still rolls back an open transaction and drops client-side listeners; what this
    # skips is the server round trip of "SELECT pg_advisory_unlock_all(); CLOSE ALL;
    # UNLISTEN *; RESET ALL;" on every release. The store never leaves session state behind.
    return None


_PLAIN = (str, int, bool, type(None))


def _normalise_fast(value: Any) -> Any:
    # Exact-type fast path in front of the original: same output, fewer ABC isinstance checks.
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is dict:
        return {str(k): _normalise_fast(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [_normalise_fast(v) for v in value]
    return _ORIGINAL_NORMALISE(value)


_ORIGINAL_NORMALISE = hashing._normalise


@contextlib.contextmanager
def _fast_hash(enabled: bool) -> Iterator[None]:
    if enabled:
        hashing._normalise = _normalise_fast
    try:
        yield
    finally:
        hashing._normalise = _ORIGINAL_NORMALISE


@dataclass(frozen=True)
class Variant:
    """How the store is wired for one run."""

    name: str
    keep_session: bool = False
    no_notify: bool = False
    fast_hash: bool = False


PRODUCTION = Variant("as shipped")
WHAT_IFS = (
    PRODUCTION,
    Variant("pool reset=no-op (no reset query on release)", keep_session=True),
    Variant("no events_notify trigger (no NOTIFY commit lock)", no_notify=True),
    Variant("exact-type fast path in hashing._normalise", fast_hash=True),
    Variant("all three", keep_session=True, no_notify=True, fast_hash=True),
)


@contextlib.asynccontextmanager
async def open_store(
    db: BenchDatabase, urls: tuple[str, str], args: argparse.Namespace, variant: Variant
) -> AsyncIterator[PostgresEventStore]:
    """The event store wired like production (create_pool + Keyring), or as a variant says."""
    store_url, keys_url = urls
    # min_size = max_size for the store pool, so that no measured run pays for connecting.
    if variant.keep_session:
        pool = await asyncpg.create_pool(
            store_url, min_size=args.pool_size, max_size=args.pool_size, init=init_connection, reset=_keep_session
        )
        keys_pool = await asyncpg.create_pool(
            keys_url, min_size=1, max_size=args.keys_pool_size, init=init_connection, reset=_keep_session
        )
    else:
        pool = await create_pool(store_url, min_size=args.pool_size, max_size=args.pool_size)
        keys_pool = await create_pool(keys_url, min_size=1, max_size=args.keys_pool_size)
    if variant.no_notify:
        await db.as_admin("DROP TRIGGER IF EXISTS events_notify ON events")
    try:
        with _fast_hash(variant.fast_hash):
            yield PostgresEventStore(pool, "contacts", Keyring(keys_pool, os.urandom(32)))
    finally:
        if variant.no_notify:
            await db.as_admin(
                "CREATE TRIGGER events_notify AFTER INSERT ON events"
                " FOR EACH STATEMENT EXECUTE FUNCTION events_notify()"
            )
        await pool.close()
        await keys_pool.close()


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
        # A new stream is appended with expected=0 (the store reads the head); after that the
        # writer passes what the previous append returned, like a handler that just loaded it.
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
    events: int,
    args: argparse.Namespace,
    customers: list[UUID],
    meter: TreeCpu,
    progress: tuple[Progress, str] | None = None,
) -> Outcome:
    """Run one scenario's writers to completion and collect their figures."""
    appends_per_writer = max(1, events // (args.writers * scenario.batch))
    streams_per_writer = max(1, math.ceil(appends_per_writer / args.appends_per_stream))
    first, later, counter = Latencies(), Latencies(), Counter()
    if progress is not None:
        # Other tenants of a small machine move these figures more than anything we change.
        await wait_quiet(args.quiet_cores, args.quiet_timeout)
    stop = asyncio.Event()
    ticker = None
    if progress is not None:
        bar, label = progress
        task = bar.add_task(label, total=appends_per_writer * args.writers * scenario.batch)
        ticker = asyncio.create_task(_tick(bar, task, counter, stop))
    everyone_before = every_process() if progress is not None else {}
    server_before, client_before, machine_before = meter.sample(), time.process_time(), machine_busy()
    started = time.perf_counter()
    await asyncio.gather(
        *(
            _writer(store, ctx, scenario, appends_per_writer, streams_per_writer, customers, first, later, counter)
            for _ in range(args.writers)
        )
    )
    seconds = time.perf_counter() - started
    client_cpu, machine_cpu = time.process_time() - client_before, machine_busy() - machine_before
    server_after = meter.sample()
    server = TreeCpu.used(server_before, server_after) if meter.pid else None
    others: list[tuple[str, float]] = []
    if progress is not None:
        ours = {os.getpid(), *server_before, *server_after}
        others = [(label, cpu / seconds) for label, cpu in busiest_others(everyone_before, every_process(), ours)]
    stop.set()
    if ticker is not None:
        await ticker
    return Outcome(
        scenario.key,
        args.writers,
        counter.events,
        appends_per_writer * args.writers,
        streams_per_writer * args.writers,
        seconds,
        client_cpu,
        server,
        machine_cpu,
        first,
        later,
        others,
    )


def median_run(runs: list[Outcome]) -> Outcome:
    """The run with the median throughput (the lower one of the middle two)."""
    ordered = sorted(runs, key=lambda o: o.events_per_s)
    return ordered[(len(ordered) - 1) // 2]


def _other_cores(o: Outcome) -> float:
    return 0.0 if o.other_cpu_s is None else o.other_cpu_s / o.seconds


async def clean_run(run: Callable[[], Awaitable[Outcome]], args: argparse.Namespace) -> tuple[Outcome, int]:
    """Run until other tenants stayed below --max-other-cores (at most 1 + --retries times).

    Returns the run with the least other load and how many attempts it took.
    """
    attempts: list[Outcome] = []
    for _ in range(1 + args.retries):
        attempts.append(await run())
        if _other_cores(attempts[-1]) <= args.max_other_cores:
            break
    return min(attempts, key=_other_cores), len(attempts)


# ------------------------------------------------------------------------------------------
# Where an append's client-side time goes (no I/O)
# ------------------------------------------------------------------------------------------


async def _mean_us(fn: Callable[[], Awaitable[object] | object], rounds: int, batches: int = 5) -> float:
    # The best of a few batches: a neighbour's burst inflates a batch, never deflates one.
    best = math.inf
    per_batch = max(1, rounds // batches)
    for _ in range(batches):
        started = time.perf_counter_ns()
        for _ in range(per_batch):
            out = fn()
            if asyncio.iscoroutine(out):
                await out
        best = min(best, (time.perf_counter_ns() - started) / per_batch / 1e3)
    return best


async def seal_breakdown(store: PostgresEventStore, ctx: CommandContext, rounds: int) -> dict[str, float]:
    """Microseconds of each CPU step an append does per event before its INSERT."""
    customer = new_id()
    event = _events(customer, 1)[0]
    personal = event.personal_fields()
    event_id = new_id()
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
        "new_id() (UUIDv7)": new_id,
        "event.to_payload()": event.to_payload,
        "event.personal_fields()": event.personal_fields,
        "keyring.encrypt_fields, key cached (1 personal field)": lambda: store.keyring.encrypt_fields(
            customer, event_id, event.to_payload(), personal
        ),
        "  same call, no personal field set (to_payload + copy)": lambda: store.keyring.encrypt_fields(
            customer, event_id, event.to_payload(), frozenset()
        ),
        "event_hash (canonical JSON + SHA-256)": lambda: event_hash(body),
        "  of which hashing._normalise": lambda: hashing._normalise(body),
        "EventEnvelope.model_validate": lambda: EventEnvelope.model_validate({**body, "hash": "0" * 64}),
        "PostgresEventStore._row": lambda: store._row(envelope),
        "PostgresEventStore._seal, 1 event (all of it)": lambda: store._seal("customer-x", head, [event], ctx),
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
        "SELECT 1 on a held connection, p50": held.summary()["p50"],
        "pool.fetchval('SELECT 1') = acquire + query + reset query on release, p50": pooled.summary()["p50"],
    }


# ------------------------------------------------------------------------------------------
# Output
# ------------------------------------------------------------------------------------------


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"


def _per_event_us(cpu_s: float | None, events: int) -> str:
    return "-" if cpu_s is None else f"{cpu_s / events * 1e6:.0f}"


def results_table(title: str, rows: list[tuple[str, Outcome, str]]) -> Table:
    """One row per run: throughput, latency, CPU per event, and the target alongside."""
    table = Table(title=title)
    columns = [
        "run",
        "events",
        "events/s",
        "appends/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "client µs/ev",
        "PG µs/ev",
        "other load",
        "target",
    ]
    for name in columns:
        table.add_column(name, justify="left" if name in ("run", "target") else "right")
    for label, o, target in rows:
        lat = o.latency.summary()
        other = o.other_cpu_s
        table.add_row(
            label,
            f"{o.events:,}",
            f"{o.events_per_s:,.0f}",
            f"{o.appends_per_s:,.0f}",
            _ms(lat["p50"]),
            _ms(lat["p95"]),
            _ms(lat["p99"]),
            _ms(lat["max"]),
            _per_event_us(o.client_cpu_s, o.events),
            _per_event_us(o.server_cpu_s, o.events),
            "-" if other is None else f"{other / o.seconds:.2f} cores",
            target,
        )
    return table


def _target(scenario: Scenario) -> str:
    text = f"≥ {scenario.target_events_per_s:,} ev/s"
    if scenario.target_p99_ms is not None:
        text += f", p99 ≤ {scenario.target_p99_ms:.0f} ms"
    return text


def split_table(outcomes: list[Outcome]) -> Table:
    """First append of a stream (creates the customer's data key) vs later appends."""
    table = Table(title="First append of a stream (new stream + new data key) vs later appends")
    for name in ("scenario", "appends", "n", "p50 ms", "p95 ms", "p99 ms", "max ms"):
        table.add_column(name, justify="left" if name in ("scenario", "appends") else "right")
    for o in outcomes:
        for kind, lat in (("first of a stream", o.first_append), ("later", o.later_appends)):
            summary = lat.summary()
            table.add_row(
                o.scenario,
                kind,
                f"{len(lat):,}",
                *(_ms(summary[k]) for k in ("p50", "p95", "p99", "max")),
            )
    return table


def print_others(shown: dict[str, Outcome]) -> None:
    """Who else was busy during the runs shown."""
    for name, o in shown.items():
        if o.others:
            busy = "; ".join(f"{label} ({cores:.2f} cores)" for label, cores in o.others)
            console.print(f"  busiest other processes during {name}: {busy}")


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
        "kernel": platform.release(),
        "python": platform.python_version(),
        "asyncpg": asyncpg.__version__,
        "loadavg_1m_at_start": os.getloadavg()[0],
    }


# ------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000, help="events per run (default 20000)")
    parser.add_argument("--writers", type=int, default=16, help="concurrent writers (default 16)")
    parser.add_argument("--appends-per-stream", type=int, default=20, help="appends to each stream (default 20)")
    parser.add_argument("--pool-size", type=int, default=20, help="event store pool (as in production: 20)")
    parser.add_argument("--keys-pool-size", type=int, default=5, help="key database pool (as in production: 5)")
    parser.add_argument("--scenarios", default="ABC", help="which scenarios to run, e.g. AB (default ABC)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per scenario; the median run is shown")
    parser.add_argument("--warmup", type=int, default=1_000, help="events appended before measuring")
    parser.add_argument("--breakdown-rounds", type=int, default=3_000, help="rounds of the CPU breakdown")
    parser.add_argument(
        "--quiet-cores", type=float, default=0.3, help="before each run, wait until other load is below this"
    )
    parser.add_argument("--quiet-timeout", type=float, default=60.0, help="...but no longer than this (s)")
    parser.add_argument(
        "--max-other-cores", type=float, default=0.25, help="rerun a run if other processes used more than this"
    )
    parser.add_argument("--retries", type=int, default=3, help="reruns of a disturbed run (default 3)")
    parser.add_argument("--what-if", action="store_true", help="also run scenario A with candidate fixes")
    parser.add_argument("--what-if-events", type=int, default=10_000, help="events per what-if run")
    parser.add_argument("--profile", action="store_true", help="also run scenario A under cProfile")
    parser.add_argument("--json", type=Path, help="write the figures to this file as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database and role")
    return parser.parse_args(argv)


def _progress() -> Progress:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, console=console)


async def bench(args: argparse.Namespace, db: BenchDatabase) -> dict[str, Any]:
    """Provision, run every requested measurement, print the tables; returns the figures."""
    urls = await db.provision()
    console.print(f"database [bold]{db.name}[/bold] (role {db.role}) on {urlsplit(db.admin_url).netloc}")
    ctx = CommandContext(ActorRef(subject="bench", role="admin", team="bench", department="bench"))
    customers: list[UUID] = []
    meter = server_cpu(db.admin_url, db.role)
    report: dict[str, Any] = {"machine": machine(), "server": await db.settings()}
    report["args"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    console.print(report["machine"], report["server"])
    try:
        async with open_store(db, urls, args, PRODUCTION) as store:
            for key in "BA":
                await run_scenario(store, ctx, SCENARIOS[key], args.warmup, args, customers, meter)
            runs: dict[str, list[Outcome]] = {key: [] for key in args.scenarios.upper()}
            attempts = 0
            with _progress() as bar:
                # Interleaved, so that a noisy neighbour hurts every scenario alike.
                for round_no in range(1, args.repeat + 1):
                    for key in runs:
                        label = f"{key}: {SCENARIOS[key].title} (run {round_no}/{args.repeat})"
                        run = partial(
                            run_scenario, store, ctx, SCENARIOS[key], args.events, args, customers, meter, (bar, label)
                        )
                        outcome, tries = await clean_run(run, args)
                        attempts += tries
                        runs[key].append(outcome)
            shown = {key: median_run(outcomes) for key, outcomes in runs.items()}
            console.print(
                results_table(
                    f"Append throughput and latency, {args.writers} writers: median of {args.repeat} runs"
                    f" ({attempts} attempted; a run is repeated while others use > {args.max_other_cores} cores)",
                    [(f"{k}: {SCENARIOS[k].title}", o, _target(SCENARIOS[k])) for k, o in shown.items()],
                )
            )
            console.print(split_table(list(shown.values())))
            print_others(shown)
            console.print(
                "client µs/ev = CPU of this process per event; PG µs/ev = CPU of the postmaster and its"
                " backends per event; other load = cores busy with anything else during the run"
                f" (this machine has {os.cpu_count()} cores)."
            )
            floor = await round_trip_floor(store.pool, 2_000)
            breakdown = await seal_breakdown(store, ctx, args.breakdown_rounds)
            table = Table(title="Client CPU per event before the INSERT (best batch mean), and the wire floor")
            table.add_column("step")
            table.add_column("time", justify="right")
            for name, us in breakdown.items():
                table.add_row(name, f"{us:.1f} µs")
            for name, ms in floor.items():
                table.add_row(name, f"{ms:.3f} ms")
            console.print(table)
            report |= {
                "median": {k: o.as_dict() for k, o in shown.items()},
                "runs": {k: [o.as_dict() for o in v] for k, v in runs.items()},
                "seal_us": breakdown,
                "floor_ms": floor,
            }
            if args.profile:
                report["profile"] = await profile(store, ctx, args, customers, meter)
        if args.what_if:
            report["what_if"] = await what_if(db, urls, args, ctx, customers, meter)
    finally:
        if not args.keep:
            await db.drop(customers)
    return report


async def what_if(
    db: BenchDatabase,
    urls: tuple[str, str],
    args: argparse.Namespace,
    ctx: CommandContext,
    customers: list[UUID],
    meter: TreeCpu,
) -> dict[str, Any]:
    """Scenario A with each candidate fix, interleaved rounds; median run of each shown."""
    runs: dict[str, list[Outcome]] = {v.name: [] for v in WHAT_IFS}
    attempts = 0
    with _progress() as bar:
        for round_no in range(1, args.repeat + 1):
            for variant in WHAT_IFS:
                async with open_store(db, urls, args, variant) as store:
                    await run_scenario(store, ctx, SCENARIOS["A"], args.warmup, args, customers, meter)
                    label = f"what-if A: {variant.name} (run {round_no}/{args.repeat})"
                    run = partial(
                        run_scenario,
                        store,
                        ctx,
                        SCENARIOS["A"],
                        args.what_if_events,
                        args,
                        customers,
                        meter,
                        (bar, label),
                    )
                    outcome, tries = await clean_run(run, args)
                    attempts += tries
                    runs[variant.name].append(outcome)
    shown = {name: median_run(outcomes) for name, outcomes in runs.items()}
    print_others(shown)
    console.print(
        results_table(
            f"What if: scenario A with candidate fixes applied in-process: median of {args.repeat} runs"
            f" ({attempts} attempted)",
            [(name, o, _target(SCENARIOS["A"])) for name, o in shown.items()],
        )
    )
    base = statistics.median(o.events_per_s for o in runs[PRODUCTION.name])
    for name, outcomes in runs.items():
        per_run = ", ".join(
            f"{o.events_per_s:,.0f} ev/s ({o.client_cpu_s / o.events * 1e6:.0f}+"
            f"{(o.server_cpu_s or 0) / o.events * 1e6:.0f} µs CPU/ev, other {_other_cores(o):.2f})"
            for o in outcomes
        )
        gain = statistics.median(o.events_per_s for o in outcomes) / base - 1
        console.print(f"  {name} ({gain:+.0%} median ev/s vs as shipped): {per_run}")
    return {
        "median": {name: o.as_dict() for name, o in shown.items()},
        "runs": {name: [o.as_dict() for o in v] for name, v in runs.items()},
    }


async def profile(
    store: PostgresEventStore,
    ctx: CommandContext,
    args: argparse.Namespace,
    customers: list[UUID],
    meter: TreeCpu,
) -> str:
    """Scenario A under cProfile; prints and returns the top functions by own and cumulative time."""
    profiler = cProfile.Profile()
    profiler.enable()
    outcome = await run_scenario(store, ctx, SCENARIOS["A"], args.events, args, customers, meter)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)
    console.print(f"[bold]cProfile of scenario A[/bold] ({outcome.events_per_s:,.0f} events/s under the profiler)")
    console.print(out.getvalue(), markup=False, highlight=False)
    return out.getvalue()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    server, embedded_dir = admin_server(console)
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
