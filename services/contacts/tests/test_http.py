"""The contacts HTTP API end to end in-process: real PostgreSQL event store, real signed JWTs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
import pytest_asyncio
from crm_contacts.app.customers import CustomerCommands
from crm_contacts.entrypoints.http import create_app
from crm_eventstore.ids import new_id
from crm_eventstore.store import PostgresEventStore
from crm_http.auth import DevIssuer, TokenVerifier
from crm_schemas.contacts import CustomerRegistered
from crm_schemas.personal import is_ciphertext

from .builders import company_body, person_body

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

PROBLEM_JSON = "application/problem+json"


@pytest.fixture
def issuer(tmp_path: Path) -> DevIssuer:
    return DevIssuer(tmp_path / "idp")


@pytest.fixture
def sales(issuer: DevIssuer) -> dict[str, str]:
    """Authorization header of a sales rep in Tokyo."""
    token = issuer.issue("sato.hanako", "sales", team="tokyo-1", department="営業部")
    return {"Authorization": f"Bearer {token}"}


@pytest_asyncio.fixture(loop_scope="session")
async def client(event_store: PostgresEventStore, issuer: DevIssuer) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(CustomerCommands(event_store), TokenVerifier(issuer.auth_settings()))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://contacts.test") as http:
        yield http


async def count_events(store: PostgresEventStore) -> int:
    return int(await store.pool.fetchval("SELECT count(*) FROM events"))


def problem_fields(response: httpx.Response) -> list[str]:
    assert response.headers["content-type"] == PROBLEM_JSON
    problem: dict[str, Any] = response.json()
    assert problem["status"] == response.status_code
    return [error["field"] for error in problem.get("errors", [])]


# --- registering ---------------------------------------------------------------------------------


async def test_registering_a_company_answers_201_with_id_version_location_and_etag(
    client: httpx.AsyncClient, sales: dict[str, str]
) -> None:
    response = await client.post("/customers", json=company_body(name="株式会社さくら物産"), headers=sales)

    assert response.status_code == 201, response.text
    body = response.json()
    customer_id = UUID(body["id"])
    assert body == {"id": str(customer_id), "version": 1, "possible_duplicates": []}
    assert response.headers["Location"] == f"/customers/{customer_id}"
    assert response.headers["ETag"] == '"1"'
    assert "Idempotent-Replayed" not in response.headers


async def test_the_registration_lands_in_the_store_attributed_to_the_token_with_the_name_encrypted(
    client: httpx.AsyncClient, sales: dict[str, str], event_store: PostgresEventStore
) -> None:
    correlation_id = new_id()
    response = await client.post(
        "/customers",
        json=company_body(name="株式会社さくら物産"),
        headers={**sales, "X-Correlation-ID": str(correlation_id)},
    )
    customer_id = UUID(response.json()["id"])

    [envelope] = await event_store.read_stream(f"customer-{customer_id}")
    assert envelope.type == "contacts.CustomerRegistered"
    assert envelope.service == "contacts"
    assert envelope.version == 1
    assert envelope.customer_id == customer_id
    assert envelope.correlation_id == correlation_id
    assert envelope.actor.subject == "sato.hanako"
    assert envelope.actor.role == "sales"
    assert envelope.actor.team == "tokyo-1"
    assert envelope.actor.department == "営業部"
    assert is_ciphertext(envelope.payload["name"])
    assert "さくら" not in str(envelope.payload)
    assert is_ciphertext(envelope.payload["phone"])
    assert envelope.payload["corporate_number"] == company_body()["corporate_number"]  # public, not personal

    [event], _ = await event_store.load(f"customer-{customer_id}")
    assert isinstance(event, CustomerRegistered)
    assert event.name == "株式会社さくら物産"
    assert event.phone == "+81312345678"
    assert await count_events(event_store) == 1


async def test_registering_a_person_answers_201(client: httpx.AsyncClient, sales: dict[str, str]) -> None:
    response = await client.post("/customers", json=person_body(), headers=sales)
    assert response.status_code == 201, response.text


# --- authentication ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer garbage", "Bearer eyJhbGciOiJub25lIn0.e30.", "Basic dXNlcjpwYXNz", "other-issuer"],
)
async def test_registering_without_a_valid_token_is_401_problem_json_and_writes_nothing(
    client: httpx.AsyncClient, event_store: PostgresEventStore, tmp_path: Path, authorization: str | None
) -> None:
    if authorization == "other-issuer":
        authorization = f"Bearer {DevIssuer(tmp_path / 'other').issue('mallory', 'admin')}"
    headers = {} if authorization is None else {"Authorization": authorization}

    response = await client.post("/customers", json=company_body(), headers=headers)

    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["status"] == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert await count_events(event_store) == 0


async def test_an_expired_token_is_refused(client: httpx.AsyncClient, issuer: DevIssuer) -> None:
    token = issuer.issue("sato.hanako", "sales", ttl=timedelta(hours=1), now=datetime.now(UTC) - timedelta(hours=3))
    response = await client.post("/customers", json=company_body(), headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


# --- invalid input ------------------------------------------------------------------------------


def _without_name() -> dict[str, Any]:
    body = company_body()
    del body["name"]
    return body


_NEXT_MONTH = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (company_body(corporate_number="7000012050003"), "corporate_number"),
        (company_body(email="taro.example.com"), "email"),
        (company_body(phone="03-1234"), "phone"),
        (company_body(address={"postal_code": "100-0001", "prefecture": "東京"}), "address.prefecture"),
        (company_body(address={"postal_code": "100-00001", "prefecture": "東京都"}), "address.postal_code"),
        (person_body(birth_date=_NEXT_MONTH), "birth_date"),
        (company_body(birth_date="1980-01-01"), "birth_date"),
        (_without_name(), "name"),
        (company_body(nickname="ABC"), "nickname"),
        (company_body(kind="partner"), "kind"),
    ],
    ids=[
        "bad-check-digit",
        "email",
        "phone",
        "prefecture",
        "postal-code",
        "future-birth-date",
        "birth-date-on-company",
        "missing-name",
        "unknown-field",
        "unknown-kind",
    ],
)
async def test_invalid_input_is_422_problem_json_naming_the_field_and_writes_nothing(
    client: httpx.AsyncClient,
    sales: dict[str, str],
    event_store: PostgresEventStore,
    body: dict[str, Any],
    field: str,
) -> None:
    before = await count_events(event_store)

    response = await client.post("/customers", json=body, headers=sales)

    assert response.status_code == 422, response.text
    assert problem_fields(response) == [field]
    assert await count_events(event_store) == before


async def test_every_bad_field_of_one_request_is_named(client: httpx.AsyncClient, sales: dict[str, str]) -> None:
    body = company_body(email="nope", phone="12", address={"prefecture": "東京"}, nickname="x")
    del body["name"]
    response = await client.post("/customers", json=body, headers=sales)
    assert response.status_code == 422
    assert sorted(problem_fields(response)) == ["address.prefecture", "email", "name", "nickname", "phone"]


async def test_malformed_json_is_422_problem_json(client: httpx.AsyncClient, sales: dict[str, str]) -> None:
    response = await client.post(
        "/customers", content=b'{"kind": "company",', headers={**sales, "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON


# --- idempotency --------------------------------------------------------------------------------


async def test_a_retry_with_the_same_idempotency_key_replays_the_first_answer_and_writes_once(
    client: httpx.AsyncClient, sales: dict[str, str], event_store: PostgresEventStore
) -> None:
    headers = {**sales, "Idempotency-Key": "register-sakura-1"}

    first = await client.post("/customers", json=company_body(), headers=headers)
    again = await client.post("/customers", json=company_body(), headers=headers)

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["ETag"] == first.headers["ETag"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert await count_events(event_store) == 1


async def test_the_same_idempotency_key_with_a_different_body_is_422_naming_the_header(
    client: httpx.AsyncClient, sales: dict[str, str], event_store: PostgresEventStore
) -> None:
    headers = {**sales, "Idempotency-Key": "register-sakura-2"}
    await client.post("/customers", json=company_body(), headers=headers)

    response = await client.post("/customers", json=company_body(name="別の会社株式会社"), headers=headers)

    assert response.status_code == 422
    assert problem_fields(response) == ["Idempotency-Key"]
    assert await count_events(event_store) == 1


async def test_idempotency_keys_are_scoped_to_the_caller(
    client: httpx.AsyncClient, sales: dict[str, str], issuer: DevIssuer, event_store: PostgresEventStore
) -> None:
    other = {"Authorization": f"Bearer {issuer.issue('suzuki.ichiro', 'sales')}"}
    first = await client.post("/customers", json=company_body(), headers={**sales, "Idempotency-Key": "k-1"})
    second = await client.post("/customers", json=company_body(), headers={**other, "Idempotency-Key": "k-1"})
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]
    assert "Idempotent-Replayed" not in second.headers
    assert await count_events(event_store) == 2


# --- reading ----------------------------------------------------------------------------------


async def test_a_registered_customer_reads_back_with_etag_1(client: httpx.AsyncClient, sales: dict[str, str]) -> None:
    created = await client.post("/customers", json=company_body(name="株式会社さくら物産"), headers=sales)
    location = created.headers["Location"]

    response = await client.get(location, headers=sales)

    assert response.status_code == 200
    assert response.headers["ETag"] == '"1"'
    body = response.json()
    assert {k: body[k] for k in ("id", "kind", "name", "name_kana", "version")} == {
        "id": created.json()["id"],
        "kind": "company",
        "name": "株式会社さくら物産",
        "name_kana": "カブシキガイシャエービーシーショウジ",
        "version": 1,
    }
    assert body["address"]["prefecture"] == "東京都"
    assert body["merged_into"] is None
    assert body["contacts"] == []


async def test_reading_an_unknown_customer_is_404_problem_json(
    client: httpx.AsyncClient, sales: dict[str, str]
) -> None:
    response = await client.get(f"/customers/{new_id()}", headers=sales)
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["status"] == 404


async def test_reading_a_customer_needs_a_token(client: httpx.AsyncClient, sales: dict[str, str]) -> None:
    created = await client.post("/customers", json=company_body(), headers=sales)
    response = await client.get(created.headers["Location"])
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM_JSON


# --- unauthenticated endpoints ------------------------------------------------------------------


async def test_the_openapi_document_is_served_without_a_token_and_lists_post_customers(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert "post" in document["paths"]["/customers"]
    assert "get" in document["paths"]["/customers/{customer_id}"]


async def test_healthz_answers_200_without_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
