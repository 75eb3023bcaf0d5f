"""Segment search and pivot latency on 10,000 customers and 1,000,000 events' worth of fact rows.

The fact tables are filled directly (COPY), not by replaying events: what is measured is the query
side.  The per-customer totals are then recomputed with the projection's own `recompute_totals`.
Queries go through `CustomerSearchQueries` / `PivotQueries` on an asyncpg pool (no HTTP, no JWT).

    .venv/bin/python bench/query_search.py [--customers 10000] [--events 1000000] [--rounds 30] [--keep]

Targets (issue 6): segment query p99 < 300 ms, pivot p99 < 500 ms.  Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
from crm_cli.infra import Postgres
from crm_eventstore.provision import database_url, provision_read_models
from crm_eventstore.store import create_pool
from crm_projections.facts.schema import FACTS_DDL, FACTS_GRANTS
from crm_projections.facts.store import recompute_totals
from crm_projections.pivots.queries import PivotQueries
from crm_projections.search.filters import CustomerFilter
from crm_projections.search.normalise import bigrams, fold, search_text
from crm_projections.search.queries import CustomerSearchQueries
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from bench_server import admin_server
from japanese_customers import generate
from latency import Latencies

console = Console()
TODAY = date(2026, 11, 1)
CATEGORIES = ["PC", "周辺機器", "保守", "ソフトウェア", "サーバ", "ネットワーク", "消耗品", "研修"]
STAGES = ["lead", "qualified", "proposal", "negotiation"]
OWNERS = [f"staff{i:02d}" for i in range(40)]
RANKS = ["S", "A", "B", "C", None]
TAGS = ["VIP", "展示会", "紹介", "休眠", "新規", "要フォロー"]
TICKET_CATEGORIES = ["billing", "delivery", "product", "account", "other"]

# One customer's share of 1,000,000 events at 10,000 customers (about 100 events each):
# ~15 orders (+ some cancellations/returns), 5 deals x ~4 events, 5 tickets x ~5 events, 30 activities,
# ~10 contacts events (registration, tags, consents, rank).
ORDERS, DEALS, TICKETS, ACTIVITIES, CONTACTS = 15, 5, 5, 30, 10
EVENTS_PER_CUSTOMER = ORDERS * 1.1 + DEALS * 4 + TICKETS * 5 + ACTIVITIES + CONTACTS


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def _rows(customers: int, events: int, seed: int) -> dict[str, list[tuple[Any, ...]]]:
    rng = random.Random(seed)
    scale = events / (customers * EVENTS_PER_CUSTOMER)
    labelled = generate(customers, duplicate_rate=0.0, seed=seed)
    tables: dict[str, list[tuple[Any, ...]]] = {
        k: []
        for k in (
            "fact_customers",
            "fact_consents",
            "fact_orders",
            "fact_order_lines",
            "fact_order_reversals",
            "fact_deals",
            "fact_tickets",
            "fact_activities",
        )
    }
    for body in labelled.bodies:
        cid = uuid.uuid4()
        address = body.get("address") or {}
        text = search_text(body["name"], body.get("name_kana"))
        registered = datetime(2015, 1, 1, tzinfo=UTC) + timedelta(days=rng.randint(0, 3900))
        tags = sorted(set(rng.sample(TAGS, rng.randint(0, 2))))
        tables["fact_customers"].append(
            (
                cid,
                body["kind"],
                body["name"],
                body.get("name_kana"),
                text,
                bigrams(text),
                fold(body.get("name_kana") or "") or fold(body["name"]),
                address.get("prefecture"),
                address.get("city"),
                body.get("industry"),
                rng.choice(RANKS),
                body.get("fiscal_month"),
                tags,
                registered,
                None,
                False,
            )
        )
        for channel in ("email", "phone", "post"):
            if rng.random() < 0.4:
                tables["fact_consents"].append((cid, channel, "newsletter", rng.random() < 0.8, registered))
        for _ in range(max(0, round(rng.gauss(ORDERS, 5) * scale))):
            oid = uuid.uuid4()
            day = TODAY - timedelta(days=rng.randint(0, 3650))
            lines = []
            for no in range(1, rng.randint(1, 3) + 1):
                price = Decimal(rng.randint(1, 50000) * 100) / 100
                qty = rng.randint(1, 5)
                lines.append(
                    (
                        oid,
                        no,
                        cid,
                        cid,
                        day,
                        f"P{rng.randint(1, 400):04d}",
                        None,
                        rng.choice(CATEGORIES),
                        price,
                        qty,
                        price * qty,
                        Decimal(0),
                    )
                )
            total = sum((line[10] for line in lines), Decimal(0))
            status, reversed_ = "placed", Decimal(0)
            fate = rng.random()
            if fate < 0.05:
                status, reversed_ = "cancelled", total
                lines = [(*line[:11], line[10]) for line in lines]
                tables["fact_order_reversals"].append((uuid.uuid4(), 0, oid, "cancelled", True, total))
            elif fate < 0.10:
                back = lines[0][10]
                reversed_ = back
                lines[0] = (*lines[0][:11], back)
                tables["fact_order_reversals"].append((uuid.uuid4(), 0, oid, "returned", len(lines) == 1, back))
                status = "returned" if len(lines) == 1 else "placed"
            tables["fact_orders"].append((oid, cid, cid, day, "JPY", total, reversed_, status, None))
            tables["fact_order_lines"].extend(lines)
        for _ in range(max(0, round(DEALS * scale + rng.uniform(-2, 2)))):
            opened = TODAY - timedelta(days=rng.randint(0, 1500))
            status = rng.choices(["open", "won", "lost"], [0.4, 0.35, 0.25])[0]
            stage = rng.choice(STAGES) if status == "open" else status
            closed = opened + timedelta(days=rng.randint(5, 120)) if status != "open" else None
            tables["fact_deals"].append(
                (
                    uuid.uuid4(),
                    cid,
                    cid,
                    "案件",
                    rng.choice(OWNERS),
                    None,
                    "default",
                    stage,
                    status,
                    Decimal(rng.randint(1, 5000) * 1000),
                    "JPY",
                    opened,
                    None,
                    closed,
                    None,
                )
            )
        for _ in range(max(0, round(TICKETS * scale + rng.uniform(-2, 2)))):
            opened_at = datetime.combine(TODAY, datetime.min.time(), UTC) - timedelta(hours=rng.randint(0, 30000))
            kind = "complaint" if rng.random() < 0.2 else "inquiry"
            status = rng.choices(["new", "open", "resolved", "closed"], [0.05, 0.1, 0.25, 0.6])[0]
            csat = rng.randint(1, 5) if status in ("resolved", "closed") and rng.random() < 0.5 else None
            tables["fact_tickets"].append(
                (
                    uuid.uuid4(),
                    cid,
                    cid,
                    kind,
                    rng.choice(TICKET_CATEGORIES),
                    "phone",
                    "normal",
                    None,
                    status,
                    opened_at,
                    None,
                    csat,
                    None,
                )
            )
        for _ in range(max(0, round(ACTIVITIES * scale + rng.uniform(-5, 5)))):
            when = datetime.combine(TODAY, datetime.min.time(), UTC) - timedelta(hours=rng.randint(0, 40000))
            tables["fact_activities"].append(
                (uuid.uuid4(), cid, cid, rng.choice(["visit", "call", "email"]), rng.choice(OWNERS), None, when)
            )
    return tables


COLUMNS = {
    "fact_customers": [
        "customer_id",
        "kind",
        "name",
        "name_kana",
        "search_text",
        "search_grams",
        "sort_name",
        "prefecture",
        "city",
        "industry",
        "rank",
        "fiscal_month",
        "tags",
        "registered_at",
        "merged_into",
        "erased",
    ],
    "fact_consents": ["customer_id", "channel", "purpose", "granted", "changed_at"],
    "fact_orders": [
        "order_id",
        "customer_id",
        "subject_id",
        "order_date",
        "currency",
        "total",
        "reversed",
        "status",
        "deal_id",
    ],
    "fact_order_lines": [
        "order_id",
        "line_no",
        "customer_id",
        "subject_id",
        "order_date",
        "product_code",
        "product_name",
        "category",
        "unit_price",
        "quantity",
        "line_amount",
        "reversed",
    ],
    "fact_order_reversals": ["event_id", "line_no", "order_id", "kind", "full_order", "amount"],
    "fact_deals": [
        "deal_id",
        "customer_id",
        "subject_id",
        "title",
        "owner",
        "team",
        "pipeline",
        "stage",
        "status",
        "amount",
        "currency",
        "opened_on",
        "expected_close_date",
        "closed_on",
        "lost_reason",
    ],
    "fact_tickets": [
        "ticket_id",
        "customer_id",
        "subject_id",
        "kind",
        "category",
        "channel",
        "priority",
        "product",
        "status",
        "opened_at",
        "resolved_at",
        "csat",
        "rated_at",
    ],
    "fact_activities": ["activity_id", "customer_id", "subject_id", "kind", "staff", "deal_id", "occurred_at"],
}


async def _fill(pool: asyncpg.Pool, owner_url: str, tables: dict[str, list[tuple[Any, ...]]]) -> None:
    with _progress() as bar:
        for table, rows in tables.items():
            task = bar.add_task(f"COPY {table}", total=len(rows), rate="")
            started = time.perf_counter()
            for i in range(0, len(rows), 20_000):
                chunk = rows[i : i + 20_000]
                async with pool.acquire() as conn:
                    await conn.copy_records_to_table(table, records=chunk, columns=COLUMNS[table])
                done = i + len(chunk)
                rate = done / max(time.perf_counter() - started, 1e-9)
                bar.update(task, completed=done, rate=f"{rate:,.0f} rows/s")
        customers = [r[0] for r in tables["fact_customers"]]
        task = bar.add_task("recompute_totals", total=len(customers), rate="")
        started = time.perf_counter()

        async def worker(ids: list[uuid.UUID]) -> None:
            async with pool.acquire() as conn:
                for cid in ids:
                    await recompute_totals(conn, cid)
                    bar.advance(task)

        await asyncio.gather(*(worker(customers[k::4]) for k in range(4)))
        bar.update(task, rate=f"{len(customers) / (time.perf_counter() - started):,.0f} customers/s")
    # As the tables' owner: the runtime role may not ANALYZE them (in production autovacuum does it).
    admin = await asyncpg.connect(owner_url)
    try:
        await admin.execute("ANALYZE")
    finally:
        await admin.close()


def _segments() -> dict[str, tuple[CustomerFilter, str]]:
    three_years, four_years = TODAY - timedelta(days=3 * 365), TODAY - timedelta(days=4 * 365)
    return {
        "PC 3-4y ago, company, no complaint": (
            CustomerFilter(
                kind=["company"],
                bought_category=["PC"],
                bought_from=four_years,
                bought_to=three_years,
                has_open_complaint=False,
            ),
            "name",
        ),
        "q=商事 (substring)": (CustomerFilter(q="商事"), "name"),
        "q=ｶﾌﾞ (kana, 1 gram)": (CustomerFilter(q="ｶﾌﾞ"), "name"),
        "Osaka, rank A/S, by revenue": (CustomerFilter(prefecture=["大阪府"], rank=["A", "S"]), "-revenue"),
        "tag VIP + email consent": (CustomerFilter(tag=["VIP"], consent=["email"]), "-last_purchase"),
        "no purchase since 2y, >=1M": (
            CustomerFilter(no_purchase_since=TODAY - timedelta(days=730), min_amount=Decimal(1_000_000)),
            "-revenue",
        ),
        "owner + stage": (CustomerFilter(owner=["staff07"], deal_stage=["proposal"]), "name"),
        "last contact > 1y, open complaint": (
            CustomerFilter(last_contact_before=TODAY - timedelta(days=365), has_open_complaint=True),
            "registered",
        ),
        "everyone, by revenue": (CustomerFilter(), "-revenue"),
    }


PIVOTS: dict[str, dict[str, Any]] = {
    "revenue prefecture x fiscal_year": {"measure": "revenue", "rows": "prefecture", "columns": "fiscal_year"},
    "revenue category x month": {"measure": "revenue", "rows": "product_category", "columns": "month"},
    "revenue by customer (10k rows)": {"measure": "revenue", "rows": "customer"},
    "order_count industry x rank": {"measure": "order_count", "rows": "industry", "columns": "rank"},
    "deal_amount owner x stage": {"measure": "deal_amount", "rows": "owner", "columns": "stage"},
    "ticket_count category x prefecture": {
        "measure": "ticket_count",
        "rows": "ticket_category",
        "columns": "prefecture",
    },
    "average_csat prefecture x fiscal_year": {
        "measure": "average_csat",
        "rows": "prefecture",
        "columns": "fiscal_year",
    },
    "complaint_count month": {"measure": "complaint_count", "rows": "month"},
}


async def _measure(rounds: int, run: Callable[[], Awaitable[Any]]) -> Latencies:
    lat = Latencies()
    await run()  # warm-up (plans, caches)
    for _ in range(rounds):
        started = time.perf_counter_ns()
        await run()
        lat.add(time.perf_counter_ns() - started)
    return lat


def _table(title: str, results: dict[str, tuple[Latencies, int]], target: float) -> Latencies:
    table = Table(title=title)
    for column in ("query", "rows", "p50 ms", "p95 ms", "p99 ms", "max ms"):
        table.add_column(column, justify="right" if column != "query" else "left")
    everything = Latencies()
    for name, (lat, rows) in results.items():
        s = lat.summary()
        everything.extend(lat)
        table.add_row(name, f"{rows:,}", *(f"{s[k]:.1f}" for k in ("p50", "p95", "p99", "max")))
    s = everything.summary()
    verdict = "[green]meets[/green]" if s["p99"] < target else "[red]misses[/red]"
    table.add_row("[bold]all[/bold]", "", *(f"{s[k]:.1f}" for k in ("p50", "p95", "p99", "max")))
    console.print(table)
    console.print(f"{title}: p99 {s['p99']:.1f} ms over {len(everything)} samples {verdict} the {target:.0f} ms target")
    return everything


async def main(args: argparse.Namespace, server: Postgres) -> None:
    suffix = secrets.token_hex(4)
    database, role, password = f"crm_bench_search_{suffix}", f"crm_bench_{suffix}", secrets.token_urlsafe(18)
    console.print(f"load average before: {os.getloadavg()}")
    console.print(f"generating {args.customers:,} customers and {args.events:,} events' worth of facts…")
    started = time.perf_counter()
    tables = _rows(args.customers, args.events, args.seed)
    console.print(
        f"generated in {time.perf_counter() - started:.1f}s: "
        + ", ".join(f"{t.removeprefix('fact_')} {len(r):,}" for t, r in tables.items())
    )
    url = await provision_read_models(server.admin_url, database, role, password, FACTS_DDL, FACTS_GRANTS)
    pool = await create_pool(url, min_size=2, max_size=8)
    try:
        await _fill(pool, database_url(server.admin_url, database), tables)
        search = CustomerSearchQueries(pool)
        seg_results: dict[str, tuple[Latencies, int]] = {}
        for name, (f, sort) in _segments().items():
            first = await search.page(f, sort, None, 50)  # type: ignore[arg-type]

            async def run(f: CustomerFilter = f, sort: str = sort) -> Any:
                return await search.page(f, sort, None, 50)  # type: ignore[arg-type]

            seg_results[name] = (await _measure(args.rounds, run), len(first["items"]))
            if first["next_cursor"]:
                cursor = first["next_cursor"]

                async def second(f: CustomerFilter = f, sort: str = sort, cursor: str = cursor) -> Any:
                    return await search.page(f, sort, cursor, 50)  # type: ignore[arg-type]

                seg_results[name + " (page 2)"] = (await _measure(args.rounds, second), 50)
        _table("segment queries (first page of 50)", seg_results, 300)
        pivots = PivotQueries(pool)
        piv_results: dict[str, tuple[Latencies, int]] = {}
        for name, params in PIVOTS.items():
            report = await pivots.pivot(**params)

            async def run_pivot(params: dict[str, Any] = params) -> Any:
                return await pivots.pivot(**params)

            cells = len(report["rows"]) * max(1, len(report["columns"]))
            piv_results[name] = (await _measure(args.rounds, run_pivot), cells)
        _table("pivots", piv_results, 500)
        console.print(f"load average after: {os.getloadavg()}")
    finally:
        await pool.close()
        if args.keep:
            console.print(f"kept database {database}: {database_url(server.admin_url, database)}")
        else:
            admin = await asyncpg.connect(server.admin_url)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
                await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
            finally:
                await admin.close()
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=30, help="timed runs of each query")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    arguments = parser.parse_args()
    bench_server, _ = admin_server(console)
    asyncio.run(main(arguments, bench_server))
