"""The order aggregate (受注・購買, stream order-<uuid>): placed with lines, delivered, cancelled, returned.

Revenue is the pre-tax total; a cancellation or a return reverses the part of it that it names, and the
reversals of one line never add up to more than the line.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Literal, assert_never
from uuid import UUID

from crm_schemas.base import DomainEvent
from crm_schemas.deals import OrderCancelled, OrderDelivered, OrderLine, OrderPlaced, OrderReturned, ReturnedLine

from crm_deals.domain.commands import CancelOrder, DeliverOrder, PlaceOrder, ReturnOrder
from crm_deals.domain.customers import CustomerStanding, check_customer
from crm_deals.domain.errors import AlreadyExists, DomainError, InvalidTransition, NotFound
from crm_deals.domain.money import DEFAULT_TAX_RATE, ZERO, check_amount, parse, round_down, text, today

OrderStatus = Literal["placed", "delivered", "cancelled", "returned"]

Command = DeliverOrder | CancelOrder | ReturnOrder


@dataclass(frozen=True)
class Line:
    """An order line with what came back of it."""

    line_no: int
    product_code: str
    product_name: str
    category: str | None
    unit_price: Decimal
    quantity: int
    discount: Decimal
    line_amount: Decimal
    tax_rate: Decimal
    tax_amount: Decimal
    returned_quantity: int = 0
    returned_amount: Decimal = ZERO

    @property
    def remaining(self) -> int:
        """Units not returned."""
        return self.quantity - self.returned_quantity


@dataclass(frozen=True)
class Order:
    """What the write side knows of an order."""

    id: UUID
    placed: bool = False
    customer_id: UUID | None = None
    order_date: date | None = None
    delivery_date: date | None = None
    currency: str = "JPY"
    lines: tuple[Line, ...] = ()
    total: Decimal = ZERO
    tax_total: Decimal = ZERO
    total_with_tax: Decimal = ZERO
    deal_id: UUID | None = None
    contract_id: UUID | None = None
    status: OrderStatus = "placed"
    delivered_on: date | None = None
    reversed_amount: Decimal = ZERO
    version: int = 0

    @property
    def revenue(self) -> Decimal:
        """The pre-tax total minus what cancellations and returns reversed."""
        return self.total - self.reversed_amount


def priced_lines(command: PlaceOrder) -> list[OrderLine]:
    """The order's lines with line amount (unit_price × quantity − discount) and tax (rounded down)."""
    currency = command.currency
    lines: list[OrderLine] = []
    for number, line in enumerate(command.lines, start=1):
        at = f"lines.{number - 1}"
        unit_price = check_amount(line.unit_price, currency, f"{at}.unit_price")
        discount = check_amount(line.discount, currency, f"{at}.discount")
        gross = unit_price * line.quantity
        if discount > gross:
            raise DomainError(f"the discount {discount} exceeds unit_price × quantity = {gross}", f"{at}.discount")
        amount = gross - discount
        rate = DEFAULT_TAX_RATE if line.tax_rate is None else line.tax_rate
        lines.append(
            OrderLine(
                line_no=number,
                product_code=line.product_code,
                product_name=line.product_name,
                category=line.category,
                unit_price=text(unit_price, currency),
                quantity=line.quantity,
                discount=text(discount, currency),
                line_amount=text(amount, currency),
                tax_rate=format(rate, "f"),
                tax_amount=text(round_down(amount * rate, currency), currency),
            )
        )
    return lines


def decide_place(command: PlaceOrder, state: Order, customer: CustomerStanding, now: datetime) -> list[DomainEvent]:
    """The event of placing an order for a known customer; a given total must equal the sum of the lines."""
    if state.placed:
        raise AlreadyExists(f"order {state.id} already exists", field="id")
    cid = check_customer(customer)
    if command.delivery_date is not None and command.delivery_date < command.order_date:
        raise DomainError("delivery_date is before order_date", field="delivery_date")
    lines = priced_lines(command)
    currency = command.currency
    total = sum((parse(line.line_amount) for line in lines), ZERO)
    tax_total = sum((parse(line.tax_amount) for line in lines), ZERO)
    if command.total is not None and command.total != total:
        raise DomainError(f"total {command.total} is not the sum of the line amounts, {text(total, currency)}", "total")
    return [
        OrderPlaced(
            customer_id=cid,
            occurred_at=now,
            order_id=state.id,
            order_date=command.order_date,
            delivery_date=command.delivery_date,
            currency=currency,
            lines=lines,
            line_count=len(lines),
            total=text(total, currency),
            tax_total=text(tax_total, currency),
            total_with_tax=text(total + tax_total, currency),
            deal_id=command.deal_id,
            contract_id=command.contract_id,
        )
    ]


def _placed(state: Order) -> UUID:
    if not state.placed or state.customer_id is None:
        raise NotFound(f"order {state.id} does not exist", field="id")
    return state.customer_id


