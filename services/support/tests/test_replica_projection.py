"""Support's customer replica: the pure projection of contacts events (no database)."""

from __future__ import annotations

from crm_eventstore.ids import new_id
from crm_schemas.base import DomainEvent
from crm_schemas.contacts import ContactPersonLeftCompany, CustomerMergedInto, CustomerRenamed, CustomerUnmergedFrom
from crm_schemas.envelope import ActorRef, EventEnvelope
from crm_support.replica import project as replica

from .builders import NOW, merged, person_added, registered, unmerged

# --- projection --------------------------------------------------------------------------


def _envelope(event: DomainEvent) -> EventEnvelope:
    return EventEnvelope(
        event_id=new_id(),
        type=event.type,
        schema_version=1,
        service="contacts",
        stream_id=f"customer-{event.customer_id}",
        version=1,
        customer_id=event.customer_id,
        occurred_at=event.occurred_at,
        recorded_at=event.occurred_at,
        actor=ActorRef(subject="t", role="admin"),
        correlation_id=new_id(),
        payload=event.to_payload(),
        hash="0" * 64,
    )


def test_only_existence_kind_merges_and_persons_matter_to_the_replica() -> None:
    project = replica.CustomerReplicaProjection().project
    cid, survivor, person = new_id(), new_id(), new_id()
    assert project(_envelope(registered(cid, "person"))) == replica.CustomerRegistered(cid, "person", NOW)
    assert project(_envelope(CustomerMergedInto(customer_id=cid, occurred_at=NOW, survivor_id=survivor))) == (
        replica.CustomerMerged(cid, survivor, NOW)
    )
    assert project(_envelope(CustomerUnmergedFrom(customer_id=cid, occurred_at=NOW, survivor_id=survivor))) == (
        replica.CustomerUnmerged(cid, NOW)
    )
    assert project(_envelope(person_added(cid, person))) == replica.PersonsJoined(cid, (person,))
    assert project(_envelope(ContactPersonLeftCompany(customer_id=cid, occurred_at=NOW, person_id=person))) == (
        replica.PersonLeft(cid, person)
    )
    assert project(_envelope(CustomerRenamed(customer_id=cid, occurred_at=NOW, name="x"))) is None


def test_a_merge_without_persons_to_take_over_changes_nothing_on_the_survivor() -> None:
    project = replica.CustomerReplicaProjection().project
    assert project(_envelope(merged(new_id(), new_id()))) is None
    assert project(_envelope(unmerged(new_id(), new_id()))) is None
