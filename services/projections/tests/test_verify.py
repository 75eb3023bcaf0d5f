"""GET /customers/{id}/timeline/verify: the chains behind a customer's timeline, recomputed from the sources."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date

import asyncpg
import pytest
import pytest_asyncio
from crm_eventstore.ids import new_id
from crm_eventstore.keyring import Keyring
from crm_eventstore.provision import database_url
from crm_schemas import contacts

from .builders import T0, World, open_world, order_placed, registered, ticket_opened

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(loop_scope="session")
async def world(pg_admin_url: str, keyring: Keyring) -> AsyncIterator[World]:
    async with open_world(pg_admin_url, keyring) as w:
        yield w


async def _tamper(pg_admin_url: str, pool: asyncpg.Pool, sql: str, *args: object) -> None:
    """Change a stored row behind the application's back, as a superuser bypassing the append-only triggers."""
    name = await pool.fetchval("SELECT current_database()")
    conn = await asyncpg.connect(database_url(pg_admin_url, name))
    try:
        await conn.execute("SET session_replication_role = replica")
        await conn.execute(sql, *args)
    finally:
        await conn.close()


async def _customer_in_three_services(world: World) -> tuple[object, list[object]]:
    cid = new_id()
    envelopes = await world.record(
        [
            registered(cid),
            contacts.CustomerTagged(customer_id=cid, occurred_at=T0, tag="VIP"),
            order_placed(cid, date(2025, 1, 1), [("1000", 1)]),
            ticket_opened(cid),
        ]
    )
    return cid, list(envelopes)


async def test_an_untouched_history_verifies(world: World) -> None:
    cid, envelopes = await _customer_in_three_services(world)
    response = await world.get(f"/customers/{cid}/timeline/verify", as_role="auditor")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["valid"] is True
    assert (body["entries_checked"], body["streams_checked"]) == (len(envelopes), 3)
    assert body["events_checked"] == len(envelopes)


async def test_an_event_altered_in_its_source_store_is_named(world: World, pg_admin_url: str) -> None:
    cid, envelopes = await _customer_in_three_services(world)
    tag = envelopes[1]
    await _tamper(
        pg_admin_url,
        world.stores["contacts"].pool,
        "UPDATE events SET payload = jsonb_set(payload, '{tag}', '\"改ざん\"') WHERE event_id = $1",
        tag.event_id,
    )
    body = (await world.get(f"/customers/{cid}/timeline/verify", as_role="auditor")).json()
    assert body["valid"] is False
    broken = body["first_broken"]
    assert (broken["event_id"], broken["service"], broken["stream_id"], broken["version"]) == (
        str(tag.event_id),
        "contacts",
        tag.stream_id,
        2,
    )
    assert "hash" in broken["reason"]


async def test_a_timeline_entry_that_no_longer_copies_its_source_event_is_named(
    world: World, pg_admin_url: str
) -> None:
    cid, envelopes = await _customer_in_three_services(world)
    order = envelopes[2]
    await _tamper(
        pg_admin_url,
        world.read_pool,
        "UPDATE timeline_entries SET data = jsonb_set(data, '{total}', '\"1\"') WHERE event_id = $1",
        order.event_id,
    )
    body = (await world.get(f"/customers/{cid}/timeline/verify", as_role="auditor")).json()
    assert body["valid"] is False
    assert (body["first_broken"]["event_id"], body["first_broken"]["service"]) == (str(order.event_id), "deals")
    assert "differs" in body["first_broken"]["reason"]


async def test_a_deleted_source_event_breaks_the_chain(world: World, pg_admin_url: str) -> None:
    cid = new_id()
    envelopes = await world.record(
        [registered(cid), *(contacts.CustomerTagged(customer_id=cid, occurred_at=T0, tag=f"t{i}") for i in range(3))]
    )
    await _tamper(
        pg_admin_url, world.stores["contacts"].pool, "DELETE FROM events WHERE event_id = $1", envelopes[1].event_id
    )
    body = (await world.get(f"/customers/{cid}/timeline/verify", as_role="auditor")).json()
    assert body["valid"] is False
    assert body["first_broken"]["version"] == 2
    assert "missing" in body["first_broken"]["reason"]


async def test_without_the_source_stores_verify_says_so(world: World) -> None:
    cid, _ = await _customer_in_three_services(world)
    sources = world.client._transport.app.state.sources  # type: ignore[attr-defined]
    world.client._transport.app.state.sources = {}  # type: ignore[attr-defined]
    try:
        response = await world.get(f"/customers/{cid}/timeline/verify", as_role="auditor")
    finally:
        world.client._transport.app.state.sources = sources  # type: ignore[attr-defined]
    assert response.status_code == 503
    assert (await world.get(f"/customers/{new_id()}/timeline/verify", as_role="auditor")).status_code == 404
