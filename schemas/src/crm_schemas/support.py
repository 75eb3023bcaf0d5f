"""Public events of the support service (topic crm.support.events.v1): tickets, SLAs, satisfaction."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal
from uuid import UUID

from pydantic import Field

from crm_schemas.base import DomainEvent
from crm_schemas.personal import Personal

TicketKind = Literal["inquiry", "complaint"]
Channel = Literal["phone", "email", "web_form", "chat", "visit"]
Priority = Literal["low", "normal", "high", "urgent"]
TicketStatus = Literal["new", "open", "pending_customer", "resolved", "closed"]
SlaTarget = Literal["first_response", "resolution"]
LinkType = Literal["deal", "order", "ticket"]


class SupportEvent(DomainEvent):
    """Base of support events: one stream per ticket (ticket-<uuid>), owned by the ticket's customer."""

    service: ClassVar[str] = "support"
    stream_prefix: ClassVar[str] = "ticket"

    ticket_id: UUID


class TicketOpened(SupportEvent):
    """An inquiry (問い合わせ) or a complaint (クレーム) was received and a ticket opened for it."""

    summary_en: ClassVar[str] = "Ticket opened ({kind}, {channel}, {priority}): {subject}"
    summary_ja: ClassVar[str] = "サポート受付（{kind}・{channel}・{priority}）：{subject}"

    type: Literal["support.TicketOpened"] = "support.TicketOpened"
    schema_version: Literal[1] = 1
    kind: TicketKind
    channel: Channel
    category: str = Field(description="Free classification used for pivots, e.g. billing, delivery, product")
    priority: Priority
    subject: Personal[str]
    content: Personal[str]
    contact_person_id: UUID | None = Field(default=None, description="Contact person at the customer, if any")
    order_id: str | None = Field(default=None, description="The order the ticket is about, if any")
    product: str | None = Field(default=None, description="Product code or name the ticket is about, if any")
    deal_id: UUID | None = Field(default=None, description="The deal the ticket is about, if any")
    related_ticket_id: UUID | None = Field(
        default=None, description="An earlier ticket about the same problem (recurrence)"
    )
    sla_policy: str = Field(description="Name of the SLA policy the deadlines come from")
    first_response_due_at: datetime | None = Field(default=None, description="First response due (SLA)")
    resolution_due_at: datetime | None = Field(default=None, description="Resolution due (SLA)")


class TicketAssigned(SupportEvent):
    """The ticket was assigned or reassigned to a staff member and/or a team."""

    summary_en: ClassVar[str] = "Assigned to {assignee} ({team})"
    summary_ja: ClassVar[str] = "担当割当：{assignee}（{team}）"

    type: Literal["support.TicketAssigned"] = "support.TicketAssigned"
    schema_version: Literal[1] = 1
    assignee: str | None = Field(default=None, description="Staff subject now handling the ticket")
    team: str | None = None
    previous_assignee: str | None = None
    previous_team: str | None = None


class TicketStatusChanged(SupportEvent):
    """The ticket moved between new, open and pending customer (resolve, reopen and close have their own events)."""

    summary_en: ClassVar[str] = "Status: {previous_status} → {status}"
    summary_ja: ClassVar[str] = "ステータス変更：{previous_status} → {status}"

    type: Literal["support.TicketStatusChanged"] = "support.TicketStatusChanged"
    schema_version: Literal[1] = 1
    status: TicketStatus
    previous_status: TicketStatus
    reason: Personal[str | None] = None
    resolution_due_at: datetime | None = Field(
        default=None,
        description="Resolution deadline from this move on; null while the clock is paused (pending customer)",
    )


class TicketReplied(SupportEvent):
    """Staff replied to the customer."""

    summary_en: ClassVar[str] = "Replied to the customer ({channel})"
    summary_ja: ClassVar[str] = "顧客へ回答（{channel}）"

    type: Literal["support.TicketReplied"] = "support.TicketReplied"
    schema_version: Literal[1] = 1
    channel: Channel
    content: Personal[str]
    first_response: bool = Field(default=False, description="True for the first reply: it meets the first-response SLA")


