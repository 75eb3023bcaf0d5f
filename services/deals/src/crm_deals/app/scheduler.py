"""The deals scheduler: contracts past their end date expire (or renew automatically), invoices past their
due date with an amount outstanding become overdue."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, date, datetime
from typing import Protocol

from crm_eventstore.errors import WrongExpectedVersion
from crm_eventstore.store import CommandContext
from crm_schemas.envelope import ActorRef

from crm_deals.app.aggregates import Deadline
from crm_deals.app.commands import Call, DealsCommands
from crm_deals.domain.commands import ExpireContract, MarkInvoiceOverdue
from crm_deals.domain.money import today

log = logging.getLogger(__name__)

#: The actor of every scheduled event: the scheduler, not a person.
SCHEDULER = ActorRef(subject="crm-deals-scheduler", role="system", team=None, department=None)


class PassedDeadlines(Protocol):
    """The dates the scheduler scans."""

    async def passed(self, today: date, limit: int = 500) -> list[Deadline]:
        """Deadlines whose date lies before `today`."""
        ...

    def leadership(self) -> AbstractAsyncContextManager[bool]:
        """True inside if this replica may run the tick now."""
        ...


class DealsScheduler:
    """One tick = read the passed deadlines and put each to its aggregate's decider (which ignores stale ones)."""

    def __init__(
        self,
        commands: DealsCommands,
        deadlines: PassedDeadlines,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        batch: int = 500,
    ) -> None:
        self.commands = commands
        self.deadlines = deadlines
        self._clock = clock
        self.batch = batch

    async def tick(self) -> list[Deadline]:
        """Act on every deadline that passed; return those that produced events."""
        acted: list[Deadline] = []
        call = Call(CommandContext(actor=SCHEDULER))
        for deadline in await self.deadlines.passed(today(self._clock()), self.batch):
            assert deadline.due_on is not None
            try:
                if deadline.kind == "contract_end":
                    contract = await self.commands.on_contract(
                        deadline.aggregate_id, ExpireContract(end_date=deadline.due_on), call
                    )
                    appended = contract.result.events
                else:
                    invoice = await self.commands.on_invoice(
                        deadline.aggregate_id, MarkInvoiceOverdue(due_date=deadline.due_on), call
                    )
                    appended = invoice.result.events
            except WrongExpectedVersion:
                continue  # a person changed it meanwhile: the next tick decides on the new state
            except Exception:
                log.exception("acting on the %s of %s failed", deadline.kind, deadline.aggregate_id)
                continue
            if appended:
                acted.append(deadline)
        return acted

    async def run(self, stop: asyncio.Event, interval: float = 60.0) -> None:
        """Tick every `interval` seconds until stop is set; only the replica holding the lock ticks."""
        while not stop.is_set():
            try:
                async with self.deadlines.leadership() as leading:
                    if leading:
                        acted = await self.tick()
                        if acted:
                            log.info("acted on %d passed contract end / invoice due dates", len(acted))
            except Exception:
                log.exception("deals scheduler tick failed; trying again in %.0fs", interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
