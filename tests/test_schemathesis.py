"""Schemathesis against every service's OpenAPI (issue #8, API hygiene), in process on real PostgreSQL.

For contacts, deals, support and the query API, every documented operation gets requests generated
from its schema with a valid bearer token; each answer must not be a server error and must conform to
the document (status code declared, content type declared, body matching the declared schema).
Admin runs every operation with more examples (valid requests, then schema-violating ones), and
half the cases use ids of seeded records so they reach real state, not only 404s; sales, support,
accounting and auditor each run a shorter valid pass (mostly 403 problems, which must be documented
too). A separate test sends every non-probe operation without a token and wants 401. Set
CRM_SCHEMATHESIS_EXAMPLES (default 25) for a deeper run by hand.

The apps run in the session's event loop (their asyncpg pools live there); hypothesis runs in a worker
thread and hands each request to that loop, so generation and the app never share a loop by accident.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
import schemathesis
from crm_cli.testing import MASTER_KEY, TEST_PASSWORD, TEST_ROLE
from crm_contacts import database as contacts_database
from crm_contacts.app.customers import CustomerCommands
from crm_contacts.app.directory import CustomerDirectory
from crm_contacts.entrypoints.http import create_app as contacts_app
from crm_deals import database as deals_database
from crm_deals.app.commands import DealsCommands
from crm_deals.deadlines import PostgresDeadlines
from crm_deals.entrypoints.http import create_app as deals_app
from crm_deals.replica.project import CustomerReplicaProjection as DealsReplicaProjection
from crm_deals.replica.queries import ReplicaDirectory as DealsReplica
from crm_eventstore.customer_replica import CustomerRegistered as ReplicaCustomerRegistered
from crm_eventstore.keyring import Keyring
from crm_eventstore.provision import provision_event_store, provision_read_models
from crm_eventstore.store import PostgresEventStore, create_pool
from crm_http.auth import DevIssuer, TokenVerifier
from crm_projections.api import create_app as query_app
from crm_projections.customer360.queries import Customer360Queries
from crm_projections.read_models import READ_MODELS_DDL, READ_MODELS_GRANTS
from crm_projections.timeline.queries import TimelineQueries
from crm_schemas.registry import SERVICES
from crm_support import database as support_database
from crm_support.app.tickets import TicketCommands
from crm_support.entrypoints.http import create_app as support_app
from crm_support.replica.project import CustomerReplicaProjection as SupportReplicaProjection
from crm_support.replica.queries import ReplicaDirectory as SupportReplica
from crm_support.sla_clocks import PostgresSlaClocks
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
PROBES = {"/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"}
#: Examples per operation: every operation with admin, a shorter pass with each other role.
ADMIN_EXAMPLES = int(os.environ.get("CRM_SCHEMATHESIS_EXAMPLES", "25"))  # more for a deeper run by hand
ROLE_EXAMPLES = 5
OTHER_ROLES = ["sales", "support", "accounting", "auditor"]
SERVICE_NAMES = ["contacts", "deals", "support", "query"]
TICKET = {
    "kind": "inquiry",
    "channel": "email",
    "category": "delivery",
    "priority": "high",
    "subject": "納品",
    "content": "遅れている",
}


@dataclass
class Service:
    app: FastAPI
    client: httpx.AsyncClient
    #: Ids of records that exist, by path parameter name: half the generated cases use them.
    known: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> DevIssuer:
    return DevIssuer(tmp_path_factory.mktemp("idp"))


async def despite_concurrent_grants(provision: Callable[[], Awaitable[str]]) -> str:
    """Provision, trying again when another session on the same server granted at the same moment
    (PostgreSQL then fails one of the GRANTs with "tuple concurrently updated")."""
    for attempt in range(5):
        try:
            return await provision()
        except asyncpg.InternalServerError as error:
            if "concurrently" not in str(error) or attempt == 4:
                raise
    raise AssertionError("unreachable")


async def event_store_pool(pg_admin_url: str, name: str, ddl: str = "", grants: str = "") -> asyncpg.Pool:
    url = await despite_concurrent_grants(
        lambda: provision_event_store(
            pg_admin_url, f"crm_test_st_{name}_{secrets.token_hex(4)}", TEST_ROLE, TEST_PASSWORD, ddl, grants
        )
    )
    return await create_pool(url, min_size=1, max_size=8)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def services(pg_admin_url: str, keys_url: str, issuer: DevIssuer) -> AsyncIterator[dict[str, Service]]:
    """The four HTTP apps, wired as their bootstraps wire them, each on fresh databases."""
    pools = [await create_pool(keys_url, min_size=1, max_size=4)]
    keyring = Keyring(pools[0], MASTER_KEY)
    verifier = TokenVerifier(issuer.auth_settings())

    contacts_pool = await event_store_pool(pg_admin_url, "c", contacts_database.DDL, contacts_database.GRANTS)
    directory = CustomerDirectory(contacts_pool)
    contacts = contacts_app(
        CustomerCommands(PostgresEventStore(contacts_pool, "contacts", keyring), directory),
        verifier,
        directory=directory,
    )
    deals_pool = await event_store_pool(pg_admin_url, "d", deals_database.DDL, deals_database.GRANTS)
    deals = deals_app(
        DealsCommands(
            PostgresEventStore(deals_pool, "deals", keyring),
            customers=DealsReplica(deals_pool),
            deadlines=PostgresDeadlines(deals_pool),
        ),
        verifier,
    )
    support_pool = await event_store_pool(pg_admin_url, "s", support_database.DDL, support_database.GRANTS)
    support = support_app(
        TicketCommands(
            PostgresEventStore(support_pool, "support", keyring),
            customers=SupportReplica(support_pool),
            clocks=PostgresSlaClocks(support_pool),
        ),
        verifier,
    )
    read_url = await despite_concurrent_grants(
        lambda: provision_read_models(
            pg_admin_url,
            f"crm_test_st_rm_{secrets.token_hex(4)}",
            TEST_ROLE,
            TEST_PASSWORD,
            READ_MODELS_DDL,
            READ_MODELS_GRANTS,
        )
    )

    read_pool = await create_pool(read_url, min_size=1, max_size=8)
    query = query_app(verifier)
    query.state.timeline = TimelineQueries(read_pool, keyring)
    query.state.customer360 = Customer360Queries(read_pool, keyring)
    query.state.facts_pool = read_pool
    query.state.sources = {"contacts": contacts_pool, "deals": deals_pool, "support": support_pool}
    assert set(query.state.sources) == set(SERVICES)
    pools += [contacts_pool, deals_pool, support_pool, read_pool]

    apps = {"contacts": contacts, "deals": deals, "support": support, "query": query}
    clients = {
        name: httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}.test")
        for name, app in apps.items()
    }
    found = {name: Service(apps[name], clients[name]) for name in apps}
    admin = {"Authorization": f"Bearer {issuer.issue('admin.seed', 'admin', team='t-fuzz', department='d-fuzz')}"}
    await seed(found, admin, [(deals_pool, DealsReplicaProjection()), (support_pool, SupportReplicaProjection())])
    yield found
    for client in clients.values():
        await client.aclose()
    for pool in pools:
        await pool.close()


async def created(service: Service, path: str, body: dict[str, Any], headers: dict[str, str]) -> str:
    response = await service.client.post(path, json=body, headers=headers)
    assert response.status_code in (200, 201), f"{path}: {response.status_code} {response.text}"
    document = response.json()
    return str(
        document.get("id") or document.get("segment_id") or document[next(k for k in document if k.endswith("_id"))]
    )


async def seed(services: dict[str, Service], headers: dict[str, str], replicas: list[Any]) -> None:
    """One record of each kind, so generated requests reach existing records and not only 404s."""
    contacts, deals, support, query = (services[n] for n in SERVICE_NAMES)
    customer = await created(contacts, "/customers", {"kind": "company", "name": "株式会社ファズ"}, headers)
    person = str(uuid.uuid4())
    await created(contacts, f"/customers/{customer}/contacts", {"person_id": person, "name": "検証 太郎"}, headers)
    contacts.known = {"customer_id": customer, "person_id": person}
    # The other services get a customer of their own: fuzzing contacts erases its known customer.
    customer = await created(contacts, "/customers", {"kind": "company", "name": "株式会社ファズ販売"}, headers)
    for pool, projection in replicas:
        change = ReplicaCustomerRegistered(uuid.UUID(customer), "company", datetime.now(UTC))
        async with pool.acquire() as conn, conn.transaction():
            await projection.apply(conn, change)
    money = {"customer_id": customer, "currency": "JPY"}
    deals.known = {
        "customer_id": customer,
        "deal_id": await created(
            deals, "/deals", {**money, "title": "更改", "owner": "admin.seed", "amount": "1000"}, headers
        ),
        "contract_id": await created(
            deals,
            "/contracts",
            {
                **money,
                "title": "保守",
                "start_date": "2026-04-01",
                "end_date": "2027-03-31",
                "amount": "500",
                "billing_cycle": "monthly",
                "auto_renewal": False,
            },
            headers,
        ),
        "invoice_id": await created(
            deals,
            "/invoices",
            {**money, "issued_on": "2026-04-01", "due_date": "2026-04-30", "amount": "1100"},
            headers,
        ),
    }
    support.known = {
        "ticket_id": await created(
            support,
            "/tickets",
            {**TICKET, "customer_id": customer},
            headers,
        )
    }
    query.known = {
        "customer_id": customer,
        "segment_id": await created(query, "/segments", {"name": "fuzz"}, headers),
    }


def schema_of(service: Service) -> Any:
    schema = schemathesis.openapi.from_asgi("/openapi.json", service.app)
    # The token is the test's (valid, or absent in the 401 test), not generated: negative cases then
    # break only what the handlers validate.
    schema.config.generation.update(with_security_parameters=False)
    return schema


def operations(schema: Any) -> list[Any]:
    """The schema's operations but the probes; erasure last, so it does not shred the seeded customer early."""
    found = [result.ok() for result in schema.get_all_operations()]
    return sorted((op for op in found if op.path not in PROBES), key=lambda op: op.path.endswith("/erase"))


