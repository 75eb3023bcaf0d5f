"""`crm projections ...`: rebuild a read model with zero downtime, show rebuild and lag status."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Annotated, Any

import asyncpg
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

projections_app = typer.Typer(help="Operate the read models (rebuilds, status).", no_args_is_help=True)
console = Console()

REBUILDABLE = ("timeline", "facts")
#: What the rebuilt read model counts in its report.
_SERVING = {"timeline": "timeline entries", "facts": "customers in the fact tables"}


class RateColumn(ProgressColumn):
    """Events per second."""

    def render(self, task: Task) -> Text:
        """The task's speed."""
        speed = task.finished_speed or task.speed
        return Text("– ev/s" if speed is None else f"{speed:,.0f} ev/s", style="progress.data.speed")


def _local_endpoints() -> dict[str, Any]:
    from crm_cli.stack import crm_home, endpoints

    try:
        return endpoints(crm_home())
    except FileNotFoundError:
        return {}


def _owner_url(explicit: str | None) -> str:
    if explicit:
        return explicit
    stored = _local_endpoints()
    admin = stored.get("admin_database_url")
    if not admin:
        raise typer.BadParameter("give --database-url (owner URL of the projections database)")
    from crm_eventstore.provision import database_url

    return database_url(str(admin), "crm_projections")


def _service_urls() -> dict[str, str]:
    from crm_projections.settings import ProjectionsSettings
    from crm_projections.timeline.sources import source_urls

    urls = source_urls(ProjectionsSettings())
    found = _local_endpoints().get("database_urls") or {}
    assert isinstance(found, dict)
    for service in ("contacts", "deals", "support"):
        if service not in urls and found.get(service):
            urls[service] = str(found[service])
    return urls


async def _rebuild(name: str, source_name: str, owner_url: str, role: str, batch: int, restart: bool) -> None:
    from crm_eventstore.host import open_keyring
    from crm_eventstore.kafka import client_security
    from crm_eventstore.store import create_pool
    from crm_projections.rebuild.facts import FactsRebuild
    from crm_projections.rebuild.replay import (
        EventStoreSource,
        KafkaSource,
        ReplaySource,
        ShadowRebuild,
        TimelineRebuild,
    )
    from crm_projections.settings import ProjectionsSettings
    from crm_schemas.registry import SERVICES, topic_for

    settings = ProjectionsSettings()
    local = _local_endpoints()
    if not os.environ.get("CRM_KAFKA_BOOTSTRAP_SERVERS") and local.get("kafka_bootstrap_servers"):
        settings = settings.model_copy(update={"kafka_bootstrap_servers": local["kafka_bootstrap_servers"]})
    if not os.environ.get("CRM_KEYS_DATABASE_URL") and local.get("keys_database_url"):
        settings = settings.model_copy(update={"keys_database_url": local["keys_database_url"]})
    if not settings.master_key:
        settings = settings.model_copy(update={"master_key": _local_master_key()})
    pools: list[asyncpg.Pool] = []
    source: ReplaySource
    kafka = KafkaSource(settings.kafka_bootstrap_servers, [topic_for(s) for s in SERVICES], client_security(settings))
    if source_name == "auto":
        source_name = "event-stores" if await kafka.truncated() else "kafka"
        console.print(f"source: {source_name}")
    if source_name == "kafka":
        source = kafka
    elif source_name == "event-stores":
        urls = _service_urls()
        missing = [s for s in SERVICES if s not in urls]
        if missing:
            raise typer.BadParameter(f"no event-store URL for {missing}: set CRM_<SERVICE>_DATABASE_URL")
        for service in SERVICES:
            pools.append(await create_pool(urls[service], min_size=1, max_size=2))
        source = EventStoreSource(dict(zip(SERVICES, pools, strict=True)))
    else:
        raise typer.BadParameter(f"unknown source {source_name!r}: auto, kafka or event-stores")
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    try:
        rebuilder: ShadowRebuild
        if name == "facts":
            # Facts decrypt personal fields (names, addresses for search) with the customers' keys.
            keyring, keys_pool = await open_keyring(settings)
            pools.append(keys_pool)
            rebuilder = FactsRebuild(owner_url, role, keyring, batch=batch)
        else:
            rebuilder = TimelineRebuild(owner_url, role, batch=batch)
        with Progress(*columns, console=console) as bar:
            task = bar.add_task(f"rebuild {name} from {source.name}", total=None)

            def progress(done: int, total: int | None) -> None:
                bar.update(task, completed=done, total=total)

            report = await rebuilder.run(source, restart=restart, progress=progress)
    finally:
        for pool in pools:
            await pool.close()
    console.print(
        f"[green]swapped in[/green] {report.projection}: {report.events:,} events replayed"
        f"{' (resumed)' if report.resumed else ''}, {report.entries:,} {_SERVING[name]} now serving"
    )


