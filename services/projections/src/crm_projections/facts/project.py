"""Pure projection of events onto fact-table changes (no I/O; personal fields stay sealed until applied)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID
from zoneinfo import ZoneInfo

from crm_schemas.envelope import EventEnvelope

#: Business dates (a deal's opening day) are Japanese calendar days.
JST = ZoneInfo("Asia/Tokyo")

#: Customer-profile members a contacts event (or a merge's taken/restored values) may set.
PROFILE_MEMBERS = ("kind", "name", "name_kana", "address", "industry", "rank", "fiscal_month")


@dataclass(frozen=True)
class ProfileChanged:
    """Profile members to set; ``sealed`` members may be ciphertext, decrypted when applied.

    With ``nested`` set, the decrypted value of that one sealed member is a dict of profile members
    (the ``taken`` of a merge, the ``restored`` of an unmerge).
    """

    customer_id: UUID
    event_id: UUID
    plain: dict[str, Any] = field(default_factory=dict)
    sealed: dict[str, Any] = field(default_factory=dict)
    nested: str | None = None
    registered_at: datetime | None = None
    add_tags: tuple[str, ...] = ()
    remove_tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConsentChanged:
    """A channel/purpose consent was granted or withdrawn."""

    customer_id: UUID
    channel: str
    purpose: str
    granted: bool
    at: datetime


@dataclass(frozen=True)
class MergeChanged:
    """A customer was merged into a survivor (survivor set) or split off again (survivor None)."""

    customer_id: UUID
    survivor_id: UUID | None
    previous_survivor_id: UUID | None = None


@dataclass(frozen=True)
class Forgotten:
    """The customer's personal data was erased: blank every plaintext copy kept for search."""

    customer_id: UUID


@dataclass(frozen=True)
class OrderLineFact:
    """One line of a placed order."""

    line_no: int
    product_code: str
    product_name: str | None
    category: str | None
    unit_price: Decimal
    quantity: int
    line_amount: Decimal


@dataclass(frozen=True)
class OrderPlacedFact:
    """An order and its lines."""

    order_id: UUID
    customer_id: UUID
    order_date: date
    currency: str
    total: Decimal
    lines: tuple[OrderLineFact, ...]
    deal_id: UUID | None


@dataclass(frozen=True)
class OrderReversal:
    """A cancellation (whole order) or a return (some lines, or all: ``full``) reversing revenue."""

    event_id: UUID
    order_id: UUID
    customer_id: UUID
    kind: Literal["cancelled", "returned"]
    full: bool
    amount: Decimal
    lines: tuple[tuple[int, Decimal], ...] = ()


FactTable = Literal["fact_deals", "fact_tickets", "fact_activities"]


@dataclass(frozen=True)
class FactUpsert:
    """Set some columns of one deal, ticket or activity row, creating the row if it is not there yet."""

    table: FactTable
    key: UUID
    customer_id: UUID
    values: dict[str, Any]


FactChange = ProfileChanged | ConsentChanged | MergeChanged | Forgotten | OrderPlacedFact | OrderReversal | FactUpsert


def _date(value: Any) -> date | None:
    return None if value is None else date.fromisoformat(str(value))


def _money(value: Any) -> Decimal:
    return Decimal(str(value))


def _contacts(event: EventEnvelope) -> FactChange | None:
    p, cid = event.payload, event.customer_id
    short = event.type.removeprefix("contacts.")
    match short:
        case "CustomerRegistered":
            return ProfileChanged(
                cid,
                event.event_id,
                plain={"kind": p.get("kind"), "industry": p.get("industry"), "fiscal_month": p.get("fiscal_month")},
                sealed={k: p.get(k) for k in ("name", "name_kana", "address")},
                registered_at=event.occurred_at,
            )
        case "CustomerRenamed":
            return ProfileChanged(cid, event.event_id, sealed={"name": p.get("name"), "name_kana": p.get("name_kana")})
        case "CustomerAddressChanged":
            return ProfileChanged(cid, event.event_id, sealed={"address": p.get("address")})
        case "CustomerIndustryChanged":
            return ProfileChanged(cid, event.event_id, plain={"industry": p.get("industry")})
        case "CustomerFiscalMonthChanged":
            return ProfileChanged(cid, event.event_id, plain={"fiscal_month": p.get("fiscal_month")})
        case "CustomerRankChanged":
            return ProfileChanged(cid, event.event_id, plain={"rank": p.get("rank")})
        case "CustomerTagged":
            return ProfileChanged(cid, event.event_id, add_tags=(str(p["tag"]),))
        case "CustomerUntagged":
            return ProfileChanged(cid, event.event_id, remove_tags=(str(p["tag"]),))
        case "ConsentGranted" | "ConsentWithdrawn":
            return ConsentChanged(
                cid,
                str(p["channel"]),
                str(p.get("purpose") or "newsletter"),
                short == "ConsentGranted",
                event.occurred_at,
            )
        case "CustomersMerged":
            return ProfileChanged(
                cid,
                event.event_id,
                sealed={"taken": p.get("taken") or {}},
                nested="taken",
                add_tags=tuple(p.get("added_tags") or ()),
            )
        case "CustomersUnmerged":
            return ProfileChanged(
                cid,
                event.event_id,
                sealed={"restored": p.get("restored") or {}},
                nested="restored",
                remove_tags=tuple(p.get("removed_tags") or ()),
            )
        case "CustomerMergedInto":
            return MergeChanged(cid, UUID(str(p["survivor_id"])))
        case "CustomerUnmergedFrom":
            return MergeChanged(cid, None, previous_survivor_id=UUID(str(p["survivor_id"])))
        case "CustomerErased":
            return Forgotten(cid)
        case _:
            return None


