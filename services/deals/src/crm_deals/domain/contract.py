"""The contract aggregate (stream contract-<uuid>): signed, renewed, amended, cancelled, expired."""

from __future__ import annotations

import calendar
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Literal, assert_never
from uuid import UUID

from crm_schemas.base import DomainEvent
from crm_schemas.deals import (
    BillingCycle,
    ContractAmended,
    ContractCancelled,
    ContractExpired,
    ContractRenewed,
    ContractSigned,
)

from crm_deals.domain.commands import AmendContract, CancelContract, ExpireContract, RenewContract, SignContract
from crm_deals.domain.customers import CustomerStanding, check_customer
from crm_deals.domain.deal import Deal
from crm_deals.domain.errors import AlreadyExists, DomainError, InvalidTransition, NotFound
from crm_deals.domain.money import ZERO, check_amount, parse, text, today

ContractStatus = Literal["active", "cancelled", "expired"]

Command = RenewContract | AmendContract | CancelContract | ExpireContract


@dataclass(frozen=True)
class Contract:
    """What the write side knows of a contract."""

    id: UUID
    signed: bool = False
    customer_id: UUID | None = None
    title: str = ""
    deal_id: UUID | None = None
    terms: str | None = None
    start_date: date | None = None
    term_start: date | None = None
    end_date: date | None = None
    amount: Decimal = ZERO
    currency: str = "JPY"
    billing_cycle: BillingCycle = "one_time"
    auto_renewal: bool = False
    owner: str | None = None
    status: ContractStatus = "active"
    renewals: int = 0
    cancelled_on: date | None = None
    version: int = 0


