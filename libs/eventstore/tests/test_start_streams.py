"""Starting many streams at once: each with its idempotency claim, all-or-nothing per stream, keys in bulk."""

import asyncio

import pytest
from crm_eventstore.errors import IdempotencyKeyReused
from crm_eventstore.ids import new_id
from crm_eventstore.store import AppendResult, IdempotencyClaim, NewStream, PostgresEventStore, StoredResponse
from crm_schemas.personal import is_ciphertext

from .builders import context, registered

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


def new_stream(key: str, request_hash: str = "h", name: str = "株式会社ABC商事") -> NewStream:
    cid = new_id()

    def respond(result: AppendResult) -> StoredResponse:
        return StoredResponse(201, {"id": str(cid), "version": result.version})

    return NewStream(f"customer-{cid}", [registered(cid, name)], IdempotencyClaim(key, request_hash), respond)


async def _count(store: PostgresEventStore) -> int:
    return int(await store.pool.fetchval("SELECT count(*) FROM events"))


async def test_new_streams_are_written_with_a_hash_chain_and_encrypted_personal_fields(
    event_store: PostgresEventStore,
) -> None:
    streams = [new_stream(f"k{n}", name=f"株式会社{n}") for n in range(3)]

    results = await event_store.start_streams(streams, context())

    assert [r.version for r in results if isinstance(r, AppendResult)] == [1, 1, 1]
    for stream in streams:
        [envelope] = await event_store.read_stream(stream.stream_id)
        assert envelope.prev_hash is None
        assert is_ciphertext(envelope.payload["name"])
        [event], _ = await event_store.load(stream.stream_id)
        assert event == stream.events[0]


async def test_a_second_call_with_the_same_claims_replays_the_stored_responses_and_writes_nothing(
    event_store: PostgresEventStore,
) -> None:
    first = new_stream("import:C1")
    [original] = await event_store.start_streams([first], context())
    again = NewStream(f"customer-{new_id()}", first.events, first.idempotency, first.respond)

    [replayed] = await event_store.start_streams([again], context())

    assert isinstance(original, AppendResult)
    assert isinstance(replayed, AppendResult)
    assert replayed.replayed == StoredResponse(201, {"id": str(first.events[0].customer_id), "version": 1})
    assert await _count(event_store) == 1


async def test_streams_started_in_a_callers_transaction_roll_back_with_it(event_store: PostgresEventStore) -> None:
    stream = new_stream("import:C1")

    async def start_then_fail() -> None:
        async with event_store.pool.acquire() as conn, conn.transaction():
            await event_store.start_streams([stream], context(), conn=conn)
            raise RuntimeError("caller fails")

    with pytest.raises(RuntimeError, match="caller fails"):
        await start_then_fail()

    assert await _count(event_store) == 0
    [result] = await event_store.start_streams([stream], context())
    assert isinstance(result, AppendResult)
    assert result.replayed is None


async def test_a_claim_reused_with_another_request_is_refused_for_that_stream_only(
    event_store: PostgresEventStore,
) -> None:
    await event_store.start_streams([new_stream("import:C1", "first")], context())

    reused, fresh = await event_store.start_streams(
        [new_stream("import:C1", "second"), new_stream("import:C2")], context()
    )

    assert isinstance(reused, IdempotencyKeyReused)
    assert isinstance(fresh, AppendResult)
    assert fresh.replayed is None
    assert await _count(event_store) == 2


async def test_concurrent_calls_with_the_same_claims_write_each_stream_once(event_store: PostgresEventStore) -> None:
    template = [new_stream(f"import:C{n}") for n in range(20)]

    def copy() -> list[NewStream]:
        return [NewStream(f"customer-{new_id()}", s.events, s.idempotency, s.respond) for s in template]

    outcomes = await asyncio.gather(*(event_store.start_streams(copy(), context()) for _ in range(4)))

    assert await _count(event_store) == 20
    written = [r for results in outcomes for r in results if isinstance(r, AppendResult) and r.replayed is None]
    assert len(written) == 20


async def test_a_replay_creates_no_data_key(event_store: PostgresEventStore) -> None:
    first = new_stream("import:C1")
    await event_store.start_streams([first], context())
    again = new_stream("import:C1")

    await event_store.start_streams([again], context())

    key = await event_store.keyring._pool.fetchval(
        "SELECT count(*) FROM customer_keys WHERE customer_id = $1", again.events[0].customer_id
    )
    assert key == 0


async def test_the_same_key_twice_in_one_call_is_a_programming_error(event_store: PostgresEventStore) -> None:
    with pytest.raises(ValueError, match="idempotency key of its own"):
        await event_store.start_streams([new_stream("k"), new_stream("k")], context())
