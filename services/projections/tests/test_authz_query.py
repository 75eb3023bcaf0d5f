"""The authorization policy on the query API's timeline and customer 360, role by role (issue 8, ADR 0011).

For every role (and sales both as the deal owner and as someone else) each cell asserts the status and
the exact set of fields returned: the 360's top-level, profile and metrics members, and the members and
data keys of a complaint entry and a payment entry of the timeline. The expected sets below are written
from policy.yaml by hand (resources `timeline` and `customer360`), not computed by crm_http.policy.
Real PostgreSQL, real event stores, real JWTs from a development issuer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest
import pytest_asyncio
from crm_cli.testing import MASTER_KEY
from crm_eventstore.ids import new_id
from crm_eventstore.keyring import Keyring
from crm_eventstore.store import create_pool
from crm_schemas import contacts, deals

from .builders import (
    T0,
    World,
    deal_opened,
    invoice_issued,
    open_world,
    order_placed,
    payment,
    registered,
    ticket_opened,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


@dataclass(frozen=True)
class Caller:
    """Who asks: a subject with a role (and team); `owner` when they own the customer's open deal."""

    label: str
    subject: str
    role: str
    team: str | None = None

    @property
    def owner(self) -> bool:
        return self.subject == DEAL_OWNER


DEAL_OWNER = "u-sales-1"
CALLERS = [
    Caller("sales-owner", DEAL_OWNER, "sales", "east"),
    Caller("sales-other", "u-sales-2", "sales", "west"),
    Caller("marketing", "mk.me", "marketing"),
    Caller("support", "sp.me", "support"),
    Caller("accounting", "ac.me", "accounting"),
    Caller("manager", "mg.me", "manager"),
    Caller("admin", "ad.me", "admin"),
    Caller("auditor", "au.me", "auditor"),
    Caller("integration", "erp", "integration"),
]

# --- what policy.yaml says, written out ------------------------------------------------------------

# customer360.read / timeline.read: every role. read_as_of and timeline.verify: these.
AS_OF_ROLES = {"manager", "admin", "auditor"}
VERIFY_ROLES = {"manager", "admin", "auditor"}
# customer360 open_deals / contracts / budgets (&deal_work_view).
DEAL_WORK_ROLES = {"sales", "accounting", "manager", "admin", "auditor", "integration"}
# &billing: metrics.outstanding_amount of the 360, data + summary of invoice/payment timeline entries.
BILLING_ROLES = {"accounting", "manager", "auditor"}  # and the owner
# &money_terms: profile.payment_terms.
MONEY_TERMS_ROLES = {"sales", "accounting", "manager", "admin", "auditor", "integration"}
# &personal_detail / &by_email / &by_phone / &by_post: everyone but marketing; marketing with consent.
CONTACT_ROLES = {"sales", "support", "accounting", "manager", "admin", "auditor", "integration"}
# &support_detail: data.content of ticket events.
COMPLAINT_DETAIL_ROLES = {"support", "manager", "auditor"}
# &audit_proof: prev_hash and hash of a timeline entry.
PROOF_ROLES = {"manager", "admin", "auditor"}

TOP_360 = {
    "customer_id",
    "merged_from",
    "merged_into",
    "kind",
    "registered_at",
    "erased",
    "profile",
    "contact_persons",
    "consent",
    "rank",
    "tags",
    "interests",
    "campaigns",
    "open_deals",
    "contracts",
    "open_tickets",
    "open_complaints",
    "budgets",
    "last_activity_at",
    "last_event_at",
    "event_count",
    "metrics",
    "as_of",
    "effective_at",
}
DEAL_WORK = {"open_deals", "contracts", "budgets"}
METRICS = {
    "currency",
    "reference_date",
    "cumulative_purchase_amount",
    "order_count",
    "average_order_amount",
    "average_unit_price",
    "last_12_months_amount",
    "fiscal_month",
    "fiscal_year_amounts",
    "purchase_frequency",
    "first_purchase_date",
    "last_purchase_date",
    "ltv",
    "outstanding_amount",
    "average_csat",
    "complaint_count",
}
PROFILE = {
    "name",
    "name_kana",
    "email",
    "phone",
    "address",
    "url",
    "corporate_number",
    "industry",
    "capital",
    "employee_count",
    "fiscal_month",
    "representative",
    "birth_date",
    "gender",
    "occupation",
    "external_id",
    "payment_terms",
}
ENTRY = {
    "event_id",
    "type",
    "schema_version",
    "service",
    "occurred_at",
    "recorded_at",
    "actor",
    "summary",
    "data",
    "stream_id",
    "version",
    "correlation_id",
    "prev_hash",
    "hash",
}
PROOF = {"prev_hash", "hash"}
COMPLAINT_DATA = {
    "ticket_id",
    "kind",
    "channel",
    "category",
    "priority",
    "subject",
    "content",
    "contact_person_id",
    "order_id",
    "product",
    "deal_id",
    "related_ticket_id",
    "sla_policy",
    "first_response_due_at",
    "resolution_due_at",
}
PAYMENT_DATA = {"payment_id", "invoice_id", "amount", "currency", "paid_on", "method", "outstanding_after"}


