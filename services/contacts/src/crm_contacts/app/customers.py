"""Customer use cases: load the stream, fold, decide, append (and keep the match directory current)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from uuid import UUID

import asyncpg
from crm_eventstore.errors import KeyDestroyed, WrongExpectedVersion
from crm_eventstore.store import (
    AppendResult,
    CommandContext,
    IdempotencyClaim,
    PostgresEventStore,
    StoredResponse,
    StreamState,
)
from crm_schemas.base import DomainEvent

from crm_contacts.domain.commands import EraseCustomer, MergeCustomer, UnmergeCustomer
from crm_contacts.domain.customer import (
    Command,
    Customer,
    UnknownCustomer,
    decide,
    decide_erase,
    decide_merge,
    decide_unmerge,
    evolve,
    fold,
    shredded,
    stream_id,
)


class Directory(Protocol):
    """The write-side index of current customers used for duplicate detection (名寄せ)."""

    async def upsert(self, conn: asyncpg.Connection, customer: Customer) -> None:
        """Record a customer's current state, inside the caller's transaction."""
        ...

    async def upsert_many(self, conn: asyncpg.Connection, customers: Iterable[Customer]) -> None:
        """upsert() for many customers at once, inside the caller's transaction."""
        ...

    async def forget(self, conn: asyncpg.Connection, customer_id: UUID) -> None:
        """Remove an erased customer's entry, inside the caller's transaction."""
        ...


@dataclass(frozen=True)
class Outcome:
    """The result of a command: what was appended and the customer after it."""

    result: AppendResult
    customer: Customer | None


def _after(state: Customer, events: Sequence[DomainEvent]) -> Customer:
    for event in events:
        state = evolve(state, event)
    return state


