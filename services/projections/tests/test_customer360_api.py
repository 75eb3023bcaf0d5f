"""GET /customers/{id} through real PostgreSQL: events of three services, decrypted, bitemporal, shredded."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import pytest
import pytest_asyncio
from crm_eventstore.ids import new_id
from crm_eventstore.keyring import Keyring
from crm_eventstore.store import PostgresEventStore
from crm_projections.customer360.queries import Customer360Queries
from crm_schemas import contacts

from .builders import (
    T0,
    World,
    deal_opened,
    invoice_issued,
    merged,
    open_world,
    order_placed,
    order_returned,
    payment,
    project,
    rated,
    read_model_pool,
    registered,
    ticket_opened,
    unmerged,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


@pytest_asyncio.fixture(loop_scope="session")
async def world(pg_admin_url: str, keyring: Keyring) -> AsyncIterator[World]:
    async with open_world(pg_admin_url, keyring) as w:
        yield w


async def test_the_360_brings_all_three_services_together_with_personal_data_decrypted(world: World) -> None:
    cid = new_id()
    order = order_placed(cid, datetime.now(UTC).date() - timedelta(days=30), [("120000", 2)])
    invoice = invoice_issued(cid, "264000")
    complaint = ticket_opened(cid, "complaint", subject="納品遅延のクレーム")
    await world.record(
        [
            registered(cid, "株式会社ABC商事", email="info@abc.example", fiscal_month=3),
            contacts.ConsentGranted(customer_id=cid, occurred_at=T0, channel="email", source="web"),
            contacts.CustomerTagged(customer_id=cid, occurred_at=T0, tag="VIP"),
            deal_opened(cid, "1500000", "proposal"),
            order,
            order_returned(order, 1, 1, "120000"),
            invoice,
            payment(cid, "100000", invoice.invoice_id),
            complaint,
            rated(complaint, 2),
        ]
    )
    response = await world.get(f"/customers/{cid}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["profile"]["name"] == "株式会社ABC商事"
    assert body["profile"]["email"] == "info@abc.example"
    assert body["tags"] == ["VIP"]
    assert body["consent"][0]["channel"] == "email"
    assert [(d["stage"], d["amount"]) for d in body["open_deals"]] == [("proposal", "1500000")]
    assert [t["subject"] for t in body["open_complaints"]] == ["納品遅延のクレーム"]
    m = body["metrics"]
    assert (m["cumulative_purchase_amount"], m["order_count"], m["last_12_months_amount"]) == ("120000", 1, "120000")
    assert (m["outstanding_amount"], m["average_csat"], m["complaint_count"]) == ("164000", "2.00", 1)
    stored = await world.read_pool.fetchval(
        "SELECT data->>'name' FROM timeline_entries WHERE customer_id = $1 AND type = 'contacts.CustomerRegistered'",
        cid,
    )
    assert stored.startswith("enc:v1:")  # decrypted only when read


async def test_after_crypto_shredding_personal_fields_are_blank_and_the_rest_still_answers(world: World) -> None:
    cid = new_id()
    await world.record(
        [registered(cid, "消える会社", industry="小売業"), order_placed(cid, date(2025, 1, 5), [("5000", 1)])]
    )
    await world.keyring.destroy(cid)
    response = await world.get(f"/customers/{cid}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["profile"]["name"] is None
    assert body["profile"]["industry"] == "小売業"
    assert body["metrics"]["cumulative_purchase_amount"] == "5000"
    assert "消える会社" not in response.text


async def test_as_of_sees_what_was_recorded_by_then_and_effective_at_what_had_happened(world: World) -> None:
    cid = new_id()
    contacts_store = world.stores["contacts"]
    april = datetime(2024, 4, 1, 0, 0, tzinfo=UTC)
    clocked = PostgresEventStore(contacts_store.pool, "contacts", world.keyring, clock=lambda: april)
    world.stores["contacts"] = clocked
    try:
        await world.record([registered(cid, "旧社名", when=april - timedelta(days=30))])
        # Renamed on 2024-05-01 in the world, but entered into the system only on 2024-06-01.
        june = datetime(2024, 6, 1, tzinfo=UTC)
        world.stores["contacts"] = PostgresEventStore(
            contacts_store.pool, "contacts", world.keyring, clock=lambda: june
        )
        await world.record(
            [contacts.CustomerRenamed(customer_id=cid, occurred_at=datetime(2024, 5, 1, tzinfo=UTC), name="新社名")]
        )
    finally:
        world.stores["contacts"] = contacts_store

    async def name(**params: str) -> str:
        response = await world.get(f"/customers/{cid}", as_role="manager", **params)
        assert response.status_code == 200, response.text
        return str(response.json()["profile"]["name"])

    mid_may = "2024-05-15T00:00:00+09:00"
    assert await name(as_of=mid_may) == "旧社名"
    assert await name(effective_at=mid_may) == "新社名"
    assert await name() == "新社名"
    before = await world.get(f"/customers/{cid}", as_role="manager", as_of="2024-03-01T00:00:00+09:00")
    assert before.status_code == 404
    naive = await world.get(f"/customers/{cid}", as_role="manager", as_of="2024-05-15T00:00:00")
    assert naive.status_code == 422
    assert naive.headers["content-type"].startswith("application/problem+json")


async def test_an_unknown_customer_is_404_and_no_token_is_401(world: World) -> None:
    assert (await world.get(f"/customers/{new_id()}")).status_code == 404
    assert (await world.client.get(f"/customers/{new_id()}")).status_code == 401


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_redelivered_and_reordered_deliveries_store_the_same_read_model_as_one_ordered_pass(
    world: World, pg_admin_url: str, seed: int
) -> None:
    survivor, duplicate = new_id(), new_id()
    order = order_placed(duplicate, date(2025, 2, 1), [("5000", 2)])
    envelopes = await world.record(
        [
            registered(survivor),
            registered(duplicate),
            order,
            order_returned(order, 1, 1, "5000"),
            ticket_opened(survivor, "complaint"),
            *merged(survivor, duplicate, datetime.now(UTC)),
            *unmerged(survivor, duplicate, datetime.now(UTC)),
            *merged(survivor, duplicate, datetime.now(UTC)),
        ],
        projected=False,
    )
    rng = random.Random(seed)
    deliveries = [*envelopes, *rng.choices(envelopes, k=8)]
    rng.shuffle(deliveries)
    async with read_model_pool(pg_admin_url) as in_order, read_model_pool(pg_admin_url) as redelivered:
        await project(in_order, envelopes)
        await project(redelivered, deliveries)
        tables = (
            "SELECT event_id, customer_id, type, stream_id, version, occurred_at, recorded_at, actor, data, hash"
            " FROM timeline_entries ORDER BY event_id",
            "SELECT * FROM customer_merges ORDER BY event_id",
        )
        for query in tables:
            assert [dict(r) for r in await in_order.fetch(query)] == [dict(r) for r in await redelivered.fetch(query)]
        views = [await Customer360Queries(pool, world.keyring).read(survivor) for pool in (in_order, redelivered)]
        assert views[0].view is not None
        assert views[1].view is not None
        assert views[0].view.to_json() == views[1].view.to_json()
        assert views[0].view.to_json()["merged_from"] == [str(duplicate)]
