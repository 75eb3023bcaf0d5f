"""`GET /reports/pivot`: decimal-exact against independently computed sums, totals, 422s, CSV."""

from __future__ import annotations

import csv
import io
import random
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from crm_eventstore.keyring import Keyring
from crm_http.auth import DevIssuer, TokenVerifier, actor_dependency
from crm_http.problems import install_problem_handlers
from crm_projections.pivots.api import pivots_router
from fastapi import FastAPI

from .fact_builders import (
    Facts,
    at,
    cancelled,
    deal_opened,
    fresh_facts,
    lost,
    order,
    rated,
    registered,
    returned,
    stage_changed,
    ticket,
    won,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


@pytest_asyncio.fixture(loop_scope="session")
async def facts(pg_admin_url: str, keyring: Keyring) -> AsyncIterator[Facts]:
    async with fresh_facts(pg_admin_url, keyring) as fed:
        yield fed


@pytest.fixture
def issuer(tmp_path: Path) -> DevIssuer:
    return DevIssuer(tmp_path / "idp")


def bearer(issuer: DevIssuer, subject: str, role: str, team: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.issue(subject, role, team=team)}"}


@pytest_asyncio.fixture(loop_scope="session")
async def client(facts: Facts, issuer: DevIssuer) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(pivots_router(actor_dependency(TokenVerifier(issuer.auth_settings()))))
    app.state.facts_pool = facts.pool
    headers = {"Authorization": f"Bearer {issuer.issue('kato.admin', 'admin')}"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://q.test", headers=headers
    ) as http:
        yield http


def fiscal_year(day: date, fiscal_month: int) -> int:
    """A fiscal year ends with fiscal_month and is named by the calendar year it ends in (2025年3月期)."""
    return day.year if day.month <= fiscal_month else day.year + 1


async def pivot(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/reports/pivot", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def as_cells(report: dict[str, Any]) -> dict[tuple[Any, Any], Decimal]:
    return {
        (r, c): Decimal(v)
        for r, values in zip(report["rows"], report["cells"], strict=True)
        for c, v in zip(report["columns"], values, strict=True)
        if v is not None
    }


async def test_revenue_by_prefecture_and_fiscal_year_is_exact_on_generated_histories(
    facts: Facts, client: httpx.AsyncClient
) -> None:
    rng = random.Random(20260401)
    prefectures = ["東京都", "大阪府", "愛知県", None]
    expected: dict[tuple[str | None, str], Decimal] = defaultdict(Decimal)
    by_category: dict[str, Decimal] = defaultdict(Decimal)
    for _ in range(12):
        fiscal_month = rng.choice([3, 3, 12, 9])
        prefecture = rng.choice(prefectures)
        customer = registered(prefecture=prefecture, city=None, fiscal_month=fiscal_month)
        await facts.feed(customer)
        for _ in range(rng.randint(1, 6)):
            day = date(2022, 1, 1) + timedelta(days=rng.randint(0, 1400))
            lines = [
                (
                    f"P{rng.randint(1, 5)}",
                    rng.choice(["PC", "周辺機器", "保守"]),
                    f"{rng.randint(1, 900000)}.{rng.randint(0, 99):02d}",
                )
                for _ in range(rng.randint(1, 3))
            ]
            placed = order(customer.customer_id, day, lines)
            events: list[Any] = [placed]
            kept = {i: Decimal(amount) for i, (_, _, amount) in enumerate(lines, start=1)}
            fate = rng.random()
            if fate < 0.15:
                events.append(cancelled(placed))
                kept = dict.fromkeys(kept, Decimal(0))
            elif fate < 0.35:
                line_no = rng.choice(list(kept))
                back = (kept[line_no] / 3).quantize(Decimal("0.01"))
                events.append(returned(placed, line_no, str(back)))
                kept[line_no] -= back
            await facts.feed(*events)
            fy = str(fiscal_year(day, fiscal_month))
            expected[(prefecture, fy)] += sum(kept.values(), Decimal(0))
            for i, (_, category, _) in enumerate(lines, start=1):
                by_category[category] += kept[i]
    report = await pivot(client, rows="prefecture", columns="fiscal_year", measure="revenue")
    assert as_cells(report) == dict(expected)
    grand = sum(expected.values(), Decimal(0))
    assert Decimal(report["totals"]["grand"]) == grand
    for prefecture, total in zip(report["rows"], report["totals"]["rows"], strict=True):
        assert Decimal(total) == sum((v for (p, _), v in expected.items() if p == prefecture), Decimal(0))
    assert report["columns"] == sorted(report["columns"])
    categories = await pivot(client, rows="product_category", measure="revenue")
    assert {k: Decimal(v[0]) for k, v in zip(categories["rows"], categories["cells"], strict=True)} == dict(by_category)
    assert Decimal(categories["totals"]["grand"]) == grand


async def test_a_return_lowers_the_revenue_of_the_month_the_order_was_placed_in(
    facts: Facts, client: httpx.AsyncClient
) -> None:
    customer = registered()
    placed = order(customer.customer_id, date(2025, 4, 30), [("A", "PC", "1000"), ("B", "PC", "500")])
    late_return = returned(placed, 1, "400").model_copy(update={"occurred_at": at(date(2025, 5, 20))})
    await facts.feed(customer, placed, late_return, order(customer.customer_id, date(2025, 5, 2), [("C", "PC", "7")]))
    report = await pivot(client, rows="month", measure="revenue")
    assert dict(zip(report["rows"], [v[0] for v in report["cells"]], strict=True)) == {
        "2025-04": "1100",
        "2025-05": "7",
    }
    counts = await pivot(client, rows="month", measure="order_count")
    assert counts["cells"] == [[1], [1]]


async def test_deals_by_owner_and_stage_in_pipeline_order(facts: Facts, client: httpx.AsyncClient) -> None:
    a, b = registered(), registered()
    d1, d2, d3, d4 = (
        deal_opened(a.customer_id, "100", owner="sato"),
        deal_opened(a.customer_id, "250.5", owner="sato"),
        deal_opened(b.customer_id, "1000", owner="ito"),
        deal_opened(b.customer_id, "30", owner="ito"),
    )
    await facts.feed(
        a,
        b,
        d1,
        d2,
        d3,
        d4,
        stage_changed(d2, "proposal"),
        won(d3, date(2026, 5, 1), "900"),
        lost(d4, date(2026, 5, 2)),
    )
    amounts = await pivot(client, rows="owner", columns="stage", measure="deal_amount")
    assert amounts["columns"] == ["lead", "proposal", "won", "lost"]
    assert as_cells(amounts) == {
        ("sato", "lead"): Decimal(100),
        ("sato", "proposal"): Decimal("250.5"),
        ("ito", "won"): Decimal(900),
        ("ito", "lost"): Decimal(30),
    }
    assert amounts["totals"]["grand"] == "1280.5"
    counts = await pivot(client, rows="owner", measure="deal_count")
    assert dict(zip(counts["rows"], counts["totals"]["rows"], strict=True)) == {"ito": 2, "sato": 2}


async def test_tickets_complaints_and_average_csat_by_ticket_category(facts: Facts, client: httpx.AsyncClient) -> None:
    a = registered(prefecture="大阪府")
    t1, t2, t3 = (
        ticket(a.customer_id, "complaint", "delivery"),
        ticket(a.customer_id, "inquiry", "delivery"),
        ticket(a.customer_id, "inquiry", "billing"),
    )
    await facts.feed(a, t1, t2, t3, rated(t1, 2), rated(t2, 5), rated(t3, 4))
    tickets = await pivot(client, rows="ticket_category", measure="ticket_count")
    assert dict(zip(tickets["rows"], tickets["totals"]["rows"], strict=True)) == {"billing": 1, "delivery": 2}
    complaints = await pivot(client, rows="ticket_category", measure="complaint_count")
    assert dict(zip(complaints["rows"], complaints["totals"]["rows"], strict=True)) == {"billing": 0, "delivery": 1}
    csat = await pivot(client, rows="prefecture", columns="ticket_category", measure="average_csat")
    assert as_cells(csat) == {("大阪府", "billing"): Decimal("4.00"), ("大阪府", "delivery"): Decimal("3.50")}
    assert csat["totals"]["grand"] == "3.67"  # (2 + 5 + 4) / 3, not an average of averages


async def test_customer_filters_and_the_date_range_narrow_the_report(facts: Facts, client: httpx.AsyncClient) -> None:
    company, person = registered(), registered(name="山田", kind="person")
    await facts.feed(company, person)
    await facts.feed(
        order(company.customer_id, date(2025, 1, 1), [("A", "PC", "10")]),
        order(person.customer_id, date(2025, 6, 1), [("A", "PC", "20")]),
    )
    assert (await pivot(client, rows="customer", measure="revenue", kind="person"))["totals"]["grand"] == "20"
    ranged = await pivot(client, rows="customer", measure="revenue", **{"from": "2025-01-01", "to": "2025-03-31"})
    assert ranged["rows"] == [str(company.customer_id)]
    assert ranged["labels"] == {str(company.customer_id): company.name}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"rows": "stage", "measure": "revenue"}, "rows"),
        ({"rows": "prefecture", "columns": "owner", "measure": "ticket_count"}, "columns"),
        ({"rows": "product_category", "measure": "average_csat"}, "rows"),
        ({"rows": "ticket_category", "measure": "deal_amount"}, "rows"),
        ({"rows": "prefecture", "measure": "happiness"}, "measure"),
        ({"rows": "planet", "measure": "revenue"}, "rows"),
        ({"rows": "month", "columns": "month", "measure": "revenue"}, "columns"),
        ({"rows": "month", "measure": "revenue", "from": "2025-02-01", "to": "2025-01-01"}, "to"),
    ],
)
async def test_a_combination_that_makes_no_sense_is_refused_naming_the_parameter(
    client: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    response = await client.get("/reports/pivot", params=params)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in response.json()["errors"]]


