"""The order decider: line amounts, tax, totals, delivery, cancellation and returns."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from crm_deals.domain import order
from crm_deals.domain.commands import CancelOrder, DeliverOrder, PlaceOrder, ReturnLineInput, ReturnOrder
from crm_deals.domain.customers import CustomerStanding
from crm_deals.domain.errors import AlreadyExists, DomainError, InvalidTransition, NotFound, UnknownCustomer
from crm_eventstore.ids import new_id
from crm_schemas.deals import OrderCancelled, OrderDelivered, OrderPlaced, OrderReturned

from .builders import NOW, known, on_order, order_after, order_body, placed_order


def place(**overrides: Any) -> OrderPlaced:
    [event] = placed_order(**overrides)
    assert isinstance(event, OrderPlaced)
    return event


def line(**overrides: object) -> dict[str, object]:
    return {"product_code": "A", "product_name": "部品A", "unit_price": "1000", "quantity": 1, **overrides}


# --- placing -------------------------------------------------------------------------------------


def test_line_amounts_are_unit_price_times_quantity_minus_discount_and_the_total_is_their_sum() -> None:
    event = place()
    first, second = event.lines
    assert (first.line_no, first.line_amount, first.tax_rate, first.tax_amount) == (1, "308000", "0.10", "30800")
    assert (second.line_no, second.line_amount, second.discount, second.tax_amount) == (2, "10000", "0", "1000")
    assert (event.total, event.tax_total, event.total_with_tax, event.line_count) == ("318000", "31800", "349800", 2)


def test_yen_tax_is_rounded_down_per_line() -> None:
    event = place(
        lines=[line(unit_price="999", quantity=1), line(unit_price="105", quantity=1, tax_rate="0.08")], total=None
    )
    assert [li.tax_amount for li in event.lines] == ["99", "8"]  # 99.9 -> 99, 8.4 -> 8
    assert (event.total, event.tax_total) == ("1104", "107")


def test_the_total_may_be_left_out() -> None:
    body = order_body()
    del body["total"]
    assert place(**{k: v for k, v in body.items() if k != "customer_id"}).total == "318000"


def test_an_order_whose_lines_do_not_sum_to_its_total_is_rejected_naming_total() -> None:
    with pytest.raises(DomainError) as caught:
        placed_order(total="320000")
    assert caught.value.field == "total"
    assert "318000" in str(caught.value)


def test_a_discount_above_the_line_is_rejected_naming_that_lines_discount() -> None:
    with pytest.raises(DomainError) as caught:
        placed_order(lines=[line(), line(unit_price="100", quantity=2, discount="201")], total=None)
    assert caught.value.field == "lines.1.discount"


def test_a_yen_unit_price_with_a_fraction_is_rejected_naming_that_line() -> None:
    with pytest.raises(DomainError) as caught:
        placed_order(lines=[line(unit_price="99.5")], total=None)
    assert caught.value.field == "lines.0.unit_price"


def test_dollar_orders_keep_cents_and_round_tax_down_to_the_cent() -> None:
    event = place(currency="USD", lines=[line(unit_price="19.99", quantity=3)], total="59.97")
    assert (event.lines[0].line_amount, event.lines[0].tax_amount) == ("59.97", "5.99")


def test_delivery_before_the_order_date_is_rejected() -> None:
    with pytest.raises(DomainError) as caught:
        placed_order(delivery_date="2026-03-01")
    assert caught.value.field == "delivery_date"


def test_an_order_for_an_unknown_customer_is_rejected() -> None:
    cid = new_id()
    command = PlaceOrder.model_validate(order_body(cid))
    with pytest.raises(UnknownCustomer):
        order.decide_place(command, order.initial(new_id()), CustomerStanding(cid, False), NOW)


def test_placing_the_same_order_twice_is_a_conflict() -> None:
    given = placed_order()
    cid = given[0].customer_id
    with pytest.raises(AlreadyExists):
        order.decide_place(PlaceOrder.model_validate(order_body(cid)), order_after(given), known(cid), NOW)


# --- delivery and cancellation ---------------------------------------------------------------------


def test_delivering_records_the_day() -> None:
    [event] = on_order(placed_order(), DeliverOrder(delivered_on=date(2026, 4, 10)))[1:]
    assert isinstance(event, OrderDelivered)
    assert event.delivered_on == date(2026, 4, 10)


def test_delivering_twice_is_a_conflict() -> None:
    with pytest.raises(InvalidTransition):
        on_order(placed_order(), DeliverOrder(), DeliverOrder())


def test_cancelling_reverses_the_whole_total() -> None:
    [event] = on_order(placed_order(), CancelOrder(reason="先方都合"))[1:]
    assert isinstance(event, OrderCancelled)
    assert (event.amount, event.currency) == ("318000", "JPY")


def test_a_cancelled_order_is_neither_delivered_nor_cancelled_again() -> None:
    given = on_order(placed_order(), CancelOrder())
    with pytest.raises(InvalidTransition):
        on_order(given, DeliverOrder())
    with pytest.raises(InvalidTransition):
        on_order(given, CancelOrder())


def test_cancelling_a_delivered_order_is_a_conflict() -> None:
    with pytest.raises(InvalidTransition):
        on_order(placed_order(), DeliverOrder(), CancelOrder())


def test_cancelling_a_delivered_and_returned_order_is_a_conflict() -> None:
    given = on_order(placed_order(), DeliverOrder(), ReturnOrder())
    with pytest.raises(InvalidTransition) as caught:
        on_order(given, CancelOrder())
    assert "returned" in str(caught.value)


def test_commands_on_an_order_never_placed_are_not_found() -> None:
    with pytest.raises(NotFound):
        order.decide(DeliverOrder(), order.initial(new_id()), NOW)


# --- returns -------------------------------------------------------------------------------------


def test_returning_without_lines_returns_everything_that_remains() -> None:
    events = on_order(placed_order(), DeliverOrder(), ReturnOrder(reason="初期不良"))
    returned = events[-1]
    assert isinstance(returned, OrderReturned)
    assert [(r.line_no, r.quantity, r.amount) for r in returned.lines] == [(1, 3, "308000"), (2, 5, "10000")]
    assert (returned.amount, returned.full) == ("318000", True)
    assert order_after(events).status == "returned"


def test_returning_part_of_a_line_reverses_its_share_and_the_last_unit_reverses_the_rest() -> None:
    given = on_order(placed_order(), DeliverOrder())
    events = on_order(given, ReturnOrder(lines=[ReturnLineInput(line_no=1, quantity=1)]))
    first = events[-1]
    assert isinstance(first, OrderReturned)
    assert (first.amount, first.full) == ("102666", False)  # 308000 / 3, rounded down
    events = on_order(events, ReturnOrder(lines=[ReturnLineInput(line_no=1, quantity=2)]))
    second = events[-1]
    assert isinstance(second, OrderReturned)
    assert second.amount == "205334"  # together exactly the line amount
    state = order_after(events)
    assert state.revenue == Decimal(10000)
    assert state.status == "delivered"  # line 2 is still with the customer


def test_returning_more_than_remains_is_rejected_naming_the_quantity() -> None:
    given = on_order(placed_order(), DeliverOrder(), ReturnOrder(lines=[ReturnLineInput(line_no=2, quantity=4)]))
    with pytest.raises(DomainError) as caught:
        on_order(
            given, ReturnOrder(lines=[ReturnLineInput(line_no=1, quantity=1), ReturnLineInput(line_no=2, quantity=2)])
        )
    assert caught.value.field == "lines.1.quantity"
    assert "1 of 5" in str(caught.value)


def test_returning_a_line_the_order_does_not_have_is_rejected_naming_line_no() -> None:
    given = on_order(placed_order(), DeliverOrder())
    with pytest.raises(DomainError) as caught:
        on_order(given, ReturnOrder(lines=[ReturnLineInput(line_no=9, quantity=1)]))
    assert caught.value.field == "lines.0.line_no"


def test_returning_an_undelivered_order_is_a_conflict() -> None:
    with pytest.raises(InvalidTransition):
        on_order(placed_order(), ReturnOrder())


def test_nothing_is_returned_after_everything_came_back() -> None:
    with pytest.raises(InvalidTransition):
        on_order(placed_order(), DeliverOrder(), ReturnOrder(), ReturnOrder())


def test_a_cancelled_order_cannot_be_returned() -> None:
    with pytest.raises(InvalidTransition):
        on_order(placed_order(), CancelOrder(), ReturnOrder())


def test_the_same_line_twice_in_one_return_is_refused_at_the_edge() -> None:
    with pytest.raises(ValueError, match="line_no once"):
        ReturnOrder.model_validate({"lines": [{"line_no": 1, "quantity": 1}, {"line_no": 1, "quantity": 1}]})
