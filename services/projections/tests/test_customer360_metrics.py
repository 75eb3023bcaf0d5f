"""Revenue metrics against independently computed expectations on generated order histories (Decimal-exact)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from uuid import UUID

from crm_eventstore.ids import new_id
from crm_projections.customer360.fold import fold
from crm_projections.customer360.metrics import fiscal_year_of, revenue_metrics
from crm_schemas.base import DomainEvent
from hypothesis import given, settings
from hypothesis import strategies as st

from .builders import History, order_cancelled, order_placed, order_returned, registered

TODAY = date(2026, 3, 15)
CENT = Decimal("0.01")


@dataclass(frozen=True)
class Plan:
    """One generated order: lines, and what happens to it afterwards."""

    day: date
    lines: list[tuple[str, int]]
    returned: int  # quantity of line 1 that comes back (0: none)
    cancel: bool
    absorbed: bool  # placed by the duplicate record that is merged into the customer


prices = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99999.99"), places=2).map(str)
plans = st.builds(
    Plan,
    day=st.dates(min_value=date(2021, 1, 1), max_value=TODAY),
    lines=st.lists(st.tuples(prices, st.integers(min_value=1, max_value=5)), min_size=1, max_size=3),
    returned=st.integers(min_value=0, max_value=5),
    cancel=st.booleans(),
    absorbed=st.booleans(),
)


def events_of(plan: Plan, customer: UUID) -> tuple[list[DomainEvent], dict[str, Any]]:
    """The events of a planned order, and the facts an accountant would note down about it."""
    order = order_placed(customer, plan.day, plan.lines)
    events: list[DomainEvent] = [order]
    total = sum((Decimal(p) * q for p, q in plan.lines), Decimal(0))
    units = sum(q for _, q in plan.lines)
    price, quantity = plan.lines[0]
    back = min(plan.returned, quantity)
    reversed_ = Decimal(0)
    full = False
    if back:
        amount = Decimal(price) * back
        full = len(plan.lines) == 1 and back == quantity
        events.append(order_returned(order, 1, back, str(amount), full=full))
        reversed_ += amount
    if plan.cancel and not full:
        events.append(order_cancelled(order, str(total - reversed_)))
        reversed_ = total
    counted = not (plan.cancel and not full) and not full
    return events, {
        "day": plan.day,
        "revenue": total - reversed_,
        "counted": counted,
        "units_kept": units - back if counted else 0,
    }


def expected(facts: list[dict[str, Any]], fiscal_month: int) -> dict[str, Any]:
    """The metrics computed by hand from the noted facts."""
    cumulative = sum((f["revenue"] for f in facts), Decimal(0))
    counted = [f for f in facts if f["counted"]]
    units = sum(f["units_kept"] for f in counted)
    year_ago = TODAY.replace(year=TODAY.year - 1)
    by_year: dict[int, Decimal] = {}
    for f in facts:
        day: date = f["day"]
        fy = day.year if day.month <= fiscal_month else day.year + 1
        by_year[fy] = by_year.get(fy, Decimal(0)) + f["revenue"]
    out: dict[str, Any] = {
        "cumulative_purchase_amount": str(cumulative),
        "order_count": len(counted),
        "last_12_months_amount": str(sum((f["revenue"] for f in facts if year_ago < f["day"] <= TODAY), Decimal(0))),
        "fiscal_years": {fy: str(amount) for fy, amount in by_year.items()},
        "average_order_amount": None,
        "average_unit_price": None,
        "first_purchase_date": None,
        "last_purchase_date": None,
    }
    if counted:
        first = min(f["day"] for f in counted)
        out["average_order_amount"] = str((cumulative / len(counted)).quantize(CENT, ROUND_HALF_UP))
        out["first_purchase_date"] = first.isoformat()
        out["last_purchase_date"] = max(f["day"] for f in counted).isoformat()
        days = max((TODAY - first).days, 365)
        out["purchase_frequency"] = str((Decimal(len(counted)) * 365 / days).quantize(CENT, ROUND_HALF_UP))
    if units:
        out["average_unit_price"] = str((cumulative / units).quantize(CENT, ROUND_HALF_UP))
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(plans, max_size=12), st.integers(min_value=1, max_value=12))
def test_metrics_match_hand_computed_figures_with_cancellations_returns_and_merges(
    planned: list[Plan], fiscal_month: int
) -> None:
    survivor, duplicate = new_id(), new_id()
    history = History()
    history.add(registered(survivor, fiscal_month=fiscal_month))
    facts = []
    for plan in planned:
        events, noted = events_of(plan, duplicate if plan.absorbed else survivor)
        history.extend(events)
        facts.append(noted)
    m = fold(survivor, history.events, TODAY, merged_from=[duplicate]).to_json()["metrics"]
    want = expected(facts, fiscal_month)
    for name in (
        "cumulative_purchase_amount",
        "order_count",
        "last_12_months_amount",
        "average_order_amount",
        "average_unit_price",
        "first_purchase_date",
        "last_purchase_date",
    ):
        assert m[name] == want[name], name
    assert {fy["fiscal_year"]: fy["amount"] for fy in m["fiscal_year_amounts"]} == want["fiscal_years"]
    if want["first_purchase_date"] is not None:
        assert m["purchase_frequency"] == want["purchase_frequency"]
    assert Decimal(m["cumulative_purchase_amount"]) == sum(
        (Decimal(fy["amount"]) for fy in m["fiscal_year_amounts"]), Decimal(0)
    )


def test_fiscal_years_are_named_by_the_calendar_year_they_end_in() -> None:
    march = fiscal_year_of(date(2024, 4, 1), 3)
    assert (march.year, march.start, march.end) == (2025, date(2024, 4, 1), date(2025, 3, 31))
    assert fiscal_year_of(date(2025, 3, 31), 3) == march
    december = fiscal_year_of(date(2024, 12, 31), 12)
    assert (december.year, december.start, december.end) == (2024, date(2024, 1, 1), date(2024, 12, 31))
    february = fiscal_year_of(date(2024, 3, 1), 2)
    assert (february.year, february.end) == (2025, date(2025, 2, 28))


def test_the_fiscal_year_default_is_april_to_march_and_labelled_both_ways() -> None:
    cid = new_id()
    history = History()
    history.add(registered(cid))  # no fiscal month known
    history.add(order_placed(cid, date(2024, 3, 31), [("1000", 1)]))
    history.add(order_placed(cid, date(2024, 4, 1), [("2000", 1)]))
    m = fold(cid, history.events, TODAY).to_json()["metrics"]
    assert m["fiscal_month"] == 3
    assert [(fy["fiscal_year"], fy["label_ja"], fy["amount"]) for fy in m["fiscal_year_amounts"]] == [
        (2024, "2024年3月期", "1000"),
        (2025, "2025年3月期", "2000"),
    ]
    assert m["fiscal_year_amounts"][1]["label"] == "FY2025 (2024-04-01 – 2025-03-31)"


def test_ltv_is_average_order_times_yearly_frequency_times_three_years() -> None:
    cid = new_id()
    history = History()
    start = TODAY - timedelta(days=730)
    for i in range(4):
        history.add(order_placed(cid, start + timedelta(days=100 * i), [("25000", 2)]))
    m = fold(cid, history.events, TODAY).to_json()["metrics"]
    assert (m["average_order_amount"], m["purchase_frequency"]) == ("50000.00", "2.00")
    assert m["ltv"] == "300000.00"  # 50000 × 2 per year × 3 years


def test_orders_in_other_currencies_are_left_out_and_no_orders_means_empty_metrics() -> None:
    cid = new_id()
    history = History()
    history.add(registered(cid))
    history.add(order_placed(cid, date(2025, 1, 1), [("100", 1)], currency="USD"))
    m = fold(cid, history.events, TODAY).to_json()["metrics"]
    assert (m["cumulative_purchase_amount"], m["order_count"], m["average_order_amount"], m["ltv"]) == (
        "0",
        0,
        None,
        None,
    )
    assert revenue_metrics([], today=TODAY).to_json()["first_purchase_date"] is None
