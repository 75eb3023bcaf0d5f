"""Customer import from CSV: column mapping, row-level validation, each row all-or-nothing and idempotent."""

from __future__ import annotations

import asyncio
import codecs
import csv
import hashlib
import io
import itertools
import json
import os
import re
import unicodedata
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence, Sized
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

import asyncpg
from crm_eventstore.errors import IdempotencyKeyReused
from crm_eventstore.ids import new_id
from crm_eventstore.store import (
    AppendResult,
    CommandContext,
    IdempotencyClaim,
    NewStream,
    StoredResponse,
    StreamState,
)
from crm_schemas.base import DomainEvent
from pydantic import ValidationError

from crm_contacts.app.customers import CustomerCommands
from crm_contacts.domain.commands import RegisterCustomer
from crm_contacts.domain.customer import Customer, DomainError, decide, fold, stream_id
from crm_contacts.domain.validation import PREFECTURES

Kind = Literal["company", "person"]
Progress = Callable[[int, int | None], None]
"""Called as rows finish: (rows done, total rows or None when the source has no length)."""

#: The fields a column can map to; address parts are dotted.
FIELDS: tuple[str, ...] = (
    "kind",
    "name",
    "name_kana",
    "corporate_number",
    "industry",
    "address.postal_code",
    "address.prefecture",
    "address.city",
    "address.street",
    "phone",
    "email",
    "url",
    "capital",
    "employee_count",
    "fiscal_month",
    "representative",
    "birth_date",
    "gender",
    "occupation",
    "external_id",
)

#: Column headers of our own export, one per field (also accepted on import).
EXPORT_HEADERS: dict[str, str] = {f: f.removeprefix("address.") for f in FIELDS}

#: Japanese column headers, one per field: the export's `ja` header set (also accepted on import).
JA_HEADERS: dict[str, str] = {
    "kind": "種別",
    "name": "顧客名",
    "name_kana": "フリガナ",
    "corporate_number": "法人番号",
    "industry": "業種",
    "address.postal_code": "郵便番号",
    "address.prefecture": "都道府県",
    "address.city": "市区町村",
    "address.street": "番地",
    "phone": "電話番号",
    "email": "メールアドレス",
    "url": "URL",
    "capital": "資本金",
    "employee_count": "従業員数",
    "fiscal_month": "決算月",
    "representative": "代表者",
    "birth_date": "生年月日",
    "gender": "性別",
    "occupation": "職業",
    "external_id": "外部ID",
}

#: Headers our export writes that are not imported: the CRM's own id and the merge marker.
IGNORED_HEADERS: dict[str, str] = {"id": "CRM ID", "merged_into": "統合先ID"}

_ALIASES: dict[str, tuple[str, ...]] = {
    "kind": ("区分", "顧客区分", "顧客種別", "法人個人区分"),
    "name": ("会社名", "氏名", "名前", "名称", "法人名", "企業名", "取引先名", "顧客名称"),
    "name_kana": ("カナ", "ふりがな", "会社名カナ", "顧客名カナ", "氏名カナ", "カナ名称", "よみがな", "ヨミガナ"),
    "address.postal_code": ("〒",),
    "address.street": ("住所", "町名番地", "番地以降"),
    "phone": ("電話", "tel", "電話番号1", "代表電話番号"),
    "email": ("メール", "eメール", "e-mail", "mail", "eメールアドレス"),
    "url": ("ホームページ", "ウェブサイト", "website", "hp"),
    "employee_count": ("社員数",),
    "fiscal_month": ("決算期",),
    "representative": ("代表者名", "代表者氏名"),
    "birth_date": ("誕生日",),
    "external_id": ("顧客コード", "顧客番号", "顧客ID", "取引先コード"),
}