def sees_billing(caller: Caller) -> bool:
    return caller.role in BILLING_ROLES or caller.owner


def expected_360_top(caller: Caller) -> set[str]:
    return TOP_360 if caller.role in DEAL_WORK_ROLES else TOP_360 - DEAL_WORK


def expected_metrics(caller: Caller) -> set[str]:
    return METRICS if sees_billing(caller) else METRICS - {"outstanding_amount"}


def expected_profile(caller: Caller, consented: set[str]) -> set[str]:
    """Profile members; `consented` are the channels the customer granted marketing consent on."""
    hidden = set() if caller.role in MONEY_TERMS_ROLES else {"payment_terms"}
    if caller.role not in CONTACT_ROLES:
        by_channel = {"email": "email", "phone": "phone", "address": "post"}
        hidden |= {name for name, channel in by_channel.items() if channel not in consented}
        hidden |= set() if consented else {"birth_date", "gender"}
    return PROFILE - hidden


def expected_entry(caller: Caller, entry_type: str) -> tuple[set[str], set[str] | None]:
    """Members and data keys (None: no data) of a complaint or payment entry for the caller."""
    members = ENTRY if caller.role in PROOF_ROLES else ENTRY - PROOF
    if entry_type == "support.TicketOpened":
        data = COMPLAINT_DATA if caller.role in COMPLAINT_DETAIL_ROLES else COMPLAINT_DATA - {"content"}
        return members, data
    if sees_billing(caller):
        return members, PAYMENT_DATA
    return members - {"data", "summary"}, None


# --- the world: one customer with a deal, an order, an invoice, a payment and a complaint ----------


@dataclass(frozen=True)
class Scene:
    world: World
    customer_id: UUID  # consented to e-mail newsletters
    quiet_id: UUID  # no consent at all
    canary: str  # the complaint's content

    def headers(self, caller: Caller) -> dict[str, str]:
        assert self.world.issuer is not None
        token = self.world.issuer.issue(caller.subject, caller.role, team=caller.team)
        return {"Authorization": f"Bearer {token}"}

    async def get(self, caller: Caller, path: str, **params: Any) -> httpx.Response:
        return await self.world.client.get(path, params=params, headers=self.headers(caller))


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def scene(pg_admin_url: str, keys_url: str) -> AsyncIterator[Scene]:
    keys = await create_pool(keys_url, min_size=1, max_size=4)
    async with open_world(pg_admin_url, Keyring(keys, MASTER_KEY)) as world:
        cid, quiet = new_id(), new_id()
        canary = f"canary-{new_id()}"
        deal = deal_opened(cid, "1500000", "proposal")
        order = order_placed(cid, (datetime.now(UTC) - timedelta(days=20)).date(), [("100000", 2)]).model_copy(
            update={"deal_id": deal.deal_id}
        )
        invoice = invoice_issued(cid, "220000").model_copy(update={"order_id": order.order_id})
        complaint = ticket_opened(cid, "complaint", subject="納品遅延").model_copy(update={"content": canary})
        personal: dict[str, Any] = {"email": "info@abc.example", "phone": "03-1234-5678", "birth_date": "1980-01-02"}
        await world.record(
            [
                registered(cid, **personal, gender="female"),
                contacts.ConsentGranted(customer_id=cid, occurred_at=T0, channel="email", source="web"),
                contacts.PaymentTermsSet(customer_id=cid, occurred_at=T0, payment_terms="net30"),
                deal,
                order,
                invoice,
                payment(cid, "100000", invoice.invoice_id),
                complaint,
                deals.CustomerBudgetSet(customer_id=cid, occurred_at=T0, fiscal_year=2026, amount="5000000"),
                registered(quiet, "静かな会社", **personal),
            ]
        )
        yield Scene(world, cid, quiet, canary)
    await keys.close()


def _ids(callers: list[Caller]) -> list[str]:
    return [c.label for c in callers]


