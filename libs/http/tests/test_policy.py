from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
import yaml
from crm_http.auth import Actor, DevIssuer, TokenVerifier, actor_dependency
from crm_http.policy import (
    RESOURCES,
    ROLES,
    Grant,
    Ownership,
    Policy,
    default_policy,
    document_permissions,
    permission,
    relationship,
    scope_covers,
)
from crm_http.problems import PROBLEM_CONTENT_TYPE, install_problem_handlers
from fastapi import Depends, FastAPI
from pydantic import ValidationError

POLICY = default_policy()
#: Actions that only read; every permission of the auditor must be one of these.
QUERY_ACTIONS = frozenset({"read", "read_as_of", "read_access_log", "verify", "search", "export", "read_provisions"})


def actor(role: str, subject: str = "u1", team: str | None = "t1", department: str | None = "d1") -> Actor:
    return Actor(subject=subject, role=role, team=team, department=department)


def roles_with(name: str) -> set[str]:
    return {role for role in ROLES if POLICY.scope(role, name) is not None}


# --- the shipped policy says what the issue requires ---------------------------------------------


def test_the_shipped_policy_covers_every_role_and_resource() -> None:
    assert set(POLICY.document.roles) == set(ROLES)
    assert set(POLICY.document.resources) == set(RESOURCES)
    assert {p.split(".")[0] for p in POLICY.permissions} == set(RESOURCES)


def test_marketing_cannot_record_or_see_payments_and_support_cannot_change_deal_amounts() -> None:
    assert "marketing" not in roles_with("payment.record")
    assert "marketing" not in roles_with("payment.read")
    assert "support" not in roles_with("deal.revise_amount")
    assert "support" not in roles_with("deal.win")


def test_the_auditor_only_reads() -> None:
    granted = [p for p in POLICY.permissions if POLICY.scope("auditor", p) is not None]
    assert granted
    for name in granted:
        resource, action = name.split(".")
        assert action in QUERY_ACTIONS or resource == "pivot", name
    assert "auditor" in roles_with("audit.read_access_log")


def test_invoices_and_payments_are_read_by_accounting_managers_and_the_deal_owner_only() -> None:
    for name in ("invoice.read", "payment.read"):
        assert roles_with(name) == {"accounting", "manager", "sales", "auditor", "integration"}
        assert POLICY.scope("sales", name) == "own"
        assert POLICY.scope("manager", name) == "department"


def test_sales_share_deals_with_their_team_and_managers_with_their_department() -> None:
    assert POLICY.scope("sales", "deal.read") == "team"
    assert POLICY.scope("sales", "deal.change_stage") == "team"
    assert POLICY.scope("manager", "deal.read") == "department"


def test_complaint_details_and_root_causes_are_only_for_support_managers_and_auditors() -> None:
    complaint = {"kind": "complaint", "content": "壊れていた", "resolutions": [{"root_cause": "梱包", "number": 1}]}
    for role in ROLES:
        seen = POLICY.visible("ticket", complaint, actor(role))
        allowed = role in {"support", "manager", "auditor"}
        assert ("content" in seen) is allowed, role
        assert ("root_cause" in seen["resolutions"][0]) is allowed, role
        assert seen["resolutions"][0]["number"] == 1


def test_inquiry_content_is_seen_by_every_reader_but_root_causes_are_not() -> None:
    inquiry = {"kind": "inquiry", "content": "使い方", "resolutions": [{"root_cause": "説明不足"}]}
    seen = POLICY.visible("ticket", inquiry, actor("sales"))
    assert seen == {"kind": "inquiry", "content": "使い方", "resolutions": [{}]}


# --- record-level sharing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ownership", "expected"),
    [
        (Ownership(owner="u1", team="x", department="y"), "own"),
        (Ownership(owner="u2", team="t1", department="y"), "team"),
        (Ownership(owner="u2", team="x", department="d1"), "department"),
        (Ownership(owner="u2", team="x", department="y"), "other"),
        (Ownership(), "other"),
        (None, "other"),
    ],
)
def test_the_closest_relationship_wins(ownership: Ownership | None, expected: str) -> None:
    assert relationship(actor("sales"), ownership) == expected


