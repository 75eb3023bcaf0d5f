"""Operational state of the read models: rebuilds in progress and consumer lag, as the query API reads it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

OPERATIONS_DDL = """
CREATE TABLE IF NOT EXISTS projection_rebuilds (
    projection   text        PRIMARY KEY,
    source       text        NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    events_done  bigint      NOT NULL DEFAULT 0,
    events_total bigint
);
CREATE TABLE IF NOT EXISTS projection_lag (
    projection    text        NOT NULL,
    topic         text        NOT NULL,
    partition     integer     NOT NULL,
    end_offset    bigint      NOT NULL,
    next_offset   bigint      NOT NULL,
    lag_events    bigint      NOT NULL,
    lag_seconds   double precision NOT NULL,
    observed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, topic, partition)
);
"""

OPERATIONS_GRANTS = """
GRANT SELECT ON projection_rebuilds TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE ON projection_lag TO {role};
"""

#: A rebuild whose process has not reported for this long is taken as interrupted, not running.
REBUILD_HEARTBEAT_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class PartitionLag:
    """How far one projection is behind on one partition, as the consumer last observed it."""

    projection: str
    topic: str
    partition: int
    lag_events: int
    lag_seconds: float
    observed_at: datetime


async def rebuilding(conn: asyncpg.Pool | asyncpg.Connection) -> list[str]:
    """Projections being rebuilt right now (a live rebuild process heartbeats)."""
    rows = await conn.fetch(
        "SELECT projection FROM projection_rebuilds WHERE finished_at IS NULL"
        " AND heartbeat_at > now() - make_interval(secs => $1) ORDER BY projection",
        REBUILD_HEARTBEAT_TIMEOUT_SECONDS,
    )
    return [r["projection"] for r in rows]


async def partition_lags(conn: asyncpg.Pool | asyncpg.Connection) -> list[PartitionLag]:
    """The last lag the consumers observed, per projection and partition."""
    rows = await conn.fetch(
        "SELECT projection, topic, partition, lag_events, lag_seconds, observed_at FROM projection_lag"
        " ORDER BY projection, topic, partition"
    )
    return [
        PartitionLag(r["projection"], r["topic"], r["partition"], r["lag_events"], r["lag_seconds"], r["observed_at"])
        for r in rows
    ]


class NotReady(RuntimeError):
    """The read models should not take traffic: rebuilding or too far behind."""


@dataclass(frozen=True)
class LagThresholds:
    """When the query API stops reporting ready (CRM_PROJECTION_MAX_LAG_EVENTS / _SECONDS)."""

    max_events: int = 10_000
    max_seconds: float = 300.0
    stale_after_seconds: float = 120.0


async def check_ready(conn: asyncpg.Pool | asyncpg.Connection, limits: LagThresholds, now: datetime) -> None:
    """Raise NotReady while a projection rebuilds or a partition is behind a threshold."""
    running = await rebuilding(conn)
    if running:
        raise NotReady(f"rebuilding: {', '.join(running)}")
    for lag in await partition_lags(conn):
        if (now - lag.observed_at).total_seconds() > limits.stale_after_seconds:
            continue  # no consumer reports on this partition any more (reassigned or stopped)
        if lag.lag_events > limits.max_events or lag.lag_seconds > limits.max_seconds:
            raise NotReady(
                f"{lag.projection} is {lag.lag_events} events / {lag.lag_seconds:.0f} s behind"
                f" on {lag.topic}[{lag.partition}]"
            )
