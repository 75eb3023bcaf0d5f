"""The local stack behind `crm up`: infrastructure, databases, and one process per component."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from crm_eventstore.keyring import new_master_key
from crm_eventstore.provision import (
    KEYS_DATABASE,
    database_url,
    provision_event_store,
    provision_keyring,
    provision_read_models,
)
from crm_http.auth import DevIssuer
from crm_projections.read_models import READ_MODELS_DDL, READ_MODELS_GRANTS
from crm_schemas.registry import SERVICES
from rich.console import Console

from crm_cli.infra import Kafka, Postgres, provide_kafka, provide_postgres

console = Console()

HTTP_PORTS = {
    name: int(os.environ.get(f"CRM_{name.upper()}_PORT", default))
    for name, default in {"projections": 8000, "contacts": 8001, "deals": 8002, "support": 8003}.items()
}
_METRICS_BASE = int(os.environ.get("CRM_METRICS_PORT_BASE", "9100"))
METRICS_PORTS = {
    "consumer": _METRICS_BASE,
    "relay-contacts": _METRICS_BASE + 1,
    "relay-deals": _METRICS_BASE + 2,
    "relay-support": _METRICS_BASE + 3,
    "support-worker": _METRICS_BASE + 4,
    "deals-worker": _METRICS_BASE + 5,
}
APPS = {
    "contacts": "crm_contacts.entrypoints.http:build_app",
    "deals": "crm_deals.bootstrap:bootstrap",
    "support": "crm_support.bootstrap:bootstrap",
    "projections": "crm_projections.api:build_app",
}


def crm_home() -> Path:
    """$CRM_HOME, default .crm/ in the current directory."""
    home = Path(os.environ.get("CRM_HOME", ".crm")).resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def _secrets(home: Path) -> dict[str, str]:
    path = home / "secrets.json"
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text())
        return stored
    values = {"master_key": os.environ.get("CRM_MASTER_KEY") or new_master_key()}
    for name in [*SERVICES, "projections"]:
        values[f"db_password_{name}"] = secrets.token_urlsafe(24)
    path.write_text(json.dumps(values, indent=2))
    path.chmod(0o600)
    return values


def service_tables(service: str) -> tuple[str, str]:
    """A service's own tables beside its event store: `crm_<service>.database.DDL` and `.GRANTS`, if any."""
    import importlib

    try:
        module = importlib.import_module(f"crm_{service}.database")
    except ModuleNotFoundError:
        return "", ""
    return str(getattr(module, "DDL", "")), str(getattr(module, "GRANTS", ""))


@dataclass
class Provisioned:
    """Database URLs per component, for child processes and endpoints.json."""

    database_urls: dict[str, str]
    keys_urls: dict[str, str]
    admin_url: str
    # Each event store as crm_projections (SELECT on events only), for the query API's timeline verify.
    reader_urls: dict[str, str]


async def provision(admin_url: str, home: Path) -> Provisioned:
    """Create every service's database, role and schema (idempotent)."""
    values = _secrets(home)
    # The read models first: that creates crm_projections, which the event stores grant SELECT on events.
    projections = os.environ.get("CRM_PROJECTIONS_DATABASE_URL") or await provision_read_models(
        admin_url,
        "crm_projections",
        "crm_projections",
        values["db_password_projections"],
        READ_MODELS_DDL,
        READ_MODELS_GRANTS,
    )
    urls: dict[str, str] = {}
    readers: dict[str, str] = {}
    for service in SERVICES:
        override = os.environ.get(f"CRM_{service.upper()}_DATABASE_URL")
        ddl, role_grants = service_tables(service)
        urls[service] = override or await provision_event_store(
            admin_url,
            f"crm_{service}",
            f"crm_{service}",
            values[f"db_password_{service}"],
            ddl,
            role_grants,
            readers=["crm_projections"],
        )
        readers[service] = override or database_url(
            admin_url, f"crm_{service}", "crm_projections", values["db_password_projections"]
        )
    urls["projections"] = projections
    roles = [f"crm_{s}" for s in [*SERVICES, "projections"]]
    await provision_keyring(admin_url, roles)
    keys = {
        name: os.environ.get("CRM_KEYS_DATABASE_URL")
        or database_url(admin_url, KEYS_DATABASE, f"crm_{name}", values[f"db_password_{name}"])
        for name in [*SERVICES, "projections"]
    }
    return Provisioned(urls, keys, admin_url, readers)


