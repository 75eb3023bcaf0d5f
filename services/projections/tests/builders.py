"""Test-data builders ("controls") for the projections: domain events of every service, histories, envelopes."""

from __future__ import annotations

import secrets
import tempfile
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import httpx
from crm_cli.testing import TEST_PASSWORD, TEST_ROLE
from crm_eventstore.ids import new_id
from crm_eventstore.keyring import Keyring
from crm_eventstore.projection import Delivery, ProjectionRunner
from crm_eventstore.provision import provision_event_store, provision_read_models
from crm_eventstore.store import CommandContext, PostgresEventStore, create_pool
from crm_http.auth import DevIssuer, TokenVerifier
from crm_projections.api import create_app
from crm_projections.customer360.fold import CustomerEvent
from crm_projections.customer360.queries import Customer360Queries
from crm_projections.read_models import READ_MODELS_DDL, READ_MODELS_GRANTS
from crm_projections.timeline.project import TimelineProjection
from crm_projections.timeline.queries import TimelineQueries
from crm_schemas import contacts, deals, support
from crm_schemas.base import DomainEvent
from crm_schemas.envelope import ActorRef, EventEnvelope
from crm_schemas.registry import SERVICES, topic_for

T0 = datetime(2024, 4, 1, 9, 0, tzinfo=UTC)
D = timedelta(days=1)
ACTOR = ActorRef(subject="u-sales-1", role="sales", team="east")


def stream_of(event: DomainEvent) -> str:
    """The stream an event belongs to, as the services name them."""
    data = event.to_payload()
    for key, prefix in (
        ("deal_id", "deal"),
        ("contract_id", "contract"),
        ("order_id", "order"),
        ("invoice_id", "invoice"),
        ("ticket_id", "ticket"),
        ("activity_id", "activity"),
    ):
        if event.stream_prefix == prefix and data.get(key):
            return f"{prefix}-{data[key]}"
    if isinstance(event, deals.PaymentReceived):
        return f"invoice-{event.invoice_id}" if event.invoice_id else f"payment-{event.payment_id}"
    return f"{event.stream_prefix}-{event.customer_id}"


class History:
    """Events of customers as the timeline would hold them, with stream versions counted per stream."""

    def __init__(self) -> None:
        self.events: list[CustomerEvent] = []
        self.versions: dict[str, int] = defaultdict(int)

    def add(self, event: DomainEvent, recorded_at: datetime | None = None) -> CustomerEvent:
        """Record an event (plaintext data: as the 360 sees it after decryption)."""
        stream = stream_of(event)
        self.versions[stream] += 1
        entry = CustomerEvent(
            event_id=new_id(),
            customer_id=event.customer_id,
            type=event.type,
            stream_id=stream,
            version=self.versions[stream],
            occurred_at=event.occurred_at,
            recorded_at=recorded_at or event.occurred_at,
            data=event.to_payload(),
        )
        self.events.append(entry)
        return entry

    def extend(self, events: Sequence[DomainEvent]) -> None:
        """Record several events."""
        for event in events:
            self.add(event)


def at(day: date, hour: int = 10) -> datetime:
    """A UTC instant on a day."""
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


# ---- contacts -----------------------------------------------------------------------------------


def registered(
    cid: UUID, name: str = "株式会社ABC商事", when: datetime = T0, **extra: Any
) -> contacts.CustomerRegistered:
    """A company registered in the customer master."""
    return contacts.CustomerRegistered(customer_id=cid, occurred_at=when, kind="company", name=name, **extra)


def merged(survivor: UUID, absorbed: UUID, when: datetime, **extra: Any) -> list[DomainEvent]:
    """The two events of a merge: on the survivor and on the absorbed record."""
    return [
        contacts.CustomersMerged(
            customer_id=survivor,
            occurred_at=when,
            absorbed_id=absorbed,
            field_choices={},
            taken={},
            previous={},
            **extra,
        ),
        contacts.CustomerMergedInto(customer_id=absorbed, occurred_at=when, survivor_id=survivor),
    ]


def unmerged(survivor: UUID, absorbed: UUID, when: datetime, **extra: Any) -> list[DomainEvent]:
    """The two events of an unmerge."""
    return [
        contacts.CustomersUnmerged(customer_id=survivor, occurred_at=when, absorbed_id=absorbed, restored={}, **extra),
        contacts.CustomerUnmergedFrom(customer_id=absorbed, occurred_at=when, survivor_id=survivor),
    ]


# ---- deals --------------------------------------------------------------------------------------


