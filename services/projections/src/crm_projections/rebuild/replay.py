"""Rebuilding the timeline read model from the beginning, beside the serving copy, then swapping atomically.

1. A shadow schema gets fresh, empty copies of the timeline tables (timeline_entries, customer_merges).
2. Every event is replayed into the shadow copy: from the Kafka topics from offset zero, or from the
   services' event stores when the topics no longer hold everything (retention). A timeline entry is a
   column-for-column copy of the event (``TimelineProjection.project``); for speed the replay applies that
   mapping to raw JSON / COPY data instead of building envelopes, and the rebuild-equals-live tests hold
   the two to the same result. Each batch commits together with the replay position, so an interrupted
   rebuild resumes where it stopped.
3. The swap runs in one transaction: it locks the serving tables against writes (reads go on), replays what
   arrived meanwhile, copies over any entry the live consumer stored that the replay did not see (so the
   swap never loses an event the consumer already marked processed), moves the serving tables to a retired
   schema and the shadow tables into public. Readers see the old copy until the commit, the new one after.
   The live consumer's pending insert waits on the lock and, re-resolving the table name once the swap
   commits, lands in the new copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

import asyncpg
from crm_schemas.envelope import EventEnvelope
from pydantic import ValidationError

from crm_projections.timeline.project import (
    MERGE_TYPES,
    TIMELINE_GRANTS,
    TIMELINE_TABLES,
    TIMELINE_TABLES_DDL,
    TimelineEntry,
    TimelineProjection,
    merge_row,
)

log = logging.getLogger(__name__)

ENTRY_COLUMNS = (
    "event_id",
    "customer_id",
    "service",
    "type",
    "schema_version",
    "stream_id",
    "version",
    "occurred_at",
    "recorded_at",
    "actor",
    "correlation_id",
    "data",
    "prev_hash",
    "hash",
)
MERGE_COLUMNS = ("event_id", "absorbed_id", "survivor_id", "merged", "version", "occurred_at", "recorded_at")

Position = tuple[str, str]  # (source key, position text), e.g. ("crm.deals.events.v1/3", "1200")
Progress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class Batch:
    """Replayed events and the replay position after them.

    A source gives either envelopes (projected here with ``TimelineProjection.project``) or, when it
    reads the event stores, a range of a store to stream: the timeline entry is a column-for-column copy
    of the stored event, so the rows pass from one database to the other as COPY data without being
    decoded (the rebuild-equals-live tests hold both paths to the same result).
    """

    envelopes: Sequence[EventEnvelope]
    positions: Mapping[str, str]
    merges: Sequence[tuple[Any, ...]] = ()
    stream: StoreRange | None = None
    texts: Sequence[tuple[str | None, ...]] = ()

    @property
    def size(self) -> int:
        """Events in the batch."""
        return len(self.envelopes) + len(self.texts) + (self.stream.count if self.stream else 0)


@dataclass(frozen=True)
class StoreRange:
    """A range of one event store's global order, to be streamed by COPY into the shadow table."""

    pool: asyncpg.Pool
    after: tuple[str, int]
    upto: tuple[str, int]
    count: int

    async def copy_into(self, conn: asyncpg.Connection, schema: str) -> int:
        """Stream the range from the store into `schema`.timeline_entries, binary COPY to binary COPY.

        The columns have the same types on both sides, so the bytes pass through without being decoded:
        Python only relays chunks, while both databases work in parallel.
        """
        chunks: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=16)

        async def produce() -> None:
            try:
                async with self.pool.acquire() as source:
                    await source.copy_from_query(
                        f"SELECT {', '.join(_SOURCE_COLUMNS)} FROM events"
                        " WHERE (tx_id, position) > ($1::text::xid8, $2::bigint)"
                        " AND (tx_id, position) <= ($3::text::xid8, $4::bigint) ORDER BY tx_id, position",
                        self.after[0],
                        self.after[1],
                        self.upto[0],
                        self.upto[1],
                        output=chunks.put,
                        format="binary",
                    )
            finally:
                await chunks.put(None)

        async def relay() -> AsyncIterator[bytes]:
            while (chunk := await chunks.get()) is not None:
                yield chunk

        producing = asyncio.create_task(produce())
        try:
            status = await conn.copy_to_table(
                "timeline_entries", schema_name=schema, source=relay(), columns=ENTRY_COLUMNS, format="binary"
            )
        finally:
            await producing
        return int(status.split()[-1])


