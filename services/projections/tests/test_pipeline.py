"""`GET /deals/pipeline`: open deals by stage in pipeline order, won and lost per period, by owner."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from crm_eventstore.keyring import Keyring
from crm_http.auth import DevIssuer, TokenVerifier, actor_dependency
from crm_http.problems import install_problem_handlers
from crm_projections.pipeline.api import pipeline_router
from crm_schemas import deals
from fastapi import FastAPI

from .fact_builders import T0, Facts, deal_opened, fresh_facts, lost, registered, stage_changed, won

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
    app.include_router(pipeline_router(actor_dependency(TokenVerifier(issuer.auth_settings()))))
    app.state.facts_pool = facts.pool
    headers = {"Authorization": f"Bearer {issuer.issue('kato.admin', 'admin')}"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://q.test", headers=headers
    ) as http:
        yield http


async def get(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/deals/pipeline", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def stages(report: dict[str, Any]) -> list[tuple[str, int, str]]:
    return [(s["stage"], s["count"], s["amount"]) for s in report["open"]["stages"]]


async def test_open_deals_by_stage_in_pipeline_order_with_exact_amounts(
    facts: Facts, client: httpx.AsyncClient
) -> None:
    cid = registered().customer_id
    a, b, c, d = (
        deal_opened(cid, "100.25", owner="sato"),
        deal_opened(cid, "200", owner="sato"),
        deal_opened(cid, "300", owner="ito"),
        deal_opened(cid, "999", owner="ito"),
    )
    await facts.feed(
        a, b, c, d, stage_changed(b, "negotiation"), stage_changed(c, "negotiation"), won(d, date(2026, 5, 1))
    )
    report = await get(client)
    assert stages(report) == [
        ("lead", 1, "100.25"),
        ("qualified", 0, "0"),
        ("proposal", 0, "0"),
        ("negotiation", 2, "500"),
    ]
    assert (report["open"]["count"], report["open"]["amount"]) == (3, "600.25")
    mine = await get(client, owner="sato")
    assert stages(mine)[0] == ("lead", 1, "100.25")
    assert (mine["open"]["count"], mine["open"]["amount"]) == (2, "300.25")
    assert mine["closed"]["periods"] == []


async def test_a_revised_amount_and_a_reopened_deal_are_reflected(facts: Facts, client: httpx.AsyncClient) -> None:
    cid = registered().customer_id
    deal = deal_opened(cid, "100")
    revised = deals.DealAmountRevised(
        customer_id=cid, occurred_at=T0, deal_id=deal.deal_id, amount="150", previous_amount="100", currency="JPY"
    )
    reopened = deals.DealReopened(
        customer_id=cid, occurred_at=T0, deal_id=deal.deal_id, stage="proposal", previous_outcome="lost"
    )
    await facts.feed(deal, revised, lost(deal, date(2026, 5, 1)), reopened)
    report = await get(client)
    assert ("proposal", 1, "150") in stages(report)
    assert report["closed"]["periods"] == []


async def test_won_and_lost_per_month_quarter_and_year(facts: Facts, client: httpx.AsyncClient) -> None:
    cid = registered().customer_id
    deals_ = [
        deal_opened(cid, amount, owner=owner)
        for amount, owner in (("10", "sato"), ("20", "sato"), ("40", "ito"), ("80", "sato"))
    ]
    await facts.feed(*deals_)
    await facts.feed(
        won(deals_[0], date(2026, 1, 15), "11.5"),
        won(deals_[1], date(2026, 2, 1)),
        lost(deals_[2], date(2026, 2, 20)),
        won(deals_[3], date(2026, 4, 1)),
    )
    monthly = await get(client)
    assert monthly["closed"]["periods"] == [
        {"period": "2026-01", "won_count": 1, "won_amount": "11.5", "lost_count": 0, "lost_amount": "0"},
        {"period": "2026-02", "won_count": 1, "won_amount": "20", "lost_count": 1, "lost_amount": "40"},
        {"period": "2026-04", "won_count": 1, "won_amount": "80", "lost_count": 0, "lost_amount": "0"},
    ]
    assert (monthly["closed"]["won_count"], monthly["closed"]["won_amount"]) == (3, "111.5")
    quarterly = await get(client, period="quarter")
    assert [(p["period"], p["won_amount"]) for p in quarterly["closed"]["periods"]] == [
        ("2026-Q1", "31.5"),
        ("2026-Q2", "80"),
    ]
    yearly = await get(client, period="year", owner="sato", **{"from": "2026-02-01", "to": "2026-12-31"})
    assert yearly["closed"]["periods"] == [
        {"period": "2026", "won_count": 2, "won_amount": "100", "lost_count": 0, "lost_amount": "0"}
    ]


async def test_bad_parameters_are_refused(client: httpx.AsyncClient) -> None:
    for params, field in (({"period": "week"}, "period"), ({"from": "2026-02-01", "to": "2026-01-01"}, "to")):
        response = await client.get("/deals/pipeline", params=params)
        assert response.status_code == 422
        assert field in [e["field"] for e in response.json()["errors"]]


async def test_the_pipeline_needs_its_permission_and_a_team_scope_sees_its_team(
    facts: Facts, client: httpx.AsyncClient, issuer: DevIssuer
) -> None:
    cid = registered().customer_id
    east = deal_opened(cid, "100", owner="sato").model_copy(update={"team": "east"})
    west = deal_opened(cid, "4000", owner="ito").model_copy(update={"team": "west"})
    await facts.feed(east, west)
    refused = await client.get("/deals/pipeline", headers=bearer(issuer, "suzuki", "support"))
    assert refused.status_code == 403
    assert refused.json()["permission"] == "pipeline.read"
    team = (await client.get("/deals/pipeline", headers=bearer(issuer, "tanaka", "sales", team="east"))).json()
    assert (team["open"]["count"], team["open"]["amount"]) == (1, "100")
    assert (await get(client))["open"]["amount"] == "4100"
