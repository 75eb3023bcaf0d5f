"""Holiday calendars for SLA business hours: Japanese public holidays (祝日) and the year-end closure."""

from __future__ import annotations

from datetime import date

import jpholiday

from crm_support.domain.sla import HolidayCalendar


def is_year_end_closure(day: date) -> bool:
    """December 29 to January 3 (年末年始休業), when most Japanese businesses close."""
    return (day.month == 12 and day.day >= 29) or (day.month == 1 and day.day <= 3)


def is_japanese_public_holiday(day: date) -> bool:
    """A national holiday of Japan (国民の祝日), substitute and citizens' holidays included."""
    return bool(jpholiday.is_holiday(day))


def holiday_calendar(japanese_holidays: bool = True, year_end_closure: bool = True) -> HolidayCalendar:
    """The days the support desk is closed besides weekends."""

    def is_holiday(day: date) -> bool:
        return (japanese_holidays and is_japanese_public_holiday(day)) or (
            year_end_closure and is_year_end_closure(day)
        )

    return is_holiday
