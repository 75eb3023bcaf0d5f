"""POST /customers/{id}/erase on real PostgreSQL: the record, the shredded key, the forgotten directory entry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest
import pytest_asyncio
from crm_cli.testing import TEST_ROLE
from crm_contacts.app.customers import CustomerCommands
from crm_contacts.app.directory import DIRECTORY_DDL, DIRECTORY_GRANTS, CustomerDirectory
from crm_contacts.entrypoints.http import create_app
from crm_eventstore.errors import KeyDestroyed
from crm_eventstore.provision import database_url
from crm_eventstore.store import PostgresEventStore, verify_chains
from crm_http.auth import DevIssuer, TokenVerifier

from .builders import contact_body, person_body

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

CANARY_NAME = "消去 カナリア一郎"
CANARY_EMAIL = "canary.erasure.7f3a@example.jp"
CANARY_PHONE = "090-7777-0001"


@pytest.fixture
def issuer(tmp_path: Path) -> DevIssuer:
    return DevIssuer(tmp_path / "idp")


def bearer(issuer: DevIssuer, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.issue(f'someone-{role}', role, team='t1')}"}


@pytest_asyncio.fixture(loop_scope="session")
async def admin_conn(event_store: PostgresEventStore, pg_admin_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection to the event store's database (to scan every table as an auditor would)."""
    database = await event_store.pool.fetchval("SELECT current_database()")
    conn = await asyncpg.connect(database_url(pg_admin_url, database))
    await conn.execute(DIRECTORY_DDL + DIRECTORY_GRANTS.format(role=f'"{TEST_ROLE}"'))
    yield conn
    await conn.close()


