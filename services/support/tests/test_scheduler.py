"""The SLA scheduler against the real support database, driven by a fake clock (nothing sleeps)."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from uuid import UUID

import pytest
from crm_eventstore.ids import new_id
from crm_eventstore.store import PostgresEventStore
from crm_schemas.support import TicketSlaBreached
from crm_support.app.sla_scheduler import SCHEDULER, SlaScheduler
from crm_support.app.tickets import TicketCommands
from crm_support.calendars import holiday_calendar
from crm_support.domain.commands import ChangeStatus, ReplyToCustomer
from crm_support.domain.sla import BusinessHours, DueBreach, SlaClock, SlaPolicy
from crm_support.replica.queries import ReplicaDirectory
from crm_support.sla_clocks import PostgresSlaClocks

from .builders import HOUR, NOW, context, jst, open_command
from .conftest import known_customer

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by


class Desk:
    """Support's command side and scheduler sharing one fake clock and one database."""

    def __init__(self, store: PostgresEventStore, policy: SlaPolicy | None = None) -> None:
        self.store = store
        self.clock = FakeClock(NOW)
        self.clocks = PostgresSlaClocks(store.pool)
        self.commands = TicketCommands(
            store,
            customers=ReplicaDirectory(store.pool),
            clocks=self.clocks,
            policy=policy or SlaPolicy(),
            clock=self.clock,
        )
        self.scheduler = SlaScheduler(self.commands, self.clocks, clock=self.clock)

    async def open(self, **overrides: object) -> UUID:
        cid = new_id()
        await known_customer(self.store.pool, cid)
        tid = new_id()
        await self.commands.open(tid, open_command(cid, **overrides), context())
        return tid

    async def breaches(self, ticket_id: UUID) -> list[TicketSlaBreached]:
        events, _ = await self.store.load(f"ticket-{ticket_id}")
        return [e for e in events if isinstance(e, TicketSlaBreached)]

    async def tick_for(self, ticket_id: UUID) -> list[DueBreach]:
        """One scheduler tick; the breaches it recorded for this ticket (other tests share the table)."""
        return [b for b in await self.scheduler.tick() if b.ticket_id == ticket_id]


@pytest.fixture
def desk(support_store: PostgresEventStore) -> Desk:
    return Desk(support_store)


async def test_an_unanswered_ticket_breaches_its_first_response_when_the_deadline_passes_and_only_once(
    desk: Desk,
) -> None:
    tid = await desk.open(priority="urgent")  # first response due in 1 h, resolution in 4 h

    desk.clock.advance(HOUR - timedelta(seconds=1))
    assert await desk.tick_for(tid) == []

    desk.clock.advance(timedelta(seconds=1))
    [breach] = await desk.tick_for(tid)
    assert (breach.target, breach.due_at) == ("first_response", NOW + HOUR)

    assert await desk.tick_for(tid) == []
    [event] = await desk.breaches(tid)
    assert (event.target, event.due_at, event.priority) == ("first_response", NOW + HOUR, "urgent")
    [envelope] = [e for e in await desk.store.read_stream(f"ticket-{tid}") if e.type == event.type]
    assert envelope.actor.subject == SCHEDULER.subject
    assert envelope.occurred_at == NOW + HOUR


async def test_both_deadlines_breach_when_nobody_touches_the_ticket(desk: Desk) -> None:
    tid = await desk.open(priority="urgent")
    desk.clock.advance(5 * HOUR)
    found = await desk.tick_for(tid)
    assert [b.target for b in found] == ["first_response", "resolution"]
    clock = await desk.clocks.get(tid)
    assert clock is not None
    assert clock.breached == {"first_response", "resolution"}
    assert clock.next_due_at is None


async def test_a_reply_in_time_means_no_first_response_breach(desk: Desk) -> None:
    tid = await desk.open(priority="urgent")
    desk.clock.advance(HOUR / 2)
    await desk.commands.execute(tid, ReplyToCustomer(content="確認いたします"), context())
    desk.clock.advance(HOUR)
    assert await desk.tick_for(tid) == []
    assert await desk.breaches(tid) == []


async def test_waiting_for_the_customer_holds_the_resolution_deadline(desk: Desk) -> None:
    tid = await desk.open(priority="urgent")
    await desk.commands.execute(tid, ReplyToCustomer(content="写真を送っていただけますか"), context())
    await desk.commands.execute(tid, ChangeStatus(status="pending_customer"), context())
    desk.clock.advance(10 * HOUR)
    assert await desk.tick_for(tid) == []

    await desk.commands.execute(tid, ChangeStatus(status="open"), context())  # 4 h left from now
    desk.clock.advance(4 * HOUR - timedelta(seconds=1))
    assert await desk.tick_for(tid) == []
    desk.clock.advance(timedelta(seconds=1))
    [breach] = await desk.tick_for(tid)
    assert (breach.target, breach.due_at) == ("resolution", NOW + 14 * HOUR)


async def test_breach_timing_follows_business_hours_and_holidays(support_store: PostgresEventStore) -> None:
    desk = Desk(support_store, SlaPolicy(name="office", hours=BusinessHours(is_holiday=holiday_calendar())))
    desk.clock.now = jst(2026, 4, 28, 17)  # Tuesday 17:00; Wednesday 4/29 is 昭和の日
    tid = await desk.open(priority="high")  # first response due in 2 working hours
    desk.clock.now = jst(2026, 4, 29, 23, 59)
    assert await desk.tick_for(tid) == []
    desk.clock.now = jst(2026, 4, 30, 10)
    [breach] = await desk.tick_for(tid)
    assert breach.due_at == jst(2026, 4, 30, 10)


async def test_only_one_scheduler_replica_leads_at_a_time(desk: Desk, support_store: PostgresEventStore) -> None:
    other = PostgresSlaClocks(support_store.pool)
    async with desk.clocks.leadership() as leading:
        assert leading
        async with other.leadership() as also:
            assert not also
    async with other.leadership() as now_leading:
        assert now_leading


class StopAfterOneTick:
    """Clocks that stop the scheduler loop once it has scanned them."""

    def __init__(self, clocks: PostgresSlaClocks, stop: asyncio.Event) -> None:
        self.clocks = clocks
        self.stop = stop
        self.scans = 0

    async def due(self, now: datetime, limit: int = 500) -> list[SlaClock]:
        self.scans += 1
        self.stop.set()
        return await self.clocks.due(now, limit)

    def leadership(self) -> AbstractAsyncContextManager[bool]:
        return self.clocks.leadership()


async def test_the_loop_ticks_while_leading_and_returns_when_stopped(desk: Desk) -> None:
    tid = await desk.open(priority="urgent")
    desk.clock.advance(2 * HOUR)
    stop = asyncio.Event()
    clocks = StopAfterOneTick(desk.clocks, stop)
    scheduler = SlaScheduler(desk.commands, clocks, clock=desk.clock)

    await asyncio.wait_for(scheduler.run(stop, interval=3600), 30)

    assert clocks.scans == 1
    assert [e.target for e in await desk.breaches(tid)] == ["first_response"]
