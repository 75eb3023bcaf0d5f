"""Tables of the privacy read side: the access log and the third-party provision records (第三者提供記録)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg
from crm_http.access_log import ACCESS_LOG_DDL, ACCESS_LOG_GRANTS, AccessLog, correlation_id, personal_fields_in
from crm_http.auth import Actor
from crm_schemas.registry import EVENT_TYPES, event_model
from fastapi import FastAPI, Request

# APPI Art. 29 (記録の作成): date, recipient (name; address and representative for a company), the
# person concerned and the items of personal data provided, with the consent or legal basis.
PROVISIONS_DDL = """
CREATE TABLE IF NOT EXISTS third_party_provisions (
    seq                      bigint      GENERATED ALWAYS AS IDENTITY,
    provision_id             uuid        PRIMARY KEY,
    customer_id              uuid        NOT NULL,
    provided_at              timestamptz NOT NULL,
    recipient                text        NOT NULL,
    recipient_address        text,
    recipient_representative text,
    items                    text[]      NOT NULL,
    purpose                  text,
    basis                    text        NOT NULL,
    consent_reference        text,
    channel                  text        NOT NULL,
    recorded_by              jsonb       NOT NULL,
    recorded_at              timestamptz NOT NULL DEFAULT now(),
    correlation_id           uuid        NOT NULL
);
CREATE INDEX IF NOT EXISTS third_party_provisions_by_customer
    ON third_party_provisions (customer_id, provided_at DESC);
DROP TRIGGER IF EXISTS third_party_provisions_append_only ON third_party_provisions;
CREATE TRIGGER third_party_provisions_append_only BEFORE UPDATE OR DELETE ON third_party_provisions
    FOR EACH ROW EXECUTE FUNCTION crm_reject_change();
DROP TRIGGER IF EXISTS third_party_provisions_no_truncate ON third_party_provisions;
CREATE TRIGGER third_party_provisions_no_truncate BEFORE TRUNCATE ON third_party_provisions
    FOR EACH STATEMENT EXECUTE FUNCTION crm_reject_change();
"""

PROVISIONS_GRANTS = """
REVOKE UPDATE, DELETE, TRUNCATE ON third_party_provisions FROM {role};
GRANT SELECT, INSERT ON third_party_provisions TO {role};
"""

#: The access log DDL defines crm_reject_change(), which the provision triggers use: it goes first.
PRIVACY_DDL = ACCESS_LOG_DDL + PROVISIONS_DDL
PRIVACY_GRANTS = ACCESS_LOG_GRANTS + PROVISIONS_GRANTS

_PROVISION_COLUMNS = (
    "provision_id, customer_id, provided_at, recipient, recipient_address, recipient_representative, items,"
    " purpose, basis, consent_reference, channel, recorded_by, recorded_at, correlation_id"
)


@dataclass(frozen=True)
class Provision:
    """Personal data of one person given to another party."""

    customer_id: UUID
    provided_at: datetime
    recipient: str
    items: Sequence[str]
    basis: str
    channel: str
    recipient_address: str | None = None
    recipient_representative: str | None = None
    purpose: str | None = None
    consent_reference: str | None = None


class ThirdPartyProvisions:
    """The append-only record of personal data given to third parties (第三者提供記録)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def record(
        self, provision: Provision, actor: Actor, request: Request | None = None, customer_ids: Iterable[UUID] = ()
    ) -> list[UUID]:
        """Record a provision (for its customer and any further `customer_ids`); the new record ids."""
        ids = list(dict.fromkeys([provision.customer_id, *customer_ids]))
        record_ids = [uuid4() for _ in ids]
        await self.pool.execute(
            f"INSERT INTO third_party_provisions ({_PROVISION_COLUMNS})"
            " SELECT unnest($1::uuid[]), unnest($2::uuid[]), $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,"
            " now(), $13",
            record_ids,
            ids,
            provision.provided_at,
            provision.recipient,
            provision.recipient_address,
            provision.recipient_representative,
            sorted(set(provision.items)),
            provision.purpose,
            provision.basis,
            provision.consent_reference,
            provision.channel,
            json.dumps(actor.as_envelope()),
            correlation_id(request),
        )
        return record_ids

    async def of(self, customer_id: UUID, limit: int = 1000) -> list[dict[str, Any]]:
        """A customer's provision records, newest first."""
        rows = await self.pool.fetch(
            f"SELECT {_PROVISION_COLUMNS} FROM third_party_provisions WHERE customer_id = $1"
            " ORDER BY provided_at DESC, seq DESC LIMIT $2",
            customer_id,
            limit,
        )
        return [_provision(row) for row in rows]


