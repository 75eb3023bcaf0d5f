"""The deals outbox relay process: `python -m crm_deals.entrypoints.relay`."""

from __future__ import annotations

import asyncio

from crm_eventstore.host import run_relay


def main() -> None:
    """Run the relay until SIGTERM."""
    asyncio.run(run_relay("deals"))


if __name__ == "__main__":
    main()
