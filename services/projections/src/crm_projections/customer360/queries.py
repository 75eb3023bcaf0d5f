"""Reading a customer 360: the customer's timeline entries (with merged records), decrypted, folded.

The 360 is not a table of its own: folding one customer's entries (about a hundred on average) takes
a few milliseconds, and it makes point-in-time reads (as_of / effective_at) the same code path as the
live read — only the entries seen at that instant are folded. See docs/adr/0009.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import asyncpg
from crm_eventstore.errors import KeyDestroyed
from crm_eventstore.keyring import Keyring
from crm_schemas.personal import is_ciphertext

from crm_projections.customer360.fold import Customer360, CustomerEvent, fold
from crm_projections.timeline.merges import NOW, Instant, Resolution, resolve

JST = timezone(timedelta(hours=9), "JST")

#: Event types whose personal fields the 360 shows (the rest are not decrypted: it saves time).
DECRYPTED_TYPES = frozenset(
    {
        "contacts.CustomerRegistered",
        "contacts.CustomerRenamed",
        "contacts.CustomerAddressChanged",
        "contacts.CustomerPhoneChanged",
        "contacts.CustomerEmailChanged",
        "contacts.CustomerRepresentativeChanged",
        "contacts.CustomerPersonalDetailsChanged",
        "contacts.ContactPersonAdded",
        "contacts.ContactPersonContactDetailsChanged",
        "contacts.CustomersMerged",
        "contacts.CustomersUnmerged",
        "support.TicketOpened",
    }
)


def reference_date(at: Instant, now: datetime) -> date:
    """The day (in Japan) metrics like "last 12 months" are measured from."""
    instants = [t for t in (at.as_of, at.effective_at) if t is not None]
    return min([*instants, now]).astimezone(JST).date()


def _blank(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A payload with every still-encrypted personal field blanked (unreadable: shredded or not needed)."""
    return {k: (None if is_ciphertext(v) else v) for k, v in payload.items()}


@dataclass(frozen=True)
class Found:
    """A 360 read: the resolution of the asked id and, unless redirected, the 360."""

    resolution: Resolution
    view: Customer360 | None


class Customer360Queries:
    """Customer 360 reads against the projections database."""

    def __init__(self, pool: asyncpg.Pool, keyring: Keyring) -> None:
        self.pool = pool
        self.keyring = keyring

    async def read(self, customer_id: UUID, at: Instant = NOW, now: datetime | None = None) -> Found:
        """The 360 of a customer at an instant, or only the resolution when the id was merged away."""
        clock = now or datetime.now(UTC)
        async with self.pool.acquire() as conn:
            resolution = await resolve(conn, customer_id, at)
            if resolution.redirected:
                return Found(resolution, None)
            clauses = ["customer_id = ANY($1::uuid[])"]
            args: list[Any] = [list(resolution.members)]
            if at.as_of is not None:
                args.append(at.as_of)
                clauses.append(f"recorded_at <= ${len(args)}")
            if at.effective_at is not None:
                args.append(at.effective_at)
                clauses.append(f"occurred_at <= ${len(args)}")
            rows = await conn.fetch(
                "SELECT event_id, customer_id, type, stream_id, version, occurred_at, recorded_at, data"
                " FROM timeline_entries WHERE " + " AND ".join(clauses),
                *args,
            )
        events = [await self._event(row) for row in rows]
        if not events:
            return Found(resolution, None)
        view = fold(customer_id, events, reference_date(at, clock), merged_from=resolution.members[1:])
        return Found(resolution, view)

    async def _event(self, row: asyncpg.Record) -> CustomerEvent:
        data: Mapping[str, Any] = row["data"]
        # Other types keep their ciphertext: the fold reads no personal field of them.
        if row["type"] in DECRYPTED_TYPES:
            try:
                data = await self.keyring.decrypt_fields(row["customer_id"], row["event_id"], data)
            except KeyDestroyed:
                data = _blank(data)
        return CustomerEvent(
            event_id=row["event_id"],
            customer_id=row["customer_id"],
            type=row["type"],
            stream_id=row["stream_id"],
            version=row["version"],
            occurred_at=row["occurred_at"],
            recorded_at=row["recorded_at"],
            data=data,
        )
