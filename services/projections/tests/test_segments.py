"""Saved segments: validation, duplicates, members evaluated now, CSV export (function and `crm export segment`)."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from crm_cli.main import app as crm
from crm_eventstore.keyring import Keyring
from crm_http.auth import DevIssuer, TokenVerifier, actor_dependency
from crm_http.problems import install_problem_handlers
from crm_projections.search.api import customers_router
from crm_projections.segments.api import segments_router
from crm_projections.segments.export import COLUMNS, UnknownSegment, export_segment
from fastapi import FastAPI
from typer.testing import CliRunner

from .fact_builders import Facts, fresh_facts, order, registered, tagged, ticket

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
    current_actor = actor_dependency(TokenVerifier(issuer.auth_settings()))
    app.include_router(customers_router(current_actor))
    app.include_router(segments_router(current_actor))
    app.state.facts_pool = facts.pool
    headers = {"Authorization": f"Bearer {issuer.issue('tanaka.marketing', 'marketing')}"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://q.test", headers=headers
    ) as http:
        yield http


OSAKA_PC = {
    "name": "大阪のPC購入企業",
    "filters": {"kind": ["company"], "prefecture": ["大阪府"], "bought_category": ["PC"]},
}


async def test_a_saved_segment_lists_its_members_as_of_now(facts: Facts, client: httpx.AsyncClient) -> None:
    a, b, elsewhere = registered(prefecture="大阪府"), registered(prefecture="大阪府"), registered(prefecture="東京都")
    await facts.feed(
        a, b, elsewhere, order(a.customer_id, date(2024, 1, 1)), order(elsewhere.customer_id, date(2024, 1, 1))
    )
    saved = await client.post("/segments", json=OSAKA_PC)
    assert saved.status_code == 201, saved.text
    segment = saved.json()
    assert saved.headers["location"] == f"/segments/{segment['segment_id']}"
    assert segment["created_by"] == "tanaka.marketing"
    assert segment["filters"] == OSAKA_PC["filters"]
    members = (await client.get(f"/segments/{segment['segment_id']}/customers")).json()
    assert [m["customer_id"] for m in members["items"]] == [str(a.customer_id)]
    await facts.feed(order(b.customer_id, date(2025, 1, 1)))
    members = (await client.get(f"/segments/{segment['segment_id']}/customers")).json()
    assert {m["customer_id"] for m in members["items"]} == {str(a.customer_id), str(b.customer_id)}
    assert (await client.get(f"/segments/{segment['segment_id']}")).json() == segment
    assert [s["name"] for s in (await client.get("/segments")).json()["items"]] == [OSAKA_PC["name"]]


async def test_a_duplicate_name_is_a_conflict(client: httpx.AsyncClient) -> None:
    first = await client.post("/segments", json={"name": "VIP", "filters": {"tag": ["VIP"]}})
    again = await client.post("/segments", json={"name": "VIP", "filters": {"rank": ["A"]}})
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert again.json()["segment_id"] == first.json()["segment_id"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "", "filters": {}}, "name"),
        ({"name": "x", "filters": {"shoe_size": ["27"]}}, "filters.shoe_size"),
        ({"name": "x", "filters": {"kind": ["robot"]}}, "filters.kind.0"),
        ({"name": "x", "filters": {"bought_from": "2025-02-01", "bought_to": "2025-01-01"}}, "filters.bought_to"),
        ({"name": "x", "sort": "shoe_size"}, "sort"),
    ],
)
async def test_an_invalid_segment_is_refused_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/segments", json=body)
    assert response.status_code == 422
    assert field in [e["field"] for e in response.json()["errors"]]


async def test_unknown_segments_are_not_found(client: httpx.AsyncClient) -> None:
    missing = "01900000-0000-7000-8000-000000000000"
    assert (await client.get(f"/segments/{missing}")).status_code == 404
    assert (await client.get(f"/segments/{missing}/customers")).status_code == 404


async def test_members_page_through_with_the_segments_sort(facts: Facts, client: httpx.AsyncClient) -> None:
    customers = [registered(name=f"会社{i}", kana=f"カイシヤ{i}") for i in range(5)]
    await facts.feed(*customers, *(tagged(c.customer_id, "展示会") for c in customers))
    segment = (
        await client.post("/segments", json={"name": "展示会", "filters": {"tag": ["展示会"]}, "sort": "-name"})
    ).json()
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(f"/segments/{segment['segment_id']}/customers", params=params)).json()
        seen += [m["name"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"会社{i}" for i in reversed(range(5))]


async def test_export_writes_every_member_as_csv(facts: Facts, client: httpx.AsyncClient) -> None:
    angry, calm = (
        registered(name="株式会社クレーム", prefecture="大阪府"),
        registered(name="株式会社平穏", prefecture="大阪府"),
    )
    await facts.feed(
        angry, calm, ticket(angry.customer_id), order(calm.customer_id, date(2024, 3, 1), [("P", "PC", "1234.5")])
    )
    await client.post("/segments", json={"name": "大阪", "filters": {"prefecture": ["大阪府"]}})
    out = io.StringIO()
    assert await export_segment(facts.pool, "大阪", out) == 2
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert list(rows[0]) == list(COLUMNS)
    by_name = {r["name"]: r for r in rows}
    assert by_name["株式会社クレーム"]["open_complaints"] == "1"
    assert by_name["株式会社平穏"]["revenue"] == "1234.5"
    with pytest.raises(UnknownSegment):
        await export_segment(facts.pool, "存在しない", io.StringIO())


async def test_crm_export_segment_writes_the_csv_to_a_file(
    facts: Facts, client: httpx.AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await facts.feed(registered(name="株式会社CLI"))
    await client.post("/segments", json={"name": "全員"})
    monkeypatch.setenv("CRM_PROJECTIONS_DATABASE_URL", facts.url)
    target = tmp_path / "segment.csv"
    result = await _invoke(["export", "segment", "全員", "--output", str(target)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(target.open(encoding="utf-8")))
    assert [r["name"] for r in rows] == ["株式会社CLI"]
    missing = await _invoke(["export", "segment", "ない"])
    assert missing.exit_code == 2


async def _invoke(args: list[str]) -> Any:
    # The command runs its own event loop (asyncio.run): give it a thread of its own.
    return await asyncio.to_thread(CliRunner().invoke, crm, args)


async def test_segments_follow_the_policy(client: httpx.AsyncClient, issuer: DevIssuer) -> None:
    support = bearer(issuer, "suzuki", "support")
    created = await client.post("/segments", json={"name": "サポート用"}, headers=support)
    assert created.status_code == 403
    assert created.json()["permission"] == "segment.create"
    assert (await client.get("/segments", headers=support)).json()["permission"] == "segment.read"
    assert (await client.get("/customers", headers=support)).status_code == 200  # segment.search: every role
