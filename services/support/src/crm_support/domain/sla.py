"""Service levels (pure): deadlines by kind and priority, business-hours arithmetic, and which deadlines are due."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from uuid import UUID

from crm_schemas.support import Priority, SlaTarget, TicketKind

JST = timezone(timedelta(hours=9), "JST")

#: How far ahead a deadline may be looked for before a calendar is declared to have no working time.
_MAX_DAYS = 3660

HolidayCalendar = Callable[[date], bool]


def no_holidays(day: date) -> bool:
    """A calendar without public holidays."""
    return False


@dataclass(frozen=True)
class BusinessHours:
    """Working time: opening hours on working weekdays, minus holidays (e.g. 9:00-18:00 JST, Mon-Fri)."""

    opens: time = time(9, 0)
    closes: time = time(18, 0)
    weekdays: frozenset[int] = frozenset(range(5))
    tz: tzinfo = JST
    is_holiday: HolidayCalendar = no_holidays

    def __post_init__(self) -> None:
        if self.opens >= self.closes:
            raise ValueError("business hours must open before they close")
        if not self.weekdays or not self.weekdays <= set(range(7)):
            raise ValueError("name at least one working weekday (0 = Monday … 6 = Sunday)")

    def is_working_day(self, day: date) -> bool:
        """True if the desk is open on that day at all."""
        return day.weekday() in self.weekdays and not self.is_holiday(day)

    def _window(self, day: date) -> tuple[datetime, datetime]:
        return datetime.combine(day, self.opens, self.tz), datetime.combine(day, self.closes, self.tz)

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The instant `duration` of working time after `start`."""
        if duration <= timedelta(0):
            return start
        current, remaining = start.astimezone(self.tz), duration
        for _ in range(_MAX_DAYS):
            day = current.date()
            if self.is_working_day(day):
                opens, closes = self._window(day)
                current = max(current, opens)
                if current < closes:
                    available = closes - current
                    if remaining <= available:
                        return current + remaining
                    remaining -= available
            current = datetime.combine(day + timedelta(days=1), time(0, 0), self.tz)
        raise ValueError("the calendar has no working time in the next ten years")

    def between(self, start: datetime, end: datetime) -> timedelta:
        """Working time from `start` to `end` (zero if end is not after start)."""
        if end <= start:
            return timedelta(0)
        start, end = start.astimezone(self.tz), end.astimezone(self.tz)
        total = timedelta(0)
        day = start.date()
        while day <= end.date():
            if self.is_working_day(day):
                opens, closes = self._window(day)
                lo, hi = max(start, opens), min(end, closes)
                if hi > lo:
                    total += hi - lo
            day += timedelta(days=1)
        return total


@dataclass(frozen=True)
class Targets:
    """How long a ticket may wait for its first response and for its resolution."""

    first_response: timedelta
    resolution: timedelta


def _h(hours: float) -> timedelta:
    return timedelta(hours=hours)


#: Default targets, in working time when the policy has business hours (9 h = one business day).
#: Complaints (クレーム) get tighter first-response targets than inquiries: an unhappy customer
#: waiting is how a complaint escalates.
DEFAULT_TARGETS: Mapping[tuple[TicketKind, Priority], Targets] = {
    ("inquiry", "urgent"): Targets(_h(1), _h(4)),
    ("inquiry", "high"): Targets(_h(2), _h(9)),
    ("inquiry", "normal"): Targets(_h(4), _h(27)),
    ("inquiry", "low"): Targets(_h(9), _h(45)),
    ("complaint", "urgent"): Targets(_h(0.5), _h(4)),
    ("complaint", "high"): Targets(_h(1), _h(9)),
    ("complaint", "normal"): Targets(_h(2), _h(18)),
    ("complaint", "low"): Targets(_h(4), _h(27)),
}


@dataclass(frozen=True)
class SlaPolicy:
    """Targets by kind and priority, counted in business hours or around the clock (hours=None)."""

    name: str = "24x7"
    targets: Mapping[tuple[TicketKind, Priority], Targets] = field(default_factory=lambda: dict(DEFAULT_TARGETS))
    hours: BusinessHours | None = None

    def targets_for(self, kind: TicketKind, priority: Priority) -> Targets:
        """The targets of a kind and priority."""
        return self.targets[(kind, priority)]

    def due(self, start: datetime, duration: timedelta) -> datetime:
        """The deadline `duration` after `start` on this policy's clock."""
        return start + duration if self.hours is None else self.hours.add(start, duration)

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        """Time from `start` to `end` on this policy's clock."""
        if self.hours is None:
            return max(end - start, timedelta(0))
        return self.hours.between(start, end)

    def deadlines(self, kind: TicketKind, priority: Priority, start: datetime) -> tuple[datetime, datetime]:
        """(first response due, resolution due) of a ticket received at `start`."""
        targets = self.targets_for(kind, priority)
        return self.due(start, targets.first_response), self.due(start, targets.resolution)


@dataclass(frozen=True)
class SlaClock:
    """A ticket's running deadlines: None where the target is met, stopped or paused."""

    ticket_id: UUID
    customer_id: UUID
    first_response_due_at: datetime | None = None
    resolution_due_at: datetime | None = None
    breached: frozenset[SlaTarget] = frozenset()

    def pending(self) -> dict[SlaTarget, datetime]:
        """The deadlines still running and not yet breached."""
        running: dict[SlaTarget, datetime | None] = {
            "first_response": self.first_response_due_at,
            "resolution": self.resolution_due_at,
        }
        return {t: due for t, due in running.items() if due is not None and t not in self.breached}

    @property
    def next_due_at(self) -> datetime | None:
        """The earliest pending deadline (what the scheduler indexes on)."""
        return min(self.pending().values(), default=None)


@dataclass(frozen=True)
class DueBreach:
    """A deadline that passed unmet: the scheduler records it as support.TicketSlaBreached."""

    ticket_id: UUID
    customer_id: UUID
    target: SlaTarget
    due_at: datetime


def due_breaches(tickets: Iterable[SlaClock], now: datetime) -> list[DueBreach]:
    """Every pending deadline at or before `now`, earliest first."""
    found = [
        DueBreach(clock.ticket_id, clock.customer_id, target, due)
        for clock in tickets
        for target, due in clock.pending().items()
        if due <= now
    ]
    order: dict[SlaTarget, int] = {"first_response": 0, "resolution": 1}
    return sorted(found, key=lambda b: (b.due_at, order[b.target], str(b.ticket_id)))
