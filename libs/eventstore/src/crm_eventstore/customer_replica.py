"""A service's read-only replica of the customer master, built from crm.contacts.events.v1.

The deals and support services check every command's customer (does it exist, was it merged into a
survivor, is this contact person one of its own) against their own copy instead of calling contacts
(docs/adr/0007, 0008). The projection is pure (``project``) plus an ``apply`` inside the projection
runtime's transaction; the copy holds ids, kinds and merge links only, nothing personal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar, assert_never
from uuid import UUID

import asyncpg
from crm_schemas.envelope import EventEnvelope

# The replica's tables; the projection runtime's dedupe and position tables (PROJECTION_RUNTIME_DDL)
# must live in the same database so they commit in the same transaction as the replica.
REPLICA_DDL = """
CREATE TABLE IF NOT EXISTS replica_customers (
    customer_id   uuid        PRIMARY KEY,
    kind          text,
    merged_into   uuid,
    registered_at timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS replica_contact_persons (
    customer_id   uuid        NOT NULL,
    person_id     uuid        NOT NULL,
    active        boolean     NOT NULL DEFAULT true,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, person_id)
);
"""

REPLICA_GRANTS = """
GRANT SELECT, INSERT, UPDATE, DELETE ON replica_customers, replica_contact_persons TO {role};
"""


@dataclass(frozen=True)
class CustomerRegistered:
    """A customer now exists."""

    customer_id: UUID
    kind: str | None
    at: datetime


@dataclass(frozen=True)
class CustomerMerged:
    """The customer lives on in the survivor (名寄せ)."""

    customer_id: UUID
    survivor_id: UUID
    at: datetime


@dataclass(frozen=True)
class CustomerUnmerged:
    """The customer is its own record again."""

    customer_id: UUID
    at: datetime


@dataclass(frozen=True)
class PersonsJoined:
    """Contact persons became part of the customer (added, or taken over from a merged duplicate)."""

    customer_id: UUID
    person_ids: tuple[UUID, ...]
    copied_from: UUID | None = None


@dataclass(frozen=True)
class PersonLeft:
    """A contact person left the company."""

    customer_id: UUID
    person_id: UUID


@dataclass(frozen=True)
class PersonsRemoved:
    """Contact persons given back to a duplicate when its merge was reversed."""

    customer_id: UUID
    person_ids: tuple[UUID, ...]


Change = CustomerRegistered | CustomerMerged | CustomerUnmerged | PersonsJoined | PersonLeft | PersonsRemoved


def _ids(value: object) -> tuple[UUID, ...]:
    return tuple(UUID(str(v)) for v in value) if isinstance(value, list) else ()


class CustomerReplicaProjection:
    """Keeps ids, kinds and merge links of customers and their contact persons; nothing personal.

    Each service runs it under its own name (its own consumer group and positions).
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def project(self, event: EventEnvelope) -> Change | None:
        """The replica change of a contacts event (None for events that do not change it)."""
        cid, at, data = event.customer_id, event.occurred_at, event.payload
        match event.type:
            case "contacts.CustomerRegistered":
                kind = data.get("kind")
                return CustomerRegistered(cid, None if kind is None else str(kind), at)
            case "contacts.CustomerMergedInto":
                return CustomerMerged(cid, UUID(str(data["survivor_id"])), at)
            case "contacts.CustomerUnmergedFrom":
                return CustomerUnmerged(cid, at)
            case "contacts.ContactPersonAdded":
                return PersonsJoined(cid, (UUID(str(data["person_id"])),))
            case "contacts.ContactPersonLeftCompany":
                return PersonLeft(cid, UUID(str(data["person_id"])))
            case "contacts.CustomersMerged":
                ids = _ids(data.get("added_person_ids"))
                return PersonsJoined(cid, ids, UUID(str(data["absorbed_id"]))) if ids else None
            case "contacts.CustomersUnmerged":
                ids = _ids(data.get("removed_person_ids"))
                return PersonsRemoved(cid, ids) if ids else None
            case _:
                return None

    async def apply(self, conn: asyncpg.Connection, change: Change) -> None:
        """Apply a change inside the runtime's transaction."""
        match change:
            case CustomerRegistered():
                await conn.execute(
                    "INSERT INTO replica_customers (customer_id, kind, registered_at) VALUES ($1, $2, $3)"
                    " ON CONFLICT (customer_id) DO UPDATE SET kind = EXCLUDED.kind, updated_at = now()",
                    change.customer_id,
                    change.kind,
                    change.at,
                )
            case CustomerMerged():
                await conn.execute(
                    "INSERT INTO replica_customers (customer_id, merged_into, registered_at) VALUES ($1, $2, $3)"
                    " ON CONFLICT (customer_id) DO UPDATE SET merged_into = EXCLUDED.merged_into, updated_at = now()",
                    change.customer_id,
                    change.survivor_id,
                    change.at,
                )
            case CustomerUnmerged():
                await conn.execute(
                    "UPDATE replica_customers SET merged_into = NULL, updated_at = now() WHERE customer_id = $1",
                    change.customer_id,
                )
            case PersonsJoined():
                if change.copied_from is not None:
                    # Persons taken over in a merge keep the state they had at the duplicate. The
                    # duplicate's own events sit on another partition and may not have arrived yet:
                    # then they join as active, and a later "left" on the duplicate stays there.
                    await conn.execute(
                        "INSERT INTO replica_contact_persons (customer_id, person_id, active)"
                        " SELECT $1, person_id, active FROM replica_contact_persons"
                        " WHERE customer_id = $2 AND person_id = ANY($3::uuid[])"
                        " ON CONFLICT (customer_id, person_id) DO NOTHING",
                        change.customer_id,
                        change.copied_from,
                        list(change.person_ids),
                    )
                await conn.execute(
                    "INSERT INTO replica_contact_persons (customer_id, person_id)"
                    " SELECT $1, unnest($2::uuid[]) ON CONFLICT (customer_id, person_id) DO NOTHING",
                    change.customer_id,
                    list(change.person_ids),
                )
            case PersonLeft():
                await conn.execute(
                    "INSERT INTO replica_contact_persons (customer_id, person_id, active) VALUES ($1, $2, false)"
                    " ON CONFLICT (customer_id, person_id) DO UPDATE SET active = false, updated_at = now()",
                    change.customer_id,
                    change.person_id,
                )
            case PersonsRemoved():
                await conn.execute(
                    "DELETE FROM replica_contact_persons WHERE customer_id = $1 AND person_id = ANY($2::uuid[])",
                    change.customer_id,
                    list(change.person_ids),
                )
            case _:
                assert_never(change)


