"""Contacts reads in the access log (who read whose personal fields), and erasure leaving it intact."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from crm_contacts.app.customers import CustomerCommands
from crm_contacts.entrypoints.http import PERSONAL_VIEW_FIELDS, create_app
from crm_eventstore.ids import new_id
from crm_eventstore.store import PostgresEventStore
from crm_http.auth import DevIssuer, TokenVerifier
from crm_http.limits import ApiLimits

from .builders import person_body

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


@pytest.fixture
def issuer(tmp_path: Path) -> DevIssuer:
    return DevIssuer(tmp_path / "idp")


@pytest_asyncio.fixture(loop_scope="session")
async def client(event_store: PostgresEventStore, issuer: DevIssuer) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(CustomerCommands(event_store), TokenVerifier(issuer.auth_settings()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://contacts.test") as http:
        yield http


def bearer(issuer: DevIssuer, role: str, subject: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.issue(subject or f'who-{role}', role, team='t1')}"}


async def accesses(client: httpx.AsyncClient, issuer: DevIssuer, customer_id: str) -> list[dict[str, Any]]:
    response = await client.get("/audit/access", params={"customer": customer_id}, headers=bearer(issuer, "auditor"))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_reading_a_customer_is_recorded_with_the_personal_fields_returned(
    client: httpx.AsyncClient, issuer: DevIssuer
) -> None:
    created = await client.post("/customers", json=person_body(), headers=bearer(issuer, "admin"))
    customer_id = created.json()["id"]
    correlation = str(new_id())

    read = await client.get(
        f"/customers/{customer_id}", headers={**bearer(issuer, "support", "tanaka"), "X-Correlation-ID": correlation}
    )

    assert read.status_code == 200
    [item] = await accesses(client, issuer, customer_id)
    assert item["actor"]["subject"] == "tanaka"
    assert item["service"] == "contacts"
    assert item["resource"] == "GET /customers/{customer_id}"
    assert item["correlation_id"] == correlation
    returned = {name for name in PERSONAL_VIEW_FIELDS if read.json().get(name) not in (None, "", [], {})}
    assert set(item["fields"]) == returned
    assert {"name", "email", "phone", "address"} <= returned


async def test_a_read_of_an_erased_customer_discloses_nothing_and_records_nothing(
    client: httpx.AsyncClient, issuer: DevIssuer
) -> None:
    created = await client.post("/customers", json=person_body(), headers=bearer(issuer, "admin"))
    customer_id = created.json()["id"]
    assert (await client.post(f"/customers/{customer_id}/erase", headers=bearer(issuer, "admin"))).status_code == 200
    assert (await client.get(f"/customers/{customer_id}", headers=bearer(issuer, "admin"))).status_code == 410
    assert await accesses(client, issuer, customer_id) == []


async def test_the_contacts_api_refuses_oversized_bodies_413(client: httpx.AsyncClient, issuer: DevIssuer) -> None:
    body = person_body(name="x" * (ApiLimits().max_body_bytes + 10))
    response = await client.post("/customers", json=body, headers=bearer(issuer, "admin"))
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
