"""POST /imports: a CSV upload through the contacts HTTP API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from crm_contacts.app.customers import CustomerCommands
from crm_contacts.entrypoints.http import create_app
from crm_eventstore.store import PostgresEventStore
from crm_http.auth import DevIssuer, TokenVerifier

from .builders import corporate_number

pytestmark = pytest.mark.integration

CSV = (
    "顧客コード,種別,会社名,法人番号,都道府県,メールアドレス\n"
    f"C001,法人,株式会社さくら物産,{corporate_number()},東京都,info@sakura.example.co.jp\n"
    "C002,法人,株式会社みどり,,東京県,bad-address\n"
)


@pytest.fixture
def issuer(tmp_path: Path) -> DevIssuer:
    return DevIssuer(tmp_path / "idp")


@pytest_asyncio.fixture(loop_scope="session")
async def client(event_store: PostgresEventStore, issuer: DevIssuer) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(CustomerCommands(event_store), TokenVerifier(issuer.auth_settings()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://contacts.test") as http:
        yield http


def bearer(issuer: DevIssuer, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.issue('batch', role)}"}


async def test_a_posted_cp932_file_imports_valid_rows_and_lists_the_invalid_ones(
    client: httpx.AsyncClient, issuer: DevIssuer, event_store: PostgresEventStore
) -> None:
    files = {"file": ("customers.csv", CSV.encode("cp932"), "text/csv")}

    first = await client.post("/imports", files=files, headers=bearer(issuer, "integration"))
    again = await client.post("/imports", files=files, headers=bearer(issuer, "integration"))

    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["rows"], body["imported"], body["invalid"], body["encoding"]) == (2, 1, 1, "cp932")
    assert [(e["row"], e["column"]) for e in body["errors"]] == [(3, "都道府県"), (3, "メールアドレス")]
    assert again.json()["already_imported"] == 1
    assert await event_store.pool.fetchval("SELECT count(*) FROM events") == 1


async def test_a_mapping_and_a_default_kind_come_as_form_fields(client: httpx.AsyncClient, issuer: DevIssuer) -> None:
    response = await client.post(
        "/imports",
        files={"file": ("c.csv", "得意先名,備考\n株式会社みどり,x\n".encode(), "text/csv")},
        data={"mapping": json.dumps({"得意先名": "name", "備考": None}), "kind": "company"},
        headers=bearer(issuer, "admin"),
    )

    assert response.status_code == 200, response.text
    assert response.json()["imported"] == 1


async def test_a_sales_rep_may_not_import(client: httpx.AsyncClient, issuer: DevIssuer) -> None:
    files = {"file": ("customers.csv", CSV.encode(), "text/csv")}
    response = await client.post("/imports", files=files, headers=bearer(issuer, "sales"))
    assert response.status_code == 403


async def test_an_unreadable_file_is_422_naming_the_file(client: httpx.AsyncClient, issuer: DevIssuer) -> None:
    files = {"file": ("customers.csv", b"\xff\xfe\xfd\x80", "text/csv")}
    response = await client.post("/imports", files=files, headers=bearer(issuer, "admin"))
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "file"
