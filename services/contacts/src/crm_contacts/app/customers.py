"""Customer use cases: load the stream, fold, decide, append."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID

from crm_eventstore.store import (
    AppendResult,
    CommandContext,
    IdempotencyClaim,
    PostgresEventStore,
    StoredResponse,
)

from crm_contacts.domain.customer import Command, Customer, decide, fold, stream_id


class CustomerCommands:
    """Runs customer commands against the contacts event store."""

    def __init__(self, store: PostgresEventStore, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.store = store
        self._clock = clock

    async def load(self, customer_id: UUID) -> Customer:
        """The customer's current write-side state (unregistered if the stream is empty)."""
        events, _ = await self.store.load(stream_id(customer_id))
        return fold(customer_id, events)

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
        if idempotency is not None:
            replay = await self.store.find_response(idempotency)
            if replay is not None:
                return AppendResult(stream_id(customer_id), 0, replayed=replay)
        events, head = await self.store.load(stream_id(customer_id))
        state = fold(customer_id, events)
        if expected_version is not None and expected_version != head.version:
            from crm_eventstore.errors import WrongExpectedVersion

            raise WrongExpectedVersion(stream_id(customer_id), expected_version, head.version)
        new_events = decide(command, state, self._clock())
        return await self.store.append(
            stream_id(customer_id), head, new_events, ctx, idempotency=idempotency, respond=respond
        )
