"""HTTP endpoints of the timeline: GET /customers/{id}/timeline and /customers/{id}/timeline/verify.

Both sit behind the authorization policy (docs/adr/0011): `timeline.read` and `timeline.verify`, and
each entry of a page is filtered by the `timeline` resource's field rules for the caller.
"""

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import asyncpg
from crm_http.auth import Actor
from crm_http.policy import Grant, Ownership, Policy, default_policy, permission
from crm_http.problems import Problem, not_found, unprocessable
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse

from crm_projections.privacy.store import personal_fields_of_items, record_personal_read
from crm_projections.timeline.merges import resolve
from crm_projections.timeline.queries import BadCursor, TimelineFilter, TimelineQueries, _matches
from crm_projections.timeline.verify import SourceUnavailable, customer_entries, verify_entries

ActorDependency = Callable[..., Awaitable[Actor]]

MERGED_REDIRECT: dict[int | str, dict[str, Any]] = {
    308: {"description": "The customer was merged into another record: Location names the survivor"}
}


def language(accept_language: str | None) -> str:
    """ja or en from an Accept-Language header (en by default)."""
    if not accept_language:
        return "en"
    for part in accept_language.split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("ja"):
            return "ja"
        if tag.startswith("en"):
            return "en"
    return "en"


def survivor_redirect(request: Request, asked: UUID, survivor: UUID) -> RedirectResponse:
    """308 to the same resource of the survivor, query string kept."""
    path = request.url.path.replace(str(asked), str(survivor), 1)
    query = request.url.query
    return RedirectResponse(path + (f"?{query}" if query else ""), status_code=308)


#: Events that say whom a deal, contract, order or invoice belongs to (their ids are never personal).
_OWNERSHIP_SQL = """
SELECT type, data->>'deal_id' AS deal_id, data->>'contract_id' AS contract_id, data->>'order_id' AS order_id,
       data->>'invoice_id' AS invoice_id, data->>'owner' AS owner, data->>'team' AS team
  FROM timeline_entries
 WHERE customer_id = ANY($1::uuid[])
   AND type IN ('deals.DealOpened', 'deals.DealOwnerChanged', 'deals.ContractSigned', 'deals.OrderPlaced',
                'deals.InvoiceIssued')
 ORDER BY stream_id, version
"""

_CONSENT_SQL = """
SELECT type, data->>'channel' AS channel, coalesce(data->>'purpose', 'newsletter') AS purpose
  FROM timeline_entries
 WHERE customer_id = ANY($1::uuid[]) AND type IN ('contacts.ConsentGranted', 'contacts.ConsentWithdrawn')
 ORDER BY occurred_at, stream_id, version
"""


@dataclass(frozen=True)
class EntryOwners:
    """Whom the deal-related records of one customer belong to, keyed by ("deal" | "contract" | ..., id).

    The policy's timeline owner is the deal owner where an entry's event belongs to a deal: a contract,
    order, invoice or payment takes the ownership of its deal (a contract without one: its own owner).
    """

    owners: Mapping[tuple[str, str], Ownership] = field(default_factory=dict)

    def of(self, item: Mapping[str, Any]) -> Ownership | None:
        """The ownership of a timeline item, or None when it belongs to no owned record."""
        data = item.get("data")
        if not isinstance(data, Mapping):
            return None
        for kind in ("deal", "invoice", "order", "contract"):
            key = data.get(f"{kind}_id")
            if key is not None and (found := self.owners.get((kind, str(key)))) is not None:
                return found
        return None


async def entry_owners(pool: asyncpg.Pool, members: Sequence[UUID]) -> EntryOwners:
    """The ownership of every deal, contract, order and invoice on the customers' timelines."""
    rows = await pool.fetch(_OWNERSHIP_SQL, list(members))
    by_type: dict[str, list[asyncpg.Record]] = {}
    for row in rows:
        by_type.setdefault(row["type"], []).append(row)
    owners: dict[tuple[str, str], Ownership] = {}
    for row in by_type.get("deals.DealOpened", []) + by_type.get("deals.DealOwnerChanged", []):
        if row["deal_id"] and row["owner"]:
            owners[("deal", row["deal_id"])] = Ownership(owner=row["owner"], team=row["team"])

    def linked(row: asyncpg.Record, *kinds: str) -> Ownership | None:
        for kind in kinds:
            key = row[f"{kind}_id"]
            if key and (found := owners.get((kind, key))) is not None:
                return found
        return None

    for row in by_type.get("deals.ContractSigned", []):
        own = linked(row, "deal") or (Ownership(owner=row["owner"]) if row["owner"] else None)
        if own is not None:
            owners[("contract", row["contract_id"])] = own
    for row in by_type.get("deals.OrderPlaced", []):
        if (own := linked(row, "deal", "contract")) is not None:
            owners[("order", row["order_id"])] = own
    for row in by_type.get("deals.InvoiceIssued", []):
        if (own := linked(row, "order", "contract")) is not None:
            owners[("invoice", row["invoice_id"])] = own
    return EntryOwners(owners)


