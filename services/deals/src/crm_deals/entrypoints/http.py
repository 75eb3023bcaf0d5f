"""HTTP API of the deals service (port 8002): one endpoint per command, plus reads of each aggregate."""

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

from crm_eventstore.errors import IdempotencyKeyReused, WrongExpectedVersion
from crm_eventstore.http_commands import (
    command_context,
    expected_version,
    idempotency_claim,
    install_erasure_problems,
)
from crm_eventstore.ids import new_id
from crm_eventstore.store import AppendResult, StoredResponse
from crm_http.auth import TokenVerifier, actor_dependency
from crm_http.limits import install_api_limits
from crm_http.policy import Grant, Ownership, Policy, default_policy, document_permissions, permission
from crm_http.probes import install_probes
from crm_http.problems import FieldError, Problem, conflict, install_problem_handlers, not_found, problem_type
from fastapi import Body, Depends, FastAPI, Header, Path, Request, Response
from pydantic import BaseModel, ConfigDict

from crm_deals.app.aggregates import ACTIVITY, BUDGET, CONTRACT, DEAL, INVOICE, ORDER, PAYMENT, Kind
from crm_deals.app.commands import Call, DealsCommands, Outcome, Owner
from crm_deals.domain import activity, contract, deal, invoice, order
from crm_deals.domain.commands import (
    AmendContract,
    CancelContract,
    CancelInvoice,
    CancelOrder,
    ChangeDealOwner,
    CompleteNextAction,
    DeliverOrder,
    IssueInvoice,
    LoseDeal,
    MoveDealStage,
    OpenDeal,
    PlaceOrder,
    RecordActivity,
    RecordPayment,
    RenewContract,
    ReopenDeal,
    ReturnOrder,
    ReviseCloseDate,
    ReviseDealAmount,
    SetBudget,
    SetNextAction,
    SignContract,
    WinDeal,
)
from crm_deals.domain.errors import CustomerWasMerged, DomainError

Action = Callable[[DealsCommands, Call], Awaitable[Outcome[Any]]]


class Accepted(BaseModel):
    """The aggregate's id and stream version after a command (the version is also the ETag)."""

    model_config = ConfigDict(extra="allow")

    id: UUID
    version: int


def collection(resource: str) -> str:
    """The URL collection of a resource: deal → deals, activity → activities."""
    return "activities" if resource == "activity" else f"{resource}s"


def ownership(owner: Owner) -> Ownership:
    """Record-level sharing of a deals-service record (docs/adr/0011)."""
    return Ownership(owner=owner.owner, team=owner.team, department=owner.department)


def _hidden(field: str, detail: str) -> Problem:
    return Problem(
        422,
        "Unprocessable Content",
        detail,
        type=problem_type("unprocessable"),
        errors=[FieldError(field, detail)],
    )


def _domain_problem(error: DomainError) -> Problem:
    if isinstance(error, CustomerWasMerged):
        survivor = error.extra.get("merged_into")
        return Problem(
            422,
            "Unprocessable Content",
            str(error),
            type=problem_type("customer-merged"),
            errors=[FieldError("customer_id", str(error))],
            extra={"merged_into": survivor, "survivor": f"/customers/{survivor}"},
        )
    if error.status == 404:
        return Problem(404, "Not Found", str(error), extra=error.extra)
    if error.status == 409:
        return conflict(str(error), **error.extra)
    return Problem(
        422,
        "Unprocessable Content",
        str(error),
        type=problem_type("unprocessable"),
        errors=[FieldError(error.field or "body", str(error))],
        extra=error.extra,
    )


