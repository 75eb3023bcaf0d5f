"""Commands on the ticket aggregate: what callers ask for, validated at the edge (extra fields forbidden)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from crm_schemas.support import Channel, Priority, SlaTarget, TicketKind
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


class OpenTicket(_Command):
    """Open a ticket for an inquiry (問い合わせ) or a complaint (クレーム) of a customer."""

    customer_id: UUID
    kind: TicketKind
    channel: Channel
    category: str = Field(min_length=1, max_length=100, description="e.g. billing, delivery, product, account")
    priority: Priority = "normal"
    subject: str = Field(min_length=1, max_length=200)
    content: str = Field(min_length=1, max_length=20_000)
    contact_person_id: UUID | None = Field(default=None, description="Contact person at the customer who got in touch")
    order_id: str | None = Field(default=None, min_length=1, max_length=100)
    product: str | None = Field(default=None, min_length=1, max_length=200)
    deal_id: UUID | None = None
    related_ticket_id: UUID | None = Field(default=None, description="Earlier ticket about the same problem")
    received_at: AwareDatetime | None = Field(
        default=None, description="When the customer got in touch, if earlier than now (the SLA starts then)"
    )


class AssignTicket(_Command):
    """Assign or reassign the ticket to a staff member and/or a team."""

    assignee: str | None = Field(default=None, min_length=1, max_length=100)
    team: str | None = Field(default=None, min_length=1, max_length=100)

    @model_validator(mode="after")
    def _someone(self) -> AssignTicket:
        if self.assignee is None and self.team is None:
            raise ValueError("name an assignee, a team or both")
        return self


class ReplyToCustomer(_Command):
    """Reply to the customer (the first reply meets the first-response SLA)."""

    content: str = Field(min_length=1, max_length=20_000)
    channel: Channel | None = Field(default=None, description="Default: the channel the ticket came in on")


class AddNote(_Command):
    """Add an internal note that the customer does not see."""

    content: str = Field(min_length=1, max_length=20_000)


class EscalateTicket(_Command):
    """Escalate to a higher level (1 supervisor, 2 manager, 3 executive), with a reason."""

    level: int = Field(ge=1, le=3, strict=True)
    reason: str = Field(min_length=1, max_length=2000)
    team: str | None = Field(default=None, min_length=1, max_length=100)


class ChangeStatus(_Command):
    """Move the ticket to open or pending customer (pending customer pauses the resolution clock)."""

    status: Literal["open", "pending_customer"]
    reason: str | None = Field(default=None, max_length=2000)


class ResolveTicket(_Command):
    """Resolve the ticket; a complaint needs its root cause and recurrence prevention (再発防止策)."""

    resolution: str = Field(min_length=1, max_length=5000)
    root_cause: str | None = Field(default=None, min_length=1, max_length=5000)
    prevention: str | None = Field(default=None, min_length=1, max_length=5000)


class ReopenTicket(_Command):
    """Reopen a resolved ticket (closed tickets are final: open a new one linked to it)."""

    reason: str | None = Field(default=None, max_length=2000)


class CloseTicket(_Command):
    """Close a resolved ticket."""


class RecordSatisfaction(_Command):
    """Record the customer's satisfaction (CSAT 1-5) with the latest resolution; once per resolution."""

    score: int = Field(ge=1, le=5, strict=True)
    comment: str | None = Field(default=None, max_length=2000)


class LinkTicket(_Command):
    """Link the ticket to a deal, an order or another ticket (exactly one of them)."""

    deal_id: UUID | None = None
    order_id: str | None = Field(default=None, min_length=1, max_length=100)
    ticket_id: UUID | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> LinkTicket:
        if sum(v is not None for v in (self.deal_id, self.order_id, self.ticket_id)) != 1:
            raise ValueError("name exactly one of deal_id, order_id, ticket_id")
        return self


class RecordSlaBreach(_Command):
    """Record that a deadline passed unmet (issued by the SLA scheduler, not by people)."""

    target: SlaTarget
    due_at: datetime