def httpx_kwargs(case: Any, headers: dict[str, str]) -> dict[str, Any]:
    """The case as arguments of httpx.AsyncClient.request (schemathesis serializes for `requests`)."""
    kwargs = case.as_transport_kwargs(base_url="", headers=headers)
    out: dict[str, Any] = {key: kwargs[key] for key in ("method", "url", "params") if kwargs.get(key)}
    # The caller's token, whatever the generated case did to the Authorization header.
    generated = {name: value for name, value in kwargs["headers"].items() if name.lower() != "authorization"}
    out["headers"] = {**generated, **headers}
    if "json" in kwargs:
        out["json"] = kwargs["json"]
    if kwargs.get("files"):
        out["files"] = [(clean(name), multipart_part(part)) for name, part in kwargs["files"]]
        if isinstance(kwargs.get("data"), dict):
            out["data"] = kwargs["data"]
    elif isinstance(kwargs.get("data"), dict):
        out["data"] = kwargs["data"]
    elif kwargs.get("data") is not None:
        data = kwargs["data"]
        out["content"] = data.encode() if isinstance(data, str) else data
    return out


def clean(text: str) -> str:
    """Text without lone surrogates (which JSON generation produces and HTTP cannot carry)."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def multipart_part(part: tuple[Any, ...]) -> tuple[Any, ...]:
    """A `requests` multipart part as httpx takes it: the content as bytes."""
    filename, content, *rest = part
    if not isinstance(content, bytes):
        content = clean(content if isinstance(content, str) else str(content)).encode()
    return (filename, content, *rest)


def fuzz(
    loop: asyncio.AbstractEventLoop, service: Service, token: str, examples: int, mode: GenerationMode
) -> tuple[list[str], Counter[str]]:
    """Run every operation's generated cases through the app (in `loop`).

    The failures found (one entry per operation) and how often each operation answered each status.
    """
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    seen = Counter[str]()

    async def request(case: Any) -> httpx.Response:
        response = await service.client.request(**httpx_kwargs(case, headers))
        await response.request.aread()  # multipart bodies stream; schemathesis reports the request body
        return response

    def send(case: Any) -> httpx.Response:
        return asyncio.run_coroutine_threadsafe(request(case), loop).result(timeout=60)

    for operation in operations(schema_of(service)):

        @given(case=operation.as_strategy(generation_mode=mode), existing=st.booleans())
        @settings(
            max_examples=examples,
            derandomize=True,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any, existing: bool) -> None:
            if existing and case.path_parameters and mode is GenerationMode.POSITIVE:
                for name in case.path_parameters:
                    if name in service.known:
                        case.path_parameters[name] = service.known[name]
            response = send(case)
            seen[f"{case.operation.method.upper()} {case.operation.path} {response.status_code}"] += 1
            assert response.status_code != 401, f"the valid token was refused: {response.text}"
            case.validate_response(response, checks=CHECKS, headers=headers)

        try:
            check()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # an operation without inputs has no invalid request
        except (Exception, BaseExceptionGroup) as error:
            failures.append(f"{operation.method.upper()} {operation.path}: {str(error)[:1500]}")
    return failures, seen


async def fuzz_as(
    service: Service, issuer: DevIssuer, role: str, examples: int, mode: GenerationMode = GenerationMode.POSITIVE
) -> tuple[list[str], Counter[str]]:
    """Fuzz in a worker thread while this loop serves the requests it hands over."""
    token = issuer.issue(f"{role}.fuzz", role, team="t-fuzz", department="d-fuzz")
    return await asyncio.to_thread(fuzz, asyncio.get_running_loop(), service, token, examples, mode)


@pytest.mark.parametrize("name", SERVICE_NAMES)
async def test_every_operation_conforms_to_its_openapi_as_admin(
    services: dict[str, Service], issuer: DevIssuer, name: str
) -> None:
    failures, seen = await fuzz_as(services[name], issuer, "admin", ADMIN_EXAMPLES)
    assert not failures, "\n\n".join(failures)
    print(name, sorted(seen.items()))
    # Not only 404s and 422s: some generated requests reached existing records and succeeded.
    assert any(key.rsplit(" ", 1)[1].startswith("2") for key in seen), seen


@pytest.mark.parametrize("name", SERVICE_NAMES)
async def test_invalid_requests_get_documented_answers_and_no_server_error_as_admin(
    services: dict[str, Service], issuer: DevIssuer, name: str
) -> None:
    """Requests that violate the schema (negative generation) get no 5xx, and what they get is documented.

    (schemathesis' negative_data_rejection is not used: query strings carry every type as text, so
    e.g. a number "violating" a string parameter is a valid string and rightly accepted.)
    """
    failures, _ = await fuzz_as(services[name], issuer, "admin", ADMIN_EXAMPLES, GenerationMode.NEGATIVE)
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("role", OTHER_ROLES)
@pytest.mark.parametrize("name", SERVICE_NAMES)
async def test_every_operation_conforms_to_its_openapi_for_other_roles(
    services: dict[str, Service], issuer: DevIssuer, name: str, role: str
) -> None:
    failures, _ = await fuzz_as(services[name], issuer, role, ROLE_EXAMPLES)
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("name", SERVICE_NAMES)
async def test_every_operation_but_the_probes_wants_a_token(services: dict[str, Service], name: str) -> None:
    service = services[name]
    paths = service.app.openapi()["paths"]
    answered = []
    for path, item in paths.items():
        if path in PROBES:
            continue
        concrete = path
        while "{" in concrete:
            start, end = concrete.index("{"), concrete.index("}")
            concrete = concrete[:start] + str(uuid.uuid4()) + concrete[end + 1 :]
        for method in item:
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            response = await service.client.request(method.upper(), concrete, json={})
            answered.append((method.upper(), path, response.status_code, response.headers.get("content-type")))
    assert answered
    wrong = [row for row in answered if row[2] != 401 or row[3] != "application/problem+json"]
    assert not wrong, wrong


async def test_a_record_of_an_erased_customer_is_gone_not_a_server_error(
    services: dict[str, Service], issuer: DevIssuer
) -> None:
    """After crypto-shredding, a ticket whose personal fields used the customer's key answers 410, not 500."""
    contacts, support = services["contacts"], services["support"]
    headers = {"Authorization": f"Bearer {issuer.issue('admin.erase', 'admin', team='t-fuzz')}"}
    customer = await created(contacts, "/customers", {"kind": "person", "name": "消去 花子"}, headers)
    pool = support.app.state.commands.store.pool
    async with pool.acquire() as conn, conn.transaction():
        change = ReplicaCustomerRegistered(uuid.UUID(customer), "person", datetime.now(UTC))
        await SupportReplicaProjection().apply(conn, change)
    ticket = await created(support, "/tickets", {**TICKET, "customer_id": customer}, headers)
    assert (await support.client.get(f"/tickets/{ticket}", headers=headers)).status_code == 200
    erased = await contacts.client.post(f"/customers/{customer}/erase", json={}, headers=headers)
    assert erased.status_code == 200, erased.text
    for response in (
        await support.client.get(f"/tickets/{ticket}", headers=headers),
        await support.client.post(f"/tickets/{ticket}/note", json={"content": "メモ"}, headers=headers),
    ):
        assert response.status_code == 410, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"].endswith("/customer-erased")