def test_an_actor_without_a_team_is_not_in_the_team_of_a_record_without_one() -> None:
    loner = actor("sales", team=None, department=None)
    assert relationship(loner, Ownership(owner="someone")) == "other"


@pytest.mark.parametrize(
    ("scope", "reaches"),
    [
        ("own", {"own"}),
        ("team", {"own", "team"}),
        ("department", {"own", "team", "department"}),
        ("any", {"own", "team", "department", "other"}),
    ],
)
def test_each_scope_reaches_exactly_the_closer_relationships(scope: Any, reaches: set[str]) -> None:
    for related in ("own", "team", "department", "other"):
        assert scope_covers(scope, related) is (related in reaches)  # type: ignore[arg-type]


def test_a_sales_grant_covers_its_team_deals_and_not_other_teams() -> None:
    grant = POLICY.authorize(actor("sales"), "deal.read")
    assert grant.covers(Ownership(owner="u2", team="t1"))
    assert not grant.covers(Ownership(owner="u2", team="t2", department="d1"))
    assert POLICY.allows(actor("manager"), "deal.read", Ownership(owner="u9", team="t9", department="d1"))
    assert not POLICY.allows(actor("marketing"), "deal.read")


def test_an_unknown_role_has_no_permission() -> None:
    assert all(POLICY.scope("intern", name) is None for name in POLICY.permissions)


def test_an_unknown_permission_is_a_programming_error() -> None:
    with pytest.raises(KeyError):
        POLICY.scope("admin", "deal.teleport")


# --- field-level security ------------------------------------------------------------------------


CUSTOMER = {
    "kind": "person",
    "name": "佐藤 花子",
    "birth_date": "1985-06-15",
    "email": "hanako@example.com",
    "phone": "+819012345678",
    "address": {"prefecture": "大阪府"},
    "contacts": [{"name": "a", "email": "a@example.com", "phone": "1"}, {"name": "b", "email": None}],
    "consents": [],
}


def consent(channel: str, purpose: str = "newsletter", granted: bool = True) -> dict[str, Any]:
    return {"channel": channel, "purpose": purpose, "granted": granted, "source": "web", "at": "2025-04-01"}


def test_marketing_without_consent_sees_no_personal_contact_details_and_they_are_absent() -> None:
    seen = POLICY.visible("customer", CUSTOMER, actor("marketing"))
    assert set(seen) == {"kind", "name", "contacts", "consents"}
    assert seen["contacts"] == [{"name": "a"}, {"name": "b"}]
    assert CUSTOMER["contacts"][0]["email"] == "a@example.com"  # the input is not modified


def test_marketing_sees_the_channel_the_customer_consented_to_and_birth_date_with_any_consent() -> None:
    seen = POLICY.visible("customer", CUSTOMER, actor("marketing"), consents=[consent("email")])
    assert set(seen) == {"kind", "name", "contacts", "consents", "email", "birth_date"}
    assert seen["contacts"][0] == {"name": "a", "email": "a@example.com"}


def test_withdrawn_or_non_marketing_consent_does_not_count() -> None:
    consents = [consent("email", granted=False), consent("phone", purpose="billing")]
    assert POLICY.consented_channels(consents) == frozenset()
    seen = POLICY.visible("customer", CUSTOMER, actor("marketing"), consents=consents)
    assert "email" not in seen
    assert "phone" not in seen


def test_sales_see_every_field_of_a_customer() -> None:
    assert POLICY.visible("customer", CUSTOMER, actor("sales")) == CUSTOMER


def test_an_owner_only_field_is_seen_by_the_owner_whatever_the_role() -> None:
    deal = {"id": "d", "amount": "100", "payments": [{"amount": "100"}]}
    owned = Ownership(owner="u1", team="t1")
    assert "payments" in POLICY.visible("deal", deal, actor("sales"), ownership=owned)
    assert "payments" not in POLICY.visible("deal", deal, actor("sales", subject="u2"), ownership=owned)
    assert "payments" in POLICY.visible("deal", deal, actor("accounting", subject="u2"), ownership=owned)