def order_line(
    line_no: int, unit_price: str, quantity: int, code: str = "PC-001", category: str = "PC"
) -> deals.OrderLine:
    """An order line with its amounts computed (tax 10%)."""
    amount = Decimal(unit_price) * quantity
    return deals.OrderLine(
        line_no=line_no,
        product_code=code,
        product_name=f"product {code}",
        category=category,
        unit_price=unit_price,
        quantity=quantity,
        line_amount=str(amount),
        tax_amount=str((amount * Decimal("0.10")).quantize(Decimal(1))),
    )


def order_placed(
    cid: UUID, order_date: date, lines: Sequence[tuple[str, int]], order_id: UUID | None = None, currency: str = "JPY"
) -> deals.OrderPlaced:
    """An order of (unit_price, quantity) lines on a date."""
    built = [order_line(i, price, qty) for i, (price, qty) in enumerate(lines, start=1)]
    total = sum((Decimal(line.line_amount) for line in built), Decimal(0))
    tax = sum((Decimal(line.tax_amount) for line in built), Decimal(0))
    return deals.OrderPlaced(
        customer_id=cid,
        occurred_at=at(order_date),
        order_id=order_id or new_id(),
        order_date=order_date,
        currency=currency,
        lines=built,
        line_count=len(built),
        total=str(total),
        tax_total=str(tax),
        total_with_tax=str(total + tax),
    )


def order_cancelled(order: deals.OrderPlaced, amount: str, when: datetime | None = None) -> deals.OrderCancelled:
    """The order cancelled, reversing `amount`."""
    return deals.OrderCancelled(
        customer_id=order.customer_id,
        occurred_at=when or order.occurred_at + timedelta(days=1),
        order_id=order.order_id,
        amount=amount,
        currency=order.currency,
    )


def order_returned(
    order: deals.OrderPlaced, line_no: int, quantity: int, amount: str, full: bool = False, when: datetime | None = None
) -> deals.OrderReturned:
    """Part of an order line returned."""
    moment = when or order.occurred_at + timedelta(days=3)
    return deals.OrderReturned(
        customer_id=order.customer_id,
        occurred_at=moment,
        order_id=order.order_id,
        lines=[deals.ReturnedLine(line_no=line_no, quantity=quantity, amount=amount)],
        amount=amount,
        currency=order.currency,
        full=full,
        returned_on=moment.date(),
    )


def deal_opened(cid: UUID, amount: str = "1200000", stage: str = "lead", when: datetime = T0) -> deals.DealOpened:
    """A deal opened for the customer."""
    return deals.DealOpened(
        customer_id=cid,
        occurred_at=when,
        deal_id=new_id(),
        title="PC入れ替え",
        owner="u-sales-1",
        amount=amount,
        stage=stage,
    )


def invoice_issued(cid: UUID, amount: str, when: datetime = T0) -> deals.InvoiceIssued:
    """An invoice."""
    return deals.InvoiceIssued(
        customer_id=cid,
        occurred_at=when,
        invoice_id=new_id(),
        invoice_number=f"INV-{secrets.token_hex(3)}",
        issued_on=when.date(),
        due_date=(when + timedelta(days=30)).date(),
        amount=amount,
    )


def payment(cid: UUID, amount: str, invoice_id: UUID | None, when: datetime = T0) -> deals.PaymentReceived:
    """A payment, against an invoice or unapplied."""
    return deals.PaymentReceived(
        customer_id=cid,
        occurred_at=when,
        payment_id=new_id(),
        invoice_id=invoice_id,
        amount=amount,
        paid_on=when.date(),
        method="bank_transfer",
    )


# ---- support ------------------------------------------------------------------------------------


def ticket_opened(
    cid: UUID, kind: str = "inquiry", when: datetime = T0, subject: str = "請求書について"
) -> support.TicketOpened:
    """An inquiry or complaint."""
    return support.TicketOpened(
        customer_id=cid,
        occurred_at=when,
        ticket_id=new_id(),
        kind=kind,  # type: ignore[arg-type]
        channel="phone",
        category="billing",
        priority="normal",
        subject=subject,
        content="内容",
        sla_policy="standard",
    )


def rated(ticket: support.TicketOpened, score: int, when: datetime | None = None) -> support.TicketSatisfactionRated:
    """A CSAT score for the ticket's first resolution."""
    return support.TicketSatisfactionRated(
        customer_id=ticket.customer_id,
        occurred_at=when or ticket.occurred_at + timedelta(days=2),
        ticket_id=ticket.ticket_id,
        score=score,
        resolution_number=1,
    )


