"""Ticket use cases: load the stream, fold, decide, append (and keep the ticket's SLA clock current)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from uuid import UUID

import asyncpg
from crm_eventstore.errors import WrongExpectedVersion
from crm_eventstore.store import (
    AppendResult,
    CommandContext,
    IdempotencyClaim,
    PostgresEventStore,
    StoredResponse,
    StreamState,
)
from crm_schemas.base import DomainEvent

from crm_support.domain.commands import LinkTicket, OpenTicket
from crm_support.domain.sla import SlaClock, SlaPolicy
from crm_support.domain.ticket import (
    DEFAULT_POLICY,
    Command,
    CustomerStanding,
    DomainError,
    Ticket,
    decide,
    decide_open,
    evolve,
    fold,
    sla_clock,
    stream_id,
)


class CustomerDirectory(Protocol):
    """Which customers exist, as far as support knows (its replica of the customer master)."""

    async def standing(self, customer_id: UUID) -> CustomerStanding:
        """Whether the customer is known, merged away, and its active contact persons."""
        ...


class ClockIndex(Protocol):
    """Where the SLA scheduler finds running deadlines."""

    async def upsert(self, conn: asyncpg.Connection, clock: SlaClock, version: int) -> None:
        """Record a ticket's clock, inside the caller's transaction."""
        ...


@dataclass(frozen=True)
class Outcome:
    """The result of a command: what was appended and the ticket after it."""

    result: AppendResult
    ticket: Ticket | None


def _after(state: Ticket, events: Sequence[DomainEvent]) -> Ticket:
    for event in events:
        state = evolve(state, event)
    return state


class TicketCommands:
    """Runs ticket commands against the support event store."""

    def __init__(
        self,
        store: PostgresEventStore,
        customers: CustomerDirectory | None = None,
        clocks: ClockIndex | None = None,
        policy: SlaPolicy = DEFAULT_POLICY,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.customers = customers
        self.clocks = clocks
        self.policy = policy
        self._clock = clock

    async def load(self, ticket_id: UUID) -> Ticket:
        """The ticket's current write-side state (not opened if the stream is empty)."""
        events, _ = await self.store.load(stream_id(ticket_id))
        return fold(ticket_id, events)

    async def _load(self, ticket_id: UUID) -> tuple[Ticket, StreamState]:
        events, head = await self.store.load(stream_id(ticket_id))
        return fold(ticket_id, events), head

    async def _ticket_exists(self, ticket_id: UUID, field: str) -> None:
        head = await self.store.stream_state(stream_id(ticket_id))
        if head.version == 0:
            raise DomainError(f"ticket {ticket_id} does not exist", field=field)

    async def open(
        self,
        ticket_id: UUID,
        command: OpenTicket,
        ctx: CommandContext,
        *,
        idempotency: IdempotencyClaim | None = None,
        respond: Callable[[AppendResult], StoredResponse] | None = None,
    ) -> Outcome:
        """Open a ticket for a customer that support's replica knows."""
        if idempotency is not None:
            replay = await self.store.find_response(idempotency)
            if replay is not None:
                return Outcome(AppendResult(stream_id(ticket_id), 0, replayed=replay), None)
        if self.customers is None:
            raise RuntimeError("opening tickets needs a customer directory")
        standing = await self.customers.standing(command.customer_id)
        state, head = await self._load(ticket_id)
        events = decide_open(command, state, standing, self._clock(), self.policy)
        if command.related_ticket_id is not None:
            await self._ticket_exists(command.related_ticket_id, "related_ticket_id")
        return await self._append(ticket_id, state, head, events, ctx, idempotency, respond)

    async def execute(
        self,
        ticket_id: UUID,
        command: Command,
        ctx: CommandContext,
        *,
        expected_version: int | None = None,
        idempotency: IdempotencyClaim | None = None,
        respond: Callable[[AppendResult], StoredResponse] | None = None,
    ) -> Outcome:
        """Decide a command on the ticket's current state and append the result."""
        if idempotency is not None:
            replay = await self.store.find_response(idempotency)
            if replay is not None:
                return Outcome(AppendResult(stream_id(ticket_id), 0, replayed=replay), None)
        state, head = await self._load(ticket_id)
        if expected_version is not None and expected_version != head.version:
            raise WrongExpectedVersion(stream_id(ticket_id), expected_version, head.version)
        events = decide(command, state, self._clock(), self.policy)
        if isinstance(command, LinkTicket) and command.ticket_id is not None and events:
            await self._ticket_exists(command.ticket_id, "ticket_id")
        return await self._append(ticket_id, state, head, events, ctx, idempotency, respond)

    async def _append(
        self,
        ticket_id: UUID,
        state: Ticket,
        head: StreamState,
        events: list[DomainEvent],
        ctx: CommandContext,
        idempotency: IdempotencyClaim | None,
        respond: Callable[[AppendResult], StoredResponse] | None,
    ) -> Outcome:
        if not events and idempotency is None:
            return Outcome(AppendResult(stream_id(ticket_id), head.version), state)
        async with self.store.pool.acquire() as conn, conn.transaction():
            result = await self.store.append(
                stream_id(ticket_id), head, events, ctx, idempotency=idempotency, respond=respond, conn=conn
            )
            after = _after(state, events)
            if self.clocks is not None and result.replayed is None and events:
                # Same transaction as the append: the scheduler never sees a deadline that the
                # ticket's stream does not (or no longer) has.
                await self.clocks.upsert(conn, sla_clock(after), after.version)
        return Outcome(result, after)
