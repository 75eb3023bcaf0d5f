"""The invoice decider: issue, partial payments, overpayment, overdue detection, cancellation."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from uuid import UUID

import pytest
from crm_deals.domain import invoice
from crm_deals.domain.commands import CancelInvoice, MarkInvoiceOverdue, RecordPayment
from crm_deals.domain.customers import CustomerStanding
from crm_deals.domain.errors import DomainError, InvalidTransition, NotFound, UnknownCustomer
from crm_eventstore.ids import new_id
from crm_schemas.base import DomainEvent
from crm_schemas.deals import InvoiceCancelled, InvoiceIssued, InvoiceOverdue, PaymentReceived

from .builders import JST, NOW, invoice_after, issued_invoice, known, on_invoice

AFTER_DUE = datetime(2026, 5, 1, 0, 5, tzinfo=JST)


def pay(customer_id: UUID, amount: str, **overrides: object) -> RecordPayment:
    body = {"customer_id": str(customer_id), "amount": amount, "paid_on": "2026-04-01", "method": "bank_transfer"}
    return RecordPayment.model_validate({"payment_id": str(new_id()), **body, **overrides})


def test_issuing_records_number_dates_and_amount() -> None:
    [event] = issued_invoice(invoice_number="INV-0001")
    assert isinstance(event, InvoiceIssued)
    assert (event.invoice_number, event.issued_on, event.due_date, event.amount) == (
        "INV-0001",
        date(2026, 4, 1),
        date(2026, 4, 30),
        "110000",
    )


def test_an_invoice_without_a_number_gets_one_from_its_id() -> None:
    [event] = issued_invoice()
    assert isinstance(event, InvoiceIssued)
    assert event.invoice_number == f"INV-202604-{event.invoice_id.hex[-8:].upper()}"


def test_a_due_date_before_the_issue_date_is_rejected() -> None:
    with pytest.raises(DomainError) as caught:
        issued_invoice(due_date="2026-03-31")
    assert caught.value.field == "due_date"


def test_an_invoice_for_an_unknown_customer_is_rejected() -> None:
    from crm_deals.domain.commands import IssueInvoice

    from .builders import invoice_body

    cid = new_id()
    with pytest.raises(UnknownCustomer):
        invoice.decide_issue(
            IssueInvoice.model_validate(invoice_body(cid)), invoice.initial(new_id()), CustomerStanding(cid, False), NOW
        )


def test_partial_payments_reduce_what_is_outstanding_until_paid() -> None:
    given = issued_invoice()
    cid = given[0].customer_id
    events = on_invoice(given, pay(cid, "60000"), pay(cid, "50000"))
    first, second = events[1:]
    assert isinstance(first, PaymentReceived)
    assert isinstance(second, PaymentReceived)
    assert (first.outstanding_after, second.outstanding_after) == ("50000", "0")
    assert first.invoice_id == given[0].invoice_id  # type: ignore[attr-defined]
    state = invoice_after(events)
    assert (state.status, state.outstanding, state.paid) == ("paid", Decimal(0), Decimal(110000))


def test_paying_more_than_is_outstanding_is_rejected_naming_amount() -> None:
    given = issued_invoice()
    cid = given[0].customer_id
    events = on_invoice(given, pay(cid, "100000"))
    with pytest.raises(DomainError) as caught:
        on_invoice(events, pay(cid, "10001"))
    assert caught.value.field == "amount"
    assert caught.value.extra["outstanding"] == "10000"


def test_a_payment_in_another_currency_is_rejected_naming_currency() -> None:
    given = issued_invoice()
    with pytest.raises(DomainError) as caught:
        on_invoice(given, pay(given[0].customer_id, "100", currency="USD"))
    assert caught.value.field == "currency"


def test_a_payment_by_another_customer_is_rejected_naming_invoice_id() -> None:
    with pytest.raises(DomainError) as caught:
        on_invoice(issued_invoice(), pay(new_id(), "100"))
    assert caught.value.field == "invoice_id"


def test_a_payment_dated_in_the_future_is_rejected() -> None:
    given = issued_invoice()
    with pytest.raises(DomainError) as caught:
        on_invoice(given, pay(given[0].customer_id, "100", paid_on="2026-04-02"))
    assert caught.value.field == "paid_on"


def test_the_same_payment_recorded_twice_counts_once() -> None:
    given = issued_invoice()
    payment = pay(given[0].customer_id, "1000")
    events = on_invoice(given, payment, payment)
    assert len(events) == 2


def test_overdue_is_detected_after_the_due_date_with_what_is_outstanding() -> None:
    given = issued_invoice()
    events = on_invoice(given, pay(given[0].customer_id, "10000"))
    on_due_day = datetime(2026, 4, 30, 23, 0, tzinfo=JST)
    assert on_invoice(events, MarkInvoiceOverdue(due_date=date(2026, 4, 30)), at=on_due_day) == events
    overdue = on_invoice(events, MarkInvoiceOverdue(due_date=date(2026, 4, 30)), at=AFTER_DUE)[-1]
    assert isinstance(overdue, InvoiceOverdue)
    assert (overdue.outstanding, overdue.due_date) == ("100000", date(2026, 4, 30))


def test_overdue_is_recorded_once_and_never_for_a_paid_or_cancelled_invoice() -> None:
    given = issued_invoice()
    check = MarkInvoiceOverdue(due_date=date(2026, 4, 30))
    once = on_invoice(given, check, at=AFTER_DUE)
    assert on_invoice(once, check, at=AFTER_DUE) == once
    paid = on_invoice(given, pay(given[0].customer_id, "110000"))
    assert on_invoice(paid, check, at=AFTER_DUE) == paid
    cancelled = on_invoice(given, CancelInvoice(reason="誤発行"))
    assert on_invoice(cancelled, check, at=AFTER_DUE) == cancelled


def test_an_overdue_invoice_can_still_be_paid() -> None:
    given = issued_invoice()
    events = on_invoice(given, MarkInvoiceOverdue(due_date=date(2026, 4, 30)), at=AFTER_DUE)
    later = datetime(2026, 5, 10, 10, tzinfo=JST)
    events = on_invoice(events, pay(given[0].customer_id, "110000", paid_on="2026-05-10"), at=later)
    assert invoice_after(events).status == "paid"
    assert invoice.due_on(invoice_after(events)) is None


def test_cancelling_an_unpaid_invoice() -> None:
    [cancelled] = on_invoice(issued_invoice(), CancelInvoice(reason="誤発行"))[1:]
    assert isinstance(cancelled, InvoiceCancelled)


def test_an_invoice_with_payments_is_not_cancelled() -> None:
    given = issued_invoice()
    with pytest.raises(InvalidTransition):
        on_invoice(given, pay(given[0].customer_id, "1"), CancelInvoice(reason="x"))


def test_a_cancelled_invoice_takes_no_payment_and_is_not_cancelled_again() -> None:
    given = on_invoice(issued_invoice(), CancelInvoice(reason="x"))
    with pytest.raises(InvalidTransition):
        on_invoice(given, pay(given[0].customer_id, "1"))
    with pytest.raises(InvalidTransition):
        on_invoice(given, CancelInvoice(reason="x"))


def test_commands_on_an_invoice_never_issued_are_not_found() -> None:
    with pytest.raises(NotFound):
        invoice.decide(CancelInvoice(reason="x"), invoice.initial(new_id()), NOW)


def test_a_payment_without_an_invoice_is_recorded_unapplied() -> None:
    cid = new_id()
    command = pay(cid, "5000")
    assert command.payment_id is not None
    state = invoice.initial_unapplied(command.payment_id)
    events: list[DomainEvent] = invoice.decide_unapplied_payment(command, state, known(cid), NOW)
    [event] = events
    assert isinstance(event, PaymentReceived)
    assert (event.invoice_id, event.amount, event.outstanding_after) == (None, "5000", None)
    recorded = invoice.evolve_unapplied(state, event)
    assert invoice.decide_unapplied_payment(command, recorded, known(cid), NOW) == []
