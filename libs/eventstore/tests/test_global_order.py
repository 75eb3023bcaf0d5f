"""The global order under concurrency: late commits are never skipped, streams stay in order."""

import asyncio
import random
from uuid import UUID

import pytest
from crm_eventstore.errors import WrongExpectedVersion
from crm_eventstore.ids import new_id
from crm_eventstore.store import PostgresEventStore, StreamState

from .builders import context, registered

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


async def test_an_older_transaction_appending_after_a_newer_one_keeps_the_stream_in_order(
    event_store: PostgresEventStore,
) -> None:
    cid = new_id()
    stream = f"customer-{cid}"
    async with event_store.pool.acquire() as older:
        tx = older.transaction()
        await tx.start()
        # Writing first gives this transaction an xid older than the one that appends v1 below.
        await older.execute("INSERT INTO idempotency_keys (key, request_hash) VALUES ('early-write', 'x')")
        first = await event_store.append(stream, 0, [registered(cid, "v1")], context())
        assert await event_store.read_all() == []  # v1 waits below the horizon of the open transaction
        await event_store.append(
            stream, StreamState(1, first.events[-1].hash), [registered(cid, "v2")], context(), conn=older
        )
        await tx.commit()
    order = [e.envelope.version for e in await event_store.read_all()]
    assert order == [1, 2]


async def test_sixteen_writers_with_slow_and_rolled_back_transactions_are_tailed_without_gaps(
    event_store: PostgresEventStore,
) -> None:
    rng = random.Random(7)
    committed: set[UUID] = set()
    rolled_back: set[UUID] = set()
    writers_done = asyncio.Event()
    shared = [new_id() for _ in range(4)]
    conflicts: list[int] = []

    async def writer(n: int) -> None:
        own = [new_id() for _ in range(3)]
        for i in range(25):
            cid = rng.choice(own + shared)
            stream = f"customer-{cid}"
            mode = rng.random()
            try:
                if mode < 0.15 or (n % 4 == 0 and i % 5 == 0):
                    # Slow transaction: holds the horizon back for hundreds of milliseconds.
                    async with event_store.pool.acquire() as conn:
                        tx = conn.transaction()
                        await tx.start()
                        state = await event_store.stream_state(stream, conn)
                        result = await event_store.append(stream, state, [registered(cid)], context(), conn=conn)
                        await asyncio.sleep(rng.uniform(0.1, 0.4))
                        if rng.random() < 0.3:
                            await tx.rollback()
                            rolled_back.update(e.event_id for e in result.events)
                        else:
                            await tx.commit()
                            committed.update(e.event_id for e in result.events)
                else:
                    state = await event_store.stream_state(stream)
                    result = await event_store.append(stream, state, [registered(cid)] * rng.randint(1, 3), context())
                    committed.update(e.event_id for e in result.events)
            except WrongExpectedVersion:
                conflicts.append(n)
            await asyncio.sleep(rng.uniform(0, 0.01))

    seen: list[tuple[UUID, str, int]] = []

    async def reader() -> None:
        after = (0, 0)
        last_read = False
        while True:
            # The horizon is cluster-wide: another database's long transaction on a shared server
            # holds it back, so "a few empty reads" does not mean "caught up". Once the writers are
            # done and the horizon has passed every row, one more read drains what is left.
            last_read = last_read or (writers_done.is_set() and await horizon_passed_every_row())
            batch = await event_store.read_all(after, limit=50)
            for item in batch:
                seen.append((item.envelope.event_id, item.envelope.stream_id, item.envelope.version))
            if batch:
                after = batch[-1].global_position
            elif last_read:
                return
            await asyncio.sleep(0.003)

    async def horizon_passed_every_row() -> bool:
        passed: bool = await event_store.pool.fetchval(
            "SELECT coalesce(max(tx_id) < pg_snapshot_xmin(pg_current_snapshot()), true) FROM events"
        )
        return passed

    reading = asyncio.create_task(reader())
    await asyncio.gather(*(writer(n) for n in range(16)))
    writers_done.set()
    await reading

    ids = [s[0] for s in seen]
    assert len(committed) > 300
    assert conflicts, "the shared streams should have produced some optimistic-concurrency conflicts"
    assert len(ids) == len(set(ids)), "an event was read twice"
    assert set(ids) == committed, f"skipped {len(committed - set(ids))}, phantom {len(set(ids) - committed)}"
    assert not rolled_back & set(ids)
    last_version: dict[str, int] = {}
    for _, stream, version in seen:
        assert version == last_version.get(stream, 0) + 1, f"{stream} out of order at v{version}"
        last_version[stream] = version
