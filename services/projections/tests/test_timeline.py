"""The timeline read model: projection, ordering by effective time, pagination, filters, erasure."""

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg
import pytest
import pytest_asyncio
from crm_cli.testing import TEST_PASSWORD, TEST_ROLE
from crm_eventstore.ids import new_id
from crm_eventstore.keyring import Keyring
from crm_eventstore.projection import Delivery, ProjectionRunner
from crm_eventstore.provision import provision_read_models
from crm_eventstore.store import CommandContext, PostgresEventStore, create_pool
from crm_projections.timeline.project import TIMELINE_DDL, TIMELINE_GRANTS, TimelineProjection
from crm_projections.timeline.queries import BadCursor, TimelineFilter, TimelineQueries, summarise
from crm_schemas.base import DomainEvent
from crm_schemas.contacts import CustomerRegistered
from crm_schemas.envelope import ActorRef, EventEnvelope

from .builders import absorbed_life, contacts_life, deals_life, stream_of, support_life

pytestmark = pytest.mark.integration

T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)


@pytest_asyncio.fixture(loop_scope="session")
async def timeline_pool(pg_admin_url: str) -> AsyncIterator[asyncpg.Pool]:
    url = await provision_read_models(
        pg_admin_url, f"crm_test_tl_{secrets.token_hex(5)}", TEST_ROLE, TEST_PASSWORD, TIMELINE_DDL, TIMELINE_GRANTS
    )
    pool = await create_pool(url)
    yield pool
    await pool.close()


async def _record(store: PostgresEventStore, cid: UUID, occurred_at: datetime, name: str) -> EventEnvelope:
    state = await store.stream_state(f"customer-{cid}")
    event = CustomerRegistered(customer_id=cid, occurred_at=occurred_at, kind="company", name=name)
    result = await store.append(
        f"customer-{cid}", state, [event], CommandContext(actor=ActorRef(subject="u1", role="sales"))
    )
    return result.events[0]


async def _project(pool: asyncpg.Pool, envelopes: list[EventEnvelope]) -> None:
    async def never(*_: object) -> None:
        raise AssertionError("nothing should be dead-lettered")

    runner = ProjectionRunner(pool, TimelineProjection(), never)
    for offset, envelope in enumerate(envelopes):
        await runner.handle(Delivery("crm.contacts.events.v1", 0, offset, envelope.model_dump_json().encode(), {}))


def test_every_event_becomes_an_entry_that_keeps_its_audit_proof() -> None:
    envelope = EventEnvelope(
        event_id=new_id(),
        type="contacts.CustomerRegistered",
        schema_version=1,
        service="contacts",
        stream_id="customer-x",
        version=3,
        customer_id=new_id(),
        occurred_at=T0,
        recorded_at=T0,
        actor=ActorRef(subject="u", role="sales"),
        correlation_id=new_id(),
        payload={"kind": "company", "name": "enc:v1:xyz"},
        prev_hash="a" * 64,
        hash="b" * 64,
    )
    entry = TimelineProjection().project(envelope)
    assert entry is not None
    assert (entry.hash, entry.prev_hash, entry.version, entry.stream_id) == ("b" * 64, "a" * 64, 3, "customer-x")
    assert entry.data["name"] == "enc:v1:xyz"  # stored encrypted; decrypted only when read


def test_summaries_are_readable_in_japanese_and_english() -> None:
    data = {"kind": "company", "name": "株式会社ABC商事"}
    assert summarise("contacts.CustomerRegistered", data, "ja") == "顧客登録（法人）：株式会社ABC商事"
    assert summarise("contacts.CustomerRegistered", data, "en") == "Customer registered (company): 株式会社ABC商事"
    assert "erased" in summarise("contacts.CustomerRegistered", None, "en")
    assert summarise("unknown.Thing", {}, "en") == "unknown.Thing"


async def test_entries_are_newest_first_by_effective_time_and_a_late_event_takes_its_place(
    event_store: PostgresEventStore, keyring: Keyring, timeline_pool: asyncpg.Pool
) -> None:
    cid = new_id()
    a = await _record(event_store, cid, T0, "一")
    c = await _record(event_store, cid, T0 + timedelta(days=2), "三")
    await _project(timeline_pool, [a, c])
    late = await _record(event_store, cid, T0 + timedelta(days=1), "二")  # recorded last, happened in between
    await _project(timeline_pool, [late])
    page = await TimelineQueries(timeline_pool, keyring).page(cid)
    assert [i["data"]["name"] for i in page["items"]] == ["三", "二", "一"]
    assert page["next_cursor"] is None


