"""Customer 360 as a pure fold over a customer's events (and those of the records merged into it).

No I/O, no clock: the caller passes the events (personal fields already decrypted, or None once the
customer's key is destroyed) and the reference date that "last 12 months" is measured from.

Events are applied per stream in version order, whatever order they arrive in, and each event id
once: the result depends only on the *set* of events, so redeliveries and late events cannot change it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from crm_projections.customer360.metrics import Order, RevenueMetrics, revenue_metrics

#: Contacts' profile fields as the 360 shows them (personal ones are blank once shredded).
PROFILE_FIELDS = (
    "name",
    "name_kana",
    "email",
    "phone",
    "address",
    "url",
    "corporate_number",
    "industry",
    "capital",
    "employee_count",
    "fiscal_month",
    "representative",
    "birth_date",
    "gender",
    "occupation",
)

OPEN_TICKET_STATUSES = frozenset({"new", "open", "pending_customer"})


@dataclass(frozen=True)
class CustomerEvent:
    """One timeline entry as the fold needs it; `data` is the decrypted payload."""

    event_id: UUID
    customer_id: UUID
    type: str
    stream_id: str
    version: int
    occurred_at: datetime
    recorded_at: datetime
    data: Mapping[str, Any]


@dataclass
class _Deal:
    deal_id: str
    title: str | None
    owner: str | None
    stage: str | None
    amount: str | None
    currency: str | None
    expected_close_date: str | None
    opened_at: str
    outcome: str | None = None  # won / lost; None while open


@dataclass
class _Contract:
    contract_id: str
    title: str | None
    start_date: str | None
    end_date: str | None
    amount: str | None
    currency: str | None
    billing_cycle: str | None
    auto_renewal: bool
    status: str = "active"
    cancelled_from: str | None = None


@dataclass
class _Ticket:
    ticket_id: str
    kind: str
    subject: str | None
    category: str | None
    channel: str | None
    priority: str | None
    status: str
    opened_at: str
    assignee: str | None = None
    team: str | None = None
    escalation_level: int = 0


@dataclass
class _Invoice:
    amount: Decimal
    cancelled: bool = False


@dataclass
class _State:
    customer_id: UUID
    kind: str | None = None
    registered_at: str | None = None
    profile: dict[str, Any] = field(default_factory=dict)
    external_id: str | None = None
    payment_terms: str | None = None
    rank: str | None = None
    tags: set[str] = field(default_factory=set)
    interests: set[str] = field(default_factory=set)
    campaigns: list[str] = field(default_factory=list)
    consent: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    persons: dict[str, dict[str, Any]] = field(default_factory=dict)
    merged_into: str | None = None
    erased: bool = False
    deals: dict[str, _Deal] = field(default_factory=dict)
    contracts: dict[str, _Contract] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)
    invoices: dict[str, _Invoice] = field(default_factory=dict)
    payments: list[tuple[str | None, Decimal]] = field(default_factory=list)
    budgets: dict[int, str] = field(default_factory=dict)
    tickets: dict[str, _Ticket] = field(default_factory=dict)
    ratings: dict[tuple[str, int], int] = field(default_factory=dict)
    last_activity_at: datetime | None = None
    last_event_at: datetime | None = None
    event_count: int = 0


@dataclass(frozen=True)
class Customer360:
    """Everything known about one customer at one instant."""

    customer_id: UUID
    merged_from: tuple[UUID, ...]
    exists: bool
    document: dict[str, Any]
    metrics: RevenueMetrics

    def to_json(self) -> dict[str, Any]:
        """The JSON body of GET /customers/{id} (money as decimal strings)."""
        return {**self.document, "metrics": self.metrics.to_json()}


def _s(value: Any) -> str | None:
    return None if value is None else str(value)


def _person(data: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "person_id": str(data.get("person_id")),
        "name": data.get("name"),
        "name_kana": data.get("name_kana"),
        "department": data.get("department"),
        "title": data.get("title"),
        "email": data.get("email"),
        "phone": data.get("phone"),
        "decision_role": data.get("decision_role"),
        "interests": list(data.get("interests") or ()),
        "active": bool(data.get("active", True)),
        "left_at": data.get("left_at"),
    }


def _apply_contacts(s: _State, e: CustomerEvent) -> None:
    d = e.data
    at = e.occurred_at.isoformat()
    match e.type:
        case "contacts.CustomerRegistered":
            s.kind = _s(d.get("kind"))
            s.registered_at = at
            s.external_id = _s(d.get("external_id"))
            s.profile.update({k: d.get(k) for k in PROFILE_FIELDS if d.get(k) is not None})
        case "contacts.CustomerRenamed":
            s.profile.update(name=d.get("name"), name_kana=d.get("name_kana"))
        case (
            "contacts.CustomerAddressChanged"
            | "contacts.CustomerPhoneChanged"
            | "contacts.CustomerEmailChanged"
            | "contacts.CustomerWebsiteChanged"
            | "contacts.CustomerIndustryChanged"
            | "contacts.CustomerCorporateNumberAssigned"
            | "contacts.CustomerCapitalChanged"
            | "contacts.CustomerHeadcountChanged"
            | "contacts.CustomerFiscalMonthChanged"
            | "contacts.CustomerRepresentativeChanged"
        ):
            s.profile.update({k: d.get(k) for k in PROFILE_FIELDS if k in d})
        case "contacts.CustomerPersonalDetailsChanged":
            for name in d.get("changed") or ():
                if name in ("birth_date", "gender", "occupation"):
                    s.profile[name] = d.get(name)
        case "contacts.CustomerRankChanged":
            s.rank = _s(d.get("rank"))
        case "contacts.CustomerTagged":
            s.tags.add(str(d.get("tag")))
        case "contacts.CustomerUntagged":
            s.tags.discard(str(d.get("tag")))
        case "contacts.MarketingInterestAdded":
            s.interests.add(str(d.get("interest")))
        case "contacts.MarketingInterestRemoved":
            s.interests.discard(str(d.get("interest")))
        case "contacts.CampaignJoined":
            s.campaigns.append(str(d.get("campaign")))
        case "contacts.ConsentGranted" | "contacts.ConsentWithdrawn":
            key = (str(d.get("channel")), str(d.get("purpose") or "newsletter"))
            s.consent[key] = {
                "channel": key[0],
                "purpose": key[1],
                "granted": e.type == "contacts.ConsentGranted",
                "since": at,
                "source": d.get("source"),
            }
        case "contacts.PaymentTermsSet":
            s.payment_terms = _s(d.get("payment_terms"))
        case "contacts.ContactPersonAdded":
            s.persons[str(d.get("person_id"))] = _person(d)
        case (
            "contacts.ContactPersonTitleChanged"
            | "contacts.ContactPersonMovedDepartment"
            | "contacts.ContactPersonContactDetailsChanged"
            | "contacts.ContactPersonDecisionRoleChanged"
            | "contacts.ContactPersonLeftCompany"
        ):
            person = s.persons.get(str(d.get("person_id")))
            if person is None:
                return
            for name in ("title", "department", "email", "phone", "decision_role"):
                if name in d:
                    person[name] = d[name]
            if e.type == "contacts.ContactPersonLeftCompany":
                person.update(active=False, left_at=at)
        case "contacts.CustomersMerged":
            _set_taken(s, d.get("taken"))
            s.tags.update(str(t) for t in d.get("added_tags") or ())
            s.interests.update(str(i) for i in d.get("added_interests") or ())
            for raw in d.get("added_persons") or ():
                if isinstance(raw, Mapping):
                    s.persons[str(raw.get("person_id"))] = _person(raw)
        case "contacts.CustomersUnmerged":
            _set_taken(s, d.get("restored"))
            s.tags.difference_update(str(t) for t in d.get("removed_tags") or ())
            s.interests.difference_update(str(i) for i in d.get("removed_interests") or ())
            for pid in d.get("removed_person_ids") or ():
                s.persons.pop(str(pid), None)
        case "contacts.CustomerMergedInto":
            s.merged_into = _s(d.get("survivor_id"))
        case "contacts.CustomerUnmergedFrom":
            s.merged_into = None
        case "contacts.CustomerErased":
            s.erased = True
        case _:
            pass


def _set_taken(s: _State, values: Any) -> None:
    """Profile values a merge took over or an unmerge gave back (None: the field is empty again)."""
    if not isinstance(values, Mapping):
        return  # shredded: the values are unreadable, the profile keeps what it had
    for name, value in values.items():
        if name == "rank":
            s.rank = _s(value)
        elif name == "payment_terms":
            s.payment_terms = _s(value)
        elif value is None:
            s.profile.pop(name, None)
        else:
            s.profile[name] = value


def _apply_deals(s: _State, e: CustomerEvent) -> None:
    d = e.data
    at = e.occurred_at.isoformat()
    match e.type:
        case "deals.DealOpened":
            s.deals[str(d.get("deal_id"))] = _Deal(
                deal_id=str(d.get("deal_id")),
                title=_s(d.get("title")),
                owner=_s(d.get("owner")),
                stage=_s(d.get("stage")),
                amount=_s(d.get("amount")),
                currency=_s(d.get("currency")),
                expected_close_date=_s(d.get("expected_close_date")),
                opened_at=at,
            )
        case (
            "deals.DealStageChanged"
            | "deals.DealAmountRevised"
            | "deals.DealCloseDateRevised"
            | "deals.DealOwnerChanged"
            | "deals.DealWon"
            | "deals.DealLost"
            | "deals.DealReopened"
        ):
            deal = s.deals.get(str(d.get("deal_id")))
            if deal is None:
                return
            if "stage" in d:
                deal.stage = _s(d["stage"])
            if e.type in ("deals.DealAmountRevised", "deals.DealWon"):
                deal.amount, deal.currency = _s(d.get("amount")), _s(d.get("currency"))
            if "expected_close_date" in d:
                deal.expected_close_date = _s(d["expected_close_date"])
            if "owner" in d:
                deal.owner = _s(d["owner"])
            deal.outcome = {"deals.DealWon": "won", "deals.DealLost": "lost", "deals.DealReopened": None}.get(
                e.type, deal.outcome
            )
        case "deals.DealNextActionSet" | "deals.DealNextActionDone":
            pass  # on the timeline; the 360 lists deals, not their to-dos
        case "deals.ActivityRecorded":
            if s.last_activity_at is None or e.occurred_at > s.last_activity_at:
                s.last_activity_at = e.occurred_at
        case "deals.ContractSigned":
            cid = str(d.get("contract_id"))
            s.contracts[cid] = _Contract(
                contract_id=cid,
                title=_s(d.get("title")),
                start_date=_s(d.get("start_date")),
                end_date=_s(d.get("end_date")),
                amount=_s(d.get("amount")),
                currency=_s(d.get("currency")),
                billing_cycle=_s(d.get("billing_cycle")),
                auto_renewal=bool(d.get("auto_renewal")),
            )
        case "deals.ContractRenewed" | "deals.ContractAmended" | "deals.ContractCancelled" | "deals.ContractExpired":
            contract = s.contracts.get(str(d.get("contract_id")))
            if contract is None:
                return
            for name in ("end_date", "amount", "currency", "billing_cycle"):
                if d.get(name) is not None:
                    setattr(contract, name, str(d[name]))
            if d.get("auto_renewal") is not None:
                contract.auto_renewal = bool(d["auto_renewal"])
            if e.type == "deals.ContractRenewed":
                contract.status = "active"
            elif e.type == "deals.ContractCancelled":
                contract.status, contract.cancelled_from = "cancelled", _s(d.get("effective_on"))
            elif e.type == "deals.ContractExpired":
                contract.status = "expired"
        case "deals.OrderPlaced":
            oid = str(d.get("order_id"))
            lines = d.get("lines") or ()
            s.orders[oid] = Order(
                order_id=oid,
                order_date=date.fromisoformat(str(d.get("order_date"))),
                currency=str(d.get("currency") or "JPY"),
                total=Decimal(str(d.get("total"))),
                units=sum(int(line.get("quantity") or 0) for line in lines if isinstance(line, Mapping)),
            )
        case "deals.OrderDelivered":
            pass
        case "deals.OrderCancelled":
            order = s.orders.get(str(d.get("order_id")))
            if order is not None:
                s.orders[order.order_id] = order.cancelled(Decimal(str(d.get("amount"))))
        case "deals.OrderReturned":
            order = s.orders.get(str(d.get("order_id")))
            if order is not None:
                units = sum(
                    int(line.get("quantity") or 0) for line in d.get("lines") or () if isinstance(line, Mapping)
                )
                s.orders[order.order_id] = order.returned(Decimal(str(d.get("amount"))), units, bool(d.get("full")))
        case "deals.InvoiceIssued":
            s.invoices[str(d.get("invoice_id"))] = _Invoice(Decimal(str(d.get("amount"))))
        case "deals.InvoiceOverdue":
            pass
        case "deals.InvoiceCancelled":
            invoice = s.invoices.get(str(d.get("invoice_id")))
            if invoice is not None:
                invoice.cancelled = True
        case "deals.PaymentReceived":
            s.payments.append((_s(d.get("invoice_id")), Decimal(str(d.get("amount")))))
        case "deals.CustomerBudgetSet":
            s.budgets[int(d.get("fiscal_year") or 0)] = str(d.get("amount"))
        case _:
            pass


def _apply_support(s: _State, e: CustomerEvent) -> None:
    d = e.data
    tid = str(d.get("ticket_id"))
    if e.type == "support.TicketOpened":
        s.tickets[tid] = _Ticket(
            ticket_id=tid,
            kind=str(d.get("kind")),
            subject=d.get("subject"),
            category=_s(d.get("category")),
            channel=_s(d.get("channel")),
            priority=_s(d.get("priority")),
            status="new",
            opened_at=e.occurred_at.isoformat(),
        )
        return
    ticket = s.tickets.get(tid)
    if ticket is None:
        return
    match e.type:
        case "support.TicketAssigned":
            ticket.assignee, ticket.team = _s(d.get("assignee")), _s(d.get("team"))
        case "support.TicketStatusChanged":
            ticket.status = str(d.get("status"))
        case "support.TicketReplied":
            if ticket.status == "new":
                ticket.status = "open"
        case "support.TicketEscalated":
            ticket.escalation_level = int(d.get("level") or 0)
        case "support.TicketResolved":
            ticket.status = "resolved"
        case "support.TicketReopened":
            ticket.status = "open"
        case "support.TicketClosed":
            ticket.status = "closed"
        case "support.TicketSatisfactionRated":
            s.ratings[(tid, int(d.get("resolution_number") or 1))] = int(d.get("score") or 0)
        case "support.TicketNoteAdded" | "support.TicketLinked" | "support.TicketSlaBreached":
            pass
        case _:
            pass


def fold(
    customer_id: UUID,
    events: Iterable[CustomerEvent],
    today: date,
    merged_from: Iterable[UUID] = (),
) -> Customer360:
    """The 360 of `customer_id` from its events and those of the customers merged into it.

    Profile, consent, persons, rank and tags come from the customer's own contacts stream (a merge
    copies what the survivor takes over into that stream); deals, orders, invoices and tickets of
    merged records count as the survivor's.
    """
    unique = {e.event_id: e for e in events}
    ordered = sorted(unique.values(), key=lambda e: (e.stream_id, e.version, e.event_id))
    s = _State(customer_id)
    for e in ordered:
        s.event_count += 1
        if s.last_event_at is None or e.occurred_at > s.last_event_at:
            s.last_event_at = e.occurred_at
        service = e.type.partition(".")[0]
        if service == "contacts":
            if e.customer_id == customer_id:
                _apply_contacts(s, e)
        elif service == "deals":
            _apply_deals(s, e)
        elif service == "support":
            _apply_support(s, e)
    fiscal_month = s.profile.get("fiscal_month")
    metrics = revenue_metrics(
        s.orders.values(),
        today=today,
        fiscal_month=int(fiscal_month) if isinstance(fiscal_month, int) and 1 <= fiscal_month <= 12 else 3,
        outstanding=_outstanding(s),
        csat_scores=list(s.ratings.values()),
        complaint_count=sum(1 for t in s.tickets.values() if t.kind == "complaint"),
    )
    return Customer360(
        customer_id=customer_id,
        merged_from=tuple(merged_from),
        exists=s.registered_at is not None or s.event_count > 0,
        document=_document(s, tuple(merged_from)),
        metrics=metrics,
    )


def _outstanding(s: _State) -> Decimal:
    """Billed and not yet paid: invoices not cancelled, minus the payments made against them.

    A payment without an invoice (a consumer paying at the till) settles nothing that was billed, so it
    does not lower the outstanding amount (it would otherwise go negative).
    """
    billed = sum((i.amount for i in s.invoices.values() if not i.cancelled), Decimal(0))
    paid = sum(
        (amount for invoice_id, amount in s.payments if invoice_id is not None and not _cancelled(s, invoice_id)),
        Decimal(0),
    )
    return billed - paid


def _cancelled(s: _State, invoice_id: str) -> bool:
    invoice = s.invoices.get(invoice_id)
    return invoice is not None and invoice.cancelled


def _document(s: _State, merged_from: tuple[UUID, ...]) -> dict[str, Any]:
    profile = {name: s.profile.get(name) for name in PROFILE_FIELDS}
    open_tickets = [vars(t) | {} for t in s.tickets.values() if t.status in OPEN_TICKET_STATUSES]
    open_tickets.sort(key=lambda t: (t["opened_at"], t["ticket_id"]))
    open_deals = [{k: v for k, v in vars(d).items() if k != "outcome"} for d in s.deals.values() if d.outcome is None]
    open_deals.sort(key=lambda d: (d["opened_at"], d["deal_id"]))
    return {
        "customer_id": str(s.customer_id),
        "merged_from": [str(m) for m in merged_from],
        "merged_into": s.merged_into,
        "kind": s.kind,
        "registered_at": s.registered_at,
        "erased": s.erased,
        "profile": {**profile, "external_id": s.external_id, "payment_terms": s.payment_terms},
        "contact_persons": sorted(s.persons.values(), key=lambda p: (not p["active"], str(p["person_id"]))),
        "consent": sorted(s.consent.values(), key=lambda c: (c["channel"], c["purpose"])),
        "rank": s.rank,
        "tags": sorted(s.tags),
        "interests": sorted(s.interests),
        "campaigns": s.campaigns,
        "open_deals": open_deals,
        "contracts": sorted(
            (vars(c) | {} for c in s.contracts.values()), key=lambda c: (c["start_date"] or "", c["contract_id"])
        ),
        "open_tickets": open_tickets,
        "open_complaints": [t for t in open_tickets if t["kind"] == "complaint"],
        "budgets": [{"fiscal_year": y, "amount": a} for y, a in sorted(s.budgets.items())],
        "last_activity_at": None if s.last_activity_at is None else s.last_activity_at.isoformat(),
        "last_event_at": None if s.last_event_at is None else s.last_event_at.isoformat(),
        "event_count": s.event_count,
    }
