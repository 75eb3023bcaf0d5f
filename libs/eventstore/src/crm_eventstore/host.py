"""Wiring shared by every service process: pools, keyring, token verifier, relay main."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass

import asyncpg
from crm_http.auth import AuthSettings, TokenVerifier
from crm_schemas.registry import topic_for

from crm_eventstore.kafka import client_security, start_producer
from crm_eventstore.keyring import Keyring, parse_master_key
from crm_eventstore.relay import OutboxRelay
from crm_eventstore.settings import InfraSettings, service_database_url
from crm_eventstore.store import PostgresEventStore, create_pool

log = logging.getLogger(__name__)


@dataclass
class StoreHandles:
    """An open event store with the pools behind it."""

    store: PostgresEventStore
    pool: asyncpg.Pool
    keys_pool: asyncpg.Pool

    async def close(self) -> None:
        """Close both pools."""
        await self.pool.close()
        await self.keys_pool.close()


async def open_keyring(infra: InfraSettings) -> tuple[Keyring, asyncpg.Pool]:
    """The keyring on the key database, unwrapping keys with the configured master key."""
    keys_pool = await create_pool(infra.keys_database_url, min_size=1, max_size=5)
    return Keyring(keys_pool, parse_master_key(infra.master_key)), keys_pool


async def open_store(service: str, infra: InfraSettings, max_size: int = 20) -> StoreHandles:
    """The service's event store on its own database."""
    pool = await create_pool(service_database_url(service), max_size=max_size)
    keyring, keys_pool = await open_keyring(infra)
    return StoreHandles(PostgresEventStore(pool, service, keyring), pool, keys_pool)


def token_verifier(infra: InfraSettings) -> TokenVerifier:
    """Verifier for the configured issuer (JWKS URL in production, a JWKS file locally)."""
    settings = AuthSettings(
        issuer=infra.jwt_issuer,
        audience=infra.jwt_audience,
        jwks_url=infra.jwks_url,
        jwks_file=None if infra.jwks_url else infra.jwks_file,
    )
    return TokenVerifier(settings)


def stop_on_signals(stop: asyncio.Event) -> None:
    """Set stop on SIGINT/SIGTERM."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)


async def run_relay(service: str) -> None:
    """Relay process main: publish the service's events until SIGTERM."""
    infra = InfraSettings()
    handles = await open_store(service, infra, max_size=4)
    security = client_security(infra)
    producer = await start_producer(
        infra.kafka_bootstrap_servers, infra.kafka_idempotence, f"crm-relay-{service}", security
    )
    stop = asyncio.Event()
    stop_on_signals(stop)
    relay = OutboxRelay(
        handles.store,
        producer,
        infra.kafka_bootstrap_servers,
        topic_for(service),
        partitions=infra.kafka_partitions,
        poll_interval=infra.relay_poll_interval,
        security=security,
    )
    try:
        await relay.run(stop)
    finally:
        await producer.stop()
        await handles.close()