# ---- whole lives: every event type of every service -------------------------------------------


def contacts_life(cid: UUID) -> list[DomainEvent]:
    """Every contacts event a customer's own stream can hold (merges of others into it included)."""
    person, other = new_id(), new_id()
    absorbed = new_id()
    t = T0
    return [
        registered(
            cid, "株式会社ABC商事", t, name_kana="エービーシーショウジ", email="info@abc.example", fiscal_month=12
        ),
        contacts.CustomerRenamed(customer_id=cid, occurred_at=t + D, name="ABC商事株式会社", name_kana="エービーシー"),
        contacts.CustomerAddressChanged(
            customer_id=cid,
            occurred_at=t + D,
            address=contacts.PostalAddress(postal_code="530-0001", prefecture="大阪府", city="大阪市北区"),
        ),
        contacts.CustomerPhoneChanged(customer_id=cid, occurred_at=t + D, phone="+81612345678"),
        contacts.CustomerEmailChanged(customer_id=cid, occurred_at=t + D, email="sales@abc.example"),
        contacts.CustomerWebsiteChanged(customer_id=cid, occurred_at=t + D, url="https://abc.example"),
        contacts.CustomerIndustryChanged(customer_id=cid, occurred_at=t + D, industry="製造業"),
        contacts.CustomerCorporateNumberAssigned(customer_id=cid, occurred_at=t + D, corporate_number="1234567890123"),
        contacts.CustomerCapitalChanged(customer_id=cid, occurred_at=t + D, capital="10000000"),
        contacts.CustomerHeadcountChanged(customer_id=cid, occurred_at=t + D, employee_count=120),
        contacts.CustomerFiscalMonthChanged(customer_id=cid, occurred_at=t + D, fiscal_month=3),
        contacts.CustomerRepresentativeChanged(customer_id=cid, occurred_at=t + D, representative="山田太郎"),
        contacts.CustomerPersonalDetailsChanged(
            customer_id=cid, occurred_at=t + D, changed=["occupation"], occupation="経営者"
        ),
        contacts.CustomerRankChanged(customer_id=cid, occurred_at=t + D, rank="A", previous_rank=None),
        contacts.CustomerTagged(customer_id=cid, occurred_at=t + D, tag="VIP"),
        contacts.CustomerTagged(customer_id=cid, occurred_at=t + D, tag="展示会"),
        contacts.CustomerUntagged(customer_id=cid, occurred_at=t + D, tag="展示会"),
        contacts.MarketingInterestAdded(customer_id=cid, occurred_at=t + D, interest="PC"),
        contacts.MarketingInterestAdded(customer_id=cid, occurred_at=t + D, interest="複合機"),
        contacts.MarketingInterestRemoved(customer_id=cid, occurred_at=t + D, interest="複合機"),
        contacts.CampaignJoined(customer_id=cid, occurred_at=t + D, campaign="spring-2024"),
        contacts.ConsentGranted(customer_id=cid, occurred_at=t + D, channel="email", source="web"),
        contacts.ConsentGranted(customer_id=cid, occurred_at=t + D, channel="post", source="web"),
        contacts.ConsentWithdrawn(customer_id=cid, occurred_at=t + 2 * D, channel="post", source="phone"),
        contacts.PaymentTermsSet(customer_id=cid, occurred_at=t + D, payment_terms="月末締め翌月末払い"),
        contacts.ContactPersonAdded(
            customer_id=cid, occurred_at=t + D, person_id=person, name="佐藤花子", department="総務部", title="課長"
        ),
        contacts.ContactPersonAdded(customer_id=cid, occurred_at=t + D, person_id=other, name="鈴木一郎"),
        contacts.ContactPersonTitleChanged(customer_id=cid, occurred_at=t + 2 * D, person_id=person, title="部長"),
        contacts.ContactPersonMovedDepartment(
            customer_id=cid, occurred_at=t + 2 * D, person_id=person, department="情報システム部"
        ),
        contacts.ContactPersonContactDetailsChanged(
            customer_id=cid, occurred_at=t + 2 * D, person_id=person, email="sato@abc.example"
        ),
        contacts.ContactPersonDecisionRoleChanged(
            customer_id=cid, occurred_at=t + 2 * D, person_id=person, decision_role="decision_maker"
        ),
        contacts.ContactPersonLeftCompany(customer_id=cid, occurred_at=t + 3 * D, person_id=other),
        contacts.CustomersMerged(
            customer_id=cid,
            occurred_at=t + 4 * D,
            absorbed_id=absorbed,
            field_choices={"phone": "absorbed"},
            taken={"phone": "+81699999999"},
            previous={"phone": "+81612345678"},
            added_tags=["旧顧客"],
            added_person_ids=[],
        ),
        contacts.CustomersUnmerged(
            customer_id=cid,
            occurred_at=t + 5 * D,
            absorbed_id=absorbed,
            restored={"phone": "+81612345678"},
            removed_tags=["旧顧客"],
        ),
    ]


