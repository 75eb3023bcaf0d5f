"""The customer directory on real PostgreSQL: kept with every append, candidates, pages of duplicates, erasure."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import asyncpg
import pytest
import pytest_asyncio
from crm_cli.testing import TEST_ROLE
from crm_contacts.app.customers import CustomerCommands
from crm_contacts.app.directory import (
    DIRECTORY_DDL,
    DIRECTORY_GRANTS,
    CustomerDirectory,
    ExternalIdTaken,
)
from crm_contacts.domain.commands import ChangePhone, MergeCustomer, RegisterCustomer, UnmergeCustomer
from crm_contacts.domain.customer import Customer, decide, fold
from crm_eventstore.ids import new_id
from crm_eventstore.provision import database_url
from crm_eventstore.store import CommandContext, PostgresEventStore
from crm_schemas.envelope import ActorRef

from .builders import NOW, company_body, corporate_number, person_body

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


@pytest_asyncio.fixture(loop_scope="session")
async def directory(event_store: PostgresEventStore, pg_admin_url: str) -> AsyncIterator[CustomerDirectory]:
    """A directory in the event store's own database, used by the (non-owner) service role."""
    database = await event_store.pool.fetchval("SELECT current_database()")
    admin = await asyncpg.connect(database_url(pg_admin_url, database))
    try:
        await admin.execute(DIRECTORY_DDL + DIRECTORY_GRANTS.format(role=f'"{TEST_ROLE}"'))
    finally:
        await admin.close()
    yield CustomerDirectory(event_store.pool)


@pytest.fixture
def commands(event_store: PostgresEventStore, directory: CustomerDirectory) -> CustomerCommands:
    return CustomerCommands(event_store, directory, clock=lambda: NOW)


def ctx() -> CommandContext:
    return CommandContext(actor=ActorRef(subject="tester", role="admin", team="qa"))


def customer(body: dict[str, Any], customer_id: UUID | None = None) -> Customer:
    """The customer a registration body gives, without storing it."""
    cid = customer_id or new_id()
    return fold(cid, decide(RegisterCustomer.model_validate(body), Customer(id=cid), NOW))


async def register(commands: CustomerCommands, body: dict[str, Any]) -> UUID:
    customer_id = new_id()
    await commands.handle(customer_id, RegisterCustomer.model_validate(body), ctx())
    return customer_id


async def rows(directory: CustomerDirectory) -> int:
    return int(await directory.pool.fetchval("SELECT count(*) FROM customer_directory"))


# --- kept with the event store ----------------------------------------------------------------------


async def test_a_registration_writes_the_customers_keys_in_the_same_transaction(
    commands: CustomerCommands, directory: CustomerDirectory
) -> None:
    customer_id = await register(commands, company_body(name="株式会社さくら物産", external_id="ERP-1"))

    row = await directory.pool.fetchrow("SELECT * FROM customer_directory WHERE customer_id = $1", customer_id)
    assert row is not None
    assert row["kind"] == "company"
    assert row["name_key"] == "サクラ物産"
    assert row["legal_form"] == "株式会社"
    assert row["phone"] == "+81312345678"
    assert row["postal_code"] == "1000001"
    assert f"p:{row['phone']}" in row["blocking_keys"]
    assert await directory.find_by_external_id("ERP-1") == customer_id


async def test_a_change_rewrites_the_row_rather_than_adding_one(
    commands: CustomerCommands, directory: CustomerDirectory
) -> None:
    customer_id = await register(commands, company_body())
    await commands.handle(customer_id, ChangePhone(phone="06-1234-5678"), ctx())

    assert await rows(directory) == 1
    phone = await directory.pool.fetchval("SELECT phone FROM customer_directory WHERE customer_id = $1", customer_id)
    assert phone == "+81612345678"


