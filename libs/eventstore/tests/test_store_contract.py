"""Contract of the PostgreSQL event store: appends, conflicts, idempotency, reads, append-only, crypto."""

import asyncio

import asyncpg
import pytest
from crm_eventstore.errors import IdempotencyKeyReused, KeyDestroyed, WrongExpectedVersion
from crm_eventstore.ids import new_id
from crm_eventstore.provision import database_url
from crm_eventstore.store import (
    IdempotencyClaim,
    PostgresEventStore,
    StoredResponse,
    StreamState,
    verify_chains,
)
from crm_schemas.personal import is_ciphertext

from .builders import context, registered

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


async def _superuser(store: PostgresEventStore, admin_url: str) -> asyncpg.Connection:
    database = await store.pool.fetchval("SELECT current_database()")
    return await asyncpg.connect(database_url(admin_url, database))


async def _count(store: PostgresEventStore) -> int:
    return int(await store.pool.fetchval("SELECT count(*) FROM events"))


async def test_appended_events_read_back_in_version_order_with_a_hash_chain(
    event_store: PostgresEventStore,
) -> None:
    cid = new_id()
    first = await event_store.append(f"customer-{cid}", 0, [registered(cid)], context())
    second = await event_store.append(
        f"customer-{cid}",
        StreamState(first.version, first.events[-1].hash),
        [registered(cid, "二番目")],
        context(),
    )
    stream = await event_store.read_stream(f"customer-{cid}")
    assert [e.version for e in stream] == [1, 2]
    assert stream[0].prev_hash is None
    assert stream[1].prev_hash == stream[0].hash
    assert second.version == 2
    assert stream[0].actor.subject == "tester"
    assert str(stream[0].event_id)[14] == "7"  # UUIDv7


async def test_a_stale_expected_version_fails_with_the_current_version_and_writes_nothing(
    event_store: PostgresEventStore,
) -> None:
    cid = new_id()
    await event_store.append(f"customer-{cid}", 0, [registered(cid)], context())
    await event_store.append(f"customer-{cid}", 1, [registered(cid)], context())
    before = await _count(event_store)
    with pytest.raises(WrongExpectedVersion) as err:
        await event_store.append(f"customer-{cid}", 1, [registered(cid), registered(cid)], context())
    assert err.value.current == 2
    assert err.value.expected == 1
    assert await _count(event_store) == before


async def test_a_stale_stream_state_is_caught_by_the_database(event_store: PostgresEventStore) -> None:
    cid = new_id()
    first = await event_store.append(f"customer-{cid}", 0, [registered(cid)], context())
    seen = StreamState(first.version, first.events[-1].hash)
    await event_store.append(f"customer-{cid}", seen, [registered(cid)], context())
    with pytest.raises(WrongExpectedVersion) as err:
        await event_store.append(f"customer-{cid}", seen, [registered(cid)], context())
    assert err.value.current == 2


async def test_a_forged_prev_hash_is_rejected(event_store: PostgresEventStore) -> None:
    cid = new_id()
    await event_store.append(f"customer-{cid}", 0, [registered(cid)], context())
    with pytest.raises(WrongExpectedVersion):
        await event_store.append(f"customer-{cid}", StreamState(1, "f" * 64), [registered(cid)], context())
    assert len(await event_store.read_stream(f"customer-{cid}")) == 1


