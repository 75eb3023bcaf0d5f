"""The `crm` command: run the local stack, mint development tokens, verify the audit chains."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import time
from typing import Annotated, TextIO

import asyncpg
import typer
from crm_schemas.registry import SERVICES
from rich.console import Console

from crm_cli.customers import export_app, import_app
from crm_cli.demo_cli import demo_command
from crm_cli.privacy import privacy_app
from crm_cli.projections_cli import projections_app

app = typer.Typer(help="Event-sourced CRM: local stack and operations.", no_args_is_help=True)
audit = typer.Typer(help="Audit the tamper-evident event history.", no_args_is_help=True)
app.add_typer(audit, name="audit")
app.add_typer(import_app, name="import")
app.add_typer(export_app, name="export")
app.add_typer(privacy_app, name="privacy")
app.add_typer(projections_app, name="projections")
console = Console()


@app.command()
def up(
    demo: Annotated[
        bool, typer.Option("--demo", help="Load the demo book (`crm demo`) when the system is empty")
    ] = False,
) -> None:
    """Start the whole system locally (embedded PostgreSQL and Kafka unless URLs are configured)."""
    from crm_cli.stack import HTTP_PORTS, crm_home, start

    home = crm_home()
    stack = start(home)
    if demo:
        from crm_cli.demo_cli import load_demo_if_empty

        try:
            load_demo_if_empty(home, console)
        except BaseException:
            stack.stop()
            raise
    console.print("\n[bold]CRM is up[/bold]")
    for name, port in HTTP_PORTS.items():
        console.print(f"  {name:<12} http://127.0.0.1:{port}  (docs: /docs, OpenAPI: /openapi.json)")
    console.print(f"  endpoints    {home / 'endpoints.json'}")
    console.print(f"  admin token  {home / 'dev-token'}")
    console.print((home / "dev-token").read_text().strip())
    console.print("Press Ctrl-C to stop.")
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    try:
        while not stopping:
            for child in stack.children:
                if child.proc is not None and child.proc.poll() is not None:
                    console.print(f"[red]{child.name} exited ({child.proc.returncode}); see {child.log}[/red]")
                    stopping = True
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    console.print("stopping…")
    stack.stop()
    console.print("stopped")


@app.command()
def token(
    subject: Annotated[str, typer.Option(help="Who the token speaks for")],
    role: Annotated[
        str, typer.Option(help="sales, marketing, support, accounting, manager, admin, auditor, integration")
    ],
    team: Annotated[str | None, typer.Option(help="Team of the subject")] = None,
    department: Annotated[str | None, typer.Option(help="Department of the subject")] = None,
) -> None:
    """Print a token signed by the local development issuer."""
    from crm_http.auth import DevIssuer

    from crm_cli.stack import crm_home

    issuer = DevIssuer(crm_home() / "issuer")
    typer.echo(issuer.issue(subject, role, team=team, department=department))


def _database_urls() -> dict[str, str]:
    urls = {
        s: os.environ[f"CRM_{s.upper()}_DATABASE_URL"]
        for s in SERVICES
        if os.environ.get(f"CRM_{s.upper()}_DATABASE_URL")
    }
    if len(urls) == len(SERVICES):
        return urls
    from crm_cli.stack import crm_home, endpoints

    stored = endpoints(crm_home())
    found = stored["database_urls"]
    assert isinstance(found, dict)
    return {s: urls.get(s) or str(found[s]) for s in SERVICES}


@audit.command("verify")
def audit_verify(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """Recompute every stored hash chain; exit 1 naming the first broken event."""
    from crm_eventstore.store import create_pool, verify_chains

    async def run() -> dict[str, object]:
        report: dict[str, object] = {}
        for service, url in _database_urls().items():
            pool = await create_pool(url, min_size=1, max_size=2)
            try:
                checked, broken = await verify_chains(pool)
            except (OSError, asyncpg.PostgresError) as exc:
                report[service] = {"status": "unreachable", "error": str(exc)}
                continue
            finally:
                await pool.close()
            report[service] = {
                "status": "valid" if broken is None else "broken",
                "events_checked": checked,
                **(
                    {}
                    if broken is None
                    else {
                        "first_broken": {
                            "event_id": str(broken.event_id),
                            "stream_id": broken.stream_id,
                            "version": broken.version,
                            "reason": broken.reason,
                        }
                    }
                ),
            }
        return report

    report = asyncio.run(run())
    failed = [s for s, r in report.items() if isinstance(r, dict) and r.get("status") != "valid"]
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        for service, result in report.items():
            assert isinstance(result, dict)
            line = f"{service}: {result['status']}"
            if "events_checked" in result:
                line += f" ({result['events_checked']} events checked)"
            if "first_broken" in result:
                b = result["first_broken"]
                line += f" — first broken event {b['event_id']} ({b['stream_id']} v{b['version']}): {b['reason']}"
            console.print(line)
    raise typer.Exit(1 if failed else 0)


@app.command()
def migrate(
    target: Annotated[str, typer.Argument(help="contacts, deals, support, projections or keys")],
    database_url: Annotated[str, typer.Option(envvar="CRM_MIGRATE_DATABASE_URL", help="Owner URL of the database")],
    role: Annotated[
        list[str], typer.Option(help="Runtime role(s) to grant; default crm_<target> (keys: every service role)")
    ] = [],  # noqa: B006 - typer reads the default, never mutates it
    reader: Annotated[
        list[str], typer.Option(help="Event stores only: role(s) that may only SELECT events (e.g. crm_projections)")
    ] = [],  # noqa: B006 - typer reads the default, never mutates it
) -> None:
    """Apply a database's schema and grants; safe to run twice (the Kubernetes migration Job runs this)."""
    from crm_eventstore.provision import migrate_event_store, migrate_keyring, migrate_read_models
    from crm_projections.read_models import READ_MODELS_DDL, READ_MODELS_GRANTS

    if target in SERVICES:
        from crm_cli.stack import service_tables

        ddl, role_grants = service_tables(target)
        asyncio.run(migrate_event_store(database_url, (role or [f"crm_{target}"])[0], ddl, role_grants, reader))
    elif reader:
        raise typer.BadParameter("--reader applies to the event stores (contacts, deals, support) only")
    elif target == "projections":
        asyncio.run(
            migrate_read_models(database_url, (role or ["crm_projections"])[0], READ_MODELS_DDL, READ_MODELS_GRANTS)
        )
    elif target == "keys":
        asyncio.run(migrate_keyring(database_url, role or [f"crm_{s}" for s in [*SERVICES, "projections"]]))
    else:
        raise typer.BadParameter(f"unknown target {target!r}")
    console.print(f"migrated {target}")