@dataclass
class Child:
    """A component process and where its log goes."""

    name: str
    args: list[str]
    env: dict[str, str]
    ready_url: str
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None


@dataclass
class Stack:
    """A running local stack."""

    home: Path
    postgres: Postgres
    kafka: Kafka
    children: list[Child] = field(default_factory=list)

    def stop(self) -> None:
        """Stop every child, then the broker and the database."""
        for child in self.children:
            if child.proc and child.proc.poll() is None:
                child.proc.terminate()
        deadline = time.monotonic() + 15
        for child in self.children:
            if child.proc is None:
                continue
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.proc.kill()
        self.kafka.stop()
        self.postgres.stop()


def _children(p: Provisioned, kafka: Kafka, issuer: DevIssuer, master_key: str, home: Path) -> list[Child]:
    base = {
        **os.environ,
        "CRM_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "CRM_MASTER_KEY": master_key,
        "CRM_JWT_ISSUER": issuer.issuer,
        "CRM_JWT_AUDIENCE": issuer.audience,
        "CRM_JWKS_FILE": str(issuer.jwks_path),
        "PYTHONUNBUFFERED": "1",
    }
    base.pop("CRM_JWKS_URL", None)
    children: list[Child] = []
    for name, target in APPS.items():
        env = {
            **base,
            f"CRM_{name.upper()}_DATABASE_URL": p.database_urls[name],
            "CRM_KEYS_DATABASE_URL": p.keys_urls[name],
        }
        if name == "projections":
            # GET /customers/{id}/timeline/verify reads the source event stores, as in production
            # as crm_projections with SELECT on events only.
            env.update({f"CRM_{s.upper()}_DATABASE_URL": p.reader_urls[s] for s in SERVICES})
        port = HTTP_PORTS[name]
        children.append(
            Child(
                name,
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    target,
                    "--factory",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--no-access-log",
                ],
                env,
                f"http://127.0.0.1:{port}/readyz",
            )
        )
    for service in SERVICES:
        name = f"relay-{service}"
        env = {
            **base,
            f"CRM_{service.upper()}_DATABASE_URL": p.database_urls[service],
            "CRM_KEYS_DATABASE_URL": p.keys_urls[service],
            "CRM_METRICS_PORT": str(METRICS_PORTS[name]),
        }
        children.append(
            Child(
                name,
                [sys.executable, "-m", "crm_cli.processes", "relay", service],
                env,
                f"http://127.0.0.1:{METRICS_PORTS[name]}/readyz",
            )
        )
    env = {
        **base,
        "CRM_PROJECTIONS_DATABASE_URL": p.database_urls["projections"],
        "CRM_KEYS_DATABASE_URL": p.keys_urls["projections"],
        "CRM_METRICS_PORT": str(METRICS_PORTS["consumer"]),
    }
    children.append(
        Child(
            "consumer",
            [sys.executable, "-m", "crm_cli.processes", "consume"],
            env,
            f"http://127.0.0.1:{METRICS_PORTS['consumer']}/readyz",
        )
    )
    # The support worker: support's replica of the customer master (from crm.contacts.events.v1)
    # and the SLA scheduler, both on the support database.
    env = {
        **base,
        "CRM_SUPPORT_DATABASE_URL": p.database_urls["support"],
        "CRM_KEYS_DATABASE_URL": p.keys_urls["support"],
        "CRM_METRICS_PORT": str(METRICS_PORTS["support-worker"]),
    }
    children.append(
        Child(
            "support-worker",
            [sys.executable, "-m", "crm_cli.processes", "support-worker"],
            env,
            f"http://127.0.0.1:{METRICS_PORTS['support-worker']}/readyz",
        )
    )
    # The deals worker: the deals replica of the customer master (from crm.contacts.events.v1)
    # and the scheduler (contract expiry / auto-renewal, invoice overdue), both on the deals database.
    env = {
        **base,
        "CRM_DEALS_DATABASE_URL": p.database_urls["deals"],
        "CRM_KEYS_DATABASE_URL": p.keys_urls["deals"],
        "CRM_METRICS_PORT": str(METRICS_PORTS["deals-worker"]),
    }
    children.append(
        Child(
            "deals-worker",
            [sys.executable, "-m", "crm_cli.processes", "deals-worker"],
            env,
            f"http://127.0.0.1:{METRICS_PORTS['deals-worker']}/readyz",
        )
    )
    for child in children:
        child.log = home / "logs" / f"{child.name}.log"
    return children


