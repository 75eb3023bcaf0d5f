"""Privacy on the query API through real PostgreSQL: disclosure export, 第三者提供記録, access audit."""

import secrets
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from crm_cli.testing import TEST_PASSWORD, TEST_ROLE, admin_url_for
from crm_eventstore.ids import new_id
from crm_eventstore.keyring import Keyring
from crm_eventstore.provision import provision_event_store, provision_read_models
from crm_eventstore.store import PostgresEventStore, create_pool
from crm_http.auth import DevIssuer, TokenVerifier
from crm_projections.api import create_app
from crm_projections.customer360.queries import Customer360Queries
from crm_projections.privacy.store import personal_fields_in_document
from crm_projections.read_models import READ_MODELS_DDL, READ_MODELS_GRANTS
from crm_projections.timeline.queries import TimelineQueries
from crm_schemas import contacts
from crm_schemas.registry import SERVICES

from .builders import deal_opened, project, record, registered, ticket_opened

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

CANARY = "プライバシー カナリア"
CANARY_EMAIL = "privacy.canary.5b1@example.jp"


@dataclass
class Api:
    client: httpx.AsyncClient
    issuer: DevIssuer
    stores: dict[str, PostgresEventStore]
    pool: asyncpg.Pool
    read_url: str
    admin_url: str
    offset: int = 0

    def headers(self, role: str, subject: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.issuer.issue(subject or f'who-{role}', role, team='east')}"}

    async def record(self, *events: Any) -> None:
        envelopes = []
        for event in events:
            envelopes += await record(self.stores[event.service], [event])
        await project(self.pool, envelopes, self.offset)
        self.offset += len(envelopes)


@pytest_asyncio.fixture(loop_scope="session")
async def api(pg_admin_url: str, keyring: Keyring) -> AsyncIterator[Api]:
    pools = []
    stores: dict[str, PostgresEventStore] = {}
    for service in SERVICES:
        url = await provision_event_store(
            pg_admin_url, f"crm_test_{service}_{secrets.token_hex(5)}", TEST_ROLE, TEST_PASSWORD
        )
        pool = await create_pool(url, min_size=1, max_size=5)
        pools.append(pool)
        stores[service] = PostgresEventStore(pool, service, keyring)
    read_url = await provision_read_models(
        pg_admin_url,
        f"crm_test_pv_{secrets.token_hex(5)}",
        TEST_ROLE,
        TEST_PASSWORD,
        READ_MODELS_DDL,
        READ_MODELS_GRANTS,
    )
    read_pool = await create_pool(read_url, min_size=1, max_size=5)
    issuer = DevIssuer(Path(tempfile.mkdtemp()) / "idp")
    app = create_app(TokenVerifier(issuer.auth_settings()))
    app.state.timeline = TimelineQueries(read_pool, keyring)
    app.state.customer360 = Customer360Queries(read_pool, keyring)
    app.state.sources = {service: store.pool for service, store in stores.items()}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://query.test") as client:
        yield Api(client, issuer, stores, read_pool, read_url, admin_url_for(read_url, pg_admin_url))
    await read_pool.close()
    for pool in pools:
        await pool.close()


def consent(cid: Any, when: datetime) -> contacts.ConsentGranted:
    return contacts.ConsentGranted(
        customer_id=cid, occurred_at=when, channel="email", purpose="newsletter", source="web"
    )


async def a_customer_in_three_services(api: Api) -> Any:
    cid = new_id()
    now = datetime.now(UTC) - timedelta(days=1)
    await api.record(
        registered(cid, name=CANARY, email=CANARY_EMAIL, when=now),
        consent(cid, now),
        ticket_opened(cid, subject="カナリアの問い合わせ", when=now),
        deal_opened(cid, when=now),
    )
    return cid


async def test_the_export_holds_the_profile_consents_and_every_services_events_decrypted(api: Api) -> None:
    cid = await a_customer_in_three_services(api)

    response = await api.client.get(f"/customers/{cid}/personal-data", headers=api.headers("auditor"))

    assert response.status_code == 200, response.text
    export = response.json()
    assert export["customer_id"] == str(cid)
    assert export["erased"] is False
    assert export["profile"]["name"]["value"] == CANARY
    assert export["profile"]["email"]["value"] == CANARY_EMAIL
    assert [(c["channel"], c["granted"]) for c in export["consents"]] == [("email", True)]
    assert {e["service"] for e in export["events"]} == {"contacts", "support", "deals"}
    [ticket] = [e for e in export["events"] if e["type"] == "support.TicketOpened"]
    assert ticket["readable"] is True
    assert ticket["data"]["subject"] == "カナリアの問い合わせ"
    assert "subject" in ticket["personal_fields"]
    assert all(len(e["hash"]) == 64 for e in export["events"])


