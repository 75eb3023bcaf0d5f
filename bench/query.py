"""Customer 360 and timeline latency on 10,000 customers / 1,000,000 events: `python bench/query.py --help`.

A throwaway projections database (on $CRM_BENCH_DATABASE_URL, else the local server, else an embedded one)
is loaded by COPY with a generated history per customer — contacts changes, deals, orders with
cancellations and returns, invoices and payments, activities, tickets — personal fields encrypted with
the keyring as the services store them. Then GET /customers/{id} and GET /customers/{id}/timeline (first
page of 50) are called through the real query API (in process, ASGI) for random customers, one at a
time, and p50/p95/p99 printed next to the targets (p99 < 50 ms each). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import httpx
from bench_server import admin_server
from crm_eventstore.ids import new_id
from crm_eventstore.keyring import Keyring
from crm_eventstore.provision import KEYS_DATABASE, database_url, provision_keyring, provision_read_models
from crm_eventstore.store import create_pool
from crm_http.auth import DevIssuer, TokenVerifier
from crm_projections.api import create_app
from crm_projections.customer360.queries import Customer360Queries
from crm_projections.read_models import READ_MODELS_DDL, READ_MODELS_GRANTS
from crm_projections.rebuild.replay import ENTRY_COLUMNS
from crm_projections.timeline.queries import TimelineQueries
from crm_schemas.registry import EVENT_TYPES
from latency import Latencies
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

console = Console(width=None if sys.stdout.isatty() else 150)
ROLE = "crm_bench_projections"
PASSWORD = "bench-" + secrets.token_hex(8)
TARGET_P99_MS = 50.0
START = datetime(2019, 4, 1, tzinfo=UTC)
PERSONAL = {t: m.personal_fields() for t, m in EVENT_TYPES.items()}


@dataclass
class Event:
    """One generated event, as the timeline stores it (payload plaintext until sealed)."""

    event_id: UUID
    customer_id: UUID
    service: str
    type: str
    stream_id: str
    version: int
    occurred_at: datetime
    data: dict[str, Any]


@dataclass
class CustomerHistory:
    """Generates one customer's events with per-stream versions."""

    customer_id: UUID
    rng: random.Random
    events: list[Event] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)

    def add(self, service: str, type_: str, stream: str, when: datetime, **data: Any) -> None:
        version = self.versions.get(stream, 0) + 1
        self.versions[stream] = version
        self.events.append(
            Event(new_id(), self.customer_id, service, f"{service}.{type_}", stream, version, when, data)
        )


def _money(value: Decimal) -> str:
    return str(value)


