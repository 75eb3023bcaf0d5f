"""The contract decider: signing, renewal, amendment, cancellation, and expiry or auto-renewal at the end."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest
from crm_deals.domain import contract, deal
from crm_deals.domain.commands import (
    AmendContract,
    CancelContract,
    ExpireContract,
    LoseDeal,
    RenewContract,
    SignContract,
    WinDeal,
)
from crm_deals.domain.contract import add_months, next_term_end
from crm_deals.domain.customers import CustomerStanding
from crm_deals.domain.errors import DomainError, InvalidTransition, UnknownCustomer
from crm_eventstore.ids import new_id
from crm_schemas.base import DomainEvent
from crm_schemas.deals import ContractAmended, ContractCancelled, ContractExpired, ContractRenewed, ContractSigned

from .builders import JST, NOW, contract_after, contract_body, deal_after, known, on_deal, opened_deal, signed_contract

AFTER_END = datetime(2027, 4, 1, 0, 5, tzinfo=JST)


def on(given: list[DomainEvent], *commands: contract.Command, at: datetime = NOW) -> list[DomainEvent]:
    events = list(given)
    for command in commands:
        events += contract.decide(command, contract_after(events), at)
    return events


def test_signing_records_term_amount_cycle_and_renewal() -> None:
    [event] = signed_contract(auto_renewal=True, terms="年間保守")
    assert isinstance(event, ContractSigned)
    assert (event.start_date, event.end_date, event.amount, event.billing_cycle, event.auto_renewal) == (
        date(2026, 4, 1),
        date(2027, 3, 31),
        "50000",
        "monthly",
        True,
    )


def test_a_contract_from_a_won_deal_names_the_deal() -> None:
    given = on_deal(opened_deal(), WinDeal())
    won = deal_after(given)
    assert won.customer_id is not None
    command = SignContract.model_validate(contract_body(won.customer_id, deal_id=str(won.id)))
    [event] = contract.decide_sign(command, contract.initial(new_id()), known(won.customer_id), won, NOW)
    assert isinstance(event, ContractSigned)
    assert event.deal_id == won.id


def test_a_contract_from_a_deal_that_was_not_won_is_rejected_naming_deal_id() -> None:
    lost = deal_after(on_deal(opened_deal(), LoseDeal(reason="x")))
    assert lost.customer_id is not None
    command = SignContract.model_validate(contract_body(lost.customer_id, deal_id=str(lost.id)))
    with pytest.raises(DomainError) as caught:
        contract.decide_sign(command, contract.initial(new_id()), known(lost.customer_id), lost, NOW)
    assert caught.value.field == "deal_id"


def test_a_contract_from_another_customers_deal_is_rejected() -> None:
    won = deal_after(on_deal(opened_deal(), WinDeal()))
    cid = new_id()
    command = SignContract.model_validate(contract_body(cid, deal_id=str(won.id)))
    with pytest.raises(DomainError) as caught:
        contract.decide_sign(command, contract.initial(new_id()), known(cid), won, NOW)
    assert caught.value.field == "deal_id"


def test_a_contract_from_an_unknown_deal_is_rejected() -> None:
    cid = new_id()
    command = SignContract.model_validate(contract_body(cid, deal_id=str(new_id())))
    with pytest.raises(DomainError) as caught:
        contract.decide_sign(command, contract.initial(new_id()), known(cid), deal.initial(new_id()), NOW)
    assert caught.value.field == "deal_id"


def test_a_contract_ending_before_it_starts_is_rejected_naming_end_date() -> None:
    with pytest.raises(DomainError) as caught:
        signed_contract(end_date="2026-03-31")
    assert caught.value.field == "end_date"


def test_a_contract_for_an_unknown_customer_is_rejected() -> None:
    cid = new_id()
    command = SignContract.model_validate(contract_body(cid))
    with pytest.raises(UnknownCustomer):
        contract.decide_sign(command, contract.initial(new_id()), CustomerStanding(cid, False), None, NOW)


def test_renewing_moves_the_end_date_and_may_change_the_amount() -> None:
    events = on(signed_contract(), RenewContract(end_date=date(2028, 3, 31), amount=Decimal(55000)))
    renewed = events[-1]
    assert isinstance(renewed, ContractRenewed)
    assert (renewed.previous_end_date, renewed.end_date, renewed.amount, renewed.automatic) == (
        date(2027, 3, 31),
        date(2028, 3, 31),
        "55000",
        False,
    )


def test_a_renewal_must_end_later() -> None:
    with pytest.raises(DomainError) as caught:
        on(signed_contract(), RenewContract(end_date=date(2027, 3, 31)))
    assert caught.value.field == "end_date"


def test_amending_records_only_what_changed() -> None:
    events = on(signed_contract(), AmendContract(reason="値上げ", amount=Decimal(60000), billing_cycle="monthly"))
    amended = events[-1]
    assert isinstance(amended, ContractAmended)
    assert (amended.amount, amended.billing_cycle, amended.end_date) == ("60000", None, None)
    assert contract_after(events).amount == Decimal(60000)


def test_an_amendment_that_changes_nothing_is_rejected() -> None:
    with pytest.raises(DomainError):
        on(signed_contract(), AmendContract(reason="確認", amount=Decimal(50000)))


def test_cancelling_records_reason_and_effective_date() -> None:
    events = on(signed_contract(), CancelContract(reason="事業撤退", effective_on=date(2026, 9, 30)))
    cancelled = events[-1]
    assert isinstance(cancelled, ContractCancelled)
    assert cancelled.effective_on == date(2026, 9, 30)
    assert contract_after(events).status == "cancelled"


def test_cancelling_outside_the_term_is_rejected_naming_effective_on() -> None:
    with pytest.raises(DomainError) as caught:
        on(signed_contract(), CancelContract(reason="x", effective_on=date(2027, 5, 1)))
    assert caught.value.field == "effective_on"


def test_a_cancelled_contract_is_neither_renewed_amended_nor_cancelled_again() -> None:
    given = on(signed_contract(), CancelContract(reason="x"))
    for command in (
        RenewContract(end_date=date(2028, 3, 31)),
        AmendContract(reason="x", terms="y"),
        CancelContract(reason="x"),
    ):
        with pytest.raises(InvalidTransition):
            on(given, command)


def test_a_contract_expires_only_after_its_end_date() -> None:
    given = signed_contract()
    on_the_last_day = datetime(2027, 3, 31, 23, 59, tzinfo=JST)
    assert on(given, ExpireContract(end_date=date(2027, 3, 31)), at=on_the_last_day) == given
    expired = on(given, ExpireContract(end_date=date(2027, 3, 31)), at=AFTER_END)[-1]
    assert isinstance(expired, ContractExpired)
    assert expired.end_date == date(2027, 3, 31)


def test_an_auto_renewal_contract_renews_for_another_term_instead_of_expiring() -> None:
    events = on(signed_contract(auto_renewal=True), ExpireContract(end_date=date(2027, 3, 31)), at=AFTER_END)
    renewed = events[-1]
    assert isinstance(renewed, ContractRenewed)
    assert (renewed.end_date, renewed.automatic, renewed.amount) == (date(2028, 3, 31), True, "50000")
    assert contract_after(events).status == "active"


def test_a_stale_expiry_changes_nothing() -> None:
    given = on(signed_contract(), RenewContract(end_date=date(2028, 3, 31)))
    assert on(given, ExpireContract(end_date=date(2027, 3, 31)), at=AFTER_END) == given
    cancelled = on(signed_contract(), CancelContract(reason="x"))
    assert on(cancelled, ExpireContract(end_date=date(2027, 3, 31)), at=AFTER_END) == cancelled


def test_an_expired_contract_is_not_renewed() -> None:
    given = on(signed_contract(), ExpireContract(end_date=date(2027, 3, 31)), at=AFTER_END)
    with pytest.raises(InvalidTransition):
        on(given, RenewContract(end_date=date(2028, 3, 31)), at=AFTER_END)


def test_terms_of_whole_months_renew_by_months_and_others_by_days() -> None:
    assert next_term_end(date(2027, 4, 1), date(2028, 3, 31)) == date(2029, 3, 31)
    assert next_term_end(date(2026, 1, 31), date(2026, 2, 27)) == date(2026, 3, 27)  # Jan 31 + 1 month = Feb 28
    assert next_term_end(date(2026, 2, 1), date(2026, 2, 28)) == date(2026, 3, 31)
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
