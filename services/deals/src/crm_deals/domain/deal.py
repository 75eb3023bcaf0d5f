"""The deal aggregate (商談, stream deal-<uuid>): state, decide and evolve."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Literal, assert_never
from uuid import UUID

from crm_schemas.base import DomainEvent
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
from crm_deals.domain.customers import CustomerStanding, check_customer
from crm_deals.domain.errors import AlreadyExists, DomainError, InvalidTransition, NotFound
from crm_deals.domain.money import ZERO, check_amount, parse, text, today
from crm_deals.domain.pipeline import DEFAULT_PIPELINES, OUTCOMES, Pipeline, Pipelines

DealStatus = Literal["open", "won", "lost"]

Command = (
    MoveDealStage
    | ReviseDealAmount
    | ReviseCloseDate
    | ChangeDealOwner
    | SetNextAction
    | CompleteNextAction
    | WinDeal
    | LoseDeal
    | ReopenDeal
)


@dataclass(frozen=True)
class NextAction:
    """What is to be done next on the deal, and by when."""

    id: UUID
    action: str
    due_on: date | None


@dataclass(frozen=True)
class StageMove:
    """One recorded move through the pipeline (including won and lost)."""

    stage: str
    at: datetime


@dataclass(frozen=True)
class Deal:
    """What the write side knows of a deal."""

    id: UUID
    opened: bool = False
    customer_id: UUID | None = None
    title: str = ""
    owner: str = ""
    team: str | None = None
    contact_person_id: UUID | None = None
    amount: Decimal = ZERO
    currency: str = "JPY"
    expected_close_date: date | None = None
    source: str | None = None
    pipeline: str = "default"
    stage: str = ""
    status: DealStatus = "open"
    closed_from: str | None = None
    closed_on: date | None = None
    won_amount: Decimal | None = None
    lost_reason: str | None = None
    competitor: str | None = None
    next_action: NextAction | None = None
    actions_done: tuple[NextAction, ...] = ()
    moves: tuple[StageMove, ...] = ()
    opened_at: datetime | None = None
    version: int = 0


def _pipeline(name: str, pipelines: Pipelines) -> Pipeline:
    found = pipelines.get(name)
    if found is None:
        raise DomainError(f"unknown pipeline {name!r}; known: {', '.join(sorted(pipelines))}", field="pipeline")
    return found


def _stage_of(stage: str, pipeline: Pipeline) -> str:
    if stage in OUTCOMES:
        raise DomainError(f"{stage} is an outcome, not a stage: use POST /deals/{{id}}/{stage}", field="stage")
    if stage not in pipeline.stages:
        raise DomainError(
            f"unknown stage {stage!r} in pipeline {pipeline.name}; stages: {', '.join(pipeline.stages)}", field="stage"
        )
    return stage


def _opened(state: Deal) -> UUID:
    if not state.opened or state.customer_id is None:
        raise NotFound(f"deal {state.id} does not exist", field="id")
    return state.customer_id


def _open(state: Deal, doing: str) -> UUID:
    cid = _opened(state)
    if state.status != "open":
        raise InvalidTransition(f"deal {state.id} is {state.status}; reopen it before {doing}", field="id")
    return cid


def _currency(given: str | None, state: Deal) -> str:
    if given is not None and given != state.currency:
        raise DomainError(f"the deal is in {state.currency}, not {given}", field="currency")
    return state.currency


def decide_open(
    command: OpenDeal, state: Deal, customer: CustomerStanding, now: datetime, pipelines: Pipelines = DEFAULT_PIPELINES
) -> list[DomainEvent]:
    """The events of opening a deal for a customer the deals service knows, or a DomainError."""
    if state.opened:
        raise AlreadyExists(f"deal {state.id} already exists", field="id")
    cid = check_customer(customer, command.contact_person_id)
    pipeline = _pipeline(command.pipeline, pipelines)
    amount = check_amount(command.amount, command.currency, "amount")
    return [
        DealOpened(
            customer_id=cid,
            occurred_at=now,
            deal_id=state.id,
            title=command.title,
            owner=command.owner,
            team=command.team,
            contact_person_id=command.contact_person_id,
            amount=text(amount, command.currency),
            currency=command.currency,
            expected_close_date=command.expected_close_date,
            source=command.source,
            pipeline=pipeline.name,
            stage=pipeline.first,
        )
    ]


def decide(command: Command, state: Deal, now: datetime, pipelines: Pipelines = DEFAULT_PIPELINES) -> list[DomainEvent]:
    """The events a command produces on a deal, or a DomainError."""
    did = state.id
    match command:
        case MoveDealStage():
            cid = _open(state, "moving its stage")
            stage = _stage_of(command.stage, _pipeline(state.pipeline, pipelines))
            if stage == state.stage:
                return []
            return [
                DealStageChanged(customer_id=cid, occurred_at=now, deal_id=did, stage=stage, previous_stage=state.stage)
            ]
        case ReviseDealAmount():
            cid = _open(state, "revising its amount")
            currency = _currency(command.currency, state)
            amount = check_amount(command.amount, currency, "amount")
            if amount == state.amount:
                return []
            return [
                DealAmountRevised(
                    customer_id=cid,
                    occurred_at=now,
                    deal_id=did,
                    amount=text(amount, currency),
                    previous_amount=text(state.amount, currency),
                    currency=currency,
                    reason=command.reason,
                )
            ]
        case ReviseCloseDate():
            cid = _open(state, "revising its close date")
            if command.expected_close_date == state.expected_close_date:
                return []
            return [
                DealCloseDateRevised(
                    customer_id=cid,
                    occurred_at=now,
                    deal_id=did,
                    expected_close_date=command.expected_close_date,
                    previous_close_date=state.expected_close_date,
                )
            ]
        case ChangeDealOwner():
            cid = _opened(state)
            team = command.team if "team" in command.model_fields_set else state.team
            if (command.owner, team) == (state.owner, state.team):
                return []
            return [
                DealOwnerChanged(
                    customer_id=cid,
                    occurred_at=now,
                    deal_id=did,
                    owner=command.owner,
                    team=team,
                    previous_owner=state.owner,
                    previous_team=state.team,
                )
            ]
        case SetNextAction():
            cid = _open(state, "planning a next action")
            if command.action_id is None:
                raise DomainError("the service assigns action_id before deciding", field="action_id")
            if any(done.id == command.action_id for done in state.actions_done):
                raise InvalidTransition(f"next action {command.action_id} is already done", field="action_id")
            current = state.next_action
            if current is not None and (current.id, current.action, current.due_on) == (
                command.action_id,
                command.action,
                command.due_on,
            ):
                return []
            return [
                DealNextActionSet(
                    customer_id=cid,
                    occurred_at=now,
                    deal_id=did,
                    action_id=command.action_id,
                    action=command.action,
                    due_on=command.due_on,
                )
            ]
        case CompleteNextAction():
            cid = _opened(state)
            if any(done.id == command.action_id for done in state.actions_done):
                return []
            if state.next_action is None or state.next_action.id != command.action_id:
                raise NotFound(f"{command.action_id} is not the deal's current next action", field="action_id")
            return [
                DealNextActionDone(
                    customer_id=cid,
                    occurred_at=now,
                    deal_id=did,
                    action_id=command.action_id,
                    action=state.next_action.action,
                )
            ]
        case WinDeal():
            cid = _opened(state)
            if state.status != "open":
                raise InvalidTransition(f"deal {did} is already {state.status}; reopen it first", field="id")
            currency = _currency(command.currency, state)
            amount = check_amount(command.amount if command.amount is not None else state.amount, currency, "amount")
            return [
                DealWon(
                    customer_id=cid,
                    occurred_at=now,
                    deal_id=did,
                    amount=text(amount, currency),
                    currency=currency,
                    previous_stage=state.stage,
                    won_on=command.won_on or today(now),
                )
            ]
        case LoseDeal():
            cid = _opened(state)
            if state.status != "open":
                raise InvalidTransition(f"deal {did} is already {state.status}; reopen it first", field="id")
            return [
                DealLost(
                    customer_id=cid,
                    occurred_at=now,
                    deal_id=did,
                    reason=command.reason,
                    competitor=command.competitor,
                    previous_stage=state.stage,
                    lost_on=command.lost_on or today(now),
                )
            ]
        case ReopenDeal():
            cid = _opened(state)
            if state.status == "open":
                raise InvalidTransition(f"deal {did} is open; only a won or lost deal can be reopened", field="id")
            pipeline = _pipeline(state.pipeline, pipelines)
            wanted = command.stage or state.closed_from
            if wanted is None or (command.stage is None and wanted not in pipeline.stages):
                wanted = pipeline.first  # the stage it closed from was dropped from the pipeline since
            return [
                DealReopened(
                    customer_id=cid,
                    occurred_at=now,
                    deal_id=did,
                    stage=_stage_of(wanted, pipeline),
                    previous_outcome=state.status,
                    reason=command.reason,
                )
            ]
        case _:
            assert_never(command)


def _apply(state: Deal, event: DomainEvent) -> Deal:
    at = event.occurred_at
    match event:
        case DealOpened():
            return replace(
                state,
                opened=True,
                customer_id=event.customer_id,
                title=event.title,
                owner=event.owner,
                team=event.team,
                contact_person_id=event.contact_person_id,
                amount=parse(event.amount),
                currency=event.currency,
                expected_close_date=event.expected_close_date,
                source=event.source,
                pipeline=event.pipeline,
                stage=event.stage,
                moves=(StageMove(event.stage, at),),
                opened_at=at,
            )
        case DealStageChanged():
            return replace(state, stage=event.stage, moves=(*state.moves, StageMove(event.stage, at)))
        case DealAmountRevised():
            return replace(state, amount=parse(event.amount))
        case DealCloseDateRevised():
            return replace(state, expected_close_date=event.expected_close_date)
        case DealOwnerChanged():
            return replace(state, owner=event.owner, team=event.team)
        case DealNextActionSet():
            return replace(state, next_action=NextAction(event.action_id, event.action, event.due_on))
        case DealNextActionDone():
            done = state.next_action or NextAction(event.action_id, event.action, None)
            return replace(state, next_action=None, actions_done=(*state.actions_done, done))
        case DealWon():
            return replace(
                state,
                status="won",
                stage="won",
                closed_from=event.previous_stage,
                closed_on=event.won_on,
                won_amount=parse(event.amount),
                moves=(*state.moves, StageMove("won", at)),
            )
        case DealLost():
            return replace(
                state,
                status="lost",
                stage="lost",
                closed_from=event.previous_stage,
                closed_on=event.lost_on,
                lost_reason=event.reason,
                competitor=event.competitor,
                moves=(*state.moves, StageMove("lost", at)),
            )
        case DealReopened():
            return replace(
                state,
                status="open",
                stage=event.stage,
                closed_from=None,
                closed_on=None,
                won_amount=None,
                lost_reason=None,
                competitor=None,
                moves=(*state.moves, StageMove(event.stage, at)),
            )
        case _:
            return state


def evolve(state: Deal, event: DomainEvent) -> Deal:
    """The deal after an event (unknown event types only advance the version)."""
    return replace(_apply(state, event), version=state.version + 1)


def initial(deal_id: UUID) -> Deal:
    """A deal before its first event."""
    return Deal(id=deal_id)


def stream_id(deal_id: UUID) -> str:
    """The deal's stream name."""
    return f"deal-{deal_id}"