_KINDS: dict[str, Kind] = {
    "company": "company",
    "法人": "company",
    "会社": "company",
    "企業": "company",
    "b2b": "company",
    "person": "person",
    "個人": "person",
    "b2c": "person",
}
_GENDERS = {
    "female": "female",
    "女": "female",
    "女性": "female",
    "f": "female",
    "male": "male",
    "男": "male",
    "男性": "male",
    "m": "male",
    "other": "other",
    "その他": "other",
    "unspecified": "unspecified",
    "未回答": "unspecified",
    "無回答": "unspecified",
    "回答しない": "unspecified",
    "不明": "unspecified",
}
_ERAS = {"明治": 1867, "大正": 1911, "昭和": 1925, "平成": 1988, "令和": 2018}
_ERAS |= {"m": 1867, "t": 1911, "s": 1925, "h": 1988, "r": 2018}
_WESTERN_DATE = re.compile(r"^(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?$")
_ERA_DATE = re.compile(r"^(明治|大正|昭和|平成|令和|[mtshr])(\d{1,2}|元)[-/.年](\d{1,2})[-/.月](\d{1,2})日?$")
_AMOUNT = re.compile(r"^(\d+(?:\.\d+)?)(億|万|千)?$")
_UNITS = {None: 1, "千": 1_000, "万": 10_000, "億": 100_000_000}
#: What makes a spreadsheet read a cell as a formula; the export quotes such cells with a leading '.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_HYPHENS = str.maketrans(dict.fromkeys("‐‑‒–—―−ー－", "-"))

DIFFERENT_DATA = "external id already imported with different data"

#: Rows per transaction, and transactions in parallel (bench/import_customers.py measures them).
BATCH_SIZE = 200
CONCURRENCY = 8


class ImportFileError(Exception):
    """The file as a whole cannot be imported (encoding, header, mapping); no row was looked at."""


@dataclass(frozen=True)
class RowError:
    """One reason a row was not imported: its row number (header = row 1), column, field and message."""

    row: int
    column: str
    field: str
    message: str


@dataclass
class ImportReport:
    """What an import did: rows (non-blank data rows) = imported + replayed + duplicates + invalid.

    `replayed` rows were imported by an earlier run; `duplicates` repeat an earlier row of the same file.
    """

    rows: int = 0
    imported: int = 0
    replayed: int = 0
    duplicates: int = 0
    invalid: int = 0
    errors: list[RowError] = field(default_factory=list)
    error_file: Path | None = None
    encoding: str | None = None
    unmapped_columns: list[str] = field(default_factory=list)

    def as_dict(self, max_errors: int = 1000) -> dict[str, Any]:
        """JSON-ready summary with at most `max_errors` errors."""
        return {
            "rows": self.rows,
            "imported": self.imported,
            "already_imported": self.replayed,
            "duplicates_in_file": self.duplicates,
            "invalid": self.invalid,
            "encoding": self.encoding,
            "unmapped_columns": self.unmapped_columns,
            "errors": [e.__dict__ for e in self.errors[:max_errors]],
            "errors_truncated": len(self.errors) > max_errors,
        }


# --- reading the file -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CsvTable:
    """A decoded CSV: its header and its records numbered as a spreadsheet shows them (header = 1)."""

    header: list[str]
    records: list[tuple[int, list[str]]]
    encoding: str


_SJIS_NAMES = {"shift_jis", "shift-jis", "sjis", "s_jis", "ms932", "windows-31j", "cp932", "mskanji"}


def decode(data: bytes, encoding: str | None = None) -> tuple[str, str]:
    """(text, encoding): the given encoding, else UTF-8 (BOM or not) if it decodes strictly, else CP932."""
    if encoding is not None:
        # Files that say "Shift_JIS" come from Windows and use the CP932 superset (①, ㈱, 髙, ...).
        name = "cp932" if encoding.strip().lower() in _SJIS_NAMES else encoding
        try:
            codec = codecs.lookup(name).name
        except LookupError:
            raise ImportFileError(f"unknown encoding {encoding!r}") from None
        codec = "utf-8-sig" if codec == "utf-8" else codec
        try:
            return data.decode(codec), codec.removesuffix("-sig")
        except UnicodeDecodeError as exc:
            raise ImportFileError(f"not valid {encoding}: undecodable byte at offset {exc.start}") from None
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp932"), "cp932"
    except UnicodeDecodeError as exc:
        raise ImportFileError(
            f"neither UTF-8 nor Shift_JIS/CP932 (undecodable byte at offset {exc.start}); name it with --encoding"
        ) from None


