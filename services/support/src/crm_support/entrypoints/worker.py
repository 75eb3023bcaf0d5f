"""The support worker process: the customer replica consumer and the SLA scheduler.

`python -m crm_support.entrypoints.worker` (or `python -m crm_cli.processes support-worker`).
"""

from __future__ import annotations

import asyncio
import logging
import os

from crm_eventstore.host import StoreHandles
from crm_eventstore.replica_worker import run_replica_worker

from crm_support.app.sla_scheduler import SlaScheduler
from crm_support.app.tickets import TicketCommands
from crm_support.replica.project import CustomerReplicaProjection
from crm_support.settings import SupportSettings
from crm_support.sla_clocks import PostgresSlaClocks


async def run() -> None:
    """Keep the customer replica current and record SLA breaches until SIGTERM."""
    settings = SupportSettings()
    os.environ.setdefault("CRM_SUPPORT_DATABASE_URL", settings.support_database_url)

    def scheduler(handles: StoreHandles) -> SlaScheduler:
        clocks = PostgresSlaClocks(handles.pool)
        return SlaScheduler(TicketCommands(handles.store, clocks=clocks, policy=settings.sla_policy()), clocks)

    await run_replica_worker(
        "support",
        settings,
        CustomerReplicaProjection(),
        settings.support_replica_group_id,
        scheduler,
        settings.support_sla_interval,
        settings.projection_max_attempts,
    )


def main() -> None:
    """Entry point."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(run())


if __name__ == "__main__":
    main()
