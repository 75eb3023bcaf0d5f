"""`crm projections rebuild facts`: the fact tables replayed into a shadow copy, swapped in, resumable."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import pytest
import pytest_asyncio
from crm_cli.testing import MASTER_KEY, TEST_ROLE, Kafka
from crm_eventstore.ids import new_id
from crm_eventstore.kafka import encode_value, ensure_topics, start_producer
from crm_eventstore.keyring import Keyring
from crm_eventstore.projection import Delivery, ProjectionRunner
from crm_eventstore.provision import database_url
from crm_projections.facts.store import FactsProjection, FactsStore
from crm_projections.rebuild.facts import FACT_TABLES, FactsRebuild
from crm_projections.rebuild.replay import EventStoreSource, KafkaSource
from crm_projections.rebuild.status import rebuilding
from crm_schemas import contacts
from crm_schemas.base import DomainEvent
from crm_schemas.envelope import EventEnvelope
from crm_schemas.registry import topic_for

from .builders import (
    T0,
    World,
    contacts_life,
    deal_opened,
    deals_life,
    merged,
    open_world,
    order_cancelled,
    order_placed,
    registered,
    support_life,
    ticket_opened,
    unmerged,
)
from .test_rebuild import _settled

pytestmark = pytest.mark.integration


class LiveFacts:
    """The world with the live facts consumer beside the timeline one: every recorded event is applied."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.offset = 0

        async def never(*_: object) -> None:
            raise AssertionError("nothing should be dead-lettered")

        self.runner = ProjectionRunner(world.read_pool, FactsProjection(world.keyring), never)

    async def apply(self, envelopes: Sequence[EventEnvelope]) -> None:
        """Deliver envelopes to the live facts projection, as the consumer does."""
        for envelope in envelopes:
            self.offset += 1
            value = envelope.model_dump_json().encode()
            await self.runner.handle(Delivery(topic_for(envelope.service), 0, self.offset, value, {}))

    async def record(self, events: Sequence[DomainEvent]) -> list[EventEnvelope]:
        """Append to the event stores, project the timeline and the facts live."""
        envelopes = await self.world.record(events)
        await self.apply(envelopes)
        return envelopes


@pytest_asyncio.fixture(loop_scope="session")
async def live(pg_admin_url: str, keyring: Keyring) -> AsyncIterator[LiveFacts]:
    async with open_world(pg_admin_url, keyring) as world:
        yield LiveFacts(world)


async def _owner_url(world: World, pg_admin_url: str) -> str:
    return database_url(pg_admin_url, await world.read_pool.fetchval("SELECT current_database()"))


def _source(world: World) -> EventStoreSource:
    return EventStoreSource({service: store.pool for service, store in world.stores.items()})


async def _populate(live: LiveFacts, customers: int = 6) -> list[UUID]:
    """Orders (with cancellations), lines, deals, tickets, tags, a merge and a merge undone; two full lives."""
    ids = [new_id() for _ in range(customers)]
    for i, cid in enumerate(ids):
        placed = order_placed(cid, date(2025, 1, 1) + timedelta(days=i), [("1000", i + 1), ("250", 2)])
        await live.record(
            [
                registered(cid, f"株式会社テスト{i}商事"),
                contacts.CustomerTagged(customer_id=cid, occurred_at=T0, tag=f"tag{i % 2}"),
                deal_opened(cid),
                placed,
                *([order_cancelled(placed, placed.total)] if i % 3 == 0 else []),
                ticket_opened(cid, "complaint" if i % 2 else "inquiry"),
            ]
        )
    await live.record(merged(ids[0], ids[1], datetime.now(UTC)))
    await live.record([*merged(ids[2], ids[3], datetime.now(UTC)), *unmerged(ids[2], ids[3], datetime.now(UTC))])
    for cid in (new_id(), new_id()):
        await live.record([*contacts_life(cid), *deals_life(cid)[0], *support_life(cid)[0]])
        ids.append(cid)
    return ids


