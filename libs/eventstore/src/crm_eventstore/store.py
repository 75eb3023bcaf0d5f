"""PostgreSQL event store: optimistic appends with a hash chain, gap-safe global reads."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
from crm_schemas.base import ENVELOPE_MEMBERS, DomainEvent
from crm_schemas.envelope import ActorRef, EventEnvelope
from crm_schemas.registry import event_model

from crm_eventstore.errors import IdempotencyKeyReused, WrongExpectedVersion
from crm_eventstore.hashing import event_hash
from crm_eventstore.ids import new_id
from crm_eventstore.keyring import Keyring

NO_STREAM = 0


@dataclass(frozen=True)
class CommandContext:
    """Who issued a command and how it relates to other messages."""

    actor: ActorRef
    correlation_id: UUID = field(default_factory=new_id)
    causation_id: UUID | None = None
    traceparent: str | None = None


@dataclass(frozen=True)
class StreamState:
    """A stream's head as a writer saw it: version (0 = no stream) and the head event's hash."""

    version: int
    hash: str | None = None


@dataclass(frozen=True)
class IdempotencyClaim:
    """An Idempotency-Key (scoped by the caller) and a fingerprint of the request it came with."""

    key: str
    request_hash: str


@dataclass(frozen=True)
class StoredResponse:
    """The first response given to an idempotent command."""

    status_code: int
    body: dict[str, Any]


@dataclass(frozen=True)
class AppendResult:
    """What an append wrote, or the stored response of an earlier identical command."""

    stream_id: str
    version: int
    events: tuple[EventEnvelope, ...] = ()
    replayed: StoredResponse | None = None


@dataclass(frozen=True)
class NewStream:
    """The first events of a stream, with the idempotency claim of the command behind them."""

    stream_id: str
    events: Sequence[DomainEvent]
    idempotency: IdempotencyClaim
    respond: Callable[[AppendResult], StoredResponse] | None = None


@dataclass(frozen=True)
class RecordedEvent:
    """A stored envelope with its place in the global order."""

    envelope: EventEnvelope
    tx_id: int
    position: int

    @property
    def global_position(self) -> tuple[int, int]:
        """(tx_id, position): the global order key."""
        return (self.tx_id, self.position)


@dataclass(frozen=True)
class ChainBreak:
    """The first event whose stored hash chain does not verify."""

    event_id: UUID
    stream_id: str
    version: int
    reason: str


_COLUMNS = (
    "event_id, type, schema_version, service, stream_id, version, customer_id, occurred_at,"
    " recorded_at, actor, correlation_id, causation_id, traceparent, payload, prev_hash, hash"
)

_INSERT = f"INSERT INTO events ({_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16)"

_SELECT = f"SELECT tx_id::text AS tx_text, position, {_COLUMNS} FROM events"


async def init_connection(conn: asyncpg.Connection) -> None:
    """Register JSON codecs so jsonb columns read and write Python objects."""
    for typename in ("jsonb", "json"):
        await conn.set_type_codec(
            typename,
            encoder=lambda v: json.dumps(v, ensure_ascii=False, separators=(",", ":")),
            decoder=json.loads,
            schema="pg_catalog",
        )


#: Longest a statement may run (seconds) on a pool from create_pool, unless CRM_STATEMENT_TIMEOUT_SECONDS
#: or the caller says otherwise: no API request holds a connection busy for longer (0 disables it).
DEFAULT_STATEMENT_TIMEOUT = 5.0


def statement_timeout_ms(seconds: float | None = None) -> int:
    """The statement timeout in milliseconds: `seconds`, else CRM_STATEMENT_TIMEOUT_SECONDS, else 5 s."""
    import os

    chosen = (
        seconds
        if seconds is not None
        else float(os.environ.get("CRM_STATEMENT_TIMEOUT_SECONDS") or DEFAULT_STATEMENT_TIMEOUT)
    )
    if chosen < 0:
        raise ValueError("a statement timeout cannot be negative")
    return round(chosen * 1000)


async def create_pool(
    dsn: str, min_size: int = 2, max_size: int = 20, statement_timeout: float | None = None
) -> asyncpg.Pool:
    """A connection pool with the event store's codecs and a server-side statement timeout (seconds)."""
    timeout = statement_timeout_ms(statement_timeout)
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=init_connection,
        server_settings={"statement_timeout": str(timeout)} if timeout else None,
    )
    assert pool is not None
    return pool


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


def _recorded(row: asyncpg.Record) -> RecordedEvent:
    return RecordedEvent(envelope=_envelope(row), tx_id=int(row["tx_text"]), position=row["position"])