class TicketNoteAdded(SupportEvent):
    """An internal note was added; the customer does not see it."""

    summary_en: ClassVar[str] = "Internal note added"
    summary_ja: ClassVar[str] = "社内メモ追加"

    type: Literal["support.TicketNoteAdded"] = "support.TicketNoteAdded"
    schema_version: Literal[1] = 1
    content: Personal[str]


class TicketEscalated(SupportEvent):
    """The ticket was escalated to a higher level (1 supervisor, 2 manager, 3 executive), with a reason."""

    summary_en: ClassVar[str] = "Escalated to level {level}: {reason}"
    summary_ja: ClassVar[str] = "エスカレーション（レベル{level}）：{reason}"

    type: Literal["support.TicketEscalated"] = "support.TicketEscalated"
    schema_version: Literal[1] = 1
    level: int = Field(ge=1, le=3)
    previous_level: int = Field(ge=0, le=3)
    reason: Personal[str]
    team: str | None = Field(default=None, description="Team the ticket was escalated to, if any")


class TicketResolved(SupportEvent):
    """The ticket was resolved; a complaint also records its root cause and recurrence prevention (再発防止策)."""

    summary_en: ClassVar[str] = "Resolved: {resolution}"
    summary_ja: ClassVar[str] = "解決：{resolution}"

    type: Literal["support.TicketResolved"] = "support.TicketResolved"
    schema_version: Literal[1] = 1
    resolution: Personal[str]
    root_cause: Personal[str | None] = None
    prevention: Personal[str | None] = None
    previous_status: TicketStatus
    resolution_number: int = Field(ge=1, description="1 for the first resolution, 2 after one reopening, ...")


class TicketReopened(SupportEvent):
    """A resolved ticket was reopened; the resolution deadline starts again."""

    summary_en: ClassVar[str] = "Reopened"
    summary_ja: ClassVar[str] = "再オープン"

    type: Literal["support.TicketReopened"] = "support.TicketReopened"
    schema_version: Literal[1] = 1
    reason: Personal[str | None] = None
    previous_status: TicketStatus
    resolution_due_at: datetime | None = Field(default=None, description="The new resolution deadline (SLA)")


class TicketClosed(SupportEvent):
    """A resolved ticket was closed; closed tickets are final (a recurrence opens a new, linked ticket)."""

    summary_en: ClassVar[str] = "Closed"
    summary_ja: ClassVar[str] = "クローズ"

    type: Literal["support.TicketClosed"] = "support.TicketClosed"
    schema_version: Literal[1] = 1
    previous_status: TicketStatus


class TicketSatisfactionRated(SupportEvent):
    """The customer rated their satisfaction (CSAT, 1-5) with a resolution."""

    summary_en: ClassVar[str] = "Satisfaction {score}/5"
    summary_ja: ClassVar[str] = "顧客満足度：{score}/5"

    type: Literal["support.TicketSatisfactionRated"] = "support.TicketSatisfactionRated"
    schema_version: Literal[1] = 1
    score: int = Field(ge=1, le=5)
    comment: Personal[str | None] = None
    resolution_number: int = Field(ge=1, description="The resolution rated")


class TicketLinked(SupportEvent):
    """The ticket was linked to a deal, an order or another ticket (recurrence of the same problem)."""

    summary_en: ClassVar[str] = "Linked to {link_type} {target}"
    summary_ja: ClassVar[str] = "関連付け：{link_type} {target}"

    type: Literal["support.TicketLinked"] = "support.TicketLinked"
    schema_version: Literal[1] = 1
    link_type: LinkType
    target: str = Field(description="Id of the deal, order or ticket")


class TicketSlaBreached(SupportEvent):
    """A first-response or resolution deadline passed without being met."""

    summary_en: ClassVar[str] = "SLA breached: {target} was due {due_at}"
    summary_ja: ClassVar[str] = "SLA超過：{target}（期限 {due_at}）"

    type: Literal["support.TicketSlaBreached"] = "support.TicketSlaBreached"
    schema_version: Literal[1] = 1
    target: SlaTarget
    due_at: datetime
    kind: TicketKind
    priority: Priority