def absorbed_life(absorbed: UUID, survivor: UUID) -> list[DomainEvent]:
    """The contacts events only a merged-away record's own stream holds."""
    return [
        registered(absorbed, "ABC商事（重複）"),
        contacts.CustomerMergedInto(customer_id=absorbed, occurred_at=T0 + D, survivor_id=survivor),
        contacts.CustomerUnmergedFrom(customer_id=absorbed, occurred_at=T0 + 2 * D, survivor_id=survivor),
        contacts.CustomerErased(customer_id=absorbed, occurred_at=T0 + 3 * D, basis="data_subject_request"),
    ]


def deals_life(cid: UUID) -> tuple[list[DomainEvent], dict[str, UUID]]:
    """Every deals-service event: deals, activities, contracts, orders, invoices, payments, budgets."""
    won, lost, open_ = deal_opened(cid, "500000"), deal_opened(cid, "300000"), deal_opened(cid, "1200000", "lead")
    contract_id, ended, cancelled = new_id(), new_id(), new_id()
    order = order_placed(cid, date(2024, 5, 10), [("100000", 3), ("5000", 2)])
    gone = order_placed(cid, date(2024, 6, 1), [("80000", 1)])
    invoice, voided = invoice_issued(cid, "341000"), invoice_issued(cid, "88000")
    action = new_id()
    t = T0
    events: list[DomainEvent] = [
        open_,
        deals.DealStageChanged(
            customer_id=cid, occurred_at=t + D, deal_id=open_.deal_id, stage="proposal", previous_stage="lead"
        ),
        deals.DealAmountRevised(
            customer_id=cid,
            occurred_at=t + D,
            deal_id=open_.deal_id,
            amount="1500000",
            previous_amount="1200000",
            currency="JPY",
        ),
        deals.DealCloseDateRevised(
            customer_id=cid, occurred_at=t + D, deal_id=open_.deal_id, expected_close_date=date(2024, 9, 30)
        ),
        deals.DealOwnerChanged(
            customer_id=cid, occurred_at=t + D, deal_id=open_.deal_id, owner="u-sales-2", previous_owner="u-sales-1"
        ),
        deals.DealNextActionSet(
            customer_id=cid, occurred_at=t + D, deal_id=open_.deal_id, action_id=action, action="見積送付"
        ),
        deals.DealNextActionDone(
            customer_id=cid, occurred_at=t + 2 * D, deal_id=open_.deal_id, action_id=action, action="見積送付"
        ),
        won,
        deals.DealWon(
            customer_id=cid,
            occurred_at=t + D,
            deal_id=won.deal_id,
            amount="480000",
            currency="JPY",
            previous_stage="lead",
            won_on=t.date(),
        ),
        lost,
        deals.DealLost(
            customer_id=cid,
            occurred_at=t + D,
            deal_id=lost.deal_id,
            reason="価格",
            previous_stage="lead",
            lost_on=t.date(),
        ),
        deals.DealReopened(
            customer_id=cid, occurred_at=t + 2 * D, deal_id=lost.deal_id, stage="negotiation", previous_outcome="lost"
        ),
        deals.ActivityRecorded(
            customer_id=cid,
            occurred_at=t + 3 * D,
            activity_id=new_id(),
            kind="visit",
            staff="u-sales-1",
            subject="定例訪問",
        ),
        deals.ContractSigned(
            customer_id=cid,
            occurred_at=t,
            contract_id=contract_id,
            title="保守契約",
            start_date=date(2024, 4, 1),
            end_date=date(2025, 3, 31),
            amount="20000",
            billing_cycle="monthly",
        ),
        deals.ContractRenewed(
            customer_id=cid,
            occurred_at=t + D,
            contract_id=contract_id,
            previous_end_date=date(2025, 3, 31),
            end_date=date(2026, 3, 31),
            amount="20000",
            currency="JPY",
        ),
        deals.ContractAmended(
            customer_id=cid, occurred_at=t + 2 * D, contract_id=contract_id, reason="値上げ", amount="22000"
        ),
        deals.ContractSigned(
            customer_id=cid,
            occurred_at=t,
            contract_id=ended,
            title="スポット",
            start_date=date(2024, 4, 1),
            end_date=date(2024, 4, 30),
            amount="50000",
            billing_cycle="one_time",
        ),
        deals.ContractExpired(customer_id=cid, occurred_at=t + 30 * D, contract_id=ended, end_date=date(2024, 4, 30)),
        deals.ContractSigned(
            customer_id=cid,
            occurred_at=t,
            contract_id=cancelled,
            title="リース",
            start_date=date(2024, 4, 1),
            end_date=date(2027, 3, 31),
            amount="30000",
            billing_cycle="monthly",
        ),
        deals.ContractCancelled(
            customer_id=cid, occurred_at=t + 9 * D, contract_id=cancelled, reason="移転", effective_on=date(2024, 9, 30)
        ),
        order,
        deals.OrderDelivered(
            customer_id=cid, occurred_at=order.occurred_at + D, order_id=order.order_id, delivered_on=order.order_date
        ),
        order_returned(order, 1, 1, "100000"),
        gone,
        order_cancelled(gone, "80000"),
        invoice,
        deals.InvoiceOverdue(
            customer_id=cid,
            occurred_at=t + 40 * D,
            invoice_id=invoice.invoice_id,
            due_date=invoice.due_date,
            outstanding="341000",
            currency="JPY",
        ),
        payment(cid, "200000", invoice.invoice_id),
        voided,
        deals.InvoiceCancelled(customer_id=cid, occurred_at=t + D, invoice_id=voided.invoice_id, reason="誤請求"),
        payment(cid, "1000", None),
        deals.CustomerBudgetSet(customer_id=cid, occurred_at=t, fiscal_year=2025, amount="3000000"),
    ]
    ids = {
        "open": open_.deal_id,
        "reopened": lost.deal_id,
        "contract": contract_id,
        "ended": ended,
        "cancelled": cancelled,
    }
    return events, ids


