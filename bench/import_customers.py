"""Customer CSV import rate: `python bench/import_customers.py --help`.

Generates N customer rows (companies and persons, Japanese headers, CP932 or UTF-8), provisions a
throwaway contacts event store on $CRM_BENCH_DATABASE_URL, else on
postgresql://postgres@127.0.0.1:5432/postgres if it answers, else on an embedded PostgreSQL, imports
the file through `crm_contacts.app.imports.import_customers` exactly as `crm import customers` does,
and prints rows/s and the total time next to the target (100,000 rows in under 2 minutes). With
--rerun it imports the same file again, which must import nothing. Nothing is asserted. The database,
role and data keys are dropped at the end unless --keep.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import multiprocessing
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import asyncpg
import psutil
from bench_server import admin_server
from crm_cli.customers import ContactsConnection, open_commands
from crm_contacts import database as contacts_database
from crm_contacts.app.customers import CustomerCommands
from crm_contacts.app.imports import BATCH_SIZE, CONCURRENCY, ImportReport, import_customers
from crm_eventstore.keyring import new_master_key
from crm_eventstore.provision import KEYS_DATABASE, database_url, provision_event_store, provision_keyring
from crm_eventstore.store import CommandContext
from crm_schemas.envelope import ActorRef
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

TARGET_SECONDS = 120.0
TARGET_ROWS = 100_000

console = Console(width=None if sys.stdout.isatty() else 160)

HEADER = [
    "顧客コード",
    "種別",
    "会社名",
    "フリガナ",
    "法人番号",
    "業種",
    "郵便番号",
    "都道府県",
    "市区町村",
    "番地",
    "電話番号",
    "メールアドレス",
    "URL",
    "資本金",
    "従業員数",
    "決算月",
    "代表者",
    "生年月日",
    "性別",
    "職業",
]
_PLACES = [
    ("東京都", "千代田区", "03"),
    ("東京都", "港区", "03"),
    ("大阪府", "大阪市北区", "06"),
    ("愛知県", "名古屋市中区", "052"),
    ("福岡県", "福岡市博多区", "092"),
    ("北海道", "札幌市中央区", "011"),
    ("宮城県", "仙台市青葉区", "022"),
    ("広島県", "広島市中区", "082"),
]
_WORDS = [("さくら", "サクラ"), ("みどり", "ミドリ"), ("東洋", "トウヨウ"), ("日本", "ニホン"), ("富士", "フジ")]
_WORDS += [("青葉", "アオバ"), ("大和", "ヤマト"), ("北斗", "ホクト"), ("光", "ヒカリ"), ("昭和", "ショウワ")]
_TRADES = [("商事", "ショウジ", "卸売業"), ("工業", "コウギョウ", "製造業"), ("建設", "ケンセツ", "建設業")]
_TRADES += [("物産", "ブッサン", "卸売業"), ("システム", "システム", "情報通信業"), ("運輸", "ウンユ", "運輸業")]
_SURNAMES = [("佐藤", "サトウ"), ("鈴木", "スズキ"), ("高橋", "タカハシ"), ("田中", "タナカ"), ("伊藤", "イトウ")]
_SURNAMES += [
    ("渡辺", "ワタナベ"),
    ("山本", "ヤマモト"),
    ("中村", "ナカムラ"),
    ("小林", "コバヤシ"),
    ("加藤", "カトウ"),
]
_GIVEN = [("太郎", "タロウ"), ("花子", "ハナコ"), ("一郎", "イチロウ"), ("美咲", "ミサキ"), ("健", "ケン")]
_GIVEN += [("陽子", "ヨウコ"), ("翔", "ショウ"), ("結衣", "ユイ"), ("大輔", "ダイスケ"), ("愛", "アイ")]
_JOBS = ["会社員", "公務員", "自営業", "学生", "医師", "教員"]


def corporate_number(base: int) -> str:
    """A 法人番号 with a valid check digit for a 12-digit base."""
    digits = f"{base:012d}"
    total = sum(int(d) * (1 if n % 2 else 2) for n, d in enumerate(reversed(digits), start=1))
    return f"{9 - total % 9}{digits}"


def generate(rows: int, seed: int) -> list[list[str]]:
    """Rows of valid customers, 70% companies, every row with its own 顧客コード."""
    rng = random.Random(seed)
    out: list[list[str]] = []
    for n in range(rows):
        prefecture, city, area = rng.choice(_PLACES)
        middle = rng.randrange(2000, 9999) if len(area) == 2 else rng.randrange(200, 400)
        phone = f"{area}-{middle}-{rng.randrange(1000, 9999)}"
        address = [f"{rng.randrange(100, 999)}-{rng.randrange(0, 9999):04d}", prefecture, city]
        address.append(f"{rng.randrange(1, 9)}-{rng.randrange(1, 30)}-{rng.randrange(1, 20)}")
        if rng.random() < 0.7:
            (word, word_kana), (trade, trade_kana, industry) = rng.choice(_WORDS), rng.choice(_TRADES)
            (sur, _), (given, _) = rng.choice(_SURNAMES), rng.choice(_GIVEN)
            out.append(
                [
                    f"C{n:07d}",
                    "法人",
                    f"株式会社{word}{trade}{n}",
                    f"カブシキガイシャ{word_kana}{trade_kana}",
                    corporate_number(100_000_000_000 + n),
                    industry,
                    *address,
                    phone,
                    f"info@corp{n}.example.co.jp",
                    f"https://corp{n}.example.co.jp/",
                    f"{rng.choice([1, 3, 5, 10, 50, 100])}000万円",
                    str(rng.randrange(5, 5000)),
                    str(rng.randrange(1, 13)),
                    f"{sur} {given}",
                    "",
                    "",
                    "",
                ]
            )
        else:
            (sur, sur_kana), (given, given_kana) = rng.choice(_SURNAMES), rng.choice(_GIVEN)
            out.append(
                [
                    f"P{n:07d}",
                    "個人",
                    f"{sur} {given}",
                    f"{sur_kana} {given_kana}",
                    "",
                    "",
                    *address,
                    f"090-{rng.randrange(1000, 9999)}-{rng.randrange(1000, 9999)}",
                    f"user{n}@example.jp",
                    "",
                    "",
                    "",
                    "",
                    "",
                    f"{rng.randrange(1950, 2005)}/{rng.randrange(1, 13)}/{rng.randrange(1, 29)}",
                    rng.choice(["男性", "女性"]),
                    rng.choice(_JOBS),
                ]
            )
    return out


def write_csv(path: Path, rows: list[list[str]], encoding: str) -> None:
    """The rows under the Japanese header, as a spreadsheet would save them."""
    with path.open("w", encoding=encoding, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)


# --- where it runs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchDatabase:
    """A throwaway contacts event store database and its runtime role."""

    admin_url: str
    name: str
    role: str
    password: str

    @classmethod
    def fresh(cls, admin_url: str) -> BenchDatabase:
        suffix = secrets.token_hex(4)
        return cls(admin_url, f"crm_bench_import_{suffix}", f"crm_bench_{suffix}", secrets.token_urlsafe(18))

    async def provision(self) -> tuple[str, str]:
        """(store URL, keys URL), both as the runtime role."""
        store_url = await provision_event_store(self.admin_url, self.name, self.role, self.password)
        admin = await asyncpg.connect(database_url(self.admin_url, self.name))
        try:
            # The contacts database's own tables (the 名寄せ directory), as `crm up` provisions them.
            await admin.execute(contacts_database.DDL + contacts_database.GRANTS.format(role=f'"{self.role}"'))
        finally:
            await admin.close()
        await provision_keyring(self.admin_url, [self.role])
        return store_url, database_url(self.admin_url, KEYS_DATABASE, self.role, self.password)

    async def drop(self) -> None:
        """Remove the database, the role, its grants and the data keys of the imported customers."""
        ids: list[UUID] = []
        with contextlib.suppress(asyncpg.InvalidCatalogNameError, asyncpg.UndefinedTableError):
            conn = await asyncpg.connect(database_url(self.admin_url, self.name))
            try:
                ids = [r["customer_id"] for r in await conn.fetch("SELECT DISTINCT customer_id FROM events")]
            finally:
                await conn.close()
        keys = await asyncpg.connect(database_url(self.admin_url, KEYS_DATABASE))
        try:
            await keys.execute("DELETE FROM customer_keys WHERE customer_id = ANY($1::uuid[])", ids)
            await keys.execute(f'DROP OWNED BY "{self.role}"')
        finally:
            await keys.close()
        admin = await asyncpg.connect(self.admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            await admin.execute(f'DROP OWNED BY "{self.role}"')
            await admin.execute(f'DROP ROLE IF EXISTS "{self.role}"')
        finally:
            await admin.close()


# --- the run ------------------------------------------------------------------------------------------


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def machine_busy() -> float:
    """CPU seconds all cores of this machine spent not idle, since boot."""
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0))


async def wait_quiet(max_cores: float, timeout: float) -> float:
    """Wait (up to timeout) for a second in which the machine used at most max_cores; the load last seen."""
    deadline = time.monotonic() + timeout
    while True:
        before = machine_busy()
        await asyncio.sleep(1.0)
        cores = machine_busy() - before
        if cores <= max_cores or time.monotonic() > deadline:
            return cores


def server_cpu(role: str) -> float:
    """CPU seconds of the PostgreSQL backends serving `role` (this run's connections) on this machine."""
    total = 0.0
    for proc in psutil.process_iter(["name", "cmdline", "cpu_times"]):
        with contextlib.suppress(psutil.Error):
            line = " ".join(proc.info.get("cmdline") or [])
            times = proc.info.get("cpu_times")
            if line.startswith("postgres:") and f" {role} " in f"{line} " and times is not None:
                total += times.user + times.system
    return total


def checker_cpu() -> float:
    """CPU seconds of this process's children (the row checker)."""
    total = 0.0
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            times = child.cpu_times()
            total += times.user + times.system
    return total


@dataclass(frozen=True)
class Run:
    """One import of the file and what the machine did meanwhile."""

    label: str
    report: ImportReport
    seconds: float
    client_cpu: float
    checker_cpu: float
    server_cpu: float
    machine_cores: float

    def per_row_ms(self, cpu: float) -> float:
        return cpu / max(self.report.rows, 1) * 1000

    @property
    def idle_machine_rows_per_s(self) -> float:
        """Rate if only this import and its backends ran on the machine's cores (each process one thread)."""
        total = self.client_cpu + self.checker_cpu + self.server_cpu
        slowest = max(self.per_row_ms(self.client_cpu), self.per_row_ms(self.checker_cpu))
        return 1000 / max(slowest, self.per_row_ms(total) / (os.cpu_count() or 1))


async def timed_import(
    commands: CustomerCommands, path: Path, args: argparse.Namespace, label: str, role: str, checker: Executor | None
) -> Run:
    """Import the file once with a progress bar."""
    ctx = CommandContext(actor=ActorRef(subject="bench:import", role="integration"))
    if args.wait_quiet:
        cores = await wait_quiet(0.4, args.wait_quiet)
        console.print(f"machine load before {label}: {cores:.2f} cores")
    with _progress() as bar:
        task = bar.add_task(label, total=None, rate="")
        started, cpu, busy, server = time.perf_counter(), time.process_time(), machine_busy(), server_cpu(role)
        checking = checker_cpu()

        def advance(done: int, total: int | None) -> None:
            if done % 500 == 0 or done == total:
                rate = done / max(time.perf_counter() - started, 1e-9)
                bar.update(task, completed=done, total=total, rate=f"{rate:,.0f} rows/s")

        report = await import_customers(
            commands,
            path,
            ctx,
            concurrency=args.concurrency,
            batch_size=args.batch_size,
            progress=advance,
            executor=checker,
        )
        seconds = time.perf_counter() - started
    return Run(
        label,
        report,
        seconds,
        time.process_time() - cpu,
        checker_cpu() - checking,
        server_cpu(role) - server,
        (machine_busy() - busy) / seconds,
    )


async def bench(args: argparse.Namespace, db: BenchDatabase, path: Path, checker: Executor | None) -> None:
    store_url, keys_url = await db.provision()
    connection = ContactsConnection(store_url, keys_url, new_master_key())
    async with open_commands(connection, args.concurrency) as commands:
        runs = [await timed_import(commands, path, args, "import", db.role, checker)]
        if args.rerun:
            runs.append(await timed_import(commands, path, args, "re-run", db.role, checker))
        events = await commands.store.pool.fetchval("SELECT count(*) FROM events")
    table = Table(
        title=f"Customer CSV import: {args.rows:,} rows ({args.encoding}, concurrency {args.concurrency},"
        f" batches of {args.batch_size}, rows checked {'in a second process' if checker else 'inline'})"
    )
    columns = ["run", "seconds", "rows/s", "imported", "already imported", "invalid", "CPU/row: client+checker+db"]
    for column in [*columns, "machine busy", "rows/s if alone", "target"]:
        table.add_column(column, justify="left" if column in ("run", "target") else "right")
    for run in runs:
        report = run.report
        projected = run.seconds * TARGET_ROWS / max(report.rows, 1)
        verdict = "met" if projected < TARGET_SECONDS else "MISSED"
        table.add_row(
            run.label,
            f"{run.seconds:.1f}",
            f"{report.rows / run.seconds:,.0f}",
            f"{report.imported:,}",
            f"{report.replayed:,}",
            f"{report.invalid:,}",
            f"{run.per_row_ms(run.client_cpu):.2f}+{run.per_row_ms(run.checker_cpu):.2f}"
            f"+{run.per_row_ms(run.server_cpu):.2f} ms",
            f"{run.machine_cores:.2f} of {os.cpu_count()} cores",
            f"{run.idle_machine_rows_per_s:,.0f}",
            f"{TARGET_ROWS:,} rows < {TARGET_SECONDS:.0f} s: {verdict} ({projected:.0f} s)"
            if run.label == "import"
            else "imports nothing",
        )
    console.print(table)
    console.print(
        f"events in the store: {events:,}; Python {sys.version.split()[0]}. 'machine busy' counts every process"
        " (this client, PostgreSQL, anything else); 'rows/s if alone' is what the measured CPU per row allows"
        " when nothing else competes for the cores (each process being one thread). Database CPU is measured"
        " only when PostgreSQL runs on this machine."
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=TARGET_ROWS, help="rows to generate (default 100,000)")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY, help="transactions in parallel")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="rows per transaction")
    parser.add_argument("--encoding", default="cp932", choices=["cp932", "utf-8", "utf-8-sig"], help="file encoding")
    parser.add_argument("--rerun", action="store_true", help="import the same file a second time")
    parser.add_argument("--keep", action="store_true", help="keep the database (and print its URL)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--no-checker", dest="checker", action="store_false", help="check rows in this process, not a second one"
    )
    parser.add_argument(
        "--wait-quiet", type=float, default=0, metavar="SECONDS", help="first wait up to this long for an idle machine"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    workdir = Path(tempfile.mkdtemp(prefix="crm-bench-import-"))
    path = workdir / "customers.csv"
    started = time.perf_counter()
    write_csv(path, generate(args.rows, args.seed), args.encoding)
    console.print(f"generated {args.rows:,} rows in {time.perf_counter() - started:.1f} s: {path}")
    server, embedded_dir = admin_server(console)
    db = BenchDatabase.fresh(server.admin_url)
    try:
        # As `crm import customers` does for big files: rows are checked in a second process.
        checker = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) if args.checker else None
        try:
            asyncio.run(bench(args, db, path, checker))
        finally:
            if checker is not None:
                checker.shutdown()
    finally:
        if args.keep:
            console.print(f"kept: {database_url(server.admin_url, db.name)}")
        else:
            asyncio.run(db.drop())
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        if embedded_dir is not None:
            shutil.rmtree(embedded_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
