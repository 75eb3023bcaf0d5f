"""Test-data builders ("controls") for the support service."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID

from crm_eventstore.ids import new_id
from crm_eventstore.store import CommandContext
from crm_schemas.base import DomainEvent
from crm_schemas.contacts import ContactPersonAdded, CustomerRegistered, CustomersMerged, CustomersUnmerged
from crm_schemas.envelope import ActorRef
from crm_support.domain.commands import OpenTicket, ResolveTicket
from crm_support.domain.sla import JST, SlaPolicy
from crm_support.domain.ticket import (
    DEFAULT_POLICY,
    Command,
    CustomerStanding,
    Ticket,
    decide,
    decide_open,
    fold,
)

#: Wednesday 2026-04-01 10:00 JST: a working day, inside business hours.
NOW = datetime(2026, 4, 1, 10, 0, tzinfo=JST)

HOUR = timedelta(hours=1)


def jst(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A wall-clock time in Japan."""
    return datetime(year, month, day, hour, minute, tzinfo=JST)


def open_body(customer_id: UUID | str | None = None, **overrides: Any) -> dict[str, Any]:
    """The JSON body of a valid POST /tickets (an inquiry by phone)."""
    body: dict[str, Any] = {
        "customer_id": str(customer_id or new_id()),
        "kind": "inquiry",
        "channel": "phone",
        "category": "billing",
        "priority": "normal",
        "subject": "請求書の再発行について",
        "content": "山田様より、3月分の請求書を再発行してほしいとのお電話がありました。",
    }
    return {**body, **overrides}


def complaint_body(customer_id: UUID | str | None = None, **overrides: Any) -> dict[str, Any]:
    """The JSON body of a complaint (クレーム) about a late delivery."""
    return open_body(
        customer_id,
        kind="complaint",
        channel="email",
        category="delivery",
        priority="high",
        subject="納品遅延のクレーム",
        content="注文した部品が約束の納期から1週間遅れている。生産ラインが止まっている。",
        order_id="ORD-2026-0042",
        **overrides,
    )


def open_command(customer_id: UUID | None = None, **overrides: Any) -> OpenTicket:
    """A valid OpenTicket command."""
    return OpenTicket.model_validate(open_body(customer_id, **overrides))


def known(customer_id: UUID, persons: Sequence[UUID] = (), survivor_id: UUID | None = None) -> CustomerStanding:
    """A customer as support's replica knows it."""
    return CustomerStanding(customer_id, known=True, survivor_id=survivor_id, contact_person_ids=frozenset(persons))


def opened(
    ticket_id: UUID | None = None,
    customer_id: UUID | None = None,
    *,
    at: datetime = NOW,
    policy: SlaPolicy = DEFAULT_POLICY,
    **overrides: Any,
) -> list[DomainEvent]:
    """The events of opening a ticket (as the decider makes them)."""
    cid = customer_id or new_id()
    command = open_command(cid, **overrides)
    return decide_open(command, Ticket(id=ticket_id or new_id()), known(cid), at, policy)


def ticket_after(given: Sequence[DomainEvent]) -> Ticket:
    """The ticket the given events built."""
    return fold(given[0].ticket_id, list(given))  # type: ignore[attr-defined]


def then(
    given: Sequence[DomainEvent], command: Command, at: datetime = NOW, policy: SlaPolicy = DEFAULT_POLICY
) -> list[DomainEvent]:
    """Decide `command` on the ticket that the `given` events built."""
    return decide(command, ticket_after(given), at, policy)


def history(
    given: Sequence[DomainEvent], *steps: tuple[Command, datetime], policy: SlaPolicy = DEFAULT_POLICY
) -> list[DomainEvent]:
    """The given events followed by the events of each (command, time) step."""
    events = list(given)
    for command, at in steps:
        events += decide(command, ticket_after(events), at, policy)
    return events


RESOLVED = ResolveTicket(resolution="請求書を再発行し、メールで送付した。")


def context(subject: str = "suzuki.support", role: str = "support") -> CommandContext:
    """A command context for a support agent."""
    return CommandContext(actor=ActorRef(subject=subject, role=role, team="cs-tokyo"))


def utc(value: datetime) -> datetime:
    """The same instant in UTC (for comparisons with database values)."""
    return value.astimezone(UTC)


# --- contacts events, as support's replica receives them ---------------------------------------


def registered(customer_id: UUID, kind: Literal["company", "person"] = "company") -> CustomerRegistered:
    """A company or person registered in the customer master."""
    return CustomerRegistered(customer_id=customer_id, occurred_at=NOW, kind=kind, name="株式会社テスト")


def merged(survivor: UUID, absorbed: UUID, person_ids: list[UUID] | None = None) -> CustomersMerged:
    """`absorbed` merged into `survivor`, taking over the given contact persons."""
    return CustomersMerged(
        customer_id=survivor,
        occurred_at=NOW,
        absorbed_id=absorbed,
        field_choices={},
        taken={},
        previous={},
        added_person_ids=person_ids or [],
    )


def unmerged(survivor: UUID, absorbed: UUID, person_ids: list[UUID] | None = None) -> CustomersUnmerged:
    """A merge reversed, giving back the given contact persons."""
    return CustomersUnmerged(
        customer_id=survivor, occurred_at=NOW, absorbed_id=absorbed, restored={}, removed_person_ids=person_ids or []
    )


def person_added(customer_id: UUID, person_id: UUID) -> ContactPersonAdded:
    """A contact person added at a company."""
    return ContactPersonAdded(customer_id=customer_id, occurred_at=NOW, person_id=person_id, name="鈴木 一郎")
