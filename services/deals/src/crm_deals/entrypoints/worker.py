"""The deals worker process: the customer replica consumer and the scheduler (contract expiry, invoice overdue).

`python -m crm_deals.entrypoints.worker` (or `python -m crm_cli.processes deals-worker`).
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

from crm_deals.app.commands import DealsCommands
from crm_deals.app.scheduler import DealsScheduler
from crm_deals.deadlines import PostgresDeadlines
from crm_deals.replica.project import Change, CustomerReplicaProjection
from crm_deals.settings import DealsSettings

log = logging.getLogger(__name__)


async def run() -> None:
    """Keep the customer replica current and act on passed contract end / invoice due dates until SIGTERM."""
    settings = DealsSettings()
    os.environ.setdefault("CRM_DEALS_DATABASE_URL", settings.deals_database_url)
    contacts = topic_for("contacts")
    await ensure_topics(
        settings.kafka_bootstrap_servers,
        [contacts, DEADLETTER_TOPIC],
        settings.kafka_partitions,
        security=client_security(settings),
    )
    handles = await open_store("deals", settings, max_size=8)
    broker = KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id="crm-deals-worker",
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
    app = build_consumer_app(broker, [runner], [contacts], settings.deals_replica_group_id)
    deadlines = PostgresDeadlines(handles.pool)
    commands = DealsCommands(handles.store, deadlines=deadlines, pipelines=settings.pipelines())
    scheduler = DealsScheduler(commands, deadlines)
    stop = asyncio.Event()
    stop_on_signals(stop)
    await app.start()

    async def dependencies() -> None:
        await handles.pool.fetchval("SELECT 1")
        if not await broker.ping(timeout=3):
            raise ConnectionError("Kafka broker unreachable")

    beating = asyncio.create_task(keep_beating(dependencies, stop))
    ticking = asyncio.create_task(scheduler.run(stop, settings.deals_scheduler_interval))
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
