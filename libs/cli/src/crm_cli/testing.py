"""Pytest plugin: real PostgreSQL and a real Kafka-protocol broker for integration tests.

Selection: CRM_TEST_DATABASE_URL / CRM_TEST_KAFKA_BOOTSTRAP_SERVERS when set, else
testcontainers when a Docker engine answers, else the embedded binaries.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from crm_eventstore.keyring import Keyring
from crm_eventstore.provision import (
    KEYS_DATABASE,
    database_url,
    provision_event_store,
    provision_keyring,
)
from crm_eventstore.store import PostgresEventStore, create_pool

from crm_cli.infra import Kafka, Postgres, provide_kafka, provide_postgres

TEST_ROLE = "crm_test_service"
TEST_PASSWORD = "crm-test-password"  # noqa: S105 - a throwaway role on a throwaway database
MASTER_KEY = bytes(range(32))


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    """A PostgreSQL server for the whole session."""
    server = provide_postgres(tmp_path_factory.mktemp("pg") / "data", env_var="CRM_TEST_DATABASE_URL")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kafka]:
    """A Kafka-protocol broker for the whole session."""
    broker = provide_kafka(
        log_file=tmp_path_factory.mktemp("kafka") / "broker.log", env_var="CRM_TEST_KAFKA_BOOTSTRAP_SERVERS"
    )
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def pg_admin_url(postgres: Postgres) -> str:
    """Superuser URL of the test server."""
    return postgres.admin_url


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def keys_url(pg_admin_url: str) -> str:
    """URL of the key database (provisioned once, with grants for the test service role)."""
    admin = await asyncpg.connect(pg_admin_url)
    try:
        from crm_eventstore.provision import ensure_role

        await ensure_role(admin, TEST_ROLE, TEST_PASSWORD)
    finally:
        await admin.close()
    await provision_keyring(pg_admin_url, [TEST_ROLE])
    return database_url(pg_admin_url, KEYS_DATABASE, TEST_ROLE, TEST_PASSWORD)


NewDatabase = Callable[[], Awaitable[str]]


@pytest_asyncio.fixture(loop_scope="session")
async def new_event_store_database(pg_admin_url: str, keys_url: str) -> NewDatabase:
    """Factory: a fresh database with the event store schema; returns the service role's URL."""

    async def make() -> str:
        name = f"crm_test_{secrets.token_hex(6)}"
        return await provision_event_store(pg_admin_url, name, TEST_ROLE, TEST_PASSWORD)

    return make


@pytest_asyncio.fixture(loop_scope="session")
async def keyring(keys_url: str) -> AsyncIterator[Keyring]:
    """A keyring on the test key database."""
    pool = await create_pool(keys_url, min_size=1, max_size=4)
    yield Keyring(pool, MASTER_KEY)
    await pool.close()


@pytest_asyncio.fixture(loop_scope="session")
async def event_store(new_event_store_database: NewDatabase, keyring: Keyring) -> AsyncIterator[PostgresEventStore]:
    """An event store on its own fresh database, connected as the (non-owner) service role."""
    url = await new_event_store_database()
    pool = await create_pool(url, min_size=2, max_size=40)
    yield PostgresEventStore(pool, "contacts", keyring)
    await pool.close()


def admin_url_for(store_url: str, admin_url: str) -> str:
    """The superuser URL of the database a service URL points at."""
    return database_url(admin_url, Path(store_url.split("?")[0]).name)