async def test_a_second_customer_with_a_taken_external_id_is_refused_and_nothing_is_written(
    commands: CustomerCommands, directory: CustomerDirectory, event_store: PostgresEventStore
) -> None:
    await register(commands, company_body(external_id="ERP-7"))
    events_before = await event_store.pool.fetchval("SELECT count(*) FROM events")

    with pytest.raises(ExternalIdTaken) as error:
        await register(commands, person_body(external_id="ERP-7"))

    assert error.value.status == 409
    assert error.value.field == "external_id"
    assert await event_store.pool.fetchval("SELECT count(*) FROM events") == events_before
    assert await rows(directory) == 1


async def test_an_unknown_external_id_is_not_found(directory: CustomerDirectory) -> None:
    assert await directory.find_by_external_id("nobody") is None


async def test_forgetting_a_customer_deletes_its_keys(commands: CustomerCommands, directory: CustomerDirectory) -> None:
    customer_id = await register(commands, person_body())
    async with directory.pool.acquire() as conn, conn.transaction():
        await directory.forget(conn, customer_id)

    assert await rows(directory) == 0
    assert await directory.candidates_for(customer(person_body())) == []


# --- candidates at registration -------------------------------------------------------------------


async def test_a_new_registration_sees_the_existing_customer_it_duplicates(
    commands: CustomerCommands, directory: CustomerDirectory
) -> None:
    existing = await register(commands, company_body(name="株式会社ABC商事", phone="03-1234-5678"))
    other = {"name_kana": "ゼンゼンチガウコウギョウ", "corporate_number": None, "email": None, "url": None}
    await register(commands, company_body(name="全然ちがう工業", phone="06-9999-0000", **other))

    newcomer = customer(company_body(name="ABC商事（株）", phone="０３－１２３４－５６７８", corporate_number=None))
    found = await directory.candidates_for(newcomer)

    assert [c.customer_id for c in found] == [existing]
    assert found[0].score >= 0.97
    assert {"field": "phone", "how": "exact", "similarity": 1.0} in found[0].reasons
    assert {"field": "name", "how": "normalised", "similarity": 1.0} in found[0].reasons


async def test_a_customer_is_not_its_own_candidate(commands: CustomerCommands, directory: CustomerDirectory) -> None:
    customer_id = await register(commands, person_body())
    assert await directory.candidates_for(await commands.load(customer_id)) == []


async def test_candidates_below_the_threshold_are_left_out(
    commands: CustomerCommands, directory: CustomerDirectory
) -> None:
    await register(commands, person_body(name="佐藤 花子", phone=None, email=None, birth_date=None))
    namesake = customer(
        person_body(name="佐藤 花子", phone=None, email=None, birth_date=None, address={"prefecture": "北海道"})
    )
    assert await directory.candidates_for(namesake) == []
    assert await directory.candidates_for(namesake, min_score=0.1) != []


# --- merges -----------------------------------------------------------------------------------------


async def test_a_merged_customer_is_kept_flagged_and_offered_as_a_candidate_no_more(
    commands: CustomerCommands, directory: CustomerDirectory
) -> None:
    survivor = await register(commands, company_body(name="株式会社ABC商事"))
    absorbed = await register(commands, company_body(name="ABC商事㈱"))
    assert (await directory.duplicates())["items"] != []

    await commands.merge(survivor, MergeCustomer(absorbed_id=absorbed), ctx())

    merged_into = await directory.pool.fetchval(
        "SELECT merged_into FROM customer_directory WHERE customer_id = $1", absorbed
    )
    assert merged_into == survivor
    assert (await directory.duplicates())["items"] == []
    found = await directory.candidates_for(customer(company_body(name="ABC商事")))
    assert [c.customer_id for c in found] == [survivor]

    await commands.merge(survivor, UnmergeCustomer(absorbed_id=absorbed), ctx())

    assert [set(i["customer_ids"]) for i in (await directory.duplicates())["items"]] == [{str(survivor), str(absorbed)}]


# --- duplicates in bulk ---------------------------------------------------------------------------


async def load(directory: CustomerDirectory, bodies: list[dict[str, Any]]) -> list[UUID]:
    customers = [customer(body) for body in bodies]
    async with directory.pool.acquire() as conn:
        await directory.upsert_many(conn, customers)
    return [c.id for c in customers]


