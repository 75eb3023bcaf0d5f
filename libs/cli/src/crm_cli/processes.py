"""Entry points of the non-HTTP component processes, each with a metrics/readiness port."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from crm_eventstore.settings import InfraSettings
from crm_eventstore.worker_probes import serve_probes


def main(argv: list[str]) -> None:
    """`relay SERVICE`, `consume`, `support-worker` or `deals-worker`."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    port = int(os.environ.get("CRM_METRICS_PORT", "0"))
    host = InfraSettings().metrics_host
    if argv[:1] == ["relay"] and len(argv) == 2:
        from crm_eventstore.host import run_relay

        if port:
            serve_probes(host, port)
        asyncio.run(run_relay(argv[1]))
    elif argv[:1] == ["consume"]:
        from crm_projections.consumer import run

        if port:
            serve_probes(host, port)
        asyncio.run(run())
    elif argv[:1] == ["support-worker"]:
        from crm_support.entrypoints.worker import run as run_support_worker

        if port:
            serve_probes(host, port)
        asyncio.run(run_support_worker())
    elif argv[:1] == ["deals-worker"]:
        from crm_deals.entrypoints.worker import run as run_deals_worker

        if port:
            serve_probes(host, port)
        asyncio.run(run_deals_worker())
    else:
        raise SystemExit("usage: python -m crm_cli.processes relay SERVICE | consume | support-worker | deals-worker")


if __name__ == "__main__":
    main(sys.argv[1:])