def support_life(cid: UUID) -> tuple[list[DomainEvent], dict[str, UUID]]:
    """Every support event: a complaint still open, an inquiry resolved, rated, reopened, closed."""
    complaint = ticket_opened(cid, "complaint", subject="納品遅延")
    inquiry = ticket_opened(cid, "inquiry", subject="請求書")
    done = ticket_opened(cid, "inquiry", subject="操作方法")
    t = T0
    tid, iid, did = complaint.ticket_id, inquiry.ticket_id, done.ticket_id
    events: list[DomainEvent] = [
        complaint,
        support.TicketAssigned(customer_id=cid, occurred_at=t + D, ticket_id=tid, assignee="u-cs-1", team="cs"),
        support.TicketStatusChanged(
            customer_id=cid, occurred_at=t + D, ticket_id=tid, status="open", previous_status="new"
        ),
        support.TicketReplied(
            customer_id=cid, occurred_at=t + D, ticket_id=tid, channel="phone", content="お詫び", first_response=True
        ),
        support.TicketNoteAdded(customer_id=cid, occurred_at=t + D, ticket_id=tid, content="社内メモ"),
        support.TicketEscalated(
            customer_id=cid, occurred_at=t + D, ticket_id=tid, level=2, previous_level=0, reason="重大"
        ),
        support.TicketLinked(customer_id=cid, occurred_at=t + D, ticket_id=tid, link_type="ticket", target=str(iid)),
        support.TicketSlaBreached(
            customer_id=cid,
            occurred_at=t + 2 * D,
            ticket_id=tid,
            target="resolution",
            due_at=t + D,
            kind="complaint",
            priority="normal",
        ),
        inquiry,
        support.TicketResolved(
            customer_id=cid,
            occurred_at=t + D,
            ticket_id=iid,
            resolution="再発行",
            previous_status="open",
            resolution_number=1,
        ),
        rated(inquiry, 4),
        support.TicketReopened(customer_id=cid, occurred_at=t + 3 * D, ticket_id=iid, previous_status="resolved"),
        done,
        support.TicketResolved(
            customer_id=cid,
            occurred_at=t + D,
            ticket_id=did,
            resolution="説明",
            previous_status="open",
            resolution_number=1,
        ),
        rated(done, 5),
        support.TicketClosed(customer_id=cid, occurred_at=t + 4 * D, ticket_id=did, previous_status="resolved"),
    ]
    return events, {"complaint": tid, "inquiry": iid, "done": did}


