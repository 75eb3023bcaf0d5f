"""The support HTTP API in-process: real PostgreSQL event store and replica tables, real signed JWTs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
import pytest_asyncio
from crm_eventstore.ids import new_id
from crm_eventstore.store import PostgresEventStore
from crm_http.auth import DevIssuer, TokenVerifier
from crm_schemas.personal import is_ciphertext
from crm_schemas.support import TicketOpened
from crm_support.app.tickets import TicketCommands
from crm_support.entrypoints.http import create_app
from crm_support.replica.queries import ReplicaDirectory
from crm_support.sla_clocks import PostgresSlaClocks

from .builders import complaint_body, open_body
from .conftest import known_customer

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

PROBLEM_JSON = "application/problem+json"


@pytest.fixture
def issuer(tmp_path: Path) -> DevIssuer:
    return DevIssuer(tmp_path / "idp")


@pytest.fixture
def agent(issuer: DevIssuer) -> dict[str, str]:
    """Authorization header of a support agent in Tokyo."""
    token = issuer.issue("suzuki.support", "support", team="cs-tokyo", department="カスタマーサポート部")
    return {"Authorization": f"Bearer {token}"}


@pytest_asyncio.fixture(loop_scope="session")
async def client(support_store: PostgresEventStore, issuer: DevIssuer) -> AsyncIterator[httpx.AsyncClient]:
    pool = support_store.pool
    commands = TicketCommands(support_store, customers=ReplicaDirectory(pool), clocks=PostgresSlaClocks(pool))
    app = create_app(commands, TokenVerifier(issuer.auth_settings()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://support.test") as http:
        yield http


@pytest_asyncio.fixture(loop_scope="session")
async def customer(support_store: PostgresEventStore) -> UUID:
    """A customer support's replica knows."""
    cid = new_id()
    await known_customer(support_store.pool, cid)
    return cid


async def count_events(store: PostgresEventStore) -> int:
    return int(await store.pool.fetchval("SELECT count(*) FROM events"))


async def stream_types(store: PostgresEventStore, ticket_id: str) -> list[str]:
    return [e.type for e in await store.read_stream(f"ticket-{ticket_id}")]


def problem_fields(response: httpx.Response) -> list[str]:
    assert response.headers["content-type"] == PROBLEM_JSON
    problem: dict[str, Any] = response.json()
    assert problem["status"] == response.status_code
    return [error["field"] for error in problem.get("errors", [])]


