"""Reading a customer's timeline: newest first, filtered, cursor-paginated, decrypted for the caller."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
from crm_eventstore.errors import KeyDestroyed
from crm_eventstore.keyring import Keyring
from crm_schemas.registry import event_model

_KIND_JA = {"company": "法人", "person": "個人"}
_TEXT_CHUNK = 200


class BadCursor(ValueError):
    """A pagination cursor that this API did not issue."""


def encode_cursor(occurred_at: datetime, event_id: UUID) -> str:
    """An opaque cursor pointing just after an entry."""
    raw = json.dumps([occurred_at.isoformat(), str(event_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    """The (occurred_at, event_id) a cursor points after."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        when, event_id = json.loads(raw)
        return datetime.fromisoformat(when), UUID(event_id)
    except (ValueError, TypeError) as exc:
        raise BadCursor("cursor is not valid") from exc


@dataclass(frozen=True)
class TimelineFilter:
    """Optional filters of a timeline query."""

    service: str | None = None
    type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = None


def _matches(item: dict[str, Any], text: str) -> bool:
    """Free text: a case-insensitive substring of the summary, the type or any decrypted value."""
    needle = text.casefold()
    haystack = [item["summary"], item["type"]]
    haystack += [
        json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v for v in (item["data"] or {}).values()
    ]
    return any(needle in str(h).casefold() for h in haystack)


def summarise(event_type: str, data: dict[str, Any] | None, language: str) -> str:
    """A one-line readable summary of an event in Japanese or English."""
    model = event_model(event_type)
    if data is None:
        return "（個人データは消去済み）" if language == "ja" else "(personal data erased)"
    template = "" if model is None else (model.summary_ja if language == "ja" else model.summary_en)
    if not template:
        return event_type
    values = {k: ("" if v is None else v) for k, v in data.items()}
    values["kind_ja"] = _KIND_JA.get(str(data.get("kind")), "")
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError):
        return event_type


class TimelineQueries:
    """Timeline reads against the projections database."""

    def __init__(self, pool: asyncpg.Pool, keyring: Keyring) -> None:
        self.pool = pool
        self.keyring = keyring

    async def page(
        self,
        customer_id: UUID,
        limit: int = 50,
        cursor: str | None = None,
        filters: TimelineFilter | None = None,
        language: str = "en",
        members: Sequence[UUID] = (),
    ) -> dict[str, Any]:
        """One page of the timeline, newest first, with next_cursor when more remain.

        `members` are the customer ids whose entries the page interleaves (a survivor and the records
        merged into it); by default only `customer_id`'s own.
        """
        f = filters or TimelineFilter()
        ids = list(dict.fromkeys([customer_id, *members]))
        clauses = ["customer_id = $1"] if len(ids) == 1 else ["customer_id = ANY($1::uuid[])"]
        args: list[Any] = [ids[0] if len(ids) == 1 else ids]
        if cursor:
            when, event_id = decode_cursor(cursor)
            args += [when, event_id]
            clauses.append(f"(occurred_at, event_id) < (${len(args) - 1}, ${len(args)})")
        for column, value, op in (
            ("service", f.service, "="),
            ("type", f.type, "="),
            ("occurred_at", f.since, ">="),
            ("occurred_at", f.until, "<"),
        ):
            if value is not None:
                args.append(value)
                clauses.append(f"{column} {op} ${len(args)}")
        if f.text:
            # Personal fields are encrypted at rest, so free text is matched after decryption, scanning
            # the (filtered) timeline newest first until the page is full.
            return await self._text_page(customer_id, clauses, args, limit, f.text, language)
        args.append(limit + 1)
        rows = await self.pool.fetch(
            "SELECT * FROM timeline_entries WHERE "
            + " AND ".join(clauses)
            + f" ORDER BY occurred_at DESC, event_id DESC LIMIT ${len(args)}",
            *args,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        items = [await self._item(r, language) for r in rows]
        next_cursor = encode_cursor(rows[-1]["occurred_at"], rows[-1]["event_id"]) if more else None
        return {"customer_id": str(customer_id), "items": items, "next_cursor": next_cursor}

    async def _text_page(
        self, customer_id: UUID, clauses: list[str], args: list[Any], limit: int, text: str, language: str
    ) -> dict[str, Any]:
        found: list[tuple[asyncpg.Record, dict[str, Any]]] = []
        after: tuple[datetime, UUID] | None = None
        while len(found) <= limit:
            extra = list(clauses)
            chunk_args = list(args)
            if after is not None:
                chunk_args += [after[0], after[1]]
                extra.append(f"(occurred_at, event_id) < (${len(chunk_args) - 1}, ${len(chunk_args)})")
            chunk_args.append(_TEXT_CHUNK)
            rows = await self.pool.fetch(
                "SELECT * FROM timeline_entries WHERE "
                + " AND ".join(extra)
                + f" ORDER BY occurred_at DESC, event_id DESC LIMIT ${len(chunk_args)}",
                *chunk_args,
            )
            for row in rows:
                item = await self._item(row, language)
                if _matches(item, text):
                    found.append((row, item))
            if len(rows) < _TEXT_CHUNK:
                break
            after = (rows[-1]["occurred_at"], rows[-1]["event_id"])
        more = len(found) > limit
        found = found[:limit]
        last = found[-1][0] if found else None
        next_cursor = encode_cursor(last["occurred_at"], last["event_id"]) if more and last is not None else None
        return {"customer_id": str(customer_id), "items": [i for _, i in found], "next_cursor": next_cursor}

    async def _item(self, row: asyncpg.Record, language: str) -> dict[str, Any]:
        data: dict[str, Any] | None
        try:
            data = await self.keyring.decrypt_fields(row["customer_id"], row["event_id"], row["data"])
        except KeyDestroyed:
            data = None
        return {
            "event_id": str(row["event_id"]),
            "type": row["type"],
            "schema_version": row["schema_version"],
            "service": row["service"],
            "occurred_at": row["occurred_at"].isoformat(),
            "recorded_at": row["recorded_at"].isoformat(),
            "actor": row["actor"],
            "summary": summarise(row["type"], data, language),
            "data": data,
            "stream_id": row["stream_id"],
            "version": row["version"],
            "correlation_id": str(row["correlation_id"]),
            "prev_hash": row["prev_hash"],
            "hash": row["hash"],
        }

    async def exists(self, customer_id: UUID) -> bool:
        """True if the customer has any timeline entry."""
        return bool(
            await self.pool.fetchval("SELECT 1 FROM timeline_entries WHERE customer_id = $1 LIMIT 1", customer_id)
        )
