"""The outbox relay against a real broker: order, headers, crash safety, NOTIFY wake-up, republish."""

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from typing import Any
from uuid import UUID

import pytest
from aiokafka import AIOKafkaConsumer
from crm_cli.infra import Kafka
from crm_cli.testing import MASTER_KEY
from crm_eventstore.ids import new_id
from crm_eventstore.kafka import ensure_topics, start_producer
from crm_eventstore.keyring import _b64
from crm_eventstore.relay import OutboxRelay
from crm_eventstore.store import PostgresEventStore
from crm_schemas.personal import is_ciphertext

from .builders import context, registered

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


async def _consume_all(
    bootstrap: str, topic: str, expected: int, timeout: float = 30.0, done: Callable[[list[Any]], bool] | None = None
) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"test-{new_id()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            if done(records) if done else len(records) >= expected:
                break
            batch = await consumer.getmany(timeout_ms=500)
            for items in batch.values():
                records.extend(items)
    finally:
        await consumer.stop()
    return records


async def _append_customers(store: PostgresEventStore, customers: int, events_each: int) -> list[UUID]:
    ids = [new_id() for _ in range(customers)]
    for version in range(events_each):
        for cid in ids:
            await store.append(f"customer-{cid}", version, [registered(cid, f"名前{version}")], context())
    return ids


async def test_events_reach_the_topic_keyed_by_customer_with_cloudevents_headers_in_stream_order(
    event_store: PostgresEventStore, kafka: Kafka
) -> None:
    topic = f"test.relay.{new_id()}"
    ids = await _append_customers(event_store, customers=5, events_each=3)
    producer = await start_producer(kafka.bootstrap_servers, "auto")
    relay = OutboxRelay(event_store, producer, kafka.bootstrap_servers, topic, partitions=6)
    await ensure_topics(kafka.bootstrap_servers, [topic], 6)
    try:
        assert await relay.publish_pending() == 15
    finally:
        await producer.stop()
    records = await _consume_all(kafka.bootstrap_servers, topic, 15)
    assert len(records) == 15
    versions: dict[str, list[int]] = defaultdict(list)
    partitions: dict[str, set[int]] = defaultdict(set)
    for record in records:
        headers = {k: v.decode() for k, v in record.headers}  # type: ignore[attr-defined]
        value = json.loads(record.value)  # type: ignore[attr-defined]
        key = record.key.decode()  # type: ignore[attr-defined]
        assert key == value["customer_id"] == headers["ce_subject"]
        assert headers["ce_specversion"] == "1.0"
        assert headers["ce_id"] == value["event_id"]
        assert headers["ce_type"] == "contacts.CustomerRegistered"
        assert headers["ce_source"] == "contacts"
        assert headers["content-type"] == "application/json"
        assert "ce_time" in headers
        assert is_ciphertext(value["payload"]["name"])
        versions[key].append(value["version"])
        partitions[key].add(record.partition)  # type: ignore[attr-defined]
    assert set(versions) == {str(i) for i in ids}
    assert all(v == [1, 2, 3] for v in versions.values())
    assert all(len(p) == 1 for p in partitions.values())
    assert await relay.position() == (await event_store.read_all())[-1].global_position


async def test_a_relay_sleeping_on_a_long_poll_is_woken_by_notify(
    event_store: PostgresEventStore, kafka: Kafka
) -> None:
    topic = f"test.relay.{new_id()}"
    producer = await start_producer(kafka.bootstrap_servers, "auto")
    relay = OutboxRelay(event_store, producer, kafka.bootstrap_servers, topic, poll_interval=3600)
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    try:
        await asyncio.wait_for(relay.ready.wait(), 30)
        await asyncio.sleep(0.2)  # the relay is now parked on its hour-long poll
        ids = await _append_customers(event_store, customers=3, events_each=1)
        # With an hour-long poll, only NOTIFY can get these out within the wait below.
        records = await _consume_all(kafka.bootstrap_servers, topic, 3, timeout=20)
        assert {json.loads(r.value)["customer_id"] for r in records} == {str(i) for i in ids}  # type: ignore[attr-defined]
    finally:
        stop.set()
        await running
        await producer.stop()


async def test_a_relay_whose_topic_lost_its_data_republishes_everything(
    event_store: PostgresEventStore, kafka: Kafka
) -> None:
    first_topic = f"test.relay.{new_id()}"
    await _append_customers(event_store, customers=4, events_each=1)
    producer = await start_producer(kafka.bootstrap_servers, "auto")
    try:
        relay = OutboxRelay(event_store, producer, kafka.bootstrap_servers, first_topic)
        await relay._reset_if_broker_lost_data()
        assert await relay.publish_pending() == 4
        # The same relay (same stored position) now finds a brand-new, empty topic.
        moved = OutboxRelay(event_store, producer, kafka.bootstrap_servers, f"test.relay.{new_id()}")
        await moved._reset_if_broker_lost_data()
        assert await moved.position() == (0, 0)
        assert await moved.publish_pending() == 4
    finally:
        await producer.stop()


async def test_a_relay_killed_at_random_moments_loses_nothing(
    event_store: PostgresEventStore, kafka: Kafka, keys_url: str
) -> None:
    topic = "crm.contacts.events.v1"
    database = await event_store.pool.fetchval("SELECT current_database()")
    from crm_cli.testing import TEST_PASSWORD, TEST_ROLE
    from crm_eventstore.provision import database_url

    url = database_url(keys_url, database, TEST_ROLE, TEST_PASSWORD)
    # A fresh broker topic name per run is not possible for the real relay process (it uses the
    # service topic), so count only this test's customers.
    env = {
        **os.environ,
        "CRM_CONTACTS_DATABASE_URL": url,
        "CRM_KEYS_DATABASE_URL": keys_url,
        "CRM_MASTER_KEY": _b64(MASTER_KEY),
        "CRM_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "CRM_JWKS_FILE": "/dev/null",
    }
    await ensure_topics(kafka.bootstrap_servers, [topic], 6)
    written: list[UUID] = []
    for round_ in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-m", "crm_cli.processes", "relay", "contacts"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for cid in await _append_customers(event_store, customers=40, events_each=1):
            written.append(cid)
        await asyncio.sleep(0.05 * round_)
        proc.send_signal(signal.SIGKILL)  # no chance to flush or save anything
        proc.wait()
    final = subprocess.Popen(
        [sys.executable, "-m", "crm_cli.processes", "relay", "contacts"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        mine = {str(c) for c in written}

        def all_mine(records: list[Any]) -> bool:
            return mine <= {json.loads(r.value)["customer_id"] for r in records}

        records = await _consume_all(kafka.bootstrap_servers, topic, 0, timeout=60, done=all_mine)
        got = {json.loads(r.value)["customer_id"] for r in records} & mine  # type: ignore[attr-defined]
        assert got == mine, f"lost {len(mine - got)} of {len(mine)} events"
    finally:
        final.terminate()
        final.wait(10)