def history(cid: UUID, n: int, rng: random.Random) -> list[Event]:
    """About `n` events of one customer, across the three services."""
    h = CustomerHistory(cid, rng)
    t = START + timedelta(days=rng.randrange(0, 900))
    own = f"customer-{cid}"
    h.add(
        "contacts",
        "CustomerRegistered",
        own,
        t,
        kind="company",
        name=f"株式会社サンプル{rng.randrange(10**6)}",
        email=f"info{rng.randrange(10**6)}@example.jp",
        industry=rng.choice(["製造業", "小売業", "情報通信業"]),
        fiscal_month=rng.choice([3, 3, 3, 12, 9]),
    )
    while len(h.events) < n:
        t += timedelta(hours=rng.randrange(1, 24 * 12))
        kind = rng.random()
        if kind < 0.12:
            h.add(
                "contacts",
                rng.choice(["CustomerTagged", "MarketingInterestAdded"]),
                own,
                t,
                tag=f"tag{rng.randrange(20)}",
                interest=f"i{rng.randrange(20)}",
            )
        elif kind < 0.16:
            h.add(
                "contacts",
                "ConsentGranted",
                own,
                t,
                channel=rng.choice(["email", "phone", "post"]),
                purpose="newsletter",
                source="web",
            )
        elif kind < 0.20:
            pid = new_id()
            h.add(
                "contacts",
                "ContactPersonAdded",
                own,
                t,
                person_id=str(pid),
                name="担当者",
                department="総務部",
                title="課長",
                email="tanto@example.jp",
                interests=[],
            )
        elif kind < 0.35:
            deal = new_id()
            stream = f"deal-{deal}"
            h.add(
                "deals",
                "DealOpened",
                stream,
                t,
                deal_id=str(deal),
                title="商談",
                owner="u-sales-1",
                amount=str(rng.randrange(1, 500) * 10000),
                currency="JPY",
                stage="lead",
                pipeline="default",
            )
            for stage in ("qualified", "proposal")[: rng.randrange(0, 3)]:
                h.add("deals", "DealStageChanged", stream, t, deal_id=str(deal), stage=stage, previous_stage="lead")
            if rng.random() < 0.5:
                h.add(
                    "deals",
                    "DealWon",
                    stream,
                    t,
                    deal_id=str(deal),
                    amount="100000",
                    currency="JPY",
                    previous_stage="proposal",
                    won_on=t.date().isoformat(),
                )
        elif kind < 0.60:
            order = new_id()
            stream = f"order-{order}"
            lines = []
            total = Decimal(0)
            for i in range(1, rng.randrange(2, 4)):
                price, qty = Decimal(rng.randrange(100, 200000)), rng.randrange(1, 5)
                total += price * qty
                lines.append(
                    {
                        "line_no": i,
                        "product_code": f"P{rng.randrange(200)}",
                        "product_name": "製品",
                        "category": rng.choice(["PC", "周辺機器", "保守"]),
                        "unit_price": _money(price),
                        "quantity": qty,
                        "discount": "0",
                        "line_amount": _money(price * qty),
                        "tax_rate": "0.10",
                        "tax_amount": _money((price * qty / 10).quantize(Decimal(1))),
                    }
                )
            h.add(
                "deals",
                "OrderPlaced",
                stream,
                t,
                order_id=str(order),
                order_date=t.date().isoformat(),
                currency="JPY",
                lines=lines,
                line_count=len(lines),
                total=_money(total),
                tax_total=_money((total / 10).quantize(Decimal(1))),
                total_with_tax=_money(total * Decimal("1.1")),
            )
            roll = rng.random()
            if roll < 0.05:
                h.add("deals", "OrderCancelled", stream, t, order_id=str(order), amount=_money(total), currency="JPY")
            elif roll < 0.10:
                line = lines[0]
                h.add(
                    "deals",
                    "OrderReturned",
                    stream,
                    t,
                    order_id=str(order),
                    amount=line["unit_price"],
                    currency="JPY",
                    full=False,
                    returned_on=t.date().isoformat(),
                    lines=[{"line_no": 1, "quantity": 1, "amount": line["unit_price"]}],
                )
            else:
                h.add("deals", "OrderDelivered", stream, t, order_id=str(order), delivered_on=t.date().isoformat())
            invoice = new_id()
            istream = f"invoice-{invoice}"
            h.add(
                "deals",
                "InvoiceIssued",
                istream,
                t,
                invoice_id=str(invoice),
                invoice_number="INV",
                issued_on=t.date().isoformat(),
                due_date=(t + timedelta(days=30)).date().isoformat(),
                amount=_money(total),
                currency="JPY",
            )
            if rng.random() < 0.9:
                h.add(
                    "deals",
                    "PaymentReceived",
                    istream,
                    t,
                    payment_id=str(new_id()),
                    invoice_id=str(invoice),
                    amount=_money(total),
                    currency="JPY",
                    paid_on=t.date().isoformat(),
                    method="bank_transfer",
                )
        elif kind < 0.80:
            activity = new_id()
            h.add(
                "deals",
                "ActivityRecorded",
                f"activity-{activity}",
                t,
                activity_id=str(activity),
                kind=rng.choice(["visit", "call", "email"]),
                staff="u-sales-1",
                participants=[],
                subject="定例",
            )
        else:
            ticket = new_id()
            stream = f"ticket-{ticket}"
            h.add(
                "support",
                "TicketOpened",
                stream,
                t,
                ticket_id=str(ticket),
                kind=rng.choice(["inquiry", "inquiry", "complaint"]),
                channel="phone",
                category="billing",
                priority="normal",
                subject="問い合わせ",
                content="内容",
                sla_policy="standard",
            )
            h.add("support", "TicketAssigned", stream, t, ticket_id=str(ticket), assignee="u-cs-1", team="cs")
            if rng.random() < 0.8:
                h.add(
                    "support",
                    "TicketResolved",
                    stream,
                    t,
                    ticket_id=str(ticket),
                    resolution="対応済み",
                    previous_status="open",
                    resolution_number=1,
                )
                h.add(
                    "support",
                    "TicketSatisfactionRated",
                    stream,
                    t,
                    ticket_id=str(ticket),
                    score=rng.randrange(1, 6),
                    resolution_number=1,
                )
    return h.events


