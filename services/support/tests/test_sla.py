"""Service levels with a fake clock: business hours, weekends, Japanese holidays, pauses and breach timing."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import pytest
from crm_eventstore.ids import new_id
from crm_schemas.support import TicketOpened, TicketSlaBreached
from crm_support.calendars import holiday_calendar, is_japanese_public_holiday, is_year_end_closure
from crm_support.domain.commands import (
    ChangeStatus,
    RecordSlaBreach,
    ReopenTicket,
    ReplyToCustomer,
)
from crm_support.domain.sla import (
    DEFAULT_TARGETS,
    BusinessHours,
    DueBreach,
    SlaClock,
    SlaPolicy,
    Targets,
    due_breaches,
)
from crm_support.domain.ticket import sla_clock
from crm_support.settings import SupportSettings
from hypothesis import given as for_all
from hypothesis import strategies as st

from .builders import HOUR, NOW, RESOLVED, history, jst, opened, then, ticket_after

JAPAN = BusinessHours(is_holiday=holiday_calendar())
OFFICE = SlaPolicy(name="office", hours=JAPAN)
H = HOUR


# --- business-hours arithmetic ------------------------------------------------------------------


def test_working_time_inside_one_day_is_plain_addition() -> None:
    assert JAPAN.add(jst(2026, 4, 1, 10), 4 * H) == jst(2026, 4, 1, 14)


def test_time_left_at_closing_carries_over_to_the_next_morning() -> None:
    assert JAPAN.add(jst(2026, 4, 1, 17), 2 * H) == jst(2026, 4, 2, 10)


def test_a_ticket_received_before_opening_starts_counting_at_opening() -> None:
    assert JAPAN.add(jst(2026, 4, 1, 7, 30), 2 * H) == jst(2026, 4, 1, 11)


def test_a_ticket_received_in_the_night_starts_counting_next_morning() -> None:
    assert JAPAN.add(jst(2026, 4, 1, 23), 1 * H) == jst(2026, 4, 2, 10)


def test_the_weekend_does_not_count() -> None:
    friday_evening = jst(2026, 4, 3, 17)
    assert JAPAN.add(friday_evening, 2 * H) == jst(2026, 4, 6, 10)  # Monday


def test_a_japanese_public_holiday_does_not_count() -> None:
    # 2026-04-29 (Wed) is 昭和の日.
    assert JAPAN.add(jst(2026, 4, 28, 17), 2 * H) == jst(2026, 4, 30, 10)


def test_golden_week_including_its_substitute_holiday_does_not_count() -> None:
    # Fri 5/1 17:00; Sat 5/2, Sun 5/3 憲法記念日, Mon 5/4 みどりの日, Tue 5/5 こどもの日,
    # Wed 5/6 振替休日 (5/3 fell on a Sunday): the next working hour is Thu 5/7 09:00.
    assert JAPAN.add(jst(2026, 5, 1, 17), 2 * H) == jst(2026, 5, 7, 10)


def test_the_year_end_closure_does_not_count_unless_switched_off() -> None:
    monday_before_new_year = jst(2026, 12, 28, 17)
    assert JAPAN.add(monday_before_new_year, 2 * H) == jst(2027, 1, 4, 10)
    open_through_new_year = BusinessHours(is_holiday=holiday_calendar(year_end_closure=False))
    assert open_through_new_year.add(monday_before_new_year, 2 * H) == jst(2026, 12, 29, 10)


def test_a_company_holiday_calendar_can_be_injected() -> None:
    founding_day = date(2026, 4, 2)
    hours = BusinessHours(is_holiday=frozenset({founding_day}).__contains__)
    assert hours.add(jst(2026, 4, 1, 17), 2 * H) == jst(2026, 4, 3, 10)


def test_a_deadline_exactly_at_closing_stays_on_that_day() -> None:
    assert JAPAN.add(jst(2026, 4, 1, 9), 9 * H) == jst(2026, 4, 1, 18)


def test_other_opening_hours_and_weekdays() -> None:
    saturday_desk = BusinessHours(opens=time(10), closes=time(16), weekdays=frozenset({5}))
    assert saturday_desk.add(jst(2026, 4, 1, 12), 7 * H) == jst(2026, 4, 11, 11)


def test_working_time_between_two_instants_skips_nights_and_weekends() -> None:
    assert JAPAN.between(jst(2026, 4, 3, 16), jst(2026, 4, 6, 11)) == 4 * H
    assert JAPAN.between(jst(2026, 4, 6, 11), jst(2026, 4, 3, 16)) == timedelta(0)


@for_all(
    seconds=st.integers(min_value=0, max_value=3 * 366 * 24 * 3600),
    minutes=st.integers(min_value=0, max_value=60 * 120),
)
def test_counting_back_the_working_time_of_a_deadline_gives_the_duration(seconds: int, minutes: int) -> None:
    begin = jst(2025, 1, 1) + timedelta(seconds=seconds)
    duration = timedelta(minutes=minutes)
    due = JAPAN.add(begin, duration)
    assert due >= begin
    assert JAPAN.between(begin, due) == duration


def test_hours_that_close_before_they_open_are_refused() -> None:
    with pytest.raises(ValueError, match="open before"):
        BusinessHours(opens=time(18), closes=time(9))
    with pytest.raises(ValueError, match="weekday"):
        BusinessHours(weekdays=frozenset())


def test_the_holiday_calendars() -> None:
    assert is_japanese_public_holiday(date(2026, 1, 12))  # 成人の日
    assert is_japanese_public_holiday(date(2026, 9, 22))  # 国民の休日
    assert not is_japanese_public_holiday(date(2026, 4, 1))
    assert is_year_end_closure(date(2026, 12, 29))
    assert is_year_end_closure(date(2027, 1, 3))
    assert not is_year_end_closure(date(2027, 1, 4))
    assert not holiday_calendar(japanese_holidays=False, year_end_closure=False)(date(2026, 1, 1))


# --- policy and deadlines at opening -----------------------------------------------------------


def test_complaints_get_tighter_first_response_targets_than_inquiries() -> None:
    for priority in ("low", "normal", "high", "urgent"):
        complaint = DEFAULT_TARGETS[("complaint", priority)]
        inquiry = DEFAULT_TARGETS[("inquiry", priority)]
        assert complaint.first_response < inquiry.first_response


def test_opening_records_deadlines_by_kind_and_priority_around_the_clock() -> None:
    [event] = opened(at=NOW, kind="complaint", priority="urgent")
    assert isinstance(event, TicketOpened)
    assert event.sla_policy == "24x7"
    assert event.first_response_due_at == NOW + timedelta(minutes=30)
    assert event.resolution_due_at == NOW + 4 * H


def test_opening_in_business_hours_counts_only_working_time() -> None:
    # A normal inquiry on Friday 16:00: first response in 4 working hours, resolution in 27.
    [event] = opened(at=jst(2026, 4, 3, 16), policy=OFFICE)
    assert isinstance(event, TicketOpened)
    assert event.sla_policy == "office"
    assert event.first_response_due_at == jst(2026, 4, 6, 11)
    assert event.resolution_due_at == jst(2026, 4, 8, 16)


def test_the_sla_starts_when_the_customer_got_in_touch() -> None:
    called = NOW - 2 * H
    [event] = opened(at=NOW, received_at=called.isoformat())
    assert isinstance(event, TicketOpened)
    assert event.occurred_at == called
    assert event.first_response_due_at == called + DEFAULT_TARGETS[("inquiry", "normal")].first_response


def test_a_custom_policy_supplies_its_own_targets() -> None:
    targets = {key: Targets(H, 2 * H) for key in DEFAULT_TARGETS}
    [event] = opened(at=NOW, policy=SlaPolicy(name="premium", targets=targets))
    assert isinstance(event, TicketOpened)
    assert (event.first_response_due_at, event.resolution_due_at) == (NOW + H, NOW + 2 * H)


def test_settings_describe_the_policy() -> None:
    assert SupportSettings(support_business_hours="24x7").sla_policy().hours is None
    policy = SupportSettings(support_business_hours="09:00-17:30", support_holidays="jp").sla_policy()
    assert policy.hours is not None
    assert policy.hours.closes == time(17, 30)
    assert policy.hours.is_holiday(date(2026, 4, 29))
    assert "Japanese holidays" in policy.name
    plain = SupportSettings(support_holidays="none", support_year_end_closure=False).sla_policy()
    assert plain.hours is not None
    assert not plain.hours.is_holiday(date(2026, 4, 29))


# --- which deadlines are due (the scheduler's pure core) ---------------------------------------


def _clock(first: datetime | None, resolution: datetime | None, breached: frozenset[str] = frozenset()) -> SlaClock:
    return SlaClock(new_id(), new_id(), first, resolution, breached)  # type: ignore[arg-type]


def test_nothing_is_due_a_microsecond_before_the_deadline_and_the_breach_is_due_at_it() -> None:
    due = NOW + 4 * H
    clock = _clock(due, due + 20 * H)
    assert due_breaches([clock], due - timedelta(microseconds=1)) == []
    assert due_breaches([clock], due) == [DueBreach(clock.ticket_id, clock.customer_id, "first_response", due)]


def test_both_deadlines_can_be_due_earliest_first() -> None:
    late, early = _clock(NOW + 3 * H, NOW + 5 * H), _clock(NOW + H, NOW + 2 * H)
    found = due_breaches([late, early], NOW + 6 * H)
    assert [(b.ticket_id, b.target) for b in found] == [
        (early.ticket_id, "first_response"),
        (early.ticket_id, "resolution"),
        (late.ticket_id, "first_response"),
        (late.ticket_id, "resolution"),
    ]


def test_a_breached_met_or_paused_deadline_is_never_due_again() -> None:
    later = NOW + 100 * H
    assert due_breaches([_clock(NOW, None, frozenset({"first_response"}))], later) == []
    assert due_breaches([_clock(None, None)], later) == []


def test_the_clock_of_a_ticket_stops_with_the_first_reply_and_with_the_resolution() -> None:
    given = opened(at=NOW)
    assert set(sla_clock(ticket_after(given)).pending()) == {"first_response", "resolution"}
    replied = history(given, (ReplyToCustomer(content="確認します"), NOW + H))
    assert set(sla_clock(ticket_after(replied)).pending()) == {"resolution"}
    resolved = history(given, (RESOLVED, NOW + H))
    assert sla_clock(ticket_after(resolved)).pending() == {}


# --- pause, resume, breach and reopen through the decider -------------------------------------


def test_pending_customer_pauses_the_resolution_clock_and_resuming_extends_it_by_the_pause() -> None:
    given = opened(at=NOW)  # normal inquiry, 24x7: resolution due NOW + 27 h
    paused = history(given, (ChangeStatus(status="pending_customer"), NOW + 2 * H))
    ticket = ticket_after(paused)
    assert ticket.resolution_due_at is None
    assert sla_clock(ticket).resolution_due_at is None
    resumed = history(paused, (ChangeStatus(status="open", reason="お客様から回答あり"), NOW + 10 * H))
    assert ticket_after(resumed).resolution_due_at == NOW + 27 * H + 8 * H


def test_a_pause_over_a_holiday_weekend_only_gives_back_the_working_time_that_was_left() -> None:
    # A high-priority inquiry on Tuesday 4/28 at 10:00 is due in 9 working hours: 8 on Tuesday,
    # none on Wednesday 4/29 (昭和の日), the last one on Thursday 4/30 until 10:00.
    given = opened(at=jst(2026, 4, 28, 10), priority="high", policy=OFFICE)
    assert ticket_after(given).resolution_due_at == jst(2026, 4, 30, 10)
    # Paused Tue 17:00 with 2 working hours left (17-18 Tue, 9-10 Thu); resumed Fri 5/1 at 17:30,
    # so 30 minutes count on Friday and the rest after Golden Week: Thu 5/7 at 10:30.
    steps = [
        (ChangeStatus(status="pending_customer"), jst(2026, 4, 28, 17)),
        (ChangeStatus(status="open"), jst(2026, 5, 1, 17, 30)),
    ]
    resumed = history(given, *steps, policy=OFFICE)
    assert ticket_after(resumed).resolution_due_at == jst(2026, 5, 7, 10, 30)


def test_a_breach_is_recorded_only_once_the_deadline_has_passed_unmet() -> None:
    given = opened(at=NOW, priority="high")
    due = ticket_after(given).first_response_due_at
    assert due is not None
    breach = RecordSlaBreach(target="first_response", due_at=due)

    assert then(given, breach, at=due - timedelta(seconds=1)) == []
    [event] = then(given, breach, at=due)
    assert isinstance(event, TicketSlaBreached)
    assert (event.target, event.due_at, event.kind, event.priority) == ("first_response", due, "inquiry", "high")
    assert then([*given, event], breach, at=due + H) == []
    [late] = then(given, breach, at=due + 3 * H)
    assert late.occurred_at == due  # effective time: when the deadline passed, not when it was noticed


def test_no_breach_after_the_deadline_was_met_or_moved() -> None:
    given = opened(at=NOW)
    ticket = ticket_after(given)
    assert ticket.first_response_due_at is not None
    assert ticket.resolution_due_at is not None
    replied = history(given, (ReplyToCustomer(content="確認します"), NOW + H))
    late = NOW + 100 * H
    assert then(replied, RecordSlaBreach(target="first_response", due_at=ticket.first_response_due_at), late) == []
    paused = history(given, (ChangeStatus(status="pending_customer"), NOW + H))
    assert then(paused, RecordSlaBreach(target="resolution", due_at=ticket.resolution_due_at), late) == []
    moved = ticket.resolution_due_at - H
    assert then(given, RecordSlaBreach(target="resolution", due_at=moved), late) == []


def test_reopening_starts_a_new_resolution_deadline_that_can_be_breached_again() -> None:
    given = opened(at=NOW, priority="urgent")  # resolution due in 4 h
    first_due = ticket_after(given).resolution_due_at
    assert first_due is not None
    breached = history(given, (RecordSlaBreach(target="resolution", due_at=first_due), first_due + H))
    resolved = history(breached, (RESOLVED, first_due + 2 * H))
    reopened = history(resolved, (ReopenTicket(reason="再発"), first_due + 3 * H))
    ticket = ticket_after(reopened)
    assert ticket.resolution_due_at == first_due + 3 * H + 4 * H
    assert "resolution" not in ticket.breached
    second_due = ticket.resolution_due_at
    assert second_due is not None
    [event] = then(reopened, RecordSlaBreach(target="resolution", due_at=second_due), at=second_due)
    assert isinstance(event, TicketSlaBreached)