app.command(name="demo")(demo_command)


@app.command()
def home() -> None:
    """Print $CRM_HOME."""
    from crm_cli.stack import crm_home

    typer.echo(str(crm_home()))


@export_app.command("segment")
def export_segment_command(
    name: Annotated[str, typer.Argument(help="Name of a saved segment (POST /segments)")],
    output: Annotated[str | None, typer.Option("--output", "-o", help="CSV file to write (default: stdout)")] = None,
) -> None:
    """Write a saved segment's current members as CSV."""
    from crm_projections.segments.export import UnknownSegment, export_segment

    async def run(out: TextIO) -> int:
        url = os.environ.get("CRM_PROJECTIONS_DATABASE_URL") or _projections_url()
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        try:
            return await export_segment(pool, name, out)
        finally:
            await pool.close()

    errors = Console(stderr=True)
    out = open(output, "w", encoding="utf-8", newline="") if output else _utf8_stdout()  # noqa: SIM115
    try:
        written = asyncio.run(run(out))
    except UnknownSegment as exc:
        errors.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    finally:
        if output:
            out.close()
    errors.print(f"{written:,} customers written{f' to {output}' if output else ''}")


def _projections_url() -> str:
    from crm_cli.stack import crm_home, endpoints

    found = endpoints(crm_home())["database_urls"]
    assert isinstance(found, dict)
    return str(found["projections"])


def _utf8_stdout() -> TextIO:
    import sys

    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(encoding="utf-8", newline="")
    return sys.stdout


if __name__ == "__main__":
    app()
