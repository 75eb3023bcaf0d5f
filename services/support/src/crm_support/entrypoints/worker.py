"""The support worker process: the customer replica consumer and the SLA scheduler.

`python -m crm_support.entrypoints.worker` (or `python -m crm_cli.processes support-worker`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from crm_eventstore.host import open_store, stop_on_signals
from crm_eventstore.kafka import client_security, ensure_topics, faststream_security
from crm_eventstore.projection import ProjectionRunner, build_consumer_app, deadletter_to
from crm_eventstore.worker_probes import keep_beating
from crm_schemas.registry import DEADLETTER_TOPIC, topic_for
from faststream.kafka import KafkaBroker

from crm_support.app.sla_scheduler import SlaScheduler
from crm_support.app.tickets import TicketCommands
from crm_support.replica.project import Change, CustomerReplicaProjection
from crm_support.settings import SupportSettings
from crm_support.sla_clocks import PostgresSlaClocks

log = logging.getLogger(__name__)


async def run() -> None:
    """Keep the customer replica current and record SLA breaches until SIGTERM."""
    settings = SupportSettings()
    os.environ.setdefault("CRM_SUPPORT_DATABASE_URL", settings.support_database_url)
    contacts = topic_for("contacts")
    await ensure_topics(
        settings.kafka_bootstrap_servers,
        [contacts, DEADLETTER_TOPIC],
        settings.kafka_partitions,
        security=client_security(settings),
    )
    handles = await open_store("support", settings, max_size=8)
    broker = KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id="crm-support-worker",
        acks="all",
        security=faststream_security(settings),
    )
    replica = CustomerReplicaProjection()
    runner: ProjectionRunner[Change] = ProjectionRunner(
        handles.pool,
        replica,
        deadletter_to(broker, replica.name),
        max_attempts=settings.projection_max_attempts,
    )
    app = build_consumer_app(broker, [runner], [contacts], settings.support_replica_group_id)
    clocks = PostgresSlaClocks(handles.pool)
    scheduler = SlaScheduler(TicketCommands(handles.store, clocks=clocks, policy=settings.sla_policy()), clocks)
    stop = asyncio.Event()
    stop_on_signals(stop)
    await app.start()

    async def dependencies() -> None:
        await handles.pool.fetchval("SELECT 1")
        if not await broker.ping(timeout=3):
            raise ConnectionError("Kafka broker unreachable")

    beating = asyncio.create_task(keep_beating(dependencies, stop))
    ticking = asyncio.create_task(scheduler.run(stop, settings.support_sla_interval))
    try:
        await stop.wait()
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await ticking
        await beating
        await app.stop()
        await handles.close()


def main() -> None:
    """Entry point."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(run())


if __name__ == "__main__":
    main()
