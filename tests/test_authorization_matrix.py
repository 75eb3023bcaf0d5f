"""The authorization matrix: every role × every endpoint of contacts and support × record relationship.

Each cell asserts the status (403 naming the permission, the uniform 404, or success) and, for reads,
the exact set of fields returned. The expectations are computed here from policy.yaml read as plain
data by this file's own small oracle, not by crm_http.policy; the apps run on real PostgreSQL.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import crm_http
import httpx
import pytest
import pytest_asyncio
import yaml
from crm_cli.testing import MASTER_KEY, TEST_PASSWORD, TEST_ROLE
from crm_contacts import database as contacts_database
from crm_contacts.app.customers import CustomerCommands
from crm_contacts.domain.commands import (
    AddContactPerson,
    MergeCustomer,
    RecordConsent,
    RegisterCustomer,
    SetPaymentTerms,
)
from crm_contacts.entrypoints.http import create_app as contacts_app
from crm_contacts.entrypoints.http import customer_view
from crm_eventstore.ids import new_id
from crm_eventstore.keyring import Keyring
from crm_eventstore.provision import provision_event_store
from crm_eventstore.store import CommandContext, PostgresEventStore, create_pool
from crm_http.auth import DevIssuer, TokenVerifier
from crm_schemas.envelope import ActorRef
from crm_support import database as support_database
from crm_support.app.tickets import TicketCommands
from crm_support.domain.commands import (
    AddNote,
    AssignTicket,
    OpenTicket,
    RecordSatisfaction,
    ReplyToCustomer,
    ResolveTicket,
)
from crm_support.entrypoints.http import create_app as support_app
from crm_support.entrypoints.http import ticket_view
from crm_support.replica.project import CustomerRegistered as ReplicaCustomerRegistered
from crm_support.replica.project import CustomerReplicaProjection
from crm_support.replica.queries import ReplicaDirectory
from crm_support.sla_clocks import PostgresSlaClocks
from fastapi import FastAPI

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

PROBLEM_JSON = "application/problem+json"
POLICY: dict[str, Any] = yaml.safe_load((Path(crm_http.__file__).parent / "policy.yaml").read_text(encoding="utf-8"))
ROLES: list[str] = list(POLICY["roles"])
PUBLIC_ROUTES = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")}

# The caller of every cell: "<role>.me" in team t-me of department d-me.
MY_TEAM, MY_DEPARTMENT = "t-me", "d-me"


def me(role: str) -> str:
    return f"{role}.me"


# --- the oracle: what policy.yaml says, read as plain data ---------------------------------------

REACHES = {
    "own": {"own"},
    "team": {"own", "team"},
    "department": {"own", "team", "department"},
    "any": {"own", "team", "department", "other"},
}


def expected_outcome(permission: str, role: str, related: str | None) -> int | str:
    """403, 404 or "ok" for a role using a permission on a record it has this relationship to."""
    resource, action = permission.split(".")
    scope = POLICY["resources"][resource]["permissions"][action].get(role)
    if scope is None:
        return 403
    if related is not None and related not in REACHES[scope]:
        return 404
    return "ok"


def consented(consents: Iterable[tuple[str, str]]) -> set[str]:
    """Channels with consent for a marketing purpose, of (channel, purpose) pairs granted."""
    return {channel for channel, purpose in consents if purpose in POLICY["marketing_purposes"]}


def denies(rule: Mapping[str, Any], role: str, related: str, channels: set[str], document: Mapping[str, Any]) -> bool:
    condition = rule.get("when", {})
    if any(key in document and str(document[key]) not in values for key, values in condition.items()):
        return False
    if role in rule.get("roles", []):
        return False
    if rule.get("owner") and related == "own":
        return False
    consent = rule.get("consent")
    return not (
        consent
        and role in consent["roles"]
        and (consent["channel"] in channels or (consent["channel"] == "any" and channels))
    )


def hidden_paths(resource: str, role: str, related: str, channels: set[str], document: Mapping[str, Any]) -> set[str]:
    fields = POLICY["resources"][resource].get("fields", {})
    return {
        path
        for path, rules in fields.items()
        if any(
            denies(rule, role, related, channels, document) for rule in (rules if isinstance(rules, list) else [rules])
        )
    }


def field_paths(document: Any, prefix: str = "") -> set[str]:
    """Every member path of a JSON document: "a", "a.b", "list[].b"."""
    found: set[str] = set()
    if isinstance(document, dict):
        for key, value in document.items():
            path = f"{prefix}{key}"
            found.add(path)
            if isinstance(value, dict):
                found |= field_paths(value, f"{path}.")
            elif isinstance(value, list):
                for item in value:
                    found |= field_paths(item, f"{path}[].")
    return found


def expected_fields(resource: str, role: str, related: str, channels: set[str], full: Mapping[str, Any]) -> set[str]:
    hidden = hidden_paths(resource, role, related, channels, full)
    return {
        path for path in field_paths(full) if not any(path == h or path.startswith((f"{h}.", f"{h}[]")) for h in hidden)
    }


# --- cells --------------------------------------------------------------------------------------


@dataclass
class Cell:
    """One request of the matrix and what the record behind it looks like unfiltered."""

    method: str
    path: str
    permission: str
    ok: int
    body: dict[str, Any] | None = None
    files: dict[str, Any] | None = None
    related: str | None = None
    missing_path: str | None = None  # the same request on a record that does not exist
    full: dict[str, Any] | None = None  # for reads: the unfiltered document
    channels: set[str] = field(default_factory=set)
    label: str = ""


def outcome_mismatches(cell: Cell, role: str, response: httpx.Response, missing: httpx.Response | None) -> list[str]:
    want = expected_outcome(cell.permission, role, cell.related)
    where = f"{role} {cell.method} {cell.label or cell.path} ({cell.related})"
    got = response.status_code
    if want == 403:
        if got != 403 or response.headers.get("content-type") != PROBLEM_JSON:
            return [f"{where}: want 403 problem, got {got} {response.text[:200]}"]
        if response.json().get("permission") != cell.permission:
            return [f"{where}: 403 names {response.json().get('permission')!r}, not {cell.permission!r}"]
        return []
    if want == 404:
        if got != 404:
            return [f"{where}: want uniform 404, got {got} {response.text[:200]}"]
        assert missing is not None
        assert cell.missing_path is not None
        record_id = cell.path.split("/")[2]
        missing_id = cell.missing_path.split("/")[2]
        if response.text.replace(record_id, "<id>") != missing.text.replace(missing_id, "<id>"):
            return [f"{where}: 404 body differs from a missing record's: {response.text} vs {missing.text}"]
        return []
    if got != cell.ok:
        return [f"{where}: want {cell.ok}, got {got} {response.text[:300]}"]
    if cell.full is not None:
        resource = cell.permission.split(".")[0]
        assert cell.related is not None
        want_fields = expected_fields(resource, role, cell.related, cell.channels, cell.full)
        got_fields = field_paths(response.json())
        if got_fields != want_fields:
            return [
                f"{where}: fields differ; unexpected {sorted(got_fields - want_fields)}, "
                f"missing {sorted(want_fields - got_fields)}"
            ]
        if any(
            value is None and path in hidden_paths(resource, role, cell.related, cell.channels, cell.full)
            for path, value in response.json().items()
        ):
            return [f"{where}: a hidden field is present as null"]
    return []


async def run_cell(client: httpx.AsyncClient, issuer: DevIssuer, role: str, cell: Cell) -> list[str]:
    headers = {"Authorization": f"Bearer {issuer.issue(me(role), role, team=MY_TEAM, department=MY_DEPARTMENT)}"}
    response = await client.request(cell.method, cell.path, json=cell.body, files=cell.files, headers=headers)
    missing = None
    if expected_outcome(cell.permission, role, cell.related) == 404 and cell.missing_path is not None:
        missing = await client.request(cell.method, cell.missing_path, json=cell.body, headers=headers)
    return outcome_mismatches(cell, role, response, missing)


def routes_of(app: FastAPI) -> set[tuple[str, str]]:
    """Every operation the app documents (routers included lazily are not in app.routes)."""
    return {(method.upper(), path) for path, item in app.openapi()["paths"].items() for method in item}


def owner_of(role: str, related: str) -> ActorRef:
    """The actor whose record has the given relationship to the caller of role ``role``."""
    match related:
        case "own":
            return ActorRef(subject=me(role), role=role, team="t-other", department="d-other")
        case "team":
            return ActorRef(subject="colleague", role=role, team=MY_TEAM, department="d-other")
        case "department":
            return ActorRef(subject="colleague", role=role, team="t-other", department=MY_DEPARTMENT)
        case _:
            return ActorRef(subject="stranger", role=role, team="t-other", department="d-other")


# --- shared infrastructure: one app per service for the whole module ----------------------------


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> DevIssuer:
    return DevIssuer(tmp_path_factory.mktemp("idp"))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def matrix_keyring(keys_url: str) -> AsyncIterator[Keyring]:
    pool = await create_pool(keys_url, min_size=1, max_size=4)
    yield Keyring(pool, MASTER_KEY)
    await pool.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def contacts(pg_admin_url: str, matrix_keyring: Keyring) -> AsyncIterator[CustomerCommands]:
    # Provisioned as `crm up` does: the event store plus the contacts service's own tables.
    url = await provision_event_store(
        pg_admin_url,
        f"crm_test_authz_c_{secrets.token_hex(4)}",
        TEST_ROLE,
        TEST_PASSWORD,
        contacts_database.DDL,
        contacts_database.GRANTS,
    )
    pool = await create_pool(url, min_size=2, max_size=10)
    yield CustomerCommands(PostgresEventStore(pool, "contacts", matrix_keyring))
    await pool.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def contacts_client(contacts: CustomerCommands, issuer: DevIssuer) -> AsyncIterator[httpx.AsyncClient]:
    app = contacts_app(contacts, TokenVerifier(issuer.auth_settings()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://contacts.test") as http:
        http.app = app  # type: ignore[attr-defined]
        yield http


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def support(pg_admin_url: str, matrix_keyring: Keyring) -> AsyncIterator[TicketCommands]:
    url = await provision_event_store(
        pg_admin_url,
        f"crm_test_authz_s_{secrets.token_hex(4)}",
        TEST_ROLE,
        TEST_PASSWORD,
        support_database.DDL,
        support_database.GRANTS,
    )
    pool = await create_pool(url, min_size=2, max_size=10)
    store = PostgresEventStore(pool, "support", matrix_keyring)
    yield TicketCommands(store, customers=ReplicaDirectory(pool), clocks=PostgresSlaClocks(pool))
    await pool.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def support_client(support: TicketCommands, issuer: DevIssuer) -> AsyncIterator[httpx.AsyncClient]:
    app = support_app(support, TokenVerifier(issuer.auth_settings()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://support.test") as http:
        http.app = app  # type: ignore[attr-defined]
        yield http


# --- contacts -----------------------------------------------------------------------------------

PERSON = {
    "kind": "person",
    "name": "佐藤 花子",
    "name_kana": "サトウ ハナコ",
    "birth_date": "1985-06-15",
    "gender": "female",
    "occupation": "会社員",
    "address": {"postal_code": "5300001", "prefecture": "大阪府", "city": "大阪市北区", "street": "梅田1-1-1"},
    "phone": "090-1234-5678",
    "email": "hanako.sato@example.com",
}
COMPANY = {
    "kind": "company",
    "name": "株式会社ABC商事",
    "name_kana": "カブシキガイシャエービーシーショウジ",
    "industry": "卸売業",
    "address": {"postal_code": "1000001", "prefecture": "東京都", "city": "千代田区", "street": "千代田1-1"},
    "phone": "03-1234-5678",
    "email": "desk@abc-shoji.example.co.jp",
    "url": "https://abc-shoji.example.co.jp/",
    "capital": "10000000",
    "employee_count": 120,
    "fiscal_month": 3,
    "representative": "山田 太郎",
}
#: Record variants of GET /customers/{id}: registration body and the marketing consents granted.
CUSTOMER_VARIANTS: dict[str, tuple[dict[str, Any], list[tuple[str, str]]]] = {
    "person without consent": (PERSON, []),
    "person with e-mail newsletter consent": (PERSON, [("email", "newsletter"), ("phone", "billing")]),
    "company with post consent and contact persons": (COMPANY, [("post", "campaign")]),
}


class ContactsBook:
    """Makes customers whose registering actor (their owner) has a given relationship to the caller."""

    def __init__(self, commands: CustomerCommands) -> None:
        self.commands = commands

    async def customer(self, owner: ActorRef, body: Mapping[str, Any] = PERSON) -> UUID:
        customer_id = new_id()
        await self.commands.execute(customer_id, RegisterCustomer.model_validate(body), CommandContext(actor=owner))
        return customer_id

    async def company_with_person(self, owner: ActorRef) -> tuple[UUID, UUID]:
        customer_id = await self.customer(owner, COMPANY)
        person_id = new_id()
        person = AddContactPerson(
            person_id=person_id,
            name="高橋 美咲",
            department="経理部",
            title="課長",
            email="m@example.jp",
            phone="0312345678",
        )
        await self.commands.execute(customer_id, person, CommandContext(actor=owner))
        return customer_id, person_id

    async def full(self, owner: ActorRef, variant: str) -> tuple[UUID, dict[str, Any], set[str]]:
        body, consents = CUSTOMER_VARIANTS[variant]
        ctx = CommandContext(actor=owner)
        if body["kind"] == "company":
            customer_id, _ = await self.company_with_person(owner)
            await self.commands.execute(customer_id, SetPaymentTerms(payment_terms="月末締め翌月末払い"), ctx)
        else:
            customer_id = await self.customer(owner, body)
        for channel, purpose in consents:
            consent = RecordConsent(channel=channel, granted=True, purpose=purpose, source="web-form")
            await self.commands.execute(customer_id, consent, ctx)
        full = customer_view(await self.commands.load(customer_id))
        return customer_id, full, consented(consents)


CustomerCellMaker = Callable[[ContactsBook, ActorRef], Awaitable[tuple[str, dict[str, Any] | None]]]


def on_customer(suffix: str, body: dict[str, Any]) -> CustomerCellMaker:
    async def make(book: ContactsBook, owner: ActorRef) -> tuple[str, dict[str, Any] | None]:
        return f"/customers/{await book.customer(owner)}/{suffix}", body

    return make


def on_company(suffix: str, body: dict[str, Any]) -> CustomerCellMaker:
    async def make(book: ContactsBook, owner: ActorRef) -> tuple[str, dict[str, Any] | None]:
        customer_id, _ = await book.company_with_person(owner)
        return f"/customers/{customer_id}/{suffix}", body

    return make


def on_person(suffix: str, body: dict[str, Any]) -> CustomerCellMaker:
    async def make(book: ContactsBook, owner: ActorRef) -> tuple[str, dict[str, Any] | None]:
        customer_id, person_id = await book.company_with_person(owner)
        return f"/customers/{customer_id}/contacts/{person_id}/{suffix}", body

    return make


async def merge_cell(book: ContactsBook, owner: ActorRef) -> tuple[str, dict[str, Any] | None]:
    survivor, _ = await book.company_with_person(owner)
    absorbed = await book.customer(owner_of("admin", "other"), {**COMPANY, "name": "ABC商事株式会社"})
    return f"/customers/{survivor}/merge", {"absorbed_id": str(absorbed)}


async def unmerge_cell(book: ContactsBook, owner: ActorRef) -> tuple[str, dict[str, Any] | None]:
    survivor, _ = await book.company_with_person(owner)
    absorbed = await book.customer(owner_of("admin", "other"), {**COMPANY, "name": "ABC商事株式会社"})
    await book.commands.merge(survivor, MergeCustomer(absorbed_id=absorbed), CommandContext(actor=owner))
    return f"/customers/{survivor}/unmerge", {"absorbed_id": str(absorbed)}


#: (method, route, permission, success status, how to make the record and body)
CONTACTS_RECORD_ENDPOINTS: list[tuple[str, str, str, int, CustomerCellMaker]] = [
    ("POST", "/customers/{customer_id}/rename", "customer.rename", 200, on_customer("rename", {"name": "佐藤 花"})),
    (
        "POST",
        "/customers/{customer_id}/address",
        "customer.change_address",
        200,
        on_customer("address", {"address": {"postal_code": "1000001", "prefecture": "東京都", "city": "千代田区"}}),
    ),
    (
        "POST",
        "/customers/{customer_id}/phone",
        "customer.change_phone",
        200,
        on_customer("phone", {"phone": "0312345679"}),
    ),
    (
        "POST",
        "/customers/{customer_id}/email",
        "customer.change_email",
        200,
        on_customer("email", {"email": "x@example.com"}),
    ),
    (
        "POST",
        "/customers/{customer_id}/profile",
        "customer.change_profile",
        200,
        on_customer("profile", {"occupation": "医師"}),
    ),
    ("POST", "/customers/{customer_id}/rank", "customer.change_rank", 200, on_customer("rank", {"rank": "A"})),
    ("POST", "/customers/{customer_id}/tags", "customer.change_tags", 200, on_customer("tags", {"add": ["vip"]})),
    (
        "POST",
        "/customers/{customer_id}/interests",
        "customer.change_interests",
        200,
        on_customer("interests", {"add": ["PC"]}),
    ),
    (
        "POST",
        "/customers/{customer_id}/campaigns",
        "customer.join_campaign",
        200,
        on_customer("campaigns", {"campaign": "春の新生活フェア"}),
    ),
    (
        "POST",
        "/customers/{customer_id}/consents",
        "customer.record_consent",
        200,
        on_customer("consents", {"channel": "email", "granted": True, "source": "web-form"}),
    ),
    (
        "POST",
        "/customers/{customer_id}/payment-terms",
        "customer.set_payment_terms",
        200,
        on_company("payment-terms", {"payment_terms": "月末締め翌月末払い"}),
    ),
    ("POST", "/customers/{customer_id}/merge", "customer.merge", 200, merge_cell),
    ("POST", "/customers/{customer_id}/unmerge", "customer.unmerge", 200, unmerge_cell),
    ("POST", "/customers/{customer_id}/erase", "personal_data.erase", 200, on_customer("erase", {})),
    (
        "POST",
        "/customers/{customer_id}/contacts",
        "contact_person.add",
        201,
        on_company("contacts", {"name": "鈴木 一郎", "email": "ichiro@example.jp"}),
    ),
    (
        "POST",
        "/customers/{customer_id}/contacts/{person_id}/title",
        "contact_person.change_title",
        200,
        on_person("title", {"title": "部長"}),
    ),
    (
        "POST",
        "/customers/{customer_id}/contacts/{person_id}/move",
        "contact_person.move",
        200,
        on_person("move", {"department": "総務部"}),
    ),
    (
        "POST",
        "/customers/{customer_id}/contacts/{person_id}/contact-details",
        "contact_person.change_details",
        200,
        on_person("contact-details", {"email": "new@example.jp"}),
    ),
    (
        "POST",
        "/customers/{customer_id}/contacts/{person_id}/decision-role",
        "contact_person.change_decision_role",
        200,
        on_person("decision-role", {"decision_role": "approver"}),
    ),
    (
        "POST",
        "/customers/{customer_id}/contacts/{person_id}/leave",
        "contact_person.leave",
        200,
        on_person("leave", {}),
    ),
]
IMPORT_CSV = "顧客コード,種別,会社名,都道府県\nC{n},法人,株式会社さくら物産{n},東京都\n"
CONTACTS_ROUTES = {(m, route) for m, route, *_ in CONTACTS_RECORD_ENDPOINTS} | {
    ("POST", "/customers"),
    ("GET", "/customers/{customer_id}"),
    ("GET", "/duplicates"),
    ("GET", "/audit/access"),
    ("POST", "/imports"),
}


def missing_twin(path: str) -> str:
    parts = path.split("/")
    parts[2] = str(new_id())
    return "/".join(parts)


async def contacts_cells(book: ContactsBook, role: str) -> list[Cell]:
    cells = [
        Cell("POST", "/customers", "customer.register", 201, body=PERSON),
        Cell("GET", "/duplicates", "customer.find_duplicates", 200),
        Cell("GET", f"/audit/access?customer={new_id()}", "audit.read_access_log", 200, label="/audit/access"),
        Cell(
            "POST",
            "/imports",
            "customer.import",
            200,
            files={"file": ("c.csv", IMPORT_CSV.format(n=secrets.token_hex(3)).encode(), "text/csv")},
        ),
    ]
    for related in ("own", "team", "department", "other"):
        owner = owner_of(role, related)
        for method, route, permission, ok, make in CONTACTS_RECORD_ENDPOINTS:
            path, body = await make(book, owner)
            cells.append(
                Cell(
                    method,
                    path,
                    permission,
                    ok,
                    body=body,
                    related=related,
                    missing_path=missing_twin(path),
                    label=route,
                )
            )
        for variant in CUSTOMER_VARIANTS:
            customer_id, full, channels = await book.full(owner, variant)
            path = f"/customers/{customer_id}"
            cells.append(
                Cell(
                    "GET",
                    path,
                    "customer.read",
                    200,
                    related=related,
                    missing_path=missing_twin(path),
                    full=full,
                    channels=channels,
                    label=f"/customers/{{id}} [{variant}]",
                )
            )
    return cells


async def test_the_contacts_matrix_covers_every_endpoint_of_the_app(contacts_client: httpx.AsyncClient) -> None:
    app: FastAPI = contacts_client.app  # type: ignore[attr-defined]
    assert routes_of(app) - PUBLIC_ROUTES == CONTACTS_ROUTES


@pytest.mark.parametrize("role", ROLES)
async def test_contacts_answers_every_role_as_the_policy_says(
    contacts: CustomerCommands, contacts_client: httpx.AsyncClient, issuer: DevIssuer, role: str
) -> None:
    cells = await contacts_cells(ContactsBook(contacts), role)
    mismatches = [m for cell in cells for m in await run_cell(contacts_client, issuer, role, cell)]
    assert mismatches == [], "\n".join(mismatches)
    assert len(cells) == 4 + 4 * (len(CONTACTS_RECORD_ENDPOINTS) + len(CUSTOMER_VARIANTS))


# --- support ------------------------------------------------------------------------------------

SUPPORT_RELATIONSHIPS = ("own", "team", "other")  # tickets carry an assignee and a team, no department


def assignment(role: str, related: str) -> AssignTicket:
    """The assignment that gives a ticket the relationship ``related`` to the caller of ``role``."""
    match related:
        case "own":
            return AssignTicket(assignee=me(role), team="t-other")
        case "team":
            return AssignTicket(assignee="colleague", team=MY_TEAM)
        case _:
            return AssignTicket(assignee="stranger", team="t-other")


DESK = CommandContext(actor=ActorRef(subject="desk", role="support", team="cs"))


class SupportBook:
    """Makes tickets, assigned so that they have a given relationship to the caller."""

    def __init__(self, commands: TicketCommands) -> None:
        self.commands = commands
        self.customer_id: UUID | None = None

    async def known_customer(self) -> UUID:
        if self.customer_id is None:
            self.customer_id = new_id()
            change = ReplicaCustomerRegistered(self.customer_id, "company", datetime.now(UTC))
            async with self.commands.store.pool.acquire() as conn, conn.transaction():
                await CustomerReplicaProjection().apply(conn, change)
        return self.customer_id

    def open_body(self, kind: str = "inquiry") -> dict[str, Any]:
        return {
            "customer_id": str(self.customer_id),
            "kind": kind,
            "channel": "email",
            "category": "delivery",
            "priority": "high",
            "subject": "納品遅延",
            "content": "注文した部品が1週間遅れている。",
        }

    async def ticket(self, assign: AssignTicket, kind: str = "inquiry", *, resolved: bool = False) -> UUID:
        await self.known_customer()
        ticket_id = new_id()
        await self.commands.open(ticket_id, OpenTicket.model_validate(self.open_body(kind)), DESK)
        await self.commands.execute(ticket_id, assign, DESK)
        if resolved:
            await self.commands.execute(ticket_id, self.resolution(kind), DESK)
        return ticket_id

    @staticmethod
    def resolution(kind: str) -> ResolveTicket:
        if kind == "complaint":
            return ResolveTicket(
                resolution="代替品を即日発送した。", root_cause="倉庫の出荷漏れ", prevention="出荷前チェックの二重化"
            )
        return ResolveTicket(resolution="納期を回答した。", root_cause="在庫切れ", prevention="在庫アラート")

    async def full(self, assign: AssignTicket, kind: str) -> tuple[UUID, dict[str, Any]]:
        ticket_id = await self.ticket(assign, kind)
        for command in (
            ReplyToCustomer(content="ご迷惑をおかけしております。"),
            AddNote(content="倉庫に確認中"),
            self.resolution(kind),
            RecordSatisfaction(score=2, comment="対応が遅い"),
        ):
            await self.commands.execute(ticket_id, command, DESK)
        return ticket_id, ticket_view(await self.commands.load(ticket_id))


#: (route suffix, permission, body, needs a resolved ticket)
TICKET_COMMANDS: list[tuple[str, str, dict[str, Any], bool]] = [
    ("assign", "ticket.assign", {"assignee": "tanaka"}, False),
    ("reply", "ticket.reply", {"content": "確認いたします。"}, False),
    ("note", "ticket.add_note", {"content": "メモ"}, False),
    ("escalate", "ticket.escalate", {"level": 1, "reason": "重要顧客"}, False),
    ("status", "ticket.change_status", {"status": "pending_customer"}, False),
    ("resolve", "ticket.resolve", {"resolution": "回答済み"}, False),
    ("reopen", "ticket.reopen", {}, True),
    ("close", "ticket.close", {}, True),
    ("satisfaction", "ticket.record_satisfaction", {"score": 5}, True),
    ("links", "ticket.link", {"order_id": "ORD-1"}, False),
]
SUPPORT_ROUTES = {("POST", f"/tickets/{{ticket_id}}/{suffix}") for suffix, *_ in TICKET_COMMANDS} | {
    ("POST", "/tickets"),
    ("GET", "/tickets/{ticket_id}"),
    ("GET", "/audit/access"),
}


async def support_cells(book: SupportBook, role: str) -> list[Cell]:
    await book.known_customer()
    cells = [
        Cell("POST", "/tickets", "ticket.open", 201, body=book.open_body("complaint")),
        Cell("GET", f"/audit/access?customer={new_id()}", "audit.read_access_log", 200, label="/audit/access"),
    ]
    for related in SUPPORT_RELATIONSHIPS:
        assign = assignment(role, related)
        for suffix, permission, body, resolved in TICKET_COMMANDS:
            ticket_id = await book.ticket(assign, resolved=resolved)
            path = f"/tickets/{ticket_id}/{suffix}"
            cells.append(
                Cell(
                    "POST",
                    path,
                    permission,
                    200,
                    body=body,
                    related=related,
                    missing_path=missing_twin(path),
                    label=f"/tickets/{{id}}/{suffix}",
                )
            )
        for kind in ("inquiry", "complaint"):
            ticket_id, full = await book.full(assign, kind)
            path = f"/tickets/{ticket_id}"
            cells.append(
                Cell(
                    "GET",
                    path,
                    "ticket.read",
                    200,
                    related=related,
                    missing_path=missing_twin(path),
                    full=full,
                    label=f"/tickets/{{id}} [{kind}]",
                )
            )
    return cells


async def test_the_support_matrix_covers_every_endpoint_of_the_app(support_client: httpx.AsyncClient) -> None:
    app: FastAPI = support_client.app  # type: ignore[attr-defined]
    assert routes_of(app) - PUBLIC_ROUTES == SUPPORT_ROUTES


@pytest.mark.parametrize("role", ROLES)
async def test_support_answers_every_role_as_the_policy_says(
    support: TicketCommands, support_client: httpx.AsyncClient, issuer: DevIssuer, role: str
) -> None:
    cells = await support_cells(SupportBook(support), role)
    mismatches = [m for cell in cells for m in await run_cell(support_client, issuer, role, cell)]
    assert mismatches == [], "\n".join(mismatches)
    assert len(cells) == 2 + 3 * (len(TICKET_COMMANDS) + 2)


# --- the oracle is not vacuous -----------------------------------------------------------------


async def test_the_matrix_expects_denials_hidden_fields_and_out_of_scope_records() -> None:
    """Guards against a policy (or oracle) under which every cell would trivially be 200 with everything."""
    assert expected_outcome("ticket.resolve", "marketing", "own") == 403
    assert expected_outcome("ticket.read", "sales", "team") == 404
    assert expected_outcome("ticket.read", "sales", "own") == "ok"
    complaint = {"kind": "complaint", "content": "x", "resolutions": [{"root_cause": "y"}]}
    assert hidden_paths("ticket", "sales", "own", set(), complaint) >= {"content", "resolutions[].root_cause"}
    assert "email" in hidden_paths("customer", "marketing", "other", set(), PERSON)
    assert "email" not in hidden_paths("customer", "marketing", "other", {"email"}, PERSON)