def plain(value: Any) -> Any:
    """A write-side state as JSON: Decimal as a decimal string (never a float), dates ISO 8601."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, tuple | list | frozenset | set):
        return [plain(v) for v in value]
    return value


def deal_view(state: deal.Deal) -> dict[str, Any]:
    """A deal with its stage history and next action."""
    view: dict[str, Any] = plain(state)
    view.pop("opened")
    return view


def order_view(state: order.Order) -> dict[str, Any]:
    """An order with per-line returns and its revenue after reversals."""
    view: dict[str, Any] = plain(state)
    view.pop("placed")
    for line, shown in zip(state.lines, view["lines"], strict=True):
        shown["remaining_quantity"] = line.remaining
    view["revenue"] = format(state.revenue, "f")
    return view


def activity_view(state: activity.Activity) -> dict[str, Any]:
    """A recorded activity (its personal text decrypted)."""
    view: dict[str, Any] = plain(state)
    view.pop("recorded")
    return view


def contract_view(state: contract.Contract) -> dict[str, Any]:
    """A contract with its current term."""
    view: dict[str, Any] = plain(state)
    view.pop("signed")
    return view


def invoice_view(state: invoice.Invoice) -> dict[str, Any]:
    """An invoice with its payments, what was paid and what is outstanding."""
    view: dict[str, Any] = plain(state)
    view.pop("issued")
    view |= {"status": state.status, "paid": format(state.paid, "f"), "outstanding": format(state.outstanding, "f")}
    return view


def create_app(
    commands: DealsCommands | None, verifier: TokenVerifier, lifespan: Any = None, policy: Policy | None = None
) -> FastAPI:
    """The deals FastAPI app; `commands` may be bound later via app.state.commands."""
    app = FastAPI(
        title="CRM deals service",
        version="1.0.0",
        description=(
            "Deals (商談) through a configurable pipeline, communication history, contracts, orders, invoices, "
            "payments and customer budgets. Money is a decimal string (never a JSON number with a fraction). "
            "Every request needs a bearer JWT; what a role may do, and on whose records, is the authorization "
            "policy's (docs/adr/0011): a missing permission is 403, a record outside the caller's scope is the "
            "same 404 as one that does not exist. `If-Match` carries the expected stream version (a stale one "
            "gets 409 with `current_version`); `Idempotency-Key` makes retries safe. Customers are checked "
            "against the deals service's replica of the customer master (eventually consistent, docs/adr/0008)."
        ),
        lifespan=lifespan,
    )
    app.state.commands = commands
    install_problem_handlers(app)
    install_erasure_problems(app)

    async def database_ready() -> None:
        await app.state.commands.store.pool.fetchval("SELECT 1")

    install_probes(app, "deals", {"database": database_ready})
    install_api_limits(app, verifier)
    current_actor = actor_dependency(verifier)
    rules = policy if policy is not None else default_policy()
    IfMatch = Annotated[str | None, Header(alias="If-Match")]  # noqa: N806
    IdemKey = Annotated[str | None, Header(alias="Idempotency-Key")]  # noqa: N806

    def may(name: str) -> Any:
        """The dependency granting permission `name` (403 naming it otherwise)."""
        return Depends(permission(rules, current_actor, name))

    async def in_scope(grant: Grant, kind: Kind[Any], aggregate_id: UUID) -> bool:
        """Whether the record is within the caller's scope (a record that does not exist yet is)."""
        if grant.unrestricted:
            return True
        service: DealsCommands = app.state.commands
        _, owner = await service.owned(kind, aggregate_id)
        return owner is None or grant.covers(ownership(owner))

    async def run(
        aggregate_id: UUID,
        body: BaseModel,
        action: Action,
        grant: Grant,
        request: Request,
        response: Response,
        if_match: str | None,
        idempotency_key: str | None,
        *,
        resource: str,
        status: int = 200,
        extra: dict[str, Any] | None = None,
        acting_on: tuple[Kind[Any], UUID] | None = None,
        links: tuple[tuple[Kind[Any], UUID | None, str], ...] = (),
    ) -> dict[str, Any]:
        service: DealsCommands = app.state.commands
        actor = grant.actor
        # Scopes are checked before the command is decided, on the state one read earlier; a record
        # outside the caller's scope answers exactly like one that does not exist.
        if acting_on is not None and not await in_scope(grant, *acting_on):
            raise not_found(f"{acting_on[0].name} {acting_on[1]} does not exist")
        for kind, linked_id, field in links:
            if linked_id is not None and not await in_scope(grant, kind, linked_id):
                raise _hidden(field, f"{kind.name} {linked_id} does not exist")
        claim = idempotency_claim(actor, idempotency_key, request, body.model_dump(mode="json"))

        def respond(result: AppendResult) -> StoredResponse:
            return StoredResponse(status, {"id": str(aggregate_id), "version": result.version, **(extra or {})})

        call = Call(command_context(actor, request), expected_version(if_match, resource), claim, respond)
        try:
            outcome = await action(service, call)
        except DomainError as error:
            raise _domain_problem(error) from None
        except IdempotencyKeyReused as error:
            raise Problem(
                422,
                "Unprocessable Content",
                str(error),
                type=problem_type("unprocessable"),
                errors=[FieldError("Idempotency-Key", str(error), location="header")],
            ) from None
        stored = outcome.result.replayed
        if stored is None:
            stored = respond(outcome.result)
        else:
            response.headers["Idempotent-Replayed"] = "true"
        response.status_code = stored.status_code
        response.headers["ETag"] = f'"{stored.body["version"]}"'
        if status == 201:
            response.headers["Location"] = f"/{collection(resource)}/{stored.body['id']}"
        return stored.body

    @app.exception_handler(WrongExpectedVersion)
    async def _stale(request: Request, exc: WrongExpectedVersion) -> Response:
        return conflict(str(exc), current_version=exc.current).to_response()

    def read(kind: Kind[Any], view: Callable[[Any], dict[str, Any]], exists: str, summary: str) -> None:
        allowed = may(f"{kind.name}.read")

        async def endpoint(
            aggregate_id: Annotated[UUID, Path(alias=f"{kind.name}_id")],
            response: Response,
            grant: Annotated[Grant, allowed],
        ) -> dict[str, Any]:
            service: DealsCommands = app.state.commands
            state, owner = await service.owned(kind, aggregate_id)
            if not getattr(state, exists) or owner is None or not grant.covers(ownership(owner)):
                raise not_found(f"{kind.name} {aggregate_id} does not exist")
            response.headers["ETag"] = f'"{state.version}"'
            return grant.visible(view(state), ownership=ownership(owner))

        endpoint.__doc__ = summary
        app.get(f"/{collection(kind.name)}/{{{kind.name}_id}}", name=f"get_{kind.name}", summary=summary)(endpoint)

    def command(
        kind: Kind[Any],
        suffix: str,
        model: type[BaseModel],
        on: Callable[[DealsCommands, UUID, Any, Call], Awaitable[Outcome[Any]]],
        name: str,
        summary: str,
        body_optional: bool = False,
    ) -> None:
        # A command without required fields (reopen, deliver, ...) may be sent without a body.
        body_param = Body(default_factory=model) if body_optional else Body()
        allowed = may(f"{kind.name}.{name}")

        async def endpoint(
            aggregate_id: Annotated[UUID, Path(alias=f"{kind.name}_id")],
            request: Request,
            response: Response,
            grant: Annotated[Grant, allowed],
            body: Annotated[model, body_param],  # type: ignore[valid-type]
            if_match: IfMatch = None,
            idempotency_key: IdemKey = None,
        ) -> dict[str, Any]:
            return await run(
                aggregate_id,
                body,
                lambda service, call: on(service, aggregate_id, body, call),
                grant,
                request,
                response,
                if_match,
                idempotency_key,
                resource=kind.name,
                acting_on=(kind, aggregate_id),
            )

        endpoint.__doc__ = summary
        path = f"/{collection(kind.name)}/{{{kind.name}_id}}/{suffix}"
        app.post(path, response_model=Accepted, name=f"{kind.name}_{name}", summary=summary)(endpoint)

    # --- deals -------------------------------------------------------------------------------------

    @app.post("/deals", status_code=201, response_model=Accepted)
    async def open_deal(
        body: OpenDeal,
        request: Request,
        response: Response,
        grant: Annotated[Grant, may("deal.open")],
        idempotency_key: IdemKey = None,
    ) -> dict[str, Any]:
        """Open a deal (deals.DealOpened) for a customer known to the deals service, at its pipeline's first stage.

        Without a `team`, a deal the caller opens for themselves is their team's."""
        actor = grant.actor
        command = body
        if body.team is None and body.owner == actor.subject and actor.team is not None:
            command = body.model_copy(update={"team": actor.team})
        if not grant.covers(Ownership(owner=command.owner, team=command.team, department=actor.department)):
            raise _hidden("owner", f"the role '{actor.role}' opens deals only within its scope ({grant.scope})")
        did = new_id()
        return await run(
            did,
            body,
            lambda s, call: s.open_deal(did, command, call),
            grant,
            request,
            response,
            None,
            idempotency_key,
            resource="deal",
            status=201,
        )

    read(DEAL, deal_view, "opened", "Current state of a deal: stage, amounts, outcome, next action, stage history")
    on_deal = DealsCommands.on_deal
    command(DEAL, "stage", MoveDealStage, on_deal, "change_stage", "Move to another open stage (DealStageChanged)")
    command(DEAL, "amount", ReviseDealAmount, on_deal, "revise_amount", "Revise the amount (DealAmountRevised)")
    command(
        DEAL,
        "close-date",
        ReviseCloseDate,
        on_deal,
        "revise_close_date",
        "Revise the close date (DealCloseDateRevised)",
    )
    command(DEAL, "owner", ChangeDealOwner, on_deal, "change_owner", "Hand to another owner/team (DealOwnerChanged)")
    command(DEAL, "won", WinDeal, on_deal, "win", "Close as won at a final amount (DealWon)", True)
    command(DEAL, "lost", LoseDeal, on_deal, "lose", "Close as lost with reason and competitor (DealLost)")
    command(DEAL, "reopen", ReopenDeal, on_deal, "reopen", "Reopen a won or lost deal (DealReopened)", True)

    @app.post("/deals/{deal_id}/next-action", response_model=Accepted)
    async def set_next_action(
        deal_id: UUID,
        body: SetNextAction,
        request: Request,
        response: Response,
        grant: Annotated[Grant, may("deal.set_next_action")],
        if_match: IfMatch = None,
        idempotency_key: IdemKey = None,
    ) -> dict[str, Any]:
        """Set the deal's next action (DealNextActionSet); answers its action_id."""
        command = body if body.action_id is not None else body.model_copy(update={"action_id": new_id()})
        return await run(
            deal_id,
            body,
            lambda s, call: s.on_deal(deal_id, command, call),
            grant,
            request,
            response,
            if_match,
            idempotency_key,
            resource="deal",
            extra={"action_id": str(command.action_id)},
            acting_on=(DEAL, deal_id),
        )

    @app.post("/deals/{deal_id}/next-action/{action_id}/done", response_model=Accepted)
    async def complete_next_action(
        deal_id: UUID,
        action_id: UUID,
        request: Request,
        response: Response,
        grant: Annotated[Grant, may("deal.complete_next_action")],
        if_match: IfMatch = None,
        idempotency_key: IdemKey = None,
    ) -> dict[str, Any]:
        """Mark the deal's current next action done (DealNextActionDone)."""
        command = CompleteNextAction(action_id=action_id)
        return await run(
            deal_id,
            command,
            lambda s, call: s.on_deal(deal_id, command, call),
            grant,
            request,
            response,
            if_match,
            idempotency_key,
            resource="deal",
            acting_on=(DEAL, deal_id),
        )

    # --- activities --------------------------------------------------------------------------------

    @app.post("/activities", status_code=201, response_model=Accepted)
    async def record_activity(
        body: RecordActivity,
        request: Request,
        response: Response,
        grant: Annotated[Grant, may("activity.record")],
        idempotency_key: IdemKey = None,
    ) -> dict[str, Any]:
        """Record a visit, call, email, meeting, online meeting or document sent (ActivityRecorded)."""
        aid = new_id()
        return await run(
            aid,
            body,
            lambda s, call: s.record_activity(aid, body, call),
            grant,
            request,
            response,
            None,
            idempotency_key,
            resource="activity",
            status=201,
            links=((DEAL, body.deal_id, "deal_id"),),
        )

    @app.post("/deals/{deal_id}/activities", status_code=201, response_model=Accepted)
    async def record_deal_activity(
        deal_id: UUID,
        body: RecordActivity,
        request: Request,
        response: Response,
        grant: Annotated[Grant, may("activity.record")],
        idempotency_key: IdemKey = None,
    ) -> dict[str, Any]:
        """Record an activity on the deal (ActivityRecorded); the customer is the deal's."""
        if body.deal_id is not None and body.deal_id != deal_id:
            raise _hidden("deal_id", "deal_id in the body differs from the deal in the path")
        command = body.model_copy(update={"deal_id": deal_id})
        aid = new_id()
        return await run(
            aid,
            body,
            lambda s, call: s.record_activity(aid, command, call),
            grant,
            request,
            response,
            None,
            idempotency_key,
            resource="activity",
            status=201,
            acting_on=(DEAL, deal_id),
        )

    read(ACTIVITY, activity_view, "recorded", "One recorded activity (personal text decrypted)")

    # --- contracts ---------------------------------------------------------------------------------

    @app.post("/contracts", status_code=201, response_model=Accepted)
    async def sign_contract(
        body: SignContract,
        request: Request,
        response: Response,
        grant: Annotated[Grant, may("contract.sign")],
        idempotency_key: IdemKey = None,
    ) -> dict[str, Any]:
        """Sign a contract (ContractSigned) with a known customer, optionally from a won deal."""
        cid = new_id()
        return await run(
            cid,
            body,
            lambda s, call: s.sign_contract(cid, body, call),
            grant,
            request,
            response,
            None,
            idempotency_key,
            resource="contract",
            status=201,
            links=((DEAL, body.deal_id, "deal_id"),),
        )

    read(CONTRACT, contract_view, "signed", "Current state of a contract: term, amount, status, renewals")
    on_contract = DealsCommands.on_contract
    command(CONTRACT, "renew", RenewContract, on_contract, "renew", "Renew to a later end date (ContractRenewed)")
    command(CONTRACT, "amend", AmendContract, on_contract, "amend", "Amend terms (ContractAmended)")
    command(CONTRACT, "cancel", CancelContract, on_contract, "cancel", "Cancel from a date (ContractCancelled)")

    # --- orders ------------------------------------------------------------------------------------

    @app.post("/orders", status_code=201, response_model=Accepted)
    async def place_order(
        body: PlaceOrder,
        request: Request,
        response: Response,
        grant: Annotated[Grant, may("order.place")],
        idempotency_key: IdemKey = None,
    ) -> dict[str, Any]:
        """Place an order (OrderPlaced); a given total must equal the sum of the line amounts, pre-tax."""
        oid = new_id()
        return await run(
            oid,
            body,
            lambda s, call: s.place_order(oid, body, call),
            grant,
            request,
            response,
            None,
            idempotency_key,
            resource="order",
            status=201,
            links=((DEAL, body.deal_id, "deal_id"), (CONTRACT, body.contract_id, "contract_id")),
        )

    read(ORDER, order_view, "placed", "Current state of an order: lines, returns, revenue after reversals")
    on_order = DealsCommands.on_order
    command(ORDER, "deliver", DeliverOrder, on_order, "deliver", "Record the delivery (OrderDelivered)", True)
    command(ORDER, "cancel", CancelOrder, on_order, "cancel", "Cancel an undelivered order (OrderCancelled)", True)
    command(
        ORDER,
        "return",
        ReturnOrder,
        on_order,
        "return",
        "Take goods back: the given lines, or all that remains without lines (OrderReturned)",
        True,
    )

    # --- invoices and payments ---------------------------------------------------------------------

    @app.post("/invoices", status_code=201, response_model=Accepted)
    async def issue_invoice(
        body: IssueInvoice,
        request: Request,
        response: Response,
        grant: Annotated[Grant, may("invoice.issue")],
        idempotency_key: IdemKey = None,
    ) -> dict[str, Any]:
        """Issue an invoice (InvoiceIssued) with a due date."""
        iid = new_id()
        return await run(
            iid,
            body,
            lambda s, call: s.issue_invoice(iid, body, call),
            grant,
            request,
            response,
            None,
            idempotency_key,
            resource="invoice",
            status=201,
            links=((ORDER, body.order_id, "order_id"), (CONTRACT, body.contract_id, "contract_id")),
        )

    read(INVOICE, invoice_view, "issued", "Current state of an invoice: payments, paid, outstanding, overdue")
    on_invoice = DealsCommands.on_invoice
    command(INVOICE, "cancel", CancelInvoice, on_invoice, "cancel", "Void an unpaid invoice (InvoiceCancelled)")

    @app.post("/payments", status_code=201, response_model=Accepted)
    async def record_payment(
        body: RecordPayment,
        request: Request,
        response: Response,
        grant: Annotated[Grant, may("payment.record")],
        idempotency_key: IdemKey = None,
    ) -> dict[str, Any]:
        """Record a payment (PaymentReceived) against an invoice (never more than is outstanding) or unapplied."""
        command = body if body.payment_id is not None else body.model_copy(update={"payment_id": new_id()})
        assert command.payment_id is not None

        async def action(s: DealsCommands, call: Call) -> Outcome[Any]:
            return (await s.record_payment(command, call))[1]

        result = await run(
            command.payment_id,
            body,
            action,
            grant,
            request,
            response,
            None,
            idempotency_key,
            resource="payment",
            status=201,
            extra={"invoice_id": None if body.invoice_id is None else str(body.invoice_id)},
            links=((INVOICE, body.invoice_id, "invoice_id"),),
        )
        response.headers["Location"] = (
            f"/invoices/{body.invoice_id}" if body.invoice_id is not None else f"/payments/{result['id']}"
        )
        return result

    @app.get("/payments/{payment_id}")
    async def get_payment(
        payment_id: UUID, response: Response, grant: Annotated[Grant, may("payment.read")]
    ) -> dict[str, Any]:
        """A payment received without an invoice (payments on an invoice are listed on the invoice)."""
        service: DealsCommands = app.state.commands
        state, owner = await service.owned(PAYMENT, payment_id)
        if state.received is None or owner is None or not grant.covers(ownership(owner)):
            raise not_found(f"no unapplied payment {payment_id}; a payment on an invoice is shown on the invoice")
        response.headers["ETag"] = f'"{state.version}"'
        received = state.received
        view = {"customer_id": str(received.customer_id), **received.to_payload(), "version": state.version}
        return grant.visible(view, ownership=ownership(owner))

    # --- budgets -----------------------------------------------------------------------------------

    @app.post("/customers/{customer_id}/budgets", response_model=Accepted)
    async def set_budget(
        customer_id: UUID,
        body: SetBudget,
        request: Request,
        response: Response,
        grant: Annotated[Grant, may("budget.set")],
        if_match: IfMatch = None,
        idempotency_key: IdemKey = None,
    ) -> dict[str, Any]:
        """Set or revise the customer's budget for a fiscal year (CustomerBudgetSet)."""
        return await run(
            customer_id,
            body,
            lambda s, call: s.set_budget(customer_id, body, call),
            grant,
            request,
            response,
            if_match,
            idempotency_key,
            resource="budget",
            extra={"fiscal_year": body.fiscal_year},
            acting_on=(BUDGET, customer_id),
        )

    @app.get("/customers/{customer_id}/budgets")
    async def get_budgets(
        customer_id: UUID, response: Response, grant: Annotated[Grant, may("budget.read")]
    ) -> dict[str, Any]:
        """The customer's budget per fiscal year."""
        service: DealsCommands = app.state.commands
        state, owner = await service.owned(BUDGET, customer_id)
        if owner is not None and not grant.covers(ownership(owner)):
            state = BUDGET.initial(customer_id)  # outside the caller's scope: as if none were set
        response.headers["ETag"] = f'"{state.version}"'
        view = {
            "customer_id": str(customer_id),
            "budgets": [
                {"fiscal_year": year, "amount": format(amount, "f"), "currency": currency}
                for year, amount, currency in state.years
            ],
            "version": state.version,
        }
        return grant.visible(view, ownership=None if owner is None else ownership(owner))

    document_permissions(app, rules)
    return app
