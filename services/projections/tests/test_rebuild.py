"""`crm projections rebuild`: replay into a shadow copy while the old one serves, swap atomically, resume."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import pytest
import pytest_asyncio
from crm_cli.testing import TEST_ROLE, Kafka
from crm_eventstore.ids import new_id
from crm_eventstore.kafka import encode_value, ensure_topics, start_producer
from crm_eventstore.keyring import Keyring
from crm_eventstore.provision import database_url
from crm_projections.rebuild.replay import EventStoreSource, KafkaSource, TimelineRebuild
from crm_projections.rebuild.status import LagThresholds, NotReady, check_ready, rebuilding
from crm_schemas import contacts

from .builders import (
    T0,
    World,
    deal_opened,
    merged,
    open_world,
    order_cancelled,
    order_placed,
    registered,
    ticket_opened,
    unmerged,
)

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(loop_scope="session")
async def world(pg_admin_url: str, keyring: Keyring) -> AsyncIterator[World]:
    async with open_world(pg_admin_url, keyring) as w:
        yield w


async def _owner_url(world: World, pg_admin_url: str) -> str:
    return database_url(pg_admin_url, await world.read_pool.fetchval("SELECT current_database()"))


async def _settled(world: World) -> None:
    """Wait until no transaction anywhere on the server holds the read horizon below our events.

    The event stores are read below the cluster-wide snapshot xmin (docs/adr/0002); on a server shared
    with other test sessions a long transaction elsewhere delays what a replay can see.
    """
    for _ in range(600):
        behind = 0
        for store in world.stores.values():
            behind += await store.pool.fetchval(
                "SELECT count(*) FROM events WHERE tx_id >= pg_snapshot_xmin(pg_current_snapshot())"
            )
        if not behind:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the transaction horizon did not pass the recorded events within a minute")


def _source(world: World) -> EventStoreSource:
    return EventStoreSource({service: store.pool for service, store in world.stores.items()})


async def _populate(world: World, customers: int = 6) -> list[UUID]:
    ids = [new_id() for _ in range(customers)]
    for i, cid in enumerate(ids):
        order = order_placed(cid, date(2025, 1, 1) + timedelta(days=i), [("1000", i + 1)])
        await world.record(
            [
                registered(cid, f"会社{i}"),
                contacts.CustomerTagged(customer_id=cid, occurred_at=T0, tag=f"tag{i % 2}"),
                deal_opened(cid),
                order,
                *([order_cancelled(order, order.total)] if i % 3 == 0 else []),
                ticket_opened(cid, "complaint" if i % 2 else "inquiry"),
            ]
        )
    await world.record(merged(ids[0], ids[1], datetime.now(UTC)))
    await world.record([*merged(ids[2], ids[3], datetime.now(UTC)), *unmerged(ids[2], ids[3], datetime.now(UTC))])
    return ids


async def _snapshot(world: World, ids: list[UUID]) -> dict[str, Any]:
    """Every customer's 360 and whole timeline as the API answers them."""
    seen: dict[str, Any] = {}
    for cid in ids:
        view = await world.get(f"/customers/{cid}")
        timeline = await world.get(f"/customers/{cid}/timeline", limit=500)
        seen[str(cid)] = (
            view.status_code,
            view.headers.get("location") or view.json(),
            timeline.status_code,
            timeline.headers.get("location") or timeline.json(),
        )
    return seen


async def test_a_rebuild_from_the_event_stores_equals_the_live_read_model_customer_by_customer(
    world: World, pg_admin_url: str
) -> None:
    ids = await _populate(world)
    live = await _snapshot(world, ids)
    entries = await world.read_pool.fetchval("SELECT count(*) FROM timeline_entries")
    seen_progress: list[tuple[int, int | None]] = []
    await _settled(world)

    async def while_rebuilding() -> None:
        # The old copy still serves, and /readyz would say "rebuilding".
        assert await _snapshot(world, ids) == live
        assert await rebuilding(world.read_pool) == ["timeline"]
        with pytest.raises(NotReady, match="rebuilding"):
            await check_ready(world.read_pool, LagThresholds(), datetime.now(UTC))

    rebuild = TimelineRebuild(await _owner_url(world, pg_admin_url), TEST_ROLE, batch=7, before_swap=while_rebuilding)
    report = await rebuild.run(_source(world), progress=lambda done, total: seen_progress.append((done, total)))
    assert (report.events, report.entries, report.resumed) == (entries, entries, False)
    assert seen_progress[-1] == (entries, entries)
    assert await _snapshot(world, ids) == live
    assert await rebuilding(world.read_pool) == []
    # The runtime role can still append to the new copy (grants) but not rewrite it (append-only).
    await world.record([contacts.CustomerTagged(customer_id=ids[4], occurred_at=T0, tag="after")])
    assert "after" in (await world.get(f"/customers/{ids[4]}")).json()["tags"]


