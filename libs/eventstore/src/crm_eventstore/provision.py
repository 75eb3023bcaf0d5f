"""Creating each service's database, runtime role and schema on a PostgreSQL server."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from crm_eventstore.keyring import KEYRING_SCHEMA
from crm_eventstore.projection import PROJECTION_RUNTIME_DDL
from crm_eventstore.schema import EVENT_STORE_DDL, grants

KEYS_DATABASE = "crm_keys"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def database_url(admin_url: str, database: str, user: str | None = None, password: str | None = None) -> str:
    """The admin URL pointed at another database, optionally as another user."""
    parts = urlsplit(admin_url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    login = quote(user if user is not None else (parts.username or "postgres"), safe="")
    secret = password if user is not None else parts.password
    if secret:
        login += ":" + quote(secret, safe="")
    return urlunsplit((parts.scheme, f"{login}@{netloc}", "/" + database, parts.query, ""))


def reader_grants(readers: Sequence[str]) -> str:
    """Read-only access to an event store: SELECT on `events` and nothing else (idempotent).

    For roles of other components that read a service's events at the source, e.g. the query
    API recomputing hash chains (GET /customers/{id}/timeline/verify).
    """
    return "".join(
        f" GRANT USAGE ON SCHEMA public TO {_ident(reader)}; GRANT SELECT ON events TO {_ident(reader)};"
        for reader in readers
    )


async def ensure_role(admin: asyncpg.Connection, role: str, password: str) -> None:
    """Create a LOGIN role, or reset its password; never a superuser."""
    exists = await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
    verb = "ALTER" if exists else "CREATE"
    literal = "'" + password.replace("'", "''") + "'"
    await admin.execute(f"{verb} ROLE {_ident(role)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {literal}")


async def ensure_database(admin_url: str, database: str) -> None:
    """Create a database if it does not exist."""
    conn = await asyncpg.connect(admin_url)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            await conn.execute(f"CREATE DATABASE {_ident(database)}")
    finally:
        await conn.close()


async def _run_in(admin_url: str, database: str, sql: str) -> None:
    conn = await asyncpg.connect(database_url(admin_url, database))
    try:
        # One migration at a time per database, so two deploys racing do not collide.
        await conn.execute("SELECT pg_advisory_lock(7242001)")
        await conn.execute(sql)
    finally:
        await conn.close()


async def provision_event_store(
    admin_url: str,
    database: str,
    role: str,
    password: str,
    extra_ddl: str = "",
    extra_grants: str = "",
    readers: Sequence[str] = (),
) -> str:
    """Database + role + event store schema (+ a service's own tables) for one service; returns the role's URL.

    `extra_grants` is a format string with `{role}` for the quoted runtime role; `readers` are
    existing roles that may only SELECT `events` (`reader_grants`).
    """
    await ensure_database(admin_url, database)
    admin = await asyncpg.connect(admin_url)
    try:
        await ensure_role(admin, role, password)
    finally:
        await admin.close()
    await _run_in(
        admin_url,
        database,
        EVENT_STORE_DDL
        + extra_ddl
        + f"REVOKE CREATE ON SCHEMA public FROM PUBLIC; GRANT USAGE ON SCHEMA public TO {_ident(role)};"
        + grants(role)
        + extra_grants.format(role=_ident(role))
        + reader_grants(readers),
    )
    return database_url(admin_url, database, role, password)


async def provision_keyring(admin_url: str, roles: list[str]) -> str:
    """The key database and its table; returns the admin URL of that database."""
    await ensure_database(admin_url, KEYS_DATABASE)
    statements = [KEYRING_SCHEMA, "REVOKE CREATE ON SCHEMA public FROM PUBLIC;"]
    for role in roles:
        statements.append(
            f"GRANT USAGE ON SCHEMA public TO {_ident(role)};"
            f" GRANT SELECT, INSERT, UPDATE ON customer_keys TO {_ident(role)};"
        )
    await _run_in(admin_url, KEYS_DATABASE, "\n".join(statements))
    return database_url(admin_url, KEYS_DATABASE)


async def provision_read_models(
    admin_url: str, database: str, role: str, password: str, ddl: str, role_grants: str
) -> str:
    """Database + role + projection runtime tables + a read model's own DDL; returns the role's URL."""
    await ensure_database(admin_url, database)
    admin = await asyncpg.connect(admin_url)
    try:
        await ensure_role(admin, role, password)
    finally:
        await admin.close()
    await _run_in(
        admin_url,
        database,
        PROJECTION_RUNTIME_DDL
        + ddl
        + f"REVOKE CREATE ON SCHEMA public FROM PUBLIC; GRANT USAGE ON SCHEMA public TO {_ident(role)};"
        + f" GRANT SELECT, INSERT, UPDATE ON processed_events, projection_positions TO {_ident(role)};"
        + role_grants.format(role=_ident(role)),
    )
    return database_url(admin_url, database, role, password)


async def migrate_event_store(
    owner_url: str, role: str, extra_ddl: str = "", extra_grants: str = "", readers: Sequence[str] = ()
) -> None:
    """Apply the event store DDL (+ a service's own tables), runtime-role and reader grants (idempotent)."""
    conn = await asyncpg.connect(owner_url)
    try:
        await conn.execute("SELECT pg_advisory_lock(7242001)")
        await conn.execute(
            EVENT_STORE_DDL
            + extra_ddl
            + f"GRANT USAGE ON SCHEMA public TO {_ident(role)};"
            + grants(role)
            + extra_grants.format(role=_ident(role))
            + reader_grants(readers)
        )
    finally:
        await conn.close()


async def migrate_read_models(owner_url: str, role: str, ddl: str, role_grants: str) -> None:
    """Apply the projection runtime and read-model DDL and grants to an existing database (idempotent)."""
    conn = await asyncpg.connect(owner_url)
    try:
        await conn.execute("SELECT pg_advisory_lock(7242001)")
        await conn.execute(
            PROJECTION_RUNTIME_DDL
            + ddl
            + f"GRANT USAGE ON SCHEMA public TO {_ident(role)};"
            + f" GRANT SELECT, INSERT, UPDATE ON processed_events, projection_positions TO {_ident(role)};"
            + role_grants.format(role=_ident(role))
        )
    finally:
        await conn.close()


async def migrate_keyring(owner_url: str, roles: list[str]) -> None:
    """Apply the keyring DDL and grants to an existing key database (idempotent)."""
    conn = await asyncpg.connect(owner_url)
    try:
        await conn.execute("SELECT pg_advisory_lock(7242001)")
        statements = [KEYRING_SCHEMA]
        for role in roles:
            statements.append(
                f"GRANT USAGE ON SCHEMA public TO {_ident(role)};"
                f" GRANT SELECT, INSERT, UPDATE ON customer_keys TO {_ident(role)};"
            )
        await conn.execute("\n".join(statements))
    finally:
        await conn.close()
