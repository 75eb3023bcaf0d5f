"""The deals scheduler against the real deals database, driven by a fake clock (nothing sleeps)."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from datetime import date, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import pytest
from crm_deals.app.aggregates import CONTRACT, INVOICE, Deadline
from crm_deals.app.commands import Call, DealsCommands
from crm_deals.app.scheduler import SCHEDULER, DealsScheduler
from crm_deals.deadlines import PostgresDeadlines
from crm_deals.domain.commands import (
    CancelContract,
    IssueInvoice,
    RecordPayment,
    RenewContract,
    SignContract,
)
from crm_deals.replica.queries import ReplicaDirectory
from crm_eventstore.ids import new_id
from crm_eventstore.store import PostgresEventStore

from .builders import JST, NOW, context, contract_body, invoice_body
from .conftest import known_customer

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def set(self, year: int, month: int, day: int, hour: int = 0, minute: int = 5) -> None:
        self.now = datetime(year, month, day, hour, minute, tzinfo=JST)


class Office:
    """The deals command side and scheduler sharing one fake clock and one database."""

    def __init__(self, store: PostgresEventStore) -> None:
        self.store = store
        self.clock = FakeClock(NOW)
        self.deadlines = PostgresDeadlines(store.pool)
        self.commands = DealsCommands(
            store, customers=ReplicaDirectory(store.pool), deadlines=self.deadlines, clock=self.clock
        )
        self.scheduler = DealsScheduler(self.commands, self.deadlines, clock=self.clock)
        self.call = Call(context())

    async def customer(self) -> UUID:
        cid = new_id()
        await known_customer(self.store.pool, cid)
        return cid

    async def sign(self, **overrides: object) -> UUID:
        contract_id = new_id()
        body = contract_body(await self.customer(), **overrides)
        await self.commands.sign_contract(contract_id, SignContract.model_validate(body), self.call)
        return contract_id

    async def issue(self, **overrides: object) -> tuple[UUID, UUID]:
        invoice_id, cid = new_id(), await self.customer()
        await self.commands.issue_invoice(
            invoice_id, IssueInvoice.model_validate(invoice_body(cid, **overrides)), self.call
        )
        return invoice_id, cid

    async def types(self, stream: str) -> list[str]:
        return [e.type.removeprefix("deals.") for e in await self.store.read_stream(stream)]

    async def tick_for(self, aggregate_id: UUID) -> list[Deadline]:
        """One tick; what it acted on for this aggregate (other tests share the table)."""
        return [d for d in await self.scheduler.tick() if d.aggregate_id == aggregate_id]


@pytest.fixture
def office(deals_store: PostgresEventStore) -> Office:
    return Office(deals_store)


async def test_a_contract_expires_the_day_after_its_end_date_and_only_once(office: Office) -> None:
    cid = await office.sign()  # 2026-04-01 .. 2027-03-31
    office.clock.set(2027, 3, 31, 23, 59)
    assert await office.tick_for(cid) == []

    office.clock.set(2027, 4, 1)
    [acted] = await office.tick_for(cid)
    assert (acted.kind, acted.due_on) == ("contract_end", date(2027, 3, 31))
    assert await office.tick_for(cid) == []

    assert await office.types(f"contract-{cid}") == ["ContractSigned", "ContractExpired"]
    expired = (await office.store.read_stream(f"contract-{cid}"))[-1]
    assert expired.actor.subject == SCHEDULER.subject
    state = await office.commands.load(CONTRACT, cid)
    assert state.status == "expired"
    deadline = await office.deadlines.get("contract_end", cid)
    assert deadline is not None
    assert deadline.due_on is None


async def test_an_auto_renewal_contract_renews_year_after_year(office: Office) -> None:
    cid = await office.sign(auto_renewal=True)
    office.clock.set(2027, 4, 1)
    assert len(await office.tick_for(cid)) == 1
    office.clock.set(2028, 4, 1)
    assert len(await office.tick_for(cid)) == 1
    assert await office.types(f"contract-{cid}") == ["ContractSigned", "ContractRenewed", "ContractRenewed"]
    state = await office.commands.load(CONTRACT, cid)
    assert (state.status, state.end_date, state.renewals) == ("active", date(2029, 3, 31), 2)


async def test_a_renewed_or_cancelled_contract_does_not_expire_at_the_old_end(office: Office) -> None:
    renewed = await office.sign()
    await office.commands.on_contract(renewed, RenewContract(end_date=date(2028, 3, 31)), office.call)
    cancelled = await office.sign()
    await office.commands.on_contract(cancelled, CancelContract(reason="解約"), office.call)
    office.clock.set(2027, 4, 1)
    assert await office.tick_for(renewed) == []
    assert await office.tick_for(cancelled) == []
    office.clock.set(2028, 4, 1)
    assert len(await office.tick_for(renewed)) == 1


async def test_an_unpaid_invoice_becomes_overdue_after_its_due_date_with_what_is_outstanding(office: Office) -> None:
    iid, cid = await office.issue()  # 110000 due 2026-04-30
    payment = RecordPayment(
        customer_id=cid, invoice_id=iid, amount=Decimal(10000), paid_on=date(2026, 4, 1), method="bank_transfer"
    )
    await office.commands.record_payment(payment, office.call)
    office.clock.set(2026, 4, 30, 23, 59)
    assert await office.tick_for(iid) == []
    office.clock.set(2026, 5, 1)
    [acted] = await office.tick_for(iid)
    assert acted.kind == "invoice_due"
    assert await office.tick_for(iid) == []
    [overdue] = [e for e in await office.store.read_stream(f"invoice-{iid}") if e.type == "deals.InvoiceOverdue"]
    assert (overdue.payload["outstanding"], overdue.payload["due_date"]) == ("100000", "2026-04-30")
    state = await office.commands.load(INVOICE, iid)
    assert state.overdue


async def test_a_paid_invoice_never_becomes_overdue(office: Office) -> None:
    iid, cid = await office.issue()
    payment = RecordPayment(
        customer_id=cid, invoice_id=iid, amount=Decimal(110000), paid_on=date(2026, 4, 1), method="bank_transfer"
    )
    await office.commands.record_payment(payment, office.call)
    office.clock.set(2026, 6, 1)
    assert await office.tick_for(iid) == []
    assert await office.types(f"invoice-{iid}") == ["InvoiceIssued", "PaymentReceived"]


async def test_only_one_scheduler_replica_leads_at_a_time(office: Office, deals_store: PostgresEventStore) -> None:
    other = PostgresDeadlines(deals_store.pool)
    async with office.deadlines.leadership() as leading:
        assert leading
        async with other.leadership() as also:
            assert not also
    async with other.leadership() as now_leading:
        assert now_leading


class StopAfterOneScan:
    """Deadlines that stop the scheduler loop once it has scanned them."""

    def __init__(self, deadlines: PostgresDeadlines, stop: asyncio.Event) -> None:
        self.deadlines = deadlines
        self.stop = stop
        self.scans = 0

    async def passed(self, today: date, limit: int = 500) -> list[Deadline]:
        self.scans += 1
        self.stop.set()
        return await self.deadlines.passed(today, limit)

    def leadership(self) -> AbstractAsyncContextManager[bool]:
        return self.deadlines.leadership()


async def test_the_loop_ticks_while_leading_and_returns_when_stopped(office: Office) -> None:
    cid = await office.sign()
    office.clock.now = NOW + timedelta(days=400)
    stop = asyncio.Event()
    deadlines = StopAfterOneScan(office.deadlines, stop)
    scheduler = DealsScheduler(office.commands, deadlines, clock=office.clock)

    await asyncio.wait_for(scheduler.run(stop, interval=3600), 30)

    assert deadlines.scans == 1
    assert await office.types(f"contract-{cid}") == ["ContractSigned", "ContractExpired"]
