"""The `crm demo` command and `crm up --demo`."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, cast

import asyncpg
import typer
from rich.console import Console

from crm_cli.demo import DemoReport, load_demo

JST = timezone(timedelta(hours=9))


def _services(home: Path) -> dict[str, str]:
    from crm_cli.stack import endpoints

    return cast(dict[str, str], endpoints(home)["services"])


def _token(home: Path) -> str:
    token = os.environ.get("CRM_TOKEN")
    if token:
        return token
    path = home / "dev-token"
    if not path.exists():
        raise typer.BadParameter(f"{path} not found: run `crm up` first, or set CRM_TOKEN to an admin token")
    return path.read_text().strip()


def _print_report(report: DemoReport, console: Console) -> None:
    console.print(
        f"demo: {report.customers} customers, {report.commands} commands in {report.seconds:.1f} s "
        f"({report.rate:.1f} commands/s)"
    )
    for label, count in sorted(report.by_path.items()):
        console.print(f"  {label:<32} {count:>6}")
    if report.failures:
        console.print(f"[red]{len(report.failures)} customer(s) stopped on a refused command:[/red]")
        for failure in report.failures[:10]:
            console.print(f"  {failure}")


def demo_command(
    customers: Annotated[int, typer.Option(min=1, max=100_000, help="How many customers to create")] = 200,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed plans the same book")] = 2024,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Customers loaded at once")] = 8,
    today: Annotated[
        str | None, typer.Option(help="The day the book ends (YYYY-MM-DD); default today in Japan")
    ] = None,
) -> None:
    """Create a realistic Japanese B2B/B2C book through the APIs: customers, contact persons, deals in every
    stage, activities, contracts, orders over five years, invoices, payments, budgets, tickets and complaints."""
    from crm_cli.stack import crm_home

    console = Console()
    home = crm_home()
    day = date.fromisoformat(today) if today else datetime.now(JST).date()
    report = asyncio.run(load_demo(_services(home), _token(home), customers, seed, day, concurrency, console))
    _print_report(report, console)
    if report.failures:
        raise typer.Exit(1)


async def _contacts_is_empty(database_url: str) -> bool:
    conn = await asyncpg.connect(database_url)
    try:
        return not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM events)")
    finally:
        await conn.close()


def load_demo_if_empty(home: Path, console: Console) -> None:
    """`crm up --demo`: load the default demo book unless contacts already holds events."""
    from crm_cli.stack import endpoints

    urls = cast(dict[str, str], endpoints(home)["database_urls"])
    if not asyncio.run(_contacts_is_empty(urls["contacts"])):
        console.print("demo: the system already holds customers; not loading the demo book")
        return
    day = datetime.now(UTC).astimezone(JST).date()
    report = asyncio.run(load_demo(_services(home), _token(home), 200, 2024, day, 8, console))
    _print_report(report, console)
