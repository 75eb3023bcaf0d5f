"""The ticket aggregate (stream ticket-<uuid>): state, decide and evolve."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, assert_never
from uuid import UUID

from crm_schemas.base import DomainEvent
from crm_schemas.support import (
    Channel,
    LinkType,
    Priority,
    SlaTarget,
    TicketAssigned,
    TicketClosed,
    TicketEscalated,
    TicketKind,
    TicketLinked,
    TicketNoteAdded,
    TicketOpened,
    TicketReopened,
    TicketReplied,
    TicketResolved,
    TicketSatisfactionRated,
    TicketSlaBreached,
    TicketStatus,
    TicketStatusChanged,
)

from crm_support.domain.commands import (
    AddNote,
    AssignTicket,
    ChangeStatus,
    CloseTicket,
    EscalateTicket,
    LinkTicket,
    OpenTicket,
    RecordSatisfaction,
    RecordSlaBreach,
    ReopenTicket,
    ReplyToCustomer,
    ResolveTicket,
)
from crm_support.domain.sla import SlaClock, SlaPolicy

__all__ = [
    "Command",
    "CustomerStanding",
    "DomainError",
    "Ticket",
    "decide",
    "decide_open",
    "evolve",
    "fold",
    "sla_clock",
    "stream_id",
]

#: The policy a decider uses when none is given: targets around the clock.
DEFAULT_POLICY = SlaPolicy()


class DomainError(Exception):
    """A command the ticket aggregate rejects (422 unless a subclass says otherwise)."""

    status = 422

    def __init__(self, message: str, field: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.field = field
        self.extra = extra


class TicketNotFound(DomainError):
    """No ticket with this id was opened."""

    status = 404


class TicketAlreadyExists(DomainError):
    """Opening a ticket id that is already taken."""

    status = 409


class TicketIsClosed(DomainError):
    """The ticket is closed; closed tickets are final."""

    status = 409


class InvalidTransition(DomainError):
    """The command does not fit the ticket's current status."""

    status = 409


class AlreadyRated(DomainError):
    """Satisfaction was already recorded for the latest resolution."""

    status = 409


class UnknownCustomer(DomainError):
    """The customer is not known to support (its replica of the customer master)."""


class CustomerWasMerged(DomainError):
    """The customer was merged into another (名寄せ): tickets go to the survivor."""


class UnknownContactPerson(DomainError):
    """No active contact person with this id at the customer."""


class ComplaintAnalysisMissing(DomainError):
    """A complaint is resolved only with its root cause and recurrence prevention (再発防止策)."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(f"a complaint needs {' and '.join(missing)} to be resolved", field=missing[0])
        self.missing = missing


@dataclass(frozen=True)
class CustomerStanding:
    """What support's replica of the customer master says about a customer."""

    customer_id: UUID
    known: bool
    survivor_id: UUID | None = None
    contact_person_ids: frozenset[UUID] = frozenset()


@dataclass(frozen=True)
class Message:
    """A reply to the customer or an internal note."""

    at: datetime
    content: str
    channel: Channel | None = None


@dataclass(frozen=True)
class Resolution:
    """One resolution of the ticket (a reopened ticket is resolved again)."""

    number: int
    at: datetime
    resolution: str
    root_cause: str | None
    prevention: str | None


@dataclass(frozen=True)
class Rating:
    """A CSAT score given to one resolution."""

    resolution_number: int
    score: int
    comment: str | None
    at: datetime


@dataclass(frozen=True)
class Ticket:
    """What the write side knows of a ticket."""

    id: UUID
    opened: bool = False
    customer_id: UUID | None = None
    kind: TicketKind = "inquiry"
    channel: Channel = "email"
    category: str = ""
    priority: Priority = "normal"
    subject: str = ""
    content: str = ""
    contact_person_id: UUID | None = None
    status: TicketStatus = "new"
    assignee: str | None = None
    team: str | None = None
    escalation_level: int = 0
    links: tuple[tuple[LinkType, str], ...] = ()
    product: str | None = None
    opened_at: datetime | None = None
    sla_policy: str | None = None
    first_response_due_at: datetime | None = None
    resolution_due_at: datetime | None = None
    first_responded_at: datetime | None = None
    paused_at: datetime | None = None
    paused_due_at: datetime | None = None
    breached: frozenset[SlaTarget] = frozenset()
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    replies: tuple[Message, ...] = ()
    notes: tuple[Message, ...] = ()
    resolutions: tuple[Resolution, ...] = ()
    ratings: tuple[Rating, ...] = ()
    version: int = 0

    @property
    def owner(self) -> UUID:
        """The customer the ticket belongs to (the data subject of its events)."""
        if self.customer_id is None:
            raise TicketNotFound(f"ticket {self.id} does not exist", field="id")
        return self.customer_id


