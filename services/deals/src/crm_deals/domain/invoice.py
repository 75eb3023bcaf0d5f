"""The invoice aggregate (請求書, stream invoice-<uuid>) with its payments; unapplied payments (payment-<uuid>)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Literal, assert_never
from uuid import UUID

from crm_schemas.base import DomainEvent
from crm_schemas.deals import InvoiceCancelled, InvoiceIssued, InvoiceOverdue, PaymentMethod, PaymentReceived

from crm_deals.domain.commands import CancelInvoice, IssueInvoice, MarkInvoiceOverdue, RecordPayment
from crm_deals.domain.customers import CustomerStanding, check_customer
from crm_deals.domain.errors import AlreadyExists, DomainError, InvalidTransition, NotFound
from crm_deals.domain.money import ZERO, check_amount, parse, text, today

InvoiceStatus = Literal["issued", "paid", "cancelled"]

Command = CancelInvoice | MarkInvoiceOverdue | RecordPayment


@dataclass(frozen=True)
class Payment:
    """One payment received against the invoice."""

    id: UUID
    amount: Decimal
    paid_on: date
    method: PaymentMethod


@dataclass(frozen=True)
class Invoice:
    """What the write side knows of an invoice."""

    id: UUID
    issued: bool = False
    customer_id: UUID | None = None
    invoice_number: str = ""
    issued_on: date | None = None
    due_date: date | None = None
    amount: Decimal = ZERO
    currency: str = "JPY"
    order_id: UUID | None = None
    contract_id: UUID | None = None
    cancelled: bool = False
    overdue: bool = False
    payments: tuple[Payment, ...] = ()
    version: int = 0

    @property
    def paid(self) -> Decimal:
        """Sum of the payments received."""
        return sum((p.amount for p in self.payments), ZERO)

    @property
    def outstanding(self) -> Decimal:
        """What is still owed (nothing once cancelled)."""
        return ZERO if self.cancelled else self.amount - self.paid

    @property
    def status(self) -> InvoiceStatus:
        """issued, paid or cancelled."""
        if self.cancelled:
            return "cancelled"
        return "paid" if self.outstanding == 0 else "issued"


def invoice_number(invoice_id: UUID, issued_on: date) -> str:
    """The number of an invoice issued without one: INV-<yyyymm>-<last 8 hex digits of its id>."""
    return f"INV-{issued_on:%Y%m}-{invoice_id.hex[-8:].upper()}"


def decide_issue(command: IssueInvoice, state: Invoice, customer: CustomerStanding, now: datetime) -> list[DomainEvent]:
    """The event of issuing an invoice to a known customer."""
    if state.issued:
        raise AlreadyExists(f"invoice {state.id} already exists", field="id")
    cid = check_customer(customer)
    issued_on = command.issued_on or today(now)
    if command.due_date < issued_on:
        raise DomainError(f"due_date is before the issue date {issued_on}", field="due_date")
    amount = check_amount(command.amount, command.currency, "amount")
    return [
        InvoiceIssued(
            customer_id=cid,
            occurred_at=now,
            invoice_id=state.id,
            invoice_number=command.invoice_number or invoice_number(state.id, issued_on),
            issued_on=issued_on,
            due_date=command.due_date,
            amount=text(amount, command.currency),
            currency=command.currency,
            order_id=command.order_id,
            contract_id=command.contract_id,
        )
    ]


def _issued(state: Invoice) -> UUID:
    if not state.issued or state.customer_id is None:
        raise NotFound(f"invoice {state.id} does not exist", field="id")
    return state.customer_id


def _payment(command: RecordPayment, now: datetime) -> UUID:
    if command.payment_id is None:
        raise DomainError("the service assigns payment_id before deciding", field="payment_id")
    if command.paid_on > today(now):
        raise DomainError("paid_on is in the future", field="paid_on")
    return command.payment_id


def decide(command: Command, state: Invoice, now: datetime) -> list[DomainEvent]:
    """The events a command produces on an invoice, or a DomainError."""
    iid = state.id
    match command:
        case CancelInvoice():
            cid = _issued(state)
            if state.cancelled:
                raise InvalidTransition(f"invoice {iid} is already cancelled", field="id")
            if state.payments:
                raise InvalidTransition(f"invoice {iid} has payments; an invoice with payments is not voided", "id")
            return [InvoiceCancelled(customer_id=cid, occurred_at=now, invoice_id=iid, reason=command.reason)]
        case MarkInvoiceOverdue():
            cid = _issued(state)
            # Stale requests change nothing: paid, cancelled, already overdue, or not due yet.
            if state.status != "issued" or state.overdue or state.due_date != command.due_date:
                return []
            if today(now) <= command.due_date:
                return []
            return [
                InvoiceOverdue(
                    customer_id=cid,
                    occurred_at=now,
                    invoice_id=iid,
                    due_date=command.due_date,
                    outstanding=text(state.outstanding, state.currency),
                    currency=state.currency,
                )
            ]
        case RecordPayment():
            cid = _issued(state)
            payment_id = _payment(command, now)
            if command.customer_id != cid:
                raise DomainError(f"invoice {iid} was issued to another customer", field="invoice_id")
            if state.cancelled:
                raise InvalidTransition(f"invoice {iid} is cancelled; it takes no payments", field="invoice_id")
            if command.currency is not None and command.currency != state.currency:
                raise DomainError(f"the invoice is in {state.currency}, not {command.currency}", field="currency")
            if any(p.id == payment_id for p in state.payments):
                return []
            amount = check_amount(command.amount, state.currency, "amount")
            if amount > state.outstanding:
                raise DomainError(
                    f"{text(amount, state.currency)} is more than the {text(state.outstanding, state.currency)}"
                    f" {state.currency} outstanding on invoice {state.invoice_number}",
                    field="amount",
                    outstanding=text(state.outstanding, state.currency),
                )
            return [
                PaymentReceived(
                    customer_id=cid,
                    occurred_at=now,
                    payment_id=payment_id,
                    invoice_id=iid,
                    amount=text(amount, state.currency),
                    currency=state.currency,
                    paid_on=command.paid_on,
                    method=command.method,
                    outstanding_after=text(state.outstanding - amount, state.currency),
                )
            ]
        case _:
            assert_never(command)


@dataclass(frozen=True)
class UnappliedPayment:
    """A payment received without an invoice (stream payment-<uuid>)."""

    id: UUID
    received: PaymentReceived | None = None
    version: int = 0


def decide_unapplied_payment(
    command: RecordPayment, state: UnappliedPayment, customer: CustomerStanding, now: datetime
) -> list[DomainEvent]:
    """The event of a payment received without an invoice (nothing if this payment was recorded already)."""
    cid = check_customer(customer)
    payment_id = _payment(command, now)
    if payment_id != state.id:
        raise DomainError("the payment's stream is not the payment's", field="payment_id")
    if state.received is not None:
        return []
    currency = command.currency or "JPY"
    amount = check_amount(command.amount, currency, "amount")
    return [
        PaymentReceived(
            customer_id=cid,
            occurred_at=now,
            payment_id=payment_id,
            invoice_id=None,
            amount=text(amount, currency),
            currency=currency,
            paid_on=command.paid_on,
            method=command.method,
        )
    ]


def _apply(state: Invoice, event: DomainEvent) -> Invoice:
    match event:
        case InvoiceIssued():
            return replace(
                state,
                issued=True,
                customer_id=event.customer_id,
                invoice_number=event.invoice_number,
                issued_on=event.issued_on,
                due_date=event.due_date,
                amount=parse(event.amount),
                currency=event.currency,
                order_id=event.order_id,
                contract_id=event.contract_id,
            )
        case InvoiceOverdue():
            return replace(state, overdue=True)
        case InvoiceCancelled():
            return replace(state, cancelled=True)
        case PaymentReceived():
            payment = Payment(event.payment_id, parse(event.amount), event.paid_on, event.method)
            return replace(state, payments=(*state.payments, payment))
        case _:
            return state


def evolve(state: Invoice, event: DomainEvent) -> Invoice:
    """The invoice after an event (unknown event types only advance the version)."""
    return replace(_apply(state, event), version=state.version + 1)


def initial(invoice_id: UUID) -> Invoice:
    """An invoice before it was issued."""
    return Invoice(id=invoice_id)


def due_on(state: Invoice) -> date | None:
    """The due date the scheduler watches: set while an amount is outstanding and overdue is not yet recorded."""
    return state.due_date if state.issued and state.status == "issued" and not state.overdue else None


def stream_id(invoice_id: UUID) -> str:
    """The invoice's stream name."""
    return f"invoice-{invoice_id}"


def evolve_unapplied(state: UnappliedPayment, event: DomainEvent) -> UnappliedPayment:
    """The unapplied payment after an event."""
    received = event if isinstance(event, PaymentReceived) else state.received
    return replace(state, received=received, version=state.version + 1)


def initial_unapplied(payment_id: UUID) -> UnappliedPayment:
    """An unapplied payment before it was recorded."""
    return UnappliedPayment(id=payment_id)


def payment_stream_id(payment_id: UUID) -> str:
    """The stream of a payment received without an invoice."""
    return f"payment-{payment_id}"
