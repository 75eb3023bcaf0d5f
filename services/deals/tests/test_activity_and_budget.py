"""Activities (communication history) and customer budgets: given/when/then."""

from __future__ import annotations

from datetime import timedelta

import pytest
from crm_deals.domain import activity, budget
from crm_deals.domain.commands import RecordActivity, SetBudget
from crm_deals.domain.errors import CustomerWasMerged, DomainError, UnknownContactPerson
from crm_eventstore.ids import new_id
from crm_schemas.deals import ActivityRecorded, CustomerBudgetSet

from .builders import NOW, deal_after, fold, known, opened_deal


def record(**overrides: object) -> RecordActivity:
    body = {"kind": "visit", "subject": "定例訪問", "staff": "tanaka.sales", **overrides}
    return RecordActivity.model_validate(body)


def test_an_activity_on_a_customer_is_recorded_when_it_happened() -> None:
    cid, person = new_id(), new_id()
    at = NOW - timedelta(days=2)
    command = record(
        customer_id=str(cid),
        contact_person_id=str(person),
        participants=["佐藤 花子", "田中"],
        content="新製品の説明",
        outcome="見積依頼あり",
        occurred_at=at.isoformat(),
    )
    [event] = activity.decide_record(command, activity.initial(new_id()), known(cid, [person]), None, NOW)
    assert isinstance(event, ActivityRecorded)
    assert (event.customer_id, event.kind, event.occurred_at, event.participants) == (
        cid,
        "visit",
        at,
        ["佐藤 花子", "田中"],
    )
    assert set(ActivityRecorded.personal_fields()) >= {"subject", "content", "outcome", "participants"}


def test_an_activity_on_a_deal_names_the_deal() -> None:
    given = opened_deal()
    state = deal_after(given)
    cid = given[0].customer_id
    [event] = activity.decide_record(
        record(customer_id=str(cid), deal_id=str(state.id), kind="online_meeting"),
        activity.initial(new_id()),
        known(cid),
        state,
        NOW,
    )
    assert isinstance(event, ActivityRecorded)
    assert event.deal_id == state.id


def test_an_activity_on_another_customers_deal_is_rejected_naming_deal_id() -> None:
    state = deal_after(opened_deal())
    cid = new_id()
    with pytest.raises(DomainError) as caught:
        activity.decide_record(
            record(customer_id=str(cid), deal_id=str(state.id)), activity.initial(new_id()), known(cid), state, NOW
        )
    assert caught.value.field == "deal_id"


def test_an_activity_in_the_future_is_rejected() -> None:
    cid = new_id()
    command = record(customer_id=str(cid), occurred_at=(NOW + timedelta(hours=1)).isoformat())
    with pytest.raises(DomainError) as caught:
        activity.decide_record(command, activity.initial(new_id()), known(cid), None, NOW)
    assert caught.value.field == "occurred_at"


def test_an_activity_with_someone_who_is_not_a_contact_person_is_rejected() -> None:
    cid = new_id()
    with pytest.raises(UnknownContactPerson):
        activity.decide_record(
            record(customer_id=str(cid), contact_person_id=str(new_id())),
            activity.initial(new_id()),
            known(cid),
            None,
            NOW,
        )


def test_an_activity_for_a_merged_customer_points_at_the_survivor() -> None:
    cid, survivor = new_id(), new_id()
    with pytest.raises(CustomerWasMerged) as caught:
        activity.decide_record(
            record(customer_id=str(cid)), activity.initial(new_id()), known(cid, [], survivor), None, NOW
        )
    assert caught.value.extra["merged_into"] == str(survivor)


def set_budget(year: int, amount: str, currency: str = "JPY") -> SetBudget:
    return SetBudget.model_validate({"fiscal_year": year, "amount": amount, "currency": currency})


def test_a_budget_is_set_and_revised_per_fiscal_year() -> None:
    cid = new_id()
    state = budget.initial(cid)
    [first] = budget.decide_set(set_budget(2026, "5000000"), state, known(cid), NOW)
    state = fold(budget.evolve, state, [first])
    [revised] = budget.decide_set(set_budget(2026, "6000000"), state, known(cid), NOW)
    assert isinstance(revised, CustomerBudgetSet)
    assert (revised.fiscal_year, revised.previous_amount, revised.amount) == (2026, "5000000", "6000000")
    state = fold(budget.evolve, state, [revised])
    assert budget.decide_set(set_budget(2026, "6000000"), state, known(cid), NOW) == []
    [other_year] = budget.decide_set(set_budget(2027, "1"), state, known(cid), NOW)
    assert isinstance(other_year, CustomerBudgetSet)
    assert other_year.previous_amount is None


def test_a_budget_in_another_currency_than_that_years_is_rejected_naming_currency() -> None:
    cid = new_id()
    state = budget.initial(cid)
    events = budget.decide_set(set_budget(2026, "5000000"), state, known(cid), NOW)
    state = fold(budget.evolve, state, events)
    with pytest.raises(DomainError) as caught:
        budget.decide_set(set_budget(2026, "50000", "USD"), state, known(cid), NOW)
    assert caught.value.field == "currency"


@pytest.mark.parametrize("value", [1.5, "1,000", "1e3", "abc", True])
def test_money_is_a_decimal_string_never_a_float(value: object) -> None:
    with pytest.raises(ValueError, match="decimal string"):
        SetBudget.model_validate({"fiscal_year": 2026, "amount": value})


def test_an_integer_amount_is_taken_exactly() -> None:
    assert str(SetBudget.model_validate({"fiscal_year": 2026, "amount": 5000000}).amount) == "5000000"


def test_commands_refuse_unknown_fields() -> None:
    with pytest.raises(ValueError, match="extra"):
        SetBudget.model_validate({"fiscal_year": 2026, "amount": "1", "colour": "red"})


def test_the_json_schema_of_money_is_a_string() -> None:
    schema = SetBudget.model_json_schema()
    assert schema["properties"]["amount"]["type"] == "string"
