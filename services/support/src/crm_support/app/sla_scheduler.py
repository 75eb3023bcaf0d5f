"""The SLA scheduler: finds deadlines that passed unmet and records them as support.TicketSlaBreached."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Protocol

from crm_eventstore.errors import WrongExpectedVersion
from crm_eventstore.store import CommandContext
from crm_schemas.envelope import ActorRef

from crm_support.app.tickets import TicketCommands
from crm_support.domain.commands import RecordSlaBreach
from crm_support.domain.sla import DueBreach, SlaClock, due_breaches

log = logging.getLogger(__name__)

#: The actor of every breach event: the scheduler, not a person.
SCHEDULER = ActorRef(subject="crm-support-sla-scheduler", role="system", team=None, department=None)


class DueClocks(Protocol):
    """The running deadlines the scheduler scans."""

    async def due(self, now: datetime, limit: int = 500) -> list[SlaClock]:
        """Clocks with a pending deadline at or before `now`."""
        ...

    def leadership(self) -> AbstractAsyncContextManager[bool]:
        """True inside if this replica may run the tick now."""
        ...


class SlaScheduler:
    """One tick = read due clocks, pick the breaches (pure), record each through the ticket decider."""

    def __init__(
        self,
        commands: TicketCommands,
        clocks: DueClocks,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        batch: int = 500,
    ) -> None:
        self.commands = commands
        self.clocks = clocks
        self._clock = clock
        self.batch = batch

    async def tick(self) -> list[DueBreach]:
        """Record every breach due now; return those recorded (a stale or raced one is skipped)."""
        now = self._clock()
        recorded: list[DueBreach] = []
        for breach in due_breaches(await self.clocks.due(now, self.batch), now):
            command = RecordSlaBreach(target=breach.target, due_at=breach.due_at)
            try:
                outcome = await self.commands.execute(breach.ticket_id, command, CommandContext(actor=SCHEDULER))
            except WrongExpectedVersion:
                continue  # a person changed the ticket meanwhile: the next tick decides on the new state
            except Exception:
                log.exception("recording the %s breach of ticket %s failed", breach.target, breach.ticket_id)
                continue
            if outcome.result.events:
                recorded.append(breach)
        return recorded

    async def run(self, stop: asyncio.Event, interval: float = 30.0) -> None:
        """Tick every `interval` seconds until stop is set; only the replica holding the lock ticks."""
        while not stop.is_set():
            try:
                async with self.clocks.leadership() as leading:
                    if leading:
                        found = await self.tick()
                        if found:
                            log.info("recorded %d SLA breaches", len(found))
            except Exception:
                log.exception("SLA scheduler tick failed; trying again in %.0fs", interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
