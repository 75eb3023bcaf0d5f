"""Everything the CRM holds about one person, as JSON: the disclosure / portability export."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
from crm_eventstore.errors import KeyDestroyed
from crm_eventstore.keyring import Keyring
from crm_schemas.personal import is_ciphertext
from crm_schemas.registry import event_model

#: Customer-level personal fields of contacts events that make up the person's current profile.
PROFILE_FIELDS = (
    "name",
    "name_kana",
    "email",
    "phone",
    "address",
    "representative",
    "birth_date",
    "gender",
    "occupation",
)

#: Tables of the projections database that are not read models about a customer.
_NOT_READ_MODELS = frozenset(
    {"timeline_entries", "access_log", "third_party_provisions", "processed_events", "projection_positions"}
)

_MAX_ROWS = 10_000


async def _read_model_tables(conn: asyncpg.Pool) -> list[str]:
    rows = await conn.fetch(
        "SELECT c.table_name FROM information_schema.columns AS c"
        " JOIN information_schema.tables AS t USING (table_schema, table_name)"
        " WHERE c.table_schema = 'public' AND c.column_name = 'customer_id' AND t.table_type = 'BASE TABLE'"
        " ORDER BY c.table_name"
    )
    return [r["table_name"] for r in rows if r["table_name"] not in _NOT_READ_MODELS]


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class PersonalDataExport:
    """Builds the export of one person from the projections database (timeline + every read model)."""

    def __init__(self, pool: asyncpg.Pool, keyring: Keyring) -> None:
        self.pool = pool
        self.keyring = keyring

    async def _events(self, customer_ids: list[UUID]) -> list[asyncpg.Record]:
        return list(
            await self.pool.fetch(
                "SELECT event_id, customer_id, service, type, schema_version, stream_id, version, occurred_at,"
                " recorded_at, actor, correlation_id, data, prev_hash, hash FROM timeline_entries"
                " WHERE customer_id = ANY($1::uuid[]) ORDER BY occurred_at, event_id",
                customer_ids,
            )
        )

    async def _event(self, row: asyncpg.Record) -> dict[str, Any]:
        stored: dict[str, Any] = row["data"]
        sealed = sorted(name for name, value in stored.items() if is_ciphertext(value))
        try:
            data = await self.keyring.decrypt_fields(row["customer_id"], row["event_id"], stored)
            readable = True
        except KeyDestroyed:
            data = {name: value for name, value in stored.items() if name not in sealed}
            readable = False
        return {
            "event_id": str(row["event_id"]),
            "customer_id": str(row["customer_id"]),
            "service": row["service"],
            "type": row["type"],
            "schema_version": row["schema_version"],
            "stream_id": row["stream_id"],
            "version": row["version"],
            "occurred_at": row["occurred_at"].isoformat(),
            "recorded_at": row["recorded_at"].isoformat(),
            "actor": row["actor"],
            "correlation_id": str(row["correlation_id"]),
            "data": data,
            "personal_fields": sealed,
            "readable": readable,
            "prev_hash": row["prev_hash"],
            "hash": row["hash"],
        }

    async def _read_models(self, customer_ids: list[UUID]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for table in await _read_model_tables(self.pool):
            rows = await self.pool.fetch(
                f"SELECT row_to_json(t)::text AS row FROM {_ident(table)} AS t"
                f" WHERE t.customer_id = ANY($1::uuid[]) LIMIT {_MAX_ROWS}",
                customer_ids,
            )
            if rows:
                # parse_float=str: numeric columns (money) stay exact decimal strings, never floats.
                out[table] = [json.loads(r["row"], parse_float=str) for r in rows]
        return out

    async def _merged_into(self, customer_id: UUID) -> list[UUID]:
        """Customers merged into this one (and not unmerged): the same person, their records belong here."""
        rows = await self.pool.fetch(
            "SELECT type, data->>'absorbed_id' AS absorbed FROM timeline_entries"
            " WHERE customer_id = $1 AND type IN ('contacts.CustomersMerged', 'contacts.CustomersUnmerged')"
            " ORDER BY occurred_at, event_id",
            customer_id,
        )
        merged: dict[UUID, None] = {}
        for row in rows:
            absorbed = UUID(row["absorbed"])
            if row["type"] == "contacts.CustomersMerged":
                merged[absorbed] = None
            else:
                merged.pop(absorbed, None)
        return list(merged)

    async def build(
        self, customer_id: UUID, provisions: list[dict[str, Any]], accesses: list[dict[str, Any]]
    ) -> dict[str, Any] | None:
        """The export, or None when nothing at all is held about the customer."""
        merged = await self._merged_into(customer_id)
        ids = [customer_id, *merged]
        events = [await self._event(row) for row in await self._events(ids)]
        read_models = await self._read_models(ids)
        if not events and not read_models and not provisions:
            return None
        profile: dict[str, Any] = {}
        consents: dict[str, dict[str, Any]] = {}
        erased = False
        for event in events:
            if event["service"] != "contacts" or event["customer_id"] != str(customer_id):
                continue
            if event["type"] == "contacts.CustomerErased":
                erased = True
            if event["type"] in ("contacts.ConsentGranted", "contacts.ConsentWithdrawn"):
                data = event["data"]
                consents[f"{data.get('channel')}:{data.get('purpose')}"] = {
                    "channel": data.get("channel"),
                    "purpose": data.get("purpose"),
                    "granted": event["type"] == "contacts.ConsentGranted",
                    "source": data.get("source"),
                    "at": event["occurred_at"],
                }
            model = event_model(event["type"])
            if not event["readable"] or model is None or "person_id" in event["data"]:
                continue
            for name in PROFILE_FIELDS:
                if name in event["data"] and name in model.personal_fields():
                    profile[name] = {
                        "value": event["data"][name],
                        "as_of": event["occurred_at"],
                        "event": event["event_id"],
                    }
        return {
            "customer_id": str(customer_id),
            "generated_at": datetime.now(UTC).isoformat(),
            "erased": erased,
            "merged_records": [str(m) for m in merged],
            "profile": profile,
            "consents": sorted(consents.values(), key=lambda c: (str(c["channel"]), str(c["purpose"]))),
            "events": events,
            "read_models": read_models,
            "third_party_provisions": provisions,
            "access_log": accesses,
        }


def personal_fields_in(export: dict[str, Any]) -> list[str]:
    """Names of the personal fields an export discloses in the clear (for its own access record)."""
    names: set[str] = set(export["profile"])
    for event in export["events"]:
        if event["readable"]:
            names.update(event["personal_fields"])
    return sorted(names)
