"""Privacy endpoints of the query API: personal-data export, third-party provision records, access audit."""

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from crm_http.access_log import access_audit_router
from crm_http.auth import Actor
from crm_http.policy import Grant, Policy, default_policy, permission
from crm_http.problems import not_found, unprocessable
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from crm_projections.privacy.export import PersonalDataExport, personal_fields_in
from crm_projections.privacy.store import Provision, access_log_of, provisions_of

ActorDependency = Callable[..., Awaitable[Actor]]

#: Roles that may record that personal data went to a third party.
Basis = Literal["consent", "legal_obligation", "opt_out", "entrustment", "business_succession", "joint_use"]


class ProvisionIn(BaseModel):
    """Personal data of a person given to a third party (APPI 第三者提供): what, to whom, when, on what basis."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    recipient: str = Field(min_length=1, max_length=200, description="Name of the receiving party (氏名又は名称)")
    recipient_address: str | None = Field(default=None, max_length=500, description="Its address (住所)")
    recipient_representative: str | None = Field(default=None, max_length=200, description="Its representative")
    items: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        min_length=1, max_length=100, description="Items of personal data provided, e.g. name, email"
    )
    purpose: str | None = Field(default=None, max_length=500)
    basis: Basis = Field(description="Consent of the person, a legal obligation, opt-out notice, …")
    consent_reference: str | None = Field(default=None, max_length=200, description="Where the consent is recorded")
    channel: str = Field(default="api", min_length=1, max_length=50, description="How: api, segment_export, …")
    provided_at: datetime | None = Field(default=None, description="When it was provided (default: now)")


def privacy_router(current_actor: ActorDependency, policy: Policy | None = None) -> APIRouter:
    """The privacy endpoints; they use the projections pool and keyring of app.state.timeline."""
    router = APIRouter(tags=["privacy"])
    rules = policy if policy is not None else default_policy()
    MayExport = Annotated[Grant, Depends(permission(rules, current_actor, "personal_data.export"))]  # noqa: N806
    MayRecord = Annotated[Grant, Depends(permission(rules, current_actor, "personal_data.record_provision"))]  # noqa: N806
    MayReadProvisions = Annotated[Grant, Depends(permission(rules, current_actor, "personal_data.read_provisions"))]  # noqa: N806

    @router.get("/customers/{customer_id}/personal-data")
    async def personal_data(customer_id: UUID, request: Request, grant: MayExport) -> dict[str, Any]:
        """Everything held about a person across services and read models, with the events behind it
        (decrypted while the key exists), consents, third-party provisions and who accessed the data."""
        actor = grant.actor
        app = request.app
        provisions = await provisions_of(app).of(customer_id)
        accesses = (await access_log_of(app).query(customer_id, limit=500))["items"]
        export = await PersonalDataExport(app.state.timeline.pool, app.state.timeline.keyring).build(
            customer_id, provisions, accesses
        )
        if export is None:
            raise not_found(f"nothing is held about customer {customer_id}")
        await access_log_of(app).record(actor, customer_id, personal_fields_in(export), request, purpose="disclosure")
        return export

    @router.post("/customers/{customer_id}/third-party-provisions", status_code=201)
    async def record_provision(
        customer_id: UUID, body: ProvisionIn, request: Request, response: Response, grant: MayRecord
    ) -> dict[str, Any]:
        """Record that personal data of the customer went to a third party (第三者提供記録)."""
        actor = grant.actor
        provided_at = body.provided_at or datetime.now(UTC)
        if provided_at.tzinfo is None:
            raise unprocessable("provided_at", "needs a UTC offset")
        if provided_at > datetime.now(UTC):
            raise unprocessable("provided_at", "is in the future")
        provision = Provision(
            customer_id=customer_id,
            provided_at=provided_at,
            recipient=body.recipient,
            items=body.items,
            basis=body.basis,
            channel=body.channel,
            recipient_address=body.recipient_address,
            recipient_representative=body.recipient_representative,
            purpose=body.purpose,
            consent_reference=body.consent_reference,
        )
        [provision_id] = await provisions_of(request.app).record(provision, actor, request)
        response.headers["Location"] = f"/customers/{customer_id}/third-party-provisions"
        return {"provision_id": str(provision_id), "customer_id": str(customer_id)}

    @router.get("/customers/{customer_id}/third-party-provisions")
    async def list_provisions(customer_id: UUID, request: Request, grant: MayReadProvisions) -> dict[str, Any]:
        """The customer's third-party provision records, newest first (auditors, admins)."""
        return {"customer_id": str(customer_id), "items": await provisions_of(request.app).of(customer_id)}

    router.include_router(
        access_audit_router(current_actor, access_log=lambda request: access_log_of(request.app)),
        dependencies=[Depends(permission(rules, current_actor, "audit.read_access_log"))],
    )
    return router
