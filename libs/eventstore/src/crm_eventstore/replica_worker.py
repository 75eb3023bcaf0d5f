"""The worker process of a service that keeps a customer replica and runs a scheduler (deals, support).

It consumes crm.contacts.events.v1 into the service's customer replica (crm_eventstore.customer_replica)
through the projection runtime, runs the service's scheduler, and beats the heartbeat its probes report,
until SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Protocol

from crm_schemas.registry import DEADLETTER_TOPIC, topic_for
from faststream.kafka import KafkaBroker

from crm_eventstore.customer_replica import Change, CustomerReplicaProjection
from crm_eventstore.host import StoreHandles, open_store, stop_on_signals
from crm_eventstore.kafka import client_security, ensure_topics, faststream_security
from crm_eventstore.projection import ProjectionRunner, build_consumer_app, deadletter_to
from crm_eventstore.settings import InfraSettings
from crm_eventstore.worker_probes import keep_beating


class Scheduler(Protocol):
    """Ticks until ``stop`` is set (only the replica holding its lock acts)."""

    async def run(self, stop: asyncio.Event, interval: float) -> None: ...


async def run_replica_worker(
    service: str,
    settings: InfraSettings,
    replica: CustomerReplicaProjection,
    group_id: str,
    scheduler: Callable[[StoreHandles], Scheduler],
    interval: float,
    max_attempts: int,
) -> None:
    """Keep ``service``'s customer replica current and run its scheduler every ``interval`` s until SIGTERM."""
    contacts = topic_for("contacts")
    await ensure_topics(
        settings.kafka_bootstrap_servers,
        [contacts, DEADLETTER_TOPIC],
        settings.kafka_partitions,
        security=client_security(settings),
    )
    handles = await open_store(service, settings, max_size=8)
    broker = KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=f"crm-{service}-worker",
        acks="all",
        security=faststream_security(settings),
    )
    runner: ProjectionRunner[Change] = ProjectionRunner(
        handles.pool,
        replica,
        deadletter_to(broker, replica.name),
        max_attempts=max_attempts,
    )
    app = build_consumer_app(broker, [runner], [contacts], group_id)
    ticker = scheduler(handles)
    stop = asyncio.Event()
    stop_on_signals(stop)
    await app.start()

    async def dependencies() -> None:
        await handles.pool.fetchval("SELECT 1")
        if not await broker.ping(timeout=3):
            raise ConnectionError("Kafka broker unreachable")

    beating = asyncio.create_task(keep_beating(dependencies, stop))
    ticking = asyncio.create_task(ticker.run(stop, interval))
    try:
        await stop.wait()
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await ticking
        await beating
        await app.stop()
        await handles.close()
