"""HTTP endpoint of the customer 360: GET /customers/{id} (live, as_of, effective_at)."""

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from crm_http.auth import Actor
from crm_http.policy import Grant, Ownership, Policy, default_policy, permission
from crm_http.problems import not_found, unprocessable
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse

from crm_projections.customer360.metrics import LTV_YEARS
from crm_projections.customer360.queries import Customer360Queries
from crm_projections.privacy.store import personal_fields_in_document, record_personal_read
from crm_projections.timeline.api import MERGED_REDIRECT, ActorDependency, survivor_redirect
from crm_projections.timeline.merges import Instant

DESCRIPTION = f"""The customer's current profile, contact persons, consent, rank and tags, open deals (stage,
amount), contracts, open tickets and complaints, and revenue `metrics` — everything from all services in
one document, including the history of customer records merged into this one (名寄せ). A merged-away id
answers `308` with the survivor in `Location`.

**Point in time** (bitemporal; timestamps need a UTC offset, e.g. `2024-04-01T00:00:00+09:00`):
- `as_of`: the 360 *as the system knew it* at that instant — only events recorded by then (`recorded_at`).
- `effective_at`: the 360 *as it was true in the world* at that instant — only events that had happened
  by then (`occurred_at`), including ones recorded later (back-dated corrections).
Both may be combined. Metrics are then measured from that date instead of today.

**Metrics** (money: JPY decimal strings, exact; averages rounded half-up to 2 places):
- revenue of an order = its pre-tax `total` minus the `amount` of its cancellations and returns, counted on the
  order's `order_date`; a *counted* order is one neither cancelled nor returned in full.
- `cumulative_purchase_amount`: revenue of all orders. `order_count`: counted orders.
- `average_order_amount` = cumulative / order_count. `average_unit_price` = cumulative / units kept.
- `last_12_months_amount`: revenue of orders dated within the year up to the reference date (JST).
- `fiscal_year_amounts`: revenue per fiscal year of the customer; contacts `fiscal_month` is the month the fiscal
  year ends (default 3: April–March). A fiscal year is named by the calendar year it ends in: with fiscal month 3,
  `FY2025` = 2024-04-01 – 2025-03-31 (`label_ja`: 2025年3月期).
- `purchase_frequency`: counted orders per year since the first purchase (order_count × 365 / days since the first
  purchase, at least 365 days).
- `ltv` (customer lifetime value) = `average_order_amount` × `purchase_frequency` × {LTV_YEARS}: the revenue the
  customer is expected to bring over a {LTV_YEARS}-year relationship at its purchase rate so far.
- `outstanding_amount`: invoices not cancelled minus the payments made against them (payments without an invoice and payments on cancelled invoices excluded).
- `average_csat`: mean satisfaction score (1–5). `complaint_count`: complaint tickets ever opened.

Personal fields are decrypted for the response; after a customer's data was erased (crypto-shredding) they come
out as `null`.

**Who sees what** (policy resource `customer360`, docs/adr/0011): every role may read the 360; `as_of` /
`effective_at` need `customer360.read_as_of`. Fields a role may not see are absent: personal contact details
for marketing without the customer's marketing consent on that channel, `open_deals` / `contracts` / `budgets`
for marketing and support, `metrics.outstanding_amount` except for accounting, managers, auditors and the
owner of one of the customer's open deals, `profile.payment_terms` for marketing and support.
"""


def ownership(actor: Actor, document: dict[str, Any]) -> Ownership | None:
    """The policy's 360 owner: the caller, when they own one of the customer's open deals."""
    mine = any(deal.get("owner") == actor.subject for deal in document.get("open_deals") or ())
    return Ownership(owner=actor.subject) if mine else None


def _aware(name: str, value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise unprocessable(name, f"{name} needs a UTC offset, e.g. 2024-04-01T00:00:00+09:00")
    return value


def customer360_router(current_actor: ActorDependency, policy: Policy | None = None) -> APIRouter:
    """The 360 endpoint, behind `customer360.read`; it reads app.state.customer360."""
    router = APIRouter(tags=["customer 360"])
    rules = policy or default_policy()
    MayRead = Annotated[Grant, Depends(permission(rules, current_actor, "customer360.read"))]  # noqa: N806
    rules.known("customer360.read_as_of")

    @router.get(
        "/customers/{customer_id}",
        summary="Customer 360 (live or point in time)",
        description=DESCRIPTION,
        responses=MERGED_REDIRECT,
        response_model=None,
    )
    async def customer_360(
        request: Request,
        customer_id: UUID,
        grant: MayRead,
        as_of: Annotated[datetime | None, Query(description="As known at this instant (by recorded_at)")] = None,
        effective_at: Annotated[
            datetime | None, Query(description="As true in the world at this instant (by occurred_at)")
        ] = None,
    ) -> JSONResponse | RedirectResponse:
        if as_of is not None or effective_at is not None:
            rules.authorize(grant.actor, "customer360.read_as_of")
        queries: Customer360Queries = request.app.state.customer360
        at = Instant(as_of=_aware("as_of", as_of), effective_at=_aware("effective_at", effective_at))
        found = await queries.read(customer_id, at)
        if found.resolution.redirected:
            return survivor_redirect(request, customer_id, found.resolution.survivor)
        if found.view is None:
            raise not_found(
                f"customer {customer_id} is not known" + (" at that instant" if as_of or effective_at else "")
            )
        body = found.view.to_json()
        body["as_of"] = None if as_of is None else as_of.isoformat()
        body["effective_at"] = None if effective_at is None else effective_at.isoformat()
        body = grant.visible(body, ownership=ownership(grant.actor, body), consents=body.get("consent") or ())
        await record_personal_read(request, grant.actor, found.resolution.members, personal_fields_in_document(body))
        return JSONResponse(body)  # already JSON-ready: skips FastAPI's jsonable_encoder walk

    return router