async def customer_consents(pool: asyncpg.Pool, members: Sequence[UUID]) -> list[dict[str, Any]]:
    """The customers' consents in force ({channel, purpose, granted}), for fields marketing sees with consent."""
    latest: dict[tuple[str, str], bool] = {}
    for row in await pool.fetch(_CONSENT_SQL, list(members)):
        latest[(row["channel"], row["purpose"])] = row["type"] == "contacts.ConsentGranted"
    return [{"channel": c, "purpose": p, "granted": g} for (c, p), g in latest.items()]


def _needs_consents(policy: Policy, role: str) -> bool:
    rules = policy.document.resources["timeline"].fields.values()
    return any(rule.consent is not None and role in rule.consent.roles for alts in rules for rule in alts)


async def visible_items(
    grant: Grant, pool: asyncpg.Pool, members: Sequence[UUID], items: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The page's items as the caller may see them: each filtered by the policy's `timeline` field rules."""
    if not items:
        return items
    owners = await entry_owners(pool, members)
    consents = await customer_consents(pool, members) if _needs_consents(grant.policy, grant.actor.role) else []
    return [grant.visible(item, ownership=owners.of(item), consents=consents) for item in items]


def timeline_router(current_actor: ActorDependency, policy: Policy | None = None) -> APIRouter:
    """The timeline endpoints; they read app.state.timeline and app.state.sources."""
    router = APIRouter(tags=["timeline"])
    rules = policy or default_policy()
    MayRead = Annotated[Grant, Depends(permission(rules, current_actor, "timeline.read"))]  # noqa: N806
    MayVerify = Annotated[Grant, Depends(permission(rules, current_actor, "timeline.verify"))]  # noqa: N806

    @router.get("/customers/{customer_id}/timeline", responses=MERGED_REDIRECT, response_model=None)
    async def timeline(
        request: Request,
        customer_id: UUID,
        grant: MayRead,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: str | None = None,
        service: str | None = None,
        type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        q: Annotated[
            str | None,
            Query(max_length=200, description="Free text: substring of the summary or any readable data value"),
        ] = None,
        accept_language: Annotated[str | None, Header()] = None,
    ) -> JSONResponse | RedirectResponse:
        """The customer's events from all services (and from records merged into it), newest first by effective time.

        Each entry shows only the fields the caller's role may see (policy resource `timeline`): hidden
        fields are absent. `q` matches only what the caller can see, so a page may hold fewer entries.
        """
        queries: TimelineQueries = request.app.state.timeline
        resolution = await resolve(queries.pool, customer_id)
        if resolution.redirected:
            return survivor_redirect(request, customer_id, resolution.survivor)
        try:
            page = await queries.page(
                customer_id,
                limit=limit,
                cursor=cursor,
                filters=TimelineFilter(service=service, type=type, since=since, until=until, text=q),
                language=language(accept_language),
                members=resolution.members,
            )
        except BadCursor:
            raise unprocessable("cursor", "cursor is not valid") from None
        if not page["items"] and cursor is None and not await queries.exists(customer_id):
            raise not_found(f"customer {customer_id} has no timeline")
        items = await visible_items(grant, queries.pool, resolution.members, page["items"])
        if q:
            items = [item for item in items if _matches({"summary": "", "data": None} | item, q)]
        page["items"] = items
        page["merged_from"] = [str(m) for m in resolution.members[1:]]
        await record_personal_read(request, grant.actor, resolution.members, personal_fields_of_items(items))
        return JSONResponse(page)  # already JSON-ready: skips FastAPI's jsonable_encoder walk

    @router.get("/customers/{customer_id}/timeline/verify", responses=MERGED_REDIRECT, response_model=None)
    async def verify(request: Request, customer_id: UUID, _grant: MayVerify) -> dict[str, Any] | RedirectResponse:
        """Recompute the hash chains behind the customer's timeline from the services' event stores.

        Answers `{"valid": true, ...}`, or `valid: false` with `first_broken` naming the service,
        stream, version and event whose proof fails: a broken chain in the source, or a timeline
        entry that is not a faithful copy of its source event.
        """
        queries: TimelineQueries = request.app.state.timeline
        resolution = await resolve(queries.pool, customer_id)
        if resolution.redirected:
            return survivor_redirect(request, customer_id, resolution.survivor)
        entries = await customer_entries(queries.pool, resolution.members)
        if not entries:
            raise not_found(f"customer {customer_id} has no timeline")
        try:
            verdict = await verify_entries(entries, request.app.state.sources)
        except SourceUnavailable as exc:
            raise Problem(503, "Source event store unavailable", str(exc)) from None
        return {"customer_id": str(customer_id), **verdict.to_json()}

    return router
