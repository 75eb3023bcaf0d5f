"""Which customer records are merged into which (名寄せ), at any instant, from the append-only merge log."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

#: Bounds how far a chain of merges (A into B into C ...) is followed.
MAX_CHAIN = 32


@dataclass(frozen=True)
class MergeLink:
    """One CustomerMergedInto (merged) or CustomerUnmergedFrom (not merged) of an absorbed customer."""

    absorbed_id: UUID
    survivor_id: UUID
    merged: bool
    version: int
    occurred_at: datetime
    recorded_at: datetime


@dataclass(frozen=True)
class Instant:
    """A point in time to read at: as known then (recorded_at) and/or as true then (occurred_at)."""

    as_of: datetime | None = None
    effective_at: datetime | None = None

    def sees(self, occurred_at: datetime, recorded_at: datetime) -> bool:
        """True if a fact with these times belongs to the picture at this instant."""
        if self.as_of is not None and recorded_at > self.as_of:
            return False
        return not (self.effective_at is not None and occurred_at > self.effective_at)


NOW = Instant()


def links_in_force(links: Iterable[MergeLink], at: Instant = NOW) -> dict[UUID, UUID]:
    """absorbed -> survivor for every merge in force at the instant (the latest link by stream version)."""
    latest: dict[UUID, MergeLink] = {}
    for link in links:
        if not at.sees(link.occurred_at, link.recorded_at):
            continue
        seen = latest.get(link.absorbed_id)
        if seen is None or link.version > seen.version:
            latest[link.absorbed_id] = link
    return {absorbed: link.survivor_id for absorbed, link in latest.items() if link.merged}


def survivor_of(in_force: dict[UUID, UUID], customer_id: UUID) -> UUID:
    """The record a customer lives on in: itself, or the end of its chain of merges."""
    current = customer_id
    seen = {current}
    for _ in range(MAX_CHAIN):
        nxt = in_force.get(current)
        if nxt is None or nxt in seen:
            return current
        seen.add(nxt)
        current = nxt
    return current


def members_of(in_force: dict[UUID, UUID], survivor_id: UUID) -> list[UUID]:
    """The survivor first, then every customer merged into it directly or through a chain (sorted)."""
    absorbed = sorted(a for a in in_force if a != survivor_id and survivor_of(in_force, a) == survivor_id)
    return [survivor_id, *absorbed]


def _link(row: asyncpg.Record) -> MergeLink:
    return MergeLink(
        row["absorbed_id"], row["survivor_id"], row["merged"], row["version"], row["occurred_at"], row["recorded_at"]
    )


async def load_links(conn: asyncpg.Pool | asyncpg.Connection, customer_id: UUID) -> list[MergeLink]:
    """Every merge link in the connected component of a customer (one query when it was never merged)."""
    known: set[UUID] = {customer_id}
    frontier = [customer_id]
    links: dict[tuple[UUID, int], MergeLink] = {}
    for _ in range(MAX_CHAIN):
        rows = await conn.fetch(
            "SELECT absorbed_id, survivor_id, merged, version, occurred_at, recorded_at FROM customer_merges"
            " WHERE absorbed_id = ANY($1::uuid[]) OR survivor_id = ANY($1::uuid[])",
            frontier,
        )
        frontier = []
        for row in rows:
            link = _link(row)
            links[(link.absorbed_id, link.version)] = link
            for cid in (link.absorbed_id, link.survivor_id):
                if cid not in known:
                    known.add(cid)
                    frontier.append(cid)
        if not frontier:
            break
    return list(links.values())


@dataclass(frozen=True)
class Resolution:
    """Where a customer id lives at an instant, and every record whose history it includes."""

    asked: UUID
    survivor: UUID
    members: tuple[UUID, ...]

    @property
    def redirected(self) -> bool:
        """True if the asked id was merged into another record."""
        return self.survivor != self.asked


async def resolve(conn: asyncpg.Pool | asyncpg.Connection, customer_id: UUID, at: Instant = NOW) -> Resolution:
    """The survivor of a customer id at an instant, with the records merged into it."""
    in_force = links_in_force(await load_links(conn, customer_id), at)
    survivor = survivor_of(in_force, customer_id)
    return Resolution(customer_id, survivor, tuple(members_of(in_force, survivor)))
