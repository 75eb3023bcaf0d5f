"""No request runs longer than the statement timeout in PostgreSQL (pools from crm_eventstore.store.create_pool)."""

import asyncpg
import pytest
from crm_eventstore.store import DEFAULT_STATEMENT_TIMEOUT, create_pool, statement_timeout_ms

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


async def test_a_pool_stops_a_statement_running_longer_than_its_timeout(pg_admin_url: str) -> None:
    pool = await create_pool(pg_admin_url, min_size=1, max_size=1, statement_timeout=0.2)
    try:
        with pytest.raises(asyncpg.QueryCanceledError):
            await pool.execute("SELECT pg_sleep(3)")
        assert await pool.fetchval("SELECT 1") == 1
    finally:
        await pool.close()


async def test_pools_default_to_five_seconds(pg_admin_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRM_STATEMENT_TIMEOUT_SECONDS", raising=False)
    pool = await create_pool(pg_admin_url, min_size=1, max_size=1)
    try:
        assert DEFAULT_STATEMENT_TIMEOUT == 5.0
        assert await pool.fetchval("SHOW statement_timeout") == "5s"
    finally:
        await pool.close()


async def test_the_timeout_is_configurable_from_the_environment(
    pg_admin_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRM_STATEMENT_TIMEOUT_SECONDS", "1.5")
    pool = await create_pool(pg_admin_url, min_size=1, max_size=1)
    try:
        assert await pool.fetchval("SHOW statement_timeout") == "1500ms"
    finally:
        await pool.close()


async def test_zero_disables_the_timeout_and_a_negative_one_is_refused() -> None:
    assert statement_timeout_ms(0) == 0
    with pytest.raises(ValueError, match="negative"):
        statement_timeout_ms(-1)