Command = (
    AssignTicket
    | ReplyToCustomer
    | AddNote
    | EscalateTicket
    | ChangeStatus
    | ResolveTicket
    | ReopenTicket
    | CloseTicket
    | RecordSatisfaction
    | LinkTicket
    | RecordSlaBreach
)


def _opened(state: Ticket) -> UUID:
    if not state.opened:
        raise TicketNotFound(f"ticket {state.id} does not exist", field="id")
    return state.owner


def _not_closed(state: Ticket) -> UUID:
    cid = _opened(state)
    if state.status == "closed":
        raise TicketIsClosed(
            f"ticket {state.id} is closed; open a new ticket with related_ticket_id if the problem recurs",
            field="id",
        )
    return cid


def decide_open(
    command: OpenTicket,
    state: Ticket,
    customer: CustomerStanding,
    now: datetime,
    policy: SlaPolicy = DEFAULT_POLICY,
) -> list[DomainEvent]:
    """The events of opening a ticket for a customer support knows, or a DomainError."""
    if state.opened:
        raise TicketAlreadyExists(f"ticket {state.id} already exists", field="id")
    if not customer.known:
        raise UnknownCustomer(
            f"customer {command.customer_id} is not known to support"
            " (a customer registered moments ago reaches support within seconds: retry shortly)",
            field="customer_id",
        )
    if customer.survivor_id is not None:
        raise CustomerWasMerged(
            f"customer {command.customer_id} was merged into {customer.survivor_id}; open the ticket for the survivor",
            field="customer_id",
            survivor_id=str(customer.survivor_id),
        )
    if command.contact_person_id is not None and command.contact_person_id not in customer.contact_person_ids:
        raise UnknownContactPerson(
            f"no active contact person {command.contact_person_id} at customer {command.customer_id}",
            field="contact_person_id",
        )
    if command.related_ticket_id == state.id:
        raise DomainError("a ticket cannot recur itself", field="related_ticket_id")
    received = command.received_at or now
    if received > now:
        raise DomainError("received_at is in the future", field="received_at")
    first_due, resolution_due = policy.deadlines(command.kind, command.priority, received)
    return [
        TicketOpened(
            customer_id=command.customer_id,
            occurred_at=received,
            ticket_id=state.id,
            **command.model_dump(exclude={"customer_id", "received_at"}),
            sla_policy=policy.name,
            first_response_due_at=first_due,
            resolution_due_at=resolution_due,
        )
    ]


def _resolution_due_after(state: Ticket, to: TicketStatus, now: datetime, policy: SlaPolicy) -> datetime | None:
    """The resolution deadline once the ticket moves to `to`: paused while pending, extended on resuming."""
    if to == "pending_customer":
        return None
    if state.status != "pending_customer":
        return state.resolution_due_at
    paused_at, due = state.paused_at, state.paused_due_at
    if paused_at is None or due is None:
        return due
    if due <= paused_at:
        return due  # already overdue when paused: the breach stands
    # Only the working time that was left when the clock stopped counts from now on.
    return policy.due(now, policy.elapsed(paused_at, due))


def _move(state: Ticket, to: TicketStatus, now: datetime, policy: SlaPolicy, reason: str | None = None) -> DomainEvent:
    return TicketStatusChanged(
        customer_id=state.owner,
        occurred_at=now,
        ticket_id=state.id,
        status=to,
        previous_status=state.status,
        reason=reason,
        resolution_due_at=_resolution_due_after(state, to, now, policy),
    )


