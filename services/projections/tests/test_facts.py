"""The facts projection: pure project() per event type, and applying through real PostgreSQL."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid5

import asyncpg
import pytest
import pytest_asyncio
from crm_eventstore.ids import new_id
from crm_eventstore.keyring import Keyring
from crm_projections.facts.project import (
    ConsentChanged,
    FactUpsert,
    Forgotten,
    MergeChanged,
    OrderPlacedFact,
    OrderReversal,
    ProfileChanged,
    project,
)
from crm_projections.facts.store import FactsStore
from crm_schemas import contacts, deals, support
from crm_schemas.envelope import EventEnvelope

from .fact_builders import (
    T0,
    Facts,
    activity,
    cancelled,
    consent,
    deal_opened,
    envelope_of,
    fresh_facts,
    lost,
    merged_into,
    order,
    ranked,
    rated,
    registered,
    resolved,
    returned,
    sealed,
    stage_changed,
    tagged,
    ticket,
    unmerged_from,
    won,
)

CID = new_id()


@pytest_asyncio.fixture(loop_scope="session")
async def facts(pg_admin_url: str, keyring: Keyring) -> AsyncIterator[Facts]:
    async with fresh_facts(pg_admin_url, keyring) as fed:
        yield fed


def _project(event: contacts.ContactsEvent | deals.DealsEvent | support.SupportEvent) -> object:
    return project(envelope_of(event))


# --- pure project() -------------------------------------------------------------------------------


def test_a_registration_sets_the_profile_and_keeps_personal_fields_sealed_for_apply() -> None:
    envelope = envelope_of(registered(CID), {"kind": "company", "name": "enc:v1:abc", "industry": "IT"})
    change = project(envelope)
    assert isinstance(change, ProfileChanged)
    assert change.plain == {"kind": "company", "industry": "IT", "fiscal_month": None}
    assert change.sealed["name"] == "enc:v1:abc"
    assert change.registered_at == T0


@pytest.mark.parametrize(
    ("event", "plain", "sealed_keys"),
    [
        (contacts.CustomerRenamed(customer_id=CID, occurred_at=T0, name="新"), {}, {"name", "name_kana"}),
        (contacts.CustomerAddressChanged(customer_id=CID, occurred_at=T0), {}, {"address"}),
        (contacts.CustomerIndustryChanged(customer_id=CID, occurred_at=T0, industry="IT"), {"industry": "IT"}, set()),
        (
            contacts.CustomerFiscalMonthChanged(customer_id=CID, occurred_at=T0, fiscal_month=12),
            {"fiscal_month": 12},
            set(),
        ),
        (contacts.CustomerRankChanged(customer_id=CID, occurred_at=T0, rank="A"), {"rank": "A"}, set()),
    ],
)
def test_profile_events_set_only_their_own_members(
    event: contacts.ContactsEvent, plain: dict[str, object], sealed_keys: set[str]
) -> None:
    change = _project(event)
    assert isinstance(change, ProfileChanged)
    assert change.plain == plain
    assert set(change.sealed) == sealed_keys


def test_tags_are_added_and_removed() -> None:
    added = _project(tagged(CID, "VIP"))
    removed = _project(contacts.CustomerUntagged(customer_id=CID, occurred_at=T0, tag="VIP"))
    assert isinstance(added, ProfileChanged)
    assert added.add_tags == ("VIP",)
    assert isinstance(removed, ProfileChanged)
    assert removed.remove_tags == ("VIP",)


def test_consent_is_granted_and_withdrawn_per_channel_and_purpose() -> None:
    granted = _project(consent(CID, "email"))  # type: ignore[arg-type]
    withdrawn = _project(consent(CID, "post", granted=False))  # type: ignore[arg-type]
    assert granted == ConsentChanged(CID, "email", "newsletter", True, T0)
    assert withdrawn == ConsentChanged(CID, "post", "newsletter", False, T0)


def test_merges_repoint_the_absorbed_customer_and_carry_the_taken_values() -> None:
    survivor = new_id()
    assert _project(merged_into(CID, survivor)) == MergeChanged(CID, survivor)
    assert _project(unmerged_from(CID, survivor)) == MergeChanged(CID, None, previous_survivor_id=survivor)
    merged = _project(
        contacts.CustomersMerged(
            customer_id=survivor,
            occurred_at=T0,
            absorbed_id=CID,
            field_choices={},
            taken={"name": "x"},
            previous={},
            added_tags=["A"],
        )
    )
    assert isinstance(merged, ProfileChanged)
    assert merged.nested == "taken"
    assert merged.add_tags == ("A",)
    unmerged = _project(
        contacts.CustomersUnmerged(
            customer_id=survivor, occurred_at=T0, absorbed_id=CID, restored={}, removed_tags=["A"]
        )
    )
    assert isinstance(unmerged, ProfileChanged)
    assert unmerged.nested == "restored"
    assert unmerged.remove_tags == ("A",)


def test_erasure_forgets_the_customer() -> None:
    envelope = envelope_of(registered(CID)).model_copy(update={"type": "contacts.CustomerErased", "payload": {}})
    assert project(envelope) == Forgotten(CID)


def test_an_order_becomes_an_order_with_lines_in_exact_decimals() -> None:
    placed = order(CID, date(2023, 5, 1), [("PC-1", "PC", "1980.50"), ("MS-1", "周辺機器", "20")])
    change = _project(placed)
    assert isinstance(change, OrderPlacedFact)
    assert change.total == Decimal("2000.50")
    assert [(line.product_code, line.category, line.line_amount) for line in change.lines] == [
        ("PC-1", "PC", Decimal("1980.50")),
        ("MS-1", "周辺機器", Decimal("20")),
    ]


def test_cancellations_and_returns_reverse_revenue() -> None:
    placed = order(CID, date(2023, 5, 1), [("PC-1", "PC", "1000"), ("PC-2", "PC", "500")])
    cancel = _project(cancelled(placed))
    back = _project(returned(placed, 2, "200"))
    assert isinstance(cancel, OrderReversal)
    assert (cancel.kind, cancel.full, cancel.amount) == (
        "cancelled",
        True,
        Decimal(1500),
    )
    assert isinstance(back, OrderReversal)
    assert back.lines == ((2, Decimal(200)),)
    assert not back.full


def test_deal_events_upsert_the_deal_row() -> None:
    opened = deal_opened(CID, "300000", owner="sato")
    change = _project(opened)
    assert isinstance(change, FactUpsert)
    assert change.table == "fact_deals"
    assert change.key == opened.deal_id
    assert change.values["status"] == "open"
    assert change.values["amount"] == Decimal(300000)
    assert isinstance(stage := _project(stage_changed(opened, "proposal")), FactUpsert)
    assert stage.values == {"stage": "proposal"}
    revised = _project(
        deals.DealAmountRevised(
            customer_id=CID, occurred_at=T0, deal_id=opened.deal_id, amount="1", previous_amount="2", currency="JPY"
        )
    )
    assert isinstance(revised, FactUpsert)
    assert revised.values["amount"] == Decimal(1)
    owner = _project(
        deals.DealOwnerChanged(
            customer_id=CID, occurred_at=T0, deal_id=opened.deal_id, owner="ito", previous_owner="sato"
        )
    )
    assert isinstance(owner, FactUpsert)
    assert owner.values["owner"] == "ito"
    won_change = _project(won(opened, date(2026, 5, 1), "280000"))
    assert isinstance(won_change, FactUpsert)
    assert won_change.values == {
        "status": "won",
        "stage": "won",
        "amount": Decimal(280000),
        "closed_on": date(2026, 5, 1),
    }
    lost_change = _project(lost(opened, date(2026, 5, 2)))
    assert isinstance(lost_change, FactUpsert)
    assert lost_change.values["status"] == "lost"
    reopened = _project(
        deals.DealReopened(
            customer_id=CID, occurred_at=T0, deal_id=opened.deal_id, stage="proposal", previous_outcome="lost"
        )
    )
    assert isinstance(reopened, FactUpsert)
    assert reopened.values["status"] == "open"
    close = _project(
        deals.DealCloseDateRevised(
            customer_id=CID, occurred_at=T0, deal_id=opened.deal_id, expected_close_date=date(2026, 9, 30)
        )
    )
    assert isinstance(close, FactUpsert)
    assert close.values == {"expected_close_date": date(2026, 9, 30)}


def test_activities_and_tickets_upsert_their_rows() -> None:
    visit = _project(activity(CID, T0))
    assert isinstance(visit, FactUpsert)
    assert visit.table == "fact_activities"
    assert visit.values["occurred_at"] == T0
    opened = ticket(CID)
    changes = [
        _project(opened),
        _project(
            support.TicketStatusChanged(
                customer_id=CID, occurred_at=T0, ticket_id=opened.ticket_id, status="open", previous_status="new"
            )
        ),
        _project(resolved(opened)),
        _project(
            support.TicketReopened(
                customer_id=CID, occurred_at=T0, ticket_id=opened.ticket_id, previous_status="resolved"
            )
        ),
        _project(
            support.TicketClosed(
                customer_id=CID, occurred_at=T0, ticket_id=opened.ticket_id, previous_status="resolved"
            )
        ),
        _project(rated(opened, 4)),
    ]
    assert all(isinstance(c, FactUpsert) and c.table == "fact_tickets" for c in changes)
    statuses = [c.values.get("status") for c in changes if isinstance(c, FactUpsert)]
    assert statuses == ["new", "open", "resolved", "open", "closed", None]
    assert isinstance(changes[-1], FactUpsert)
    assert changes[-1].values["csat"] == 4


def test_events_that_feed_no_fact_project_to_nothing() -> None:
    opened = ticket(CID)
    assert (
        _project(support.TicketNoteAdded(customer_id=CID, occurred_at=T0, ticket_id=opened.ticket_id, content="x"))
        is None
    )
    assert _project(contacts.CampaignJoined(customer_id=CID, occurred_at=T0, campaign="c")) is None
    budget = deals.CustomerBudgetSet(customer_id=CID, occurred_at=T0, fiscal_year=2026, amount="1")
    assert _project(budget) is None


# --- applied through PostgreSQL ---------------------------------------------------------------------


async def _customer(pool: asyncpg.Pool, cid: UUID) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM fact_customers WHERE customer_id = $1", cid)
    assert row is not None
    return row


async def _totals(pool: asyncpg.Pool, cid: UUID) -> asyncpg.Record | None:
    return await pool.fetchrow("SELECT * FROM fact_customer_totals WHERE customer_id = $1", cid)


@pytest.mark.integration
@pytest.mark.asyncio(loop_scope="session")
async def test_personal_fields_are_decrypted_into_the_searchable_profile(facts: Facts) -> None:
    reg = registered(prefecture="大阪府", city="大阪市北区")
    envelopes = await facts.feed(reg, ranked(reg.customer_id, "A"), tagged(reg.customer_id, "VIP"))
    assert str(envelopes[0].payload["name"]).startswith("enc:v1:")
    row = await _customer(facts.pool, reg.customer_id)
    assert (row["name"], row["prefecture"], row["city"], row["rank"], row["tags"]) == (
        "株式会社ABC商事",
        "大阪府",
        "大阪市北区",
        "A",
        ["VIP"],
    )
    assert "abc商事" in row["search_text"]


@pytest.mark.integration
@pytest.mark.asyncio(loop_scope="session")
async def test_a_deal_arriving_before_the_registration_is_kept_and_the_registration_still_lands(facts: Facts) -> None:
    reg = registered()
    await facts.feed(deal_opened(reg.customer_id), order(reg.customer_id, date(2025, 1, 10)))
    await facts.feed(reg)
    row = await _customer(facts.pool, reg.customer_id)
    assert row["kind"] == "company"
    assert await facts.pool.fetchval("SELECT count(*) FROM fact_deals WHERE customer_id = $1", reg.customer_id) == 1
    totals = await _totals(facts.pool, reg.customer_id)
    assert totals is not None
    assert totals["revenue"] == Decimal(100000)


@pytest.mark.integration
@pytest.mark.asyncio(loop_scope="session")
async def test_redelivered_events_change_nothing(facts: Facts) -> None:
    reg = registered()
    placed = order(reg.customer_id, date(2025, 1, 10), [("A", "PC", "1000"), ("B", "PC", "300")])
    envelopes = await facts.feed(reg, placed, returned(placed, 2, "300"), tagged(reg.customer_id, "x"))
    for envelope in envelopes:
        await facts.deliver(envelope)
    totals = await _totals(facts.pool, reg.customer_id)
    assert totals is not None
    assert totals["revenue"] == Decimal(1000)
    assert totals["order_count"] == 1
    assert (await _customer(facts.pool, reg.customer_id))["tags"] == ["x"]


@pytest.mark.integration
@pytest.mark.asyncio(loop_scope="session")
async def test_cancelled_and_fully_returned_orders_are_not_purchases(facts: Facts) -> None:
    cid = new_id()
    kept = order(cid, date(2025, 1, 10), [("A", "PC", "1000")])
    gone = order(cid, date(2025, 3, 1), [("B", "PC", "700")])
    back = order(cid, date(2025, 4, 1), [("C", "PC", "50")])
    await facts.feed(registered(cid), kept, gone, cancelled(gone), back, returned(back, 1, "50", full=True))
    totals = await _totals(facts.pool, cid)
    assert totals is not None
    assert (totals["revenue"], totals["order_count"], totals["last_purchase_date"]) == (
        Decimal(1000),
        1,
        date(2025, 1, 10),
    )
    reversed_lines = await facts.pool.fetch(
        "SELECT product_code, line_amount - reversed AS net FROM fact_order_lines WHERE customer_id = $1 ORDER BY 1",
        cid,
    )
    assert [(r["product_code"], r["net"]) for r in reversed_lines] == [("A", 1000), ("B", 0), ("C", 0)]


@pytest.mark.integration
@pytest.mark.asyncio(loop_scope="session")
async def test_open_complaints_and_last_contact_follow_the_tickets_and_activities(facts: Facts) -> None:
    cid = new_id()
    complaint, inquiry = ticket(cid), ticket(cid, kind="inquiry")
    await facts.feed(registered(cid), complaint, inquiry, activity(cid, T0), activity(cid, T0 + timedelta(days=3)))
    totals = await _totals(facts.pool, cid)
    assert totals is not None
    assert (totals["open_complaints"], totals["open_tickets"]) == (1, 2)
    assert totals["last_contact_at"] == T0 + timedelta(days=3)
    await facts.feed(resolved(complaint))
    totals = await _totals(facts.pool, cid)
    assert totals is not None
    assert (totals["open_complaints"], totals["open_tickets"]) == (0, 1)


@pytest.mark.integration
@pytest.mark.asyncio(loop_scope="session")
async def test_a_merged_customers_facts_count_for_the_survivor_until_unmerged(facts: Facts) -> None:
    survivor, absorbed = registered(), registered(name="ABC商事(株)")
    sid, aid = survivor.customer_id, absorbed.customer_id
    await facts.feed(survivor, absorbed, order(sid, date(2025, 1, 1)), order(aid, date(2025, 2, 1)))
    await facts.feed(merged_into(aid, sid), order(aid, date(2025, 3, 1), [("X", "PC", "5")]))
    totals = await _totals(facts.pool, sid)
    assert totals is not None
    assert totals["revenue"] == Decimal(200005)
    assert totals["order_count"] == 3
    assert await _totals(facts.pool, aid) is None
    await facts.feed(unmerged_from(aid, sid))
    s_totals, a_totals = await _totals(facts.pool, sid), await _totals(facts.pool, aid)
    assert s_totals is not None
    assert s_totals["revenue"] == Decimal(100000)
    assert a_totals is not None
    assert a_totals["revenue"] == Decimal(100005)


@pytest.mark.integration
@pytest.mark.asyncio(loop_scope="session")
async def test_forgetting_blanks_the_plaintext_and_shredded_events_do_not_bring_it_back(
    facts: Facts, keyring: Keyring
) -> None:
    reg = registered(name="消える株式会社")
    envelopes = await facts.feed(reg)
    await FactsStore(facts.pool).forget(reg.customer_id)
    row = await _customer(facts.pool, reg.customer_id)
    assert (row["name"], row["name_kana"], row["prefecture"], row["search_text"], row["erased"]) == (
        None,
        None,
        None,
        "",
        True,
    )
    await keyring.destroy(reg.customer_id)
    replay: EventEnvelope = envelopes[0].model_copy(update={"event_id": new_id()})
    await facts.deliver(replay)
    row = await _customer(facts.pool, reg.customer_id)
    assert row["name"] is None
    assert row["kind"] == "company"


@pytest.mark.integration
@pytest.mark.asyncio(loop_scope="session")
async def test_won_and_lost_deals_keep_their_close_date_and_final_amount(facts: Facts) -> None:
    cid = new_id()
    a, b = deal_opened(cid, "100"), deal_opened(cid, "200")
    await facts.feed(a, b, won(a, date(2026, 5, 1), "90"), lost(b, date(2026, 6, 1)))
    rows = await facts.pool.fetch(
        "SELECT status, amount, closed_on FROM fact_deals WHERE customer_id = $1 ORDER BY closed_on", cid
    )
    assert [(r["status"], r["amount"], r["closed_on"]) for r in rows] == [
        ("won", Decimal(90), date(2026, 5, 1)),
        ("lost", Decimal(200), date(2026, 6, 1)),
    ]


def _scenario(cid: UUID, seed: int) -> dict[str, list[Any]]:
    """One customer's events per service, each service's in its own order (as one Kafka partition keeps them)."""
    rng = random.Random(seed)

    def eid(n: int) -> UUID:
        return uuid5(cid, str(n))

    contacts_events: list[Any] = [registered(cid, prefecture=rng.choice(["東京都", "大阪府"]))]
    contacts_events += [tagged(cid, t) for t in rng.sample(["VIP", "展示会", "紹介"], 2)]
    contacts_events += [ranked(cid, rng.choice("ABC")), consent(cid, "email"), consent(cid, "email", granted=False)]
    deals_events: list[Any] = []
    for n in range(rng.randint(2, 5)):
        placed = order(
            cid,
            date(2024, 1, 1) + timedelta(days=rng.randint(0, 600)),
            [("P1", "PC", str(rng.randint(1, 9999))), ("P2", "保守", f"{rng.randint(1, 999)}.5")],
            order_id=eid(n),
        )
        deals_events.append(placed)
        fate = rng.random()
        if fate < 0.3:
            deals_events.append(cancelled(placed))
        elif fate < 0.6:
            deals_events.append(returned(placed, 2, "0.5"))
    deal = deal_opened(cid, str(rng.randint(1, 100000))).model_copy(update={"deal_id": eid(100)})
    deals_events += [deal, stage_changed(deal, "proposal"), won(deal, date(2026, 5, 1))]
    deals_events += [
        activity(cid, T0 + timedelta(days=d)).model_copy(update={"activity_id": eid(200 + d)}) for d in range(3)
    ]
    complaint = ticket(cid, ticket_id=eid(300))
    support_events: list[Any] = [complaint, rated(complaint, rng.randint(1, 5))]
    if rng.random() < 0.5:
        support_events.append(resolved(complaint))
    # A duplicate merged into this customer: its own contacts and deals streams (other partitions).
    absorbed = uuid5(cid, "absorbed")
    absorbed_contacts: list[Any] = [registered(absorbed), merged_into(absorbed, cid)]
    absorbed_deals: list[Any] = [
        order(absorbed, date(2023, 3, 1) + timedelta(days=30 * n), [("P9", "PC", "1000")], order_id=eid(400 + n))
        for n in range(rng.randint(1, 3))
    ]
    return {
        "contacts": contacts_events,
        "deals": deals_events,
        "support": support_events,
        "contacts-absorbed": absorbed_contacts,
        "deals-absorbed": absorbed_deals,
    }


async def _fingerprint(pool: asyncpg.Pool, cid: UUID) -> tuple[Any, ...]:
    customer = await pool.fetchrow(
        "SELECT kind, name, prefecture, rank, tags, search_text, registered_at FROM fact_customers WHERE customer_id = $1",
        cid,
    )
    totals = await pool.fetchrow("SELECT * FROM fact_customer_totals WHERE customer_id = $1", cid)
    orders = await pool.fetch(
        "SELECT order_date, total, reversed, status FROM fact_orders WHERE customer_id = $1 ORDER BY 1, 2", cid
    )
    lines = await pool.fetch(
        "SELECT order_date, product_code, line_amount, reversed FROM fact_order_lines WHERE customer_id = $1 ORDER BY 1, 2, 3",
        cid,
    )
    deals_ = await pool.fetch("SELECT stage, status, amount, closed_on FROM fact_deals WHERE customer_id = $1", cid)
    tickets = await pool.fetch("SELECT kind, status, csat FROM fact_tickets WHERE customer_id = $1", cid)
    consents = await pool.fetch("SELECT channel, granted FROM fact_consents WHERE customer_id = $1", cid)
    counted_for = await pool.fetch(
        "SELECT customer_id = $1 AS own, count(*) FROM fact_orders WHERE subject_id = $1 GROUP BY 1 ORDER BY 1", cid
    )
    return (
        [tuple(r) for r in counted_for],
        dict(customer) if customer else None,
        {k: v for k, v in dict(totals).items() if k != "customer_id"} if totals else None,
        [tuple(r) for r in orders],
        [tuple(r) for r in lines],
        [tuple(r) for r in deals_],
        [tuple(r) for r in tickets],
        [tuple(r) for r in consents],
    )


@pytest.mark.integration
@pytest.mark.asyncio(loop_scope="session")
async def test_any_interleaving_of_the_services_with_redeliveries_gives_the_same_facts(facts: Facts) -> None:
    for seed in range(6):
        rng = random.Random(1000 + seed)
        cid = new_id()
        streams = _scenario(cid, seed)
        envelopes = {s: [await sealed(facts.keyring, e) for e in events] for s, events in streams.items()}
        for service in envelopes:  # the reference: one stream after the other
            for envelope in envelopes[service]:
                await facts.deliver(envelope)
        reference = await _fingerprint(facts.pool, cid)
        # The same envelopes again into a second database, interleaved at random, each stream still in order,
        # with random redeliveries of anything already delivered.
        async with fresh_facts(facts.url_admin, facts.keyring) as other:
            queues = {s: list(e) for s, e in envelopes.items()}
            delivered: list[EventEnvelope] = []
            while any(queues.values()):
                service = rng.choice([s for s, q in queues.items() if q])
                envelope = queues[service].pop(0)
                await other.deliver(envelope)
                delivered.append(envelope)
                if rng.random() < 0.3:
                    await other.deliver(rng.choice(delivered))
            assert await _fingerprint(other.pool, cid) == reference, seed


def test_an_assignment_sets_the_tickets_owner_and_team() -> None:
    opened = ticket(CID)
    change = _project(
        support.TicketAssigned(
            customer_id=CID, occurred_at=T0, ticket_id=opened.ticket_id, assignee="suzuki", team="cs"
        )
    )
    assert isinstance(change, FactUpsert)
    assert change.values == {"assignee": "suzuki", "team": "cs"}