def test_a_document_without_the_condition_field_gets_the_restriction() -> None:
    entry = {"data": {"amount": "100"}}
    assert POLICY.visible("timeline", entry, actor("sales")) == {}
    payment = {"type": "deals.PaymentReceived", "data": {"amount": "100"}}
    order = {"type": "deals.OrderPlaced", "data": {"total": "100"}}
    assert POLICY.visible("timeline", payment, actor("sales")) == {"type": "deals.PaymentReceived"}
    assert POLICY.visible("timeline", order, actor("sales")) == order


def test_a_restricted_list_field_inside_a_missing_or_odd_parent_is_ignored() -> None:
    assert POLICY.visible("ticket", {"kind": "complaint", "resolutions": None}, actor("support")) == {
        "kind": "complaint",
        "resolutions": None,
    }
    assert POLICY.visible("ticket", {"kind": "inquiry", "resolutions": ["x"]}, actor("sales")) == {
        "kind": "inquiry",
        "resolutions": ["x"],
    }


# --- the policy file is validated ----------------------------------------------------------------


def _shipped() -> dict[str, Any]:
    return yaml.safe_load(Path(__file__).parents[1].joinpath("src/crm_http/policy.yaml").read_text())


def _edit(path: list[str], value: Any) -> dict[str, Any]:
    data = _shipped()
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