def _provision(row: asyncpg.Record) -> dict[str, Any]:
    recorded_by = row["recorded_by"]
    return {
        "provision_id": str(row["provision_id"]),
        "customer_id": str(row["customer_id"]),
        "provided_at": row["provided_at"].isoformat(),
        "recipient": row["recipient"],
        "recipient_address": row["recipient_address"],
        "recipient_representative": row["recipient_representative"],
        "items": list(row["items"]),
        "purpose": row["purpose"],
        "basis": row["basis"],
        "consent_reference": row["consent_reference"],
        "channel": row["channel"],
        "recorded_by": json.loads(recorded_by) if isinstance(recorded_by, str) else recorded_by,
        "recorded_at": row["recorded_at"].isoformat(),
        "correlation_id": str(row["correlation_id"]),
    }


def _pool(app: FastAPI) -> asyncpg.Pool:
    pool: asyncpg.Pool = app.state.timeline.pool
    return pool


def access_log_of(app: FastAPI) -> AccessLog:
    """The query API's access log (on the projections database), created on first use."""
    log: AccessLog | None = getattr(app.state, "access_log", None)
    if log is None:
        log = AccessLog(_pool(app), "projections")
        app.state.access_log = log
    return log


def provisions_of(app: FastAPI) -> ThirdPartyProvisions:
    """The query API's third-party provision records, created on first use."""
    found: ThirdPartyProvisions | None = getattr(app.state, "provisions", None)
    if found is None:
        found = ThirdPartyProvisions(_pool(app))
        app.state.provisions = found
    return found


#: Roles whose reads hand personal data to another system or party (service accounts of other systems).
PROVIDING_ROLES = frozenset({"integration"})


async def record_personal_read(
    request: Request, actor: Actor, customer_ids: UUID | Iterable[UUID], fields: Iterable[str]
) -> None:
    """Record a read that returned personal `fields`: access log always; a provision record for integration roles.

    The one call every query-API endpoint that returns personal data makes (timeline, customer 360,
    search, exports), after it has built its answer.
    """
    ids = [customer_ids] if isinstance(customer_ids, UUID) else list(dict.fromkeys(customer_ids))
    names = sorted(set(fields))
    if not ids or not names:
        return
    await access_log_of(request.app).record(actor, ids, names, request)
    if actor.role in PROVIDING_ROLES:
        provision = Provision(
            customer_id=ids[0],
            provided_at=datetime.now(UTC),
            recipient=actor.subject,
            items=names,
            basis="entrustment",
            channel="integration_read",
            purpose=f"{request.method} {getattr(request.scope.get('route'), 'path', request.url.path)}",
        )
        await provisions_of(request.app).record(provision, actor, request, ids[1:])


def personal_fields_of_items(items: Iterable[Mapping[str, Any]]) -> list[str]:
    """The personal fields (by event schema) that decrypted event items carry in the clear: what a read disclosed."""
    names: set[str] = set()
    for item in items:
        model = event_model(str(item.get("type", "")))
        data = item.get("data") or {}
        if model is not None and isinstance(data, Mapping):
            names.update(name for name in model.personal_fields() if data.get(name) is not None)
    return sorted(names)


def _personal_names() -> frozenset[str]:
    return frozenset(name for model in EVENT_TYPES.values() for name in model.personal_fields())


def personal_fields_in_document(document: Any) -> list[str]:
    """Names of personal fields (by any event schema) that a response document carries with a value, at any depth."""
    return personal_fields_in(document, _personal_names())
