"""Through real PostgreSQL and a real Kafka-protocol broker: contacts events feed the deals replica, and a
deal's, an order's and an invoice's events travel through the deals relay to the customer's timeline."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from crm_cli.infra import Kafka
from crm_cli.testing import TEST_PASSWORD, TEST_ROLE
from crm_deals.app.commands import DealsCommands
from crm_deals.deadlines import PostgresDeadlines
from crm_deals.entrypoints.http import create_app
from crm_deals.replica.project import Change, CustomerReplicaProjection
from crm_deals.replica.queries import ReplicaDirectory
from crm_eventstore.ids import new_id
from crm_eventstore.kafka import ensure_topics, start_producer
from crm_eventstore.keyring import Keyring
from crm_eventstore.projection import ProjectionRunner, build_consumer_app, deadletter_to
from crm_eventstore.provision import provision_read_models
from crm_eventstore.relay import OutboxRelay
from crm_eventstore.store import PostgresEventStore, create_pool
from crm_http.auth import DevIssuer, TokenVerifier
from crm_projections.timeline.project import TIMELINE_DDL, TIMELINE_GRANTS, TimelineProjection
from crm_projections.timeline.queries import TimelineQueries
from crm_schemas.registry import DEADLETTER_TOPIC
from faststream.kafka import KafkaBroker

from .builders import context, deal_body, invoice_body, order_body, person_added, registered
from .conftest import despite_concurrent_grants

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], timeout: float = 60) -> T:
    """Poll `probe` until `done` holds for its value (the broker delivers asynchronously)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await probe()
        if done(value) or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(0.1)


async def published_all(relay: OutboxRelay, expected: int) -> bool:
    """Publish until `expected` events went out: a transaction still open elsewhere on the server holds
    the relay's horizon (ADR 0002) back for a moment, so one pass may publish only some of them."""
    published = [0]

    async def publish() -> int:
        published[0] += await relay.publish_pending()
        return published[0]

    return await eventually(publish, lambda n: n >= expected) == expected


async def test_a_contacts_customer_gets_a_deal_an_order_and_a_payment_that_reach_its_timeline(
    event_store: PostgresEventStore,
    deals_store: PostgresEventStore,
    kafka: Kafka,
    keyring: Keyring,
    pg_admin_url: str,
    tmp_path: Path,
) -> None:
    servers = kafka.bootstrap_servers
    contacts_topic, deals_topic = f"test.contacts.{new_id()}", f"test.deals.{new_id()}"
    await ensure_topics(servers, [contacts_topic, deals_topic, DEADLETTER_TOPIC], 3)
    cid, person = new_id(), new_id()
    contacts_store = event_store  # the crm_cli.testing fixture is a contacts event store
    await contacts_store.append(f"customer-{cid}", 0, [registered(cid), person_added(cid, person)], context())
    producer = await start_producer(servers, "auto")
    try:
        # 1. The contacts relay publishes; the deals worker's replica consumer learns the customer.
        contacts_relay = OutboxRelay(contacts_store, producer, servers, contacts_topic, partitions=3)
        assert await published_all(contacts_relay, 2)
        broker = KafkaBroker(servers, acks="all")
        replica = CustomerReplicaProjection()
        runner: ProjectionRunner[Change] = ProjectionRunner(
            deals_store.pool, replica, deadletter_to(broker, replica.name)
        )
        worker = build_consumer_app(broker, [runner], [contacts_topic], f"test-deals-replica-{new_id()}")
        directory = ReplicaDirectory(deals_store.pool)
        await worker.start()
        try:
            standing = await eventually(lambda: directory.standing(cid), lambda s: person in s.contact_person_ids)
        finally:
            await worker.stop()
        assert standing.known

        # 2. The deals API works a deal, an order and an invoice for that customer (and refuses a stranger).
        issuer = DevIssuer(tmp_path / "idp")
        headers = {"Authorization": f"Bearer {issuer.issue('tanaka.sales', 'sales', team='sales-tokyo')}"}
        billing = {"Authorization": f"Bearer {issuer.issue('sato.accounting', 'accounting', team='accounting')}"}
        commands = DealsCommands(deals_store, customers=directory, deadlines=PostgresDeadlines(deals_store.pool))
        app = create_app(commands, TokenVerifier(issuer.auth_settings()))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://deals") as client:
            assert (await client.post("/deals", json=deal_body(new_id()), headers=headers)).status_code == 422
            opened = await client.post("/deals", json=deal_body(cid, contact_person_id=str(person)), headers=headers)
            assert opened.status_code == 201, opened.text
            did = opened.json()["id"]
            for path, body in (("stage", {"stage": "proposal"}), ("won", {"amount": "11000000"})):
                response = await client.post(f"/deals/{did}/{path}", json=body, headers=headers)
                assert response.status_code == 200, response.text
            visit = {"kind": "visit", "subject": "受注御礼の訪問", "contact_person_id": str(person)}
            assert (await client.post(f"/deals/{did}/activities", json=visit, headers=headers)).status_code == 201
            placed = await client.post("/orders", json=order_body(cid, deal_id=did), headers=headers)
            assert placed.status_code == 201, placed.text
            issued = await client.post(
                "/invoices", json=invoice_body(cid, amount="349800", order_id=placed.json()["id"]), headers=billing
            )
            assert issued.status_code == 201, issued.text
            payment = {
                "customer_id": str(cid),
                "invoice_id": issued.json()["id"],
                "amount": "349800",
                "paid_on": "2026-04-01",
                "method": "bank_transfer",
            }
            assert (await client.post("/payments", json=payment, headers=billing)).status_code == 201

        # 3. The deals relay publishes every event.
        relay = OutboxRelay(deals_store, producer, servers, deals_topic, partitions=3)
        assert await published_all(relay, 7)  # opened, stage, won, activity, order, invoice, paid
    finally:
        await producer.stop()

    # 4. The timeline consumer reads both topics into one customer history.
    url = await despite_concurrent_grants(
        lambda: provision_read_models(
            pg_admin_url, f"crm_test_tl_{secrets.token_hex(5)}", TEST_ROLE, TEST_PASSWORD, TIMELINE_DDL, TIMELINE_GRANTS
        )
    )
    pool = await create_pool(url)
    timeline_broker = KafkaBroker(servers, acks="all")
    timeline = TimelineProjection()
    consumer = build_consumer_app(
        timeline_broker,
        [ProjectionRunner(pool, timeline, deadletter_to(timeline_broker, timeline.name))],
        [contacts_topic, deals_topic],
        f"test-timeline-{new_id()}",
    )
    await consumer.start()
    try:
        queries = TimelineQueries(pool, keyring)
        page = await eventually(lambda: queries.page(cid, language="ja"), lambda p: len(p["items"]) >= 9)
    finally:
        await consumer.stop()
        await pool.close()

    items = page["items"]
    assert len(items) == 9
    assert {i["service"] for i in items} == {"contacts", "deals"}
    by_type = {i["type"]: i for i in items}
    assert by_type["deals.DealWon"]["summary"] == "受注：11000000 JPY"
    assert by_type["deals.OrderPlaced"]["summary"] == "注文：318000 JPY（2明細）"
    assert by_type["deals.ActivityRecorded"]["data"]["subject"] == "受注御礼の訪問"  # decrypted with the customer's key
    assert by_type["deals.PaymentReceived"]["data"]["outstanding_after"] == "0"
    assert by_type["deals.DealOpened"]["actor"]["subject"] == "tanaka.sales"
