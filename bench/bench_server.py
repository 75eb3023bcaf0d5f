"""Where a benchmark runs its PostgreSQL work: CRM_BENCH_DATABASE_URL, else the local server, else embedded."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import asyncpg
from crm_cli.infra import Postgres, free_port, provide_postgres
from rich.console import Console

ENV_URL = "CRM_BENCH_DATABASE_URL"
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


async def _answers(url: str) -> bool:
    try:
        conn = await asyncpg.connect(url, timeout=2)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


def admin_server(console: Console) -> tuple[Postgres, Path | None]:
    """The server to benchmark on, and the embedded data dir to delete afterwards (if any)."""
    url = os.environ.get(ENV_URL, "").strip()
    if url:
        return Postgres(url, stop=lambda: None), None
    if asyncio.run(_answers(DEFAULT_ADMIN_URL)):
        return Postgres(DEFAULT_ADMIN_URL, stop=lambda: None), None
    data = Path(tempfile.mkdtemp(prefix="crm-bench-pg-"))
    console.print(f"no PostgreSQL on {DEFAULT_ADMIN_URL}: starting an embedded one in {data}")
    return provide_postgres(data / "pgdata", free_port(), ENV_URL), data