class CustomerCommands:
    """Runs customer commands against the contacts event store."""

    def __init__(
        self,
        store: PostgresEventStore,
        directory: Directory | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.directory = directory
        self._clock = clock

    async def load(self, customer_id: UUID) -> Customer:
        """The customer's current write-side state (unregistered if the stream is empty; `erased` after erasure)."""
        state, _ = await self._load(customer_id)
        return state

    async def _load(self, customer_id: UUID) -> tuple[Customer, StreamState]:
        try:
            events, head = await self.store.load(stream_id(customer_id))
        except KeyDestroyed:
            # Crypto-shredded: the personal fields cannot be decrypted any more, so the state is
            # rebuilt from what the events say in the clear (kind, merge links, the erasure itself).
            envelopes = await self.store.read_stream(stream_id(customer_id))
            head = StreamState(envelopes[-1].version, envelopes[-1].hash) if envelopes else StreamState(0)
            return shredded(customer_id, [(e.type, e.payload) for e in envelopes]), head
        return fold(customer_id, events), head

    @staticmethod
    def _check_version(customer_id: UUID, expected: int | None, head: StreamState) -> None:
        if expected is not None and expected != head.version:
            raise WrongExpectedVersion(stream_id(customer_id), expected, head.version)

    async def handle(
        self,
        customer_id: UUID,
        command: Command,
        ctx: CommandContext,
        *,
        expected_version: int | None = None,
        idempotency: IdempotencyClaim | None = None,
        respond: Callable[[AppendResult], StoredResponse] | None = None,
    ) -> AppendResult:
        """Decide a command on the customer's current state and append the result."""
        return (
            await self.execute(
                customer_id,
                command,
                ctx,
                expected_version=expected_version,
                idempotency=idempotency,
                respond=respond,
            )
        ).result

    async def execute(
        self,
        customer_id: UUID,
        command: Command,
        ctx: CommandContext,
        *,
        expected_version: int | None = None,
        idempotency: IdempotencyClaim | None = None,
        respond: Callable[[AppendResult], StoredResponse] | None = None,
    ) -> Outcome:
        """Like handle(), also returning the customer's state after the command."""
        if idempotency is not None:
            replay = await self.store.find_response(idempotency)
            if replay is not None:
                return Outcome(AppendResult(stream_id(customer_id), 0, replayed=replay), None)
        state, head = await self._load(customer_id)
        self._check_version(customer_id, expected_version, head)
        events = decide(command, state, self._clock())
        if not events and idempotency is None:
            return Outcome(AppendResult(stream_id(customer_id), head.version), state)
        async with self.store.pool.acquire() as conn, conn.transaction():
            result = await self.store.append(
                stream_id(customer_id), head, events, ctx, idempotency=idempotency, respond=respond, conn=conn
            )
            after = _after(state, events)
            if self.directory is not None and result.replayed is None and events:
                await self.directory.upsert(conn, after)
        return Outcome(result, after)

    async def merge(
        self,
        survivor_id: UUID,
        command: MergeCustomer | UnmergeCustomer,
        ctx: CommandContext,
        *,
        expected_version: int | None = None,
        idempotency: IdempotencyClaim | None = None,
        respond: Callable[[AppendResult], StoredResponse] | None = None,
    ) -> Outcome:
        """Merge (or unmerge) a duplicate: both streams change in one transaction."""
        if idempotency is not None:
            replay = await self.store.find_response(idempotency)
            if replay is not None:
                return Outcome(AppendResult(stream_id(survivor_id), 0, replayed=replay), None)
        survivor, survivor_head = await self._load(survivor_id)
        if not survivor.registered:
            raise UnknownCustomer(f"customer {survivor_id} does not exist", field="id")
        absorbed, absorbed_head = await self._load(command.absorbed_id)
        self._check_version(survivor_id, expected_version, survivor_head)
        now = self._clock()
        if isinstance(command, MergeCustomer):
            survivor_events, absorbed_events = decide_merge(command, survivor, absorbed, now)
        else:
            survivor_events, absorbed_events = decide_unmerge(command, survivor, absorbed, now)
        try:
            async with self.store.pool.acquire() as conn, conn.transaction():
                # The absorbed stream is appended first and without idempotency: the claim rides on the
                # survivor's append, and both commit or neither does.
                await self.store.append(stream_id(command.absorbed_id), absorbed_head, absorbed_events, ctx, conn=conn)
                result = await self.store.append(
                    stream_id(survivor_id),
                    survivor_head,
                    survivor_events,
                    ctx,
                    idempotency=idempotency,
                    respond=respond,
                    conn=conn,
                )
                if result.replayed is not None:
                    raise _Replayed(result)
                survivor_after = _after(survivor, survivor_events)
                if self.directory is not None:
                    await self.directory.upsert(conn, survivor_after)
                    await self.directory.upsert(conn, _after(absorbed, absorbed_events))
        except _Replayed as replayed:
            return Outcome(replayed.result, None)
        return Outcome(result, survivor_after)

    async def erase(
        self,
        customer_id: UUID,
        command: EraseCustomer,
        ctx: CommandContext,
        *,
        expected_version: int | None = None,
        idempotency: IdempotencyClaim | None = None,
        respond: Callable[[AppendResult], StoredResponse] | None = None,
    ) -> tuple[AppendResult, list[UUID]]:
        """Erase a customer and the duplicates merged into it; (result, every customer id erased).

        CustomerErased is appended and the directory entries deleted in one transaction; then the
        data keys are destroyed (crypto-shredding), so every personal field of their events in every
        service and read model is unreadable for good while the events and hash chains stay.
        """
        store = self.store
        if idempotency is not None:
            replay = await store.find_response(idempotency)
            if replay is not None:
                return AppendResult(stream_id(customer_id), 0, replayed=replay), []
        state, head = await self._load(customer_id)
        if not state.registered:
            raise UnknownCustomer(f"customer {customer_id} does not exist", field="id")
        self._check_version(customer_id, expected_version, head)
        loaded = [await self._load(absorbed) for absorbed in sorted(state.merges, key=str)]
        decided = decide_erase(command, state, [s for s, _ in loaded], self._clock())
        heads = {s.id: h for s, h in loaded} | {customer_id: head}
        erased = [customer_id, *(s.id for s, _ in loaded if s.merged_into == customer_id)]
        result = AppendResult(stream_id(customer_id), head.version)
        try:
            async with store.pool.acquire() as conn, conn.transaction():
                # The erasure is recorded before any key is destroyed: a crash in between leaves an
                # erasure on record whose retry destroys the keys; never shredded data without a record.
                for other, events in decided.items():
                    if other != customer_id:
                        await store.append(stream_id(other), heads[other], events, ctx, conn=conn)
                result = await store.append(
                    stream_id(customer_id),
                    head,
                    decided.get(customer_id, []),
                    ctx,
                    idempotency=idempotency,
                    respond=respond,
                    conn=conn,
                )
                if result.replayed is not None:
                    raise _Replayed(result)
                if self.directory is not None:
                    for erased_id in erased:
                        await self.directory.forget(conn, erased_id)
        except _Replayed as replayed:
            return replayed.result, []
        for erased_id in erased:
            await store.keyring.destroy(erased_id)
        return result, erased


class _Replayed(Exception):
    """Rolls back a merge or erasure whose Idempotency-Key turned out to be already used."""

    def __init__(self, result: AppendResult) -> None:
        super().__init__("replayed")
        self.result = result