class PostgresEventStore:
    """The event store of one service, in that service's own database."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        service: str,
        keyring: Keyring,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.pool = pool
        self.service = service
        self.keyring = keyring
        self._clock = clock

    async def _seal(
        self,
        stream_id: str,
        start: StreamState,
        events: Sequence[DomainEvent],
        ctx: CommandContext,
    ) -> list[EventEnvelope]:
        recorded_at = self._clock()
        prev_hash = start.hash
        sealed: list[EventEnvelope] = []
        for offset, event in enumerate(events, start=1):
            event_id = new_id()
            payload = await self.keyring.encrypt_fields(
                event.customer_id, event_id, event.to_payload(), event.personal_fields()
            )
            body: dict[str, Any] = {
                "event_id": event_id,
                "type": event.type,
                "schema_version": event.schema_version,
                "service": self.service,
                "stream_id": stream_id,
                "version": start.version + offset,
                "customer_id": event.customer_id,
                "occurred_at": event.occurred_at,
                "recorded_at": recorded_at,
                "actor": ctx.actor.model_dump(mode="json"),
                "correlation_id": ctx.correlation_id,
                "causation_id": ctx.causation_id,
                "traceparent": ctx.traceparent,
                "payload": payload,
                "prev_hash": prev_hash,
            }
            digest = event_hash(body)
            sealed.append(EventEnvelope.model_validate({**body, "hash": digest}))
            prev_hash = digest
        return sealed

    async def stream_state(self, stream_id: str, conn: asyncpg.Connection | None = None) -> StreamState:
        """The stream's current head (version 0 when the stream does not exist)."""
        query = "SELECT version, hash FROM events WHERE stream_id = $1 ORDER BY version DESC LIMIT 1"
        row = await (conn or self.pool).fetchrow(query, stream_id)
        return StreamState(0, None) if row is None else StreamState(row["version"], row["hash"])

    async def find_response(self, claim: IdempotencyClaim) -> StoredResponse | None:
        """The stored response of an idempotent command already handled, if any."""
        row = await self.pool.fetchrow(
            "SELECT request_hash, status_code, response FROM idempotency_keys WHERE key = $1", claim.key
        )
        if row is None or row["status_code"] is None:
            return None
        if row["request_hash"] != claim.request_hash:
            raise IdempotencyKeyReused(claim.key)
        return StoredResponse(row["status_code"], row["response"])

    async def append(
        self,
        stream_id: str,
        expected: int | StreamState,
        events: Sequence[DomainEvent],
        ctx: CommandContext,
        *,
        idempotency: IdempotencyClaim | None = None,
        respond: Callable[[AppendResult], StoredResponse] | None = None,
        conn: asyncpg.Connection | None = None,
    ) -> AppendResult:
        """Append events if the stream is at the expected version; all or nothing.

        With `conn`, the append joins the caller's open transaction (which then decides
        commit or rollback); otherwise it runs in a transaction of its own.
        """
        if conn is not None:
            return await self._append(conn, stream_id, expected, events, ctx, idempotency, respond, False)
        async with self.pool.acquire() as own:
            return await self._append(own, stream_id, expected, events, ctx, idempotency, respond, True)

    async def _append(
        self,
        conn: asyncpg.Connection,
        stream_id: str,
        expected: int | StreamState,
        events: Sequence[DomainEvent],
        ctx: CommandContext,
        idempotency: IdempotencyClaim | None,
        respond: Callable[[AppendResult], StoredResponse] | None,
        own_transaction: bool,
    ) -> AppendResult:
        if isinstance(expected, int):
            start = await self.stream_state(stream_id, conn)
            if start.version != expected:
                raise WrongExpectedVersion(stream_id, expected, start.version)
        else:
            start = expected
        if not events:
            return AppendResult(stream_id, start.version)
        sealed = await self._seal(stream_id, start, events, ctx)
        rows = [self._row(e) for e in sealed]
        result = AppendResult(stream_id, start.version + len(sealed), tuple(sealed))
        try:
            if own_transaction and idempotency is None and len(rows) == 1:
                # One statement in autocommit is atomic; saves BEGIN/COMMIT round trips.
                await conn.execute(_INSERT, *rows[0])
                return result
            async with conn.transaction():
                if idempotency is not None:
                    replayed = await self._claim(conn, idempotency)
                    if replayed is not None:
                        return AppendResult(stream_id, start.version, replayed=replayed)
                await conn.executemany(_INSERT, rows)
                if idempotency is not None:
                    stored = respond(result) if respond else StoredResponse(200, {})
                    await conn.execute(
                        "UPDATE idempotency_keys SET status_code = $2, response = $3 WHERE key = $1",
                        idempotency.key,
                        stored.status_code,
                        stored.body,
                    )
            return result
        except asyncpg.PostgresError as exc:
            conflict = isinstance(exc, asyncpg.UniqueViolationError) and (
                exc.constraint_name == "events_stream_version"
            )
            if conflict or getattr(exc, "sqlstate", "") in ("CRM01", "CRM02"):
                current = await self.stream_state(stream_id)
                raise WrongExpectedVersion(stream_id, start.version, current.version) from exc
            raise

    async def start_streams(
        self, streams: Sequence[NewStream], ctx: CommandContext, *, conn: asyncpg.Connection | None = None
    ) -> list[AppendResult | IdempotencyKeyReused]:
        """Start many new streams in one transaction, each all-or-nothing with its idempotency claim.

        A stream whose key was claimed before is not written: its result carries the stored response,
        or is IdempotencyKeyReused when the key came with a different request. With `conn`, the
        streams join the caller's open transaction.
        """
        keys = [s.idempotency.key for s in streams]
        if len(set(keys)) != len(keys):
            raise ValueError("each new stream needs an idempotency key of its own")
        if conn is not None:
            async with conn.transaction():
                return await self._start_streams(conn, streams, ctx)
        async with self.pool.acquire() as own, own.transaction():
            return await self._start_streams(own, streams, ctx)

    async def _start_streams(
        self, conn: asyncpg.Connection, streams: Sequence[NewStream], ctx: CommandContext
    ) -> list[AppendResult | IdempotencyKeyReused]:
        # Claims first, in one statement: a key another transaction holds makes us wait for it, as in
        # _claim(); keys are created and events sealed only for the streams this call claimed.
        claimed = {
            row["key"]
            for row in await conn.fetch(
                "INSERT INTO idempotency_keys (key, request_hash) SELECT * FROM unnest($1::text[], $2::text[])"
                " ON CONFLICT (key) DO NOTHING RETURNING key",
                [s.idempotency.key for s in streams],
                [s.idempotency.request_hash for s in streams],
            )
        }
        mine = [s for s in streams if s.idempotency.key in claimed]
        await self.keyring.create_keys(e.customer_id for s in mine for e in s.events)
        results: dict[str, AppendResult | IdempotencyKeyReused] = {}
        rows: list[tuple[Any, ...]] = []
        stored: list[StoredResponse] = []
        for stream in mine:
            sealed = await self._seal(stream.stream_id, StreamState(0), stream.events, ctx)
            result = AppendResult(stream.stream_id, len(sealed), tuple(sealed))
            rows.extend(self._row(e) for e in sealed)
            stored.append(stream.respond(result) if stream.respond else StoredResponse(200, {}))
            results[stream.idempotency.key] = result
        if rows:
            await conn.executemany(_INSERT, rows)
            await conn.execute(
                "UPDATE idempotency_keys AS k SET status_code = u.status_code, response = u.response"
                " FROM unnest($1::text[], $2::integer[], $3::jsonb[]) AS u(key, status_code, response)"
                " WHERE k.key = u.key",
                [s.idempotency.key for s in mine],
                [r.status_code for r in stored],
                [r.body for r in stored],
            )
        taken = [s for s in streams if s.idempotency.key not in claimed]
        if taken:
            earlier = {
                row["key"]: row
                for row in await conn.fetch(
                    "SELECT key, request_hash, status_code, response FROM idempotency_keys WHERE key = ANY($1::text[])",
                    [s.idempotency.key for s in taken],
                )
            }
            for stream in taken:
                row = earlier[stream.idempotency.key]
                results[stream.idempotency.key] = (
                    AppendResult(stream.stream_id, 0, replayed=StoredResponse(row["status_code"], row["response"]))
                    if row["request_hash"] == stream.idempotency.request_hash
                    else IdempotencyKeyReused(stream.idempotency.key)
                )
        return [results[s.idempotency.key] for s in streams]

    async def _claim(self, conn: asyncpg.Connection, claim: IdempotencyClaim) -> StoredResponse | None:
        # Claiming the key first makes a concurrent duplicate wait on the unique index until
        # this transaction ends, then see our stored response instead of appending again.
        inserted = await conn.fetchval(
            "INSERT INTO idempotency_keys (key, request_hash) VALUES ($1, $2)"
            " ON CONFLICT (key) DO NOTHING RETURNING true",
            claim.key,
            claim.request_hash,
        )
        if inserted:
            return None
        row = await conn.fetchrow(
            "SELECT request_hash, status_code, response FROM idempotency_keys WHERE key = $1", claim.key
        )
        assert row is not None
        if row["request_hash"] != claim.request_hash:
            raise IdempotencyKeyReused(claim.key)
        return StoredResponse(row["status_code"], row["response"])

    @staticmethod
    def _row(e: EventEnvelope) -> tuple[Any, ...]:
        return (
            e.event_id,
            e.type,
            e.schema_version,
            e.service,
            e.stream_id,
            e.version,
            e.customer_id,
            e.occurred_at,
            e.recorded_at,
            e.actor.model_dump(mode="json"),
            e.correlation_id,
            e.causation_id,
            e.traceparent,
            e.payload,
            e.prev_hash,
            e.hash,
        )

    async def read_stream(self, stream_id: str, after_version: int = 0) -> list[EventEnvelope]:
        """A stream's events in version order (personal fields still encrypted)."""
        rows = await self.pool.fetch(
            f"{_SELECT} WHERE stream_id = $1 AND version > $2 ORDER BY version", stream_id, after_version
        )
        return [_envelope(r) for r in rows]

    async def load(self, stream_id: str) -> tuple[list[DomainEvent], StreamState]:
        """A stream's events decoded and decrypted, with the head state for the next append."""
        envelopes = await self.read_stream(stream_id)
        events = [await self.decode(e) for e in envelopes]
        head = StreamState(envelopes[-1].version, envelopes[-1].hash) if envelopes else StreamState(0)
        return events, head

    async def decode(self, envelope: EventEnvelope) -> DomainEvent:
        """The domain event behind an envelope, personal fields decrypted."""
        return await decode_event(self.keyring, envelope)

    async def read_all(self, after: tuple[int, int] = (0, 0), limit: int = 500) -> list[RecordedEvent]:
        """Events after a global position, in global order, never skipping a late commit."""
        # Only rows below the snapshot's xmin are read: every transaction that could still
        # commit a row with a smaller ordering key is then finished (docs/adr/0002).
        rows = await self.pool.fetch(
            f"{_SELECT} WHERE (tx_id, position) > ($1::text::xid8, $2::bigint)"
            " AND tx_id < pg_snapshot_xmin(pg_current_snapshot())"
            " ORDER BY tx_id, position LIMIT $3",
            str(after[0]),
            after[1],
            limit,
        )
        return [_recorded(r) for r in rows]

    async def iter_all(self, batch: int = 1000) -> AsyncIterator[RecordedEvent]:
        """Every committed event in global order."""
        after = (0, 0)
        while True:
            chunk = await self.read_all(after, batch)
            if not chunk:
                return
            for item in chunk:
                yield item
            after = chunk[-1].global_position

    async def verify_chains(self) -> tuple[int, ChainBreak | None]:
        """Recompute every stream's hash chain; (events checked, first break or None)."""
        return await verify_chains(self.pool)


