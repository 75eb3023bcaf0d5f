"""The access log on real PostgreSQL: who read which personal fields of whom, append-only, for auditors."""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import asyncpg
import httpx
import pytest
import pytest_asyncio
from crm_cli.testing import TEST_ROLE, NewDatabase, admin_url_for
from crm_eventstore.store import create_pool
from crm_http.access_log import (
    ACCESS_LOG_DDL,
    ACCESS_LOG_GRANTS,
    AccessLog,
    access_audit_router,
    record_access,
    returned_fields,
)
from crm_http.auth import Actor, DevIssuer, TokenVerifier, actor_dependency
from crm_http.problems import install_problem_handlers
from fastapi import Depends, FastAPI, Request

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

SALES = Actor(subject="sato.hanako", role="sales", team="tokyo-1", department="営業部")


class Ticking:
    def __init__(self) -> None:
        self.now = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest_asyncio.fixture(loop_scope="session")
async def urls(new_event_store_database: NewDatabase, pg_admin_url: str) -> AsyncIterator[tuple[str, str]]:
    """(runtime role URL, owner URL) of a database with the access log table."""
    url = await new_event_store_database()
    owner = admin_url_for(url, pg_admin_url)
    conn = await asyncpg.connect(owner)
    try:
        await conn.execute(ACCESS_LOG_DDL + ACCESS_LOG_GRANTS.format(role=f'"{TEST_ROLE}"'))
    finally:
        await conn.close()
    yield url, owner


@pytest_asyncio.fixture(loop_scope="session")
async def log(urls: tuple[str, str]) -> AsyncIterator[AccessLog]:
    pool = await create_pool(urls[0], min_size=1, max_size=4)
    yield AccessLog(pool, "contacts", clock=Ticking())
    await pool.close()


async def test_a_recorded_read_says_who_read_which_fields_of_whom_when_and_under_which_correlation(
    log: AccessLog,
) -> None:
    customer_id = uuid.uuid4()
    await log.record(SALES, customer_id, ["phone", "email", "name"], resource="GET /customers/{customer_id}")
    [item] = (await log.query(customer_id))["items"]
    assert item["actor"] == {"subject": "sato.hanako", "role": "sales", "team": "tokyo-1", "department": "営業部"}
    assert item["customer_id"] == str(customer_id)
    assert item["fields"] == ["email", "name", "phone"]
    assert item["service"] == "contacts"
    assert item["resource"] == "GET /customers/{customer_id}"
    assert uuid.UUID(item["correlation_id"])
    assert datetime.fromisoformat(item["accessed_at"]).year == 2026


async def test_a_read_that_returned_no_personal_field_is_not_recorded(log: AccessLog) -> None:
    customer_id = uuid.uuid4()
    await log.record(SALES, customer_id, [])
    assert (await log.query(customer_id))["items"] == []


async def test_records_come_newest_first_a_page_at_a_time(log: AccessLog) -> None:
    customer_id = uuid.uuid4()
    for n in range(5):
        await log.record(SALES, customer_id, [f"field{n}"])
    first = await log.query(customer_id, limit=2)
    second = await log.query(customer_id, limit=2, cursor=first["next_cursor"])
    third = await log.query(customer_id, limit=2, cursor=second["next_cursor"])
    fields = [i["fields"][0] for page in (first, second, third) for i in page["items"]]
    assert fields == ["field4", "field3", "field2", "field1", "field0"]
    assert third["next_cursor"] is None


async def test_one_read_of_many_customers_records_each_of_them(log: AccessLog) -> None:
    ids = [uuid.uuid4(), uuid.uuid4()]
    await log.record(SALES, ids, ["name"])
    for customer_id in ids:
        assert len((await log.query(customer_id))["items"]) == 1


@pytest.mark.parametrize(
    "statement", ["UPDATE access_log SET subject = 'someone-else'", "DELETE FROM access_log", "TRUNCATE access_log"]
)
async def test_the_runtime_role_cannot_change_or_delete_records(log: AccessLog, statement: str) -> None:
    await log.record(SALES, uuid.uuid4(), ["name"])
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await log.pool.execute(statement)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "statement", ["UPDATE access_log SET subject = 'someone-else'", "DELETE FROM access_log", "TRUNCATE access_log"]
)
async def test_even_the_owner_cannot_change_or_delete_records(
    log: AccessLog, urls: tuple[str, str], statement: str
) -> None:
    await log.record(SALES, uuid.uuid4(), ["name"])
    conn = await asyncpg.connect(urls[1])
    try:
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await conn.execute(statement)
    finally:
        await conn.close()


async def test_returned_fields_are_the_personal_fields_a_document_carries() -> None:
    document = {"name": "佐藤", "email": None, "phone": "", "address": {"city": "大阪市"}, "rank": "A"}
    assert returned_fields(document, ["name", "email", "phone", "address", "birth_date"]) == ["address", "name"]


@pytest_asyncio.fixture(loop_scope="session")
async def api(
    log: AccessLog, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[httpx.AsyncClient, DevIssuer]]:
    issuer = DevIssuer(Path(tmp_path_factory.mktemp("idp")))
    app = FastAPI()
    install_problem_handlers(app)
    app.state.access_log = log
    current_actor = actor_dependency(TokenVerifier(issuer.auth_settings()))
    app.include_router(access_audit_router(current_actor))

    @app.get("/customers/{customer_id}")
    async def read(
        customer_id: uuid.UUID, request: Request, actor: Annotated[Actor, Depends(current_actor)]
    ) -> dict[str, str]:
        document = {"name": "佐藤 花子", "rank": "A"}
        await record_access(request, actor, customer_id, returned_fields(document, ["name", "email"]))
        return document

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc.test") as client:
        yield client, issuer


def bearer(issuer: DevIssuer, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.issue(f'who-{role}', role)}"}


async def test_an_endpoint_records_its_reads_and_an_auditor_reads_them_back(
    api: tuple[httpx.AsyncClient, DevIssuer],
) -> None:
    client, issuer = api
    customer_id = uuid.uuid4()
    correlation = str(uuid.uuid4())
    read = await client.get(
        f"/customers/{customer_id}", headers={**bearer(issuer, "sales"), "X-Correlation-ID": correlation}
    )
    assert read.status_code == 200
    audit = await client.get("/audit/access", params={"customer": str(customer_id)}, headers=bearer(issuer, "auditor"))
    assert audit.status_code == 200
    [item] = audit.json()["items"]
    assert item["actor"]["subject"] == "who-sales"
    assert item["fields"] == ["name"]
    assert item["resource"] == "GET /customers/{customer_id}"
    assert item["correlation_id"] == correlation


@pytest.mark.parametrize("role", ["sales", "marketing", "support", "accounting", "manager", "integration"])
async def test_only_auditors_and_admins_read_the_access_log(
    api: tuple[httpx.AsyncClient, DevIssuer], role: str
) -> None:
    client, issuer = api
    response = await client.get("/audit/access", params={"customer": str(uuid.uuid4())}, headers=bearer(issuer, role))
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_bad_cursor_is_422_naming_the_cursor(api: tuple[httpx.AsyncClient, DevIssuer]) -> None:
    client, issuer = api
    response = await client.get(
        "/audit/access", params={"customer": str(uuid.uuid4()), "cursor": "nonsense"}, headers=bearer(issuer, "auditor")
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "cursor"
