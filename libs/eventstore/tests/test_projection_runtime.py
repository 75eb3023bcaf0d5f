"""Projection runtime: exactly-once effect under redelivery, bounded retries, dead-lettering."""

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from uuid import UUID

import asyncpg
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from crm_cli.infra import Kafka
from crm_cli.testing import TEST_PASSWORD, TEST_ROLE
from crm_eventstore.ids import new_id
from crm_eventstore.kafka import cloudevent_headers, encode_value, ensure_topics
from crm_eventstore.projection import (
    Delivery,
    Outcome,
    ProjectionRunner,
    build_consumer_app,
    deadletter_to,
)
from crm_eventstore.provision import provision_read_models
from crm_eventstore.store import PostgresEventStore, create_pool
from crm_schemas.envelope import EventEnvelope
from crm_schemas.registry import DEADLETTER_TOPIC
from faststream.kafka import KafkaBroker

from .builders import context, registered

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

COUNTS_DDL = "CREATE TABLE IF NOT EXISTS test_counts (customer_id uuid PRIMARY KEY, n integer NOT NULL);"
COUNTS_GRANTS = "GRANT SELECT, INSERT, UPDATE ON test_counts TO {role};"


@dataclass(frozen=True)
class Bump:
    customer_id: UUID
    poison: bool


class CountingProjection:
    """Counts events per customer: not idempotent by itself, so only the runtime's dedupe saves it."""

    name = "counts"

    def __init__(self, transient_failures: int = 0) -> None:
        self.transient_failures = transient_failures
        self.calls = 0

    def project(self, event: EventEnvelope) -> Bump | None:
        return Bump(event.customer_id, event.payload.get("external_id") == "poison")

    async def apply(self, conn: asyncpg.Connection, change: Bump) -> None:
        self.calls += 1
        await conn.execute(
            "INSERT INTO test_counts VALUES ($1, 1) ON CONFLICT (customer_id) DO UPDATE SET n = test_counts.n + 1",
            change.customer_id,
        )
        if change.poison:
            raise ValueError("this event can never be projected")
        if self.transient_failures > 0:
            self.transient_failures -= 1
            raise ConnectionError("the read-model database blinked")


@pytest_asyncio.fixture(loop_scope="session")
async def read_models(pg_admin_url: str) -> AsyncIterator[asyncpg.Pool]:
    url = await provision_read_models(
        pg_admin_url, f"crm_test_rm_{secrets.token_hex(5)}", TEST_ROLE, TEST_PASSWORD, COUNTS_DDL, COUNTS_GRANTS
    )
    pool = await create_pool(url)
    yield pool
    await pool.close()


async def _deliveries(store: PostgresEventStore, external_ids: list[str | None]) -> list[Delivery]:
    out = []
    for offset, external_id in enumerate(external_ids):
        cid = new_id()
        result = await store.append(f"customer-{cid}", 0, [registered(cid, external_id=external_id)], context())
        envelope = result.events[0]
        headers = {k: v.decode() for k, v in cloudevent_headers(envelope, "contacts")}
        out.append(Delivery("crm.contacts.events.v1", 0, offset, encode_value(envelope), headers))
    return out


class Sink:
    def __init__(self) -> None:
        self.letters: list[tuple[Delivery, str, int]] = []

    async def __call__(self, delivery: Delivery, error: str, attempts: int) -> None:
        self.letters.append((delivery, error, attempts))


async def _count(pool: asyncpg.Pool, customer_id: UUID) -> int | None:
    value = await pool.fetchval("SELECT n FROM test_counts WHERE customer_id = $1", customer_id)
    return None if value is None else int(value)


def _customer(delivery: Delivery) -> UUID:
    return UUID(json.loads(delivery.value)["customer_id"])


async def test_a_redelivered_event_changes_the_read_model_once(
    event_store: PostgresEventStore, read_models: asyncpg.Pool
) -> None:
    [delivery] = await _deliveries(event_store, [None])
    runner = ProjectionRunner(read_models, CountingProjection(), Sink())
    assert await runner.handle(delivery) is Outcome.APPLIED
    assert await runner.handle(delivery) is Outcome.DUPLICATE
    assert await _count(read_models, _customer(delivery)) == 1
    position = await read_models.fetchval(
        "SELECT next_offset FROM projection_positions WHERE projection = 'counts' AND partition = 0"
    )
    assert position >= delivery.offset + 1