def ten_pairs() -> list[dict[str, Any]]:
    """Ten customers, each registered twice: five by 法人番号, five by name and address only."""
    bodies: list[dict[str, Any]] = []
    for n in range(5):
        number = corporate_number(f"{n + 1:012d}")
        only = {"email": None, "url": None, "address": {"prefecture": "東京都", "city": "港区", "street": f"芝{n}-2-3"}}
        bodies.append(
            company_body(name=f"株式会社テスト{n}号", corporate_number=number, phone=f"03-1234-{n:04d}", **only)
        )
        bodies.append(company_body(name=f"別名{n}", corporate_number=number, phone=None, **only))
    for n in range(5):
        address = {"postal_code": f"530-000{n}", "prefecture": "大阪府", "city": "大阪市北区", "street": f"梅田{n}-1-1"}
        name = ["山田 太郎", "鈴木 一郎", "田中 花子", "高橋 誠", "伊藤 恵"][n]
        bodies.append(person_body(name=name, name_kana=None, address=address, phone=None, email=None, birth_date=None))
        bodies.append(
            person_body(
                name=name.replace(" ", ""), name_kana=None, address=address, phone=None, email=None, birth_date=None
            )
        )
    return bodies


async def test_duplicates_lists_every_pair_highest_score_first_with_exact_identifiers_on_top(
    directory: CustomerDirectory,
) -> None:
    await load(directory, ten_pairs())

    page = await directory.duplicates()

    scores = [item["score"] for item in page["items"]]
    assert len(scores) == 10
    assert scores == sorted(scores, reverse=True)
    assert all(s >= 0.97 for s in scores[:5])
    assert all(s < 0.97 for s in scores[5:])
    assert all(item["reasons"] for item in page["items"])
    assert page["next_cursor"] is None
    assert all(item["customer_ids"] == sorted(item["customer_ids"]) for item in page["items"])


async def test_pages_follow_each_other_without_gaps_or_repeats(directory: CustomerDirectory) -> None:
    await load(directory, ten_pairs())
    everything = (await directory.duplicates(limit=100))["items"]

    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await directory.duplicates(limit=3, cursor=cursor)
        seen.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == everything


async def test_a_cursor_keeps_reading_its_snapshot_while_the_directory_changes(directory: CustomerDirectory) -> None:
    await load(directory, ten_pairs())
    first = await directory.duplicates(limit=4)
    await load(directory, [company_body(name="テスト0号", corporate_number=corporate_number(f"{1:012d}"), email=None)])

    rest = await directory.duplicates(limit=100, cursor=first["next_cursor"])
    fresh = await directory.duplicates(limit=100)

    assert len(first["items"]) + len(rest["items"]) == 10
    assert len(fresh["items"]) > 10


async def test_a_cursor_carries_its_threshold(directory: CustomerDirectory) -> None:
    await load(directory, ten_pairs())
    first = await directory.duplicates(min_score=0.97, limit=2)
    rest = await directory.duplicates(min_score=0.1, cursor=first["next_cursor"])
    assert len(first["items"]) + len(rest["items"]) == 5


async def test_a_cursor_from_an_evicted_snapshot_resumes_after_its_last_pair(directory: CustomerDirectory) -> None:
    await load(directory, ten_pairs())
    everything = (await directory.duplicates(limit=100))["items"]
    first = await directory.duplicates(limit=4)
    other_replica = CustomerDirectory(directory.pool)

    rest = await other_replica.duplicates(limit=100, cursor=first["next_cursor"])

    assert first["items"] + rest["items"] == everything


@pytest.mark.parametrize("cursor", ["", "not-a-cursor", "eyJ4IjoxfQ", "WzIsIngiLDAuOCxbMCwiYSIsImIiXV0"])
async def test_a_cursor_that_is_not_ours_is_a_value_error(directory: CustomerDirectory, cursor: str) -> None:
    with pytest.raises(ValueError, match="cursor"):
        await directory.duplicates(cursor=cursor)
