"""Projection lag per projection and partition (/metrics of the consumer) and the query API's /readyz."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from crm_cli.testing import Kafka
from crm_eventstore.kafka import ensure_topics, start_producer
from crm_eventstore.keyring import Keyring
from crm_projections.rebuild.lag import KafkaEndOffsets, LagMonitor, measure
from crm_projections.rebuild.status import LagThresholds
from prometheus_client import REGISTRY

from .builders import World, open_world

NOW = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)


def test_a_caught_up_partition_has_no_lag_and_a_partition_never_consumed_lags_by_all_its_records() -> None:
    behind_since: dict[tuple[str, str, int], datetime] = {}
    ends = {("t", 0): 10, ("t", 1): 4}
    positions = {("timeline", "t", 0): (10, NOW - timedelta(hours=5))}
    first, second = measure(["timeline"], ends, positions, behind_since, NOW, 5.0)
    assert (first.lag_events, first.lag_seconds) == (0, 0.0)
    assert (second.lag_events, second.lag_seconds) == (4, 5.0)  # first seen now: at most one interval old


def test_seconds_behind_is_the_smaller_of_two_upper_bounds() -> None:
    behind_since: dict[tuple[str, str, int], datetime] = {}
    key = ("timeline", "t", 0)
    idle_then_burst = {key: (7, NOW - timedelta(hours=3))}  # last event applied hours ago, one just arrived
    [o] = measure(["timeline"], {("t", 0): 8}, idle_then_burst, behind_since, NOW, 5.0)
    assert o.lag_seconds == 5.0
    later = NOW + timedelta(minutes=10)
    [stuck] = measure(["timeline"], {("t", 0): 50}, idle_then_burst, behind_since, later, 5.0)
    assert stuck.lag_seconds == 605.0  # behind for ten minutes (+ one interval)
    busy = {key: (49, later - timedelta(seconds=2))}
    [flowing] = measure(["timeline"], {("t", 0): 50}, busy, behind_since, later, 5.0)
    assert flowing.lag_seconds == 2.0
    [caught_up] = measure(["timeline"], {("t", 0): 50}, {key: (50, later)}, behind_since, later, 5.0)
    assert caught_up.lag_seconds == 0.0
    assert behind_since == {}


@pytest_asyncio.fixture(loop_scope="session")
async def world(pg_admin_url: str, keyring: Keyring) -> AsyncIterator[World]:
    async with open_world(pg_admin_url, keyring) as w:
        yield w


@pytest.mark.integration
async def test_the_consumer_exports_lag_per_partition_and_readyz_fails_when_too_far_behind(
    world: World, kafka: Kafka
) -> None:
    topic = f"crm.test-lag-{secrets.token_hex(4)}.v1"
    await ensure_topics(kafka.bootstrap_servers, [topic], partitions=2)
    producer = await start_producer(kafka.bootstrap_servers)
    try:
        for i in range(5):
            await producer.send_and_wait(topic, f"event {i}".encode(), partition=0)
        await producer.send_and_wait(topic, b"event", partition=1)
    finally:
        await producer.stop()
    await world.read_pool.execute(
        "INSERT INTO projection_positions (projection, topic, partition, next_offset, last_recorded_at)"
        " VALUES ('timeline', $1, 0, 2, now() - interval '1 hour'), ('timeline', $1, 1, 1, now())",
        topic,
    )
    ends = KafkaEndOffsets(kafka.bootstrap_servers, [topic])
    try:
        observed = await LagMonitor(world.read_pool, ["timeline"], ends).sample()
    finally:
        await ends.close()
    assert [(o.partition, o.lag_events) for o in observed] == [(0, 3), (1, 0)]
    labels = {"projection": "timeline", "topic": topic, "partition": "0"}
    assert REGISTRY.get_sample_value("crm_projection_partition_lag_events", labels) == 3
    assert REGISTRY.get_sample_value("crm_projection_partition_lag_seconds", labels) == 5.0

    app = world.client._transport.app  # type: ignore[attr-defined]
    ready = await world.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    app.state.lag_thresholds = LagThresholds(max_events=2)
    try:
        not_ready = await world.client.get("/readyz")
    finally:
        app.state.lag_thresholds = LagThresholds()
    assert not_ready.status_code == 503
    assert not_ready.json()["failing"] == ["projections"]
