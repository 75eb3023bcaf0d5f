"""Projection runtime: apply each event once, with its position and dedupe record, in one transaction."""

from __future__ import annotations

import asyncio
import enum
import logging
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

import asyncpg
from aiokafka import ConsumerRecord
from crm_schemas.envelope import EventEnvelope
from crm_schemas.registry import DEADLETTER_TOPIC
from faststream import AckPolicy, FastStream
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from crm_eventstore.kafka import decode_headers, decode_value
from crm_eventstore.metrics import (
    PROJECTION_APPLIED,
    PROJECTION_DEADLETTERED,
    PROJECTION_DUPLICATES,
    PROJECTION_FAILURES,
    PROJECTION_LAG_EVENTS,
    PROJECTION_LAG_SECONDS,
)

log = logging.getLogger(__name__)

PROJECTION_RUNTIME_DDL = """
CREATE TABLE IF NOT EXISTS processed_events (
    projection   text        NOT NULL,
    event_id     uuid        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, event_id)
);
CREATE TABLE IF NOT EXISTS projection_positions (
    projection       text        NOT NULL,
    topic            text        NOT NULL,
    partition        integer     NOT NULL,
    next_offset      bigint      NOT NULL,
    last_recorded_at timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, topic, partition)
);
"""

C = TypeVar("C")


class Projection(Protocol[C]):
    """A read model: a pure project() and a store that applies the resulting change."""

    name: str

    def project(self, event: EventEnvelope) -> C | None:
        """The change an event makes to the read model (None: no change)."""
        ...

    async def apply(self, conn: asyncpg.Connection, change: C) -> None:
        """Apply a change inside the caller's transaction."""
        ...


class Outcome(enum.Enum):
    """What handling one delivered record came to."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    DEADLETTERED = "deadlettered"


@dataclass(frozen=True)
class Delivery:
    """One record as delivered by the broker."""

    topic: str
    partition: int
    offset: int
    value: bytes
    headers: dict[str, str]


DeadLetterSink = Callable[[Delivery, str, int], Awaitable[None]]


class ProjectionRunner(Generic[C]):
    """Applies deliveries to one projection with bounded retries and a dead-letter topic."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        projection: Projection[C],
        deadletter: DeadLetterSink,
        max_attempts: int = 5,
        backoff: float = 0.1,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.pool = pool
        self.projection = projection
        self.deadletter = deadletter
        self.max_attempts = max_attempts
        self.backoff = backoff
        self._sleep = sleep

    async def _apply_once(self, delivery: Delivery, envelope: EventEnvelope) -> Outcome:
        name = self.projection.name
        async with self.pool.acquire() as conn, conn.transaction():
            fresh = await conn.fetchval(
                "INSERT INTO processed_events (projection, event_id) VALUES ($1, $2)"
                " ON CONFLICT DO NOTHING RETURNING true",
                name,
                envelope.event_id,
            )
            if fresh:
                change = self.projection.project(envelope)
                if change is not None:
                    await self.projection.apply(conn, change)
            await conn.execute(
                "INSERT INTO projection_positions (projection, topic, partition, next_offset, last_recorded_at)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (projection, topic, partition) DO UPDATE"
                " SET next_offset = GREATEST(projection_positions.next_offset, EXCLUDED.next_offset),"
                " last_recorded_at = EXCLUDED.last_recorded_at, updated_at = now()",
                name,
                delivery.topic,
                delivery.partition,
                delivery.offset + 1,
                envelope.recorded_at,
            )
        return Outcome.APPLIED if fresh else Outcome.DUPLICATE

    async def handle(self, delivery: Delivery) -> Outcome:
        """Apply a delivery exactly once in effect; dead-letter it after bounded retries."""
        name = self.projection.name
        error = ""
        try:
            envelope = decode_value(delivery.value)
        except ValueError as exc:
            PROJECTION_FAILURES.labels(name).inc()
            await self.deadletter(delivery, f"undecodable record: {exc}", 0)
            PROJECTION_DEADLETTERED.labels(name).inc()
            return Outcome.DEADLETTERED
        for attempt in range(1, self.max_attempts + 1):
            try:
                outcome = await self._apply_once(delivery, envelope)
            except Exception as exc:
                PROJECTION_FAILURES.labels(name).inc()
                error = "".join(traceback.format_exception_only(exc)).strip()
                log.warning(
                    "%s: attempt %d/%d failed for %s: %s",
                    name,
                    attempt,
                    self.max_attempts,
                    envelope.event_id,
                    error,
                )
                if attempt < self.max_attempts:
                    await self._sleep(self.backoff * 2 ** (attempt - 1))
                continue
            if outcome is Outcome.APPLIED:
                PROJECTION_APPLIED.labels(name).inc()
            else:
                PROJECTION_DUPLICATES.labels(name).inc()
            lag = (datetime.now(UTC) - envelope.recorded_at).total_seconds()
            PROJECTION_LAG_SECONDS.labels(name).set(max(lag, 0.0))
            return outcome
        await self.deadletter(delivery, error, self.max_attempts)
        PROJECTION_DEADLETTERED.labels(name).inc()
        return Outcome.DEADLETTERED