def add_months(day: date, months: int) -> date:
    """The same day `months` later, clamped to the end of a shorter month (Jan 31 + 1 month = Feb 28/29)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def next_term_end(term_start: date, end_date: date) -> date:
    """The end of the next term of the same length: whole months when the term is whole months, else days."""
    following = end_date + timedelta(days=1)
    for months in range(1, 121):
        if add_months(term_start, months) == following:
            return add_months(following, months) - timedelta(days=1)
        if add_months(term_start, months) > following:
            break
    return end_date + (following - term_start)


def _signed(state: Contract) -> UUID:
    if not state.signed or state.customer_id is None:
        raise NotFound(f"contract {state.id} does not exist", field="id")
    return state.customer_id


def _active(state: Contract, doing: str) -> UUID:
    cid = _signed(state)
    if state.status != "active":
        raise InvalidTransition(f"contract {state.id} is {state.status}; it cannot be {doing}", field="id")
    return cid


def decide_sign(
    command: SignContract, state: Contract, customer: CustomerStanding, deal: Deal | None, now: datetime
) -> list[DomainEvent]:
    """The event of signing a contract with a known customer, optionally from one of its won deals."""
    if state.signed:
        raise AlreadyExists(f"contract {state.id} already exists", field="id")
    cid = check_customer(customer)
    if command.deal_id is not None:
        if deal is None or not deal.opened:
            raise DomainError(f"deal {command.deal_id} does not exist", field="deal_id")
        if deal.customer_id != cid:
            raise DomainError(f"deal {command.deal_id} belongs to another customer", field="deal_id")
        if deal.status != "won":
            raise DomainError(f"deal {command.deal_id} is {deal.status}; a contract follows a won deal", "deal_id")
    if command.end_date <= command.start_date:
        raise DomainError("end_date must be after start_date", field="end_date")
    amount = check_amount(command.amount, command.currency, "amount")
    return [
        ContractSigned(
            customer_id=cid,
            occurred_at=now,
            contract_id=state.id,
            title=command.title,
            deal_id=command.deal_id,
            terms=command.terms,
            start_date=command.start_date,
            end_date=command.end_date,
            amount=text(amount, command.currency),
            currency=command.currency,
            billing_cycle=command.billing_cycle,
            auto_renewal=command.auto_renewal,
            owner=command.owner,
        )
    ]


def _renewed(state: Contract, cid: UUID, end: date, amount: Decimal, now: datetime, auto: bool) -> DomainEvent:
    assert state.end_date is not None
    return ContractRenewed(
        customer_id=cid,
        occurred_at=now,
        contract_id=state.id,
        previous_end_date=state.end_date,
        end_date=end,
        amount=text(amount, state.currency),
        currency=state.currency,
        automatic=auto,
    )


def decide(command: Command, state: Contract, now: datetime) -> list[DomainEvent]:
    """The events a command produces on a contract, or a DomainError."""
    match command:
        case RenewContract():
            cid = _active(state, "renewed (sign a new contract)")
            assert state.end_date is not None
            if command.end_date <= state.end_date:
                raise DomainError(f"a renewal ends after the current end date {state.end_date}", field="end_date")
            amount = state.amount if command.amount is None else check_amount(command.amount, state.currency, "amount")
            return [_renewed(state, cid, command.end_date, amount, now, auto=False)]
        case AmendContract():
            cid = _active(state, "amended")
            assert state.start_date is not None
            new_amount = None if command.amount is None else check_amount(command.amount, state.currency, "amount")
            if command.end_date is not None and command.end_date <= state.start_date:
                raise DomainError("end_date must be after the contract's start_date", field="end_date")
            changes = {
                "amount": None
                if new_amount is None or new_amount == state.amount
                else text(new_amount, state.currency),
                "end_date": None if command.end_date == state.end_date else command.end_date,
                "terms": None if command.terms == state.terms else command.terms,
                "billing_cycle": None if command.billing_cycle == state.billing_cycle else command.billing_cycle,
                "auto_renewal": None if command.auto_renewal == state.auto_renewal else command.auto_renewal,
            }
            if all(value is None for value in changes.values()):
                raise DomainError("the amendment changes nothing: name at least one new term", field="reason")
            return [
                ContractAmended(
                    customer_id=cid, occurred_at=now, contract_id=state.id, reason=command.reason, **changes
                )
            ]
        case CancelContract():
            cid = _active(state, "cancelled")
            assert state.start_date is not None
            assert state.end_date is not None
            effective = command.effective_on or today(now)
            if not state.start_date <= effective <= state.end_date:
                raise DomainError(
                    f"effective_on must lie in the contract's term {state.start_date} – {state.end_date}",
                    field="effective_on",
                )
            return [
                ContractCancelled(
                    customer_id=cid,
                    occurred_at=now,
                    contract_id=state.id,
                    reason=command.reason,
                    effective_on=effective,
                )
            ]
        case ExpireContract():
            cid = _signed(state)
            # A stale request changes nothing: the contract was renewed, amended to a new end date,
            # cancelled or already expired meanwhile, or its end date has not passed yet.
            if state.status != "active" or state.end_date != command.end_date or today(now) <= command.end_date:
                return []
            assert state.term_start is not None
            if state.auto_renewal:
                end = next_term_end(state.term_start, state.end_date)
                return [_renewed(state, cid, end, state.amount, now, auto=True)]
            return [ContractExpired(customer_id=cid, occurred_at=now, contract_id=state.id, end_date=state.end_date)]
        case _:
            assert_never(command)


def _apply(state: Contract, event: DomainEvent) -> Contract:
    match event:
        case ContractSigned():
            return replace(
                state,
                signed=True,
                customer_id=event.customer_id,
                title=event.title,
                deal_id=event.deal_id,
                terms=event.terms,
                start_date=event.start_date,
                term_start=event.start_date,
                end_date=event.end_date,
                amount=parse(event.amount),
                currency=event.currency,
                billing_cycle=event.billing_cycle,
                auto_renewal=event.auto_renewal,
                owner=event.owner,
            )
        case ContractRenewed():
            return replace(
                state,
                status="active",
                term_start=event.previous_end_date + timedelta(days=1),
                end_date=event.end_date,
                amount=parse(event.amount),
                renewals=state.renewals + 1,
            )
        case ContractAmended():
            return replace(
                state,
                amount=state.amount if event.amount is None else parse(event.amount),
                end_date=event.end_date or state.end_date,
                terms=event.terms if event.terms is not None else state.terms,
                billing_cycle=event.billing_cycle or state.billing_cycle,
                auto_renewal=state.auto_renewal if event.auto_renewal is None else event.auto_renewal,
            )
        case ContractCancelled():
            return replace(state, status="cancelled", cancelled_on=event.effective_on)
        case ContractExpired():
            return replace(state, status="expired")
        case _:
            return state


def evolve(state: Contract, event: DomainEvent) -> Contract:
    """The contract after an event (unknown event types only advance the version)."""
    return replace(_apply(state, event), version=state.version + 1)


def initial(contract_id: UUID) -> Contract:
    """A contract before it was signed."""
    return Contract(id=contract_id)


def due_on(state: Contract) -> date | None:
    """The end date the scheduler watches: set while the contract is active."""
    return state.end_date if state.signed and state.status == "active" else None


def stream_id(contract_id: UUID) -> str:
    """The contract's stream name."""
    return f"contract-{contract_id}"