def read_csv(data: bytes, encoding: str | None = None) -> CsvTable:
    """Decode and parse a CSV file; ImportFileError if it has no header or is not CSV."""
    text, used = decode(data, encoding)
    if "\x00" in text:
        # No PostgreSQL text or jsonb value can hold U+0000: such a file is binary, not a CSV to import.
        raise ImportFileError(f"the file contains a NUL character (U+0000) at offset {text.index(chr(0))}")
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    records: list[tuple[int, list[str]]] = []
    try:
        for number, cells in enumerate(reader, start=1):
            if header is None:
                if any(c.strip() for c in cells):
                    header = [c.strip() for c in cells]
                continue
            records.append((number, cells))
    except csv.Error as exc:
        raise ImportFileError(f"not a readable CSV file (line {reader.line_num}): {exc}") from None
    if header is None:
        raise ImportFileError("the file is empty: expected a header row")
    return CsvTable(header, records, used)


# --- mapping columns to fields ------------------------------------------------------------------------


def _key(header: str) -> str:
    return re.sub(r"[\s_\-・]", "", unicodedata.normalize("NFKC", header)).casefold()


def _default_mapping() -> dict[str, str | None]:
    known: dict[str, str | None] = {}
    for name in FIELDS:
        for alias in (name, EXPORT_HEADERS[name], JA_HEADERS[name], *_ALIASES.get(name, ())):
            known[_key(alias)] = name
    for column, ja in IGNORED_HEADERS.items():
        known[_key(column)] = known[_key(ja)] = None
    return known


DEFAULT_MAPPING = _default_mapping()


