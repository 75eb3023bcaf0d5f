"""Authorization in the contacts API: the policy's permissions, record scopes and field rules over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID

import crm_http
import httpx
import pytest
import pytest_asyncio
import yaml
from crm_contacts.app.customers import CustomerCommands
from crm_contacts.entrypoints.http import create_app
from crm_eventstore.ids import new_id
from crm_eventstore.store import PostgresEventStore
from crm_http.auth import DevIssuer, TokenVerifier
from crm_http.policy import Policy

from .builders import company_body, person_body

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

SHIPPED = yaml.safe_load((Path(crm_http.__file__).parent / "policy.yaml").read_text(encoding="utf-8"))


def narrowed_policy() -> Policy:
    """The shipped policy, except that sales read and rename only the customers their team registered."""
    data = SHIPPED | {"resources": dict(SHIPPED["resources"])}
    customer = dict(data["resources"]["customer"])
    customer["permissions"] = {**customer["permissions"]}
    customer["permissions"]["read"] = {**customer["permissions"]["read"], "sales": "team"}
    customer["permissions"]["rename"] = {**customer["permissions"]["rename"], "sales": "own"}
    data["resources"]["customer"] = customer
    return Policy.from_yaml(yaml.safe_dump(data, allow_unicode=True))


@pytest.fixture
def issuer(tmp_path: Path) -> DevIssuer:
    return DevIssuer(tmp_path / "idp")


def bearer(issuer: DevIssuer, subject: str, role: str, team: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.issue(subject, role, team=team, department='営業部')}"}


@pytest_asyncio.fixture(loop_scope="session")
async def client(event_store: PostgresEventStore, issuer: DevIssuer) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(CustomerCommands(event_store), TokenVerifier(issuer.auth_settings()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://contacts.test") as http:
        yield http


@pytest_asyncio.fixture(loop_scope="session")
async def narrowed(event_store: PostgresEventStore, issuer: DevIssuer) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(CustomerCommands(event_store), TokenVerifier(issuer.auth_settings()), policy=narrowed_policy())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://contacts.test") as http:
        yield http


async def register(client: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any]) -> UUID:
    response = await client.post("/customers", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return UUID(response.json()["id"])


async def test_marketing_may_not_set_payment_terms_and_the_403_names_the_permission(
    client: httpx.AsyncClient, issuer: DevIssuer, event_store: PostgresEventStore
) -> None:
    customer_id = await register(client, bearer(issuer, "sato", "sales"), company_body())

    response = await client.post(
        f"/customers/{customer_id}/payment-terms",
        json={"payment_terms": "月末締め翌月末払い"},
        headers=bearer(issuer, "mori", "marketing"),
    )

    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["permission"] == "customer.set_payment_terms"
    assert await event_store.pool.fetchval("SELECT count(*) FROM events") == 1


async def test_the_auditor_may_read_but_not_write(client: httpx.AsyncClient, issuer: DevIssuer) -> None:
    customer_id = await register(client, bearer(issuer, "sato", "sales"), person_body())
    auditor = bearer(issuer, "kansa", "auditor")

    assert (await client.get(f"/customers/{customer_id}", headers=auditor)).status_code == 200
    renamed = await client.post(f"/customers/{customer_id}/rename", json={"name": "x"}, headers=auditor)
    assert renamed.status_code == 403
    assert renamed.json()["permission"] == "customer.rename"


async def test_marketing_sees_personal_contact_details_only_on_channels_the_customer_consented_to(
    client: httpx.AsyncClient, issuer: DevIssuer
) -> None:
    sales = bearer(issuer, "sato", "sales")
    marketing = bearer(issuer, "mori", "marketing")
    customer_id = await register(client, sales, person_body())

    before = (await client.get(f"/customers/{customer_id}", headers=marketing)).json()
    consent = {"channel": "email", "granted": True, "purpose": "newsletter", "source": "web-form"}
    assert (await client.post(f"/customers/{customer_id}/consents", json=consent, headers=marketing)).status_code == 200
    after = (await client.get(f"/customers/{customer_id}", headers=marketing)).json()
    withdrawn = {**consent, "granted": False}
    assert (
        await client.post(f"/customers/{customer_id}/consents", json=withdrawn, headers=marketing)
    ).status_code == 200
    again = (await client.get(f"/customers/{customer_id}", headers=marketing)).json()
    by_sales = (await client.get(f"/customers/{customer_id}", headers=sales)).json()

    personal = {"email", "phone", "address", "birth_date", "gender"}
    assert personal <= set(by_sales)
    assert personal.isdisjoint(before)
    assert personal & set(after) == {"email", "birth_date", "gender"}
    assert after["email"] == by_sales["email"]
    assert personal.isdisjoint(again)
    assert before["name"] == by_sales["name"]


async def test_a_scope_narrowed_in_the_policy_hides_other_teams_customers_behind_the_missing_customer_404(
    narrowed: httpx.AsyncClient, issuer: DevIssuer
) -> None:
    mine = bearer(issuer, "sato", "sales", team="tokyo-1")
    colleague = bearer(issuer, "kato", "sales", team="tokyo-1")
    stranger = bearer(issuer, "ueda", "sales", team="osaka-1")
    customer_id = await register(narrowed, mine, company_body())
    missing_id = new_id()

    assert (await narrowed.get(f"/customers/{customer_id}", headers=colleague)).status_code == 200
    hidden = await narrowed.get(f"/customers/{customer_id}", headers=stranger)
    missing = await narrowed.get(f"/customers/{missing_id}", headers=stranger)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.text.replace(str(customer_id), "ID") == missing.text.replace(str(missing_id), "ID")
    assert "ABC" not in hidden.text

    # rename is "own" for sales in this policy: the colleague in the same team gets the 404 too
    rename = {"name": "株式会社XYZ"}
    refused = await narrowed.post(f"/customers/{customer_id}/rename", json=rename, headers=colleague)
    assert refused.status_code == 404
    assert (await narrowed.post(f"/customers/{customer_id}/rename", json=rename, headers=mine)).status_code == 200
