"""The demo book is planned deterministically and is internally consistent (pure, no services)."""

from __future__ import annotations

from datetime import date
from decimal import ROUND_DOWN, Decimal

from crm_cli.demo_book import CATALOGUE, STAGES_OPEN, plan_book

TODAY = date(2026, 11, 24)
BOOK = plan_book(200, 2024, TODAY)
PRODUCTS = {p.code: p for p in CATALOGUE}


def test_the_same_seed_plans_the_same_book_and_another_seed_another() -> None:
    again = plan_book(200, 2024, TODAY)
    assert [p.register for p in again] == [p.register for p in BOOK]
    assert [o.body for p in again for o in p.orders] == [o.body for p in BOOK for o in p.orders]
    assert [p.register for p in plan_book(200, 7, TODAY)] != [p.register for p in BOOK]


def test_the_book_has_companies_and_consumers_with_contact_persons_only_at_companies() -> None:
    kinds = {p.register["kind"] for p in BOOK}
    assert kinds == {"company", "person"}
    assert all(not p.contacts for p in BOOK if p.register["kind"] == "person")
    assert any(p.contacts for p in BOOK if p.register["kind"] == "company")


def test_deals_reach_every_stage_and_both_outcomes() -> None:
    reached = {d.stages[-1] if d.stages else "lead" for p in BOOK for d in p.deals if d.outcome == "open"}
    assert reached == set(STAGES_OPEN)
    assert {d.outcome for p in BOOK for d in p.deals} == {"open", "won", "lost"}
    assert all(d.final_amount is not None for p in BOOK for d in p.deals if d.outcome == "won")
    assert all(d.lost_reason for p in BOOK for d in p.deals if d.outcome == "lost")


def test_order_totals_are_the_decimal_sum_of_their_lines_and_span_several_years() -> None:
    dates = []
    for plan in BOOK:
        for order in plan.orders:
            lines = order.body["lines"]
            expected = sum(
                (Decimal(li["unit_price"]) * li["quantity"] - Decimal(li["discount"]) for li in lines), Decimal(0)
            )
            assert Decimal(order.body["total"]) == expected
            assert all(PRODUCTS[li["product_code"]].category == li["category"] for li in lines)
            dates.append(date.fromisoformat(order.body["order_date"]))
    assert (max(dates) - min(dates)).days > 3 * 365
    assert max(dates) <= TODAY


def test_invoices_bill_the_order_with_tax_and_payments_never_exceed_them() -> None:
    invoices = 0
    for plan in BOOK:
        for order in plan.orders:
            if order.invoice is None:
                continue
            invoices += 1
            billed = sum(
                (
                    p.unit_price * q - d + ((p.unit_price * q - d) * p.tax_rate).quantize(Decimal(1), ROUND_DOWN)
                    for p, q, d in order.lines
                ),
                Decimal(0),
            )
            assert Decimal(order.invoice.body["amount"]) == billed
            paid = sum((Decimal(x["amount"]) for x in order.invoice.payments), Decimal(0))
            assert paid <= billed
            assert order.invoice.body["due_date"] >= order.invoice.body["issued_on"]
            assert not order.cancel
    assert invoices > 100


def test_tickets_name_products_from_a_delivered_order_of_the_same_customer_and_complaints_carry_causes() -> None:
    complaints = 0
    for plan in BOOK:
        for ticket in plan.tickets:
            assert ticket.order_index is not None
            order = plan.orders[ticket.order_index]
            assert order.deliver_on is not None
            assert ticket.body["product"] in {li["product_code"] for li in order.body["lines"]}
            if ticket.body["kind"] == "complaint":
                complaints += 1
                if ticket.resolve is not None:
                    assert ticket.resolve["root_cause"]
                    assert ticket.resolve["prevention"]
            assert ticket.csat is None or ticket.resolve is not None
    assert complaints > 0


def test_returns_never_exceed_the_ordered_quantity_and_cancelled_orders_are_not_delivered() -> None:
    for plan in BOOK:
        for order in plan.orders:
            for returned in order.returns:
                assert returned["quantity"] <= order.body["lines"][returned["line_no"] - 1]["quantity"]
            if order.cancel:
                assert order.deliver_on is None
                assert not order.returns
