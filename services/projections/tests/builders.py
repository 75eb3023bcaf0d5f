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

    async def get(self, path: str, **params: Any) -> httpx.Response:
        """GET on the query API as a sales user."""
        return await self.client.get(path, params=params, headers=self.headers)


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
            yield World(stores, read_pool, keyring, client, {"Authorization": f"Bearer {token}"}, urls)
    for pool in pools:
        await pool.close()
