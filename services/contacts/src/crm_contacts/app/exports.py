"""Customer export to CSV: every customer stream folded to its current state, in the import's columns."""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal, TextIO
from uuid import UUID

from crm_eventstore.errors import KeyDestroyed

from crm_contacts.app.customers import CustomerCommands
from crm_contacts.app.imports import EXPORT_HEADERS, FIELDS, FORMULA_START, IGNORED_HEADERS, JA_HEADERS, Progress
from crm_contacts.domain.customer import Customer

Headers = Literal["fields", "ja"]

# Free text typed by people (a validated phone, number, code or date cannot start a formula). A cell
# like =HYPERLINK(...) would run when the file is opened in Excel (CSV injection), so it is written
# as '=HYPERLINK(...); the import removes that quote again.
_FREE_TEXT = frozenset(
    {"name", "name_kana", "industry", "address.city", "address.street"}
    | {"email", "url", "representative", "occupation", "external_id"}
)

_JA_VALUES = {
    "kind": {"company": "法人", "person": "個人"},
    "gender": {"female": "女性", "male": "男性", "other": "その他", "unspecified": "未回答"},
}


@dataclass
class ExportReport:
    """What an export wrote and what it left out."""

    written: int = 0
    merged: int = 0
    erased: int = 0
    merged_included: bool = False


def header(headers: Headers = "fields", include_merged: bool = False) -> list[str]:
    """The export's header row: `id`, the import's fields, and `merged_into` when merged customers are kept."""
    names = EXPORT_HEADERS if headers == "fields" else JA_HEADERS
    own = IGNORED_HEADERS if headers == "ja" else {k: k for k in IGNORED_HEADERS}
    return [own["id"], *(names[f] for f in FIELDS), *([own["merged_into"]] if include_merged else [])]


def _text(value: Any, free_text: bool = False) -> str:
    if value is None:
        return ""
    if isinstance(value, date):
        return value.isoformat()
    text = str(value)
    return "'" + text if free_text and text.startswith(FORMULA_START) else text


def row(customer: Customer, headers: Headers = "fields", include_merged: bool = False) -> list[str]:
    """One customer as an export row (same order as header())."""
    profile = customer.profile
    address = profile.get("address") or {}
    values: dict[str, Any] = {
        **{f: profile.get(f) for f in FIELDS if not f.startswith("address.")},
        **{f: address.get(f.removeprefix("address.")) for f in FIELDS if f.startswith("address.")},
        "kind": customer.kind,
        "external_id": customer.external_id,
    }
    if headers == "ja":
        for name, words in _JA_VALUES.items():
            values[name] = words.get(values[name], values[name])
    cells = [str(customer.id), *(_text(values[f], f in _FREE_TEXT) for f in FIELDS)]
    if include_merged:
        cells.append(_text(customer.merged_into))
    return cells


@contextmanager
def _opened(out: Path | TextIO, bom: bool) -> Iterator[TextIO]:
    if isinstance(out, Path):
        with out.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as handle:
            yield handle
        return
    if bom:
        out.write("\ufeff")
    yield out


async def customer_ids(commands: CustomerCommands) -> list[UUID]:
    """Every customer with a stream in the contacts store, oldest first (ids are UUIDv7)."""
    rows = await commands.store.pool.fetch(
        "SELECT DISTINCT customer_id FROM events WHERE stream_id LIKE 'customer-%' ORDER BY customer_id"
    )
    return [r["customer_id"] for r in rows]


async def export_customers(
    commands: CustomerCommands,
    out: Path | TextIO,
    *,
    bom: bool = False,
    headers: Headers = "fields",
    include_merged: bool = False,
    concurrency: int = 16,
    progress: Progress | None = None,
) -> ExportReport:
    """Write current customers as CSV (UTF-8, BOM optional for Excel) in columns that import back.

    Customers merged into another are left out unless `include_merged` (then `merged_into` names the
    survivor); customers whose data key was destroyed (erasure) are left out and counted.
    """
    report = ExportReport(merged_included=include_merged)
    ids = await customer_ids(commands)
    gate = asyncio.Semaphore(concurrency)

    async def load(customer_id: UUID) -> Customer | None:
        async with gate:
            try:
                return await commands.load(customer_id)
            except KeyDestroyed:
                return None

    chunk = max(64, concurrency * 16)
    with _opened(out, bom) as handle:
        writer = csv.writer(handle)
        writer.writerow(header(headers, include_merged))
        for start in range(0, len(ids), chunk):
            # Loaded concurrently a chunk at a time, written in id order.
            for customer in await asyncio.gather(*(load(i) for i in ids[start : start + chunk])):
                if customer is None or customer.erased:
                    report.erased += 1
                    continue
                if not customer.registered:
                    continue
                if customer.merged_into is not None:
                    report.merged += 1
                    if not include_merged:
                        continue
                writer.writerow(row(customer, headers, include_merged))
                report.written += 1
            if progress is not None:
                progress(min(start + chunk, len(ids)), len(ids))
    return report