def _target(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    name = value.strip()
    name = f"address.{name}" if f"address.{name}" in FIELDS else name
    if name not in FIELDS:
        raise ImportFileError(f"mapping names an unknown field {value!r}; fields are: {', '.join(FIELDS)}")
    return name


@dataclass(frozen=True)
class Columns:
    """Which column feeds which field, and the columns nobody maps."""

    fields: dict[str, str]
    unmapped: list[str]

    def column_of(self, field_name: str) -> str:
        """The header of the column that feeds a field ('' when none does)."""
        for column, name in self.fields.items():
            if name == field_name:
                return column
        return ""


def resolve_columns(header: Sequence[str], mapping: Mapping[str, str | None] | None = None) -> Columns:
    """Map each header to a field: `mapping` (header → field, or None to skip) first, then the defaults."""
    given = {_key(k): _target(v) for k, v in (mapping or {}).items()}
    missing = set(given) - {_key(h) for h in header}
    if missing:
        names = [k for k in (mapping or {}) if _key(k) in missing]
        raise ImportFileError(f"the mapping names columns the file does not have: {', '.join(names)}")
    fields: dict[str, str] = {}
    unmapped: list[str] = []
    seen: set[str] = set()
    for column in header:
        if not column:
            continue
        if column in seen:
            raise ImportFileError(f"the header has the column {column!r} twice")
        seen.add(column)
        key = _key(column)
        target = given[key] if key in given else DEFAULT_MAPPING.get(key, "")  # "": no one knows it
        if target == "":
            unmapped.append(column)
        elif target is not None:
            if target in fields.values():
                other = next(c for c, f in fields.items() if f == target)
                raise ImportFileError(f"columns {other!r} and {column!r} both map to {target}")
            fields[column] = target
    if "name" not in fields.values():
        raise ImportFileError("no column maps to name (e.g. 会社名, 顧客名, name); give a mapping")
    return Columns(fields, unmapped)


# --- one row to one command ----------------------------------------------------------------------


def _unquote(value: str) -> str:
    """A cell without the ' our export puts before text a spreadsheet would run as a formula."""
    return value[1:] if value.startswith("'") and value[1:].startswith(FORMULA_START) else value


def _nfkc(value: str) -> str:
    return unicodedata.normalize("NFKC", value).strip()


def _kind(value: str) -> str:
    return _KINDS.get(_nfkc(value).casefold(), value)


def _gender(value: str) -> str:
    return _GENDERS.get(_nfkc(value).casefold(), value)


def _date(value: str) -> str:
    text = re.sub(r"\s", "", _nfkc(value)).casefold()
    western = _WESTERN_DATE.match(text)
    if western:
        y, m, d = western.groups()
        return f"{int(y):04d}-{int(m):02d}-{int(d):02d}"
    era = _ERA_DATE.match(text)
    if era:
        name, y, m, d = era.groups()
        year = _ERAS[name] + (1 if y == "元" else int(y))
        return f"{year:04d}-{int(m):02d}-{int(d):02d}"
    return value


def _amount(value: str) -> str:
    text = re.sub(r"[\s,円]", "", _nfkc(value))
    found = _AMOUNT.match(text)
    if not found:
        return value
    try:
        amount = Decimal(found.group(1)) * _UNITS[found.group(2)]
    except InvalidOperation:
        return value
    return str(int(amount)) if amount == amount.to_integral_value() else str(amount)


def _count(value: str) -> str:
    return re.sub(r"[\s,名人]", "", _nfkc(value))


def _month(value: str) -> str:
    return re.sub(r"月?(決算)?$", "", _nfkc(value))


def _postal_code(value: str) -> str:
    return re.sub(r"[\s〒]", "", _nfkc(value)).translate(_HYPHENS)


def _prefecture(value: str) -> str:
    # 東京 → 東京都, 大阪 → 大阪府: complete only when exactly one prefecture fits.
    text = _nfkc(value)
    if text in PREFECTURES:
        return text
    fits = [text + suffix for suffix in "都道府県" if text + suffix in PREFECTURES]
    return fits[0] if len(fits) == 1 else value


def _corporate_number(value: str) -> str:
    return re.sub(r"[\s-]", "", _nfkc(value).translate(_HYPHENS))


_CELLS: dict[str, Callable[[str], str]] = {
    "kind": _kind,
    "gender": _gender,
    "birth_date": _date,
    "capital": _amount,
    "employee_count": _count,
    "fiscal_month": _month,
    "address.postal_code": _postal_code,
    "address.prefecture": _prefecture,
    "corporate_number": _corporate_number,
}


def _message(error: Mapping[str, Any]) -> str:
    if error["type"] == "missing":
        return "required"
    return str(error["msg"]).removeprefix("Value error, ")


def to_command(
    cells: Mapping[str, str], columns: Columns, default_kind: Kind | None = None
) -> RegisterCustomer | list[tuple[str, str]]:
    """The RegisterCustomer a row asks for, or its (field, message) errors."""
    data: dict[str, Any] = {}
    for column, name in columns.fields.items():
        raw = _unquote((cells.get(column) or "").strip())
        if not raw:
            continue
        value = _CELLS[name](raw) if name in _CELLS else raw
        if name.startswith("address."):
            data.setdefault("address", {})[name.removeprefix("address.")] = value
        else:
            data[name] = value
    if "kind" not in data and default_kind is not None:
        data["kind"] = default_kind
    try:
        return RegisterCustomer.model_validate(data)
    except ValidationError as exc:
        found = [(".".join(str(p) for p in e["loc"]) or "row", _message(e)) for e in exc.errors()]
        return [
            (f, "required: 法人/company or 個人/person" if f == "kind" and m == "required" else m) for f, m in found
        ]


def fingerprint(command: RegisterCustomer) -> str:
    """SHA-256 of the command's normalised content: equal for rows that say the same thing."""
    body = command.model_dump(mode="json", exclude_none=True)
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def claim_for(command: RegisterCustomer) -> IdempotencyClaim:
    """The row's idempotency claim: keyed by external id when given, else by its content."""
    digest = fingerprint(command)
    key = f"import:{command.external_id}" if command.external_id else f"import:sha256:{digest}"
    return IdempotencyClaim(key, digest)


# --- running the import ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Checked:
    """A row checked on its own: blank, or its command and claim, or its (field, message) errors."""

    number: int
    blank: bool = False
    command: RegisterCustomer | None = None
    claim: IdempotencyClaim | None = None
    errors: list[tuple[str, str]] = field(default_factory=list)


_CHUNK = 1000


def _chunks(rows: Iterator[_Row]) -> Iterator[list[_Row]]:
    while chunk := list(itertools.islice(rows, _CHUNK)):
        yield chunk


def _check(rows: list[_Row], columns: Columns, default_kind: Kind | None) -> list[_Checked]:
    """Each row checked on its own (no I/O, so that another process can do it)."""
    checked: list[_Checked] = []
    for number, cells, shape in rows:
        if not any((v or "").strip() for v in cells.values()):
            checked.append(_Checked(number, blank=True))
        elif shape is not None:
            checked.append(_Checked(number, errors=[("row", shape)]))
        else:
            command = to_command(cells, columns, default_kind)
            if isinstance(command, list):
                checked.append(_Checked(number, errors=command))
            else:
                checked.append(_Checked(number, command=command, claim=claim_for(command)))
    return checked


@dataclass(frozen=True)
class _Job:
    row: int
    customer_id: UUID
    events: list[DomainEvent]
    claim: IdempotencyClaim


def error_file_for(path: Path) -> Path:
    """Where the error report of an input file goes: next to it, `<name>.errors.csv`."""
    return path.with_suffix(".errors.csv")


def write_errors(path: Path, errors: Iterable[RowError]) -> None:
    """The error report as CSV (UTF-8 with BOM, so that Excel opens it as such)."""
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["row", "column", "field", "message"])
        writer.writerows((e.row, e.column, e.field, e.message) for e in errors)