def generate(customers: int, events: int, seed: int) -> Iterator[tuple[UUID, list[Event]]]:
    """Each customer's history; sizes vary around events/customers and add up to about `events`."""
    rng = random.Random(seed)
    mean = events / customers
    for _ in range(customers):
        cid = new_id()
        yield cid, history(cid, max(3, int(rng.triangular(mean * 0.3, mean * 1.7, mean))), rng)


async def sealed(keyring: Keyring, e: Event) -> dict[str, Any]:
    """The payload as stored: personal fields encrypted under the customer's key."""
    return await keyring.encrypt_fields(e.customer_id, e.event_id, e.data, PERSONAL.get(e.type, frozenset()))


def progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


@dataclass
class Bench:
    admin_url: str
    database: str
    url: str = ""
    keys_url: str = ""
    master: bytes = field(default_factory=lambda: os.urandom(32))


async def load(bench: Bench, customers: int, events: int, seed: int) -> tuple[list[UUID], int]:
    """Create and fill the throwaway projections database; returns the customer ids and event count."""
    bench.url = await provision_read_models(
        bench.admin_url, bench.database, ROLE, PASSWORD, READ_MODELS_DDL, READ_MODELS_GRANTS
    )
    await provision_keyring(bench.admin_url, [ROLE])
    bench.keys_url = database_url(bench.admin_url, KEYS_DATABASE, ROLE, PASSWORD)
    keys_pool = await create_pool(bench.keys_url, min_size=1, max_size=4)
    keyring = Keyring(keys_pool, bench.master)
    owner = await asyncpg.connect(database_url(bench.admin_url, bench.database))
    await owner.execute("SET session_replication_role = replica")  # bulk load: skip the append-only triggers
    await owner.execute(
        "CREATE TEMP TABLE staging (event_id uuid, customer_id uuid, service text, type text, schema_version int,"
        " stream_id text, version int, occurred_at timestamptz, recorded_at timestamptz, actor text,"
        " correlation_id uuid, data text, prev_hash text, hash text)"
    )
    ids: list[UUID] = []
    total = 0
    actor = json.dumps({"subject": "u-sales-1", "role": "sales"})
    rows: list[tuple[Any, ...]] = []

    async def flush() -> None:
        await owner.copy_records_to_table("staging", records=rows, columns=ENTRY_COLUMNS)
        cols = ", ".join(ENTRY_COLUMNS)
        await owner.execute(
            f"INSERT INTO timeline_entries ({cols}) SELECT {cols.replace('actor', 'actor::jsonb').replace('data', 'data::jsonb')}"
            " FROM staging; TRUNCATE staging"
        )
        rows.clear()

    with progress() as bar:
        task = bar.add_task("loading events", total=events)
        for cid, evs in generate(customers, events, seed):
            ids.append(cid)
            prev: dict[str, str] = {}
            for e in evs:
                payload = await sealed(keyring, e)
                digest = secrets.token_hex(32)
                recorded = e.occurred_at + timedelta(seconds=1)
                rows.append(
                    (
                        e.event_id,
                        e.customer_id,
                        e.service,
                        e.type,
                        1,
                        e.stream_id,
                        e.version,
                        e.occurred_at,
                        recorded,
                        actor,
                        e.event_id,
                        json.dumps(payload, ensure_ascii=False),
                        prev.get(e.stream_id),
                        digest,
                    )
                )
                prev[e.stream_id] = digest
            total += len(evs)
            bar.update(task, completed=total)
            if len(rows) >= 20_000:
                await flush()
        if rows:
            await flush()
    await owner.execute("ANALYZE")
    await owner.close()
    await keys_pool.close()
    return ids, total


