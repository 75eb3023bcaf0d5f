"""Audit of one customer's timeline against the source event stores of the services.

The timeline is a copy; the proof is in the services' own hash-chained event stores. For every stream
behind the customer's entries, the whole stream is read from its service's database (read-only URL),
its chain recomputed from version 1, and each timeline entry compared with the source event it copies.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
from crm_eventstore.hashing import event_hash
from crm_schemas.envelope import ActorRef, EventEnvelope

_SOURCE_COLUMNS = (
    "event_id, type, schema_version, service, stream_id, version, customer_id, occurred_at,"
    " recorded_at, actor, correlation_id, causation_id, traceparent, payload, prev_hash, hash"
)


@dataclass(frozen=True)
class Break:
    """The first event whose proof does not hold."""

    service: str
    stream_id: str
    version: int
    event_id: UUID | None
    reason: str

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "service": self.service,
            "stream_id": self.stream_id,
            "version": self.version,
            "event_id": None if self.event_id is None else str(self.event_id),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Verdict:
    """Result of verifying a customer's timeline."""

    events_checked: int
    streams_checked: int
    entries_checked: int
    first_broken: Break | None

    def to_json(self) -> dict[str, Any]:
        """The body of GET /customers/{id}/timeline/verify."""
        body: dict[str, Any] = {
            "valid": self.first_broken is None,
            "events_checked": self.events_checked,
            "streams_checked": self.streams_checked,
            "entries_checked": self.entries_checked,
        }
        if self.first_broken is not None:
            body["first_broken"] = self.first_broken.to_json()
        return body


class SourceUnavailable(RuntimeError):
    """A service's event store is not configured or not reachable."""


def _envelope(row: asyncpg.Record) -> EventEnvelope:
    return EventEnvelope(
        event_id=row["event_id"],
        type=row["type"],
        schema_version=row["schema_version"],
        service=row["service"],
        stream_id=row["stream_id"],
        version=row["version"],
        customer_id=row["customer_id"],
        occurred_at=row["occurred_at"],
        recorded_at=row["recorded_at"],
        actor=ActorRef.model_validate(row["actor"]),
        correlation_id=row["correlation_id"],
        causation_id=row["causation_id"],
        traceparent=row["traceparent"],
        payload=row["payload"],
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )


def check_stream(service: str, stream_id: str, events: Sequence[EventEnvelope]) -> tuple[int, Break | None]:
    """Recompute one stream's chain from version 1: (events checked, first break or None)."""
    prev: EventEnvelope | None = None
    for checked, env in enumerate(events, start=1):
        expected_version = 1 if prev is None else prev.version + 1
        if env.version != expected_version:
            return checked, Break(service, stream_id, expected_version, None, f"version {expected_version} is missing")
        if env.prev_hash != (None if prev is None else prev.hash):
            return checked, Break(service, stream_id, env.version, env.event_id, "prev_hash does not match")
        if event_hash(env.model_dump()) != env.hash:
            return checked, Break(service, stream_id, env.version, env.event_id, "hash does not match its contents")
        prev = env
    return len(events), None


@dataclass(frozen=True)
class Entry:
    """What the timeline holds of one event."""

    event_id: UUID
    service: str
    stream_id: str
    version: int
    hash: str
    facts: tuple[Any, ...] = ()

    def copies(self, original: EventEnvelope) -> bool:
        """True if the entry is a faithful copy of the source event (same id, hash and content)."""
        if original.event_id != self.event_id or original.hash != self.hash:
            return False
        return not self.facts or self.facts == _facts(original)


def _facts(env: EventEnvelope) -> tuple[Any, ...]:
    return (env.type, env.customer_id, env.occurred_at, env.recorded_at, env.payload)


async def verify_entries(entries: Sequence[Entry], sources: Mapping[str, asyncpg.Pool]) -> Verdict:
    """Verify the chains behind `entries` in their sources and that each entry copies its source event."""
    streams: dict[str, dict[str, list[Entry]]] = defaultdict(lambda: defaultdict(list))
    for entry in entries:
        streams[entry.service][entry.stream_id].append(entry)
    checked = 0
    stream_count = 0
    for service in sorted(streams):
        pool = sources.get(service)
        if pool is None:
            raise SourceUnavailable(f"no event store configured for {service}")
        by_stream = streams[service]
        try:
            rows = await pool.fetch(
                f"SELECT {_SOURCE_COLUMNS} FROM events WHERE stream_id = ANY($1::text[]) ORDER BY stream_id, version",
                sorted(by_stream),
            )
        except (OSError, asyncpg.PostgresError) as exc:
            raise SourceUnavailable(f"event store of {service} unreachable: {type(exc).__name__}") from exc
        source: dict[str, list[EventEnvelope]] = defaultdict(list)
        for row in rows:
            source[row["stream_id"]].append(_envelope(row))
        for stream_id in sorted(by_stream):
            stream_count += 1
            n, broken = check_stream(service, stream_id, source.get(stream_id, []))
            checked += n
            if broken is not None:
                return Verdict(checked, stream_count, len(entries), broken)
            at_version = {e.version: e for e in source.get(stream_id, [])}
            for entry in sorted(by_stream[stream_id], key=lambda e: e.version):
                original = at_version.get(entry.version)
                if original is None:
                    return Verdict(
                        checked,
                        stream_count,
                        len(entries),
                        Break(service, stream_id, entry.version, entry.event_id, "not in the source event store"),
                    )
                if not entry.copies(original):
                    return Verdict(
                        checked,
                        stream_count,
                        len(entries),
                        Break(
                            service,
                            stream_id,
                            entry.version,
                            entry.event_id,
                            "timeline entry differs from the source event it copies",
                        ),
                    )
    return Verdict(checked, stream_count, len(entries), None)


async def customer_entries(pool: asyncpg.Pool, members: Sequence[UUID]) -> list[Entry]:
    """The audit-relevant fields of every timeline entry of these customers."""
    rows = await pool.fetch(
        "SELECT event_id, service, stream_id, version, hash, type, customer_id, occurred_at, recorded_at, data"
        " FROM timeline_entries WHERE customer_id = ANY($1::uuid[])",
        list(members),
    )
    return [
        Entry(
            r["event_id"],
            r["service"],
            r["stream_id"],
            r["version"],
            r["hash"],
            (r["type"], r["customer_id"], r["occurred_at"], r["recorded_at"], r["data"]),
        )
        for r in rows
    ]
