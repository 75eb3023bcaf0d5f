"""The deals service's customer replica: contacts events applied once through the projection runtime."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import httpx
import pytest
from crm_deals.app.commands import DealsCommands
from crm_deals.domain.customers import CustomerStanding
from crm_deals.entrypoints.http import create_app
from crm_deals.replica import project as replica
from crm_deals.replica.queries import ReplicaDirectory
from crm_eventstore.ids import new_id
from crm_eventstore.kafka import cloudevent_headers, encode_value
from crm_eventstore.projection import Delivery, Outcome, ProjectionRunner
from crm_eventstore.store import PostgresEventStore
from crm_http.auth import DevIssuer, TokenVerifier
from crm_schemas.base import DomainEvent
from crm_schemas.contacts import ContactPersonLeftCompany, CustomerMergedInto, CustomerRenamed, CustomerUnmergedFrom
from crm_schemas.envelope import EventEnvelope

from .builders import NOW, context, deal_body, merged, person_added, registered, unmerged

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


class Sink:
    def __init__(self) -> None:
        self.letters: list[tuple[Delivery, str, int]] = []

    async def __call__(self, delivery: Delivery, error: str, attempts: int) -> None:
        self.letters.append((delivery, error, attempts))


class Contacts:
    """Appends contacts events to a real contacts event store and feeds them to the replica's runner."""

    def __init__(self, store: PostgresEventStore, deals: PostgresEventStore) -> None:
        self.store = store
        self.sink = Sink()
        self.runner: ProjectionRunner[replica.Change] = ProjectionRunner(
            deals.pool, replica.CustomerReplicaProjection(), self.sink
        )
        self.directory = ReplicaDirectory(deals.pool)
        self.offset = 0

    async def record(self, *events: DomainEvent) -> list[EventEnvelope]:
        envelopes: list[EventEnvelope] = []
        for event in events:
            stream = f"customer-{event.customer_id}"
            head = await self.store.stream_state(stream)
            result = await self.store.append(stream, head.version, [event], context())
            envelopes += result.events
        for envelope in envelopes:
            assert await self.deliver(envelope) is Outcome.APPLIED
        return envelopes

    async def deliver(self, envelope: EventEnvelope) -> Outcome:
        headers = {k: v.decode() for k, v in cloudevent_headers(envelope, "contacts")}
        self.offset += 1
        return await self.runner.handle(
            Delivery("crm.contacts.events.v1", 0, self.offset, encode_value(envelope), headers)
        )

    async def standing(self, customer_id: UUID) -> CustomerStanding:
        return await self.directory.standing(customer_id)


@pytest.fixture
def contacts(event_store: PostgresEventStore, deals_store: PostgresEventStore) -> Contacts:
    return Contacts(event_store, deals_store)


async def test_a_registered_customer_becomes_known_with_its_active_contact_persons(contacts: Contacts) -> None:
    cid, stays, leaves = new_id(), new_id(), new_id()
    assert (await contacts.standing(cid)).known is False

    await contacts.record(registered(cid), person_added(cid, stays), person_added(cid, leaves))
    await contacts.record(ContactPersonLeftCompany(customer_id=cid, occurred_at=NOW, person_id=leaves))
    await contacts.record(CustomerRenamed(customer_id=cid, occurred_at=NOW, name="株式会社新社名"))

    standing = await contacts.standing(cid)
    assert standing == CustomerStanding(cid, known=True, survivor_id=None, contact_person_ids=frozenset({stays}))


async def test_a_redelivered_contacts_event_is_applied_once(contacts: Contacts) -> None:
    cid = new_id()
    [envelope] = await contacts.record(registered(cid))
    assert await contacts.deliver(envelope) is Outcome.DUPLICATE
    assert (await contacts.standing(cid)).known


async def test_a_merged_customer_points_to_the_live_survivor_until_the_merge_is_reversed(contacts: Contacts) -> None:
    a, b, c = new_id(), new_id(), new_id()
    await contacts.record(registered(a), registered(b), registered(c))
    await contacts.record(
        CustomerMergedInto(customer_id=a, occurred_at=NOW, survivor_id=b),
        CustomerMergedInto(customer_id=b, occurred_at=NOW, survivor_id=c),
    )
    assert (await contacts.standing(a)).survivor_id == c
    await contacts.record(CustomerUnmergedFrom(customer_id=a, occurred_at=NOW, survivor_id=b))
    assert (await contacts.standing(a)).survivor_id is None


async def test_persons_taken_over_in_a_merge_keep_their_state_and_go_back_on_unmerge(contacts: Contacts) -> None:
    absorbed, survivor, active, gone = new_id(), new_id(), new_id(), new_id()
    await contacts.record(registered(absorbed), registered(survivor))
    await contacts.record(person_added(absorbed, active), person_added(absorbed, gone))
    await contacts.record(ContactPersonLeftCompany(customer_id=absorbed, occurred_at=NOW, person_id=gone))
    await contacts.record(merged(survivor, absorbed, [active, gone]))
    assert (await contacts.standing(survivor)).contact_person_ids == {active}
    await contacts.record(unmerged(survivor, absorbed, [active, gone]))
    assert (await contacts.standing(survivor)).contact_person_ids == frozenset()
    assert contacts.sink.letters == []


async def test_the_replica_is_what_the_api_checks(
    contacts: Contacts, deals_store: PostgresEventStore, tmp_path: Path
) -> None:
    """A customer registered in contacts and replicated can get a deal; before that it cannot."""
    issuer = DevIssuer(tmp_path / "idp")
    app = create_app(DealsCommands(deals_store, customers=contacts.directory), TokenVerifier(issuer.auth_settings()))
    headers = {"Authorization": f"Bearer {issuer.issue('tanaka.sales', 'sales')}"}
    cid = new_id()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://deals") as client:
        assert (await client.post("/deals", json=deal_body(cid), headers=headers)).status_code == 422
        await contacts.record(registered(cid))
        assert (await client.post("/deals", json=deal_body(cid), headers=headers)).status_code == 201
