"""Through real PostgreSQL and a real Kafka-protocol broker: contacts events feed support's replica, and a
ticket's events travel through the support relay to the customer's timeline."""

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
from crm_support.app.tickets import TicketCommands
from crm_support.entrypoints.http import create_app
from crm_support.replica.project import Change, CustomerReplicaProjection
from crm_support.replica.queries import ReplicaDirectory
from crm_support.sla_clocks import PostgresSlaClocks
from faststream.kafka import KafkaBroker

from .builders import complaint_body, context, open_body, person_added, registered

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


async def test_a_contacts_customer_gets_a_complaint_whose_events_reach_its_timeline(
    event_store: PostgresEventStore,
    support_store: PostgresEventStore,
    kafka: Kafka,
    keyring: Keyring,
    pg_admin_url: str,
    tmp_path: Path,
) -> None:
    servers = kafka.bootstrap_servers
    contacts_topic, support_topic = f"test.contacts.{new_id()}", f"test.support.{new_id()}"
    await ensure_topics(servers, [contacts_topic, support_topic, DEADLETTER_TOPIC], 3)
    cid, person = new_id(), new_id()
    contacts_store = event_store  # the crm_cli.testing fixture is a contacts event store
    await contacts_store.append(f"customer-{cid}", 0, [registered(cid), person_added(cid, person)], context())
    producer = await start_producer(servers, "auto")
    try:
        # 1. The contacts relay publishes; the support worker's replica consumer learns the customer.
        assert await OutboxRelay(contacts_store, producer, servers, contacts_topic, partitions=3).publish_pending() == 2
        broker = KafkaBroker(servers, acks="all")
        replica = CustomerReplicaProjection()
        runner: ProjectionRunner[Change] = ProjectionRunner(
            support_store.pool, replica, deadletter_to(broker, replica.name)
        )
        worker = build_consumer_app(broker, [runner], [contacts_topic], f"test-support-replica-{new_id()}")
        directory = ReplicaDirectory(support_store.pool)
        await worker.start()
        try:
            standing = await eventually(lambda: directory.standing(cid), lambda s: person in s.contact_person_ids)
        finally:
            await worker.stop()
        assert standing.known
        assert standing.survivor_id is None

        # 2. The support API opens and works a complaint for that customer (and refuses a stranger).
        issuer = DevIssuer(tmp_path / "idp")
        headers = {"Authorization": f"Bearer {issuer.issue('suzuki.support', 'support', team='cs-tokyo')}"}
        commands = TicketCommands(support_store, customers=directory, clocks=PostgresSlaClocks(support_store.pool))
        app = create_app(commands, TokenVerifier(issuer.auth_settings()))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://support") as client:
            stranger = await client.post("/tickets", json=open_body(new_id()), headers=headers)
            assert stranger.status_code == 422
            opened = await client.post(
                "/tickets", json=complaint_body(cid, contact_person_id=str(person)), headers=headers
            )
            assert opened.status_code == 201, opened.text
            tid = opened.json()["id"]
            for path, body in (
                ("reply", {"content": "大変申し訳ございません。至急手配いたします。"}),
                (
                    "resolve",
                    {"resolution": "代替品を即日発送", "root_cause": "出荷指示の漏れ", "prevention": "二重確認"},
                ),
            ):
                response = await client.post(f"/tickets/{tid}/{path}", json=body, headers=headers)
                assert response.status_code == 200, response.text

        # 3. The support relay publishes the ticket's events.
        published = await OutboxRelay(support_store, producer, servers, support_topic, partitions=3).publish_pending()
        assert published == 4  # opened, replied, status new -> open, resolved
    finally:
        await producer.stop()

    # 4. The timeline consumer reads both topics into one customer history.
    url = await provision_read_models(
        pg_admin_url, f"crm_test_tl_{secrets.token_hex(5)}", TEST_ROLE, TEST_PASSWORD, TIMELINE_DDL, TIMELINE_GRANTS
    )
    pool = await create_pool(url)
    timeline_broker = KafkaBroker(servers, acks="all")
    timeline = TimelineProjection()
    consumer = build_consumer_app(
        timeline_broker,
        [ProjectionRunner(pool, timeline, deadletter_to(timeline_broker, timeline.name))],
        [contacts_topic, support_topic],
        f"test-timeline-{new_id()}",
    )
    await consumer.start()
    try:
        queries = TimelineQueries(pool, keyring)
        page = await eventually(lambda: queries.page(cid, language="ja"), lambda p: len(p["items"]) >= 6)
    finally:
        await consumer.stop()
        await pool.close()

    items = page["items"]
    assert len(items) == 6
    assert {i["service"] for i in items} == {"contacts", "support"}
    by_type = {i["type"]: i for i in items}
    opened_entry = by_type["support.TicketOpened"]
    assert opened_entry["stream_id"] == f"ticket-{tid}"
    assert opened_entry["data"]["subject"] == "納品遅延のクレーム"  # decrypted with the customer's key
    assert opened_entry["summary"] == "サポート受付（complaint・email・high）：納品遅延のクレーム"
    assert by_type["support.TicketResolved"]["data"]["prevention"] == "二重確認"
    assert by_type["support.TicketResolved"]["actor"]["subject"] == "suzuki.support"
    occurred = [i["occurred_at"] for i in items]
    assert occurred == sorted(occurred, reverse=True)
