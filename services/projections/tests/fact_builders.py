"""Test-data builders for the fact tables: domain events as sealed envelopes, applied through the real runtime."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
from crm_cli.testing import TEST_PASSWORD, TEST_ROLE
from crm_eventstore.ids import new_id
from crm_eventstore.keyring import Keyring
from crm_eventstore.projection import Delivery, ProjectionRunner
from crm_eventstore.provision import provision_read_models
from crm_eventstore.store import create_pool
from crm_projections.facts.schema import FACTS_DDL, FACTS_GRANTS
from crm_projections.facts.store import FactsProjection
from crm_schemas import contacts, deals, support
from crm_schemas.base import DomainEvent
from crm_schemas.contacts import PostalAddress
from crm_schemas.envelope import ActorRef, EventEnvelope

T0 = datetime(2026, 4, 1, 0, 0, tzinfo=UTC)
ACTOR = ActorRef(subject="builder", role="admin")


def envelope_of(
    event: DomainEvent, payload: dict[str, Any] | None = None, event_id: UUID | None = None
) -> EventEnvelope:
    """The envelope an event store would publish (payload as given: plaintext unless sealed)."""
    return EventEnvelope(
        event_id=event_id or new_id(),
        type=event.type,
        schema_version=event.schema_version,
        service=event.service,
        stream_id=f"{event.stream_prefix}-{event.customer_id}",
        version=1,
        customer_id=event.customer_id,
        occurred_at=event.occurred_at,
        recorded_at=datetime.now(UTC),
        actor=ACTOR,
        correlation_id=new_id(),
        payload=payload if payload is not None else event.to_payload(),
        prev_hash=None,
        hash=secrets.token_hex(32),
    )


async def sealed(keyring: Keyring, event: DomainEvent) -> EventEnvelope:
    """The envelope with its personal fields encrypted under the customer's data key, as published."""
    event_id = new_id()
    payload = await keyring.encrypt_fields(event.customer_id, event_id, event.to_payload(), event.personal_fields())
    return envelope_of(event, payload, event_id)


class Facts:
    """Feeds events through a ProjectionRunner (dedupe, position) into the fact tables."""

    def __init__(self, pool: asyncpg.Pool, keyring: Keyring, url: str = "", url_admin: str = "") -> None:
        self.pool = pool
        self.url = url
        self.url_admin = url_admin
        self.keyring = keyring
        self.projection = FactsProjection(keyring)
        self.offset = 0

        async def never(*_: object) -> None:
            raise AssertionError("nothing should be dead-lettered")

        self.runner = ProjectionRunner(pool, self.projection, never, max_attempts=1)

    async def deliver(self, envelope: EventEnvelope) -> None:
        """Hand one published envelope to the runtime."""
        self.offset += 1
        value = envelope.model_dump_json().encode()
        await self.runner.handle(Delivery(f"crm.{envelope.service}.events.v1", 0, self.offset, value, {}))

    async def feed(self, *events: DomainEvent) -> list[EventEnvelope]:
        """Seal and deliver events in order; returns their envelopes (for redelivery tests)."""
        envelopes = [await sealed(self.keyring, e) for e in events]
        for envelope in envelopes:
            await self.deliver(envelope)
        return envelopes


def at(day: date, hour: int = 10) -> datetime:
    """A UTC instant on a day."""
    return datetime.combine(day, time(hour), tzinfo=UTC)


def registered(
    cid: UUID | None = None,
    name: str = "株式会社ABC商事",
    kana: str | None = "エービーシーショウジ",
    kind: str = "company",
    prefecture: str | None = "東京都",
    city: str | None = "千代田区",
    industry: str | None = "製造業",
    fiscal_month: int | None = None,
    when: datetime = T0,
) -> contacts.CustomerRegistered:
    """A customer registration (a company in Tokyo unless told otherwise)."""
    return contacts.CustomerRegistered(
        customer_id=cid or new_id(),
        occurred_at=when,
        kind=kind,  # type: ignore[arg-type]
        name=name,
        name_kana=kana,
        address=PostalAddress(prefecture=prefecture, city=city) if prefecture or city else None,
        industry=industry,
        fiscal_month=fiscal_month,
    )


Line = tuple[str, str | None, str]  # product code, category, line amount


def order(
    cid: UUID, on: date, lines: Sequence[Line] = (("PC-1", "PC", "100000"),), order_id: UUID | None = None
) -> deals.OrderPlaced:
    """An order placed on a day with (code, category, amount) lines, quantity 1 each."""
    built = [
        deals.OrderLine(
            line_no=i,
            product_code=code,
            product_name=f"product {code}",
            category=category,
            unit_price=amount,
            quantity=1,
            line_amount=amount,
            tax_amount=str(Decimal(amount) / 10),
        )
        for i, (code, category, amount) in enumerate(lines, start=1)
    ]
    total = sum((Decimal(a) for _, _, a in lines), Decimal(0))
    return deals.OrderPlaced(
        customer_id=cid,
        occurred_at=at(on),
        order_id=order_id or new_id(),
        order_date=on,
        lines=built,
        line_count=len(built),
        total=str(total),
        tax_total=str(total / 10),
        total_with_tax=str(total * Decimal("1.1")),
    )


def cancelled(placed: deals.OrderPlaced, amount: str | None = None, on: date | None = None) -> deals.OrderCancelled:
    """The order cancelled (by default its whole total)."""
    return deals.OrderCancelled(
        customer_id=placed.customer_id,
        occurred_at=at(on or placed.order_date, 12),
        order_id=placed.order_id,
        amount=amount or placed.total,
        currency="JPY",
    )