async def measure(bench: Bench, ids: list[UUID], requests: int, seed: int) -> dict[str, Latencies]:
    pool = await create_pool(bench.url, min_size=2, max_size=10)
    keys_pool = await create_pool(bench.keys_url, min_size=1, max_size=4)
    keyring = Keyring(keys_pool, bench.master)
    issuer = DevIssuer(Path(tempfile.mkdtemp()) / "idp")
    app = create_app(TokenVerifier(issuer.auth_settings()))
    app.state.timeline = TimelineQueries(pool, keyring)
    app.state.customer360 = Customer360Queries(pool, keyring)
    app.state.sources = {}
    headers = {"Authorization": f"Bearer {issuer.issue('u-bench', 'sales')}"}
    rng = random.Random(seed)
    out = {"GET /customers/{id}": Latencies(), "GET /customers/{id}/timeline": Latencies()}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
        for cid in rng.sample(ids, min(200, len(ids))):  # warm-up: connections, statement cache, key cache
            await client.get(f"/customers/{cid}", headers=headers)
        with progress() as bar:
            task = bar.add_task("querying", total=requests)
            for _ in range(requests):
                cid = rng.choice(ids)
                for name, path in (
                    ("GET /customers/{id}", f"/customers/{cid}"),
                    ("GET /customers/{id}/timeline", f"/customers/{cid}/timeline?limit=50"),
                ):
                    started = time.perf_counter_ns()
                    response = await client.get(path, headers=headers)
                    out[name].add(time.perf_counter_ns() - started)
                    assert response.status_code == 200, response.text
                bar.advance(task)
    await pool.close()
    await keys_pool.close()
    return out


async def drop(bench: Bench) -> None:
    conn = await asyncpg.connect(bench.admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{bench.database}" WITH (FORCE)')
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args()
    server, data_dir = admin_server(console)
    bench = Bench(server.admin_url, f"crm_bench_query_{secrets.token_hex(4)}")
    try:
        started = time.perf_counter()
        ids, total = asyncio.run(load(bench, args.customers, args.events, args.seed))
        console.print(f"loaded {total:,} events of {len(ids):,} customers in {time.perf_counter() - started:.0f} s")
        results = asyncio.run(measure(bench, ids, args.requests, args.seed))
    finally:
        if not args.keep:
            asyncio.run(drop(bench))
        server.stop()
        if data_dir is not None:
            import shutil

            shutil.rmtree(data_dir, ignore_errors=True)
    table = Table(
        title=f"query latency, {total:,} events / {len(ids):,} customers, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    )
    for column in ("query", "requests", "p50 ms", "p95 ms", "p99 ms", "max ms", "target p99"):
        table.add_column(column)
    for name, lat in results.items():
        s = lat.summary()
        ok = "[green]met[/green]" if s["p99"] < TARGET_P99_MS else "[red]missed[/red]"
        table.add_row(
            name,
            str(len(lat)),
            f"{s['p50']:.1f}",
            f"{s['p95']:.1f}",
            f"{s['p99']:.1f}",
            f"{s['max']:.1f}",
            f"< {TARGET_P99_MS:.0f} ms {ok}",
        )
    console.print(table)


if __name__ == "__main__":
    main()
