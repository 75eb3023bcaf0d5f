"""Read-model rebuild replay rate on 1,000,000 events: `python bench/rebuild.py --help`.

Three throwaway event-store databases (contacts, deals, support) are filled by COPY with the generated
histories of bench/query.py (10,000 customers), then `TimelineRebuild` replays them from the event stores
into a fresh projections database — the same code as `crm projections rebuild timeline --source
event-stores` — and swaps the copy in. Printed: the replay rate (events/s while replaying) and the whole
rebuild including the index build and the swap, next to the target (>= 40,000 events/s). Nothing is asserted.

`--read-model facts` rebuilds the fact tables instead (`FactsRebuild`, as `crm projections rebuild facts`):
personal fields are then really encrypted under per-customer keys (the replay decrypts them), so loading
is slower; the facts replay decodes and projects every event, so try it on fewer events first
(`--events 100000 --customers 1000`). The issue's 40,000 events/s target is the timeline's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import sys
import time
from typing import Any

import asyncpg
from bench_server import admin_server
from crm_cli.infra import free_port, provide_kafka
from crm_eventstore.kafka import ensure_topics, start_producer
from crm_eventstore.keyring import Keyring
from crm_eventstore.provision import (
    KEYS_DATABASE,
    database_url,
    provision_event_store,
    provision_keyring,
    provision_read_models,
)
from crm_eventstore.store import create_pool
from crm_projections.read_models import READ_MODELS_DDL, READ_MODELS_GRANTS
from crm_projections.rebuild.facts import FactsRebuild
from crm_projections.rebuild.replay import EventStoreSource, KafkaSource, ShadowRebuild, TimelineRebuild
from crm_schemas.registry import SERVICES
from query import PERSONAL, Event, generate, progress, sealed
from rich.console import Console
from rich.table import Table

console = Console(width=None if sys.stdout.isatty() else 150)
ROLE = "crm_bench_rebuild"
PASSWORD = "bench-" + secrets.token_hex(8)
TARGET_RATE = 40_000
COLUMNS = [
    "event_id",
    "type",
    "schema_version",
    "service",
    "stream_id",
    "version",
    "customer_id",
    "occurred_at",
    "recorded_at",
    "actor",
    "correlation_id",
    "causation_id",
    "traceparent",
    "payload",
    "prev_hash",
    "hash",
]
FAKE_CIPHERTEXT = "enc:v1:" + "x" * 40  # the timeline replay never decrypts: only the size matters


async def keyring_on(admin_url: str, master: bytes | None) -> tuple[Keyring | None, asyncpg.Pool | None]:
    """The bench keyring (None without a master key); the key database is provisioned once per run."""
    if master is None:
        return None, None
    await provision_keyring(admin_url, [ROLE])
    pool = await create_pool(database_url(admin_url, KEYS_DATABASE, ROLE, PASSWORD), min_size=1, max_size=4)
    return Keyring(pool, master), pool


async def payload_of(e: Event, keyring: Keyring | None) -> dict[str, Any]:
    """The stored payload: sealed for real with a keyring (facts decrypt), else a stand-in ciphertext."""
    personal = PERSONAL.get(e.type, frozenset())
    if keyring is not None and personal & {k for k, v in e.data.items() if v is not None}:
        return await sealed(keyring, e)
    return {k: (FAKE_CIPHERTEXT if k in personal and v is not None else v) for k, v in e.data.items()}


async def load(
    admin_url: str, names: dict[str, str], customers: int, events: int, seed: int, master: bytes | None = None
) -> int:
    """Fill the three event stores; returns the number of events."""
    keyring, keys_pool = await keyring_on(admin_url, master)
    conns = {}
    for service, name in names.items():
        await provision_event_store(admin_url, name, ROLE, PASSWORD)
        conn = await asyncpg.connect(database_url(admin_url, name))
        await conn.execute("SET session_replication_role = replica")  # bulk load: skip the chain trigger
        await conn.execute(
            "CREATE TEMP TABLE staging (event_id uuid, type text, schema_version int, service text, stream_id text,"
            " version int, customer_id uuid, occurred_at timestamptz, recorded_at timestamptz, actor text,"
            " correlation_id uuid, causation_id uuid, traceparent text, payload text, prev_hash text, hash text)"
        )
        conns[service] = conn
    rows: dict[str, list[tuple[Any, ...]]] = {s: [] for s in names}
    actor = json.dumps({"subject": "u-sales-1", "role": "sales"})
    cols = ", ".join(COLUMNS)
    select = cols.replace("actor", "actor::jsonb").replace("payload", "payload::jsonb")

    async def flush(service: str) -> None:
        await conns[service].copy_records_to_table("staging", records=rows[service], columns=COLUMNS)
        await conns[service].execute(f"INSERT INTO events ({cols}) SELECT {select} FROM staging; TRUNCATE staging")
        rows[service].clear()

    total = 0
    with progress() as bar:
        task = bar.add_task("loading event stores", total=events)
        for _, evs in generate(customers, events, seed):
            prev: dict[str, str] = {}
            for e in evs:
                payload = await payload_of(e, keyring)
                digest = secrets.token_hex(32)
                rows[e.service].append(
                    (
                        e.event_id,
                        e.type,
                        1,
                        e.service,
                        e.stream_id,
                        e.version,
                        e.customer_id,
                        e.occurred_at,
                        e.occurred_at,
                        actor,
                        e.event_id,
                        None,
                        None,
                        json.dumps(payload, ensure_ascii=False),
                        prev.get(e.stream_id),
                        digest,
                    )
                )
                prev[e.stream_id] = digest
            total += len(evs)
            bar.update(task, completed=total)
            for service, pending in rows.items():
                if len(pending) >= 20_000:
                    await flush(service)
        for service, pending in rows.items():
            if pending:
                await flush(service)
    for conn in conns.values():
        await conn.execute("ANALYZE events")
        await conn.close()
    if keys_pool is not None:
        await keys_pool.close()
    return total


async def produce(
    bootstrap: str,
    topics: dict[str, str],
    customers: int,
    events: int,
    seed: int,
    admin_url: str = "",
    master: bytes | None = None,
) -> int:
    """Publish the generated histories to Kafka topics as the relays would (JSON envelopes keyed by customer)."""
    keyring, keys_pool = await keyring_on(admin_url, master)
    await ensure_topics(bootstrap, list(topics.values()), partitions=6)
    producer = await start_producer(bootstrap, "false")
    actor = {"subject": "u-sales-1", "role": "sales", "team": None, "department": None}
    total = 0
    pending: list[Any] = []
    try:
        with progress() as bar:
            task = bar.add_task("producing to Kafka", total=events)
            for cid, evs in generate(customers, events, seed):
                prev: dict[str, str] = {}
                key = str(cid).encode()
                for e in evs:
                    payload = await payload_of(e, keyring)
                    digest = secrets.token_hex(32)
                    envelope = {
                        "event_id": str(e.event_id), "type": e.type, "schema_version": 1, "service": e.service,
                        "stream_id": e.stream_id, "version": e.version, "customer_id": str(cid),
                        "occurred_at": e.occurred_at.isoformat(), "recorded_at": e.occurred_at.isoformat(),
                        "actor": actor, "correlation_id": str(e.event_id), "causation_id": None, "traceparent": None,
                        "payload": payload,
                        "prev_hash": prev.get(e.stream_id), "hash": digest,
                    }  # fmt: skip
                    prev[e.stream_id] = digest
                    pending.append(await producer.send(topics[e.service], json.dumps(envelope).encode(), key=key))
                total += len(evs)
                if len(pending) >= 5_000:
                    await asyncio.gather(*pending)
                    pending.clear()
                    bar.update(task, completed=total)
            await asyncio.gather(*pending)
    finally:
        await producer.stop()
        if keys_pool is not None:
            await keys_pool.close()
    return total


async def rebuild(
    admin_url: str,
    names: dict[str, str],
    projections: str,
    total: int,
    batch: int,
    kafka: KafkaSource | None = None,
    master: bytes | None = None,
) -> dict[str, float]:
    keyring, keys_pool = await keyring_on(admin_url, master)
    await provision_read_models(admin_url, projections, ROLE, PASSWORD, READ_MODELS_DDL, READ_MODELS_GRANTS)
    pools = (
        {
            s: await create_pool(database_url(admin_url, n, ROLE, PASSWORD), min_size=1, max_size=2)
            for s, n in names.items()
        }
        if kafka is None
        else {}
    )
    marks: dict[str, float] = {}

    async def replayed() -> None:
        marks["replayed"] = time.perf_counter()

    owner = database_url(admin_url, projections)
    job: ShadowRebuild
    if keyring is not None:
        job = FactsRebuild(owner, ROLE, keyring, batch=batch, before_swap=replayed)
    else:
        job = TimelineRebuild(owner, ROLE, batch=batch, before_swap=replayed)
    with progress() as bar:
        task = bar.add_task(f"rebuilding {job.projection}", total=total)
        started = time.perf_counter()

        def advanced(done: int, _: int | None) -> None:
            marks["last_batch"] = time.perf_counter()
            bar.update(task, completed=done)

        report = await job.run(kafka or EventStoreSource(pools), progress=advanced)
        finished = time.perf_counter()
    for pool in pools.values():
        await pool.close()
    if keys_pool is not None:
        await keys_pool.close()
    # The customer index is built between the last batch and before_swap: reported apart from the replay.
    return {
        "events": report.events,
        "entries": report.entries,
        "replay_s": marks["last_batch"] - started,
        "index_s": marks["replayed"] - marks["last_batch"],
        "total_s": finished - started,
    }


async def drop(admin_url: str, names: list[str]) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=None, help="events per batch (timeline 10,000, facts 5,000)")
    parser.add_argument("--read-model", choices=["timeline", "facts"], default="timeline")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    parser.add_argument(
        "--source",
        choices=["event-stores", "kafka"],
        default="event-stores",
        help="replay from (kafka: embedded tansu)",
    )
    args = parser.parse_args()
    server, data_dir = admin_server(console)
    suffix = secrets.token_hex(4)
    names = {s: f"crm_bench_rebuild_{s}_{suffix}" for s in SERVICES}
    projections = f"crm_bench_rebuild_projections_{suffix}"
    kafka = None
    batch = args.batch or (5_000 if args.read_model == "facts" else 10_000)
    facts = args.read_model == "facts"
    try:
        started = time.perf_counter()
        master = os.urandom(32) if facts else None
        if args.source == "kafka":
            kafka = provide_kafka(free_port(), env_var="CRM_BENCH_KAFKA_BOOTSTRAP_SERVERS")
            topics = {s: f"crm.bench-{s}-{suffix}.v1" for s in SERVICES}
            total = asyncio.run(
                produce(
                    kafka.bootstrap_servers, topics, args.customers, args.events, args.seed, server.admin_url, master
                )
            )
            source = KafkaSource(kafka.bootstrap_servers, list(topics.values()))
        else:
            total = asyncio.run(load(server.admin_url, names, args.customers, args.events, args.seed, master))
            source = None
        console.print(f"loaded {total:,} events in {time.perf_counter() - started:.0f} s")
        result = asyncio.run(rebuild(server.admin_url, names, projections, total, batch, source, master))
    finally:
        if not args.keep:
            asyncio.run(drop(server.admin_url, [*names.values(), projections]))
        server.stop()
        if kafka is not None:
            kafka.stop()
        if data_dir is not None:
            import shutil

            shutil.rmtree(data_dir, ignore_errors=True)
    rate = result["events"] / result["replay_s"]
    overall = result["events"] / result["total_s"]
    title = f"{args.read_model} rebuild from {args.source}, {platform.machine()}, {os.cpu_count()} CPUs"
    table = Table(title=title)
    served = "customers" if facts else "entries"
    for column in ("events", served, "replay s", "replay ev/s", "index s", "total s", "overall ev/s", "target"):
        table.add_column(column)
    ok = "[green]met[/green]" if rate >= TARGET_RATE else "[red]missed[/red]"
    if facts:
        ok = "(the timeline's target; none set for facts)"
    table.add_row(
        f"{result['events']:,.0f}",
        f"{result['entries']:,.0f}",
        f"{result['replay_s']:.1f}",
        f"{rate:,.0f}",
        f"{result['index_s']:.1f}",
        f"{result['total_s']:.1f}",
        f"{overall:,.0f}",
        f">= {TARGET_RATE:,} ev/s {ok}",
    )
    console.print(table)


if __name__ == "__main__":
    main()