def _returned_lines(command: ReturnOrder, state: Order) -> list[ReturnedLine]:
    by_number = {line.line_no: line for line in state.lines}
    wanted: list[tuple[Line, int, str]] = []
    if not command.lines:
        wanted = [(line, line.remaining, "lines") for line in state.lines if line.remaining > 0]
    for index, asked in enumerate(command.lines):
        line = by_number.get(asked.line_no)
        if line is None:
            raise DomainError(f"the order has no line {asked.line_no}", field=f"lines.{index}.line_no")
        if asked.quantity > line.remaining:
            raise DomainError(
                f"line {line.line_no} has {line.remaining} of {line.quantity} left to return, not {asked.quantity}",
                field=f"lines.{index}.quantity",
            )
        wanted.append((line, asked.quantity, f"lines.{index}"))
    returned: list[ReturnedLine] = []
    for line, quantity, _ in wanted:
        if quantity == line.remaining:
            # The last units reverse whatever of the line is left, so rounding never leaves a remainder.
            amount = line.line_amount - line.returned_amount
        else:
            amount = round_down(line.line_amount * quantity / line.quantity, state.currency)
        returned.append(ReturnedLine(line_no=line.line_no, quantity=quantity, amount=text(amount, state.currency)))
    return returned


def decide(command: Command, state: Order, now: datetime) -> list[DomainEvent]:
    """The events a command produces on an order, or a DomainError."""
    oid = state.id
    match command:
        case DeliverOrder():
            cid = _placed(state)
            if state.status != "placed":
                raise InvalidTransition(f"order {oid} is {state.status}; only a placed order is delivered", "id")
            delivered = command.delivered_on or today(now)
            assert state.order_date is not None
            if delivered < state.order_date:
                raise DomainError("delivered_on is before the order date", field="delivered_on")
            return [OrderDelivered(customer_id=cid, occurred_at=now, order_id=oid, delivered_on=delivered)]
        case CancelOrder():
            cid = _placed(state)
            if state.status == "cancelled":
                raise InvalidTransition(f"order {oid} is already cancelled", field="id")
            if state.status != "placed" or state.delivered_on is not None:
                raise InvalidTransition(
                    f"order {oid} was delivered{' and returned' if state.reversed_amount else ''}; "
                    "a delivered order is returned, not cancelled",
                    field="id",
                )
            return [
                OrderCancelled(
                    customer_id=cid,
                    occurred_at=now,
                    order_id=oid,
                    reason=command.reason,
                    amount=text(state.revenue, state.currency),
                    currency=state.currency,
                )
            ]
        case ReturnOrder():
            cid = _placed(state)
            if state.status == "cancelled":
                raise InvalidTransition(f"order {oid} is cancelled; nothing was delivered to return", field="id")
            if state.status == "returned":
                raise InvalidTransition(f"everything of order {oid} was already returned", field="id")
            if state.delivered_on is None:
                raise InvalidTransition(f"order {oid} was not delivered yet; cancel it instead", field="id")
            returned_on = command.returned_on or today(now)
            if returned_on < state.delivered_on:
                raise DomainError("returned_on is before the delivery", field="returned_on")
            lines = _returned_lines(command, state)
            left = sum(line.remaining for line in state.lines) - sum(line.quantity for line in lines)
            amount = sum((parse(line.amount) for line in lines), ZERO)
            return [
                OrderReturned(
                    customer_id=cid,
                    occurred_at=now,
                    order_id=oid,
                    lines=lines,
                    amount=text(amount, state.currency),
                    currency=state.currency,
                    full=left == 0,
                    returned_on=returned_on,
                    reason=command.reason,
                )
            ]
        case _:
            assert_never(command)


def _line(line: OrderLine) -> Line:
    return Line(
        line_no=line.line_no,
        product_code=line.product_code,
        product_name=line.product_name,
        category=line.category,
        unit_price=parse(line.unit_price),
        quantity=line.quantity,
        discount=parse(line.discount),
        line_amount=parse(line.line_amount),
        tax_rate=parse(line.tax_rate),
        tax_amount=parse(line.tax_amount),
    )


def _apply(state: Order, event: DomainEvent) -> Order:
    match event:
        case OrderPlaced():
            return replace(
                state,
                placed=True,
                customer_id=event.customer_id,
                order_date=event.order_date,
                delivery_date=event.delivery_date,
                currency=event.currency,
                lines=tuple(_line(line) for line in event.lines),
                total=parse(event.total),
                tax_total=parse(event.tax_total),
                total_with_tax=parse(event.total_with_tax),
                deal_id=event.deal_id,
                contract_id=event.contract_id,
            )
        case OrderDelivered():
            return replace(state, status="delivered", delivered_on=event.delivered_on)
        case OrderCancelled():
            return replace(state, status="cancelled", reversed_amount=state.reversed_amount + parse(event.amount))
        case OrderReturned():
            back = {line.line_no: line for line in event.lines}
            lines = tuple(
                line
                if line.line_no not in back
                else replace(
                    line,
                    returned_quantity=line.returned_quantity + back[line.line_no].quantity,
                    returned_amount=line.returned_amount + parse(back[line.line_no].amount),
                )
                for line in state.lines
            )
            return replace(
                state,
                lines=lines,
                status="returned" if event.full else state.status,
                reversed_amount=state.reversed_amount + parse(event.amount),
            )
        case _:
            return state


def evolve(state: Order, event: DomainEvent) -> Order:
    """The order after an event (unknown event types only advance the version)."""
    return replace(_apply(state, event), version=state.version + 1)


def initial(order_id: UUID) -> Order:
    """An order before it was placed."""
    return Order(id=order_id)


def stream_id(order_id: UUID) -> str:
    """The order's stream name."""
    return f"order-{order_id}"
