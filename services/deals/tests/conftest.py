"""Fixtures of the deals tests: an event store on a database with the deals service's own tables."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from uuid import UUID

import asyncpg
import pytest_asyncio
from crm_cli.testing import TEST_PASSWORD, TEST_ROLE
from crm_deals.database import DDL, GRANTS
from crm_deals.replica.project import (
    Change,
    CustomerMerged,
    CustomerRegistered,
    CustomerReplicaProjection,
    PersonsJoined,
)
from crm_eventstore.keyring import Keyring
from crm_eventstore.provision import provision_event_store
from crm_eventstore.store import PostgresEventStore, create_pool

from .builders import NOW


async def despite_concurrent_grants(provision: Callable[[], Awaitable[str]]) -> str:
    """Provision, trying again when another session on the same server granted at the same moment
    (PostgreSQL then fails one of the GRANTs with "tuple concurrently updated")."""
    for attempt in range(5):
        try:
            return await provision()
        except asyncpg.InternalServerError as error:
            if "concurrently" not in str(error) or attempt == 4:
                raise
    raise AssertionError("unreachable")


@pytest_asyncio.fixture(loop_scope="session")
async def deals_store(pg_admin_url: str, keyring: Keyring) -> AsyncIterator[PostgresEventStore]:
    """A deals event store on a fresh database provisioned like `crm up` does (DDL + GRANTS)."""
    url = await despite_concurrent_grants(
        lambda: provision_event_store(
            pg_admin_url, f"crm_test_deals_{secrets.token_hex(5)}", TEST_ROLE, TEST_PASSWORD, DDL, GRANTS
        )
    )
    pool = await create_pool(url, min_size=2, max_size=20)
    yield PostgresEventStore(pool, "deals", keyring)
    await pool.close()


async def replicate(pool: asyncpg.Pool, *changes: Change) -> None:
    """Apply replica changes as the consumer would (one transaction)."""
    projection = CustomerReplicaProjection()
    async with pool.acquire() as conn, conn.transaction():
        for change in changes:
            await projection.apply(conn, change)


async def known_customer(
    pool: asyncpg.Pool, customer_id: UUID, persons: tuple[UUID, ...] = (), merged_into: UUID | None = None
) -> None:
    """Make the replica know a customer (optionally with contact persons, or merged away)."""
    changes: list[Change] = [CustomerRegistered(customer_id, "company", NOW)]
    if persons:
        changes.append(PersonsJoined(customer_id, persons))
    if merged_into is not None:
        changes.append(CustomerMerged(customer_id, merged_into, NOW))
    await replicate(pool, *changes)