async def open_ticket(client: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any]) -> str:
    response = await client.post("/tickets", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


# --- opening ----------------------------------------------------------------------------------


async def test_opening_a_ticket_answers_201_with_id_version_location_etag_and_sla_deadlines(
    client: httpx.AsyncClient, agent: dict[str, str], customer: UUID
) -> None:
    response = await client.post("/tickets", json=open_body(customer), headers=agent)

    assert response.status_code == 201, response.text
    body = response.json()
    ticket_id = UUID(body["id"])
    assert body["version"] == 1
    assert body["status"] == "new"
    first, resolution = (
        datetime.fromisoformat(body["first_response_due_at"]),
        datetime.fromisoformat(body["resolution_due_at"]),
    )
    assert first < resolution
    assert response.headers["Location"] == f"/tickets/{ticket_id}"
    assert response.headers["ETag"] == '"1"'


async def test_the_ticket_lands_in_the_store_attributed_to_the_token_with_its_text_encrypted(
    client: httpx.AsyncClient, agent: dict[str, str], customer: UUID, support_store: PostgresEventStore
) -> None:
    correlation = new_id()
    response = await client.post(
        "/tickets", json=complaint_body(customer), headers={**agent, "X-Correlation-ID": str(correlation)}
    )
    ticket_id = response.json()["id"]

    [envelope] = await support_store.read_stream(f"ticket-{ticket_id}")
    assert (envelope.type, envelope.service, envelope.customer_id) == ("support.TicketOpened", "support", customer)
    assert envelope.correlation_id == correlation
    assert (envelope.actor.subject, envelope.actor.role, envelope.actor.team) == (
        "suzuki.support",
        "support",
        "cs-tokyo",
    )
    assert is_ciphertext(envelope.payload["subject"])
    assert is_ciphertext(envelope.payload["content"])
    assert "納品" not in str(envelope.payload)
    assert envelope.payload["order_id"] == "ORD-2026-0042"  # not personal
    [event], _ = await support_store.load(f"ticket-{ticket_id}")
    assert isinstance(event, TicketOpened)
    assert event.subject == "納品遅延のクレーム"

    clock = await PostgresSlaClocks(support_store.pool).get(UUID(ticket_id))
    assert clock is not None
    assert set(clock.pending()) == {"first_response", "resolution"}


async def test_a_ticket_for_an_unknown_customer_is_422_naming_customer_id_and_writes_nothing(
    client: httpx.AsyncClient, agent: dict[str, str], support_store: PostgresEventStore
) -> None:
    before = await count_events(support_store)
    response = await client.post("/tickets", json=open_body(new_id()), headers=agent)
    assert response.status_code == 422
    assert problem_fields(response) == ["customer_id"]
    assert "not known to support" in response.json()["detail"]
    assert await count_events(support_store) == before


async def test_a_ticket_for_a_merged_away_customer_is_422_pointing_to_the_survivor(
    client: httpx.AsyncClient, agent: dict[str, str], support_store: PostgresEventStore
) -> None:
    absorbed, survivor = new_id(), new_id()
    await known_customer(support_store.pool, survivor)
    await known_customer(support_store.pool, absorbed, merged_into=survivor)

    response = await client.post("/tickets", json=open_body(absorbed), headers=agent)

    assert response.status_code == 422
    assert problem_fields(response) == ["customer_id"]
    problem = response.json()
    assert problem["type"].endswith("/customer-merged")
    assert problem["survivor_id"] == str(survivor)
    assert problem["survivor"] == f"/customers/{survivor}"
    assert (await client.post("/tickets", json=open_body(survivor), headers=agent)).status_code == 201


async def test_the_contact_person_must_be_an_active_person_of_the_customer(
    client: httpx.AsyncClient, agent: dict[str, str], support_store: PostgresEventStore
) -> None:
    cid, person = new_id(), new_id()
    await known_customer(support_store.pool, cid, persons=(person,))
    ok = await client.post("/tickets", json=open_body(cid, contact_person_id=str(person)), headers=agent)
    assert ok.status_code == 201, ok.text
    stranger = await client.post("/tickets", json=open_body(cid, contact_person_id=str(new_id())), headers=agent)
    assert stranger.status_code == 422
    assert problem_fields(stranger) == ["contact_person_id"]


async def test_a_recurrence_must_name_an_existing_ticket(
    client: httpx.AsyncClient, agent: dict[str, str], customer: UUID
) -> None:
    missing = await client.post("/tickets", json=open_body(customer, related_ticket_id=str(new_id())), headers=agent)
    assert missing.status_code == 422
    assert problem_fields(missing) == ["related_ticket_id"]
    earlier = await open_ticket(client, agent, open_body(customer))
    recurrence = await client.post("/tickets", json=open_body(customer, related_ticket_id=earlier), headers=agent)
    assert recurrence.status_code == 201
    view = (await client.get(f"/tickets/{recurrence.json()['id']}", headers=agent)).json()
    assert view["links"] == [{"type": "ticket", "id": earlier}]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"kind": "question"}, "kind"),
        ({"channel": "fax"}, "channel"),
        ({"priority": "asap"}, "priority"),
        ({"subject": ""}, "subject"),
        ({"mood": "angry"}, "mood"),
    ],
    ids=["kind", "channel", "priority", "empty-subject", "unknown-field"],
)
async def test_an_invalid_ticket_is_422_problem_json_naming_the_field(
    client: httpx.AsyncClient, agent: dict[str, str], customer: UUID, overrides: dict[str, Any], field: str
) -> None:
    response = await client.post("/tickets", json=open_body(customer, **overrides), headers=agent)
    assert response.status_code == 422
    assert problem_fields(response) == [field]


async def test_without_a_token_nothing_is_opened(client: httpx.AsyncClient, customer: UUID) -> None:
    response = await client.post("/tickets", json=open_body(customer))
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM_JSON


# --- the life of a ticket -----------------------------------------------------------------------