async def test_csv_has_the_column_keys_the_cells_and_the_totals(facts: Facts, client: httpx.AsyncClient) -> None:
    tokyo, osaka = registered(prefecture="東京都"), registered(prefecture="大阪府")
    await facts.feed(tokyo, osaka)
    await facts.feed(
        order(tokyo.customer_id, date(2024, 5, 1), [("A", "PC", "1.10")]),
        order(tokyo.customer_id, date(2025, 5, 1), [("A", "PC", "2")]),
    )
    await facts.feed(order(osaka.customer_id, date(2025, 5, 1), [("A", "PC", "3")]))
    response = await client.get(
        "/reports/pivot",
        params={"rows": "prefecture", "columns": "fiscal_year", "measure": "revenue"},
        headers={"Accept": "text/csv"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert list(csv.reader(io.StringIO(response.text))) == [
        ["prefecture \\ fiscal_year", "2025", "2026", "total"],
        ["大阪府", "", "3", "3"],
        ["東京都", "1.10", "2", "3.10"],
        ["total", "1.10", "5", "6.10"],
    ]


async def test_an_order_with_two_categories_counts_once_in_the_totals(facts: Facts, client: httpx.AsyncClient) -> None:
    customer = registered()
    await facts.feed(customer, order(customer.customer_id, date(2025, 5, 1), [("A", "PC", "1"), ("B", "保守", "2")]))
    await facts.feed(order(customer.customer_id, date(2025, 6, 1), [("A", "PC", "1")]))
    report = await pivot(client, rows="product_category", columns="month", measure="order_count")
    assert report["rows"] == ["PC", "保守"]
    assert report["cells"] == [[1, 1], [1, None]]
    assert report["totals"]["rows"] == [2, 1]
    assert report["totals"]["columns"] == [1, 1]
    assert report["totals"]["grand"] == 2
    by_category = await pivot(client, rows="product_category", measure="order_count")
    assert by_category["totals"]["grand"] == 2


async def test_facts_of_a_customer_not_registered_yet_count_in_every_pivot_alike(
    facts: Facts, client: httpx.AsyncClient
) -> None:
    known, early = registered(prefecture="東京都"), registered(prefecture="大阪府")
    await facts.feed(known, order(known.customer_id, date(2025, 5, 1), [("A", "PC", "10")]))
    await facts.feed(order(early.customer_id, date(2025, 5, 2), [("A", "PC", "5")]))  # registration still in flight
    by_month = await pivot(client, rows="month", measure="revenue")
    by_prefecture = await pivot(client, rows="prefecture", measure="revenue")
    assert by_month["totals"]["grand"] == by_prefecture["totals"]["grand"] == "15"
    assert by_prefecture["rows"] == ["東京都", None]
    assert (await pivot(client, rows="prefecture", measure="revenue", kind="company"))["totals"]["grand"] == "10"
    await facts.feed(early)
    assert (await pivot(client, rows="prefecture", measure="revenue"))["rows"] == ["大阪府", "東京都"]


async def test_each_measure_needs_its_own_permission(client: httpx.AsyncClient, issuer: DevIssuer) -> None:
    support = bearer(issuer, "suzuki", "support")
    refused = await client.get("/reports/pivot", params={"rows": "month", "measure": "revenue"}, headers=support)
    assert refused.status_code == 403
    assert refused.json()["permission"] == "pivot.revenue"
    allowed = await client.get("/reports/pivot", params={"rows": "month", "measure": "ticket_count"}, headers=support)
    assert allowed.status_code == 200
    integration = bearer(issuer, "erp", "integration")
    assert (
        await client.get("/reports/pivot", params={"rows": "month", "measure": "revenue"}, headers=integration)
    ).json()["permission"] == "pivot.read"


async def test_a_team_scoped_caller_aggregates_only_their_teams_deals_and_orders(
    facts: Facts, client: httpx.AsyncClient, issuer: DevIssuer
) -> None:
    cid = registered().customer_id
    east = deal_opened(cid, "100", owner="sato").model_copy(update={"team": "east"})
    own = deal_opened(cid, "20", owner="tanaka")
    west = deal_opened(cid, "4000", owner="ito").model_copy(update={"team": "west"})
    east_order = order(cid, date(2025, 5, 1), [("A", "PC", "7")]).model_copy(update={"deal_id": east.deal_id})
    await facts.feed(east, own, west, east_order, order(cid, date(2025, 5, 1), [("B", "PC", "900")]))
    tanaka = bearer(issuer, "tanaka", "sales", team="east")
    deals_ = await client.get("/reports/pivot", params={"rows": "owner", "measure": "deal_amount"}, headers=tanaka)
    assert dict(zip(deals_.json()["rows"], deals_.json()["totals"]["rows"], strict=True)) == {
        "sato": "100",
        "tanaka": "20",
    }
    revenue = await client.get("/reports/pivot", params={"rows": "month", "measure": "revenue"}, headers=tanaka)
    assert revenue.json()["totals"]["grand"] == "7"
    by_category = await client.get(
        "/reports/pivot", params={"rows": "product_category", "measure": "revenue"}, headers=tanaka
    )
    assert by_category.json()["totals"]["grand"] == "7"
    everything = await pivot(client, rows="owner", measure="deal_amount")
    assert everything["totals"]["grand"] == "4120"
