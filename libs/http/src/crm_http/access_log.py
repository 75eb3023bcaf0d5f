"""Access audit: every read that returns a person's personal data is recorded in an append-only access log.

An endpoint that answers personal data calls ``await request.app.state.access_log.record(...)`` (or the
``record_access`` shortcut) with the actor, the customer and the personal fields it returned. The log is
a table of the service's own database (``ACCESS_LOG_DDL``/``ACCESS_LOG_GRANTS``): the runtime role may
INSERT and SELECT only, and triggers reject UPDATE, DELETE and TRUNCATE even for the owner.
Auditors read it with ``GET /audit/access?customer=`` (``access_audit_router``).
"""

import base64
import json
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request

from crm_http.auth import Actor
from crm_http.problems import Problem, unprocessable

__all__ = [
    "ACCESS_LOG_DDL",
    "ACCESS_LOG_GRANTS",
    "AUDIT_ROLES",
    "AccessLog",
    "access_audit_router",
    "correlation_id",
    "personal_fields_in",
    "record_access",
    "returned_fields",
]

ACCESS_LOG_DDL = """
CREATE TABLE IF NOT EXISTS access_log (
    seq            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    accessed_at    timestamptz NOT NULL,
    service        text        NOT NULL,
    subject        text        NOT NULL,
    role           text        NOT NULL,
    team           text,
    department     text,
    customer_id    uuid        NOT NULL,
    resource       text        NOT NULL,
    fields         text[]      NOT NULL,
    correlation_id uuid        NOT NULL,
    purpose        text
);
CREATE INDEX IF NOT EXISTS access_log_by_customer ON access_log (customer_id, seq DESC);

CREATE OR REPLACE FUNCTION crm_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % rejected', TG_TABLE_NAME, TG_OP USING ERRCODE = 'CRM00';
END $$;
DROP TRIGGER IF EXISTS access_log_append_only ON access_log;
CREATE TRIGGER access_log_append_only BEFORE UPDATE OR DELETE ON access_log
    FOR EACH ROW EXECUTE FUNCTION crm_reject_change();
DROP TRIGGER IF EXISTS access_log_no_truncate ON access_log;
CREATE TRIGGER access_log_no_truncate BEFORE TRUNCATE ON access_log
    FOR EACH STATEMENT EXECUTE FUNCTION crm_reject_change();
"""

ACCESS_LOG_GRANTS = """
REVOKE UPDATE, DELETE, TRUNCATE ON access_log FROM {role};
GRANT SELECT, INSERT ON access_log TO {role};
"""

#: Roles that may read the access log.
AUDIT_ROLES = frozenset({"auditor", "admin"})

_COLUMNS = (
    "seq, accessed_at, service, subject, role, team, department, customer_id, resource, fields, correlation_id, purpose"
)


class _Pool(Protocol):
    """The part of an asyncpg pool the access log uses."""

    async def execute(self, query: str, *args: Any) -> str: ...

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...


def correlation_id(request: Request | None) -> UUID:
    """The request's X-Correlation-ID when it is a UUID, else a new id."""
    header = request.headers.get("x-correlation-id") if request is not None else None
    if header:
        try:
            return UUID(header)
        except ValueError:
            pass
    return uuid.uuid4()


def returned_fields(document: Mapping[str, Any], personal: Iterable[str]) -> list[str]:
    """Which of the `personal` fields a response document actually carries (present and not empty)."""
    return sorted(name for name in personal if document.get(name) not in (None, "", [], {}))


def personal_fields_in(document: Any, personal: Iterable[str]) -> list[str]:
    """Which of the `personal` field names a response document carries with a value, at any depth."""
    names = frozenset(personal)
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if key in names and value not in (None, "", [], {}):
                    found.add(str(key))
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(document)
    return sorted(found)


def _resource(request: Request | None) -> str:
    if request is None:
        return "internal"
    route = request.scope.get("route")
    path = getattr(route, "path", None) or request.url.path
    return f"{request.method} {path}"