async def test_concurrent_appends_at_the_same_version_let_exactly_one_win(
    event_store: PostgresEventStore,
) -> None:
    cid = new_id()
    await event_store.append(f"customer-{cid}", 0, [registered(cid)], context())
    results = await asyncio.gather(
        *(event_store.append(f"customer-{cid}", 1, [registered(cid)], context()) for _ in range(10)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(isinstance(r, WrongExpectedVersion) for r in results if isinstance(r, Exception))
    assert [e.version for e in await event_store.read_stream(f"customer-{cid}")] == [1, 2]


async def test_a_multi_event_append_is_all_or_nothing(event_store: PostgresEventStore) -> None:
    cid = new_id()
    await event_store.append(f"customer-{cid}", 0, [registered(cid)], context())
    stale = StreamState(0)
    with pytest.raises(WrongExpectedVersion):
        await event_store.append(f"customer-{cid}", stale, [registered(cid)] * 3, context())
    assert len(await event_store.read_stream(f"customer-{cid}")) == 1


def _respond(result: object) -> StoredResponse:
    return StoredResponse(201, {"version": getattr(result, "version", None)})


async def test_a_repeated_idempotency_key_returns_the_first_result_and_appends_nothing(
    event_store: PostgresEventStore,
) -> None:
    cid = new_id()
    claim = IdempotencyClaim("tester:key-1", "request-a")
    first = await event_store.append(
        f"customer-{cid}", 0, [registered(cid)], context(), idempotency=claim, respond=_respond
    )
    assert first.replayed is None
    other = new_id()
    again = await event_store.append(
        f"customer-{other}", 0, [registered(other)], context(), idempotency=claim, respond=_respond
    )
    assert again.replayed == StoredResponse(201, {"version": 1})
    assert await event_store.read_stream(f"customer-{other}") == []
    assert await event_store.find_response(claim) == StoredResponse(201, {"version": 1})


async def test_reusing_an_idempotency_key_for_another_request_is_refused(
    event_store: PostgresEventStore,
) -> None:
    cid = new_id()
    await event_store.append(
        f"customer-{cid}",
        0,
        [registered(cid)],
        context(),
        idempotency=IdempotencyClaim("tester:k2", "a"),
        respond=_respond,
    )
    with pytest.raises(IdempotencyKeyReused):
        await event_store.append(
            f"customer-{cid}",
            1,
            [registered(cid)],
            context(),
            idempotency=IdempotencyClaim("tester:k2", "b"),
            respond=_respond,
        )


async def test_concurrent_duplicates_with_one_idempotency_key_append_once(
    event_store: PostgresEventStore,
) -> None:
    claim = IdempotencyClaim("tester:k3", "same")
    ids = [new_id() for _ in range(8)]
    results = await asyncio.gather(
        *(
            event_store.append(f"customer-{c}", 0, [registered(c)], context(), idempotency=claim, respond=_respond)
            for c in ids
        )
    )
    assert sum(r.replayed is None for r in results) == 1
    assert await _count(event_store) == 1


async def test_personal_fields_are_ciphertext_in_the_table_and_decrypt_on_load(
    event_store: PostgresEventStore,
) -> None:
    cid = new_id()
    await event_store.append(f"customer-{cid}", 0, [registered(cid, email="taro@example.jp")], context())
    raw = await event_store.pool.fetchval("SELECT payload::text FROM events WHERE customer_id = $1", cid)
    assert "ABC商事" not in raw
    assert "taro@example.jp" not in raw
    stored = (await event_store.read_stream(f"customer-{cid}"))[0]
    assert is_ciphertext(stored.payload["name"])
    assert stored.payload["kind"] == "company"
    events, head = await event_store.load(f"customer-{cid}")
    assert events[0].name == "株式会社ABC商事"  # type: ignore[attr-defined]
    assert head.version == 1


async def test_ciphertext_is_bound_to_its_event_and_field(event_store: PostgresEventStore) -> None:
    cid = new_id()
    await event_store.append(f"customer-{cid}", 0, [registered(cid, email="a@example.jp")], context())
    stored = (await event_store.read_stream(f"customer-{cid}"))[0]
    swapped = {**stored.payload, "email": stored.payload["name"]}
    with pytest.raises(Exception, match=r"InvalidTag|^$"):
        await event_store.keyring.decrypt_fields(cid, stored.event_id, swapped)


async def test_a_destroyed_key_makes_personal_data_unreadable_but_the_chain_still_verifies(
    event_store: PostgresEventStore,
) -> None:
    cid = new_id()
    await event_store.append(f"customer-{cid}", 0, [registered(cid)], context())
    assert await event_store.keyring.destroy(cid)
    with pytest.raises(KeyDestroyed):
        await event_store.load(f"customer-{cid}")
    checked, broken = await verify_chains(event_store.pool)
    assert broken is None
    assert checked >= 1


async def test_the_service_role_cannot_update_delete_or_truncate_events(
    event_store: PostgresEventStore,
) -> None:
    cid = new_id()
    await event_store.append(f"customer-{cid}", 0, [registered(cid)], context())
    for statement in ("UPDATE events SET type = 'x'", "DELETE FROM events", "TRUNCATE events"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await event_store.pool.execute(statement)


async def test_even_the_owner_is_stopped_by_the_append_only_triggers(
    event_store: PostgresEventStore, pg_admin_url: str
) -> None:
    cid = new_id()
    await event_store.append(f"customer-{cid}", 0, [registered(cid)], context())
    admin = await _superuser(event_store, pg_admin_url)
    try:
        for statement in ("UPDATE events SET type = 'x'", "DELETE FROM events", "TRUNCATE events"):
            with pytest.raises(asyncpg.PostgresError, match="append-only"):
                await admin.execute(statement)
    finally:
        await admin.close()


async def test_verify_names_the_first_event_a_superuser_altered(
    event_store: PostgresEventStore, pg_admin_url: str
) -> None:
    cid = new_id()
    for version in range(3):
        await event_store.append(f"customer-{cid}", version, [registered(cid)], context())
    target = (await event_store.read_stream(f"customer-{cid}"))[1]
    admin = await _superuser(event_store, pg_admin_url)
    try:
        await admin.execute("SET session_replication_role = replica")  # bypasses the triggers
        await admin.execute(
            "UPDATE events SET payload = jsonb_set(payload, '{kind}', '\"person\"') WHERE event_id = $1",
            target.event_id,
        )
    finally:
        await admin.close()
    _, broken = await verify_chains(event_store.pool)
    assert broken is not None
    assert broken.event_id == target.event_id
    assert broken.version == 2


async def test_read_all_returns_committed_events_in_global_order(event_store: PostgresEventStore) -> None:
    ids = [new_id() for _ in range(5)]
    for cid in ids:
        await event_store.append(f"customer-{cid}", 0, [registered(cid)], context())
    everything = [e async for e in event_store.iter_all(batch=2)]
    assert [e.envelope.customer_id for e in everything] == ids
    positions = [e.global_position for e in everything]
    assert positions == sorted(positions)