def deadletter_to(broker: KafkaBroker, projection: str) -> DeadLetterSink:
    """A sink publishing failed records to crm.deadletter.v1 with the error and original headers."""

    async def send(delivery: Delivery, error: str, attempts: int) -> None:
        headers = {
            **delivery.headers,
            "x-crm-error": error[:4000],
            "x-crm-attempts": str(attempts),
            "x-crm-projection": projection,
            "x-crm-original-topic": delivery.topic,
            "x-crm-original-partition": str(delivery.partition),
            "x-crm-original-offset": str(delivery.offset),
        }
        delay = 0.5
        while True:
            # Never drop a failed event: if the dead-letter topic is unreachable, keep trying
            # (the partition waits, the offset stays uncommitted, nothing is lost).
            try:
                await broker.publish(delivery.value, topic=DEADLETTER_TOPIC, headers=headers)
                return
            except Exception as exc:
                log.error("dead-letter publish failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    return send


def to_delivery(record: ConsumerRecord[Any, Any]) -> Delivery:
    """A Delivery from an aiokafka record."""
    return Delivery(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        value=record.value or b"",
        headers=decode_headers(list(record.headers or ())),
    )


def build_consumer_app(
    broker: KafkaBroker,
    runners: Sequence[ProjectionRunner[Any]],
    topics: Sequence[str],
    group_id: str,
    fetch_max_wait_ms: int = 20,
) -> FastStream:
    """A FastStream app feeding every topic record to the runners, committing only afterwards.

    `fetch_max_wait_ms` bounds how long an idle fetch waits on the broker: aiokafka's default
    (500 ms) would add up to half a second between a relay's publish and the read model.
    """

    @broker.subscriber(
        *topics,
        group_id=group_id,
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset="earliest",
        max_records=100,
        fetch_max_wait_ms=fetch_max_wait_ms,
    )
    async def on_record(body: Any, msg: KafkaMessage) -> None:
        record = msg.raw_message
        assert not isinstance(record, tuple)
        delivery = to_delivery(record)
        for runner in runners:
            await runner.handle(delivery)
        # Committed only after every projection stored the event (or dead-lettered it):
        # a crash before this line redelivers, and the dedupe table absorbs the repeat.
        await msg.ack()
        consumer = getattr(msg, "consumer", None)
        highwater = getattr(consumer, "highwater", None)
        if callable(highwater):
            from aiokafka.structs import TopicPartition

            end = highwater(TopicPartition(record.topic, record.partition))
            if end is not None:
                for runner in runners:
                    PROJECTION_LAG_EVENTS.labels(runner.projection.name, record.topic, record.partition).set(
                        max(end - record.offset - 1, 0)
                    )

    return FastStream(broker)