#: A row: its number, its cells by header, and what is wrong with its shape (None if nothing).
_Row = tuple[int, Mapping[str, str], str | None]


def _rows(source: CsvTable | Iterable[Mapping[str, str]]) -> tuple[list[str], Iterator[_Row]]:
    if isinstance(source, CsvTable):
        header, width = source.header, len(source.header)

        def table_rows() -> Iterator[_Row]:
            for number, cells in source.records:
                extra = len(cells) > width and any(c.strip() for c in cells[width:])
                yield (
                    number,
                    dict(zip(header, cells, strict=False)),
                    (f"the row has {len(cells)} cells, the header {width}" if extra else None),
                )

        return header, table_rows()
    iterator = iter(source)
    first = next(iterator, None)
    if first is None:
        return [], iter(())

    def mapping_rows() -> Iterator[_Row]:
        yield 2, first, None
        for number, row in enumerate(iterator, start=3):
            yield number, row, None

    return list(first), mapping_rows()


async def import_customers(
    commands: CustomerCommands,
    source: Path | bytes | CsvTable | Iterable[Mapping[str, str]],
    ctx: CommandContext,
    *,
    mapping: Mapping[str, str | None] | None = None,
    encoding: str | None = None,
    default_kind: Kind | None = None,
    concurrency: int = CONCURRENCY,
    batch_size: int = BATCH_SIZE,
    progress: Progress | None = None,
    error_file: Path | None = None,
    executor: Executor | None = None,
) -> ImportReport:
    """Import customers from a CSV file (path, bytes or read_csv()) or from rows keyed by header.

    Each valid row registers one customer under an idempotency claim (`import:<external_id>`, else
    `import:sha256:<normalised content>`), so re-running a file imports nothing twice. Rows are written
    `batch_size` to a transaction, each row all-or-nothing, `concurrency` transactions at a time.
    Invalid rows are reported, not imported; for a path, the report goes next to it (`<name>.errors.csv`).
    With `executor` (a process pool), rows are checked there while this process writes.
    """
    if concurrency < 1 or batch_size < 1:
        raise ValueError("concurrency and batch_size must be at least 1")
    report = ImportReport()
    table: CsvTable | Iterable[Mapping[str, str]]
    if isinstance(source, os.PathLike):
        path = Path(source)
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            raise ImportFileError(f"cannot read {path}: {exc.strerror}") from None
        error_file = error_file or error_file_for(path)
        table = read_csv(data, encoding)
    elif isinstance(source, bytes):
        table = read_csv(source, encoding)
    else:
        table = source
    if isinstance(table, CsvTable):
        report.encoding = table.encoding
        total: int | None = len(table.records)
    else:
        total = len(table) if isinstance(table, Sized) else None
    header, rows = _rows(table)
    columns = resolve_columns(header, mapping)
    report.unmapped_columns = columns.unmapped
    first_seen: dict[str, tuple[int, str]] = {}
    done = 0

    def finished() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    def fail(row: int, found: list[tuple[str, str]]) -> None:
        report.invalid += 1
        report.errors.extend(RowError(row, columns.column_of(name), name, message) for name, message in found)
        finished()

    queue: asyncio.Queue[_Job | None] = asyncio.Queue(maxsize=concurrency * batch_size)

    async def checked() -> AsyncIterator[_Checked]:
        if executor is None:
            for chunk in _chunks(rows):
                for row in _check(chunk, columns, default_kind):
                    yield row
                await asyncio.sleep(0)  # let the writers run between chunks
            return
        # Checking a row (parsing, pydantic, phone and e-mail rules) is a third of an import's CPU:
        # another process does it, a few chunks ahead, while this one decides, seals and writes.
        loop = asyncio.get_running_loop()
        ahead: deque[asyncio.Future[list[_Checked]]] = deque()
        for chunk in _chunks(rows):
            ahead.append(loop.run_in_executor(executor, _check, chunk, columns, default_kind))
            if len(ahead) > 2:
                for row in await ahead.popleft():
                    yield row
        while ahead:
            for row in await ahead.popleft():
                yield row

    async def produce() -> None:
        async for row in checked():
            if row.blank:
                finished()
                continue
            report.rows += 1
            if row.command is None or row.claim is None:
                fail(row.number, row.errors)
                continue
            command, claim = row.command, row.claim
            earlier = first_seen.get(claim.key)
            if earlier is not None:
                if earlier[1] == claim.request_hash:
                    report.duplicates += 1
                    finished()
                else:
                    fail(row.number, [("external_id", f"external id also on row {earlier[0]} with different data")])
                continue
            first_seen[claim.key] = (row.number, claim.request_hash)
            customer_id = new_id()
            try:
                events = decide(command, Customer(id=customer_id), datetime.now(UTC))
            except DomainError as error:
                fail(row.number, [(error.field or "row", str(error))])
                continue
            await queue.put(_Job(row.number, customer_id, events, claim))
        for _ in range(concurrency):
            await queue.put(None)

    async def work() -> None:
        while True:
            job = await queue.get()
            batch: list[_Job] = []
            while job is not None:
                batch.append(job)
                if len(batch) == batch_size or queue.empty():
                    break
                job = queue.get_nowait()
            if batch:
                for row in await _write(commands, batch, ctx):
                    if row.outcome == "imported":
                        report.imported += 1
                    elif row.outcome == "replayed":
                        report.replayed += 1
                    else:
                        report.invalid += 1
                        report.errors.append(RowError(row.row, columns.column_of(row.field), row.field, row.message))
                    finished()
            if job is None:
                return

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(produce())
            for _ in range(concurrency):
                group.create_task(work())
    except* Exception as failed:
        # A database failure stops the import; batches committed so far stay, and a re-run skips them.
        raise failed.exceptions[0] from None
    report.errors.sort(key=lambda e: e.row)  # stable: within a row, in field order
    if error_file is not None:
        if report.errors:
            await asyncio.to_thread(write_errors, error_file, report.errors)
            report.error_file = error_file
        else:
            # A report left over from an earlier run would describe rows that are fine now.
            await asyncio.to_thread(error_file.unlink, missing_ok=True)
    return report