async def test_a_transient_failure_rolls_back_and_the_retry_applies_once(
    event_store: PostgresEventStore, read_models: asyncpg.Pool
) -> None:
    [delivery] = await _deliveries(event_store, [None])
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    projection = CountingProjection(transient_failures=2)
    runner = ProjectionRunner(read_models, projection, Sink(), max_attempts=5, backoff=0.1, sleep=sleep)
    assert await runner.handle(delivery) is Outcome.APPLIED
    assert projection.calls == 3
    assert delays == [0.1, 0.2]
    assert await _count(read_models, _customer(delivery)) == 1


async def test_a_poison_event_is_dead_lettered_after_bounded_retries_and_the_next_one_is_applied(
    event_store: PostgresEventStore, read_models: asyncpg.Pool
) -> None:
    poison, good = await _deliveries(event_store, ["poison", None])
    sink = Sink()
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    runner = ProjectionRunner(read_models, CountingProjection(), sink, max_attempts=4, backoff=0.05, sleep=sleep)
    assert await runner.handle(poison) is Outcome.DEADLETTERED
    assert await runner.handle(good) is Outcome.APPLIED
    assert delays == [0.05, 0.1, 0.2]
    [(letter, error, attempts)] = sink.letters
    assert letter is poison
    assert "never be projected" in error
    assert attempts == 4
    assert await _count(read_models, _customer(poison)) is None  # every failed attempt rolled back
    assert await _count(read_models, _customer(good)) == 1


async def test_an_undecodable_record_goes_straight_to_the_dead_letter_sink(read_models: asyncpg.Pool) -> None:
    sink = Sink()
    runner = ProjectionRunner(read_models, CountingProjection(), sink)
    garbage = Delivery("crm.contacts.events.v1", 1, 7, b"{not json", {"ce_id": "x"})
    assert await runner.handle(garbage) is Outcome.DEADLETTERED
    assert sink.letters[0][0] is garbage
    assert "undecodable" in sink.letters[0][1]


async def test_the_consumer_commits_after_applying_and_dead_letters_through_the_broker(
    event_store: PostgresEventStore, read_models: asyncpg.Pool, kafka: Kafka
) -> None:
    topic = f"test.projection.{new_id()}"
    await ensure_topics(kafka.bootstrap_servers, [topic, DEADLETTER_TOPIC], 3)
    deliveries = await _deliveries(event_store, [None, "poison", None, None])
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for d in deliveries:
            envelope = json.loads(d.value)
            await producer.send_and_wait(
                topic,
                d.value,
                key=envelope["customer_id"].encode(),
                headers=[(k, v.encode()) for k, v in d.headers.items()],
            )
    finally:
        await producer.stop()
    broker = KafkaBroker(kafka.bootstrap_servers, acks="all")
    runner = ProjectionRunner(read_models, CountingProjection(), deadletter_to(broker, "counts"), backoff=0.01)
    group = f"test-group-{new_id()}"
    app = build_consumer_app(broker, [runner], [topic], group)
    await app.start()
    try:
        good = [_customer(d) for i, d in enumerate(deliveries) if i != 1]
        for _ in range(300):
            if all([await _count(read_models, c) == 1 for c in good]):
                break
            await asyncio.sleep(0.1)
        assert [await _count(read_models, c) for c in good] == [1, 1, 1]
    finally:
        await app.stop()

    poison_id = json.loads(deliveries[1].value)["event_id"]
    consumer = AIOKafkaConsumer(
        DEADLETTER_TOPIC,
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=f"dlq-reader-{new_id()}",
        auto_offset_reset="earliest",
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
    )
    await consumer.start()
    found = None
    try:
        for _ in range(40):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    headers = {k: v.decode() for k, v in r.headers}
                    if headers.get("ce_id") == poison_id:
                        found = headers
            if found:
                break
    finally:
        await consumer.stop()
    assert found is not None, "the poison event never reached crm.deadletter.v1"
    assert "never be projected" in found["x-crm-error"]
    assert found["x-crm-original-topic"] == topic
    assert found["ce_type"] == "contacts.CustomerRegistered"