def _deal(event: EventEnvelope, short: str) -> FactChange | None:
    p = event.payload
    values: dict[str, Any]
    match short:
        case "DealOpened":
            values = {
                "title": p.get("title"),
                "owner": p.get("owner"),
                "team": p.get("team"),
                "pipeline": p.get("pipeline") or "default",
                "stage": p.get("stage"),
                "status": "open",
                "amount": _money(p["amount"]),
                "currency": p.get("currency") or "JPY",
                "opened_on": event.occurred_at.astimezone(JST).date(),
                "expected_close_date": _date(p.get("expected_close_date")),
            }
        case "DealStageChanged":
            values = {"stage": p.get("stage")}
        case "DealAmountRevised":
            values = {"amount": _money(p["amount"]), "currency": p.get("currency")}
        case "DealCloseDateRevised":
            values = {"expected_close_date": _date(p.get("expected_close_date"))}
        case "DealOwnerChanged":
            values = {"owner": p.get("owner"), "team": p.get("team")}
        case "DealWon":
            values = {"status": "won", "stage": "won", "amount": _money(p["amount"]), "closed_on": _date(p["won_on"])}
        case "DealLost":
            values = {
                "status": "lost",
                "stage": "lost",
                "closed_on": _date(p["lost_on"]),
                "lost_reason": p.get("reason"),
            }
        case "DealReopened":
            values = {"status": "open", "stage": p.get("stage"), "closed_on": None, "lost_reason": None}
        case _:
            return None
    return FactUpsert("fact_deals", UUID(str(p["deal_id"])), event.customer_id, values)


def _deals(event: EventEnvelope) -> FactChange | None:
    p, cid = event.payload, event.customer_id
    short = event.type.removeprefix("deals.")
    match short:
        case "OrderPlaced":
            return OrderPlacedFact(
                order_id=UUID(str(p["order_id"])),
                customer_id=cid,
                order_date=date.fromisoformat(str(p["order_date"])),
                currency=str(p.get("currency") or "JPY"),
                total=_money(p["total"]),
                lines=tuple(
                    OrderLineFact(
                        line_no=int(line["line_no"]),
                        product_code=str(line["product_code"]),
                        product_name=line.get("product_name"),
                        category=line.get("category"),
                        unit_price=_money(line["unit_price"]),
                        quantity=int(line["quantity"]),
                        line_amount=_money(line["line_amount"]),
                    )
                    for line in p.get("lines") or ()
                ),
                deal_id=UUID(str(p["deal_id"])) if p.get("deal_id") else None,
            )
        case "OrderCancelled":
            return OrderReversal(event.event_id, UUID(str(p["order_id"])), cid, "cancelled", True, _money(p["amount"]))
        case "OrderReturned":
            return OrderReversal(
                event.event_id,
                UUID(str(p["order_id"])),
                cid,
                "returned",
                bool(p.get("full")),
                _money(p["amount"]),
                tuple((int(line["line_no"]), _money(line["amount"])) for line in p.get("lines") or ()),
            )
        case "ActivityRecorded":
            return FactUpsert(
                "fact_activities",
                UUID(str(p["activity_id"])),
                cid,
                {
                    "kind": p.get("kind"),
                    "staff": p.get("staff"),
                    "deal_id": UUID(str(p["deal_id"])) if p.get("deal_id") else None,
                    "occurred_at": event.occurred_at,
                },
            )
        case _:
            return _deal(event, short)


def _support(event: EventEnvelope) -> FactChange | None:
    p = event.payload
    values: dict[str, Any]
    match event.type.removeprefix("support."):
        case "TicketOpened":
            values = {
                "kind": p.get("kind"),
                "category": p.get("category"),
                "channel": p.get("channel"),
                "priority": p.get("priority"),
                "product": p.get("product"),
                "status": "new",
                "opened_at": event.occurred_at,
            }
        case "TicketAssigned":
            values = {"assignee": p.get("assignee"), "team": p.get("team")}
        case "TicketStatusChanged":
            values = {"status": p.get("status")}
        case "TicketResolved":
            values = {"status": "resolved", "resolved_at": event.occurred_at}
        case "TicketReopened":
            values = {"status": "open", "resolved_at": None}
        case "TicketClosed":
            values = {"status": "closed"}
        case "TicketSatisfactionRated":
            values = {"csat": int(p["score"]), "rated_at": event.occurred_at}
        case _:
            return None
    return FactUpsert("fact_tickets", UUID(str(p["ticket_id"])), event.customer_id, values)


def project(event: EventEnvelope) -> FactChange | None:
    """The fact change an event makes (None: the facts do not record it)."""
    match event.service:
        case "contacts":
            return _contacts(event)
        case "deals":
            return _deals(event)
        case "support":
            return _support(event)
        case _:
            return None