@pytest_asyncio.fixture(loop_scope="session")
async def client(
    event_store: PostgresEventStore, admin_conn: asyncpg.Connection, issuer: DevIssuer
) -> AsyncIterator[httpx.AsyncClient]:
    directory = CustomerDirectory(event_store.pool)
    app = create_app(
        CustomerCommands(event_store, directory), TokenVerifier(issuer.auth_settings()), directory=directory
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://contacts.test") as http:
        yield http


async def register(client: httpx.AsyncClient, headers: dict[str, str], **fields: Any) -> str:
    response = await client.post("/customers", json=person_body(**fields), headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def occurrences(conn: asyncpg.Connection, needle: str) -> list[str]:
    """Every table.column of the database whose text form contains `needle` (a full scan, like an auditor's)."""
    tables = await conn.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
    )
    found = []
    for row in tables:
        table = row["table_name"]
        hits = await conn.fetchval(f'SELECT count(*) FROM "{table}" AS t WHERE t::text LIKE $1', f"%{needle}%")
        if hits:
            found.append(table)
    return found


async def test_an_admin_erases_a_customer_and_its_personal_data_is_gone_from_the_contacts_database(
    client: httpx.AsyncClient, issuer: DevIssuer, event_store: PostgresEventStore, admin_conn: asyncpg.Connection
) -> None:
    admin = bearer(issuer, "admin")
    customer_id = await register(client, admin, name=CANARY_NAME, email=CANARY_EMAIL, phone=CANARY_PHONE)
    other_id = await register(client, admin, name="残る 花子", email="stays@example.jp", phone="090-1111-2222")
    assert await occurrences(admin_conn, "canary.erasure.7f3a") == ["customer_directory"]

    response = await client.post(f"/customers/{customer_id}/erase", json={}, headers=admin)

    assert response.status_code == 200, response.text
    assert response.json() == {"id": customer_id, "version": 2}
    types = [e.type for e in await event_store.read_stream(f"customer-{customer_id}")]
    assert types == ["contacts.CustomerRegistered", "contacts.CustomerErased"]
    for canary in (CANARY_NAME, "canary.erasure.7f3a", "+819077770001"):
        assert await occurrences(admin_conn, canary) == [], canary
    registered = (await event_store.read_stream(f"customer-{customer_id}"))[0]
    with pytest.raises(KeyDestroyed):
        await event_store.keyring.decrypt_fields(registered.customer_id, registered.event_id, registered.payload)
    assert (await client.get(f"/customers/{other_id}", headers=admin)).json()["email"] == "stays@example.jp"
    checked, broken = await verify_chains(event_store.pool)
    assert broken is None
    assert checked >= 3


async def test_an_erased_customer_answers_410_gone_to_reads_and_commands(
    client: httpx.AsyncClient, issuer: DevIssuer
) -> None:
    admin = bearer(issuer, "admin")
    customer_id = await register(client, admin)
    assert (await client.post(f"/customers/{customer_id}/erase", headers=admin)).status_code == 200

    read = await client.get(f"/customers/{customer_id}", headers=admin)
    command = await client.post(f"/customers/{customer_id}/phone", json={"phone": "03-1234-9999"}, headers=admin)

    for response in (read, command):
        assert response.status_code == 410, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"].endswith("/customer-erased")


async def test_erasing_again_records_nothing_new_and_answers_the_same_version(
    client: httpx.AsyncClient, issuer: DevIssuer, event_store: PostgresEventStore
) -> None:
    admin = bearer(issuer, "admin")
    customer_id = await register(client, admin)
    first = await client.post(f"/customers/{customer_id}/erase", headers=admin)
    second = await client.post(f"/customers/{customer_id}/erase", headers=admin)
    assert first.json() == second.json() == {"id": customer_id, "version": 2}
    assert len(await event_store.read_stream(f"customer-{customer_id}")) == 2


@pytest.mark.parametrize("role", ["sales", "marketing", "support", "accounting", "manager", "auditor", "integration"])
async def test_only_an_admin_may_erase(
    client: httpx.AsyncClient, issuer: DevIssuer, event_store: PostgresEventStore, role: str
) -> None:
    customer_id = await register(client, bearer(issuer, "admin"))
    response = await client.post(f"/customers/{customer_id}/erase", headers=bearer(issuer, role))
    assert response.status_code == 403
    assert len(await event_store.read_stream(f"customer-{customer_id}")) == 1
    assert (await client.get(f"/customers/{customer_id}", headers=bearer(issuer, "admin"))).status_code == 200


async def test_erasing_an_unknown_customer_is_404(client: httpx.AsyncClient, issuer: DevIssuer) -> None:
    response = await client.post(f"/customers/{UUID(int=7)}/erase", headers=bearer(issuer, "admin"))
    assert response.status_code == 404


async def test_erasing_the_survivor_of_a_merge_shreds_the_duplicate_and_forgets_both_directory_entries(
    client: httpx.AsyncClient, issuer: DevIssuer, event_store: PostgresEventStore, admin_conn: asyncpg.Connection
) -> None:
    admin = bearer(issuer, "admin")
    survivor = await register(client, admin, name="合併 生存者", email="survivor.canary@example.jp")
    duplicate = await register(client, admin, name="合併 重複者", email="duplicate.canary@example.jp")
    merged = await client.post(f"/customers/{survivor}/merge", json={"absorbed_id": duplicate}, headers=admin)
    assert merged.status_code == 200, merged.text
    refused = await client.post(f"/customers/{duplicate}/erase", headers=admin)
    assert refused.status_code == 409
    assert refused.json()["survivor_id"] == survivor

    assert (await client.post(f"/customers/{survivor}/erase", headers=admin)).status_code == 200

    erased = [e for e in await event_store.read_stream(f"customer-{duplicate}") if e.type == "contacts.CustomerErased"]
    assert [e.payload["survivor_id"] for e in erased] == [survivor]
    for canary in ("survivor.canary", "duplicate.canary", "合併"):
        assert await occurrences(admin_conn, canary) == [], canary
    for customer_id in (survivor, duplicate):
        assert (await client.get(f"/customers/{customer_id}", headers=admin)).status_code == 410


async def test_an_erasure_with_an_idempotency_key_is_replayed_with_its_first_answer(
    client: httpx.AsyncClient, issuer: DevIssuer
) -> None:
    admin = {**bearer(issuer, "admin"), "Idempotency-Key": "erase-once"}
    customer_id = await register(client, bearer(issuer, "admin"))
    first = await client.post(f"/customers/{customer_id}/erase", json={"basis": "legal_obligation"}, headers=admin)
    again = await client.post(f"/customers/{customer_id}/erase", json={"basis": "legal_obligation"}, headers=admin)
    assert first.status_code == again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()


async def test_a_contact_persons_details_are_erased_with_their_company(
    client: httpx.AsyncClient, issuer: DevIssuer, admin_conn: asyncpg.Connection
) -> None:
    admin = bearer(issuer, "admin")
    response = await client.post("/customers", json={"kind": "company", "name": "カナリア株式会社"}, headers=admin)
    company = response.json()["id"]
    body = contact_body(name="担当 カナリア", email="contact.canary.91@example.jp")
    assert (await client.post(f"/customers/{company}/contacts", json=body, headers=admin)).status_code == 201
    assert (await client.post(f"/customers/{company}/erase", headers=admin)).status_code == 200
    for canary in ("contact.canary.91", "担当 カナリア", "カナリア株式会社"):
        assert await occurrences(admin_conn, canary) == [], canary


async def test_a_directory_rebuild_from_the_event_store_leaves_erased_customers_out(
    client: httpx.AsyncClient, issuer: DevIssuer, event_store: PostgresEventStore, admin_conn: asyncpg.Connection
) -> None:
    admin = bearer(issuer, "admin")
    customer_id = UUID(await register(client, admin))
    assert (await client.post(f"/customers/{customer_id}/erase", headers=admin)).status_code == 200
    state = await CustomerCommands(event_store).load(customer_id)
    directory = CustomerDirectory(event_store.pool)
    async with event_store.pool.acquire() as conn:
        await directory.upsert_many(conn, [state])
        await directory.upsert(conn, state)
    rows = await admin_conn.fetchval("SELECT count(*) FROM customer_directory WHERE customer_id = $1", customer_id)
    assert rows == 0
