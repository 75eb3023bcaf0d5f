"""How each aggregate of the deals service is found, rebuilt and watched by the scheduler."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Generic, Literal, TypeVar
from uuid import UUID

from crm_schemas.base import DomainEvent

from crm_deals.domain import activity, budget, contract, deal, invoice, order

S = TypeVar("S")

DeadlineKind = Literal["contract_end", "invoice_due"]


@dataclass(frozen=True)
class Kind(Generic[S]):
    """An aggregate type: its stream name, empty state, evolve, and the date the scheduler watches (if any)."""

    name: str
    stream_id: Callable[[UUID], str]
    initial: Callable[[UUID], S]
    evolve: Callable[[S, DomainEvent], S]
    deadline: tuple[DeadlineKind, Callable[[S], date | None]] | None = None


DEAL: Kind[deal.Deal] = Kind("deal", deal.stream_id, deal.initial, deal.evolve)
ACTIVITY: Kind[activity.Activity] = Kind("activity", activity.stream_id, activity.initial, activity.evolve)
CONTRACT: Kind[contract.Contract] = Kind(
    "contract", contract.stream_id, contract.initial, contract.evolve, ("contract_end", contract.due_on)
)
ORDER: Kind[order.Order] = Kind("order", order.stream_id, order.initial, order.evolve)
INVOICE: Kind[invoice.Invoice] = Kind(
    "invoice", invoice.stream_id, invoice.initial, invoice.evolve, ("invoice_due", invoice.due_on)
)
PAYMENT: Kind[invoice.UnappliedPayment] = Kind(
    "payment", invoice.payment_stream_id, invoice.initial_unapplied, invoice.evolve_unapplied
)
BUDGET: Kind[budget.Budgets] = Kind("budget", budget.stream_id, budget.initial, budget.evolve)


def fold(kind: Kind[S], aggregate_id: UUID, events: list[DomainEvent]) -> S:
    """An aggregate rebuilt from its events."""
    state = kind.initial(aggregate_id)
    for event in events:
        state = kind.evolve(state, event)
    return state


@dataclass(frozen=True)
class Deadline:
    """A date the scheduler acts on after it passes: a contract's end, an invoice's due date (None = nothing due)."""

    kind: DeadlineKind
    aggregate_id: UUID
    customer_id: UUID
    due_on: date | None
