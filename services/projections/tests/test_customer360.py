"""Customer 360 as a pure fold: every event type of every service, point in time, shredded data, replay safety."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from uuid import UUID

from crm_eventstore.ids import new_id
from crm_projections.customer360.fold import Customer360, CustomerEvent, fold
from crm_projections.timeline.merges import Instant
from crm_schemas import contacts
from crm_schemas.registry import EVENT_TYPES
from hypothesis import given, settings
from hypothesis import strategies as st

from .builders import (
    T0,
    History,
    absorbed_life,
    contacts_life,
    deals_life,
    order_placed,
    registered,
    support_life,
)

TODAY = date(2025, 3, 31)
D = timedelta(days=1)


def fold_of(history: History, cid: UUID, today: date = TODAY) -> Customer360:
    return fold(cid, history.events, today)


def test_the_profile_follows_every_contacts_event_of_the_customers_own_stream() -> None:
    cid = new_id()
    history = History()
    history.extend(contacts_life(cid))
    doc = fold_of(history, cid).to_json()
    profile = doc["profile"]
    assert profile["name"] == "ABC商事株式会社"
    assert profile["name_kana"] == "エービーシー"
    assert profile["address"]["prefecture"] == "大阪府"
    assert profile["phone"] == "+81612345678"  # taken over by the merge, given back by the unmerge
    assert profile["email"] == "sales@abc.example"
    assert (profile["url"], profile["industry"], profile["corporate_number"]) == (
        "https://abc.example",
        "製造業",
        "1234567890123",
    )
    assert (profile["capital"], profile["employee_count"], profile["fiscal_month"]) == ("10000000", 120, 3)
    assert (profile["representative"], profile["occupation"]) == ("山田太郎", "経営者")
    assert profile["payment_terms"] == "月末締め翌月末払い"
    assert doc["kind"] == "company"
    assert doc["rank"] == "A"
    assert doc["tags"] == ["VIP"]
    assert doc["interests"] == ["PC"]
    assert doc["campaigns"] == ["spring-2024"]
    assert [(c["channel"], c["granted"]) for c in doc["consent"]] == [("email", True), ("post", False)]
    active, left = doc["contact_persons"]
    assert (active["name"], active["department"], active["title"]) == ("佐藤花子", "情報システム部", "部長")
    assert (active["email"], active["decision_role"], active["active"]) == ("sato@abc.example", "decision_maker", True)
    assert (left["name"], left["active"]) == ("鈴木一郎", False)
    assert doc["metrics"]["fiscal_month"] == 3


def test_a_merge_takes_over_values_tags_and_persons_until_it_is_undone() -> None:
    cid, absorbed, person = new_id(), new_id(), new_id()
    history = History()
    history.add(registered(cid, phone="+81311112222"))
    history.add(
        contacts.CustomersMerged(
            customer_id=cid,
            occurred_at=T0 + D,
            absorbed_id=absorbed,
            field_choices={"phone": "absorbed", "rank": "absorbed"},
            taken={"phone": "+81399998888", "rank": "S"},
            previous={"phone": "+81311112222", "rank": None},
            added_tags=["旧顧客"],
            added_person_ids=[person],
            added_persons=[{"person_id": str(person), "name": "田中", "active": True}],
        )
    )
    merged = fold_of(history, cid).to_json()
    assert (merged["profile"]["phone"], merged["rank"], merged["tags"]) == ("+81399998888", "S", ["旧顧客"])
    assert [p["name"] for p in merged["contact_persons"]] == ["田中"]
    history.add(
        contacts.CustomersUnmerged(
            customer_id=cid,
            occurred_at=T0 + 2 * D,
            absorbed_id=absorbed,
            restored={"phone": "+81311112222", "rank": None},
            removed_tags=["旧顧客"],
            removed_person_ids=[person],
        )
    )
    split = fold_of(history, cid).to_json()
    assert (split["profile"]["phone"], split["rank"], split["tags"], split["contact_persons"]) == (
        "+81311112222",
        None,
        [],
        [],
    )


def test_a_merged_away_records_own_contacts_events_do_not_touch_the_survivors_profile() -> None:
    survivor, absorbed = new_id(), new_id()
    history = History()
    history.add(registered(survivor, "本物"))
    history.extend(absorbed_life(absorbed, survivor))
    doc = fold(survivor, history.events, TODAY, merged_from=[absorbed]).to_json()
    assert doc["profile"]["name"] == "本物"
    assert doc["merged_from"] == [str(absorbed)]
    alone = fold(absorbed, history.events, TODAY).to_json()
    assert alone["erased"] is True
    assert alone["merged_into"] is None  # merged, then split off again


def test_deals_contracts_orders_invoices_and_budgets_fold_into_the_360() -> None:
    cid = new_id()
    history = History()
    history.add(registered(cid))
    events, ids = deals_life(cid)
    history.extend(events)
    doc = fold_of(history, cid).to_json()
    deals_by_id = {d["deal_id"]: d for d in doc["open_deals"]}
    assert set(deals_by_id) == {str(ids["open"]), str(ids["reopened"])}  # won is not open; lost was reopened
    open_deal = deals_by_id[str(ids["open"])]
    assert (open_deal["stage"], open_deal["amount"], open_deal["owner"]) == ("proposal", "1500000", "u-sales-2")
    assert open_deal["expected_close_date"] == "2024-09-30"
    assert deals_by_id[str(ids["reopened"])]["stage"] == "negotiation"
    contracts_by_id = {c["contract_id"]: c for c in doc["contracts"]}
    kept = contracts_by_id[str(ids["contract"])]
    assert (kept["status"], kept["end_date"], kept["amount"]) == ("active", "2026-03-31", "22000")
    assert contracts_by_id[str(ids["ended"])]["status"] == "expired"
    cancelled = contracts_by_id[str(ids["cancelled"])]
    assert (cancelled["status"], cancelled["cancelled_from"]) == ("cancelled", "2024-09-30")
    assert doc["last_activity_at"] == (T0 + 3 * D).isoformat()
    assert doc["budgets"] == [{"fiscal_year": 2025, "amount": "3000000"}]
    m = doc["metrics"]
    # order 1: 310000 - 100000 returned; order 2: 80000 cancelled in full
    assert m["cumulative_purchase_amount"] == "210000"
    assert m["order_count"] == 1
    assert m["average_order_amount"] == "210000.00"
    assert m["average_unit_price"] == "52500.00"  # 210000 / (5 - 1) units kept
    # 341000 - 200000; the voided invoice not at all, the payment without an invoice settles nothing billed
    assert m["outstanding_amount"] == "141000"
    assert (m["first_purchase_date"], m["last_purchase_date"]) == ("2024-05-10", "2024-05-10")


def test_open_tickets_and_complaints_csat_and_complaint_count() -> None:
    cid = new_id()
    history = History()
    history.add(registered(cid))
    events, ids = support_life(cid)
    history.extend(events)
    doc = fold_of(history, cid).to_json()
    open_ids = {t["ticket_id"]: t for t in doc["open_tickets"]}
    assert set(open_ids) == {str(ids["complaint"]), str(ids["inquiry"])}  # the reopened inquiry is open again
    complaint = open_ids[str(ids["complaint"])]
    assert (complaint["status"], complaint["assignee"], complaint["escalation_level"]) == ("open", "u-cs-1", 2)
    assert complaint["subject"] == "納品遅延"
    assert [t["ticket_id"] for t in doc["open_complaints"]] == [str(ids["complaint"])]
    assert doc["metrics"]["average_csat"] == "4.50"
    assert doc["metrics"]["complaint_count"] == 1


def test_every_event_type_of_every_service_is_exercised_by_these_fold_tests() -> None:
    cid = new_id()
    events = [*contacts_life(cid), *absorbed_life(new_id(), cid), *deals_life(cid)[0], *support_life(cid)[0]]
    assert {e.type for e in events} == set(EVENT_TYPES)
    history = History()
    history.extend(events)
    assert fold_of(history, cid).document["event_count"] == len(events)


def test_shredded_personal_fields_come_out_blank_without_breaking_the_fold() -> None:
    cid = new_id()
    history = History()
    history.extend(contacts_life(cid))
    events, _ = support_life(cid)
    history.extend(events)
    personal = {name for model in EVENT_TYPES.values() for name in model.personal_fields()}
    shredded = [replace(e, data={k: (None if k in personal else v) for k, v in e.data.items()}) for e in history.events]
    doc = fold(cid, shredded, TODAY).to_json()
    assert doc["profile"]["name"] is None
    assert doc["profile"]["email"] is None
    assert doc["profile"]["industry"] == "製造業"  # not personal: still there
    assert {p["name"] for p in doc["contact_persons"]} == {None}
    assert all(t["subject"] is None for t in doc["open_tickets"])


def test_point_in_time_filters_by_recorded_at_or_by_occurred_at() -> None:
    cid = new_id()
    history = History()
    history.add(registered(cid, "旧社名"), recorded_at=T0)
    # Renamed on 2024-06-01 in the world, but only entered into the system on 2024-07-01.
    renamed = contacts.CustomerRenamed(customer_id=cid, occurred_at=T0 + 61 * D, name="新社名")
    history.add(renamed, recorded_at=T0 + 91 * D)

    def name_at(at: Instant) -> str:
        seen = [e for e in history.events if at.sees(e.occurred_at, e.recorded_at)]
        return str(fold(cid, seen, TODAY).to_json()["profile"]["name"])

    between = T0 + 75 * D
    assert name_at(Instant(as_of=between)) == "旧社名"  # the system did not know yet
    assert name_at(Instant(effective_at=between)) == "新社名"  # but it was already true
    assert name_at(Instant(as_of=between, effective_at=between)) == "旧社名"
    assert name_at(Instant()) == "新社名"


def _ordered_history() -> tuple[UUID, list[CustomerEvent]]:
    cid = new_id()
    history = History()
    history.extend(contacts_life(cid))
    history.extend(deals_life(cid)[0])
    history.extend(support_life(cid)[0])
    return cid, history.events


CID, EVENTS = _ordered_history()
ONCE_IN_ORDER = fold(CID, EVENTS, TODAY).to_json()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=len(EVENTS) - 1), max_size=40),
    st.randoms(use_true_random=False),
)
def test_any_delivery_order_with_duplicates_and_redeliveries_folds_to_the_same_360(
    redeliveries: list[int], rnd: random.Random
) -> None:
    delivered = [*EVENTS, *(EVENTS[i] for i in redeliveries)]
    rnd.shuffle(delivered)
    assert fold(CID, delivered, TODAY).to_json() == ONCE_IN_ORDER


def test_money_is_exact_decimal_text() -> None:
    cid = new_id()
    history = History()
    history.add(order_placed(cid, date(2025, 1, 1), [("0.10", 1), ("0.20", 1)]))
    metrics = fold_of(history, cid).to_json()["metrics"]
    assert metrics["cumulative_purchase_amount"] == "0.30"  # 0.1 + 0.2 as floats would not be
    assert Decimal(metrics["cumulative_purchase_amount"]) == Decimal("0.1") + Decimal("0.2")