class Interrupted(Exception):
    pass


async def test_an_interrupted_rebuild_resumes_and_events_arriving_meanwhile_are_not_lost(
    world: World, pg_admin_url: str
) -> None:
    ids = await _populate(world, customers=4)
    owner = await _owner_url(world, pg_admin_url)
    calls = 0

    def stop_after_two_batches(done: int, total: int | None) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise Interrupted

    await _settled(world)
    with pytest.raises(Interrupted):
        await TimelineRebuild(owner, TEST_ROLE, batch=5).run(_source(world), progress=stop_after_two_batches)
    assert await world.read_pool.fetchval("SELECT events_done FROM projection_rebuilds") == 10
    with pytest.raises(asyncpg.InsufficientPrivilegeError):  # the shadow copy is not the runtime role's
        await world.read_pool.fetchval("SELECT count(*) FROM rebuild_timeline.timeline_entries")

    late_customer = new_id()
    await world.record([registered(late_customer, "遅れて来た会社")])  # recorded in the store and projected live
    only_live = await world.record([registered(new_id(), "ライブのみ")], projected=False)
    await world.project(only_live)  # (same thing, made explicit: the consumer applies it between runs)
    live = await _snapshot(world, [*ids, late_customer])

    await _settled(world)
    report = await TimelineRebuild(owner, TEST_ROLE, batch=5).run(_source(world))
    assert report.resumed is True
    assert await _snapshot(world, [*ids, late_customer]) == live
    assert (
        await world.read_pool.fetchval(
            "SELECT count(*) FROM timeline_entries WHERE customer_id = $1", only_live[0].customer_id
        )
        == 1
    )


async def test_a_rebuild_can_be_started_over(world: World, pg_admin_url: str) -> None:
    ids = await _populate(world, customers=4)
    live = await _snapshot(world, ids)
    owner = await _owner_url(world, pg_admin_url)
    await TimelineRebuild(owner, TEST_ROLE).run(_source(world), restart=True)
    await TimelineRebuild(owner, TEST_ROLE).run(_source(world), restart=True)
    assert await _snapshot(world, ids) == live


async def test_a_rebuild_from_the_kafka_topics_from_offset_zero_equals_the_live_read_model(
    world: World, pg_admin_url: str, kafka: Kafka
) -> None:
    ids = await _populate(world, customers=5)
    live = await _snapshot(world, ids)
    suffix = secrets.token_hex(4)
    topics = {service: f"crm.test-{service}-{suffix}.v1" for service in world.stores}
    await ensure_topics(kafka.bootstrap_servers, list(topics.values()), partitions=3)
    producer = await start_producer(kafka.bootstrap_servers)
    try:
        for envelope in world.recorded:
            # Keyed by customer as the relays do; a redelivered duplicate must change nothing.
            await producer.send_and_wait(
                topics[envelope.service], encode_value(envelope), key=str(envelope.customer_id).encode()
            )
        await producer.send_and_wait(topics["contacts"], encode_value(world.recorded[0]), key=b"dup")
        await producer.send_and_wait(
            topics["deals"], b"{not an envelope", key=b"junk"
        )  # skipped, as dead-lettered live
    finally:
        await producer.stop()
    source = KafkaSource(kafka.bootstrap_servers, list(topics.values()))
    assert await source.truncated() is False
    report = await TimelineRebuild(await _owner_url(world, pg_admin_url), TEST_ROLE, batch=4).run(source)
    assert report.events == len(world.recorded) + 1
    assert report.entries == len(world.recorded)
    assert await _snapshot(world, ids) == live


async def test_the_crm_projections_rebuild_command_swaps_in_a_rebuilt_timeline(world: World, pg_admin_url: str) -> None:
    ids = await _populate(world, customers=4)
    live = await _snapshot(world, ids)
    await _settled(world)
    env = {
        **os.environ,
        "CRM_MIGRATE_DATABASE_URL": await _owner_url(world, pg_admin_url),
        **{f"CRM_{service.upper()}_DATABASE_URL": url for service, url in world.urls.items()},
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "crm_cli.main",
        "projections",
        "rebuild",
        "timeline",
        "--source",
        "event-stores",
        "--role",
        TEST_ROLE,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    assert "swapped in timeline" in output.decode()
    assert await _snapshot(world, ids) == live
    assert await world.read_pool.fetchval("SELECT finished_at IS NOT NULL FROM projection_rebuilds") is True
    status = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "crm_cli.main",
        "projections",
        "status",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    shown, _ = await status.communicate()
    assert status.returncode == 0, shown.decode()
    assert "rebuild timeline: finished" in shown.decode()
