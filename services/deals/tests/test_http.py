"""The deals HTTP API in-process: real PostgreSQL event store, replica and deadline tables, real signed JWTs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
import pytest_asyncio
from crm_deals.app.commands import DealsCommands
from crm_deals.deadlines import PostgresDeadlines
from crm_deals.entrypoints.http import create_app
from crm_deals.replica.queries import ReplicaDirectory
from crm_eventstore.ids import new_id
from crm_eventstore.store import PostgresEventStore
from crm_http.auth import DevIssuer, TokenVerifier
from crm_schemas.personal import is_ciphertext

from .builders import contract_body, deal_body, invoice_body, order_body
from .conftest import known_customer

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

PROBLEM_JSON = "application/problem+json"


@pytest.fixture
def issuer(tmp_path: Path) -> DevIssuer:
    return DevIssuer(tmp_path / "idp")


@pytest.fixture
def rep(issuer: DevIssuer) -> dict[str, str]:
    """Authorization header of a sales rep in Tokyo."""
    token = issuer.issue("tanaka.sales", "sales", team="sales-tokyo", department="営業部")
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def accountant(issuer: DevIssuer) -> dict[str, str]:
    """Authorization header of an accountant (経理): invoices, payments, budgets."""
    token = issuer.issue("sato.accounting", "accounting", team="accounting", department="経理部")
    return {"Authorization": f"Bearer {token}"}


def bearer(
    issuer: DevIssuer, subject: str, role: str, team: str | None, department: str | None = None
) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.issue(subject, role, team=team, department=department)}"}


@pytest_asyncio.fixture(loop_scope="session")
async def client(deals_store: PostgresEventStore, issuer: DevIssuer) -> AsyncIterator[httpx.AsyncClient]:
    pool = deals_store.pool
    commands = DealsCommands(deals_store, customers=ReplicaDirectory(pool), deadlines=PostgresDeadlines(pool))
    app = create_app(commands, TokenVerifier(issuer.auth_settings()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://deals.test") as http:
        yield http


@pytest_asyncio.fixture(loop_scope="session")
async def customer(deals_store: PostgresEventStore) -> UUID:
    """A customer the deals replica knows."""
    cid = new_id()
    await known_customer(deals_store.pool, cid)
    return cid


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def fields(response: httpx.Response) -> list[str]:
    return [error["field"] for error in problem(response, 422).get("errors", [])]


async def create(client: httpx.AsyncClient, headers: dict[str, str], path: str, body: dict[str, Any]) -> str:
    response = await client.post(path, json=body, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def types(store: PostgresEventStore, stream: str) -> list[str]:
    return [e.type.removeprefix("deals.") for e in await store.read_stream(stream)]


# --- deals -----------------------------------------------------------------------------------------


async def test_opening_a_deal_answers_201_with_id_version_location_and_etag(
    client: httpx.AsyncClient, rep: dict[str, str], customer: UUID, deals_store: PostgresEventStore
) -> None:
    response = await client.post("/deals", json=deal_body(customer), headers=rep)

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["version"] == 1
    assert response.headers["Location"] == f"/deals/{body['id']}"
    assert response.headers["ETag"] == '"1"'
    [envelope] = await deals_store.read_stream(f"deal-{body['id']}")
    assert (envelope.type, envelope.customer_id, envelope.actor.subject) == (
        "deals.DealOpened",
        customer,
        "tanaka.sales",
    )
    assert envelope.payload["amount"] == "12000000"


async def test_a_deal_moves_through_the_pipeline_is_won_and_reads_back(
    client: httpx.AsyncClient, rep: dict[str, str], customer: UUID, deals_store: PostgresEventStore
) -> None:
    did = await create(client, rep, "/deals", deal_body(customer))
    for stage in ("qualified", "proposal", "negotiation"):
        response = await client.post(f"/deals/{did}/stage", json={"stage": stage}, headers=rep)
        assert response.status_code == 200, response.text
    won = await client.post(f"/deals/{did}/won", json={"amount": "11500000"}, headers=rep)
    assert won.json() == {"id": did, "version": 5}

    read = await client.get(f"/deals/{did}", headers=rep)
    assert read.status_code == 200
    assert read.headers["ETag"] == '"5"'
    deal = read.json()
    assert (deal["status"], deal["stage"], deal["won_amount"], deal["amount"]) == ("won", "won", "11500000", "12000000")
    assert [m["stage"] for m in deal["moves"]] == ["lead", "qualified", "proposal", "negotiation", "won"]
    assert await types(deals_store, f"deal-{did}") == ["DealOpened", *["DealStageChanged"] * 3, "DealWon"]


async def test_winning_a_lost_deal_is_409_and_reopening_makes_it_winnable(
    client: httpx.AsyncClient, rep: dict[str, str], customer: UUID
) -> None:
    did = await create(client, rep, "/deals", deal_body(customer))
    lost = await client.post(f"/deals/{did}/lost", json={"reason": "予算凍結", "competitor": "B社"}, headers=rep)
    assert lost.status_code == 200, lost.text
    problem(await client.post(f"/deals/{did}/won", json={}, headers=rep), 409)
    assert (await client.post(f"/deals/{did}/reopen", headers=rep)).status_code == 200
    assert (await client.post(f"/deals/{did}/won", headers=rep)).status_code == 200


async def test_an_unknown_stage_is_422_naming_stage(
    client: httpx.AsyncClient, rep: dict[str, str], customer: UUID
) -> None:
    did = await create(client, rep, "/deals", deal_body(customer))
    assert fields(await client.post(f"/deals/{did}/stage", json={"stage": "closing"}, headers=rep)) == ["stage"]


async def test_revisions_next_action_and_a_handover_out_of_the_reps_team(
    client: httpx.AsyncClient, issuer: DevIssuer, rep: dict[str, str], customer: UUID
) -> None:
    did = await create(client, rep, "/deals", deal_body(customer))
    for path, body in (
        ("amount", {"amount": "15000000", "reason": "追加要件"}),
        ("close-date", {"expected_close_date": "2026-09-30"}),
    ):
        response = await client.post(f"/deals/{did}/{path}", json=body, headers=rep)
        assert response.status_code == 200, response.text
    action = await client.post(
        f"/deals/{did}/next-action", json={"action": "見積書送付", "due_on": "2026-04-07"}, headers=rep
    )
    assert action.status_code == 200, action.text
    action_id = action.json()["action_id"]
    assert (await client.get(f"/deals/{did}", headers=rep)).json()["next_action"]["action"] == "見積書送付"
    done = await client.post(f"/deals/{did}/next-action/{action_id}/done", headers=rep)
    assert done.json()["version"] == 5
    assert fields(await client.post(f"/deals/{did}/amount", json={"amount": "1", "currency": "USD"}, headers=rep)) == [
        "currency"
    ]
    problem(await client.post(f"/deals/{did}/owner", json={"owner": "suzuki.sales"}, headers=rep), 403)

    manager = bearer(issuer, "kimura.manager", "manager", "sales-mgmt", "営業部")
    handover = {"owner": "suzuki.sales", "team": "sales-osaka"}
    assert (await client.post(f"/deals/{did}/owner", json=handover, headers=manager)).status_code == 200
    deal = (await client.get(f"/deals/{did}", headers=manager)).json()
    assert (deal["amount"], deal["expected_close_date"], deal["owner"], deal["team"]) == (
        "15000000",
        "2026-09-30",
        "suzuki.sales",
        "sales-osaka",
    )
    assert deal["next_action"] is None
    assert [a["id"] for a in deal["actions_done"]] == [action_id]
    problem(await client.get(f"/deals/{did}", headers=rep), 404)  # now another team's deal


async def test_a_stale_if_match_is_409_with_the_current_version(
    client: httpx.AsyncClient, rep: dict[str, str], customer: UUID
) -> None:
    did = await create(client, rep, "/deals", deal_body(customer))
    ok = await client.post(f"/deals/{did}/stage", json={"stage": "qualified"}, headers={**rep, "If-Match": '"1"'})
    assert ok.status_code == 200
    stale = await client.post(f"/deals/{did}/stage", json={"stage": "proposal"}, headers={**rep, "If-Match": '"1"'})
    assert problem(stale, 409)["current_version"] == 2


async def test_an_idempotent_retry_replays_the_first_answer(
    client: httpx.AsyncClient, rep: dict[str, str], customer: UUID, deals_store: PostgresEventStore
) -> None:
    headers = {**rep, "Idempotency-Key": f"open-{new_id()}"}
    first = await client.post("/deals", json=deal_body(customer), headers=headers)
    again = await client.post("/deals", json=deal_body(customer), headers=headers)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(await deals_store.read_stream(f"deal-{first.json()['id']}")) == 1
    other = await client.post("/deals", json=deal_body(customer, title="別件"), headers=headers)
    assert fields(other) == ["Idempotency-Key"]


async def test_a_deal_for_an_unknown_customer_is_422_naming_customer_id(
    client: httpx.AsyncClient, rep: dict[str, str]
) -> None:
    assert fields(await client.post("/deals", json=deal_body(new_id()), headers=rep)) == ["customer_id"]


async def test_a_deal_for_a_merged_customer_is_422_pointing_at_the_survivor(
    client: httpx.AsyncClient, rep: dict[str, str], deals_store: PostgresEventStore
) -> None:
    absorbed, survivor = new_id(), new_id()
    await known_customer(deals_store.pool, survivor)
    await known_customer(deals_store.pool, absorbed, merged_into=survivor)
    body = problem(await client.post("/deals", json=deal_body(absorbed), headers=rep), 422)
    assert body["merged_into"] == str(survivor)
    assert body["survivor"] == f"/customers/{survivor}"
    assert [e["field"] for e in body["errors"]] == ["customer_id"]


async def test_an_unknown_contact_person_is_422(
    client: httpx.AsyncClient, rep: dict[str, str], deals_store: PostgresEventStore
) -> None:
    cid, person = new_id(), new_id()
    await known_customer(deals_store.pool, cid, (person,))
    ok = await client.post("/deals", json=deal_body(cid, contact_person_id=str(person)), headers=rep)
    assert ok.status_code == 201
    stranger = await client.post("/deals", json=deal_body(cid, contact_person_id=str(new_id())), headers=rep)
    assert fields(stranger) == ["contact_person_id"]


async def test_money_as_a_json_float_is_refused(client: httpx.AsyncClient, rep: dict[str, str], customer: UUID) -> None:
    assert fields(await client.post("/deals", json=deal_body(customer, amount=1200.5), headers=rep)) == ["amount"]


async def test_commands_on_a_deal_that_does_not_exist_are_404(client: httpx.AsyncClient, rep: dict[str, str]) -> None:
    problem(await client.post(f"/deals/{new_id()}/stage", json={"stage": "qualified"}, headers=rep), 404)
    problem(await client.get(f"/deals/{new_id()}", headers=rep), 404)


async def test_every_endpoint_needs_a_token(client: httpx.AsyncClient, customer: UUID) -> None:
    problem(await client.post("/deals", json=deal_body(customer)), 401)
    problem(await client.get(f"/orders/{new_id()}"), 401)


# --- activities --------------------------------------------------------------------------------------


async def test_an_activity_is_stored_with_its_personal_text_encrypted_and_reads_back_decrypted(
    client: httpx.AsyncClient, rep: dict[str, str], customer: UUID, deals_store: PostgresEventStore
) -> None:
    body = {
        "customer_id": str(customer),
        "kind": "visit",
        "subject": "定例訪問",
        "content": "山田部長と来期予算の相談",
        "participants": ["山田部長"],
    }
    aid = await create(client, rep, "/activities", body)
    [envelope] = await deals_store.read_stream(f"activity-{aid}")
    assert is_ciphertext(envelope.payload["content"])
    assert is_ciphertext(envelope.payload["subject"])
    read = await client.get(f"/activities/{aid}", headers=rep)
    assert read.status_code == 200
    assert (read.json()["content"], read.json()["staff"]) == ("山田部長と来期予算の相談", "tanaka.sales")


async def test_an_activity_on_a_deal_takes_the_deals_customer(
    client: httpx.AsyncClient, rep: dict[str, str], customer: UUID
) -> None:
    did = await create(client, rep, "/deals", deal_body(customer))
    response = await client.post(f"/deals/{did}/activities", json={"kind": "call", "subject": "電話"}, headers=rep)
    assert response.status_code == 201, response.text
    assert response.headers["Location"] == f"/activities/{response.json()['id']}"
    activity = (await client.get(f"/activities/{response.json()['id']}", headers=rep)).json()
    assert (activity["customer_id"], activity["deal_id"]) == (str(customer), did)
    unknown = await client.post(f"/deals/{new_id()}/activities", json={"kind": "call", "subject": "x"}, headers=rep)
    assert fields(unknown) == ["deal_id"]


# --- orders ----------------------------------------------------------------------------------------


async def test_an_order_with_the_contract_body_is_placed_and_reads_back_with_tax(
    client: httpx.AsyncClient, rep: dict[str, str], customer: UUID
) -> None:
    oid = await create(client, rep, "/orders", order_body(customer))
    read = await client.get(f"/orders/{oid}", headers=rep)
    order = read.json()
    assert (order["total"], order["tax_total"], order["total_with_tax"], order["revenue"]) == (
        "318000",
        "31800",
        "349800",
        "318000",
    )
    assert [(li["line_amount"], li["tax_amount"]) for li in order["lines"]] == [("308000", "30800"), ("10000", "1000")]


async def test_an_order_whose_total_differs_from_its_lines_is_422_naming_total(
    client: httpx.AsyncClient, rep: dict[str, str], customer: UUID
) -> None:
    assert fields(await client.post("/orders", json=order_body(customer, total="318001"), headers=rep)) == ["total"]


async def test_a_line_with_a_float_price_is_422_naming_the_line(
    client: httpx.AsyncClient, rep: dict[str, str], customer: UUID
) -> None:
    body = order_body(customer)
    body["lines"][1]["unit_price"] = 2000.0
    assert fields(await client.post("/orders", json=body, headers=rep)) == ["lines.1.unit_price"]


async def test_an_order_is_delivered_returned_by_line_and_never_returned_beyond_what_remains(
    client: httpx.AsyncClient, rep: dict[str, str], customer: UUID, deals_store: PostgresEventStore
) -> None:
    oid = await create(client, rep, "/orders", order_body(customer))
    assert (
        await client.post(f"/orders/{oid}/deliver", json={"delivered_on": "2026-04-10"}, headers=rep)
    ).status_code == 200
    partial = {"lines": [{"line_no": 2, "quantity": 2}], "reason": "初期不良"}
    assert (await client.post(f"/orders/{oid}/return", json=partial, headers=rep)).status_code == 200
    too_many = {"lines": [{"line_no": 2, "quantity": 4}]}
    assert fields(await client.post(f"/orders/{oid}/return", json=too_many, headers=rep)) == ["lines.0.quantity"]
    problem(await client.post(f"/orders/{oid}/cancel", headers=rep), 409)
    assert (await client.post(f"/orders/{oid}/return", headers=rep)).status_code == 200
    order = (await client.get(f"/orders/{oid}", headers=rep)).json()
    assert (order["status"], order["revenue"]) == ("returned", "0")
    assert [li["remaining_quantity"] for li in order["lines"]] == [0, 0]
    assert await types(deals_store, f"order-{oid}") == [
        "OrderPlaced",
        "OrderDelivered",
        "OrderReturned",
        "OrderReturned",
    ]


async def test_an_undelivered_order_is_cancelled(
    client: httpx.AsyncClient, rep: dict[str, str], customer: UUID
) -> None:
    oid = await create(client, rep, "/orders", order_body(customer))
    assert (await client.post(f"/orders/{oid}/cancel", json={"reason": "先方都合"}, headers=rep)).status_code == 200
    problem(await client.post(f"/orders/{oid}/deliver", headers=rep), 409)


async def test_an_order_naming_another_customers_deal_is_422_naming_deal_id(
    client: httpx.AsyncClient, rep: dict[str, str], customer: UUID, deals_store: PostgresEventStore
) -> None:
    other = new_id()
    await known_customer(deals_store.pool, other)
    did = await create(client, rep, "/deals", deal_body(other))
    assert fields(await client.post("/orders", json=order_body(customer, deal_id=did), headers=rep)) == ["deal_id"]


# --- contracts -------------------------------------------------------------------------------------


async def test_a_contract_from_a_won_deal_is_renewed_amended_and_cancelled(
    client: httpx.AsyncClient, rep: dict[str, str], customer: UUID
) -> None:
    did = await create(client, rep, "/deals", deal_body(customer))
    assert fields(await client.post("/contracts", json=contract_body(customer, deal_id=did), headers=rep)) == [
        "deal_id"
    ]
    await client.post(f"/deals/{did}/won", headers=rep)
    cid = await create(client, rep, "/contracts", contract_body(customer, deal_id=did))
    steps = (
        ("renew", {"end_date": "2028-03-31", "amount": "55000"}),
        ("amend", {"reason": "サポート範囲拡大", "terms": "平日9-18時"}),
        ("cancel", {"reason": "事業撤退", "effective_on": "2027-09-30"}),
    )
    for path, body in steps:
        response = await client.post(f"/contracts/{cid}/{path}", json=body, headers=rep)
        assert response.status_code == 200, response.text
    contract = (await client.get(f"/contracts/{cid}", headers=rep)).json()
    assert (contract["status"], contract["end_date"], contract["amount"], contract["terms"]) == (
        "cancelled",
        "2028-03-31",
        "55000",
        "平日9-18時",
    )
    problem(await client.post(f"/contracts/{cid}/renew", json={"end_date": "2029-03-31"}, headers=rep), 409)


# --- invoices and payments ---------------------------------------------------------------------------


async def test_partial_payments_and_an_overpayment_is_422_naming_amount(
    client: httpx.AsyncClient, accountant: dict[str, str], customer: UUID
) -> None:
    iid = await create(client, accountant, "/invoices", invoice_body(customer))
    payment = {"customer_id": str(customer), "invoice_id": iid, "paid_on": "2026-04-01", "method": "bank_transfer"}
    first = await client.post("/payments", json={**payment, "amount": "60000"}, headers=accountant)
    assert first.status_code == 201, first.text
    assert (first.json()["invoice_id"], first.json()["version"]) == (iid, 2)
    over = await client.post("/payments", json={**payment, "amount": "50001"}, headers=accountant)
    body = problem(over, 422)
    assert [e["field"] for e in body["errors"]] == ["amount"]
    assert body["outstanding"] == "50000"
    invoice = (await client.get(f"/invoices/{iid}", headers=accountant)).json()
    assert (invoice["status"], invoice["paid"], invoice["outstanding"]) == ("issued", "60000", "50000")
    problem(await client.post(f"/invoices/{iid}/cancel", json={"reason": "誤発行"}, headers=accountant), 409)
    rest = await client.post("/payments", json={**payment, "amount": "50000"}, headers=accountant)
    assert rest.status_code == 201
    assert (await client.get(f"/invoices/{iid}", headers=accountant)).json()["status"] == "paid"


async def test_a_payment_to_an_unknown_invoice_is_422_and_one_without_an_invoice_is_unapplied(
    client: httpx.AsyncClient, accountant: dict[str, str], customer: UUID, deals_store: PostgresEventStore
) -> None:
    payment = {"customer_id": str(customer), "amount": "5000", "paid_on": "2026-04-01", "method": "cash"}
    assert fields(
        await client.post("/payments", json={**payment, "invoice_id": str(new_id())}, headers=accountant)
    ) == ["invoice_id"]
    unapplied = await client.post("/payments", json=payment, headers=accountant)
    assert unapplied.status_code == 201, unapplied.text
    [envelope] = await deals_store.read_stream(f"payment-{unapplied.json()['id']}")
    assert (envelope.type, envelope.payload["invoice_id"]) == ("deals.PaymentReceived", None)
    assert unapplied.headers["Location"] == f"/payments/{unapplied.json()['id']}"
    read = await client.get(unapplied.headers["Location"], headers=accountant)
    assert read.status_code == 200
    assert (read.json()["amount"], read.json()["method"], read.json()["customer_id"]) == ("5000", "cash", str(customer))
    problem(await client.get(f"/payments/{new_id()}", headers=accountant), 404)


async def test_an_unpaid_invoice_is_cancelled(
    client: httpx.AsyncClient, accountant: dict[str, str], customer: UUID
) -> None:
    iid = await create(client, accountant, "/invoices", invoice_body(customer))
    assert (
        await client.post(f"/invoices/{iid}/cancel", json={"reason": "誤発行"}, headers=accountant)
    ).status_code == 200
    assert (await client.get(f"/invoices/{iid}", headers=accountant)).json()["status"] == "cancelled"


# --- budgets and the contract ----------------------------------------------------------------------


async def test_budgets_per_fiscal_year(client: httpx.AsyncClient, accountant: dict[str, str], customer: UUID) -> None:
    for amount in ("5000000", "6000000"):
        response = await client.post(
            f"/customers/{customer}/budgets",
            json={"fiscal_year": 2026, "amount": amount, "currency": "JPY"},
            headers=accountant,
        )
        assert response.status_code == 200, response.text
    await client.post(
        f"/customers/{customer}/budgets", json={"fiscal_year": 2027, "amount": "7000000"}, headers=accountant
    )
    budgets = (await client.get(f"/customers/{customer}/budgets", headers=accountant)).json()
    assert budgets["budgets"] == [
        {"fiscal_year": 2026, "amount": "6000000", "currency": "JPY"},
        {"fiscal_year": 2027, "amount": "7000000", "currency": "JPY"},
    ]
    assert fields(
        await client.post(
            f"/customers/{new_id()}/budgets", json={"fiscal_year": 2026, "amount": "1"}, headers=accountant
        )
    ) == ["customer_id"]


async def test_openapi_lists_every_command_endpoint(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    expected = {
        "/deals",
        "/deals/{deal_id}",
        "/deals/{deal_id}/stage",
        "/deals/{deal_id}/won",
        "/deals/{deal_id}/lost",
        "/deals/{deal_id}/reopen",
        "/deals/{deal_id}/amount",
        "/deals/{deal_id}/close-date",
        "/deals/{deal_id}/owner",
        "/deals/{deal_id}/next-action",
        "/deals/{deal_id}/next-action/{action_id}/done",
        "/deals/{deal_id}/activities",
        "/activities",
        "/contracts",
        "/contracts/{contract_id}/renew",
        "/contracts/{contract_id}/amend",
        "/contracts/{contract_id}/cancel",
        "/orders",
        "/orders/{order_id}",
        "/orders/{order_id}/deliver",
        "/orders/{order_id}/cancel",
        "/orders/{order_id}/return",
        "/invoices",
        "/invoices/{invoice_id}/cancel",
        "/payments",
        "/customers/{customer_id}/budgets",
    }
    assert expected <= set(paths)
    line = (await client.get("/openapi.json")).json()["components"]["schemas"]["OrderLineInput"]
    assert line["properties"]["unit_price"]["type"] == "string"


# --- authorization (docs/adr/0011) ------------------------------------------------------------------


async def test_a_role_without_the_permission_gets_403_naming_it(
    client: httpx.AsyncClient, issuer: DevIssuer, rep: dict[str, str], customer: UUID
) -> None:
    marketing = bearer(issuer, "kato.marketing", "marketing", "mk")
    assert problem(await client.post("/deals", json=deal_body(customer), headers=marketing), 403)["permission"] == (
        "deal.open"
    )
    assert problem(await client.post("/invoices", json=invoice_body(customer), headers=rep), 403)["permission"] == (
        "invoice.issue"
    )


async def test_a_deal_outside_a_sales_reps_team_is_the_same_404_as_one_that_does_not_exist(
    client: httpx.AsyncClient, issuer: DevIssuer, rep: dict[str, str], customer: UUID
) -> None:
    did = await create(client, rep, "/deals", deal_body(customer))  # owner tanaka.sales, team sales-tokyo
    colleague = bearer(issuer, "ito.sales", "sales", "sales-tokyo")
    osaka = bearer(issuer, "yamada.sales", "sales", "sales-osaka")
    assert (await client.get(f"/deals/{did}", headers=colleague)).status_code == 200
    hidden = problem(await client.get(f"/deals/{did}", headers=osaka), 404)
    nowhere = str(new_id())
    missing = problem(await client.get(f"/deals/{nowhere}", headers=osaka), 404)
    assert hidden == {**missing, "detail": missing["detail"].replace(nowhere, did)}
    problem(await client.post(f"/deals/{did}/stage", json={"stage": "qualified"}, headers=osaka), 404)
    visit = {"kind": "visit", "subject": "訪問"}
    problem(await client.post(f"/deals/{did}/activities", json=visit, headers=osaka), 404)
    order = await client.post("/orders", json=order_body(customer, deal_id=did), headers=osaka)
    assert fields(order) == ["deal_id"]
    assert (await client.post(f"/deals/{did}/stage", json={"stage": "qualified"}, headers=colleague)).status_code == 200


async def test_a_sales_rep_opens_deals_for_their_team_only(
    client: httpx.AsyncClient, rep: dict[str, str], customer: UUID
) -> None:
    mine = await client.post("/deals", json=deal_body(customer), headers=rep)
    assert mine.status_code == 201
    deal = (await client.get(f"/deals/{mine.json()['id']}", headers=rep)).json()
    assert deal["team"] == "sales-tokyo"  # the opener's team when none is given
    elsewhere = deal_body(customer, owner="yamada.sales", team="sales-osaka")
    assert fields(await client.post("/deals", json=elsewhere, headers=rep)) == ["owner"]


async def test_invoices_are_seen_by_accounting_and_the_deal_owner_only(
    client: httpx.AsyncClient, issuer: DevIssuer, rep: dict[str, str], accountant: dict[str, str], customer: UUID
) -> None:
    did = await create(client, rep, "/deals", deal_body(customer))
    oid = await create(client, rep, "/orders", order_body(customer, deal_id=did))
    iid = await create(client, accountant, "/invoices", invoice_body(customer, order_id=oid))
    assert (await client.get(f"/invoices/{iid}", headers=accountant)).status_code == 200
    assert (await client.get(f"/invoices/{iid}", headers=rep)).status_code == 200  # owner of the deal
    colleague = bearer(issuer, "ito.sales", "sales", "sales-tokyo")
    problem(await client.get(f"/invoices/{iid}", headers=colleague), 404)
    support = bearer(issuer, "suzuki.support", "support", "cs")
    problem(await client.get(f"/invoices/{iid}", headers=support), 403)


async def test_openapi_names_each_endpoints_permission(client: httpx.AsyncClient) -> None:
    operation = (await client.get("/openapi.json")).json()["paths"]["/payments"]["post"]
    assert "payment.record" in operation["description"]
    assert "403" in operation["responses"]