async def decode_event(keyring: Keyring, envelope: EventEnvelope) -> DomainEvent:
    """Decrypt an envelope's payload and rebuild its domain event."""
    model = event_model(envelope.type)
    if model is None:
        raise LookupError(f"unknown event type {envelope.type}")
    payload = await keyring.decrypt_fields(envelope.customer_id, envelope.event_id, envelope.payload)
    members = {
        "type": envelope.type,
        "schema_version": envelope.schema_version,
        "customer_id": envelope.customer_id,
        "occurred_at": envelope.occurred_at,
    }
    assert set(members) == ENVELOPE_MEMBERS
    return model.model_validate({**payload, **members})


async def verify_chains(pool: asyncpg.Pool) -> tuple[int, ChainBreak | None]:
    """Recompute every stream's hash chain; (events checked, first break or None)."""
    checked = 0
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        prev: EventEnvelope | None = None
        async for row in conn.cursor(f"{_SELECT} ORDER BY stream_id, version"):
            env = _envelope(row)
            checked += 1
            first_of_stream = prev is None or prev.stream_id != env.stream_id
            expected_version = 1 if first_of_stream else (prev.version + 1 if prev else 1)
            expected_prev = None if first_of_stream else (prev.hash if prev else None)
            if env.version != expected_version:
                return checked, ChainBreak(env.event_id, env.stream_id, env.version, "version gap")
            if env.prev_hash != expected_prev:
                return checked, ChainBreak(env.event_id, env.stream_id, env.version, "prev_hash does not match")
            recomputed = event_hash(env.model_dump())
            if recomputed != env.hash:
                return checked, ChainBreak(env.event_id, env.stream_id, env.version, "hash does not match its contents")
            prev = env
    return checked, None