@dataclass(frozen=True)
class _Written:
    """What became of one row of a batch: imported, replayed, or refused (with the field and why)."""

    row: int
    outcome: Literal["imported", "replayed", "refused"]
    field: str = ""
    message: str = ""


async def _write(commands: CustomerCommands, batch: list[_Job], ctx: CommandContext) -> list[_Written]:
    """Append a batch of new customers in one transaction, each row all-or-nothing with its claim."""
    try:
        return await _start_batch(commands, batch, ctx)
    except asyncpg.UniqueViolationError:
        # A customer registered outside this import already holds an external id of the batch (the
        # directory keeps external ids unique). The batch rolled back as a whole; row by row, only
        # the rows at fault are refused.
        return await _write_rows(commands, batch, ctx)


async def _start_batch(commands: CustomerCommands, batch: list[_Job], ctx: CommandContext) -> list[_Written]:
    streams = [NewStream(stream_id(j.customer_id), j.events, j.claim, _responder(j.customer_id)) for j in batch]
    written: list[_Written] = []
    async with commands.store.pool.acquire() as conn, conn.transaction():
        results = await commands.store.start_streams(streams, ctx, conn=conn)
        new: list[Customer] = []
        for job, result in zip(batch, results, strict=True):
            if isinstance(result, IdempotencyKeyReused):
                written.append(_Written(job.row, "refused", "external_id", DIFFERENT_DATA))
            elif result.replayed is not None:
                written.append(_Written(job.row, "replayed"))
            else:
                written.append(_Written(job.row, "imported"))
                new.append(fold(job.customer_id, list(job.events)))
        if commands.directory is not None and new:
            await commands.directory.upsert_many(conn, new)
    return written