async def test_nul_characters_are_rejected_as_invalid_requests_before_they_reach_postgresql(
    services: dict[str, Service], issuer: DevIssuer
) -> None:
    headers = {"Authorization": f"Bearer {issuer.issue('admin.nul', 'admin', team='t-fuzz')}"}
    query, support = services["query"], services["support"]
    in_query = await query.client.get("/customers", params={"q": "a\x00b"}, headers=headers)
    in_body = await query.client.post(
        "/segments", content=b'{"name": "a\\u0000b"}', headers={**headers, "content-type": "application/json"}
    )
    for response, where in ((in_query, "query"), (in_body, "body")):
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["errors"][0]["in"] == where
    # An escaped backslash followed by "u0000" is no NUL: that name is fine.
    fine = await query.client.post(
        "/segments", content=b'{"name": "a\\\\u0000b"}', headers={**headers, "content-type": "application/json"}
    )
    assert fine.status_code == 201, fine.text
    assert fine.json()["name"] == "a\\u0000b"
    ticket = await support.client.get(f"/tickets/{support.known['ticket_id']}", headers=headers)
    assert ticket.status_code == 200, ticket.text


@pytest.mark.parametrize("name", SERVICE_NAMES)
async def test_errors_are_documented_as_problem_json(services: dict[str, Service], name: str) -> None:
    document = services[name].app.openapi()
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for item in document["paths"].values():
        for operation in item.values():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")) or status == "default":
                    assert set(response["content"]) == {"application/problem+json"}, (status, operation["operationId"])
            if operation.get("security"):
                assert {"401", "default"} <= set(operation["responses"])


async def test_a_csv_import_with_nul_characters_is_refused_not_a_server_error(
    services: dict[str, Service], issuer: DevIssuer
) -> None:
    headers = {"Authorization": f"Bearer {issuer.issue('admin.nul', 'admin', team='t-fuzz')}"}
    csv = "顧客コード,種別,会社名,業種,都道府県\nN\x00001,法人,株式会社\x00ヌル,卸売\x00業,東京都\n"
    response = await services["contacts"].client.post(
        "/imports", files={"file": ("nul.csv", csv.encode(), "text/csv")}, data={"kind": "company"}, headers=headers
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "file"
