"""Reader roles of an event store (`crm migrate <service> --reader ROLE`): SELECT on events, nothing else."""

import secrets

import asyncpg
import pytest
from crm_cli.testing import TEST_PASSWORD, TEST_ROLE
from crm_eventstore.ids import new_id
from crm_eventstore.keyring import Keyring
from crm_eventstore.provision import database_url, ensure_role, migrate_event_store, provision_event_store
from crm_eventstore.store import PostgresEventStore, create_pool

from .builders import context, registered

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

READER = "crm_test_reader"
READER_PASSWORD = "crm-test-reader-password"


async def _reader(pg_admin_url: str) -> None:
    admin = await asyncpg.connect(pg_admin_url)
    try:
        await ensure_role(admin, READER, READER_PASSWORD)
    finally:
        await admin.close()


async def _as_reader(pg_admin_url: str, database: str) -> asyncpg.Connection:
    return await asyncpg.connect(database_url(pg_admin_url, database, READER, READER_PASSWORD))


async def _assert_reads_events_only(pg_admin_url: str, database: str, stream: str) -> None:
    conn = await _as_reader(pg_admin_url, database)
    try:
        assert await conn.fetchval("SELECT count(*) FROM events WHERE stream_id = $1", stream) == 1
        for statement in (
            "INSERT INTO events DEFAULT VALUES",
            "UPDATE events SET type = 'x'",
            "DELETE FROM events",
            "SELECT * FROM idempotency_keys",
            "SELECT * FROM relay_positions",
            "CREATE TABLE mine (id int)",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
    finally:
        await conn.close()


async def test_migrate_lets_a_reader_select_events_and_nothing_else(
    event_store: PostgresEventStore, pg_admin_url: str
) -> None:
    await _reader(pg_admin_url)
    cid = new_id()
    await event_store.append(f"customer-{cid}", 0, [registered(cid)], context())
    database = await event_store.pool.fetchval("SELECT current_database()")

    conn = await _as_reader(pg_admin_url, database)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetchval("SELECT count(*) FROM events")  # no grant before the migration
    finally:
        await conn.close()

    owner_url = database_url(pg_admin_url, database)
    for _ in range(2):  # idempotent: a migration Job may run twice
        await migrate_event_store(owner_url, TEST_ROLE, readers=[READER])
    await _assert_reads_events_only(pg_admin_url, database, f"customer-{cid}")
    # The service role keeps its own grants.
    assert await event_store.pool.fetchval("SELECT count(*) FROM idempotency_keys") == 0


async def test_provision_grants_readers_too(pg_admin_url: str, keyring: Keyring) -> None:
    await _reader(pg_admin_url)
    database = f"crm_test_{secrets.token_hex(6)}"
    url = await provision_event_store(pg_admin_url, database, TEST_ROLE, TEST_PASSWORD, readers=[READER])
    pool = await create_pool(url, min_size=1, max_size=2)
    try:
        cid = new_id()
        await PostgresEventStore(pool, "contacts", keyring).append(f"customer-{cid}", 0, [registered(cid)], context())
    finally:
        await pool.close()
    await _assert_reads_events_only(pg_admin_url, database, f"customer-{cid}")