@pytest.mark.parametrize(
    "data",
    [
        _edit(["resources", "deal", "permissions", "read", "intern"], "any"),
        _edit(["resources", "deal", "permissions", "read", "sales"], "region"),
        _edit(["resources", "deal", "permissions", "Read"], {"sales": "any"}),
        _edit(["resources", "ticket", "fields", "notes[]"], {"roles": ["support"]}),
        _edit(["resources", "ticket", "fields", "a..b"], {"roles": ["support"]}),
        _edit(["resources", "ticket", "fields", "notes"], {"roles": ["support"], "owners": True}),
        _edit(["resources", "ticket", "fields", "notes"], {"consent": {"roles": ["marketing"], "channel": "fax"}}),
        _edit(["resources", "teleport"], {"description": "", "permissions": {}}),
        _edit(["version"], 2),
    ],
)
def test_an_invalid_policy_is_refused(data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Policy.from_yaml(yaml.safe_dump(data))


def test_a_policy_missing_a_resource_is_refused() -> None:
    data = _shipped()
    del data["resources"]["pivot"]
    with pytest.raises(ValidationError, match="pivot"):
        Policy.from_yaml(yaml.safe_dump(data))


def test_the_shipped_file_round_trips_to_the_default_policy() -> None:
    assert Policy.from_yaml(yaml.safe_dump(_shipped())).document == POLICY.document


# --- the FastAPI dependency ----------------------------------------------------------------------


@pytest.fixture
def issuer(tmp_path: Path) -> DevIssuer:
    return DevIssuer(tmp_path / "idp")


@pytest.fixture
def client(issuer: DevIssuer) -> httpx.AsyncClient:
    app = FastAPI()
    install_problem_handlers(app)
    current_actor = actor_dependency(TokenVerifier(issuer.auth_settings()))

    @app.post("/payments")
    async def record_payment(
        grant: Annotated[Grant, Depends(permission(POLICY, current_actor, "payment.record"))],
    ) -> dict[str, str]:
        return {"subject": grant.actor.subject, "scope": grant.scope}

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://policy.test")


def bearer(issuer: DevIssuer, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.issue('someone', role)}"}


async def test_a_role_without_the_permission_gets_403_problem_json_naming_it(
    client: httpx.AsyncClient, issuer: DevIssuer
) -> None:
    response = await client.post("/payments", headers=bearer(issuer, "marketing"))
    assert response.status_code == 403
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    problem = response.json()
    assert problem["permission"] == "payment.record"
    assert "payment.record" in problem["detail"]
    assert problem["type"].endswith("/forbidden")


async def test_a_role_with_the_permission_gets_its_grant(client: httpx.AsyncClient, issuer: DevIssuer) -> None:
    response = await client.post("/payments", headers=bearer(issuer, "accounting"))
    assert response.status_code == 200
    assert response.json() == {"subject": "someone", "scope": "any"}


async def test_no_token_is_still_401_not_403(client: httpx.AsyncClient) -> None:
    response = await client.post("/payments")
    assert response.status_code == 401


def test_wiring_an_unknown_permission_fails_when_the_app_is_built(issuer: DevIssuer) -> None:
    current_actor = actor_dependency(TokenVerifier(issuer.auth_settings()))
    with pytest.raises(KeyError):
        permission(POLICY, current_actor, "payment.steal")


# --- read models ---------------------------------------------------------------------------------


def test_a_timeline_summary_hides_with_the_data_it_is_rendered_from() -> None:
    payment = {"type": "deals.PaymentReceived", "summary": "Payment received: 100 JPY", "data": {"amount": "100"}}
    resolved = {"type": "support.TicketResolved", "summary": "Resolved: 交換", "data": {"resolution": "交換"}}
    terms = {"type": "contacts.PaymentTermsSet", "summary": "Payment terms: 月末", "data": {"payment_terms": "月末"}}
    registered = {"type": "contacts.CustomerRegistered", "summary": "Customer registered", "data": {"name": "x"}}

    assert POLICY.visible("timeline", payment, actor("support")) == {"type": "deals.PaymentReceived"}
    assert POLICY.visible("timeline", payment, actor("accounting")) == payment
    assert POLICY.visible("timeline", resolved, actor("accounting")) == {"type": "support.TicketResolved", "data": {}}
    assert POLICY.visible("timeline", resolved, actor("support")) == resolved
    assert POLICY.visible("timeline", terms, actor("marketing")) == {"type": "contacts.PaymentTermsSet", "data": {}}
    assert POLICY.visible("timeline", terms, actor("sales")) == terms
    assert POLICY.visible("timeline", registered, actor("marketing")) == registered


def test_customer_360_hides_deal_work_from_marketing_and_outstanding_amounts_from_sales_who_own_no_deal() -> None:
    document = {
        "profile": {"name": "x", "email": "a@example.com", "payment_terms": "月末"},
        "contact_persons": [{"name": "p", "phone": "1"}],
        "open_deals": [{"amount": "100"}],
        "metrics": {"cumulative_purchase_amount": "500", "outstanding_amount": "100"},
    }
    seen = POLICY.visible("customer360", document, actor("marketing"))
    assert seen == {
        "profile": {"name": "x"},
        "contact_persons": [{"name": "p"}],
        "metrics": {"cumulative_purchase_amount": "500"},
    }
    assert "outstanding_amount" not in POLICY.visible("customer360", document, actor("sales"))["metrics"]
    owner = POLICY.visible("customer360", document, actor("sales"), ownership=Ownership(owner="u1"))
    assert owner["metrics"]["outstanding_amount"] == "100"


def test_a_field_with_an_empty_list_of_rules_is_refused() -> None:
    data = _edit(["resources", "ticket", "fields", "notes"], [])
    with pytest.raises(ValidationError, match="no rule"):
        Policy.from_yaml(yaml.safe_dump(data))


def test_the_openapi_names_each_endpoints_permission_who_holds_it_and_its_403(issuer: DevIssuer) -> None:
    app = FastAPI()
    current_actor = actor_dependency(TokenVerifier(issuer.auth_settings()))

    @app.post("/payments")
    async def record_payment(
        grant: Annotated[Grant, Depends(permission(POLICY, current_actor, "payment.record"))],
    ) -> dict[str, str]:
        """Record a payment."""
        return {}

    @app.get("/open")
    async def unguarded() -> dict[str, str]:
        return {}

    document_permissions(app, POLICY)
    operations = app.openapi()["paths"]

    payments = operations["/payments"]["post"]
    assert payments["description"].startswith("Record a payment.\n\nPermission `payment.record`: ")
    assert "accounting (any)" in payments["description"]
    assert "marketing" not in payments["description"]
    assert "application/problem+json" in payments["responses"]["403"]["content"]
    assert "403" not in operations["/open"]["get"]["responses"]