def _wait_ready(children: list[Child], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    pending = {c.name: c for c in children}
    with httpx.Client(timeout=2.0) as client:
        while pending:
            for name, child in list(pending.items()):
                assert child.proc is not None
                if child.proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {child.proc.returncode}; see {child.log}")
                try:
                    if client.get(child.ready_url).status_code == 200:
                        console.print(f"  [green]ready[/green] {name}")
                        del pending[name]
                except httpx.HTTPError:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"not ready after {timeout:.0f}s: {', '.join(pending)}")
            time.sleep(0.3)


def start(home: Path) -> Stack:
    """Start infrastructure and every component; return once all are ready."""
    console.print(f"CRM_HOME: {home}")
    postgres = provide_postgres(home / "pgdata", port=int(os.environ.get("CRM_PG_PORT", "55432")))
    console.print(f"PostgreSQL: {postgres.admin_url}")
    kafka = provide_kafka(port=int(os.environ.get("CRM_KAFKA_PORT", "19092")), log_file=home / "logs" / "kafka.log")
    console.print(f"Kafka: {kafka.bootstrap_servers}")
    stack = Stack(home, postgres, kafka)
    try:
        provisioned = asyncio.run(provision(postgres.admin_url, home))
        issuer = DevIssuer(home / "issuer")
        master_key = _secrets(home)["master_key"]
        (home / "logs").mkdir(exist_ok=True)
        stack.children = _children(provisioned, kafka, issuer, master_key, home)
        for child in stack.children:
            assert child.log is not None
            out = child.log.open("ab")
            child.proc = subprocess.Popen(child.args, env=child.env, stdout=out, stderr=subprocess.STDOUT)
        _wait_ready(stack.children)
        token = issuer.issue("dev-admin", "admin", team="dev", department="admin")
        (home / "dev-token").write_text(token + "\n")
        endpoints = {
            "services": {name: f"http://127.0.0.1:{port}" for name, port in HTTP_PORTS.items()},
            "metrics": {name: f"http://127.0.0.1:{port}/metrics" for name, port in METRICS_PORTS.items()},
            "database_urls": provisioned.database_urls,
            "keys_database_url": database_url(postgres.admin_url, KEYS_DATABASE),
            "admin_database_url": postgres.admin_url,
            "kafka_bootstrap_servers": kafka.bootstrap_servers,
            "jwks_file": str(issuer.jwks_path),
            "jwt_issuer": issuer.issuer,
        }
        (home / "endpoints.json").write_text(json.dumps(endpoints, indent=2))
        return stack
    except BaseException:
        stack.stop()
        raise


def endpoints(home: Path) -> dict[str, object]:
    """What the last `crm up` wrote to endpoints.json."""
    path = home / "endpoints.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `crm up` first or set CRM_HOME")
    loaded: dict[str, object] = json.loads(path.read_text())
    return loaded
