"""Revenue metrics of one customer, Decimal-exact, from its orders (pure functions).

Definitions (also in the OpenAPI description of GET /customers/{id} and docs/adr/0009):

- revenue of an order = its pre-tax ``total`` minus the ``amount`` of its OrderCancelled / OrderReturned;
  it counts on the order's ``order_date`` (a later return lowers the revenue of the month it was bought in).
- only JPY orders count (``metrics.currency``); the deals service records JPY unless told otherwise.
- a *counted* order is one not cancelled and not fully returned.
- ``cumulative_purchase_amount`` = Σ revenue of all orders; ``order_count`` = number of counted orders.
- ``average_order_amount`` = cumulative / order_count; ``average_unit_price`` = cumulative / units kept
  (quantities ordered minus returned, on counted orders).
- ``last_12_months_amount`` = Σ revenue of orders dated after the same day one year before the reference
  date, up to and including it (reference date = today in JST, or the as_of / effective_at date).
- ``fiscal_year_amounts``: revenue per fiscal year of the customer; ``fiscal_month`` is the month the
  fiscal year ends (contacts ``fiscal_month``, default 3 = April–March). A fiscal year is named by the
  calendar year it ends in: with fiscal month 3, FY2025 runs 2024-04-01 – 2025-03-31 (2025年3月期).
- ``purchase_frequency`` = counted orders per year since the first purchase: order_count × 365 / days from
  the first purchase date to the reference date, with at least 365 days.
- ``ltv`` (lifetime value) = average_order_amount × purchase_frequency × 3 (an expected relationship of
  LTV_YEARS = 3 years): the revenue the customer is expected to bring over three years at its rate so far.
- ``outstanding_amount`` = Σ invoices not cancelled − Σ payments against them (payments without an invoice excluded).
- ``average_csat`` = mean of the satisfaction scores (the last rating of each ticket resolution).
- ``complaint_count`` = number of complaint tickets ever opened.
Averages are rounded half-up to 2 decimal places; sums are exact.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

CURRENCY = "JPY"
LTV_YEARS = 3
CENTS = Decimal("0.01")


@dataclass(frozen=True)
class Order:
    """An order as far as revenue goes."""

    order_id: str
    order_date: date
    currency: str
    total: Decimal
    units: int
    reversed_amount: Decimal = Decimal(0)
    returned_units: int = 0
    cancelled_flag: bool = False
    fully_returned: bool = False

    @property
    def revenue(self) -> Decimal:
        """Total minus what cancellations and returns reversed."""
        return self.total - self.reversed_amount

    @property
    def counted(self) -> bool:
        """True unless the order was cancelled or returned in full."""
        return not (self.cancelled_flag or self.fully_returned)

    def cancelled(self, amount: Decimal) -> Order:
        """The order after an OrderCancelled reversing `amount`."""
        return replace(self, reversed_amount=self.reversed_amount + amount, cancelled_flag=True)

    def returned(self, amount: Decimal, units: int, full: bool) -> Order:
        """The order after an OrderReturned of `units` reversing `amount`."""
        return replace(
            self,
            reversed_amount=self.reversed_amount + amount,
            returned_units=self.returned_units + units,
            fully_returned=self.fully_returned or full,
        )


@dataclass(frozen=True)
class FiscalYear:
    """A customer's fiscal year, named by the calendar year it ends in."""

    year: int
    end_month: int

    @property
    def start(self) -> date:
        """First day."""
        return date(self.year, 1, 1) if self.end_month == 12 else date(self.year - 1, self.end_month + 1, 1)

    @property
    def end(self) -> date:
        """Last day."""
        return date(self.year, self.end_month, calendar.monthrange(self.year, self.end_month)[1])


def fiscal_year_of(day: date, end_month: int) -> FiscalYear:
    """The fiscal year (ending in `end_month`) a day falls in."""
    return FiscalYear(day.year if day.month <= end_month else day.year + 1, end_month)


def one_year_before(day: date) -> date:
    """The same day a year earlier (28 February for 29 February)."""
    try:
        return day.replace(year=day.year - 1)
    except ValueError:
        return day.replace(year=day.year - 1, day=28)


