"""Deals use cases: check references, load the stream, fold, decide, append (and keep deadlines current)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar
from uuid import UUID

import asyncpg
from crm_eventstore.errors import WrongExpectedVersion
from crm_eventstore.ids import new_id
from crm_eventstore.store import AppendResult, CommandContext, IdempotencyClaim, PostgresEventStore, StoredResponse
from crm_schemas.base import DomainEvent

from crm_deals.app.aggregates import ACTIVITY, BUDGET, CONTRACT, DEAL, INVOICE, ORDER, PAYMENT, Deadline, Kind, fold
from crm_deals.domain import activity, budget, contract, deal, invoice, order
from crm_deals.domain.commands import (
    IssueInvoice,
    OpenDeal,
    PlaceOrder,
    RecordActivity,
    RecordPayment,
    SetBudget,
    SetNextAction,
    SignContract,
)
from crm_deals.domain.customers import CustomerStanding
from crm_deals.domain.errors import DomainError
from crm_deals.domain.pipeline import DEFAULT_PIPELINES, Pipelines

S = TypeVar("S")

Respond = Callable[[AppendResult], StoredResponse]


class CustomerDirectory(Protocol):
    """Which customers exist, as far as the deals service knows (its replica of the customer master)."""

    async def standing(self, customer_id: UUID) -> CustomerStanding:
        """Whether the customer is known, merged away, and its active contact persons."""
        ...


class DeadlineIndex(Protocol):
    """Where the scheduler finds contract end dates and invoice due dates."""

    async def upsert(self, conn: asyncpg.Connection, deadline: Deadline, version: int) -> None:
        """Record an aggregate's deadline, inside the caller's transaction."""
        ...


@dataclass(frozen=True)
class Outcome(Generic[S]):
    """What a command appended and the aggregate after it (None when an idempotent reply was replayed)."""

    result: AppendResult
    state: S | None


@dataclass(frozen=True)
class Owner:
    """Whom a record belongs to, for record-level sharing (docs/adr/0011): owner subject, team, department."""

    owner: str | None
    team: str | None
    department: str | None


@dataclass(frozen=True)
class Call:
    """What every command call carries beside the command: who, If-Match, Idempotency-Key, the reply to store."""

    ctx: CommandContext
    expected_version: int | None = None
    idempotency: IdempotencyClaim | None = None
    respond: Respond | None = None


class DealsCommands:
    """Runs the deals service's commands against its event store."""

    def __init__(
        self,
        store: PostgresEventStore,
        customers: CustomerDirectory | None = None,
        deadlines: DeadlineIndex | None = None,
        pipelines: Pipelines = DEFAULT_PIPELINES,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.customers = customers
        self.deadlines = deadlines
        self.pipelines = pipelines
        self._clock = clock

    # --- reading ---------------------------------------------------------------------------------

    async def load(self, kind: Kind[S], aggregate_id: UUID) -> S:
        """The aggregate's current write-side state (empty if its stream does not exist)."""
        events, _ = await self.store.load(kind.stream_id(aggregate_id))
        return fold(kind, aggregate_id, events)

    async def owned(self, kind: Kind[S], aggregate_id: UUID) -> tuple[S, Owner | None]:
        """The aggregate and whom it belongs to (None when its stream does not exist).

        A deal belongs to its owner and team (as they are now) and to the department of whoever
        opened it; activities, contracts, orders and invoices take the ownership of the deal (or the
        order or contract) they belong to, else of whoever recorded them.
        """
        envelopes = await self.store.read_stream(kind.stream_id(aggregate_id))
        state = fold(kind, aggregate_id, [await self.store.decode(e) for e in envelopes])
        if not envelopes:
            return state, None
        opener = envelopes[0].actor
        recorded_by = Owner(opener.subject, opener.team, opener.department)
        links: list[tuple[Kind[Any], UUID | None]] = []
        match state:
            case deal.Deal():
                return state, Owner(state.owner, state.team, opener.department)
            case activity.Activity():
                links = [(DEAL, state.deal_id)]
                recorded_by = Owner(state.staff, opener.team, opener.department)
            case contract.Contract():
                links = [(DEAL, state.deal_id)]
                recorded_by = Owner(state.owner or opener.subject, opener.team, opener.department)
            case order.Order():
                links = [(DEAL, state.deal_id), (CONTRACT, state.contract_id)]
            case invoice.Invoice():
                links = [(ORDER, state.order_id), (CONTRACT, state.contract_id)]
            case _:
                pass
        for link_kind, link_id in links:
            if link_id is not None:
                _, linked = await self.owned(link_kind, link_id)
                if linked is not None:
                    return state, linked
        return state, recorded_by

    async def _standing(self, customer_id: UUID) -> CustomerStanding:
        if self.customers is None:
            raise RuntimeError("commands that create records for a customer need a customer directory")
        return await self.customers.standing(customer_id)

    async def _linked(self, kind: Kind[Any], aggregate_id: UUID | None, customer_id: UUID, field: str) -> None:
        """A referenced deal/contract/order must exist and belong to the same customer."""
        if aggregate_id is None:
            return
        state = await self.load(kind, aggregate_id)
        if getattr(state, "customer_id", None) is None:
            raise DomainError(f"{kind.name} {aggregate_id} does not exist", field=field)
        if state.customer_id != customer_id:
            raise DomainError(f"{kind.name} {aggregate_id} belongs to another customer", field=field)

    # --- the one path every command takes -------------------------------------------------------------

    async def _run(
        self,
        kind: Kind[S],
        aggregate_id: UUID,
        decide: Callable[[S, datetime], Sequence[DomainEvent]],
        call: Call,
        stream_id: str | None = None,
    ) -> Outcome[S]:
        stream = stream_id or kind.stream_id(aggregate_id)
        if call.idempotency is not None:
            replay = await self.store.find_response(call.idempotency)
            if replay is not None:
                return Outcome(AppendResult(stream, 0, replayed=replay), None)
        events_so_far, head = await self.store.load(stream)
        if call.expected_version is not None and call.expected_version != head.version:
            raise WrongExpectedVersion(stream, call.expected_version, head.version)
        state = fold(kind, aggregate_id, events_so_far)
        events = list(decide(state, self._clock()))
        if not events and call.idempotency is None:
            return Outcome(AppendResult(stream, head.version), state)
        async with self.store.pool.acquire() as conn, conn.transaction():
            result = await self.store.append(
                stream, head, events, call.ctx, idempotency=call.idempotency, respond=call.respond, conn=conn
            )
            after = state
            for event in events:
                after = kind.evolve(after, event)
            if kind.deadline is not None and self.deadlines is not None and events and result.replayed is None:
                # Same transaction as the append: the scheduler never acts on a date that the
                # aggregate's stream does not (or no longer) has.
                deadline_kind, due_on = kind.deadline
                customer_id = events[0].customer_id
                await self.deadlines.upsert(
                    conn, Deadline(deadline_kind, aggregate_id, customer_id, due_on(after)), result.version
                )
        return Outcome(result, after)

    # --- deals -------------------------------------------------------------------------------------

    async def open_deal(self, deal_id: UUID, command: OpenDeal, call: Call) -> Outcome[deal.Deal]:
        """Open a deal for a customer the replica knows."""
        standing = await self._standing(command.customer_id)
        return await self._run(
            DEAL, deal_id, lambda s, now: deal.decide_open(command, s, standing, now, self.pipelines), call
        )

    async def on_deal(self, deal_id: UUID, command: deal.Command, call: Call) -> Outcome[deal.Deal]:
        """Decide a command on a deal."""
        if isinstance(command, SetNextAction) and command.action_id is None:
            command = command.model_copy(update={"action_id": new_id()})
        return await self._run(DEAL, deal_id, lambda s, now: deal.decide(command, s, now, self.pipelines), call)

    # --- activities --------------------------------------------------------------------------------

    async def record_activity(self, activity_id: UUID, command: RecordActivity, call: Call) -> Outcome[Any]:
        """Record an activity on a customer or one of its deals (the customer defaults to the deal's)."""
        the_deal: deal.Deal | None = None
        if command.deal_id is not None:
            the_deal = await self.load(DEAL, command.deal_id)
        customer_id = command.customer_id or (None if the_deal is None else the_deal.customer_id)
        if customer_id is None:
            field = "customer_id" if command.deal_id is None else "deal_id"
            raise DomainError("name the customer, or a deal that exists", field=field)
        if command.staff is None:
            command = command.model_copy(update={"staff": call.ctx.actor.subject})
        standing = await self._standing(customer_id)
        return await self._run(
            ACTIVITY, activity_id, lambda s, now: activity.decide_record(command, s, standing, the_deal, now), call
        )

    # --- contracts ---------------------------------------------------------------------------------

    async def sign_contract(self, contract_id: UUID, command: SignContract, call: Call) -> Outcome[contract.Contract]:
        """Sign a contract with a known customer, optionally from one of its won deals."""
        standing = await self._standing(command.customer_id)
        the_deal: deal.Deal | None = None
        if command.deal_id is not None:
            the_deal = await self.load(DEAL, command.deal_id)
        return await self._run(
            CONTRACT, contract_id, lambda s, now: contract.decide_sign(command, s, standing, the_deal, now), call
        )

    async def on_contract(self, contract_id: UUID, command: contract.Command, call: Call) -> Outcome[contract.Contract]:
        """Decide a command on a contract."""
        return await self._run(CONTRACT, contract_id, lambda s, now: contract.decide(command, s, now), call)

    # --- orders ------------------------------------------------------------------------------------

    async def place_order(self, order_id: UUID, command: PlaceOrder, call: Call) -> Outcome[order.Order]:
        """Place an order for a known customer (a named deal or contract must be the customer's)."""
        standing = await self._standing(command.customer_id)
        await self._linked(DEAL, command.deal_id, command.customer_id, "deal_id")
        await self._linked(CONTRACT, command.contract_id, command.customer_id, "contract_id")
        return await self._run(ORDER, order_id, lambda s, now: order.decide_place(command, s, standing, now), call)

    async def on_order(self, order_id: UUID, command: order.Command, call: Call) -> Outcome[order.Order]:
        """Decide a command on an order."""
        return await self._run(ORDER, order_id, lambda s, now: order.decide(command, s, now), call)

    # --- invoices and payments ---------------------------------------------------------------------

    async def issue_invoice(self, invoice_id: UUID, command: IssueInvoice, call: Call) -> Outcome[invoice.Invoice]:
        """Issue an invoice to a known customer (a named order or contract must be the customer's)."""
        standing = await self._standing(command.customer_id)
        await self._linked(ORDER, command.order_id, command.customer_id, "order_id")
        await self._linked(CONTRACT, command.contract_id, command.customer_id, "contract_id")
        return await self._run(
            INVOICE, invoice_id, lambda s, now: invoice.decide_issue(command, s, standing, now), call
        )

    async def on_invoice(self, invoice_id: UUID, command: invoice.Command, call: Call) -> Outcome[invoice.Invoice]:
        """Decide a command on an invoice."""
        return await self._run(INVOICE, invoice_id, lambda s, now: invoice.decide(command, s, now), call)

    async def record_payment(self, command: RecordPayment, call: Call) -> tuple[UUID, Outcome[Any]]:
        """Record a payment on its invoice's stream, or unapplied on a stream of its own; returns its id."""
        payment_id = command.payment_id or new_id()
        command = command.model_copy(update={"payment_id": payment_id})
        if command.invoice_id is not None:
            target = await self.load(INVOICE, command.invoice_id)
            if not target.issued:
                raise DomainError(f"invoice {command.invoice_id} does not exist", field="invoice_id")
            return payment_id, await self.on_invoice(command.invoice_id, command, call)
        standing = await self._standing(command.customer_id)
        outcome = await self._run(
            PAYMENT, payment_id, lambda s, now: invoice.decide_unapplied_payment(command, s, standing, now), call
        )
        return payment_id, outcome

    # --- budgets -----------------------------------------------------------------------------------

    async def set_budget(self, customer_id: UUID, command: SetBudget, call: Call) -> Outcome[budget.Budgets]:
        """Set a known customer's budget for a fiscal year."""
        standing = await self._standing(customer_id)
        return await self._run(BUDGET, customer_id, lambda s, now: budget.decide_set(command, s, standing, now), call)