@dataclass(frozen=True)
class _Cursor:
    before: int

    def encode(self) -> str:
        return base64.urlsafe_b64encode(json.dumps([1, self.before]).encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> "_Cursor":
        try:
            version, before = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            if version != 1 or not isinstance(before, int):
                raise ValueError(text)
            return cls(before)
        except (ValueError, TypeError) as exc:
            raise ValueError("cursor is not valid") from exc


class AccessLog:
    """Appends access records to, and reads them from, the `access_log` table of one database."""

    def __init__(self, pool: _Pool, service: str, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.pool = pool
        self.service = service
        self._clock = clock

    async def record(
        self,
        actor: Actor,
        customer_ids: UUID | Iterable[UUID],
        fields: Iterable[str],
        request: Request | None = None,
        *,
        resource: str | None = None,
        purpose: str | None = None,
    ) -> None:
        """Record that `actor` was given these personal `fields` of each customer (nothing if no field)."""
        names = sorted(set(fields))
        ids = [customer_ids] if isinstance(customer_ids, UUID) else list(dict.fromkeys(customer_ids))
        if not names or not ids:
            return
        await self.pool.execute(
            "INSERT INTO access_log (accessed_at, service, subject, role, team, department, customer_id,"
            " resource, fields, correlation_id, purpose)"
            " SELECT $1, $2, $3, $4, $5, $6, unnest($7::uuid[]), $8, $9, $10, $11",
            self._clock(),
            self.service,
            actor.subject,
            actor.role,
            actor.team,
            actor.department,
            ids,
            resource or _resource(request),
            names,
            correlation_id(request),
            purpose,
        )

    async def query(self, customer_id: UUID, limit: int = 100, cursor: str | None = None) -> dict[str, Any]:
        """Records about one customer, newest first, a page at a time (ValueError: bad cursor)."""
        before = _Cursor.decode(cursor).before if cursor else None
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM access_log WHERE customer_id = $1 AND ($2::bigint IS NULL OR seq < $2)"
            " ORDER BY seq DESC LIMIT $3",
            customer_id,
            before,
            limit + 1,
        )
        items = [_item(row) for row in rows[:limit]]
        more = len(rows) > limit
        return {
            "customer_id": str(customer_id),
            "items": items,
            "next_cursor": _Cursor(rows[limit - 1]["seq"]).encode() if more else None,
        }


def _item(row: Any) -> dict[str, Any]:
    return {
        "accessed_at": row["accessed_at"].isoformat(),
        "service": row["service"],
        "actor": {
            "subject": row["subject"],
            "role": row["role"],
            "team": row["team"],
            "department": row["department"],
        },
        "customer_id": str(row["customer_id"]),
        "resource": row["resource"],
        "fields": list(row["fields"]),
        "correlation_id": str(row["correlation_id"]),
        "purpose": row["purpose"],
    }


async def record_access(
    request: Request, actor: Actor, customer_ids: UUID | Iterable[UUID], fields: Iterable[str], **kw: Any
) -> None:
    """Record a read on the app's access log (``app.state.access_log``), if the app has one."""
    log: AccessLog | None = getattr(request.app.state, "access_log", None)
    if log is not None:
        await log.record(actor, customer_ids, fields, request, **kw)


def _state_log(request: Request) -> AccessLog:
    log: AccessLog = request.app.state.access_log
    return log


def access_audit_router(
    current_actor: Callable[..., Awaitable[Actor]],
    roles: frozenset[str] = AUDIT_ROLES,
    access_log: Callable[[Request], AccessLog] = _state_log,
) -> APIRouter:
    """``GET /audit/access?customer=``: the access log of one customer, for auditors (app.state.access_log)."""
    router = APIRouter(tags=["audit"])

    @router.get("/audit/access")
    async def access_records(
        request: Request,
        actor: Annotated[Actor, Depends(current_actor)],
        customer: Annotated[UUID, Query(description="The customer (data subject) whose accesses to list")],
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Who read which personal fields of a customer, when, and under which correlation id; newest first."""
        if actor.role not in roles:
            raise Problem(403, "Forbidden", f"the role {actor.role!r} may not read the access log")
        log = access_log(request)
        try:
            return await log.query(customer, limit=limit, cursor=cursor)
        except ValueError:
            raise unprocessable("cursor", "cursor is not valid") from None

    return router
