"""The deal decider: given events, when a command, then events or a rejection."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from crm_deals.domain import deal
from crm_deals.domain.commands import (
    ChangeDealOwner,
    CompleteNextAction,
    LoseDeal,
    MoveDealStage,
    OpenDeal,
    ReopenDeal,
    ReviseCloseDate,
    ReviseDealAmount,
    SetNextAction,
    WinDeal,
)
from crm_deals.domain.customers import CustomerStanding
from crm_deals.domain.errors import (
    AlreadyExists,
    CustomerWasMerged,
    DomainError,
    InvalidTransition,
    NotFound,
    UnknownContactPerson,
    UnknownCustomer,
)
from crm_deals.domain.pipeline import Pipeline
from crm_eventstore.ids import new_id
from crm_schemas.deals import (
    DealAmountRevised,
    DealCloseDateRevised,
    DealLost,
    DealNextActionDone,
    DealNextActionSet,
    DealOpened,
    DealOwnerChanged,
    DealReopened,
    DealStageChanged,
    DealWon,
)

from .builders import NOW, deal_after, deal_body, known, on_deal, opened_deal


def open_command(**overrides: Any) -> OpenDeal:
    return OpenDeal.model_validate(deal_body(**overrides))


# --- opening -------------------------------------------------------------------------------------


def test_a_deal_opens_at_the_first_stage_of_the_default_pipeline() -> None:
    cid, person = new_id(), new_id()
    command = open_command(customer_id=str(cid), contact_person_id=str(person), source="展示会")
    [event] = deal.decide_open(command, deal.initial(new_id()), known(cid, [person]), NOW)
    assert isinstance(event, DealOpened)
    assert (event.customer_id, event.stage, event.pipeline) == (cid, "lead", "default")
    assert (event.amount, event.currency, event.source) == ("12000000", "JPY", "展示会")
    assert event.expected_close_date == date(2026, 6, 30)


def test_a_deal_opens_at_the_first_stage_of_a_configured_pipeline() -> None:
    cid = new_id()
    pipelines = {"renewal": Pipeline("renewal", ("proposal", "negotiation"))}
    [event] = deal.decide_open(
        open_command(customer_id=str(cid), pipeline="renewal"), deal.initial(new_id()), known(cid), NOW, pipelines
    )
    assert isinstance(event, DealOpened)
    assert (event.pipeline, event.stage) == ("renewal", "proposal")


def test_an_unknown_pipeline_is_rejected() -> None:
    cid = new_id()
    with pytest.raises(DomainError) as caught:
        deal.decide_open(open_command(customer_id=str(cid), pipeline="nope"), deal.initial(new_id()), known(cid), NOW)
    assert caught.value.field == "pipeline"


def test_a_deal_for_an_unknown_customer_is_rejected_naming_customer_id() -> None:
    cid = new_id()
    with pytest.raises(UnknownCustomer) as caught:
        deal.decide_open(open_command(customer_id=str(cid)), deal.initial(new_id()), CustomerStanding(cid, False), NOW)
    assert caught.value.field == "customer_id"


def test_a_deal_for_a_merged_customer_points_at_the_survivor() -> None:
    cid, survivor = new_id(), new_id()
    with pytest.raises(CustomerWasMerged) as caught:
        deal.decide_open(open_command(customer_id=str(cid)), deal.initial(new_id()), known(cid, [], survivor), NOW)
    assert caught.value.extra["merged_into"] == str(survivor)


def test_a_counterpart_who_is_not_a_contact_person_of_the_customer_is_rejected() -> None:
    cid = new_id()
    with pytest.raises(UnknownContactPerson) as caught:
        deal.decide_open(
            open_command(customer_id=str(cid), contact_person_id=str(new_id())), deal.initial(new_id()), known(cid), NOW
        )
    assert caught.value.field == "contact_person_id"


def test_a_yen_amount_with_sen_is_rejected() -> None:
    cid = new_id()
    with pytest.raises(DomainError) as caught:
        deal.decide_open(open_command(customer_id=str(cid), amount="100.5"), deal.initial(new_id()), known(cid), NOW)
    assert caught.value.field == "amount"


def test_a_dollar_deal_keeps_its_cents() -> None:
    cid = new_id()
    [event] = deal.decide_open(
        open_command(customer_id=str(cid), amount="1999.5", currency="USD"), deal.initial(new_id()), known(cid), NOW
    )
    assert isinstance(event, DealOpened)
    assert (event.amount, event.currency) == ("1999.50", "USD")


def test_opening_the_same_deal_twice_is_a_conflict() -> None:
    given = opened_deal()
    with pytest.raises(AlreadyExists):
        deal.decide_open(
            open_command(customer_id=str(given[0].customer_id)), deal_after(given), known(given[0].customer_id), NOW
        )


# --- stages ----------------------------------------------------------------------------------


def test_every_stage_move_is_recorded_with_the_previous_stage() -> None:
    events = on_deal(opened_deal(), MoveDealStage(stage="qualified"), MoveDealStage(stage="proposal"))
    moves = [e for e in events if isinstance(e, DealStageChanged)]
    assert [(m.previous_stage, m.stage) for m in moves] == [("lead", "qualified"), ("qualified", "proposal")]
    assert [m.stage for m in deal_after(events).moves] == ["lead", "qualified", "proposal"]


def test_a_deal_may_move_back_a_stage() -> None:
    events = on_deal(opened_deal(), MoveDealStage(stage="negotiation"), MoveDealStage(stage="proposal"))
    assert deal_after(events).stage == "proposal"


def test_moving_to_the_current_stage_changes_nothing() -> None:
    assert on_deal(opened_deal(), MoveDealStage(stage="lead"))[1:] == []


def test_an_unknown_stage_is_rejected_naming_stage() -> None:
    with pytest.raises(DomainError) as caught:
        on_deal(opened_deal(), MoveDealStage(stage="closing"))
    assert caught.value.field == "stage"
    assert "lead, qualified, proposal, negotiation" in str(caught.value)


def test_won_is_not_a_stage_to_move_to() -> None:
    with pytest.raises(DomainError) as caught:
        on_deal(opened_deal(), MoveDealStage(stage="won"))
    assert caught.value.field == "stage"


def test_moving_a_won_deals_stage_is_a_conflict() -> None:
    given = on_deal(opened_deal(), WinDeal())
    with pytest.raises(InvalidTransition):
        on_deal(given, MoveDealStage(stage="proposal"))


def test_commands_on_a_deal_that_was_never_opened_are_not_found() -> None:
    with pytest.raises(NotFound):
        deal.decide(MoveDealStage(stage="qualified"), deal.initial(new_id()), NOW)


# --- revisions -------------------------------------------------------------------------------


def test_revising_the_amount_records_old_and_new() -> None:
    [event] = on_deal(opened_deal(), ReviseDealAmount(amount=Decimal(15000000), reason="追加要件"))[1:]
    assert isinstance(event, DealAmountRevised)
    assert (event.previous_amount, event.amount, event.currency) == ("12000000", "15000000", "JPY")


def test_revising_the_amount_in_another_currency_is_rejected_naming_currency() -> None:
    with pytest.raises(DomainError) as caught:
        on_deal(opened_deal(), ReviseDealAmount(amount=Decimal(100000), currency="USD"))
    assert caught.value.field == "currency"


def test_revising_to_the_same_amount_changes_nothing() -> None:
    assert on_deal(opened_deal(), ReviseDealAmount(amount=Decimal("12000000")))[1:] == []


def test_revising_the_close_date_records_old_and_new() -> None:
    [event] = on_deal(opened_deal(), ReviseCloseDate(expected_close_date=date(2026, 9, 30)))[1:]
    assert isinstance(event, DealCloseDateRevised)
    assert (event.previous_close_date, event.expected_close_date) == (date(2026, 6, 30), date(2026, 9, 30))


def test_a_lost_deal_cannot_have_its_amount_revised() -> None:
    given = on_deal(opened_deal(), LoseDeal(reason="価格"))
    with pytest.raises(InvalidTransition):
        on_deal(given, ReviseDealAmount(amount=Decimal(1)))


def test_handing_the_deal_to_another_owner_records_both() -> None:
    [event] = on_deal(opened_deal(team="sales-tokyo"), ChangeDealOwner(owner="suzuki.sales", team="sales-osaka"))[1:]
    assert isinstance(event, DealOwnerChanged)
    assert (event.previous_owner, event.previous_team, event.owner, event.team) == (
        "tanaka.sales",
        "sales-tokyo",
        "suzuki.sales",
        "sales-osaka",
    )


def test_changing_the_owner_without_a_team_keeps_the_team() -> None:
    events = on_deal(opened_deal(team="sales-tokyo"), ChangeDealOwner(owner="suzuki.sales"))
    assert (deal_after(events).owner, deal_after(events).team) == ("suzuki.sales", "sales-tokyo")


# --- next action ---------------------------------------------------------------------------------


def test_a_next_action_is_set_and_done() -> None:
    action = new_id()
    events = on_deal(
        opened_deal(),
        SetNextAction(action_id=action, action="見積書を送付", due_on=date(2026, 4, 7)),
        CompleteNextAction(action_id=action),
    )
    set_, done = events[1:]
    assert isinstance(set_, DealNextActionSet)
    assert (set_.action, set_.due_on) == ("見積書を送付", date(2026, 4, 7))
    assert isinstance(done, DealNextActionDone)
    assert done.action == "見積書を送付"
    state = deal_after(events)
    assert state.next_action is None
    assert [a.id for a in state.actions_done] == [action]


def test_completing_an_action_that_is_not_the_current_one_is_not_found() -> None:
    given = on_deal(opened_deal(), SetNextAction(action_id=new_id(), action="電話"))
    with pytest.raises(NotFound) as caught:
        on_deal(given, CompleteNextAction(action_id=new_id()))
    assert caught.value.field == "action_id"


def test_completing_a_done_action_again_changes_nothing() -> None:
    action = new_id()
    given = on_deal(opened_deal(), SetNextAction(action_id=action, action="電話"), CompleteNextAction(action_id=action))
    assert on_deal(given, CompleteNextAction(action_id=action)) == given


def test_a_closed_deal_gets_no_next_action() -> None:
    given = on_deal(opened_deal(), WinDeal())
    with pytest.raises(InvalidTransition):
        on_deal(given, SetNextAction(action_id=new_id(), action="電話"))


# --- won, lost, reopened ---------------------------------------------------------------------------


def test_winning_records_the_final_amount_the_stage_it_was_won_from_and_the_day() -> None:
    events = on_deal(opened_deal(), MoveDealStage(stage="negotiation"), WinDeal(amount=Decimal(11500000)))
    won = events[-1]
    assert isinstance(won, DealWon)
    assert (won.amount, won.currency, won.previous_stage, won.won_on) == (
        "11500000",
        "JPY",
        "negotiation",
        date(2026, 4, 1),
    )
    state = deal_after(events)
    assert (state.status, state.won_amount) == ("won", Decimal(11500000))


def test_winning_without_an_amount_takes_the_deals_amount() -> None:
    won = on_deal(opened_deal(), WinDeal())[-1]
    assert isinstance(won, DealWon)
    assert won.amount == "12000000"


def test_winning_in_another_currency_is_rejected_naming_currency() -> None:
    with pytest.raises(DomainError) as caught:
        on_deal(opened_deal(), WinDeal(amount=Decimal(100), currency="EUR"))
    assert caught.value.field == "currency"


def test_winning_a_lost_deal_is_a_conflict() -> None:
    given = on_deal(opened_deal(), LoseDeal(reason="予算凍結"))
    with pytest.raises(InvalidTransition):
        on_deal(given, WinDeal())


def test_winning_a_won_deal_again_is_a_conflict() -> None:
    with pytest.raises(InvalidTransition):
        on_deal(opened_deal(), WinDeal(), WinDeal())


def test_losing_records_reason_competitor_and_stage() -> None:
    events = on_deal(
        opened_deal(), MoveDealStage(stage="proposal"), LoseDeal(reason="価格で競合に負けた", competitor="A社")
    )
    lost = events[-1]
    assert isinstance(lost, DealLost)
    assert (lost.reason, lost.competitor, lost.previous_stage) == ("価格で競合に負けた", "A社", "proposal")


def test_losing_a_won_deal_is_a_conflict() -> None:
    with pytest.raises(InvalidTransition):
        on_deal(opened_deal(), WinDeal(), LoseDeal(reason="x"))


def test_reopening_a_lost_deal_returns_it_to_the_stage_it_was_lost_from() -> None:
    events = on_deal(
        opened_deal(), MoveDealStage(stage="negotiation"), LoseDeal(reason="予算凍結"), ReopenDeal(reason="予算復活")
    )
    reopened = events[-1]
    assert isinstance(reopened, DealReopened)
    assert (reopened.stage, reopened.previous_outcome) == ("negotiation", "lost")
    state = deal_after(events)
    assert (state.status, state.stage, state.lost_reason) == ("open", "negotiation", None)


def test_reopening_at_a_named_stage_and_winning_again() -> None:
    events = on_deal(opened_deal(), WinDeal(), ReopenDeal(stage="proposal"), WinDeal(amount=Decimal(9000000)))
    assert deal_after(events).won_amount == Decimal(9000000)
    assert [m.stage for m in deal_after(events).moves] == ["lead", "won", "proposal", "won"]


def test_reopening_an_open_deal_is_a_conflict() -> None:
    with pytest.raises(InvalidTransition):
        on_deal(opened_deal(), ReopenDeal())


def test_reopening_at_an_unknown_stage_is_rejected_naming_stage() -> None:
    with pytest.raises(DomainError) as caught:
        on_deal(opened_deal(), WinDeal(), ReopenDeal(stage="closing"))
    assert caught.value.field == "stage"