#: The event-store columns that become ENTRY_COLUMNS (payload is the entry's data).
_SOURCE_COLUMNS = tuple("payload" if c == "data" else c for c in ENTRY_COLUMNS)
#: Staging (text) to timeline_entries types.
_CASTS = (
    "event_id::uuid, customer_id::uuid, service, type, schema_version::integer, stream_id, version::integer,"
    " occurred_at::timestamptz, recorded_at::timestamptz, actor::jsonb, correlation_id::uuid, data::jsonb,"
    " prev_hash, hash"
)


class ReplaySource(Protocol):
    """Where a rebuild reads every event from, in an order that keeps each stream in version order."""

    name: str

    async def total(self, positions: Mapping[str, str]) -> tuple[int, int | None]:
        """(events already replayed by `positions`, all events) — all events may be unknown."""
        ...

    def read(self, positions: Mapping[str, str], batch: int, *, envelopes: bool = False) -> AsyncIterator[Batch]:
        """Batches of events after `positions`, up to what the source holds now.

        With `envelopes`, every batch carries decoded envelopes (for read models that project each event);
        otherwise the cheapest form the timeline copy takes (COPY ranges, staging rows).
        """
        ...


def entry_row(entry: TimelineEntry) -> tuple[str | None, ...]:
    """The staging row of an entry: text, cast by PostgreSQL on the way into the shadow table."""
    return (
        str(entry.event_id),
        str(entry.customer_id),
        entry.service,
        entry.type,
        str(entry.schema_version),
        entry.stream_id,
        str(entry.version),
        entry.occurred_at.isoformat(),
        entry.recorded_at.isoformat(),
        _json(entry.actor),
        str(entry.correlation_id),
        _json(entry.data),
        entry.prev_hash,
        entry.hash,
    )


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def record_row(value: bytes) -> tuple[tuple[str | None, ...], tuple[Any, ...] | None] | None:
    """(staging row, merge row or None) of a Kafka record's envelope; None if it is not an envelope.

    The same columns TimelineProjection.project copies, read straight from the JSON (validating every
    envelope with pydantic would triple the replay's cost; PostgreSQL checks the types on the cast).
    """
    try:
        o = json.loads(value)
        row = (
            str(o["event_id"]),
            str(o["customer_id"]),
            str(o["service"]),
            str(o["type"]),
            str(int(o["schema_version"])),
            str(o["stream_id"]),
            str(int(o["version"])),
            str(o["occurred_at"]),
            str(o["recorded_at"]),
            _json(o["actor"]),
            str(o["correlation_id"]),
            _json(o["payload"]),
            o.get("prev_hash"),
            str(o["hash"]),
        )
        merge = None
        if o["type"] in MERGE_TYPES:
            merge = (
                UUID(row[0]),
                UUID(row[1]),
                UUID(str(o["payload"]["survivor_id"])),
                o["type"] == "contacts.CustomerMergedInto",
                int(o["version"]),
                datetime.fromisoformat(row[7]),
                datetime.fromisoformat(row[8]),
            )
    except (ValueError, KeyError, TypeError):
        return None
    return row, merge


# ---- sources ----------------------------------------------------------------------------------