def _local_master_key() -> str:
    """The master key `crm up` keeps in $CRM_HOME/secrets.json (empty when there is none)."""
    from crm_cli.stack import crm_home

    path = crm_home() / "secrets.json"
    if not path.exists():
        return ""
    stored = json.loads(path.read_text())
    return str(stored.get("master_key") or "")


@projections_app.command("rebuild")
def rebuild(
    name: Annotated[
        str | None, typer.Argument(help=f"Read model to rebuild: {', '.join(REBUILDABLE)} (default: all)")
    ] = None,
    source: Annotated[str, typer.Option(help="auto (Kafka unless truncated), kafka or event-stores")] = "auto",
    database_url: Annotated[
        str | None, typer.Option(envvar="CRM_MIGRATE_DATABASE_URL", help="Owner URL of the projections database")
    ] = None,
    role: Annotated[str, typer.Option(help="Runtime role granted on the rebuilt tables")] = "crm_projections",
    batch: Annotated[int, typer.Option(min=100, help="Events per committed batch")] = 5000,
    restart: Annotated[bool, typer.Option(help="Discard an interrupted rebuild instead of resuming it")] = False,
) -> None:
    """Replay a read model (every one without NAME) from the beginning into a fresh copy while the old one
    serves, then swap atomically.

    Safe to interrupt (Ctrl-C) and run again: it resumes from the last committed batch.
    """
    names = [name] if name else list(REBUILDABLE)
    unknown = [n for n in names if n not in REBUILDABLE]
    if unknown:
        raise typer.BadParameter(f"unknown read model {unknown[0]!r}; rebuildable: {', '.join(REBUILDABLE)}")
    owner = _owner_url(database_url)
    for each in names:
        try:
            asyncio.run(_rebuild(each, source, owner, role, batch, restart))
        except KeyboardInterrupt:
            console.print("[yellow]interrupted: run the same command again to resume[/yellow]")
            raise typer.Exit(130) from None


@projections_app.command("status")
def status(
    database_url: Annotated[
        str | None, typer.Option(envvar="CRM_MIGRATE_DATABASE_URL", help="URL of the projections database")
    ] = None,
) -> None:
    """Rebuilds and per-partition lag as the read models last reported them."""

    async def show() -> None:
        conn = await asyncpg.connect(_owner_url(database_url))
        try:
            for row in await conn.fetch("SELECT * FROM projection_rebuilds ORDER BY projection"):
                state = "finished" if row["finished_at"] else "running or interrupted"
                console.print(
                    f"rebuild {row['projection']}: {state}, {row['events_done']:,}/{row['events_total'] or '?'} events"
                    f" from {row['source']}, started {row['started_at']:%Y-%m-%d %H:%M:%S}"
                )
            for row in await conn.fetch("SELECT * FROM projection_lag ORDER BY projection, topic, partition"):
                console.print(
                    f"lag {row['projection']} {row['topic']}[{row['partition']}]: {row['lag_events']} events,"
                    f" {row['lag_seconds']:.1f} s (observed {row['observed_at']:%H:%M:%S})"
                )
        finally:
            await conn.close()

    asyncio.run(show())