async def test_cursor_pagination_walks_every_entry_exactly_once(
    event_store: PostgresEventStore, keyring: Keyring, timeline_pool: asyncpg.Pool
) -> None:
    cid = new_id()
    envelopes = [await _record(event_store, cid, T0 + timedelta(hours=i % 3), f"n{i}") for i in range(7)]
    await _project(timeline_pool, envelopes)
    queries = TimelineQueries(timeline_pool, keyring)
    seen: list[str] = []
    cursor = None
    while True:
        page = await queries.page(cid, limit=3, cursor=cursor)
        seen += [i["event_id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(str(e.event_id) for e in envelopes)
    assert len(seen) == len(set(seen))
    with pytest.raises(BadCursor):
        await queries.page(cid, cursor="not-a-cursor")


async def test_filters_by_service_type_and_date_range(
    event_store: PostgresEventStore, keyring: Keyring, timeline_pool: asyncpg.Pool
) -> None:
    cid = new_id()
    envelopes = [await _record(event_store, cid, T0 + timedelta(days=d), f"d{d}") for d in range(4)]
    await _project(timeline_pool, envelopes)
    queries = TimelineQueries(timeline_pool, keyring)
    window = TimelineFilter(since=T0 + timedelta(days=1), until=T0 + timedelta(days=3))
    assert [i["data"]["name"] for i in (await queries.page(cid, filters=window))["items"]] == ["d2", "d1"]
    assert (await queries.page(cid, filters=TimelineFilter(service="deals")))["items"] == []
    by_type = TimelineFilter(type="contacts.CustomerRegistered")
    assert len((await queries.page(cid, filters=by_type))["items"]) == 4


async def test_after_crypto_shredding_the_entry_stays_but_its_personal_data_is_gone(
    event_store: PostgresEventStore, keyring: Keyring, timeline_pool: asyncpg.Pool
) -> None:
    cid = new_id()
    await _project(timeline_pool, [await _record(event_store, cid, T0, "消される会社")])
    await keyring.destroy(cid)
    [item] = (await TimelineQueries(timeline_pool, keyring).page(cid))["items"]
    assert item["data"] is None
    assert item["hash"]
    assert "消される会社" not in item["summary"]


async def test_the_timeline_table_is_append_only(timeline_pool: asyncpg.Pool) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await timeline_pool.execute("DELETE FROM timeline_entries")


async def test_free_text_finds_entries_by_decrypted_data_and_summary_page_by_page(
    event_store: PostgresEventStore, keyring: Keyring, timeline_pool: asyncpg.Pool
) -> None:
    cid = new_id()
    names = ["株式会社ABC商事", "ABC販売", "XYZ工業", "abc物流", "その他"]
    await _project(
        timeline_pool, [await _record(event_store, cid, T0 + timedelta(days=i), n) for i, n in enumerate(names)]
    )
    queries = TimelineQueries(timeline_pool, keyring)
    first = await queries.page(cid, limit=2, filters=TimelineFilter(text="abc"))
    assert [i["data"]["name"] for i in first["items"]] == ["abc物流", "ABC販売"]
    rest = await queries.page(cid, limit=2, cursor=first["next_cursor"], filters=TimelineFilter(text="abc"))
    assert [i["data"]["name"] for i in rest["items"]] == ["株式会社ABC商事"]
    assert rest["next_cursor"] is None
    by_summary = await queries.page(cid, filters=TimelineFilter(text="顧客登録"), language="ja")
    assert len(by_summary["items"]) == 5
    assert (await queries.page(cid, filters=TimelineFilter(text="存在しない")))["items"] == []


def _every_event() -> list[DomainEvent]:
    cid = new_id()
    return [*contacts_life(cid), *absorbed_life(new_id(), cid), *deals_life(cid)[0], *support_life(cid)[0]]


@pytest.mark.parametrize("event", _every_event(), ids=lambda e: e.type)
def test_every_event_type_of_every_service_projects_to_an_entry_with_readable_summaries(event: DomainEvent) -> None:
    envelope = EventEnvelope(
        event_id=new_id(),
        type=event.type,
        schema_version=event.schema_version,
        service=event.service,
        stream_id=stream_of(event),
        version=1,
        customer_id=event.customer_id,
        occurred_at=event.occurred_at,
        recorded_at=T0,
        actor=ActorRef(subject="u", role="sales"),
        correlation_id=new_id(),
        payload=event.to_payload(),
        hash="c" * 64,
    )
    entry = TimelineProjection().project(envelope)
    assert entry is not None
    assert (entry.event_id, entry.type, entry.service, entry.data) == (
        envelope.event_id,
        event.type,
        event.service,
        event.to_payload(),
    )
    data = event.to_payload()
    for language in ("ja", "en"):
        summary = summarise(event.type, data, language)
        assert summary != event.type, f"{event.type}: the {language} summary template did not render"
        assert "{" not in summary