async def _facts(pool: asyncpg.Pool) -> dict[str, dict[str, list[tuple[str, ...]]]]:
    """Every fact row, by customer and table (`updated_at`, the wall clock of the write, left out)."""
    by_customer: dict[str, dict[str, list[tuple[str, ...]]]] = defaultdict(lambda: defaultdict(list))
    for table in FACT_TABLES:
        if table == "fact_order_reversals":
            query = "SELECT o.customer_id AS owner, r.* FROM fact_order_reversals r JOIN fact_orders o USING (order_id)"
        else:
            query = f"SELECT customer_id AS owner, * FROM {table}"
        for row in await pool.fetch(query):
            values = tuple(f"{k}={v}" for k, v in row.items() if k not in ("owner", "updated_at"))
            by_customer[str(row["owner"])][table].append(values)
    return {cid: {t: sorted(rows) for t, rows in tables.items()} for cid, tables in by_customer.items()}


def _assert_same(rebuilt: dict[str, Any], live: dict[str, Any]) -> None:
    assert sorted(rebuilt) == sorted(live)
    for cid in live:
        assert rebuilt[cid] == live[cid], f"customer {cid} differs after the rebuild"


async def test_a_facts_rebuild_from_the_event_stores_equals_the_live_facts_customer_by_customer(
    live: LiveFacts, pg_admin_url: str
) -> None:
    world = live.world
    ids = await _populate(live)
    erased = ids[4]
    assert await world.keyring.destroy(erased)  # crypto-shredding, and the read side's blanking
    await FactsStore(world.read_pool).forget(erased)
    before = await _facts(world.read_pool)
    assert before[str(ids[0])]["fact_customer_totals"], "the survivor has totals"
    assert "fact_customer_totals" not in before[str(ids[1])], "the absorbed customer has none"
    late: list[EventEnvelope] = []
    expected: dict[str, Any] = {}
    await _settled(world)

    async def while_rebuilding() -> None:
        # The serving tables still answer (as the runtime role), unchanged; the shadow copy is not theirs.
        assert await _facts(world.read_pool) == before
        assert await rebuilding(world.read_pool) == ["facts"]
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await world.read_pool.fetchval("SELECT count(*) FROM rebuild_facts.fact_orders")
        # Applied live after the replay, before the swap: must not be lost by it.
        late.extend(await live.record([contacts.CustomerTagged(customer_id=ids[5], occurred_at=T0, tag="late")]))
        await _settled(world)
        expected.update(await _facts(world.read_pool))

    rebuild = FactsRebuild(await _owner_url(world, pg_admin_url), TEST_ROLE, world.keyring, batch=7)
    rebuild.before_swap = while_rebuilding
    progress: list[tuple[int, int | None]] = []
    report = await rebuild.run(_source(world), progress=lambda done, total: progress.append((done, total)))

    recorded = len(world.recorded)
    assert report.events == recorded
    assert progress[-1] == (recorded - len(late), recorded - len(late))
    after = await _facts(world.read_pool)
    _assert_same(after, expected)
    assert "tags=['late', 'tag1']" in after[str(ids[5])]["fact_customers"][0]
    blank = await world.read_pool.fetchrow(
        "SELECT name, name_kana, erased, search_text FROM fact_customers WHERE customer_id = $1", erased
    )
    assert (blank["name"], blank["name_kana"], blank["erased"], blank["search_text"]) == (None, None, True, "")
    assert await rebuilding(world.read_pool) == []
    # The runtime role writes into the new copy (grants): the live consumer goes on.
    await live.record([contacts.CustomerTagged(customer_id=ids[6], occurred_at=T0, tag="after")])
    tags = await world.read_pool.fetchval("SELECT tags FROM fact_customers WHERE customer_id = $1", ids[6])
    assert "after" in tags


class Interrupted(Exception):
    pass


