"""Erasure on the customer aggregate: given events, when EraseCustomer, then events or an error. No database."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from crm_contacts.domain.commands import EraseCustomer, MergeCustomer, RenameCustomer
from crm_contacts.domain.customer import (
    Customer,
    CustomerWasErased,
    CustomerWasMerged,
    UnknownCustomer,
    decide,
    decide_erase,
    decide_merge,
    evolve,
    fold,
    shredded,
)
from crm_eventstore.ids import new_id
from crm_schemas.base import DomainEvent
from crm_schemas.contacts import CustomerErased, CustomerMergedInto

from .builders import NOW, contact_person_added, registered, registered_person


def state_of(events: Sequence[DomainEvent]) -> Customer:
    return fold(events[0].customer_id, list(events))


def erased(given: Sequence[DomainEvent]) -> list[DomainEvent]:
    events = decide_erase(EraseCustomer(), state_of(given), [], NOW)[given[0].customer_id]
    return [*given, *events]


def merged_pair() -> tuple[list[DomainEvent], list[DomainEvent]]:
    """A survivor and a duplicate merged into it, both as streams after the merge."""
    survivor = [registered(phone="+81312345678")]
    duplicate = [registered(name="(株)ABC商事", email="info@abc.example.jp")]
    to_survivor, to_duplicate = decide_merge(
        MergeCustomer(absorbed_id=duplicate[0].customer_id), state_of(survivor), state_of(duplicate), NOW
    )
    return [*survivor, *to_survivor], [*duplicate, *to_duplicate]


def test_erasing_a_customer_emits_customer_erased_with_its_basis_and_nothing_personal() -> None:
    given = [registered_person()]
    decided = decide_erase(EraseCustomer(basis="retention_expired"), state_of(given), [], NOW)
    [event] = decided[given[0].customer_id]
    assert isinstance(event, CustomerErased)
    assert event.basis == "retention_expired"
    assert event.survivor_id is None
    assert CustomerErased.personal_fields() == frozenset()


def test_the_state_after_erasure_keeps_no_personal_data() -> None:
    customer_id = new_id()
    given = [registered(customer_id, email="canary@example.jp"), contact_person_added(customer_id, name="鈴木 一郎")]
    state = state_of(erased(given))
    assert state.erased
    assert state.registered
    assert state.kind == "company"
    assert state.profile == {}
    assert state.persons == {}
    assert "canary@example.jp" not in repr(state)
    assert "鈴木" not in repr(state)


def test_erasing_an_unknown_customer_is_rejected_404() -> None:
    with pytest.raises(UnknownCustomer) as error:
        decide_erase(EraseCustomer(), Customer(id=new_id()), [], NOW)
    assert error.value.status == 404


def test_erasing_an_erased_customer_again_emits_nothing() -> None:
    given = erased([registered()])
    assert decide_erase(EraseCustomer(), state_of(given), [], NOW) == {}


def test_an_erased_customer_takes_no_more_commands_410() -> None:
    given = erased([registered()])
    with pytest.raises(CustomerWasErased) as error:
        decide(RenameCustomer(name="新しい名前"), state_of(given), NOW)
    assert error.value.status == 410


def test_an_erased_customer_cannot_be_merged_into_another() -> None:
    survivor, gone = [registered()], erased([registered()])
    with pytest.raises(CustomerWasErased) as error:
        decide_merge(MergeCustomer(absorbed_id=gone[0].customer_id), state_of(survivor), state_of(gone), NOW)
    assert error.value.field == "absorbed_id"


def test_erasing_the_survivor_of_a_merge_erases_the_duplicate_merged_into_it_too() -> None:
    survivor, duplicate = merged_pair()
    survivor_id, duplicate_id = survivor[0].customer_id, duplicate[0].customer_id
    decided = decide_erase(EraseCustomer(), state_of(survivor), [state_of(duplicate)], NOW)
    assert set(decided) == {survivor_id, duplicate_id}
    [for_duplicate] = decided[duplicate_id]
    assert isinstance(for_duplicate, CustomerErased)
    assert for_duplicate.customer_id == duplicate_id
    assert for_duplicate.survivor_id == survivor_id


def test_erasing_a_merged_away_duplicate_alone_is_refused_naming_the_survivor() -> None:
    survivor_id = new_id()
    given = [registered(), CustomerMergedInto(customer_id=new_id(), occurred_at=NOW, survivor_id=survivor_id)]
    given[1] = given[1].model_copy(update={"customer_id": given[0].customer_id})
    with pytest.raises(CustomerWasMerged) as error:
        decide_erase(EraseCustomer(), state_of(given), [], NOW)
    assert error.value.extra["survivor_id"] == str(survivor_id)


def test_an_erased_survivor_still_knows_which_duplicates_were_merged_into_it() -> None:
    survivor, duplicate = merged_pair()
    state = state_of(erased(survivor))
    assert set(state.merges) == {duplicate[0].customer_id}


def test_a_shredded_stream_is_rebuilt_from_what_its_events_say_in_the_clear() -> None:
    survivor, duplicate = merged_pair()
    after = erased(survivor)
    state = shredded(after[0].customer_id, [(e.type, e.to_payload()) for e in after])
    assert state.registered
    assert state.erased
    assert state.erasure_recorded
    assert state.kind == "company"
    assert state.version == len(after)
    assert set(state.merges) == {duplicate[0].customer_id}
    folded = state_of(after)
    assert (folded.erased, folded.kind, folded.version) == (state.erased, state.kind, state.version)


def test_a_stream_whose_key_is_gone_without_a_recorded_erasure_is_erased_but_still_gets_the_record() -> None:
    given = [registered()]
    state = shredded(given[0].customer_id, [(e.type, e.to_payload()) for e in given])
    assert state.erased
    assert not state.erasure_recorded
    assert list(decide_erase(EraseCustomer(), state, [], NOW)) == [given[0].customer_id]


def test_erasure_advances_the_version_like_any_event() -> None:
    given = [registered()]
    before = state_of(given)
    [event] = decide_erase(EraseCustomer(), before, [], NOW)[given[0].customer_id]
    assert evolve(before, event).version == before.version + 1
