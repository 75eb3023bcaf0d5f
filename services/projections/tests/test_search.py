"""`GET /customers`: every filter and their combination, Japanese name search, sorting, pagination."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest
import pytest_asyncio
from crm_eventstore.keyring import Keyring
from crm_http.auth import DevIssuer, TokenVerifier, actor_dependency
from crm_http.problems import install_problem_handlers
from crm_projections.search.api import customers_router
from fastapi import FastAPI

from .fact_builders import (
    T0,
    Facts,
    activity,
    cancelled,
    consent,
    deal_opened,
    fresh_facts,
    merged_into,
    order,
    ranked,
    registered,
    resolved,
    stage_changed,
    tagged,
    ticket,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


@pytest_asyncio.fixture(loop_scope="session")
async def facts(pg_admin_url: str, keyring: Keyring) -> AsyncIterator[Facts]:
    async with fresh_facts(pg_admin_url, keyring) as fed:
        yield fed


def search_app(pool: asyncpg.Pool, issuer: DevIssuer) -> FastAPI:
    """The search router on its own app, as the query API mounts it."""
    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(customers_router(actor_dependency(TokenVerifier(issuer.auth_settings()))))
    app.state.facts_pool = pool
    return app


@pytest_asyncio.fixture(loop_scope="session")
async def client(facts: Facts, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    issuer = DevIssuer(tmp_path / "idp")
    headers = {"Authorization": f"Bearer {issuer.issue('tanaka.marketing', 'marketing')}"}
    transport = httpx.ASGITransport(app=search_app(facts.pool, issuer))
    async with httpx.AsyncClient(transport=transport, base_url="http://q.test", headers=headers) as http:
        yield http


async def ids(client: httpx.AsyncClient, **params: Any) -> set[UUID]:
    response = await client.get("/customers", params=params)
    assert response.status_code == 200, response.text
    assert response.json()["next_cursor"] is None
    return {UUID(i["customer_id"]) for i in response.json()["items"]}


async def test_a_three_letter_substring_inside_a_japanese_company_name_matches(
    facts: Facts, client: httpx.AsyncClient
) -> None:
    abc, other = (
        registered(name="株式会社ABC商事", kana="エービーシーショウジ"),
        registered(name="有限会社XYZ", kana=None),
    )
    await facts.feed(abc, other)
    for q in (
        "ABC",
        "abc",
        "ＡＢＣ",
        "BC商",
        "(株)ABC",
        "㈱ABC",
        "ABC商事株式会社",
        "えーびーしー",
        "ｼｮｳｼﾞ",
        "しょうじ",
        "商",
    ):
        assert await ids(client, q=q) == {abc.customer_id}, q
    assert await ids(client, q="株式会社") == {abc.customer_id}
    assert await ids(client, q="有限会社") == {other.customer_id}
    assert await ids(client, q="XYZ商事") == set()
    assert await ids(client, q="100%") == set()


async def test_profile_filters_combine_with_and(facts: Facts, client: httpx.AsyncClient) -> None:
    osaka = registered(prefecture="大阪府", city="大阪市北区", industry="小売業")
    tokyo = registered(prefecture="東京都", city="千代田区", industry="小売業")
    person = registered(
        name="山田太郎", kana="ヤマダタロウ", kind="person", prefecture="大阪府", city="堺市", industry=None
    )
    await facts.feed(osaka, tokyo, person, ranked(osaka.customer_id, "A"), ranked(tokyo.customer_id, "B"))
    await facts.feed(tagged(osaka.customer_id, "VIP"), tagged(person.customer_id, "展示会"))
    await facts.feed(consent(tokyo.customer_id, "email"), consent(person.customer_id, "email"))
    await facts.feed(consent(person.customer_id, "email", granted=False), consent(osaka.customer_id, "post"))
    assert await ids(client, kind="person") == {person.customer_id}
    assert await ids(client, prefecture="大阪府") == {osaka.customer_id, person.customer_id}
    assert await ids(client, prefecture="大阪府", kind="company") == {osaka.customer_id}
    assert await ids(client, city="千代田区") == {tokyo.customer_id}
    assert await ids(client, industry="小売業", rank="B") == {tokyo.customer_id}
    assert await ids(client, rank=["A", "B"]) == {osaka.customer_id, tokyo.customer_id}
    assert await ids(client, tag="VIP") == {osaka.customer_id}
    assert await ids(client, tag=["VIP", "展示会"]) == {osaka.customer_id, person.customer_id}
    assert await ids(client, consent="email") == {tokyo.customer_id}
    assert await ids(client, consent="post:newsletter") == {osaka.customer_id}
    assert await ids(client, consent="email", prefecture="大阪府") == set()


async def test_deal_owner_and_stage_filters_match_the_same_deal(facts: Facts, client: httpx.AsyncClient) -> None:
    a, b = registered(), registered()
    deal_a, deal_b = deal_opened(a.customer_id, owner="sato"), deal_opened(b.customer_id, owner="ito")
    await facts.feed(a, b, deal_a, deal_b, stage_changed(deal_a, "proposal"), deal_opened(b.customer_id, owner="sato"))
    assert await ids(client, owner="sato") == {a.customer_id, b.customer_id}
    assert await ids(client, deal_stage="proposal") == {a.customer_id}
    assert await ids(client, owner="sato", deal_stage="lead") == {b.customer_id}
    assert await ids(client, owner="ito", deal_stage="proposal") == set()


async def test_open_complaint_and_last_contact_filters(facts: Facts, client: httpx.AsyncClient) -> None:
    angry, calm, settled = registered(), registered(), registered()
    settled_complaint = ticket(settled.customer_id)
    await facts.feed(angry, calm, settled, ticket(angry.customer_id), ticket(calm.customer_id, kind="inquiry"))
    await facts.feed(settled_complaint, resolved(settled_complaint))
    await facts.feed(activity(angry.customer_id, T0), activity(calm.customer_id, T0 + timedelta(days=30)))
    assert await ids(client, has_open_complaint="true") == {angry.customer_id}
    assert await ids(client, has_open_complaint="false") == {calm.customer_id, settled.customer_id}
    # Never contacted counts as "last contact before" any date.
    before = (T0 + timedelta(days=10)).date().isoformat()
    assert await ids(client, last_contact_before=before) == {angry.customer_id, settled.customer_id}


async def test_purchase_filters_ignore_cancelled_orders(facts: Facts, client: httpx.AsyncClient) -> None:
    a, b, c = registered(), registered(), registered()
    b_pc = order(b.customer_id, date(2024, 6, 1), [("PC-9", "PC", "300000")])
    await facts.feed(a, b, c)
    await facts.feed(order(a.customer_id, date(2024, 1, 15), [("PC-1", "PC", "100000"), ("MS-1", "周辺機器", "5000")]))
    await facts.feed(b_pc, cancelled(b_pc), order(b.customer_id, date(2025, 6, 1), [("MS-1", "周辺機器", "2500.50")]))
    assert await ids(client, bought_category="PC") == {a.customer_id}
    assert await ids(client, bought_product="MS-1") == {a.customer_id, b.customer_id}
    assert await ids(client, bought_product="MS-1", bought_from="2025-01-01") == {b.customer_id}
    assert await ids(client, bought_from="2024-01-15", bought_to="2024-01-15") == {a.customer_id}
    assert await ids(client, no_purchase_since="2025-01-01") == {a.customer_id, c.customer_id}
    assert await ids(client, min_amount="2500.50") == {a.customer_id, b.customer_id}
    assert await ids(client, min_amount="2500.51") == {a.customer_id}
    assert await ids(client, max_amount="2500.50") == {b.customer_id, c.customer_id}
    assert await ids(client, min_amount="1", max_amount="2500.50") == {b.customer_id}


async def test_companies_that_bought_a_pc_three_to_four_years_ago_without_an_open_complaint(
    facts: Facts, client: httpx.AsyncClient
) -> None:
    today = datetime.now(UTC).date()
    three_and_a_half_years_ago = today - timedelta(days=365 * 3 + 180)
    wanted, complaining, too_recent, person, other_category = (
        registered(),
        registered(),
        registered(),
        registered(name="鈴木花子", kind="person"),
        registered(),
    )
    await facts.feed(wanted, complaining, too_recent, person, other_category)
    for customer in (wanted, complaining, person):
        await facts.feed(order(customer.customer_id, three_and_a_half_years_ago, [("PC-1", "PC", "150000")]))
    await facts.feed(order(too_recent.customer_id, today - timedelta(days=365), [("PC-1", "PC", "150000")]))
    await facts.feed(order(other_category.customer_id, three_and_a_half_years_ago, [("PR-1", "プリンタ", "9000")]))
    await facts.feed(ticket(complaining.customer_id))
    found = await ids(
        client,
        kind="company",
        bought_category="PC",
        bought_from=(today - timedelta(days=4 * 365 + 1)).isoformat(),
        bought_to=(today - timedelta(days=3 * 365 + 1)).isoformat(),
        has_open_complaint="false",
    )
    assert found == {wanted.customer_id}


async def test_merged_customers_are_left_out_and_their_purchases_count_for_the_survivor(
    facts: Facts, client: httpx.AsyncClient
) -> None:
    survivor, absorbed = registered(name="株式会社ABC商事"), registered(name="ABC商事株式会社")
    await facts.feed(survivor, absorbed, order(absorbed.customer_id, date(2024, 1, 1), [("PC-1", "PC", "1")]))
    await facts.feed(merged_into(absorbed.customer_id, survivor.customer_id))
    assert await ids(client, q="ABC") == {survivor.customer_id}
    assert await ids(client, bought_category="PC") == {survivor.customer_id}


async def _walk(client: httpx.AsyncClient, sort: str, limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(100):
        params: dict[str, Any] = {"sort": sort, "limit": limit}
        if cursor:
            params["cursor"] = cursor
        response = await client.get("/customers", params=params)
        assert response.status_code == 200, response.text
        items += response.json()["items"]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError(f"{sort}: the cursor never reached the end ({len(items)} items so far)")


async def test_every_sort_pages_through_every_customer_exactly_once_in_order(
    facts: Facts, client: httpx.AsyncClient
) -> None:
    names = ["ア社", "イ社", "ウ社", "エ社", "オ社", "カ社", "キ社"]
    customers = [registered(name=n, kana=n, when=T0 + timedelta(days=i % 3)) for i, n in enumerate(names)]
    await facts.feed(*customers)
    for i, customer in enumerate(customers[:5]):
        await facts.feed(order(customer.customer_id, date(2024, 1, 1 + (i % 2)), [("P", "PC", str(1000 * (i % 3)))]))
    everyone = {str(c.customer_id) for c in customers}
    by_name = await _walk(client, "name", 3)
    assert [i["name"] for i in by_name] == names
    assert [i["name"] for i in await _walk(client, "-name", 2)] == names[::-1]
    for sort, key in (("revenue", "revenue"), ("last_purchase", "last_purchase_date"), ("registered", "registered_at")):
        for direction in ("", "-"):
            walked = await _walk(client, direction + sort, 2)
            assert {i["customer_id"] for i in walked} == everyone
            assert len(walked) == len(everyone)
            values = [i[key] for i in walked]
            if key == "revenue":
                values = [Decimal(v) for v in values]
            present = [v for v in values if v is not None]
            assert present == sorted(present, reverse=direction == "-"), (sort, direction)


async def test_bad_requests_name_the_parameter(facts: Facts, client: httpx.AsyncClient) -> None:
    await facts.feed(registered())
    cases = {
        "limit": {"limit": 201},
        "cursor": {"cursor": "garbage"},
        "bought_to": {"bought_from": "2025-01-02", "bought_to": "2025-01-01"},
        "max_amount": {"min_amount": "10", "max_amount": "9"},
        "kind": {"kind": "robot"},
        "sort": {"sort": "shoe_size"},
    }
    for field, params in cases.items():
        response = await client.get("/customers", params=params)
        assert response.status_code == 422, (field, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert field in [e["field"].split(".")[0] for e in response.json()["errors"]], response.json()
    first = await client.get("/customers", params={"sort": "name", "limit": 1})
    assert first.status_code == 200
    assert (await client.get("/customers", params={"sort": "revenue"})).status_code == 200
    unauthenticated = await client.get("/customers", headers={"Authorization": ""})
    assert unauthenticated.status_code == 401


async def test_a_cursor_of_one_sort_is_refused_for_another(facts: Facts, client: httpx.AsyncClient) -> None:
    await facts.feed(registered(), registered())
    page = (await client.get("/customers", params={"sort": "name", "limit": 1})).json()
    assert page["next_cursor"]
    response = await client.get("/customers", params={"sort": "revenue", "cursor": page["next_cursor"]})
    assert response.status_code == 422


async def test_the_query_api_serves_search_segments_pivots_and_the_pipeline(tmp_path: Path) -> None:
    from crm_projections.api import create_app

    paths = create_app(TokenVerifier(DevIssuer(tmp_path / "idp").auth_settings())).openapi()["paths"]
    for path, method in (
        ("/customers", "get"),
        ("/segments", "post"),
        ("/segments", "get"),
        ("/segments/{segment_id}", "get"),
        ("/segments/{segment_id}/customers", "get"),
        ("/reports/pivot", "get"),
        ("/deals/pipeline", "get"),
    ):
        assert method in paths[path], path
    search = {p["name"] for p in paths["/customers"]["get"]["parameters"]}
    assert search >= {
        "q",
        "kind",
        "prefecture",
        "city",
        "industry",
        "rank",
        "tag",
        "consent",
        "owner",
        "deal_stage",
        "has_open_complaint",
        "bought_product",
        "bought_category",
        "bought_from",
        "bought_to",
        "no_purchase_since",
        "min_amount",
        "max_amount",
        "last_contact_before",
        "sort",
        "cursor",
        "limit",
    }
