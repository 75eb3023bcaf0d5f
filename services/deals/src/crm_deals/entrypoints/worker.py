"""The deals worker process: the customer replica consumer and the scheduler (contract expiry, invoice overdue).

`python -m crm_deals.entrypoints.worker` (or `python -m crm_cli.processes deals-worker`).
"""

from __future__ import annotations

import asyncio
import logging
import os

from crm_eventstore.host import StoreHandles
from crm_eventstore.replica_worker import run_replica_worker

from crm_deals.app.commands import DealsCommands
from crm_deals.app.scheduler import DealsScheduler
from crm_deals.deadlines import PostgresDeadlines
from crm_deals.replica.project import CustomerReplicaProjection
from crm_deals.settings import DealsSettings


async def run() -> None:
    """Keep the customer replica current and act on passed contract end / invoice due dates until SIGTERM."""
    settings = DealsSettings()
    os.environ.setdefault("CRM_DEALS_DATABASE_URL", settings.deals_database_url)

    def scheduler(handles: StoreHandles) -> DealsScheduler:
        deadlines = PostgresDeadlines(handles.pool)
        commands = DealsCommands(handles.store, deadlines=deadlines, pipelines=settings.pipelines())
        return DealsScheduler(commands, deadlines)

    await run_replica_worker(
        "deals",
        settings,
        CustomerReplicaProjection(),
        settings.deals_replica_group_id,
        scheduler,
        settings.deals_scheduler_interval,
        settings.projection_max_attempts,
    )


def main() -> None:
    """Entry point."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(run())


if __name__ == "__main__":
    main()