def decide(command: Command, state: Ticket, now: datetime, policy: SlaPolicy = DEFAULT_POLICY) -> list[DomainEvent]:
    """The events a command produces on a ticket, or a DomainError."""
    tid = state.id
    match command:
        case AssignTicket():
            cid = _not_closed(state)
            fields = command.model_fields_set
            assignee = command.assignee if "assignee" in fields else state.assignee
            team = command.team if "team" in fields else state.team
            if (assignee, team) == (state.assignee, state.team):
                return []
            events: list[DomainEvent] = [
                TicketAssigned(
                    customer_id=cid,
                    occurred_at=now,
                    ticket_id=tid,
                    assignee=assignee,
                    team=team,
                    previous_assignee=state.assignee,
                    previous_team=state.team,
                )
            ]
            if state.status == "new":
                events.append(_move(state, "open", now, policy))
            return events
        case ReplyToCustomer():
            cid = _not_closed(state)
            events = [
                TicketReplied(
                    customer_id=cid,
                    occurred_at=now,
                    ticket_id=tid,
                    channel=command.channel or state.channel,
                    content=command.content,
                    first_response=state.first_responded_at is None,
                )
            ]
            if state.status == "new":
                events.append(_move(state, "open", now, policy))
            return events
        case AddNote():
            cid = _opened(state)
            return [TicketNoteAdded(customer_id=cid, occurred_at=now, ticket_id=tid, content=command.content)]
        case EscalateTicket():
            cid = _not_closed(state)
            if state.status == "resolved":
                raise InvalidTransition(f"ticket {tid} is resolved; reopen it before escalating", field="id")
            if command.level <= state.escalation_level:
                raise DomainError(
                    f"the ticket is already at level {state.escalation_level}; escalate to a higher level",
                    field="level",
                )
            return [
                TicketEscalated(
                    customer_id=cid,
                    occurred_at=now,
                    ticket_id=tid,
                    level=command.level,
                    previous_level=state.escalation_level,
                    reason=command.reason,
                    team=command.team,
                )
            ]
        case ChangeStatus():
            _not_closed(state)
            if state.status == "resolved":
                raise InvalidTransition(f"ticket {tid} is resolved; reopen it to work on it again", field="status")
            if command.status == state.status:
                return []
            return [_move(state, command.status, now, policy, command.reason)]
        case ResolveTicket():
            cid = _not_closed(state)
            if state.status == "resolved":
                raise InvalidTransition(f"ticket {tid} is already resolved", field="id")
            if state.kind == "complaint":
                missing = [name for name in ("root_cause", "prevention") if getattr(command, name) is None]
                if missing:
                    raise ComplaintAnalysisMissing(missing)
            return [
                TicketResolved(
                    customer_id=cid,
                    occurred_at=now,
                    ticket_id=tid,
                    resolution=command.resolution,
                    root_cause=command.root_cause,
                    prevention=command.prevention,
                    previous_status=state.status,
                    resolution_number=len(state.resolutions) + 1,
                )
            ]
        case ReopenTicket():
            cid = _not_closed(state)
            if state.status != "resolved":
                raise InvalidTransition(f"only a resolved ticket can be reopened; it is {state.status}", field="id")
            targets = policy.targets_for(state.kind, state.priority)
            return [
                TicketReopened(
                    customer_id=cid,
                    occurred_at=now,
                    ticket_id=tid,
                    reason=command.reason,
                    previous_status=state.status,
                    resolution_due_at=policy.due(now, targets.resolution),
                )
            ]
        case CloseTicket():
            cid = _opened(state)
            if state.status == "closed":
                return []
            if state.status != "resolved":
                raise InvalidTransition(f"resolve ticket {tid} before closing it; it is {state.status}", field="id")
            return [TicketClosed(customer_id=cid, occurred_at=now, ticket_id=tid, previous_status=state.status)]
        case RecordSatisfaction():
            cid = _opened(state)
            if state.status not in ("resolved", "closed") or not state.resolutions:
                raise InvalidTransition("satisfaction is rated after the ticket is resolved", field="id")
            number = state.resolutions[-1].number
            if any(r.resolution_number == number for r in state.ratings):
                raise AlreadyRated(f"satisfaction with resolution {number} was already recorded", field="score")
            return [
                TicketSatisfactionRated(
                    customer_id=cid,
                    occurred_at=now,
                    ticket_id=tid,
                    score=command.score,
                    comment=command.comment,
                    resolution_number=number,
                )
            ]
        case LinkTicket():
            cid = _opened(state)
            link: tuple[LinkType, str]
            if command.ticket_id is not None:
                if command.ticket_id == tid:
                    raise DomainError("a ticket cannot be linked to itself", field="ticket_id")
                link = ("ticket", str(command.ticket_id))
            elif command.deal_id is not None:
                link = ("deal", str(command.deal_id))
            else:
                link = ("order", str(command.order_id))
            if link in state.links:
                return []
            return [TicketLinked(customer_id=cid, occurred_at=now, ticket_id=tid, link_type=link[0], target=link[1])]
        case RecordSlaBreach():
            cid = _opened(state)
            due = sla_clock(state).pending().get(command.target)
            # Stale requests change nothing: the deadline was met, moved (paused, reopened) or
            # already recorded as breached, or has not passed yet.
            if due is None or due != command.due_at or due > now:
                return []
            # The breach happened at the deadline, however late the scheduler noticed it.
            return [
                TicketSlaBreached(
                    customer_id=cid,
                    occurred_at=due,
                    ticket_id=tid,
                    target=command.target,
                    due_at=due,
                    kind=state.kind,
                    priority=state.priority,
                )
            ]
        case _:
            assert_never(command)