# ---- through real PostgreSQL --------------------------------------------------------------------


@asynccontextmanager
async def read_model_pool(pg_admin_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A fresh projections database with every read model's tables, as the runtime role."""
    url = await provision_read_models(
        pg_admin_url,
        f"crm_test_rm_{secrets.token_hex(5)}",
        TEST_ROLE,
        TEST_PASSWORD,
        READ_MODELS_DDL,
        READ_MODELS_GRANTS,
    )
    pool = await create_pool(url)
    try:
        yield pool
    finally:
        await pool.close()


async def record(store: PostgresEventStore, events: Sequence[DomainEvent]) -> list[EventEnvelope]:
    """Append events to their streams in a real event store (hash chains, encryption)."""
    out: list[EventEnvelope] = []
    for event in events:
        stream = stream_of(event)
        state = await store.stream_state(stream)
        result = await store.append(stream, state, [event], CommandContext(actor=ACTOR))
        out.extend(result.events)
    return out


async def project(pool: asyncpg.Pool, envelopes: Sequence[EventEnvelope], first_offset: int = 0) -> None:
    """Feed envelopes through the timeline's projection runner, as the consumer does."""

    async def never(*_: object) -> None:
        raise AssertionError("nothing should be dead-lettered")

    runner = ProjectionRunner(pool, TimelineProjection(), never)
    for offset, envelope in enumerate(envelopes, start=first_offset):
        topic = topic_for(envelope.service)
        await runner.handle(Delivery(topic, 0, offset, envelope.model_dump_json().encode(), {}))


@dataclass
class World:
    """Three service event stores, a projections database and the query API in front of it."""

    stores: dict[str, PostgresEventStore]
    read_pool: asyncpg.Pool
    keyring: Keyring
    client: httpx.AsyncClient
    headers: dict[str, str]
    urls: dict[str, str] = field(default_factory=dict)
    offset: int = 0
    recorded: list[EventEnvelope] = field(default_factory=list)
    issuer: DevIssuer | None = None

    async def record(self, events: Sequence[DomainEvent], projected: bool = True) -> list[EventEnvelope]:
        """Append events to their services' stores and (unless told otherwise) project them."""
        out: list[EventEnvelope] = []
        for event in events:
            out += await record(self.stores[event.service], [event])
        self.recorded += out
        if projected:
            await self.project(out)
        return out

    async def project(self, envelopes: Sequence[EventEnvelope]) -> None:
        """Deliver envelopes to the timeline projection."""
        await project(self.read_pool, envelopes, self.offset)
        self.offset += len(envelopes)

    async def get(self, path: str, as_role: str | None = None, **params: Any) -> httpx.Response:
        """GET on the query API as a sales user (or as `u-<role>-1` of team east, with `as_role`)."""
        headers = self.headers
        if as_role is not None:
            assert self.issuer is not None
            headers = {"Authorization": f"Bearer {self.issuer.issue(f'u-{as_role}-1', as_role, team='east')}"}
        return await self.client.get(path, params=params, headers=headers)


@asynccontextmanager
async def open_world(pg_admin_url: str, keyring: Keyring) -> AsyncIterator[World]:
    """A World on fresh databases; the query API is wired as build_app() wires it."""
    pools = []
    urls: dict[str, str] = {}
    stores: dict[str, PostgresEventStore] = {}
    for service in SERVICES:
        url = await provision_event_store(
            pg_admin_url, f"crm_test_{service}_{secrets.token_hex(5)}", TEST_ROLE, TEST_PASSWORD
        )
        urls[service] = url
        pool = await create_pool(url, min_size=1, max_size=10)
        pools.append(pool)
        stores[service] = PostgresEventStore(pool, service, keyring)
    issuer = DevIssuer(Path(tempfile.mkdtemp()) / "idp")
    app = create_app(TokenVerifier(issuer.auth_settings()))
    async with read_model_pool(pg_admin_url) as read_pool:
        app.state.timeline = TimelineQueries(read_pool, keyring)
        app.state.customer360 = Customer360Queries(read_pool, keyring)
        app.state.sources = {service: store.pool for service, store in stores.items()}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://query.test") as client:
            token = issuer.issue("u-sales-1", "sales", team="east")
            yield World(stores, read_pool, keyring, client, {"Authorization": f"Bearer {token}"}, urls, issuer=issuer)
    for pool in pools:
        await pool.close()
