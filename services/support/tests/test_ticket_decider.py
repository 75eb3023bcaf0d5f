"""The ticket aggregate: given events, when a command, then events or a rejection. No database, no mocks."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from crm_eventstore.ids import new_id
from crm_schemas.support import (
    TicketAssigned,
    TicketClosed,
    TicketEscalated,
    TicketLinked,
    TicketNoteAdded,
    TicketOpened,
    TicketReopened,
    TicketReplied,
    TicketResolved,
    TicketSatisfactionRated,
    TicketStatusChanged,
)
from crm_support.domain.commands import (
    AddNote,
    AssignTicket,
    ChangeStatus,
    CloseTicket,
    EscalateTicket,
    LinkTicket,
    OpenTicket,
    RecordSatisfaction,
    RecordSlaBreach,
    ReopenTicket,
    ReplyToCustomer,
    ResolveTicket,
)
from crm_support.domain.ticket import (
    AlreadyRated,
    Command,
    ComplaintAnalysisMissing,
    CustomerStanding,
    CustomerWasMerged,
    DomainError,
    InvalidTransition,
    Ticket,
    TicketAlreadyExists,
    TicketIsClosed,
    TicketNotFound,
    UnknownContactPerson,
    UnknownCustomer,
    decide,
    decide_open,
    fold,
    stream_id,
)
from pydantic import ValidationError

from .builders import HOUR, NOW, RESOLVED, history, known, open_body, open_command, opened, then, ticket_after

LATER = NOW + HOUR


def rejected_fields(model: type[Any], body: dict[str, Any]) -> list[str]:
    """The fields a command body is rejected for at the edge."""
    with pytest.raises(ValidationError) as error:
        model.model_validate(body)
    return [".".join(str(part) for part in e["loc"]) for e in error.value.errors()]


def resolved_complaint() -> list[Any]:
    given = opened(**_complaint())
    return history(
        given,
        (ResolveTicket(resolution="代替品を即日発送", root_cause="在庫引当の誤り", prevention="引当を二重確認"), LATER),
    )


def _complaint() -> dict[str, Any]:
    return {"kind": "complaint", "channel": "email", "priority": "high", "category": "delivery"}


# --- opening ----------------------------------------------------------------------------------


def test_opening_an_inquiry_for_a_known_customer_emits_ticket_opened_with_its_details() -> None:
    tid, cid, person = new_id(), new_id(), new_id()
    command = open_command(cid, contact_person_id=str(person), product="PC-X1", order_id="ORD-1")

    [event] = decide_open(command, Ticket(id=tid), known(cid, [person]), NOW)

    assert isinstance(event, TicketOpened)
    assert (event.ticket_id, event.customer_id, event.occurred_at) == (tid, cid, NOW)
    assert (event.kind, event.channel, event.category, event.priority) == ("inquiry", "phone", "billing", "normal")
    assert event.subject == "請求書の再発行について"
    assert event.contact_person_id == person
    assert (event.order_id, event.product) == ("ORD-1", "PC-X1")
    assert TicketOpened.personal_fields() == {"subject", "content"}


def test_the_opened_ticket_is_new_and_keeps_its_links() -> None:
    related, deal = new_id(), new_id()
    ticket = ticket_after(opened(related_ticket_id=str(related), deal_id=str(deal), order_id="ORD-7"))
    assert ticket.opened
    assert ticket.status == "new"
    assert ticket.version == 1
    assert ticket.links == (("ticket", str(related)), ("deal", str(deal)), ("order", "ORD-7"))
    assert stream_id(ticket.id) == f"ticket-{ticket.id}"


def test_opening_for_a_customer_support_does_not_know_is_rejected_naming_customer_id() -> None:
    cid = new_id()
    with pytest.raises(UnknownCustomer) as error:
        decide_open(open_command(cid), Ticket(id=new_id()), CustomerStanding(cid, known=False), NOW)
    assert (error.value.status, error.value.field) == (422, "customer_id")


def test_opening_for_a_merged_away_customer_is_rejected_pointing_to_the_survivor() -> None:
    cid, survivor = new_id(), new_id()
    with pytest.raises(CustomerWasMerged) as error:
        decide_open(open_command(cid), Ticket(id=new_id()), known(cid, survivor_id=survivor), NOW)
    assert (error.value.status, error.value.field) == (422, "customer_id")
    assert error.value.extra == {"survivor_id": str(survivor)}


def test_opening_with_a_contact_person_of_another_customer_is_rejected() -> None:
    cid = new_id()
    with pytest.raises(UnknownContactPerson) as error:
        decide_open(open_command(cid, contact_person_id=str(new_id())), Ticket(id=new_id()), known(cid), NOW)
    assert error.value.field == "contact_person_id"


def test_opening_a_ticket_id_twice_is_a_conflict() -> None:
    given = opened()
    ticket = ticket_after(given)
    assert ticket.customer_id is not None
    with pytest.raises(TicketAlreadyExists) as error:
        decide_open(open_command(ticket.customer_id), ticket, known(ticket.customer_id), NOW)
    assert error.value.status == 409


def test_a_ticket_received_in_the_future_is_rejected() -> None:
    cid = new_id()
    command = open_command(cid, received_at=(NOW + HOUR).isoformat())
    with pytest.raises(DomainError) as error:
        decide_open(command, Ticket(id=new_id()), known(cid), NOW)
    assert error.value.field == "received_at"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"kind": "question"}, "kind"),
        ({"channel": "fax"}, "channel"),
        ({"priority": "asap"}, "priority"),
        ({"subject": ""}, "subject"),
        ({"content": "   "}, "content"),
        ({"customer_id": "not-a-uuid"}, "customer_id"),
        ({"received_at": "2026-04-01T10:00:00"}, "received_at"),
        ({"mood": "angry"}, "mood"),
    ],
    ids=["kind", "channel", "priority", "empty-subject", "blank-content", "customer-id", "naive-time", "unknown"],
)
def test_an_invalid_open_command_names_the_field(overrides: dict[str, Any], field: str) -> None:
    assert rejected_fields(OpenTicket, open_body(**overrides)) == [field]


def test_a_missing_subject_is_named() -> None:
    body = open_body()
    del body["subject"]
    assert rejected_fields(OpenTicket, body) == ["subject"]


# --- commands on a ticket that does not exist ----------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        AssignTicket(assignee="suzuki"),
        ReplyToCustomer(content="x"),
        AddNote(content="x"),
        EscalateTicket(level=1, reason="x"),
        ChangeStatus(status="open"),
        RESOLVED,
        ReopenTicket(),
        CloseTicket(),
        RecordSatisfaction(score=5),
        LinkTicket(order_id="o"),
        RecordSlaBreach(target="resolution", due_at=NOW),
    ],
    ids=lambda c: type(c).__name__,
)
def test_every_command_on_a_ticket_never_opened_is_not_found(command: Command) -> None:
    with pytest.raises(TicketNotFound) as error:
        decide(command, Ticket(id=new_id()), NOW)
    assert error.value.status == 404


# --- assigning --------------------------------------------------------------------------------


def test_the_first_assignment_assigns_and_moves_a_new_ticket_to_open() -> None:
    given = opened()
    assigned, moved = then(given, AssignTicket(assignee="suzuki.support", team="cs-tokyo"), LATER)
    assert isinstance(assigned, TicketAssigned)
    assert (assigned.assignee, assigned.team, assigned.previous_assignee) == ("suzuki.support", "cs-tokyo", None)
    assert isinstance(moved, TicketStatusChanged)
    assert (moved.previous_status, moved.status) == ("new", "open")


def test_reassigning_records_who_had_it_and_keeps_the_team_when_only_the_assignee_changes() -> None:
    given = history(opened(), (AssignTicket(assignee="suzuki", team="cs-tokyo"), LATER))
    [event] = then(given, AssignTicket(assignee="tanaka"), LATER)
    assert isinstance(event, TicketAssigned)
    assert (event.assignee, event.team, event.previous_assignee, event.previous_team) == (
        "tanaka",
        "cs-tokyo",
        "suzuki",
        "cs-tokyo",
    )


def test_assigning_to_whoever_has_it_already_changes_nothing() -> None:
    given = history(opened(), (AssignTicket(assignee="suzuki"), LATER))
    assert then(given, AssignTicket(assignee="suzuki"), LATER) == []


def test_an_assignment_names_someone() -> None:
    assert rejected_fields(AssignTicket, {}) == [""]


# --- replies and notes ------------------------------------------------------------------------


def test_the_first_reply_meets_the_first_response_and_opens_a_new_ticket() -> None:
    given = opened()
    reply, moved = then(given, ReplyToCustomer(content="ご連絡ありがとうございます。確認いたします。"), LATER)
    assert isinstance(reply, TicketReplied)
    assert reply.first_response is True
    assert reply.channel == "phone"  # the ticket's own channel by default
    assert isinstance(moved, TicketStatusChanged)
    assert ticket_after([*given, reply, moved]).first_responded_at == LATER


def test_later_replies_are_not_first_responses_and_may_use_another_channel() -> None:
    given = history(opened(), (ReplyToCustomer(content="確認します"), LATER))
    [reply] = then(given, ReplyToCustomer(content="再発行しました", channel="email"), LATER)
    assert isinstance(reply, TicketReplied)
    assert (reply.first_response, reply.channel) == (False, "email")
    assert TicketReplied.personal_fields() == {"content"}


def test_an_internal_note_is_recorded_without_changing_the_status() -> None:
    [note] = then(opened(), AddNote(content="前回も同じ請求先変更の問い合わせあり"), LATER)
    assert isinstance(note, TicketNoteAdded)
    assert ticket_after([*opened(), note]).status == "new"


def test_notes_are_still_possible_on_a_closed_ticket_but_replies_are_not() -> None:
    closed = history(opened(), (RESOLVED, LATER), (CloseTicket(), LATER))
    assert len(then(closed, AddNote(content="事後メモ"), LATER)) == 1
    with pytest.raises(TicketIsClosed):
        then(closed, ReplyToCustomer(content="x"), LATER)


# --- escalation -------------------------------------------------------------------------------


def test_escalating_records_the_level_the_reason_and_the_team() -> None:
    [event] = then(opened(), EscalateTicket(level=2, reason="取引停止の示唆あり", team="cs-managers"), LATER)
    assert isinstance(event, TicketEscalated)
    assert (event.level, event.previous_level, event.reason, event.team) == (2, 0, "取引停止の示唆あり", "cs-managers")
    ticket = ticket_after([*opened(), event])
    assert (ticket.escalation_level, ticket.team) == (2, "cs-managers")


def test_escalating_to_the_same_or_a_lower_level_is_rejected_naming_level() -> None:
    given = history(opened(), (EscalateTicket(level=2, reason="x"), LATER))
    for level in (1, 2):
        with pytest.raises(DomainError) as error:
            then(given, EscalateTicket(level=level, reason="again"), LATER)
        assert (error.value.status, error.value.field) == (422, "level")


def test_a_resolved_ticket_is_not_escalated() -> None:
    with pytest.raises(InvalidTransition):
        then(history(opened(), (RESOLVED, LATER)), EscalateTicket(level=1, reason="x"), LATER)


def test_escalation_levels_are_one_to_three() -> None:
    assert rejected_fields(EscalateTicket, {"level": 4, "reason": "x"}) == ["level"]
    assert rejected_fields(EscalateTicket, {"level": 0, "reason": "x"}) == ["level"]
    assert rejected_fields(EscalateTicket, {"level": 1}) == ["reason"]


# --- status moves -----------------------------------------------------------------------------


def test_every_status_move_is_recorded_with_where_it_came_from() -> None:
    given = opened()
    [to_open] = then(given, ChangeStatus(status="open"), LATER)
    assert isinstance(to_open, TicketStatusChanged)
    assert (to_open.previous_status, to_open.status) == ("new", "open")
    [to_pending] = then([*given, to_open], ChangeStatus(status="pending_customer", reason="見積書待ち"), LATER)
    assert isinstance(to_pending, TicketStatusChanged)
    assert (to_pending.previous_status, to_pending.status, to_pending.reason) == (
        "open",
        "pending_customer",
        "見積書待ち",
    )


def test_moving_to_the_status_it_has_changes_nothing() -> None:
    given = history(opened(), (ChangeStatus(status="open"), LATER))
    assert then(given, ChangeStatus(status="open"), LATER) == []


def test_status_moves_cannot_resolve_or_close() -> None:
    assert rejected_fields(ChangeStatus, {"status": "resolved"}) == ["status"]
    assert rejected_fields(ChangeStatus, {"status": "closed"}) == ["status"]


def test_a_resolved_ticket_is_reopened_not_moved() -> None:
    with pytest.raises(InvalidTransition) as error:
        then(history(opened(), (RESOLVED, LATER)), ChangeStatus(status="open"), LATER)
    assert error.value.status == 409


# --- resolving --------------------------------------------------------------------------------


def test_resolving_an_inquiry_needs_only_the_resolution() -> None:
    [event] = then(opened(), RESOLVED, LATER)
    assert isinstance(event, TicketResolved)
    assert (event.previous_status, event.resolution_number, event.root_cause) == ("new", 1, None)
    ticket = ticket_after([*opened(), event])
    assert (ticket.status, ticket.resolved_at) == ("resolved", LATER)


@pytest.mark.parametrize(
    ("given_fields", "missing"),
    [
        ({}, ["root_cause", "prevention"]),
        ({"root_cause": "検品漏れ"}, ["prevention"]),
        ({"prevention": "二重検品"}, ["root_cause"]),
    ],
    ids=["both", "prevention", "root-cause"],
)
def test_resolving_a_complaint_without_root_cause_and_prevention_is_rejected_naming_them(
    given_fields: dict[str, str], missing: list[str]
) -> None:
    with pytest.raises(ComplaintAnalysisMissing) as error:
        then(opened(**_complaint()), ResolveTicket(resolution="代替品を発送", **given_fields), LATER)
    assert error.value.status == 422
    assert error.value.missing == missing


def test_a_complaint_is_resolved_with_its_root_cause_and_recurrence_prevention() -> None:
    event = resolved_complaint()[-1]
    assert isinstance(event, TicketResolved)
    assert (event.root_cause, event.prevention) == ("在庫引当の誤り", "引当を二重確認")
    assert TicketResolved.personal_fields() == {"resolution", "root_cause", "prevention"}


def test_resolving_twice_is_a_conflict() -> None:
    with pytest.raises(InvalidTransition) as error:
        then(history(opened(), (RESOLVED, LATER)), RESOLVED, LATER)
    assert error.value.status == 409


# --- reopening and closing ----------------------------------------------------------------------


def test_reopening_a_resolved_ticket_opens_it_again() -> None:
    given = history(opened(), (RESOLVED, LATER))
    [event] = then(given, ReopenTicket(reason="同じ症状が再発"), LATER + HOUR)
    assert isinstance(event, TicketReopened)
    assert (event.previous_status, event.reason) == ("resolved", "同じ症状が再発")
    assert ticket_after([*given, event]).status == "open"


def test_only_a_resolved_ticket_can_be_reopened() -> None:
    with pytest.raises(InvalidTransition):
        then(opened(), ReopenTicket(), LATER)
    closed = history(opened(), (RESOLVED, LATER), (CloseTicket(), LATER))
    with pytest.raises(TicketIsClosed) as error:
        then(closed, ReopenTicket(), LATER)
    assert "related_ticket_id" in str(error.value)


def test_closing_a_resolved_ticket_and_closing_it_again_changes_nothing_more() -> None:
    given = history(opened(), (RESOLVED, LATER))
    [event] = then(given, CloseTicket(), LATER)
    assert isinstance(event, TicketClosed)
    assert event.previous_status == "resolved"
    assert then([*given, event], CloseTicket(), LATER) == []


def test_an_unresolved_ticket_is_not_closed() -> None:
    with pytest.raises(InvalidTransition) as error:
        then(opened(), CloseTicket(), LATER)
    assert error.value.status == 409


# --- satisfaction -----------------------------------------------------------------------------


def test_satisfaction_is_rated_for_the_latest_resolution() -> None:
    given = history(opened(), (RESOLVED, LATER))
    [event] = then(given, RecordSatisfaction(score=4, comment="対応が早かった"), LATER)
    assert isinstance(event, TicketSatisfactionRated)
    assert (event.score, event.comment, event.resolution_number) == (4, "対応が早かった", 1)


def test_satisfaction_can_still_be_rated_after_closing() -> None:
    closed = history(opened(), (RESOLVED, LATER), (CloseTicket(), LATER))
    assert len(then(closed, RecordSatisfaction(score=5), LATER)) == 1


def test_satisfaction_twice_for_one_resolution_is_a_conflict_but_a_new_resolution_may_be_rated() -> None:
    rated = history(opened(), (RESOLVED, LATER), (RecordSatisfaction(score=2), LATER))
    with pytest.raises(AlreadyRated) as error:
        then(rated, RecordSatisfaction(score=5), LATER)
    assert error.value.status == 409
    again = history(rated, (ReopenTicket(), LATER), (RESOLVED, LATER))
    [event] = then(again, RecordSatisfaction(score=5), LATER)
    assert isinstance(event, TicketSatisfactionRated)
    assert event.resolution_number == 2


def test_satisfaction_before_any_resolution_is_a_conflict() -> None:
    with pytest.raises(InvalidTransition):
        then(opened(), RecordSatisfaction(score=3), LATER)
    reopened = history(opened(), (RESOLVED, LATER), (ReopenTicket(), LATER))
    with pytest.raises(InvalidTransition):
        then(reopened, RecordSatisfaction(score=3), LATER)


@pytest.mark.parametrize("score", [0, 6, -1, "5", 4.5, True, None])
def test_a_score_outside_one_to_five_is_rejected(score: object) -> None:
    assert rejected_fields(RecordSatisfaction, {"score": score}) == ["score"]


# --- links ------------------------------------------------------------------------------------


def test_linking_to_a_deal_an_order_and_an_earlier_ticket() -> None:
    given = opened()
    deal, earlier = new_id(), new_id()
    events = history(
        given,
        (LinkTicket(deal_id=deal), LATER),
        (LinkTicket(order_id="ORD-9"), LATER),
        (LinkTicket(ticket_id=earlier), LATER),
    )[1:]
    assert all(isinstance(e, TicketLinked) for e in events)
    assert ticket_after([*given, *events]).links == (("deal", str(deal)), ("order", "ORD-9"), ("ticket", str(earlier)))


def test_a_link_made_twice_or_to_itself_is_not_made() -> None:
    given = history(opened(), (LinkTicket(order_id="ORD-9"), LATER))
    assert then(given, LinkTicket(order_id="ORD-9"), LATER) == []
    with pytest.raises(DomainError) as error:
        then(given, LinkTicket(ticket_id=ticket_after(given).id), LATER)
    assert error.value.field == "ticket_id"


def test_a_link_names_exactly_one_target() -> None:
    assert rejected_fields(LinkTicket, {}) == [""]
    assert rejected_fields(LinkTicket, {"order_id": "o", "deal_id": str(new_id())}) == [""]


# --- folding ----------------------------------------------------------------------------------


def test_the_whole_life_of_a_complaint_folds_into_its_current_state() -> None:
    given = opened(**_complaint())
    events = history(
        given,
        (AssignTicket(assignee="suzuki", team="cs-tokyo"), NOW + HOUR),
        (ReplyToCustomer(content="大変申し訳ございません。"), NOW + 2 * HOUR),
        (EscalateTicket(level=1, reason="重要顧客"), NOW + 3 * HOUR),
        (ChangeStatus(status="pending_customer"), NOW + 4 * HOUR),
        (ChangeStatus(status="open"), NOW + 5 * HOUR),
        (ResolveTicket(resolution="代替品を発送", root_cause="検品漏れ", prevention="二重検品"), NOW + 6 * HOUR),
        (RecordSatisfaction(score=3), NOW + 7 * HOUR),
        (CloseTicket(), NOW + timedelta(days=3)),
    )
    ticket = fold(given[0].ticket_id, events)  # type: ignore[attr-defined]
    assert ticket.status == "closed"
    assert ticket.version == len(events) == 10
    assert (ticket.assignee, ticket.escalation_level) == ("suzuki", 1)
    assert [r.score for r in ticket.ratings] == [3]
    assert ticket.resolutions[0].prevention == "二重検品"
    assert ticket.first_responded_at == NOW + 2 * HOUR
