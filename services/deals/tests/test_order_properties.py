"""Properties of orders under any sequence of returns: nothing comes back twice, revenue is exact."""

from __future__ import annotations

from decimal import Decimal

import pytest
from crm_deals.domain import order
from crm_deals.domain.commands import DeliverOrder, PlaceOrder, ReturnLineInput, ReturnOrder
from crm_deals.domain.errors import DomainError
from crm_eventstore.ids import new_id
from crm_schemas.base import DomainEvent
from hypothesis import given, settings
from hypothesis import strategies as st

from .builders import NOW, known, on_order, order_after

lines = st.lists(
    st.tuples(st.integers(1, 999_999), st.integers(1, 12), st.integers(0, 100)),  # price, quantity, discount %
    min_size=1,
    max_size=4,
)
returns = st.lists(st.tuples(st.integers(1, 4), st.integers(1, 12)), max_size=12)


def place(specs: list[tuple[int, int, int]]) -> list[DomainEvent]:
    cid = new_id()
    body = {
        "customer_id": str(cid),
        "order_date": "2026-04-01",
        "lines": [
            {
                "product_code": f"P{n}",
                "product_name": f"商品{n}",
                "unit_price": str(price),
                "quantity": quantity,
                "discount": str(price * quantity * percent // 100),
            }
            for n, (price, quantity, percent) in enumerate(specs)
        ],
    }
    return order.decide_place(PlaceOrder.model_validate(body), order.initial(new_id()), known(cid), NOW)


@settings(max_examples=150, deadline=None)
@given(lines, returns)
def test_returns_never_exceed_what_was_ordered_and_reversals_add_up_exactly(
    specs: list[tuple[int, int, int]], asked: list[tuple[int, int]]
) -> None:
    events = on_order(place(specs), DeliverOrder())
    placed = order_after(events)
    assert placed.total == sum((line.line_amount for line in placed.lines), Decimal(0))
    for line in placed.lines:
        assert line.tax_amount == (line.line_amount * line.tax_rate).to_integral_value(rounding="ROUND_FLOOR")
    for line_no, quantity in asked:
        state = order_after(events)
        if state.status == "returned":
            break
        command = ReturnOrder(lines=[ReturnLineInput(line_no=line_no, quantity=quantity)])
        asked_line = next((li for li in state.lines if li.line_no == line_no), None)
        if asked_line is None or quantity > asked_line.remaining:
            with pytest.raises(DomainError):
                on_order(events, command)
        else:
            events = on_order(events, command)
    state = order_after(events)
    for line in state.lines:
        assert 0 <= line.returned_quantity <= line.quantity
        assert 0 <= line.returned_amount <= line.line_amount
        if line.remaining == 0:
            assert line.returned_amount == line.line_amount
    assert Decimal(0) <= state.revenue <= state.total
    if state.status != "returned":
        events = on_order(events, ReturnOrder())
    assert order_after(events).revenue == 0