class EventStoreSource:
    """Every service's event store in its global order (tx_id, position), below the transaction horizon."""

    name = "event-stores"

    def __init__(self, pools: Mapping[str, asyncpg.Pool], horizon_timeout: float = 600.0) -> None:
        self.pools = dict(pools)
        self.horizon_timeout = horizon_timeout

    async def total(self, positions: Mapping[str, str]) -> tuple[int, int | None]:
        """Events behind and in total, by service."""
        done = 0
        total = 0
        for service, pool in self.pools.items():
            total += int(await pool.fetchval("SELECT count(*) FROM events"))
            tx, pos = _store_position(positions.get(service))
            done += int(
                await pool.fetchval(
                    "SELECT count(*) FROM events WHERE (tx_id, position) <= ($1::text::xid8, $2::bigint)", tx, pos
                )
            )
        return done, total

    async def read(self, positions: Mapping[str, str], batch: int, *, envelopes: bool = False) -> AsyncIterator[Batch]:
        """Batches per service, each service in its global order."""
        for service, pool in sorted(self.pools.items()):
            tx, pos = _store_position(positions.get(service))
            # Everything committed when the read starts is read, waiting for the horizon to pass it:
            # on a busy server some other short transaction nearly always holds the horizon back a little.
            head = await pool.fetchrow(
                "SELECT tx_id::text AS tx_text, position FROM events ORDER BY tx_id DESC, position DESC LIMIT 1"
            )
            target = (0, 0) if head is None else (int(head["tx_text"]), head["position"])
            waited = 0.0
            while True:
                # Read only below the snapshot's xmin, as PostgresEventStore.read_all does: every
                # transaction that could still commit an earlier event is finished (docs/adr/0002).
                # The batch's last event: the batch-th after the position, or the last one below the horizon.
                horizon = " AND tx_id < pg_snapshot_xmin(pg_current_snapshot())"
                after = " WHERE (tx_id, position) > ($1::text::xid8, $2::bigint)"
                end = await pool.fetchrow(
                    "SELECT tx_id::text AS tx_text, position FROM events"
                    + after
                    + horizon
                    + " ORDER BY tx_id, position OFFSET $3 LIMIT 1",
                    tx,
                    pos,
                    batch - 1,
                )
                count = batch
                if end is None:
                    tail = await pool.fetchrow(
                        "SELECT count(*) AS n, max(tx_id)::text AS tx_text FROM events" + after + horizon, tx, pos
                    )
                    count = tail["n"]
                    if count:
                        end = await pool.fetchrow(
                            "SELECT tx_id::text AS tx_text, position FROM events"
                            + after
                            + horizon
                            + " ORDER BY tx_id DESC, position DESC LIMIT 1",
                            tx,
                            pos,
                        )
                if end is None:
                    if (int(tx), pos) >= target:
                        break
                    if waited > self.horizon_timeout:
                        raise TimeoutError(f"{service}: the transaction horizon did not pass the head of the store")
                    await asyncio.sleep(0.05)
                    waited += 0.05
                    continue
                upto = (end["tx_text"], end["position"])
                if envelopes:
                    rows = await pool.fetch(
                        _ENVELOPE_SELECT + " WHERE (tx_id, position) > ($1::text::xid8, $2::bigint)"
                        " AND (tx_id, position) <= ($3::text::xid8, $4::bigint) ORDER BY tx_id, position",
                        tx,
                        pos,
                        upto[0],
                        upto[1],
                    )
                    yield Batch([_envelope(r) for r in rows], {service: f"{upto[0]}:{upto[1]}"})
                    tx, pos = upto
                    continue
                merges = [
                    (
                        r["event_id"],
                        r["customer_id"],
                        UUID(str(json.loads(r["payload"])["survivor_id"])),
                        r["type"] == "contacts.CustomerMergedInto",
                        r["version"],
                        r["occurred_at"],
                        r["recorded_at"],
                    )
                    for r in await pool.fetch(
                        "SELECT event_id, customer_id, type, version, occurred_at, recorded_at, payload::text AS payload"
                        " FROM events WHERE (tx_id, position) > ($1::text::xid8, $2::bigint)"
                        " AND (tx_id, position) <= ($3::text::xid8, $4::bigint) AND type = ANY($5::text[])",
                        tx,
                        pos,
                        upto[0],
                        upto[1],
                        sorted(MERGE_TYPES),
                    )
                ]
                yield Batch((), {service: f"{upto[0]}:{upto[1]}"}, merges, StoreRange(pool, (tx, pos), upto, count))
                tx, pos = upto


#: Stored events as envelopes; JSON as text, so it reads the same whatever codecs the pool registered.
_ENVELOPE_SELECT = (
    "SELECT event_id, type, schema_version, service, stream_id, version, customer_id, occurred_at, recorded_at,"
    " actor::text AS actor, correlation_id, causation_id, traceparent, payload::text AS payload, prev_hash, hash"
    " FROM events"
)


