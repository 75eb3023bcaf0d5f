"""Reads of the deals service's customer replica: does a customer exist, was it merged, its contact persons."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from crm_deals.domain.customers import CustomerStanding

#: Merge chains longer than this are treated as ending where the walk stopped (it never loops).
_MAX_HOPS = 16


class ReplicaDirectory:
    """The customer master as the deals replica knows it (eventually consistent, see docs/adr/0008)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def standing(self, customer_id: UUID) -> CustomerStanding:
        """Whether the customer is known, the live customer it was merged into, its active contact persons."""
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT merged_into FROM replica_customers WHERE customer_id = $1", customer_id)
            if row is None:
                return CustomerStanding(customer_id, known=False)
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
        return CustomerStanding(
            customer_id,
            known=True,
            survivor_id=survivor,
            contact_person_ids=frozenset(r["person_id"] for r in persons),
        )
