"""The contacts command endpoints in-process: real PostgreSQL event store, real signed JWTs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
import pytest_asyncio
from crm_contacts.app.customers import CustomerCommands
from crm_contacts.domain.customer import JST
from crm_contacts.entrypoints.http import create_app
from crm_eventstore.ids import new_id
from crm_eventstore.store import PostgresEventStore
from crm_http.auth import DevIssuer, TokenVerifier

from .builders import company_body, contact_body, person_body

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

PROBLEM_JSON = "application/problem+json"
_DAY_AFTER_TOMORROW = (datetime.now(JST) + timedelta(days=2)).date().isoformat()


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


async def stream_types(store: PostgresEventStore, customer_id: UUID | str) -> list[str]:
    return [e.type for e in await store.read_stream(f"customer-{customer_id}")]


def problem_fields(response: httpx.Response) -> list[str]:
    assert response.headers["content-type"] == PROBLEM_JSON
    problem: dict[str, Any] = response.json()
    assert problem["status"] == response.status_code
    return [error["field"] for error in problem.get("errors", [])]


async def register(client: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any] | None = None) -> str:
    response = await client.post("/customers", json=body or company_body(), headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def add_contact(client: httpx.AsyncClient, headers: dict[str, str], customer_id: str, **fields: Any) -> str:
    response = await client.post(f"/customers/{customer_id}/contacts", json=contact_body(**fields), headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["person_id"])


async def view(client: httpx.AsyncClient, headers: dict[str, str], customer_id: str) -> dict[str, Any]:
    response = await client.get(f"/customers/{customer_id}", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# --- every command endpoint -------------------------------------------------------------------------------

ENDPOINTS: list[tuple[str, dict[str, Any], list[str]]] = [
    ("rename", {"name": "株式会社ABCホールディングス", "name_kana": "エービーシー"}, ["CustomerRenamed"]),
    ("address", {"address": {"postal_code": "530-0001", "prefecture": "大阪府"}}, ["CustomerAddressChanged"]),
    ("phone", {"phone": "06-1234-5678"}, ["CustomerPhoneChanged"]),
    ("email", {"email": "taro.yamada@abc.example.jp"}, ["CustomerEmailChanged"]),
    ("profile", {"employee_count": 130, "industry": "小売業"}, ["CustomerHeadcountChanged", "CustomerIndustryChanged"]),
    ("rank", {"rank": "A"}, ["CustomerRankChanged"]),
    ("tags", {"add": ["重点顧客", "展示会2025"]}, ["CustomerTagged", "CustomerTagged"]),
    ("interests", {"add": ["クラウド会計"]}, ["MarketingInterestAdded"]),
    ("campaigns", {"campaign": "春の新生活キャンペーン2025"}, ["CampaignJoined"]),
    ("consents", {"channel": "email", "granted": True, "source": "web-form"}, ["ConsentGranted"]),
    ("payment-terms", {"payment_terms": "月末締め翌月末払い"}, ["PaymentTermsSet"]),
    ("contacts/{pid}/title", {"title": "部長"}, ["ContactPersonTitleChanged"]),
    ("contacts/{pid}/move", {"department": "経理部", "effective_on": "2025-04-01"}, ["ContactPersonMovedDepartment"]),
    ("contacts/{pid}/contact-details", {"phone": "090-3333-4444"}, ["ContactPersonContactDetailsChanged"]),
    ("contacts/{pid}/decision-role", {"decision_role": "decision_maker"}, ["ContactPersonDecisionRoleChanged"]),
    ("contacts/{pid}/leave", {"reason": "退職"}, ["ContactPersonLeftCompany"]),
]


@pytest.mark.parametrize(("path", "body", "types"), ENDPOINTS, ids=[e[0].rsplit("/", 1)[-1] for e in ENDPOINTS])
async def test_each_command_endpoint_answers_200_with_the_new_version_and_etag_and_appends_its_event(
    client: httpx.AsyncClient,
    sales: dict[str, str],
    event_store: PostgresEventStore,
    path: str,
    body: dict[str, Any],
    types: list[str],
) -> None:
    customer_id = await register(client, sales)
    person_id = await add_contact(client, sales, customer_id)  # version 2
    version = 2 + len(types)

    response = await client.post(f"/customers/{customer_id}/{path.format(pid=person_id)}", json=body, headers=sales)

    assert response.status_code == 200, response.text
    assert response.json() == {"id": customer_id, "version": version}
    assert response.headers["ETag"] == f'"{version}"'
    assert (await stream_types(event_store, customer_id))[2:] == [f"contacts.{t}" for t in types]
    assert (await client.get(f"/customers/{customer_id}", headers=sales)).headers["ETag"] == f'"{version}"'


async def test_a_command_that_changes_nothing_answers_200_with_the_same_version_and_writes_nothing(
    client: httpx.AsyncClient, sales: dict[str, str], event_store: PostgresEventStore
) -> None:
    customer_id = await register(client, sales)
    response = await client.post(f"/customers/{customer_id}/phone", json={"phone": "03-1234-5678"}, headers=sales)
    assert response.status_code == 200
    assert response.json() == {"id": customer_id, "version": 1}
    assert await count_events(event_store) == 1


async def test_adding_a_contact_person_answers_201_with_the_person_id_and_the_person_reads_back(
    client: httpx.AsyncClient, sales: dict[str, str], event_store: PostgresEventStore
) -> None:
    customer_id = await register(client, sales)

    response = await client.post(f"/customers/{customer_id}/contacts", json=contact_body(), headers=sales)

    assert response.status_code == 201, response.text
    body = response.json()
    person_id = UUID(body["person_id"])
    assert body == {"id": customer_id, "version": 2, "person_id": str(person_id)}
    assert response.headers["ETag"] == '"2"'
    assert await stream_types(event_store, customer_id) == [
        "contacts.CustomerRegistered",
        "contacts.ContactPersonAdded",
    ]
    [contact] = (await view(client, sales, customer_id))["contacts"]
    assert contact["person_id"] == str(person_id)
    assert (contact["name"], contact["department"], contact["title"]) == ("鈴木 一郎", "購買部", "課長")
    assert (contact["phone"], contact["decision_role"], contact["active"]) == ("+81312345679", "approver", True)


async def test_a_contact_persons_move_and_leaving_read_back_in_get(
    client: httpx.AsyncClient, sales: dict[str, str]
) -> None:
    customer_id = await register(client, sales)
    person_id = await add_contact(client, sales, customer_id)
    base = f"/customers/{customer_id}/contacts/{person_id}"
    assert (await client.post(f"{base}/move", json={"department": "経理部", "title": "部長"}, headers=sales)).is_success
    assert (await client.post(f"{base}/leave", json={"reason": "転職"}, headers=sales)).is_success

    [contact] = (await view(client, sales, customer_id))["contacts"]
    assert (contact["department"], contact["title"], contact["active"]) == ("経理部", "部長", False)
    assert contact["left_at"] is not None


async def test_consent_granted_then_withdrawn_reads_back_as_withdrawn_with_its_source(
    client: httpx.AsyncClient, sales: dict[str, str]
) -> None:
    customer_id = await register(client, sales, person_body())
    for granted, source in ((True, "web-form"), (False, "unsubscribe-link")):
        body = {"channel": "email", "granted": granted, "source": source}
        assert (await client.post(f"/customers/{customer_id}/consents", json=body, headers=sales)).is_success

    [consent] = (await view(client, sales, customer_id))["consents"]
    assert (consent["channel"], consent["purpose"], consent["granted"], consent["source"]) == (
        "email",
        "newsletter",
        False,
        "unsubscribe-link",
    )


# --- If-Match ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stale", ['"0"', '"2"', 'W/"5"'])
async def test_a_stale_if_match_is_409_with_the_current_version_and_writes_nothing(
    client: httpx.AsyncClient, sales: dict[str, str], event_store: PostgresEventStore, stale: str
) -> None:
    customer_id = await register(client, sales)

    response = await client.post(
        f"/customers/{customer_id}/phone", json={"phone": "06-1234-5678"}, headers={**sales, "If-Match": stale}
    )

    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["current_version"] == 1
    assert await count_events(event_store) == 1


@pytest.mark.parametrize("current", ['"1"', 'W/"1"', "*"])
async def test_the_current_if_match_lets_the_command_through(
    client: httpx.AsyncClient, sales: dict[str, str], current: str
) -> None:
    customer_id = await register(client, sales)
    response = await client.post(
        f"/customers/{customer_id}/phone", json={"phone": "06-1234-5678"}, headers={**sales, "If-Match": current}
    )
    assert response.status_code == 200, response.text
    assert response.json()["version"] == 2


async def test_a_stale_if_match_on_a_contact_person_command_is_409_too(
    client: httpx.AsyncClient, sales: dict[str, str], event_store: PostgresEventStore
) -> None:
    customer_id = await register(client, sales)
    person_id = await add_contact(client, sales, customer_id)
    response = await client.post(
        f"/customers/{customer_id}/contacts/{person_id}/title",
        json={"title": "部長"},
        headers={**sales, "If-Match": '"1"'},
    )
    assert response.status_code == 409
    assert response.json()["current_version"] == 2
    assert await count_events(event_store) == 2


async def test_an_if_match_that_is_not_a_version_is_422_naming_the_header(
    client: httpx.AsyncClient, sales: dict[str, str]
) -> None:
    customer_id = await register(client, sales)
    response = await client.post(
        f"/customers/{customer_id}/phone", json={"phone": "06-1234-5678"}, headers={**sales, "If-Match": '"abc"'}
    )
    assert response.status_code == 422
    assert problem_fields(response) == ["If-Match"]


# --- Idempotency-Key ----------------------------------------------------------------------------------------


async def test_a_retried_command_with_the_same_idempotency_key_replays_the_answer_and_writes_once(
    client: httpx.AsyncClient, sales: dict[str, str], event_store: PostgresEventStore
) -> None:
    customer_id = await register(client, sales)
    headers = {**sales, "Idempotency-Key": "phone-change-1"}

    first = await client.post(f"/customers/{customer_id}/phone", json={"phone": "06-1234-5678"}, headers=headers)
    again = await client.post(f"/customers/{customer_id}/phone", json={"phone": "06-1234-5678"}, headers=headers)

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() == {"id": customer_id, "version": 2}
    assert again.headers["ETag"] == first.headers["ETag"] == '"2"'
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert await stream_types(event_store, customer_id) == [
        "contacts.CustomerRegistered",
        "contacts.CustomerPhoneChanged",
    ]


async def test_a_retried_add_contact_replays_the_same_person_id_and_adds_one_person(
    client: httpx.AsyncClient, sales: dict[str, str]
) -> None:
    customer_id = await register(client, sales)
    headers = {**sales, "Idempotency-Key": "add-suzuki"}

    first = await client.post(f"/customers/{customer_id}/contacts", json=contact_body(), headers=headers)
    again = await client.post(f"/customers/{customer_id}/contacts", json=contact_body(), headers=headers)

    assert first.status_code == again.status_code == 201
    assert again.json()["person_id"] == first.json()["person_id"]
    assert len((await view(client, sales, customer_id))["contacts"]) == 1


async def test_an_idempotency_key_reused_for_another_command_body_is_422_and_writes_nothing(
    client: httpx.AsyncClient, sales: dict[str, str], event_store: PostgresEventStore
) -> None:
    customer_id = await register(client, sales)
    headers = {**sales, "Idempotency-Key": "phone-change-2"}
    await client.post(f"/customers/{customer_id}/phone", json={"phone": "06-1234-5678"}, headers=headers)

    response = await client.post(f"/customers/{customer_id}/phone", json={"phone": "06-9999-8888"}, headers=headers)

    assert response.status_code == 422
    assert problem_fields(response) == ["Idempotency-Key"]
    assert await count_events(event_store) == 2


# --- invalid input ------------------------------------------------------------------------------------------


INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("phone", {"phone": "03-1234"}, "phone"),
    ("phone", {"phone": "06-1234-5678", "effective_on": _DAY_AFTER_TOMORROW}, "effective_on"),
    ("contacts", contact_body(email="ichiro.example.com"), "email"),
    ("contacts", contact_body(decision_role="boss"), "decision_role"),
    ("address", {"address": {"postal_code": "100-0001", "prefecture": "東京"}}, "address.prefecture"),
    ("rename", {"name": "株式会社ABC", "nickname": "ABC"}, "nickname"),
    ("tags", {"add": ["重点顧客"], "remove": ["重点顧客"]}, "remove"),
    ("profile", {"birth_date": "1980-01-01"}, "birth_date"),
    ("profile", {"fiscal_month": 13}, "fiscal_month"),
    ("consents", {"channel": "fax", "granted": True, "source": "web-form"}, "channel"),
]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    INVALID,
    ids=[
        "bad-phone",
        "future-effective-on",
        "contact-bad-email",
        "contact-bad-role",
        "unknown-prefecture",
        "unknown-field",
        "tag-added-and-removed",
        "birth-date-on-company",
        "fiscal-month-13",
        "consent-channel",
    ],
)
async def test_invalid_command_input_is_422_problem_json_naming_the_field_and_writes_nothing(
    client: httpx.AsyncClient,
    sales: dict[str, str],
    event_store: PostgresEventStore,
    path: str,
    body: dict[str, Any],
    field: str,
) -> None:
    customer_id = await register(client, sales)

    response = await client.post(f"/customers/{customer_id}/{path}", json=body, headers=sales)

    assert response.status_code == 422, response.text
    assert problem_fields(response) == [field]
    assert await count_events(event_store) == 1


@pytest.mark.parametrize(
    ("path", "body"),
    [("payment-terms", {"payment_terms": "月末締め翌月末払い"}), ("contacts", contact_body())],
    ids=["payment-terms", "contacts"],
)
async def test_company_only_commands_on_a_person_are_422_naming_kind(
    client: httpx.AsyncClient, sales: dict[str, str], event_store: PostgresEventStore, path: str, body: dict[str, Any]
) -> None:
    customer_id = await register(client, sales, person_body())
    response = await client.post(f"/customers/{customer_id}/{path}", json=body, headers=sales)
    assert response.status_code == 422
    assert problem_fields(response) == ["kind"]
    assert await count_events(event_store) == 1


# --- unknown customers and persons --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("rename", {"name": "株式会社ABC"}),
        ("phone", {"phone": "06-1234-5678"}),
        ("contacts", contact_body()),
        ("merge", {"absorbed_id": str(new_id())}),
        ("unmerge", {"absorbed_id": str(new_id())}),
    ],
    ids=["rename", "phone", "contacts", "merge", "unmerge"],
)
async def test_a_command_on_an_unknown_customer_is_404_problem_json_and_writes_nothing(
    client: httpx.AsyncClient, sales: dict[str, str], event_store: PostgresEventStore, path: str, body: dict[str, Any]
) -> None:
    response = await client.post(f"/customers/{new_id()}/{path}", json=body, headers=sales)
    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["status"] == 404
    assert await count_events(event_store) == 0


async def test_a_command_for_an_unknown_contact_person_is_404_problem_json(
    client: httpx.AsyncClient, sales: dict[str, str], event_store: PostgresEventStore
) -> None:
    customer_id = await register(client, sales)
    response = await client.post(
        f"/customers/{customer_id}/contacts/{new_id()}/title", json={"title": "部長"}, headers=sales
    )
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM_JSON
    assert await count_events(event_store) == 1


async def test_a_command_for_a_contact_person_who_left_is_409_problem_json(
    client: httpx.AsyncClient, sales: dict[str, str], event_store: PostgresEventStore
) -> None:
    customer_id = await register(client, sales)
    person_id = await add_contact(client, sales, customer_id)
    base = f"/customers/{customer_id}/contacts/{person_id}"
    assert (await client.post(f"{base}/leave", json={}, headers=sales)).status_code == 200

    response = await client.post(f"{base}/move", json={"department": "経理部"}, headers=sales)

    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM_JSON
    assert await count_events(event_store) == 3


# --- merge and unmerge (名寄せ) ------------------------------------------------------------------------------


async def duplicates(client: httpx.AsyncClient, headers: dict[str, str]) -> tuple[str, str]:
    """Two records of one company; the absorbed one has a tag, a contact, and a phone confirmed last."""
    absorbed = await register(
        client, headers, company_body(name="(株)ABC商事", phone="03-3333-4444", email="info@abc-shoji.example.co.jp")
    )
    survivor_body = company_body()
    del survivor_body["email"]
    survivor = await register(client, headers, survivor_body)
    for customer_id, path, body in [
        (absorbed, "phone", {"phone": "03-5555-6666"}),
        (absorbed, "tags", {"add": ["展示会2024"]}),
        (survivor, "tags", {"add": ["重点顧客"]}),
    ]:
        response = await client.post(f"/customers/{customer_id}/{path}", json=body, headers=headers)
        assert response.status_code == 200, response.text
    await add_contact(client, headers, absorbed, name="高橋 美咲")
    return survivor, absorbed


async def test_a_merge_answers_200_and_writes_customers_merged_and_customer_merged_into(
    client: httpx.AsyncClient, sales: dict[str, str], event_store: PostgresEventStore
) -> None:
    survivor, absorbed = await duplicates(client, sales)

    response = await client.post(f"/customers/{survivor}/merge", json={"absorbed_id": absorbed}, headers=sales)

    assert response.status_code == 200, response.text
    assert response.json() == {"id": survivor, "version": 3}
    assert response.headers["ETag"] == '"3"'
    assert (await stream_types(event_store, survivor))[-1] == "contacts.CustomersMerged"
    assert (await stream_types(event_store, absorbed))[-1] == "contacts.CustomerMergedInto"

    merged = await view(client, sales, survivor)
    assert merged["merged"] == [absorbed]
    assert merged["name"] == "株式会社ABC商事"  # registered later than the absorbed record
    assert merged["phone"] == "+81355556666"  # confirmed later on the absorbed record
    assert merged["email"] == "info@abc-shoji.example.co.jp"  # the survivor had none
    assert merged["tags"] == ["展示会2024", "重点顧客"]
    assert [c["name"] for c in merged["contacts"]] == ["高橋 美咲"]


async def test_the_merged_away_customer_answers_commands_with_409_naming_the_survivor_and_still_reads(
    client: httpx.AsyncClient, sales: dict[str, str], event_store: PostgresEventStore
) -> None:
    survivor, absorbed = await duplicates(client, sales)
    assert (await client.post(f"/customers/{survivor}/merge", json={"absorbed_id": absorbed}, headers=sales)).is_success
    written = await count_events(event_store)

    for path, body in [("phone", {"phone": "06-1234-5678"}), ("contacts", contact_body()), ("tags", {"add": ["x"]})]:
        response = await client.post(f"/customers/{absorbed}/{path}", json=body, headers=sales)
        assert response.status_code == 409, response.text
        assert response.headers["content-type"] == PROBLEM_JSON
        assert response.json()["survivor_id"] == survivor
    assert await count_events(event_store) == written

    response = await client.get(f"/customers/{absorbed}", headers=sales)
    assert response.status_code == 200
    assert response.json()["merged_into"] == survivor


async def test_unmerge_via_http_restores_both_customers_as_they_were(
    client: httpx.AsyncClient, sales: dict[str, str], event_store: PostgresEventStore
) -> None:
    survivor, absorbed = await duplicates(client, sales)
    before = {survivor: await view(client, sales, survivor), absorbed: await view(client, sales, absorbed)}
    assert (await client.post(f"/customers/{survivor}/merge", json={"absorbed_id": absorbed}, headers=sales)).is_success

    response = await client.post(f"/customers/{survivor}/unmerge", json={"absorbed_id": absorbed}, headers=sales)

    assert response.status_code == 200, response.text
    assert response.json() == {"id": survivor, "version": 4}
    assert (await stream_types(event_store, survivor))[-2:] == [
        "contacts.CustomersMerged",
        "contacts.CustomersUnmerged",
    ]
    assert (await stream_types(event_store, absorbed))[-1] == "contacts.CustomerUnmergedFrom"
    for customer_id, was in before.items():
        now = await view(client, sales, customer_id)
        assert {k: v for k, v in now.items() if k != "version"} == {k: v for k, v in was.items() if k != "version"}
    again = await client.post(f"/customers/{absorbed}/phone", json={"phone": "06-1234-5678"}, headers=sales)
    assert again.status_code == 200, again.text


async def test_unmerging_a_pair_that_is_not_merged_is_409_problem_json(
    client: httpx.AsyncClient, sales: dict[str, str], event_store: PostgresEventStore
) -> None:
    survivor, absorbed = await duplicates(client, sales)
    written = await count_events(event_store)
    response = await client.post(f"/customers/{survivor}/unmerge", json={"absorbed_id": absorbed}, headers=sales)
    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM_JSON
    assert await count_events(event_store) == written


async def test_a_retried_merge_with_the_same_idempotency_key_replays_and_merges_once(
    client: httpx.AsyncClient, sales: dict[str, str], event_store: PostgresEventStore
) -> None:
    survivor, absorbed = await duplicates(client, sales)
    headers = {**sales, "Idempotency-Key": "merge-abc"}

    first = await client.post(f"/customers/{survivor}/merge", json={"absorbed_id": absorbed}, headers=headers)
    again = await client.post(f"/customers/{survivor}/merge", json={"absorbed_id": absorbed}, headers=headers)

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (await stream_types(event_store, survivor)).count("contacts.CustomersMerged") == 1
    assert (await stream_types(event_store, absorbed)).count("contacts.CustomerMergedInto") == 1


async def test_a_merge_with_a_stale_if_match_is_409_and_writes_nothing(
    client: httpx.AsyncClient, sales: dict[str, str], event_store: PostgresEventStore
) -> None:
    survivor, absorbed = await duplicates(client, sales)
    written = await count_events(event_store)
    response = await client.post(
        f"/customers/{survivor}/merge", json={"absorbed_id": absorbed}, headers={**sales, "If-Match": '"1"'}
    )
    assert response.status_code == 409
    assert response.json()["current_version"] == 2
    assert await count_events(event_store) == written


@pytest.mark.parametrize("case", ["itself", "person-into-company", "unknown-field"])
async def test_merges_that_cannot_be_are_422_naming_the_field_and_write_nothing(
    client: httpx.AsyncClient, sales: dict[str, str], event_store: PostgresEventStore, case: str
) -> None:
    survivor = await register(client, sales)
    other = await register(client, sales, person_body()) if case == "person-into-company" else survivor
    body: dict[str, Any] = {"absorbed_id": other}
    field = "absorbed_id"
    if case == "unknown-field":
        body = {"absorbed_id": await register(client, sales), "fields": {"tags": "absorbed"}}
        field = "fields.tags"
    written = await count_events(event_store)

    response = await client.post(f"/customers/{survivor}/merge", json=body, headers=sales)

    assert response.status_code == 422, response.text
    assert problem_fields(response) == [field]
    assert await count_events(event_store) == written


async def test_merging_an_unknown_customer_is_404(
    client: httpx.AsyncClient, sales: dict[str, str], event_store: PostgresEventStore
) -> None:
    survivor = await register(client, sales)
    response = await client.post(f"/customers/{survivor}/merge", json={"absorbed_id": str(new_id())}, headers=sales)
    assert response.status_code == 404
    assert await count_events(event_store) == 1
