"""The outbox relay: publishes a service's committed events to Kafka in the global order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from crm_eventstore.kafka import cloudevent_headers, encode_value, ensure_topics, topic_is_empty
from crm_eventstore.metrics import RELAY_LAG_EVENTS, RELAY_LAG_SECONDS, RELAY_PUBLISHED
from crm_eventstore.store import PostgresEventStore
from crm_eventstore.worker_probes import HEARTBEAT

log = logging.getLogger(__name__)


class OutboxRelay:
    """Tails the event store below the transaction horizon and publishes with acks=all.

    At-least-once: the published position is stored only after the broker acknowledged
    every record up to it, so a relay killed at any point republishes, never skips.
    """

    def __init__(
        self,
        store: PostgresEventStore,
        producer: AIOKafkaProducer,
        bootstrap_servers: str,
        topic: str,
        partitions: int = 6,
        name: str = "kafka",
        batch_size: int = 500,
        poll_interval: float = 1.0,
        security: dict[str, Any] | None = None,
    ) -> None:
        self.store = store
        self.producer = producer
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.partitions = partitions
        self.name = name
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.security = security or {}
        self._wake = asyncio.Event()
        self.ready = asyncio.Event()
        self.standby = False

    async def position(self) -> tuple[int, int]:
        """The last global position acknowledged by the broker."""
        row = await self.store.pool.fetchrow(
            "SELECT tx_id::text AS tx_text, position FROM relay_positions WHERE relay = $1", self.name
        )
        return (0, 0) if row is None else (int(row["tx_text"]), row["position"])

    async def _save(self, position: tuple[int, int], count: int) -> None:
        await self.store.pool.execute(
            "INSERT INTO relay_positions (relay, tx_id, position, published) VALUES ($1, $2::text::xid8, $3, $4)"
            " ON CONFLICT (relay) DO UPDATE SET tx_id = EXCLUDED.tx_id, position = EXCLUDED.position,"
            " published = relay_positions.published + EXCLUDED.published, updated_at = now()",
            self.name,
            str(position[0]),
            position[1],
            count,
        )

    async def _reset_if_broker_lost_data(self) -> None:
        created = await ensure_topics(self.bootstrap_servers, [self.topic], self.partitions, security=self.security)
        position = await self.position()
        if position == (0, 0):
            return
        # A topic that is new or empty while we have published before means the broker lost
        # its data (an in-memory broker restarted, or a topic was recreated). The events are
        # the source of truth, so publish them all again; consumers dedupe by event id.
        if self.topic in created or await topic_is_empty(self.producer, self.topic, self.security):
            log.warning("topic %s is empty but %s was published: republishing from the start", self.topic, position)
            await self.store.pool.execute(
                "UPDATE relay_positions SET tx_id = '0'::xid8, position = 0 WHERE relay = $1", self.name
            )

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def publish_pending(self) -> int:
        """Publish every committed event after the stored position; return how many."""
        total = 0
        position = await self.position()
        while True:
            batch = await self.store.read_all(position, self.batch_size)
            if not batch:
                break
            futures = [
                await self.producer.send(
                    self.topic,
                    value=encode_value(item.envelope),
                    key=str(item.envelope.customer_id).encode(),
                    headers=cloudevent_headers(item.envelope, self.store.service),
                )
                for item in batch
            ]
            await asyncio.gather(*futures)
            position = batch[-1].global_position
            await self._save(position, len(batch))
            total += len(batch)
            RELAY_PUBLISHED.labels(self.store.service).inc(len(batch))
        await self._update_lag(position)
        return total

    async def _update_lag(self, position: tuple[int, int]) -> None:
        row = await self.store.pool.fetchrow(
            "SELECT count(*) AS n, min(recorded_at) AS oldest FROM events"
            " WHERE (tx_id, position) > ($1::text::xid8, $2::bigint)",
            str(position[0]),
            position[1],
        )
        assert row is not None
        RELAY_LAG_EVENTS.labels(self.store.service).set(row["n"])
        oldest = row["oldest"]
        RELAY_LAG_SECONDS.labels(self.store.service).set(
            0 if oldest is None else max(0.0, (datetime.now(UTC) - oldest).total_seconds())
        )

    async def _blocked_by_horizon(self) -> bool:
        position = await self.position()
        return bool(
            await self.store.pool.fetchval(
                "SELECT EXISTS (SELECT 1 FROM events WHERE (tx_id, position) > ($1::text::xid8, $2::bigint))",
                str(position[0]),
                position[1],
            )
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until stop is set, woken by NOTIFY with a polling fallback."""
        listener: asyncpg.Connection = await self.store.pool.acquire()
        try:
            # Exactly one active publisher per service: replicas queue on a session-level
            # advisory lock and take over when the holder's connection goes away.
            key = zlib.crc32(f"crm-relay:{self.name}".encode())
            while not await listener.fetchval("SELECT pg_try_advisory_lock($1)", key):
                self.standby = True
                HEARTBEAT.beat()  # a healthy standby: the database answers, another replica publishes
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
                if stop.is_set():
                    return
            self.standby = False
            await self._reset_if_broker_lost_data()
            await listener.add_listener("crm_events", self._on_notify)
            self.ready.set()
            while not stop.is_set():
                self._wake.clear()
                await self.publish_pending()
                # Committed events above the horizon wait for an older transaction, possibly in
                # another database of the cluster whose commit sends us no NOTIFY: look again soon.
                blocked = await self._blocked_by_horizon()
                HEARTBEAT.beat()
                waiter = asyncio.ensure_future(self._wake.wait())
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait(
                    [waiter, stopper],
                    timeout=0.005 if blocked else self.poll_interval,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                for task in (waiter, stopper):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        finally:
            with contextlib.suppress(Exception):
                await listener.remove_listener("crm_events", self._on_notify)
            await self.store.pool.release(listener)
