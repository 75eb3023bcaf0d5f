"""`crm export segment NAME`: a segment's current members as CSV."""

from __future__ import annotations

import csv
from typing import Any, TextIO

import asyncpg

from crm_projections.search.queries import CustomerSearchQueries
from crm_projections.segments.store import SegmentStore, segment_filter

#: CSV columns, in order (tags joined with "|").
COLUMNS = (
    "customer_id",
    "kind",
    "name",
    "name_kana",
    "prefecture",
    "city",
    "industry",
    "rank",
    "tags",
    "revenue",
    "order_count",
    "last_purchase_date",
    "last_contact_at",
    "open_complaints",
    "registered_at",
)


class UnknownSegment(LookupError):
    """No segment has that name."""


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "|".join(str(v) for v in value)
    return str(value)


async def export_segment(pool: asyncpg.Pool, name: str, out: TextIO) -> int:
    """Write the members of the named segment as CSV with a header row; returns the member count."""
    segment = await SegmentStore(pool).named(name)
    if segment is None:
        raise UnknownSegment(f"no segment is named {name!r}")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    count = 0
    async for item in CustomerSearchQueries(pool).iterate(segment_filter(segment), segment["sort"]):
        writer.writerow([_cell(item[c]) for c in COLUMNS])
        count += 1
    return count