S = TypeVar("S")
#: (customer_id, known, survivor_id, active contact person ids) -> the service's standing value.
StandingFactory = Callable[[UUID, bool, UUID | None, frozenset[UUID]], S]


#: Merge chains longer than this are treated as ending where the walk stopped (it never loops).
_MAX_HOPS = 16


class ReplicaDirectory(Generic[S]):
    """The customer master as a service's replica knows it (eventually consistent, docs/adr/0007).

    ``standing`` builds the service's own (domain) value from what the replica says.
    """

    def __init__(self, pool: asyncpg.Pool, standing: StandingFactory[S]) -> None:
        self.pool = pool
        self._standing = standing

    async def standing(self, customer_id: UUID) -> S:
        """Whether the customer is known, the live customer it was merged into, its active contact persons."""
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT merged_into FROM replica_customers WHERE customer_id = $1", customer_id)
            if row is None:
                return self._standing(customer_id, False, None, frozenset())
            survivor: UUID | None = row["merged_into"]
            seen = {customer_id}
            # A survivor may itself have been merged later (A into B, B into C): point at the live one.
            while survivor is not None and len(seen) < _MAX_HOPS:
                seen.add(survivor)
                onward = await conn.fetchval(
                    "SELECT merged_into FROM replica_customers WHERE customer_id = $1", survivor
                )
                if onward is None or onward in seen:
                    break
                survivor = onward
            persons = await conn.fetch(
                "SELECT person_id FROM replica_contact_persons WHERE customer_id = $1 AND active", customer_id
            )
        return self._standing(customer_id, True, survivor, frozenset(r["person_id"] for r in persons))