async def test_a_ticket_is_assigned_answered_escalated_paused_resolved_rated_reopened_and_closed(
    client: httpx.AsyncClient, agent: dict[str, str], customer: UUID, support_store: PostgresEventStore
) -> None:
    tid = await open_ticket(client, agent, open_body(customer))
    steps: list[tuple[str, dict[str, Any] | None]] = [
        ("assign", {"assignee": "suzuki.support", "team": "cs-tokyo"}),
        ("reply", {"content": "お問い合わせありがとうございます。確認いたします。"}),
        ("note", {"content": "経理部に確認中"}),
        ("escalate", {"level": 1, "reason": "請求先の変更が必要", "team": "cs-leads"}),
        ("status", {"status": "pending_customer", "reason": "新しい請求先の回答待ち"}),
        ("status", {"status": "open"}),
        ("resolve", {"resolution": "請求書を再発行し送付"}),
        ("satisfaction", {"score": 4, "comment": "丁寧でした"}),
        ("reopen", None),
        ("resolve", {"resolution": "宛名を修正して再送"}),
        ("satisfaction", {"score": 5}),
        ("links", {"order_id": "ORD-77"}),
        ("close", None),
    ]
    version = 1
    for path, body in steps:
        response = await client.post(f"/tickets/{tid}/{path}", json=body, headers=agent)
        assert response.status_code == 200, (path, response.text)
        assert response.json()["version"] > version
        version = response.json()["version"]
        assert response.headers["ETag"] == f'"{version}"'

    assert await stream_types(support_store, tid) == [
        "support.TicketOpened",
        "support.TicketAssigned",
        "support.TicketStatusChanged",
        "support.TicketReplied",
        "support.TicketNoteAdded",
        "support.TicketEscalated",
        "support.TicketStatusChanged",
        "support.TicketStatusChanged",
        "support.TicketResolved",
        "support.TicketSatisfactionRated",
        "support.TicketReopened",
        "support.TicketResolved",
        "support.TicketSatisfactionRated",
        "support.TicketLinked",
        "support.TicketClosed",
    ]
    response = await client.get(f"/tickets/{tid}", headers=agent)
    assert response.status_code == 200
    assert response.headers["ETag"] == f'"{version}"'
    view = response.json()
    assert (view["status"], view["assignee"], view["team"], view["escalation_level"]) == (
        "closed",
        "suzuki.support",
        "cs-leads",
        1,
    )
    assert view["subject"] == "請求書の再発行について"
    assert [r["content"] for r in view["replies"]] == ["お問い合わせありがとうございます。確認いたします。"]
    assert [n["content"] for n in view["notes"]] == ["経理部に確認中"]
    assert [r["resolution"] for r in view["resolutions"]] == ["請求書を再発行し送付", "宛名を修正して再送"]
    assert [(s["resolution_number"], s["score"]) for s in view["satisfaction"]] == [(1, 4), (2, 5)]
    assert view["links"] == [{"type": "order", "id": "ORD-77"}]
    assert view["sla"]["running"] == []
    assert view["first_responded_at"] is not None
    clock = await PostgresSlaClocks(support_store.pool).get(UUID(tid))
    assert clock is not None
    assert clock.pending() == {}


async def test_resolving_a_complaint_without_root_cause_and_prevention_is_422_naming_both(
    client: httpx.AsyncClient, agent: dict[str, str], customer: UUID, support_store: PostgresEventStore
) -> None:
    tid = await open_ticket(client, agent, complaint_body(customer))
    response = await client.post(f"/tickets/{tid}/resolve", json={"resolution": "代替品を発送"}, headers=agent)
    assert response.status_code == 422
    assert problem_fields(response) == ["root_cause", "prevention"]
    assert await stream_types(support_store, tid) == ["support.TicketOpened"]

    only_cause = {"resolution": "代替品を発送", "root_cause": "出荷指示の漏れ"}
    response = await client.post(f"/tickets/{tid}/resolve", json=only_cause, headers=agent)
    assert problem_fields(response) == ["prevention"]

    complete = {**only_cause, "prevention": "出荷指示をシステムで二重確認する"}
    response = await client.post(f"/tickets/{tid}/resolve", json=complete, headers=agent)
    assert response.status_code == 200, response.text
    view = (await client.get(f"/tickets/{tid}", headers=agent)).json()
    assert view["resolutions"][0]["prevention"] == "出荷指示をシステムで二重確認する"


@pytest.mark.parametrize("score", [0, 6, 4.5, "5", None])
async def test_a_satisfaction_score_outside_one_to_five_is_422(
    client: httpx.AsyncClient, agent: dict[str, str], customer: UUID, score: object
) -> None:
    tid = await open_ticket(client, agent, open_body(customer))
    await client.post(f"/tickets/{tid}/resolve", json={"resolution": "済"}, headers=agent)
    response = await client.post(f"/tickets/{tid}/satisfaction", json={"score": score}, headers=agent)
    assert response.status_code == 422
    assert problem_fields(response) == ["score"]


async def test_satisfaction_given_twice_or_before_a_resolution_is_409(
    client: httpx.AsyncClient, agent: dict[str, str], customer: UUID
) -> None:
    tid = await open_ticket(client, agent, open_body(customer))
    early = await client.post(f"/tickets/{tid}/satisfaction", json={"score": 3}, headers=agent)
    assert early.status_code == 409
    assert early.headers["content-type"] == PROBLEM_JSON
    await client.post(f"/tickets/{tid}/resolve", json={"resolution": "済"}, headers=agent)
    assert (await client.post(f"/tickets/{tid}/satisfaction", json={"score": 3}, headers=agent)).status_code == 200
    twice = await client.post(f"/tickets/{tid}/satisfaction", json={"score": 5}, headers=agent)
    assert twice.status_code == 409
    assert "already recorded" in twice.json()["detail"]