async def test_an_interrupted_facts_rebuild_resumes_where_it_stopped(live: LiveFacts, pg_admin_url: str) -> None:
    world = live.world
    ids = await _populate(live, customers=4)
    owner = await _owner_url(world, pg_admin_url)
    calls = 0

    def stop_after_two_batches(done: int, total: int | None) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise Interrupted

    await _settled(world)
    with pytest.raises(Interrupted):
        await FactsRebuild(owner, TEST_ROLE, world.keyring, batch=5).run(
            _source(world), progress=stop_after_two_batches
        )
    assert (
        await world.read_pool.fetchval("SELECT events_done FROM projection_rebuilds WHERE projection = 'facts'") == 10
    )
    assert await rebuilding(world.read_pool) == ["facts"]

    # Meanwhile the live consumer goes on: a new order of a customer already half replayed.
    more = order_placed(ids[2], date(2025, 6, 1), [("5000", 3)])
    await live.record([more, contacts.CustomerTagged(customer_id=ids[2], occurred_at=T0, tag="meanwhile")])
    expected = await _facts(world.read_pool)

    await _settled(world)
    report = await FactsRebuild(owner, TEST_ROLE, world.keyring, batch=5).run(_source(world))
    assert report.resumed is True
    assert report.events == len(world.recorded) - 10
    _assert_same(await _facts(world.read_pool), expected)


async def test_a_facts_rebuild_from_the_kafka_topics_equals_the_live_facts(
    live: LiveFacts, pg_admin_url: str, kafka: Kafka
) -> None:
    world = live.world
    await _populate(live, customers=5)
    suffix = secrets.token_hex(4)
    topics = {service: f"crm.test-facts-{service}-{suffix}.v1" for service in world.stores}
    await ensure_topics(kafka.bootstrap_servers, list(topics.values()), partitions=3)
    producer = await start_producer(kafka.bootstrap_servers)
    try:
        for envelope in world.recorded:
            await producer.send_and_wait(
                topics[envelope.service], encode_value(envelope), key=str(envelope.customer_id).encode()
            )
        # A redelivered tag (a relay publishing twice) after its removal must not bring the tag back.
        tagged = next(e for e in world.recorded if e.type == "contacts.CustomerTagged")
        untag = contacts.CustomerUntagged(customer_id=tagged.customer_id, occurred_at=T0, tag=tagged.payload["tag"])
        for envelope in await live.record([untag]):
            await producer.send_and_wait(
                topics["contacts"], encode_value(envelope), key=str(envelope.customer_id).encode()
            )
        await producer.send_and_wait(topics["contacts"], encode_value(tagged), key=str(tagged.customer_id).encode())
        await producer.send_and_wait(topics["deals"], b"{not an envelope", key=b"junk")
    finally:
        await producer.stop()
    expected = await _facts(world.read_pool)
    source = KafkaSource(kafka.bootstrap_servers, list(topics.values()))
    report = await FactsRebuild(await _owner_url(world, pg_admin_url), TEST_ROLE, world.keyring, batch=4).run(source)
    assert report.events == len(world.recorded) + 1  # the duplicate read, not applied; the junk skipped
    _assert_same(await _facts(world.read_pool), expected)


async def test_crm_projections_rebuild_without_a_name_rebuilds_every_read_model(
    live: LiveFacts, pg_admin_url: str, keys_url: str
) -> None:
    world = live.world
    await _populate(live, customers=4)
    expected = await _facts(world.read_pool)
    entries = await world.read_pool.fetchval("SELECT count(*) FROM timeline_entries")
    await _settled(world)
    env = {
        **os.environ,
        "CRM_MIGRATE_DATABASE_URL": await _owner_url(world, pg_admin_url),
        "CRM_KEYS_DATABASE_URL": keys_url,
        "CRM_MASTER_KEY": base64.b64encode(MASTER_KEY).decode(),
        **{f"CRM_{service.upper()}_DATABASE_URL": url for service, url in world.urls.items()},
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "crm_cli.main",
        "projections",
        "rebuild",
        "--source",
        "event-stores",
        "--role",
        TEST_ROLE,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    text = output.decode()
    assert process.returncode == 0, text
    assert "swapped in timeline" in text
    assert "swapped in facts" in text
    _assert_same(await _facts(world.read_pool), expected)
    assert await world.read_pool.fetchval("SELECT count(*) FROM timeline_entries") == entries
    finished = await world.read_pool.fetch("SELECT projection FROM projection_rebuilds WHERE finished_at IS NOT NULL")
    assert sorted(r["projection"] for r in finished) == ["facts", "timeline"]
