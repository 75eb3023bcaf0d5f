"""Communication history (活動履歴, stream activity-<uuid>): one recorded activity per stream."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from uuid import UUID

from crm_schemas.base import DomainEvent
from crm_schemas.deals import ActivityKind, ActivityRecorded

from crm_deals.domain.commands import RecordActivity
from crm_deals.domain.customers import CustomerStanding, check_customer
from crm_deals.domain.deal import Deal
from crm_deals.domain.errors import AlreadyExists, DomainError


@dataclass(frozen=True)
class Activity:
    """A recorded activity as the write side knows it."""

    id: UUID
    recorded: bool = False
    customer_id: UUID | None = None
    kind: ActivityKind = "call"
    deal_id: UUID | None = None
    contact_person_id: UUID | None = None
    staff: str = ""
    participants: tuple[str, ...] = ()
    subject: str = ""
    content: str | None = None
    outcome: str | None = None
    at: datetime | None = None
    version: int = 0


def decide_record(
    command: RecordActivity, state: Activity, customer: CustomerStanding, deal: Deal | None, now: datetime
) -> list[DomainEvent]:
    """The event of recording an activity for a known customer (and, if named, one of its deals)."""
    if state.recorded:
        raise AlreadyExists(f"activity {state.id} already exists", field="id")
    if command.customer_id is not None and command.customer_id != customer.customer_id:
        raise DomainError("the customer checked is not the one named", field="customer_id")
    cid = check_customer(customer, command.contact_person_id)
    if command.deal_id is not None:
        if deal is None or not deal.opened:
            raise DomainError(f"deal {command.deal_id} does not exist", field="deal_id")
        if deal.customer_id != cid:
            raise DomainError(f"deal {command.deal_id} belongs to another customer", field="deal_id")
    if command.staff is None:
        raise DomainError("name the staff member who carried out the activity", field="staff")
    at = command.occurred_at or now
    if at > now:
        raise DomainError("an activity is recorded after it happened; occurred_at is in the future", "occurred_at")
    return [
        ActivityRecorded(
            customer_id=cid,
            occurred_at=at,
            activity_id=state.id,
            kind=command.kind,
            deal_id=command.deal_id,
            contact_person_id=command.contact_person_id,
            staff=command.staff,
            participants=list(command.participants),
            subject=command.subject,
            content=command.content,
            outcome=command.outcome,
        )
    ]


def evolve(state: Activity, event: DomainEvent) -> Activity:
    """The activity after an event."""
    if isinstance(event, ActivityRecorded):
        state = replace(
            state,
            recorded=True,
            customer_id=event.customer_id,
            kind=event.kind,
            deal_id=event.deal_id,
            contact_person_id=event.contact_person_id,
            staff=event.staff,
            participants=tuple(event.participants),
            subject=event.subject,
            content=event.content,
            outcome=event.outcome,
            at=event.occurred_at,
        )
    return replace(state, version=state.version + 1)


def initial(activity_id: UUID) -> Activity:
    """An activity before it was recorded."""
    return Activity(id=activity_id)


def stream_id(activity_id: UUID) -> str:
    """The activity's stream name."""
    return f"activity-{activity_id}"