@pytest.mark.parametrize("caller", CALLERS, ids=_ids(CALLERS))
async def test_the_360_shows_each_role_exactly_the_fields_the_policy_gives_it(scene: Scene, caller: Caller) -> None:
    response = await scene.get(caller, f"/customers/{scene.customer_id}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == expected_360_top(caller)
    assert set(body["metrics"]) == expected_metrics(caller)
    assert set(body["profile"]) == expected_profile(caller, {"email"})
    assert body["metrics"]["order_count"] == 1
    assert body["metrics"]["complaint_count"] == 1
    if sees_billing(caller):
        assert body["metrics"]["outstanding_amount"] == "120000"


@pytest.mark.parametrize("caller", CALLERS, ids=_ids(CALLERS))
async def test_without_any_consent_marketing_sees_no_personal_contact_details(scene: Scene, caller: Caller) -> None:
    response = await scene.get(caller, f"/customers/{scene.quiet_id}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body["profile"]) == expected_profile(caller, set())
    if caller.role == "marketing":
        assert "info@abc.example" not in response.text
        assert "1980-01-02" not in response.text


@pytest.mark.parametrize("caller", CALLERS, ids=_ids(CALLERS))
async def test_the_360_at_a_point_in_time_needs_read_as_of(scene: Scene, caller: Caller) -> None:
    at = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    for params in ({"as_of": at}, {"effective_at": at}):
        response = await scene.get(caller, f"/customers/{scene.customer_id}", **params)
        if caller.role in AS_OF_ROLES:
            assert response.status_code == 200, response.text
            assert set(response.json()) == expected_360_top(caller)
            assert set(response.json()["metrics"]) == expected_metrics(caller)
        else:
            assert response.status_code == 403, response.text
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.json()["permission"] == "customer360.read_as_of"


@pytest.mark.parametrize("caller", CALLERS, ids=_ids(CALLERS))
async def test_timeline_entries_show_each_role_exactly_the_fields_the_policy_gives_it(
    scene: Scene, caller: Caller
) -> None:
    response = await scene.get(caller, f"/customers/{scene.customer_id}/timeline", limit=100)
    assert response.status_code == 200, response.text
    items = {item["type"]: item for item in response.json()["items"]}
    assert len(items) == 10 - 1  # every entry of the customer (the quiet one is another customer)
    for entry_type in ("support.TicketOpened", "deals.PaymentReceived"):
        members, data = expected_entry(caller, entry_type)
        assert set(items[entry_type]) == members, entry_type
        if data is not None:
            assert set(items[entry_type]["data"]) == data, entry_type
    if caller.role not in COMPLAINT_DETAIL_ROLES:
        assert scene.canary not in response.text
    # Marketing sees the consented e-mail, and birth date and gender (no channel: any marketing consent
    # shows them), but not the phone, which needs a consent on the phone channel.
    registration = items["contacts.CustomerRegistered"]["data"]
    if caller.role == "marketing":
        assert {"email", "birth_date", "gender"} <= set(registration)
        assert "phone" not in registration
    else:
        assert {"email", "phone", "birth_date", "gender"} <= set(registration)


@pytest.mark.parametrize("caller", CALLERS, ids=_ids(CALLERS))
async def test_free_text_on_the_timeline_matches_only_what_the_caller_may_see(scene: Scene, caller: Caller) -> None:
    response = await scene.get(caller, f"/customers/{scene.customer_id}/timeline", q=scene.canary)
    assert response.status_code == 200, response.text
    found = [item["type"] for item in response.json()["items"]]
    assert found == (["support.TicketOpened"] if caller.role in COMPLAINT_DETAIL_ROLES else [])


@pytest.mark.parametrize("caller", CALLERS, ids=_ids(CALLERS))
async def test_verifying_the_timeline_needs_timeline_verify(scene: Scene, caller: Caller) -> None:
    response = await scene.get(caller, f"/customers/{scene.customer_id}/timeline/verify")
    if caller.role in VERIFY_ROLES:
        assert response.status_code == 200, response.text
        assert response.json()["valid"] is True
    else:
        assert response.status_code == 403, response.text
        assert response.json()["permission"] == "timeline.verify"


async def test_an_unknown_customer_is_the_same_404_for_every_role(scene: Scene) -> None:
    unknown = new_id()
    for path in (f"/customers/{unknown}", f"/customers/{unknown}/timeline"):
        bodies = []
        for caller in CALLERS:
            response = await scene.get(caller, path)
            assert response.status_code == 404, (caller.label, response.text)
            bodies.append(response.json())
        assert all(body == bodies[0] for body in bodies)


async def test_the_access_log_records_only_the_personal_fields_the_caller_was_shown(scene: Scene) -> None:
    marketing = CALLERS[2]
    assert marketing.role == "marketing"
    await scene.get(marketing, f"/customers/{scene.customer_id}/timeline", limit=100)
    fields = await scene.world.read_pool.fetchval(
        "SELECT fields FROM access_log WHERE subject = $1 AND resource LIKE '%timeline' ORDER BY seq DESC LIMIT 1",
        marketing.subject,
    )
    assert fields is not None
    assert "content" not in fields
    assert "phone" not in fields
    assert "email" in fields