async def test_after_crypto_shredding_the_export_still_answers_without_any_personal_value(
    api: Api, keyring: Keyring
) -> None:
    cid = await a_customer_in_three_services(api)
    await api.record(
        contacts.CustomerErased(customer_id=cid, occurred_at=datetime.now(UTC), basis="data_subject_request")
    )
    await keyring.destroy(cid)

    response = await api.client.get(f"/customers/{cid}/personal-data", headers=api.headers("admin"))

    assert response.status_code == 200, response.text
    export = response.json()
    assert export["erased"] is True
    assert export["profile"] == {}
    for canary in (CANARY, CANARY_EMAIL, "カナリアの問い合わせ", "enc:v1:"):
        assert canary not in response.text
    registered_event = next(e for e in export["events"] if e["type"] == "contacts.CustomerRegistered")
    assert registered_event["readable"] is False
    assert registered_event["data"]["kind"] == "company"
    assert "name" not in registered_event["data"]
    assert "name" in registered_event["personal_fields"]


@pytest.mark.parametrize("role", ["sales", "marketing", "support", "accounting", "manager", "integration"])
async def test_only_auditors_and_admins_export_personal_data(api: Api, role: str) -> None:
    cid = await a_customer_in_three_services(api)
    response = await api.client.get(f"/customers/{cid}/personal-data", headers=api.headers(role))
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"


async def test_exporting_a_customer_nothing_is_held_about_is_404(api: Api) -> None:
    response = await api.client.get(f"/customers/{new_id()}/personal-data", headers=api.headers("auditor"))
    assert response.status_code == 404


async def test_every_read_model_row_about_the_person_is_in_the_export_with_money_as_decimal_strings(api: Api) -> None:
    cid = await a_customer_in_three_services(api)
    admin = await asyncpg.connect(api.admin_url)
    try:
        await admin.execute(
            "CREATE TABLE IF NOT EXISTS privacy_test_facts (customer_id uuid, amount numeric(14, 2), note text);"
            f' GRANT SELECT ON privacy_test_facts TO "{TEST_ROLE}"'
        )
        await admin.execute("INSERT INTO privacy_test_facts VALUES ($1, 1234.50, 'x'), ($2, 1, 'other')", cid, new_id())
    finally:
        await admin.close()

    export = (await api.client.get(f"/customers/{cid}/personal-data", headers=api.headers("auditor"))).json()

    assert export["read_models"]["privacy_test_facts"] == [{"customer_id": str(cid), "amount": "1234.50", "note": "x"}]


async def test_a_third_party_provision_is_recorded_listed_for_auditors_and_disclosed_in_the_export(api: Api) -> None:
    cid = await a_customer_in_three_services(api)
    body = {
        "recipient": "株式会社パートナー",
        "recipient_address": "東京都港区1-1-1",
        "items": ["name", "email"],
        "purpose": "共同キャンペーン",
        "basis": "consent",
        "consent_reference": "web-form 2026-03",
        "channel": "segment_export",
    }
    created = await api.client.post(
        f"/customers/{cid}/third-party-provisions", json=body, headers=api.headers("marketing")
    )
    assert created.status_code == 201, created.text

    listed = await api.client.get(f"/customers/{cid}/third-party-provisions", headers=api.headers("auditor"))
    export = (await api.client.get(f"/customers/{cid}/personal-data", headers=api.headers("auditor"))).json()

    [item] = listed.json()["items"]
    assert item["provision_id"] == created.json()["provision_id"]
    assert (item["recipient"], item["items"], item["basis"]) == ("株式会社パートナー", ["email", "name"], "consent")
    assert item["recorded_by"]["subject"] == "who-marketing"
    assert export["third_party_provisions"] == listed.json()["items"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"items": []}, "items"),
        ({"basis": "because"}, "basis"),
        ({"provided_at": (datetime.now(UTC) + timedelta(days=1)).isoformat()}, "provided_at"),
        ({"extra": 1}, "extra"),
    ],
)
async def test_an_invalid_provision_record_is_422_naming_the_field(
    api: Api, change: dict[str, Any], field: str
) -> None:
    body = {"recipient": "相手先", "items": ["name"], "basis": "consent", **change}
    response = await api.client.post(
        f"/customers/{new_id()}/third-party-provisions", json=body, headers=api.headers("admin")
    )
    assert response.status_code == 422
    assert field in [e["field"] for e in response.json()["errors"]]


