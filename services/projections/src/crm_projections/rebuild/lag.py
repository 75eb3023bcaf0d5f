"""Projection lag per projection and partition: events and seconds behind, in /metrics and for /readyz.

The consumer process compares each partition's end offset (from the broker) with the position every
projection stored with its last applied event (projection_positions), every few seconds; it exports the
result as Prometheus gauges and writes it to projection_lag, which the query API's /readyz reads.

Seconds behind is the age of the oldest event not yet applied, bounded from above two ways: the time since
the last applied event was recorded (everything unapplied was recorded later), and the time since this
monitor first saw the partition behind (plus one sampling interval). The smaller bound is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from prometheus_client import Gauge

log = logging.getLogger(__name__)

PARTITION_LAG_EVENTS = Gauge(
    "crm_projection_partition_lag_events",
    "Events on the partition not yet applied by the projection",
    ["projection", "topic", "partition"],
)
PARTITION_LAG_SECONDS = Gauge(
    "crm_projection_partition_lag_seconds",
    "Age of the oldest event on the partition not yet applied by the projection (0 when caught up)",
    ["projection", "topic", "partition"],
)

TopicPartitionKey = tuple[str, int]
EndOffsets = Callable[[], Awaitable[dict[TopicPartitionKey, int]]]


@dataclass(frozen=True)
class Observation:
    """One projection's lag on one partition."""

    projection: str
    topic: str
    partition: int
    end_offset: int
    next_offset: int
    lag_events: int
    lag_seconds: float


def measure(
    projections: Sequence[str],
    ends: dict[TopicPartitionKey, int],
    positions: dict[tuple[str, str, int], tuple[int, datetime | None]],
    behind_since: dict[tuple[str, str, int], datetime],
    now: datetime,
    interval: float,
) -> list[Observation]:
    """Lag of every projection on every partition (pure; updates `behind_since`)."""
    out: list[Observation] = []
    for name in projections:
        for (topic, partition), end in sorted(ends.items()):
            key = (name, topic, partition)
            next_offset, last_recorded = positions.get(key, (0, None))
            events = max(end - next_offset, 0)
            seconds = 0.0
            if events:
                since = behind_since.setdefault(key, now)
                seconds = (now - since).total_seconds() + interval
                if last_recorded is not None:
                    seconds = min(seconds, (now - last_recorded).total_seconds())
            else:
                behind_since.pop(key, None)
            out.append(Observation(name, topic, partition, end, next_offset, events, max(seconds, 0.0)))
    return out


class LagMonitor:
    """Samples projection lag every `interval` seconds until stopped."""

    def __init__(
        self, pool: asyncpg.Pool, projections: Sequence[str], end_offsets: EndOffsets, interval: float = 5.0
    ) -> None:
        self.pool = pool
        self.projections = list(projections)
        self.end_offsets = end_offsets
        self.interval = interval
        self._behind_since: dict[tuple[str, str, int], datetime] = {}

    async def sample(self, now: datetime | None = None) -> list[Observation]:
        """Measure once, export the gauges and store the observation for /readyz."""
        ends = await self.end_offsets()
        rows = await self.pool.fetch(
            "SELECT projection, topic, partition, next_offset, last_recorded_at FROM projection_positions"
            " WHERE projection = ANY($1::text[])",
            self.projections,
        )
        positions = {
            (r["projection"], r["topic"], r["partition"]): (r["next_offset"], r["last_recorded_at"]) for r in rows
        }
        observed = measure(
            self.projections, ends, positions, self._behind_since, now or datetime.now(UTC), self.interval
        )
        for o in observed:
            labels = (o.projection, o.topic, str(o.partition))
            PARTITION_LAG_EVENTS.labels(*labels).set(o.lag_events)
            PARTITION_LAG_SECONDS.labels(*labels).set(o.lag_seconds)
        await self.pool.executemany(
            "INSERT INTO projection_lag (projection, topic, partition, end_offset, next_offset, lag_events,"
            " lag_seconds, observed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, now())"
            " ON CONFLICT (projection, topic, partition) DO UPDATE SET end_offset = EXCLUDED.end_offset,"
            " next_offset = EXCLUDED.next_offset, lag_events = EXCLUDED.lag_events,"
            " lag_seconds = EXCLUDED.lag_seconds, observed_at = EXCLUDED.observed_at",
            [
                (o.projection, o.topic, o.partition, o.end_offset, o.next_offset, o.lag_events, o.lag_seconds)
                for o in observed
            ],
        )
        return observed

    async def run(self, stop: asyncio.Event) -> None:
        """Sample until `stop` is set; a failed sample is logged and retried next interval."""
        while not stop.is_set():
            try:
                await self.sample()
            except Exception as exc:
                log.warning("lag sample failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)


class KafkaEndOffsets:
    """End offsets of every partition of some topics, from a group-less aiokafka consumer."""

    def __init__(self, bootstrap_servers: str, topics: Sequence[str], security: dict[str, Any] | None = None) -> None:
        from aiokafka import AIOKafkaConsumer

        self.topics = list(topics)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers, enable_auto_commit=False, **(security or {})
        )
        self._started = False

    async def __call__(self) -> dict[TopicPartitionKey, int]:
        """{(topic, partition): end offset} of every known partition."""
        from aiokafka.structs import TopicPartition

        if not self._started:
            await self._consumer.start()
            self._started = True
        await self._consumer.topics()  # refreshes the metadata: partitions added since are seen
        partitions = [
            TopicPartition(topic, p)
            for topic in self.topics
            for p in sorted(self._consumer.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            return {}
        ends = await self._consumer.end_offsets(partitions)
        return {(tp.topic, tp.partition): int(offset) for tp, offset in ends.items()}

    async def close(self) -> None:
        """Stop the metadata consumer."""
        if self._started:
            await self._consumer.stop()
