"""The projection consumer process: `python -m crm_projections.consumer`."""

from __future__ import annotations

import asyncio
import logging

from crm_eventstore.host import open_keyring, stop_on_signals
from crm_eventstore.kafka import client_security, ensure_topics, faststream_security
from crm_eventstore.projection import ProjectionRunner, build_consumer_app, deadletter_to
from crm_eventstore.store import create_pool
from crm_eventstore.worker_probes import keep_beating
from crm_schemas.registry import DEADLETTER_TOPIC, SERVICES, topic_for
from faststream.kafka import KafkaBroker

from crm_projections.facts.store import facts_runner
from crm_projections.rebuild.lag import KafkaEndOffsets, LagMonitor
from crm_projections.settings import ProjectionsSettings
from crm_projections.timeline.project import TimelineProjection

log = logging.getLogger(__name__)


async def run() -> None:
    """Consume every service topic into the read models until SIGTERM."""
    settings = ProjectionsSettings()
    topics = [topic_for(s) for s in SERVICES]
    await ensure_topics(
        settings.kafka_bootstrap_servers,
        [*topics, DEADLETTER_TOPIC],
        settings.kafka_partitions,
        security=client_security(settings),
    )
    pool = await create_pool(settings.projections_database_url)
    broker = KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id="crm-projections",
        acks="all",
        security=faststream_security(settings),
    )
    timeline = TimelineProjection()
    runner = ProjectionRunner(
        pool, timeline, deadletter_to(broker, timeline.name), max_attempts=settings.projection_max_attempts
    )
    keyring, keys_pool = await open_keyring(settings)
    facts = facts_runner(pool, keyring, deadletter_to(broker, "facts"), settings.projection_max_attempts)
    app = build_consumer_app(broker, [runner, facts], topics, settings.projections_group_id)
    stop = asyncio.Event()
    stop_on_signals(stop)
    await app.start()

    async def dependencies() -> None:
        await pool.fetchval("SELECT 1")
        if not await broker.ping(timeout=3):
            raise ConnectionError("Kafka broker unreachable")

    beating = asyncio.create_task(keep_beating(dependencies, stop))
    ends = KafkaEndOffsets(settings.kafka_bootstrap_servers, topics, client_security(settings))
    lag = asyncio.create_task(LagMonitor(pool, [r.projection.name for r in (runner, facts)], ends).run(stop))
    try:
        await stop.wait()
    finally:
        await beating
        await lag
        await ends.close()
        await app.stop()
        await pool.close()
        await keys_pool.close()


def main() -> None:
    """Entry point."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(run())


if __name__ == "__main__":
    main()