async def test_a_closed_ticket_takes_no_more_replies_and_is_not_reopened(
    client: httpx.AsyncClient, agent: dict[str, str], customer: UUID
) -> None:
    tid = await open_ticket(client, agent, open_body(customer))
    await client.post(f"/tickets/{tid}/resolve", json={"resolution": "済"}, headers=agent)
    assert (await client.post(f"/tickets/{tid}/close", headers=agent)).status_code == 200
    assert (await client.post(f"/tickets/{tid}/reply", json={"content": "x"}, headers=agent)).status_code == 409
    reopen = await client.post(f"/tickets/{tid}/reopen", json={}, headers=agent)
    assert reopen.status_code == 409
    assert "related_ticket_id" in reopen.json()["detail"]


async def test_escalating_to_the_current_level_is_422_naming_level(
    client: httpx.AsyncClient, agent: dict[str, str], customer: UUID
) -> None:
    tid = await open_ticket(client, agent, open_body(customer))
    assert (
        await client.post(f"/tickets/{tid}/escalate", json={"level": 2, "reason": "重要顧客"}, headers=agent)
    ).status_code == 200
    again = await client.post(f"/tickets/{tid}/escalate", json={"level": 2, "reason": "再度"}, headers=agent)
    assert again.status_code == 422
    assert problem_fields(again) == ["level"]


async def test_linking_to_a_ticket_that_does_not_exist_is_422(
    client: httpx.AsyncClient, agent: dict[str, str], customer: UUID
) -> None:
    tid = await open_ticket(client, agent, open_body(customer))
    response = await client.post(f"/tickets/{tid}/links", json={"ticket_id": str(new_id())}, headers=agent)
    assert response.status_code == 422
    assert problem_fields(response) == ["ticket_id"]
    deal = await client.post(f"/tickets/{tid}/links", json={"deal_id": str(new_id())}, headers=agent)
    assert deal.status_code == 200


# --- concurrency, idempotency, missing tickets ---------------------------------------------------


async def test_if_match_with_a_stale_version_is_409_with_the_current_version(
    client: httpx.AsyncClient, agent: dict[str, str], customer: UUID, support_store: PostgresEventStore
) -> None:
    tid = await open_ticket(client, agent, open_body(customer))
    fresh = await client.post(f"/tickets/{tid}/note", json={"content": "a"}, headers={**agent, "If-Match": '"1"'})
    assert fresh.status_code == 200
    stale = await client.post(f"/tickets/{tid}/note", json={"content": "b"}, headers={**agent, "If-Match": '"1"'})
    assert stale.status_code == 409
    assert stale.json()["current_version"] == 2
    bad = await client.post(f"/tickets/{tid}/note", json={"content": "c"}, headers={**agent, "If-Match": "latest"})
    assert bad.status_code == 422
    assert problem_fields(bad) == ["If-Match"]
    assert len(await stream_types(support_store, tid)) == 2


async def test_a_retried_open_with_the_same_idempotency_key_opens_one_ticket(
    client: httpx.AsyncClient, agent: dict[str, str], customer: UUID, support_store: PostgresEventStore
) -> None:
    headers = {**agent, "Idempotency-Key": f"open-{new_id()}"}
    before = await count_events(support_store)
    first = await client.post("/tickets", json=open_body(customer), headers=headers)
    again = await client.post("/tickets", json=open_body(customer), headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await count_events(support_store) == before + 1
    other = await client.post("/tickets", json=open_body(customer, subject="別件"), headers=headers)
    assert other.status_code == 422
    assert problem_fields(other) == ["Idempotency-Key"]


async def test_a_retried_reply_with_the_same_idempotency_key_replies_once(
    client: httpx.AsyncClient, agent: dict[str, str], customer: UUID, support_store: PostgresEventStore
) -> None:
    tid = await open_ticket(client, agent, open_body(customer))
    headers = {**agent, "Idempotency-Key": f"reply-{new_id()}"}
    first = await client.post(f"/tickets/{tid}/reply", json={"content": "回答"}, headers=headers)
    again = await client.post(f"/tickets/{tid}/reply", json={"content": "回答"}, headers=headers)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (await stream_types(support_store, tid)).count("support.TicketReplied") == 1


async def test_a_ticket_that_does_not_exist_is_404(client: httpx.AsyncClient, agent: dict[str, str]) -> None:
    missing = new_id()
    response = await client.get(f"/tickets/{missing}", headers=agent)
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM_JSON
    command = await client.post(f"/tickets/{missing}/assign", json={"assignee": "x"}, headers=agent)
    assert command.status_code == 404


async def test_the_openapi_document_lists_every_command_endpoint(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/tickets" in paths
    assert "/tickets/{ticket_id}" in paths
    for command in (
        "assign",
        "reply",
        "note",
        "escalate",
        "status",
        "resolve",
        "reopen",
        "close",
        "satisfaction",
        "links",
    ):
        assert "post" in paths[f"/tickets/{{ticket_id}}/{command}"], command


async def test_probes_answer_without_a_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).status_code == 200
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["database"]["status"] == "ok"