def _round(value: Decimal) -> Decimal:
    return value.quantize(CENTS, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class RevenueMetrics:
    """The `metrics` member of the customer 360."""

    cumulative_purchase_amount: Decimal
    order_count: int
    average_order_amount: Decimal | None
    average_unit_price: Decimal | None
    last_12_months_amount: Decimal
    fiscal_year_amounts: tuple[tuple[FiscalYear, Decimal, int], ...]
    purchase_frequency: Decimal | None
    first_purchase_date: date | None
    last_purchase_date: date | None
    ltv: Decimal | None
    outstanding_amount: Decimal
    average_csat: Decimal | None
    complaint_count: int
    fiscal_month: int
    reference_date: date

    def to_json(self) -> dict[str, Any]:
        """Money and ratios as decimal strings; dates ISO."""

        def text(value: Decimal | None) -> str | None:
            return None if value is None else str(value)

        return {
            "currency": CURRENCY,
            "reference_date": self.reference_date.isoformat(),
            "cumulative_purchase_amount": str(self.cumulative_purchase_amount),
            "order_count": self.order_count,
            "average_order_amount": text(self.average_order_amount),
            "average_unit_price": text(self.average_unit_price),
            "last_12_months_amount": str(self.last_12_months_amount),
            "fiscal_month": self.fiscal_month,
            "fiscal_year_amounts": [
                {
                    "fiscal_year": fy.year,
                    "label": f"FY{fy.year} ({fy.start.isoformat()} – {fy.end.isoformat()})",
                    "label_ja": f"{fy.year}年{fy.end_month}月期",
                    "start_date": fy.start.isoformat(),
                    "end_date": fy.end.isoformat(),
                    "amount": str(amount),
                    "order_count": count,
                }
                for fy, amount, count in self.fiscal_year_amounts
            ],
            "purchase_frequency": text(self.purchase_frequency),
            "first_purchase_date": None if self.first_purchase_date is None else self.first_purchase_date.isoformat(),
            "last_purchase_date": None if self.last_purchase_date is None else self.last_purchase_date.isoformat(),
            "ltv": text(self.ltv),
            "outstanding_amount": str(self.outstanding_amount),
            "average_csat": text(self.average_csat),
            "complaint_count": self.complaint_count,
        }


def revenue_metrics(
    orders: Iterable[Order],
    *,
    today: date,
    fiscal_month: int = 3,
    outstanding: Decimal = Decimal(0),
    csat_scores: Iterable[int] = (),
    complaint_count: int = 0,
) -> RevenueMetrics:
    """The metrics of a customer's orders as of the reference date `today`."""
    mine = sorted((o for o in orders if o.currency == CURRENCY), key=lambda o: (o.order_date, o.order_id))
    counted = [o for o in mine if o.counted]
    cumulative = sum((o.revenue for o in mine), Decimal(0))
    units = sum(o.units - o.returned_units for o in counted)
    year_ago = one_year_before(today)
    last_12 = sum((o.revenue for o in mine if year_ago < o.order_date <= today), Decimal(0))
    by_year: dict[FiscalYear, tuple[Decimal, int]] = {}
    for o in mine:
        fy = fiscal_year_of(o.order_date, fiscal_month)
        amount, count = by_year.get(fy, (Decimal(0), 0))
        by_year[fy] = (amount + o.revenue, count + (1 if o.counted else 0))
    first = counted[0].order_date if counted else None
    last = max(o.order_date for o in counted) if counted else None
    average = _round(cumulative / len(counted)) if counted else None
    frequency: Decimal | None = None
    ltv: Decimal | None = None
    if first is not None:
        days = max((today - first).days, 365)
        exact_frequency = Decimal(len(counted) * 365) / Decimal(days)
        frequency = _round(exact_frequency)
        ltv = _round(cumulative / len(counted) * exact_frequency * LTV_YEARS)
    scores = list(csat_scores)
    return RevenueMetrics(
        cumulative_purchase_amount=cumulative,
        order_count=len(counted),
        average_order_amount=average,
        average_unit_price=_round(cumulative / units) if units > 0 else None,
        last_12_months_amount=last_12,
        fiscal_year_amounts=tuple((fy, a, c) for fy, (a, c) in sorted(by_year.items(), key=lambda kv: kv[0].year)),
        purchase_frequency=frequency,
        first_purchase_date=first,
        last_purchase_date=last,
        ltv=ltv,
        outstanding_amount=outstanding,
        average_csat=_round(Decimal(sum(scores)) / len(scores)) if scores else None,
        complaint_count=complaint_count,
        fiscal_month=fiscal_month,
        reference_date=today,
    )
