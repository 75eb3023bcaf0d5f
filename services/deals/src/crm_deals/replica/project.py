"""Pure projection of contacts events onto the deals replica of which customers and contact persons exist."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import assert_never
from uuid import UUID

import asyncpg
from crm_schemas.envelope import EventEnvelope


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
    """Keeps ids, kinds and merge links of customers and their contact persons; nothing personal."""

    name = "deals-customer-replica"

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
