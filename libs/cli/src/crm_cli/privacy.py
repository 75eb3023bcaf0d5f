"""`crm privacy export ID`: everything the CRM holds about a person, as JSON, from the query API."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated
from uuid import UUID

import httpx
import typer

privacy_app = typer.Typer(help="Data-subject requests: disclosure export (erasure: POST /customers/{id}/erase).")


def _query_api(url: str | None) -> str:
    if url:
        return url.rstrip("/")
    from crm_cli.stack import HTTP_PORTS, crm_home, endpoints

    try:
        services = endpoints(crm_home())["services"]
    except FileNotFoundError:
        return f"http://127.0.0.1:{HTTP_PORTS['projections']}"
    assert isinstance(services, dict)
    return str(services["projections"]).rstrip("/")


def _token(token: str | None) -> str:
    if token:
        return token
    from crm_cli.stack import crm_home

    path = crm_home() / "dev-token"
    if not path.exists():
        raise typer.BadParameter("no token: pass --token (or CRM_TOKEN), or run `crm up` for a development one")
    return path.read_text().strip()


@privacy_app.command("export")
def export(
    customer_id: Annotated[UUID, typer.Argument(help="The customer (data subject)")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the JSON here instead of stdout")] = None,
    url: Annotated[str | None, typer.Option(envvar="CRM_QUERY_API_URL", help="Query API base URL")] = None,
    token: Annotated[
        str | None, typer.Option(envvar="CRM_TOKEN", help="Bearer token of an admin or auditor", show_default=False)
    ] = None,
) -> None:
    """Print (or write) GET /customers/{id}/personal-data: profile, consents, events, read models, provisions, accesses."""
    response = httpx.get(
        f"{_query_api(url)}/customers/{customer_id}/personal-data",
        headers={"Authorization": f"Bearer {_token(token)}"},
        timeout=60.0,
    )
    if response.status_code != 200:
        try:
            detail = response.json().get("detail") or response.text
        except ValueError:
            detail = response.text
        typer.echo(f"export failed ({response.status_code}): {detail}", err=True)
        raise typer.Exit(1)
    text = json.dumps(response.json(), ensure_ascii=False, indent=2)
    if out is None:
        typer.echo(text)
    else:
        out.write_text(text + "\n", encoding="utf-8")
        os.chmod(out, 0o600)  # it is a person's data
        typer.echo(f"wrote {out}", err=True)