def _apply(state: Ticket, event: DomainEvent) -> Ticket:
    at = event.occurred_at
    match event:
        case TicketOpened():
            links: list[tuple[LinkType, str]] = []
            if event.related_ticket_id is not None:
                links.append(("ticket", str(event.related_ticket_id)))
            if event.deal_id is not None:
                links.append(("deal", str(event.deal_id)))
            if event.order_id is not None:
                links.append(("order", event.order_id))
            return replace(
                state,
                opened=True,
                customer_id=event.customer_id,
                kind=event.kind,
                channel=event.channel,
                category=event.category,
                priority=event.priority,
                subject=event.subject,
                content=event.content,
                contact_person_id=event.contact_person_id,
                product=event.product,
                links=tuple(links),
                status="new",
                opened_at=at,
                sla_policy=event.sla_policy,
                first_response_due_at=event.first_response_due_at,
                resolution_due_at=event.resolution_due_at,
            )
        case TicketAssigned():
            return replace(state, assignee=event.assignee, team=event.team)
        case TicketStatusChanged():
            pausing = event.status == "pending_customer"
            return replace(
                state,
                status=event.status,
                resolution_due_at=event.resolution_due_at,
                paused_at=at if pausing else None,
                paused_due_at=state.resolution_due_at if pausing else None,
            )
        case TicketReplied():
            return replace(
                state,
                replies=(*state.replies, Message(at, event.content, event.channel)),
                first_responded_at=state.first_responded_at or at,
            )
        case TicketNoteAdded():
            return replace(state, notes=(*state.notes, Message(at, event.content)))
        case TicketEscalated():
            return replace(state, escalation_level=event.level, team=event.team or state.team)
        case TicketResolved():
            resolution = Resolution(event.resolution_number, at, event.resolution, event.root_cause, event.prevention)
            return replace(
                state,
                status="resolved",
                resolutions=(*state.resolutions, resolution),
                resolved_at=at,
                first_responded_at=state.first_responded_at or at,
                paused_at=None,
                paused_due_at=None,
            )
        case TicketReopened():
            return replace(
                state,
                status="open",
                resolution_due_at=event.resolution_due_at,
                breached=state.breached - {"resolution"},
                resolved_at=None,
            )
        case TicketClosed():
            return replace(state, status="closed", closed_at=at)
        case TicketSatisfactionRated():
            rating = Rating(event.resolution_number, event.score, event.comment, at)
            return replace(state, ratings=(*state.ratings, rating))
        case TicketLinked():
            return replace(state, links=(*state.links, (event.link_type, event.target)))
        case TicketSlaBreached():
            return replace(state, breached=state.breached | {event.target})
        case _:
            return state


def evolve(state: Ticket, event: DomainEvent) -> Ticket:
    """The ticket after an event (unknown event types only advance the version)."""
    return replace(_apply(state, event), version=state.version + 1)


def fold(ticket_id: UUID, events: list[DomainEvent]) -> Ticket:
    """A ticket rebuilt from its events."""
    state = Ticket(id=ticket_id)
    for event in events:
        state = evolve(state, event)
    return state


def sla_clock(state: Ticket) -> SlaClock:
    """The ticket's running deadlines: none once resolved or closed; resolution paused while pending customer."""
    cid = _opened(state)
    if state.status in ("resolved", "closed"):
        return SlaClock(state.id, cid, breached=state.breached)
    return SlaClock(
        state.id,
        cid,
        first_response_due_at=state.first_response_due_at if state.first_responded_at is None else None,
        resolution_due_at=state.resolution_due_at,
        breached=state.breached,
    )


def stream_id(ticket_id: UUID) -> str:
    """The ticket's stream name."""
    return f"ticket-{ticket_id}"