@pytest.mark.parametrize(
    ("role", "method"), [("sales", "post"), ("support", "post"), ("sales", "get"), ("marketing", "get")]
)
async def test_provision_records_are_written_and_read_only_by_their_roles(api: Api, role: str, method: str) -> None:
    body = {"recipient": "相手先", "items": ["name"], "basis": "consent"}
    path = f"/customers/{new_id()}/third-party-provisions"
    kwargs: dict[str, Any] = {"json": body} if method == "post" else {}
    response = await api.client.request(method.upper(), path, headers=api.headers(role), **kwargs)
    assert response.status_code == 403


async def test_a_timeline_read_is_in_the_access_log_with_the_personal_fields_it_returned(api: Api) -> None:
    cid = await a_customer_in_three_services(api)
    correlation = str(new_id())
    timeline = await api.client.get(
        f"/customers/{cid}/timeline", headers={**api.headers("sales", "sato"), "X-Correlation-ID": correlation}
    )
    assert timeline.status_code == 200, timeline.text

    audit = await api.client.get("/audit/access", params={"customer": str(cid)}, headers=api.headers("auditor"))

    assert audit.status_code == 200, audit.text
    [item] = audit.json()["items"]
    assert item["actor"]["subject"] == "sato"
    assert item["resource"] == "GET /customers/{customer_id}/timeline"
    assert {"name", "email", "subject"} <= set(item["fields"])
    assert item["correlation_id"] == correlation
    assert item["service"] == "projections"


async def test_the_export_itself_is_recorded_in_the_access_log_as_a_disclosure(api: Api) -> None:
    cid = await a_customer_in_three_services(api)
    await api.client.get(f"/customers/{cid}/personal-data", headers=api.headers("auditor", "dpo"))
    audit = (await api.client.get("/audit/access", params={"customer": str(cid)}, headers=api.headers("admin"))).json()
    [item] = audit["items"]
    assert (item["actor"]["subject"], item["purpose"]) == ("dpo", "disclosure")
    assert "name" in item["fields"]


async def test_an_integration_account_reading_personal_data_leaves_a_third_party_provision_record(api: Api) -> None:
    cid = await a_customer_in_three_services(api)
    read = await api.client.get(f"/customers/{cid}/timeline", headers=api.headers("integration", "erp-sync"))
    assert read.status_code == 200
    listed = (await api.client.get(f"/customers/{cid}/third-party-provisions", headers=api.headers("auditor"))).json()
    [item] = listed["items"]
    assert (item["recipient"], item["channel"]) == ("erp-sync", "integration_read")
    assert "name" in item["items"]


async def test_a_sales_read_of_the_timeline_leaves_no_provision_record(api: Api) -> None:
    cid = await a_customer_in_three_services(api)
    assert (await api.client.get(f"/customers/{cid}/timeline", headers=api.headers("sales"))).status_code == 200
    listed = (await api.client.get(f"/customers/{cid}/third-party-provisions", headers=api.headers("auditor"))).json()
    assert listed["items"] == []


async def test_a_customer_360_read_is_in_the_access_log_with_the_personal_fields_it_returned(api: Api) -> None:
    cid = await a_customer_in_three_services(api)
    read = await api.client.get(f"/customers/{cid}", headers=api.headers("support", "tanaka"))
    assert read.status_code == 200, read.text
    audit = (
        await api.client.get("/audit/access", params={"customer": str(cid)}, headers=api.headers("auditor"))
    ).json()
    [item] = audit["items"]
    assert (item["actor"]["subject"], item["resource"]) == ("tanaka", "GET /customers/{customer_id}")
    assert "name" in item["fields"]
    assert CANARY in read.text


async def test_personal_fields_are_found_at_any_depth_of_a_document() -> None:
    document = {"profile": {"name": "x", "email": None, "rank": "A"}, "tickets": [{"subject": "s"}], "kind": "person"}
    assert personal_fields_in_document(document) == ["name", "subject"]