async def _write_rows(commands: CustomerCommands, batch: list[_Job], ctx: CommandContext) -> list[_Written]:
    """_write() one savepoint per row, so that a row the directory refuses fails alone."""
    store = commands.store
    written: list[_Written] = []
    fresh: list[_Job] = []
    for job in batch:
        try:
            replay = await store.find_response(job.claim)
        except IdempotencyKeyReused:
            written.append(_Written(job.row, "refused", "external_id", DIFFERENT_DATA))
            continue
        if replay is not None:
            written.append(_Written(job.row, "replayed"))
        else:
            fresh.append(job)
    if not fresh:
        return written
    # One commit per batch instead of per row; a savepoint per row keeps each row all-or-nothing
    # (its events, its idempotency claim, its directory entry) without failing its neighbours.
    async with store.pool.acquire() as conn, conn.transaction():
        for job in fresh:
            try:
                result = await _append_row(commands, conn, job, ctx)
            except IdempotencyKeyReused:
                written.append(_Written(job.row, "refused", "external_id", DIFFERENT_DATA))
                continue
            except DomainError as error:
                # E.g. the directory's ExternalIdTaken: a customer registered elsewhere has this external id.
                written.append(_Written(job.row, "refused", error.field or "row", str(error)))
                continue
            written.append(_Written(job.row, "replayed" if result.replayed is not None else "imported"))
    return written


async def _append_row(
    commands: CustomerCommands, conn: asyncpg.Connection, job: _Job, ctx: CommandContext
) -> AppendResult:
    """One row inside the batch transaction; store.append nests its own savepoint around the row."""

    async def append() -> AppendResult:
        return await commands.store.append(
            stream_id(job.customer_id),
            StreamState(0),
            job.events,
            ctx,
            idempotency=job.claim,
            respond=_responder(job.customer_id),
            conn=conn,
        )

    directory = commands.directory
    if directory is None:
        return await append()
    async with conn.transaction():
        # The directory entry joins the row's savepoint: the row's events, claim and entry, or nothing.
        result = await append()
        if result.replayed is None:
            await directory.upsert(conn, fold(job.customer_id, list(job.events)))
    return result


def _responder(customer_id: UUID) -> Callable[[AppendResult], StoredResponse]:
    def respond(result: AppendResult) -> StoredResponse:
        return StoredResponse(201, {"id": str(customer_id), "version": result.version})

    return respond
