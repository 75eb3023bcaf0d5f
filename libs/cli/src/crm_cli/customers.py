"""`crm import customers FILE.csv` and `crm export customers`: bulk customer data in and out of contacts."""

from __future__ import annotations

import asyncio
import enum
import getpass
import io
import json
import multiprocessing
import os
import sys
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, TextIO

import asyncpg
import typer
from crm_contacts.app.customers import CustomerCommands
from crm_contacts.app.directory import CustomerDirectory
from crm_contacts.app.exports import ExportReport, export_customers
from crm_contacts.app.imports import BATCH_SIZE, CONCURRENCY, ImportFileError, ImportReport, import_customers
from crm_eventstore.keyring import Keyring, parse_master_key
from crm_eventstore.store import CommandContext, PostgresEventStore, init_connection
from crm_schemas.envelope import ActorRef
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

import_app = typer.Typer(help="Import data into the CRM.", no_args_is_help=True)
export_app = typer.Typer(help="Export data from the CRM.", no_args_is_help=True)
console = Console(stderr=True)
_CHECKER_MIN_BYTES = 1 << 20  # about 4,000 rows


class CustomerKind(enum.StrEnum):
    """The --kind choices."""

    company = "company"
    person = "person"


@dataclass(frozen=True)
class ContactsConnection:
    """Where the contacts event store and the key database are, and the master key for the data keys."""

    database_url: str
    keys_database_url: str
    master_key: str