def returned(placed: deals.OrderPlaced, line_no: int, amount: str, full: bool = False) -> deals.OrderReturned:
    """Part (or the rest) of an order line came back."""
    return deals.OrderReturned(
        customer_id=placed.customer_id,
        occurred_at=at(placed.order_date, 13),
        order_id=placed.order_id,
        lines=[deals.ReturnedLine(line_no=line_no, quantity=1, amount=amount)],
        amount=amount,
        currency="JPY",
        full=full,
        returned_on=placed.order_date,
    )


def deal_opened(
    cid: UUID, amount: str = "500000", owner: str = "sato", stage: str = "lead", on: date = date(2026, 4, 1)
) -> deals.DealOpened:
    """A deal opened for a customer."""
    return deals.DealOpened(
        customer_id=cid, occurred_at=at(on), deal_id=new_id(), title="案件", owner=owner, amount=amount, stage=stage
    )


def stage_changed(deal: deals.DealOpened, stage: str, previous: str = "lead") -> deals.DealStageChanged:
    """The deal moved to another open stage."""
    return deals.DealStageChanged(
        customer_id=deal.customer_id,
        occurred_at=deal.occurred_at,
        deal_id=deal.deal_id,
        stage=stage,
        previous_stage=previous,
    )


def won(deal: deals.DealOpened, on: date, amount: str | None = None) -> deals.DealWon:
    """The deal won on a day."""
    return deals.DealWon(
        customer_id=deal.customer_id,
        occurred_at=at(on),
        deal_id=deal.deal_id,
        amount=amount or deal.amount,
        currency="JPY",
        previous_stage="negotiation",
        won_on=on,
    )


def lost(deal: deals.DealOpened, on: date) -> deals.DealLost:
    """The deal lost on a day."""
    return deals.DealLost(
        customer_id=deal.customer_id,
        occurred_at=at(on),
        deal_id=deal.deal_id,
        reason="価格",
        previous_stage="proposal",
        lost_on=on,
    )


def ticket(
    cid: UUID, kind: str = "complaint", category: str = "product", when: datetime = T0, ticket_id: UUID | None = None
) -> support.TicketOpened:
    """A ticket (a complaint about a product unless told otherwise)."""
    return support.TicketOpened(
        customer_id=cid,
        occurred_at=when,
        ticket_id=ticket_id or new_id(),
        kind=kind,  # type: ignore[arg-type]
        channel="phone",
        category=category,
        priority="normal",
        subject="件名",
        content="内容",
        sla_policy="standard",
    )


def resolved(opened: support.TicketOpened) -> support.TicketResolved:
    """The ticket resolved."""
    return support.TicketResolved(
        customer_id=opened.customer_id,
        occurred_at=opened.occurred_at,
        ticket_id=opened.ticket_id,
        resolution="対応済み",
        previous_status="open",
        resolution_number=1,
    )


def rated(opened: support.TicketOpened, score: int) -> support.TicketSatisfactionRated:
    """The customer rated the ticket's resolution."""
    return support.TicketSatisfactionRated(
        customer_id=opened.customer_id,
        occurred_at=opened.occurred_at,
        ticket_id=opened.ticket_id,
        score=score,
        resolution_number=1,
    )


def activity(cid: UUID, when: datetime, kind: str = "visit", staff: str = "sato") -> deals.ActivityRecorded:
    """A visit (or other activity) with the customer."""
    return deals.ActivityRecorded(
        customer_id=cid,
        occurred_at=when,
        activity_id=new_id(),
        kind=kind,  # type: ignore[arg-type]
        staff=staff,
        subject="訪問",
    )


def consent(cid: UUID, channel: str = "email", granted: bool = True) -> DomainEvent:
    """Consent granted (or withdrawn) on a channel for the newsletter."""
    model = contacts.ConsentGranted if granted else contacts.ConsentWithdrawn
    return model(customer_id=cid, occurred_at=T0, channel=channel, source="web")  # type: ignore[arg-type]


def tagged(cid: UUID, tag: str) -> contacts.CustomerTagged:
    """A tag put on the customer."""
    return contacts.CustomerTagged(customer_id=cid, occurred_at=T0, tag=tag)


def ranked(cid: UUID, rank: str) -> contacts.CustomerRankChanged:
    """The customer's rank changed."""
    return contacts.CustomerRankChanged(customer_id=cid, occurred_at=T0, rank=rank)


def merged_into(absorbed: UUID, survivor: UUID) -> contacts.CustomerMergedInto:
    """The absorbed side of a merge."""
    return contacts.CustomerMergedInto(customer_id=absorbed, occurred_at=T0, survivor_id=survivor)


def unmerged_from(absorbed: UUID, survivor: UUID) -> contacts.CustomerUnmergedFrom:
    """The absorbed side of an unmerge."""
    return contacts.CustomerUnmergedFrom(customer_id=absorbed, occurred_at=T0, survivor_id=survivor)


@asynccontextmanager
async def fresh_facts(pg_admin_url: str, keyring: Keyring) -> AsyncIterator[Facts]:
    """A fresh projections database with the fact tables (dropped afterwards), fed through the runtime."""
    name = f"crm_test_facts_{secrets.token_hex(5)}"
    url = await provision_read_models(pg_admin_url, name, TEST_ROLE, TEST_PASSWORD, FACTS_DDL, FACTS_GRANTS)
    pool = await create_pool(url, min_size=1, max_size=8)
    try:
        yield Facts(pool, keyring, url, pg_admin_url)
    finally:
        await pool.close()
        admin = await asyncpg.connect(pg_admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