def _envelope(row: asyncpg.Record) -> EventEnvelope:
    return EventEnvelope.model_validate(
        {**dict(row.items()), "actor": json.loads(row["actor"]), "payload": json.loads(row["payload"])}
    )


def _store_position(text: str | None) -> tuple[str, int]:
    if not text:
        return "0", 0
    tx, _, pos = text.partition(":")
    return tx, int(pos)


class KafkaSource:
    """The service topics from their beginning, every partition up to its end offset at read time."""

    name = "kafka"

    def __init__(
        self, bootstrap_servers: str, topics: Sequence[str], security: Mapping[str, Any] | None = None
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topics = list(topics)
        self.security = dict(security or {})

    async def _bounds(self) -> tuple[Any, dict[Any, int], dict[Any, int]]:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.structs import TopicPartition

        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            enable_auto_commit=False,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
            **self.security,
        )
        await consumer.start()
        await consumer.topics()
        partitions = [TopicPartition(t, p) for t in self.topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        begins = await consumer.beginning_offsets(partitions) if partitions else {}
        ends = await consumer.end_offsets(partitions) if partitions else {}
        return consumer, begins, ends

    async def truncated(self) -> bool:
        """True if some partition no longer starts at offset zero (retention removed events)."""
        consumer, begins, _ = await self._bounds()
        await consumer.stop()
        return any(offset > 0 for offset in begins.values())

    async def total(self, positions: Mapping[str, str]) -> tuple[int, int | None]:
        """Offsets behind and in total over all partitions."""
        consumer, begins, ends = await self._bounds()
        await consumer.stop()
        done = sum(min(int(positions.get(f"{tp.topic}/{tp.partition}", begins[tp])), ends[tp]) for tp in ends)
        return done, sum(ends.values())

    async def read(self, positions: Mapping[str, str], batch: int, *, envelopes: bool = False) -> AsyncIterator[Batch]:
        """Batches across partitions; each partition in offset order (so each stream in version order)."""
        consumer, begins, ends = await self._bounds()
        try:
            pending = {}
            for tp, end in ends.items():
                start = max(int(positions.get(f"{tp.topic}/{tp.partition}", 0)), begins[tp])
                if start < end:
                    pending[tp] = (start, end)
            if not pending:
                return
            consumer.assign(list(pending))
            for tp, (start, _) in pending.items():
                consumer.seek(tp, start)
            # A partition is done once a fetch returns nothing more for it and the consumer's position
            # has reached the end offset taken at the start. Records past that end are read too (new
            # events, harmless): the end offset is a lower bound, not a filter — some Kafka-protocol
            # brokers (tansu, the local one) under-report it for multi-record batches.
            while pending:
                fetched = await consumer.getmany(timeout_ms=200, max_records=batch)
                texts: list[tuple[str | None, ...]] = []
                merges: list[tuple[Any, ...]] = []
                decoded: list[EventEnvelope] = []
                moved: dict[str, str] = {}
                for tp, records in fetched.items():
                    if tp in pending and records:
                        for r in records:
                            if envelopes:
                                try:
                                    decoded.append(EventEnvelope.model_validate_json(r.value or b""))
                                except ValidationError:
                                    log.warning("skipping a record that is not an event envelope: %s@%d", tp, r.offset)
                                continue
                            parsed = record_row(r.value or b"")
                            if parsed is None:
                                # The live consumer dead-letters such a record; the replay skips it too.
                                log.warning("skipping a record that is not an event envelope: %s@%d", tp, r.offset)
                                continue
                            texts.append(parsed[0])
                            if parsed[1] is not None:
                                merges.append(parsed[1])
                        moved[f"{tp.topic}/{tp.partition}"] = str(records[-1].offset + 1)
                for tp in [tp for tp in pending if not fetched.get(tp)]:
                    position = await consumer.position(tp)
                    if position >= pending[tp][1]:
                        moved[f"{tp.topic}/{tp.partition}"] = str(position)
                        del pending[tp]
                        consumer.pause(tp)
                if moved:
                    yield Batch(decoded, moved, merges, texts=texts)
        finally:
            await consumer.stop()


# ---- the rebuild ------------------------------------------------------------------------------


async def _read_ahead(batches: AsyncIterator[Batch], depth: int = 2) -> AsyncIterator[Batch]:
    """The same batches, the next ones read while the caller writes the current one (reads and writes overlap)."""
    queue: asyncio.Queue[Batch | BaseException | None] = asyncio.Queue(maxsize=depth)

    async def pump() -> None:
        try:
            async for batch in batches:
                await queue.put(batch)
        except BaseException as exc:
            await queue.put(exc)
            raise
        await queue.put(None)

    task = asyncio.create_task(pump())
    try:
        while True:
            item = await queue.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


@dataclass(frozen=True)
class RebuildReport:
    """What a finished rebuild did."""

    projection: str
    source: str
    events: int
    entries: int
    resumed: bool


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


class ShadowRebuild:
    """A read model rebuilt into a shadow schema from the beginning, then swapped in atomically.

    Subclasses say which tables make up the read model, how to create them in the shadow schema and how
    to apply a batch; this class keeps the progress (resumable), the heartbeat `/readyz` reads, and the swap.
    """

    projection: str
    tables: tuple[str, ...]
    grants: str

    def __init__(
        self,
        owner_url: str,
        role: str,
        *,
        batch: int = 5000,
        shadow_schema: str | None = None,
        retired_schema: str | None = None,
        before_swap: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.owner_url = owner_url
        self.role = role
        self.batch = batch
        self.shadow = shadow_schema or f"rebuild_{self.projection}"
        self.retired = retired_schema or f"retired_{self.projection}"
        self.before_swap = before_swap

    # ---- what a read model provides ----

    async def _create_tables(self, conn: asyncpg.Connection) -> None:
        """Create the read model's empty tables (search_path is the shadow schema, then public)."""
        raise NotImplementedError

    async def _open(self, conn: asyncpg.Connection) -> None:
        """Per-connection setup before replaying (temporary tables, search path)."""

    def _read(self, source: ReplaySource, positions: Mapping[str, str]) -> AsyncIterator[Batch]:
        return source.read(positions, self.batch)

    async def _apply(self, conn: asyncpg.Connection, batch: Batch) -> int:
        """Write one batch into the shadow copy (inside the caller's transaction); returns events replayed."""
        raise NotImplementedError

    async def _finish_shadow(self, conn: asyncpg.Connection) -> None:
        """Work after the replay and before the swap (indexes built once)."""

    async def _carry_over(self, conn: asyncpg.Connection) -> None:
        """Inside the swap, once the late events are replayed: bring over what only the serving copy has."""

    async def _serving(self, conn: asyncpg.Connection) -> int:
        """Rows of the read model's main table now serving."""
        raise NotImplementedError

    # ---- shared machinery ----

    async def _connect(self) -> asyncpg.Connection:
        # No JSON codecs: JSON only passes through as text here (jsonb columns take it as is).
        conn: asyncpg.Connection = await asyncpg.connect(self.owner_url)
        # A batch lost in a crash is lost together with its position (same transaction), so the resumed
        # rebuild copies it again: the replay need not wait for each commit's WAL flush. The swap does.
        await conn.execute("SET synchronous_commit = off")
        return conn

    async def _prepare(self, conn: asyncpg.Connection, source: str, restart: bool) -> tuple[dict[str, str], bool]:
        if restart:
            await conn.execute(f"DROP SCHEMA IF EXISTS {ident(self.shadow)} CASCADE")
        exists = await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", self.shadow)
        resumed = bool(exists)
        if exists:
            used = await conn.fetchval(f"SELECT source FROM {ident(self.shadow)}.rebuild_state")
            if used != source:
                raise RuntimeError(
                    f"an interrupted rebuild from {used} exists; resume it with that source or start over (--restart)"
                )
        else:
            async with conn.transaction():
                await conn.execute(f"CREATE SCHEMA {ident(self.shadow)}")
                await conn.execute(f"SET LOCAL search_path = {ident(self.shadow)}, public")
                await self._create_tables(conn)
                await conn.execute(
                    "CREATE TABLE rebuild_progress (key text PRIMARY KEY, position text NOT NULL);"
                    " CREATE TABLE rebuild_state (source text NOT NULL)"
                )
                await conn.execute("INSERT INTO rebuild_state VALUES ($1)", source)
        rows = await conn.fetch(f"SELECT key, position FROM {ident(self.shadow)}.rebuild_progress")
        await conn.execute(
            "INSERT INTO projection_rebuilds (projection, source) VALUES ($1, $2) ON CONFLICT (projection) DO UPDATE"
            " SET source = EXCLUDED.source, heartbeat_at = now(), finished_at = NULL,"
            " started_at = CASE WHEN $3 THEN projection_rebuilds.started_at ELSE now() END",
            self.projection,
            source,
            resumed,
        )
        return {r["key"]: r["position"] for r in rows}, resumed

    async def _record(self, conn: asyncpg.Connection, positions: Mapping[str, str], copied: int) -> None:
        """The replay position and heartbeat, in the batch's transaction."""
        await conn.executemany(
            f"INSERT INTO {ident(self.shadow)}.rebuild_progress (key, position) VALUES ($1, $2)"
            " ON CONFLICT (key) DO UPDATE SET position = EXCLUDED.position",
            list(positions.items()),
        )
        await conn.execute(
            "UPDATE projection_rebuilds SET heartbeat_at = now(), events_done = events_done + $2 WHERE projection = $1",
            self.projection,
            copied,
        )

    async def run(
        self, source: ReplaySource, *, restart: bool = False, progress: Progress | None = None
    ) -> RebuildReport:
        """Replay everything into the shadow copy, then swap it in; resumable after an interruption."""
        conn = await self._connect()
        try:
            positions, resumed = await self._prepare(conn, source.name, restart)
            done, total = await source.total(positions)
            await conn.execute(
                "UPDATE projection_rebuilds SET events_done = $2, events_total = $3 WHERE projection = $1",
                self.projection,
                done,
                total,
            )
            await self._open(conn)
            if progress:
                progress(done, total)
            replayed = 0
            async for batch in _read_ahead(self._read(source, positions)):
                async with conn.transaction():
                    n = await self._apply(conn, batch)
                    await self._record(conn, batch.positions, n)
                positions = {**positions, **batch.positions}
                replayed += n
                done += n
                if progress:
                    progress(done, total)
            await self._finish_shadow(conn)
            if self.before_swap is not None:
                await self.before_swap()
            for attempt in range(1, 6):
                try:
                    replayed += await self._swap(conn, source, positions)
                    break
                except asyncpg.DeadlockDetectedError:
                    # A live consumer transaction held one serving table and waited for another we had
                    # locked; PostgreSQL aborted one of the two. The swap rolled back whole: try again.
                    if attempt == 5:
                        raise
                    log.warning("the swap of %s met a deadlock with the live consumer; retrying", self.projection)
            return RebuildReport(self.projection, source.name, replayed, await self._serving(conn), resumed)
        finally:
            await conn.close()

    async def _swap(self, conn: asyncpg.Connection, source: ReplaySource, positions: Mapping[str, str]) -> int:
        shadow, retired = ident(self.shadow), ident(self.retired)
        async with conn.transaction():
            await conn.execute("SET LOCAL synchronous_commit = on")
            # Writers wait from here until the commit; readers keep reading the old copy.
            await conn.execute(f"LOCK TABLE {', '.join(f'public.{t}' for t in self.tables)} IN EXCLUSIVE MODE")
            late = 0
            async for batch in self._read(source, positions):
                late += await self._apply(conn, batch)
            await self._carry_over(conn)
            await conn.execute(f"DROP SCHEMA IF EXISTS {retired} CASCADE; CREATE SCHEMA {retired}")
            for table in self.tables:
                await conn.execute(f"ALTER TABLE public.{table} SET SCHEMA {retired}")
                await conn.execute(f"ALTER TABLE {shadow}.{table} SET SCHEMA public")
            await conn.execute("SET LOCAL search_path = public")
            await conn.execute(self.grants.format(role=ident(self.role)))
            await conn.execute(f"DROP SCHEMA {shadow} CASCADE")
            await conn.execute(
                "UPDATE projection_rebuilds SET finished_at = now(), heartbeat_at = now() WHERE projection = $1",
                self.projection,
            )
        return late


class TimelineRebuild(ShadowRebuild):
    """Rebuild of the timeline (and its merge log) into a shadow schema, swapped in atomically."""

    projection = "timeline"
    tables = TIMELINE_TABLES
    grants = TIMELINE_GRANTS

    def __init__(
        self,
        owner_url: str,
        role: str,
        *,
        batch: int = 5000,
        shadow_schema: str = "rebuild_timeline",
        retired_schema: str = "retired_timeline",
        before_swap: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(
            owner_url,
            role,
            batch=batch,
            shadow_schema=shadow_schema,
            retired_schema=retired_schema,
            before_swap=before_swap,
        )
        self._project = TimelineProjection().project

    async def _create_tables(self, conn: asyncpg.Connection) -> None:
        await conn.execute(TIMELINE_TABLES_DDL)
        # Built once at the end: maintaining it row by row would halve the replay rate.
        await conn.execute("DROP INDEX timeline_by_customer")

    async def _open(self, conn: asyncpg.Connection) -> None:
        await conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS rebuild_staging (event_id text, customer_id text, service text,"
            " type text, schema_version text, stream_id text, version text, occurred_at text, recorded_at text,"
            " actor text, correlation_id text, data text, prev_hash text, hash text)"
        )

    async def _apply(self, conn: asyncpg.Connection, batch: Batch) -> int:
        """Write one batch into the shadow copy (inside the caller's transaction)."""
        entries = [e for e in (self._project(env) for env in batch.envelopes) if e is not None]
        shadow = ident(self.shadow)
        copied = len(batch.envelopes) + len(batch.texts)
        if batch.stream is not None:
            # Straight into the shadow table: an event store holds each event once and the position
            # commits with the batch, so these rows cannot already be there.
            copied += await batch.stream.copy_into(conn, self.shadow)
        staged = [*batch.texts, *(entry_row(e) for e in entries)]
        if staged:
            # Kafka may deliver an event twice: through staging, with ON CONFLICT.
            await conn.copy_records_to_table("rebuild_staging", records=staged, columns=ENTRY_COLUMNS)
            await conn.execute(
                f"INSERT INTO {shadow}.timeline_entries ({', '.join(ENTRY_COLUMNS)}) SELECT {_CASTS}"
                " FROM rebuild_staging ON CONFLICT (event_id) DO NOTHING; TRUNCATE rebuild_staging"
            )
        merges = [*batch.merges, *(merge_row(e) for e in entries if e.type in MERGE_TYPES)]
        if merges:
            await conn.executemany(
                f"INSERT INTO {shadow}.customer_merges ({', '.join(MERGE_COLUMNS)})"
                " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING",
                merges,
            )
        return copied

    async def _finish_shadow(self, conn: asyncpg.Connection) -> None:
        await conn.execute(
            f"CREATE INDEX IF NOT EXISTS timeline_by_customer ON {ident(self.shadow)}.timeline_entries"
            " (customer_id, occurred_at DESC, event_id DESC)"
        )

    async def _carry_over(self, conn: asyncpg.Connection) -> None:
        # An entry the live consumer stored (and marked processed) that the replay did not see is kept.
        shadow = ident(self.shadow)
        cols = ", ".join(ENTRY_COLUMNS)
        await conn.execute(
            f"INSERT INTO {shadow}.timeline_entries ({cols}) SELECT {cols} FROM public.timeline_entries p"
            f" WHERE NOT EXISTS (SELECT 1 FROM {shadow}.timeline_entries s WHERE s.event_id = p.event_id)"
        )
        merge_cols = ", ".join(MERGE_COLUMNS)
        await conn.execute(
            f"INSERT INTO {shadow}.customer_merges ({merge_cols}) SELECT {merge_cols} FROM public.customer_merges p"
            f" WHERE NOT EXISTS (SELECT 1 FROM {shadow}.customer_merges s WHERE s.event_id = p.event_id)"
        )

    async def _serving(self, conn: asyncpg.Connection) -> int:
        return int(await conn.fetchval("SELECT count(*) FROM public.timeline_entries"))