def contacts_connection() -> ContactsConnection:
    """From CRM_CONTACTS_DATABASE_URL, CRM_KEYS_DATABASE_URL, CRM_MASTER_KEY, else what `crm up` wrote."""
    database = os.environ.get("CRM_CONTACTS_DATABASE_URL", "").strip()
    keys = os.environ.get("CRM_KEYS_DATABASE_URL", "").strip()
    master = os.environ.get("CRM_MASTER_KEY", "").strip()
    if not (database and keys):
        from crm_cli.stack import crm_home, endpoints

        stored = endpoints(crm_home())
        urls = stored.get("database_urls")
        database = database or (str(urls["contacts"]) if isinstance(urls, dict) and "contacts" in urls else "")
        keys = keys or str(stored.get("keys_database_url") or "")
    if not master:
        from crm_cli.stack import crm_home

        path = crm_home() / "secrets.json"
        if path.exists():
            master = str(json.loads(path.read_text()).get("master_key") or "")
    required = {"CRM_CONTACTS_DATABASE_URL": database, "CRM_KEYS_DATABASE_URL": keys, "CRM_MASTER_KEY": master}
    missing = [name for name, value in required.items() if not value]
    if missing:
        raise RuntimeError(f"set {', '.join(missing)} or run `crm up` first (CRM_HOME)")
    return ContactsConnection(database, keys, master)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool reset that skips RESET ALL / UNLISTEN: the import sets no session state (see open_commands)."""


async def _pool(url: str, size: int) -> asyncpg.Pool:
    # asyncpg's default reset costs one round trip per release; a bulk import releases a connection
    # for every keyring lookup. Nothing on these pools LISTENs, SETs or takes session locks, and an open
    # transaction is still rolled back on release.
    pool = await asyncpg.create_pool(url, min_size=1, max_size=size, init=init_connection, reset=_keep_session)
    assert pool is not None
    return pool


@asynccontextmanager
async def open_commands(connection: ContactsConnection, concurrency: int) -> AsyncIterator[CustomerCommands]:
    """Customer commands on the contacts event store, pools sized for `concurrency` parallel batches."""
    keys_pool = await _pool(connection.keys_database_url, concurrency + 2)
    try:
        pool = await _pool(connection.database_url, concurrency + 2)
        try:
            keyring = Keyring(keys_pool, parse_master_key(connection.master_key))
            # As the contacts service wires it: every import row also lands in the 名寄せ directory.
            yield CustomerCommands(PostgresEventStore(pool, "contacts", keyring), CustomerDirectory(pool))
        finally:
            await pool.close()
    finally:
        await keys_pool.close()


class _RowsPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} rows/s", style="progress.data.speed")


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        _RowsPerSecond(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


@contextmanager
def _checker(file: Path) -> Iterator[Executor | None]:
    """A process that checks rows while this one writes, for files big enough to repay its start-up."""
    if not file.is_file() or file.stat().st_size < _CHECKER_MIN_BYTES:
        yield None
        return
    # spawn, not fork: this process runs threads (the progress bar) and an event loop.
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


def _summary(report: ImportReport) -> None:
    console.print(
        f"[bold]{report.rows:,} rows[/bold] ({report.encoding}): "
        f"[green]{report.imported:,} imported[/green], "
        f"{report.replayed:,} already imported, "
        f"{report.duplicates:,} repeated in the file, "
        f"[{'red' if report.invalid else 'green'}]{report.invalid:,} invalid[/]"
    )
    if report.unmapped_columns:
        console.print(f"columns not imported (no field): {escape(', '.join(report.unmapped_columns))}")
    for error in report.errors[:10]:
        console.print(escape(f"  row {error.row}, {error.column or error.field}: {error.message}"))
    if len(report.errors) > 10:
        console.print(f"  … {len(report.errors) - 10:,} more")
    if report.error_file is not None:
        console.print(escape(f"error report: {report.error_file}"))


@import_app.command("customers")
def import_customers_command(
    file: Annotated[Path, typer.Argument(help="CSV file, UTF-8 (with or without BOM) or Shift_JIS/CP932")],
    mapping: Annotated[
        Path | None, typer.Option(help='JSON object: CSV header → field, e.g. {"得意先名": "name", "備考": null}')
    ] = None,
    encoding: Annotated[str | None, typer.Option(help="Input encoding (default: detect UTF-8, else CP932)")] = None,
    kind: Annotated[CustomerKind | None, typer.Option(help="Kind of rows without a 種別/kind value")] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=32, help="Transactions in parallel")] = CONCURRENCY,
    batch_size: Annotated[int, typer.Option(min=1, max=1000, help="Rows per transaction")] = BATCH_SIZE,
    subject: Annotated[str | None, typer.Option(help="Actor recorded on the events (default: cli:$USER)")] = None,
) -> None:
    """Import customers; invalid rows go to FILE.errors.csv; exit 1 if any row was invalid."""
    try:
        columns: dict[str, str | None] | None = json.loads(mapping.read_text(encoding="utf-8")) if mapping else None
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(f"cannot read {mapping}: {exc}", param_hint="--mapping") from None
    if columns is not None and not (
        isinstance(columns, dict) and all(isinstance(v, str | None) for v in columns.values())
    ):
        raise typer.BadParameter("a JSON object of header → field name (or null)", param_hint="--mapping")
    ctx = CommandContext(actor=ActorRef(subject=subject or f"cli:{getpass.getuser()}", role="integration"))

    async def run(checker: Executor | None) -> ImportReport:
        async with open_commands(contacts_connection(), concurrency) as commands:
            with _progress() as bar:
                task = bar.add_task(f"importing {file.name}", total=None)

                def advance(done: int, total: int | None) -> None:
                    bar.update(task, completed=done, total=total)

                return await import_customers(
                    commands,
                    file,
                    ctx,
                    mapping=columns,
                    encoding=encoding,
                    default_kind=None if kind is None else kind.value,
                    concurrency=concurrency,
                    batch_size=batch_size,
                    progress=advance,
                    executor=checker,
                )

    try:
        with _checker(file) as checker:
            report = asyncio.run(run(checker))
    except (ImportFileError, RuntimeError, FileNotFoundError) as exc:
        console.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(2) from None
    except (OSError, asyncpg.PostgresError) as exc:
        console.print(f"[red]import stopped: {escape(str(exc))}[/red]")
        console.print("batches committed so far stay (no row is half-written); re-running the file imports the rest")
        raise typer.Exit(2) from None
    _summary(report)
    raise typer.Exit(1 if report.invalid else 0)


def _stdout() -> TextIO:
    stream = sys.stdout
    if isinstance(stream, io.TextIOWrapper):
        stream.reconfigure(encoding="utf-8", newline="")
    return stream


@export_app.command("customers")
def export_customers_command(
    out: Annotated[Path | None, typer.Option(help="CSV file to write (default: standard output)")] = None,
    bom: Annotated[bool, typer.Option(help="Start with a UTF-8 BOM so that Excel reads the file as UTF-8")] = False,
    japanese_headers: Annotated[
        bool, typer.Option("--ja", help="Japanese headers and values (顧客名, 種別=法人/個人, ...)")
    ] = False,
    include_merged: Annotated[
        bool, typer.Option(help="Also customers merged into another, with merged_into naming the survivor")
    ] = False,
) -> None:
    """Export current customers as CSV in the columns `crm import customers` reads back."""

    async def run() -> ExportReport:
        async with open_commands(contacts_connection(), 16) as commands:
            with _progress() as bar:
                task = bar.add_task("exporting customers", total=None)

                def advance(done: int, total: int | None) -> None:
                    bar.update(task, completed=done, total=total)

                return await export_customers(
                    commands,
                    out if out is not None else _stdout(),
                    bom=bom,
                    headers="ja" if japanese_headers else "fields",
                    include_merged=include_merged,
                    progress=advance,
                )

    try:
        report = asyncio.run(run())
    except (RuntimeError, OSError, asyncpg.PostgresError) as exc:
        console.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(2) from None
    merged = "included" if report.merged_included else "left out"
    console.print(
        f"{report.written:,} customers written{f' to {out}' if out else ''}"
        f" ({report.merged:,} merged into another, {merged}; {report.erased:,} erased, left out)"
    )
