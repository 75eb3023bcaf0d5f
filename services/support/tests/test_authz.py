"""Authorization in the support API: who may handle which tickets, and who sees complaint details."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from uuid import UUID

import httpx
import pytest
import pytest_asyncio
from crm_eventstore.ids import new_id
from crm_eventstore.store import PostgresEventStore
from crm_http.auth import DevIssuer, TokenVerifier
from crm_support.app.tickets import TicketCommands
from crm_support.entrypoints.http import create_app
from crm_support.replica.queries import ReplicaDirectory
from crm_support.sla_clocks import PostgresSlaClocks

from .builders import complaint_body
from .conftest import known_customer

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


@pytest.fixture
def issuer(tmp_path: Path) -> DevIssuer:
    return DevIssuer(tmp_path / "idp")


def bearer(issuer: DevIssuer, subject: str, role: str, team: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.issue(subject, role, team=team)}"}


@pytest_asyncio.fixture(loop_scope="session")
async def client(support_store: PostgresEventStore, issuer: DevIssuer) -> AsyncIterator[httpx.AsyncClient]:
    pool = support_store.pool
    commands = TicketCommands(support_store, customers=ReplicaDirectory(pool), clocks=PostgresSlaClocks(pool))
    app = create_app(commands, TokenVerifier(issuer.auth_settings()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://support.test") as http:
        yield http


@pytest_asyncio.fixture(loop_scope="session")
async def complaint(client: httpx.AsyncClient, issuer: DevIssuer, support_store: PostgresEventStore) -> UUID:
    """A resolved complaint, assigned to the sales rep sato (who owns the account)."""
    customer_id = new_id()
    await known_customer(support_store.pool, customer_id)
    desk = bearer(issuer, "suzuki", "support", team="cs-tokyo")
    opened = await client.post("/tickets", json=complaint_body(customer_id), headers=desk)
    assert opened.status_code == 201, opened.text
    ticket = opened.json()["id"]
    steps = [
        ("assign", {"assignee": "sato", "team": "cs-tokyo"}),
        ("reply", {"content": "大変申し訳ございません。"}),
        ("resolve", {"resolution": "代替品を発送", "root_cause": "出荷漏れ", "prevention": "二重チェック"}),
    ]
    for suffix, body in steps:
        response = await client.post(f"/tickets/{ticket}/{suffix}", json=body, headers=desk)
        assert response.status_code == 200, response.text
    return UUID(ticket)


async def test_the_assigned_sales_rep_sees_the_complaint_without_its_details_or_root_cause(
    client: httpx.AsyncClient, issuer: DevIssuer, complaint: UUID
) -> None:
    desk = (await client.get(f"/tickets/{complaint}", headers=bearer(issuer, "suzuki", "support"))).json()
    rep = await client.get(f"/tickets/{complaint}", headers=bearer(issuer, "sato", "sales"))

    assert rep.status_code == 200
    seen = rep.json()
    assert {"content", "replies", "notes"}.isdisjoint(seen)
    assert [set(r) for r in seen["resolutions"]] == [{"number", "at"}]
    assert {"content", "replies", "notes"} <= set(desk)
    assert desk["resolutions"][0]["root_cause"] == "出荷漏れ"
    assert "出荷漏れ" not in rep.text
    assert seen["status"] == desk["status"] == "resolved"


async def test_a_ticket_of_someone_else_answers_a_sales_rep_exactly_like_a_missing_one(
    client: httpx.AsyncClient, issuer: DevIssuer, complaint: UUID
) -> None:
    other = bearer(issuer, "kato", "sales", team="cs-tokyo")  # same team name, but sales may read own tickets only
    missing_id = new_id()

    hidden = await client.get(f"/tickets/{complaint}", headers=other)
    missing = await client.get(f"/tickets/{missing_id}", headers=other)
    note = await client.post(f"/tickets/{complaint}/note", json={"content": "見たい"}, headers=other)

    assert hidden.status_code == missing.status_code == note.status_code == 404
    assert hidden.text.replace(str(complaint), "ID") == missing.text.replace(str(missing_id), "ID")
    assert note.text == hidden.text


async def test_marketing_may_not_read_tickets_and_accounting_may_not_resolve_them(
    client: httpx.AsyncClient, issuer: DevIssuer, complaint: UUID
) -> None:
    read = await client.get(f"/tickets/{complaint}", headers=bearer(issuer, "mori", "marketing"))
    resolve = await client.post(
        f"/tickets/{complaint}/resolve", json={"resolution": "x"}, headers=bearer(issuer, "kei", "accounting")
    )

    assert (read.status_code, read.json()["permission"]) == (403, "ticket.read")
    assert (resolve.status_code, resolve.json()["permission"]) == (403, "ticket.resolve")
