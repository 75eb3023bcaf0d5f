"""HTTP API of the support service (port 8003): one endpoint per ticket command, plus reads."""

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
from crm_http.access_log import AccessLog, access_audit_router, personal_fields_in
from crm_http.auth import TokenVerifier, actor_dependency
from crm_http.limits import install_api_limits
from crm_http.policy import Grant, Ownership, Policy, default_policy, document_permissions, permission
from crm_http.probes import install_probes
from crm_http.problems import (
    FieldError,
    Problem,
    conflict,
    install_problem_handlers,
    not_found,
    problem_type,
    unprocessable,
)
from crm_schemas import support as support_events
from crm_schemas.base import DomainEvent
from fastapi import Body, Depends, FastAPI, Header, Request, Response
from pydantic import BaseModel

from crm_support.app.tickets import TicketCommands
from crm_support.domain.commands import (
    AddNote,
    AssignTicket,
    ChangeStatus,
    CloseTicket,
    EscalateTicket,
    LinkTicket,
    OpenTicket,
    RecordSatisfaction,
    ReopenTicket,
    ReplyToCustomer,
    ResolveTicket,
)
from crm_support.domain.ticket import (
    Command,
    ComplaintAnalysisMissing,
    CustomerWasMerged,
    DomainError,
    Ticket,
    sla_clock,
)

#: Personal fields of support events (encrypted under the customer's key): recorded in the access log when returned.
TICKET_PERSONAL = frozenset(
    name
    for model in vars(support_events).values()
    if isinstance(model, type) and issubclass(model, DomainEvent)
    for name in model.personal_fields()
)


class Accepted(BaseModel):
    """The ticket's id and stream version after a command."""

    id: UUID
    version: int


def _domain_problem(error: DomainError) -> Problem:
    if isinstance(error, CustomerWasMerged):
        survivor = error.extra.get("survivor_id")
        return Problem(
            422,
            "Unprocessable Content",
            str(error),
            type=problem_type("customer-merged"),
            errors=[FieldError("customer_id", str(error))],
            extra={"survivor_id": survivor, "survivor": f"/customers/{survivor}"},
        )
    if isinstance(error, ComplaintAnalysisMissing):
        return Problem(
            422,
            "Unprocessable Content",
            str(error),
            type=problem_type("complaint-analysis-missing"),
            errors=[FieldError(name, "required to resolve a complaint") for name in error.missing],
        )
    if error.status == 404:
        return not_found(str(error))
    if error.status == 409:
        return conflict(str(error))
    return unprocessable(error.field or "body", str(error))


def _time(value: Any) -> str | None:
    return None if value is None else value.isoformat()


def ticket_view(state: Ticket) -> dict[str, Any]:
    """The write-side state of a ticket as JSON."""
    clock = sla_clock(state)
    paused = state.status == "pending_customer"
    return {
        "id": str(state.id),
        "customer_id": str(state.customer_id),
        "kind": state.kind,
        "channel": state.channel,
        "category": state.category,
        "priority": state.priority,
        "subject": state.subject,
        "content": state.content,
        "contact_person_id": None if state.contact_person_id is None else str(state.contact_person_id),
        "product": state.product,
        "links": [{"type": t, "id": ref} for t, ref in state.links],
        "status": state.status,
        "assignee": state.assignee,
        "team": state.team,
        "escalation_level": state.escalation_level,
        "opened_at": _time(state.opened_at),
        "first_responded_at": _time(state.first_responded_at),
        "resolved_at": _time(state.resolved_at),
        "closed_at": _time(state.closed_at),
        "sla": {
            "policy": state.sla_policy,
            "first_response_due_at": _time(state.first_response_due_at),
            "resolution_due_at": _time(state.paused_due_at if paused else state.resolution_due_at),
            "running": [target for target in ("first_response", "resolution") if target in clock.pending()],
            "paused": paused,
            "breached": sorted(state.breached),
        },
        "replies": [{"at": m.at.isoformat(), "channel": m.channel, "content": m.content} for m in state.replies],
        "notes": [{"at": m.at.isoformat(), "content": m.content} for m in state.notes],
        "resolutions": [
            {
                "number": r.number,
                "at": r.at.isoformat(),
                "resolution": r.resolution,
                "root_cause": r.root_cause,
                "prevention": r.prevention,
            }
            for r in state.resolutions
        ],
        "satisfaction": [
            {"resolution_number": r.resolution_number, "score": r.score, "comment": r.comment, "at": r.at.isoformat()}
            for r in state.ratings
        ],
        "version": state.version,
    }


def ownership(state: Ticket) -> Ownership:
    """Whom a ticket belongs to for record-level sharing: its assignee and assigned team."""
    return Ownership(owner=state.assignee, team=state.team)


def create_app(
    commands: TicketCommands | None, verifier: TokenVerifier, lifespan: Any = None, policy: Policy | None = None
) -> FastAPI:
    """The support FastAPI app; `commands` may be bound later via app.state.commands."""
    app = FastAPI(
        title="CRM support service",
        version="1.0.0",
        description=(
            "Tickets: inquiries (問い合わせ) and complaints (クレーム), their handling history, SLAs and "
            "satisfaction. Every request needs a bearer JWT. `If-Match` carries the expected version (a stale one "
            "gets 409 with `current_version`); `Idempotency-Key` makes retries safe. Customers are checked "
            "against support's replica of the customer master (eventually consistent, docs/adr/0007)."
        ),
        lifespan=lifespan,
    )
    app.state.commands = commands
    install_problem_handlers(app)
    install_erasure_problems(app)

    async def database_ready() -> None:
        await app.state.commands.store.pool.fetchval("SELECT 1")

    install_probes(app, "support", {"database": database_ready})
    install_api_limits(app, verifier)
    current_actor = actor_dependency(verifier)

    def access_log(request: Request | None = None) -> AccessLog:
        log: AccessLog | None = getattr(app.state, "access_log", None)
        if log is None:
            log = AccessLog(app.state.commands.store.pool, "support")
            app.state.access_log = log
        return log

    rules = policy if policy is not None else default_policy()
    app.include_router(
        access_audit_router(current_actor, access_log=access_log),
        dependencies=[Depends(permission(rules, current_actor, "audit.read_access_log"))],
    )
    MayOpen = Annotated[Grant, Depends(permission(rules, current_actor, "ticket.open"))]  # noqa: N806
    MayRead = Annotated[Grant, Depends(permission(rules, current_actor, "ticket.read"))]  # noqa: N806
    IfMatch = Annotated[str | None, Header(alias="If-Match")]  # noqa: N806
    IdemKey = Annotated[str | None, Header(alias="Idempotency-Key")]  # noqa: N806

    async def visible_ticket(grant: Grant, ticket_id: UUID) -> Ticket:
        """The ticket; one outside the caller's scope is the same 404 as one that does not exist."""
        service: TicketCommands = app.state.commands
        state = await service.load(ticket_id)
        if not state.opened or not grant.covers(ownership(state)):
            raise not_found(f"ticket {ticket_id} does not exist")
        return state

    async def run(
        ticket_id: UUID,
        command: Command | OpenTicket,
        grant: Grant,
        request: Request,
        response: Response,
        if_match: str | None,
        idempotency_key: str | None,
        status: int = 200,
    ) -> dict[str, Any]:
        service: TicketCommands = app.state.commands
        actor = grant.actor
        if not isinstance(command, OpenTicket) and not grant.unrestricted:
            # Checked before the command is decided; a reassignment racing with it is decided on
            # the state the caller was allowed to act on one read earlier.
            await visible_ticket(grant, ticket_id)
        claim = idempotency_claim(actor, idempotency_key, request, command.model_dump(mode="json"))
        ctx = command_context(actor, request)

        def respond(result: AppendResult) -> StoredResponse:
            body: dict[str, Any] = {"id": str(ticket_id), "version": result.version}
            if isinstance(command, OpenTicket) and result.events:
                opened = result.events[0].payload
                body |= {
                    "status": "new",
                    "first_response_due_at": opened.get("first_response_due_at"),
                    "resolution_due_at": opened.get("resolution_due_at"),
                }
            return StoredResponse(status, body)

        try:
            if isinstance(command, OpenTicket):
                outcome = await service.open(ticket_id, command, ctx, idempotency=claim, respond=respond)
            else:
                outcome = await service.execute(
                    ticket_id,
                    command,
                    ctx,
                    expected_version=expected_version(if_match, "ticket"),
                    idempotency=claim,
                    respond=respond,
                )
        except DomainError as error:
            raise _domain_problem(error) from None
        except IdempotencyKeyReused as error:
            raise unprocessable("Idempotency-Key", str(error)) from None
        stored = outcome.result.replayed
        if stored is None:
            stored = respond(outcome.result)
        else:
            response.headers["Idempotent-Replayed"] = "true"
        response.status_code = stored.status_code
        response.headers["ETag"] = f'"{stored.body["version"]}"'
        return stored.body

    @app.exception_handler(WrongExpectedVersion)
    async def _stale(request: Request, exc: WrongExpectedVersion) -> Response:
        return conflict(str(exc), current_version=exc.current).to_response()

    @app.post("/tickets", status_code=201)
    async def open_ticket(
        body: OpenTicket,
        request: Request,
        response: Response,
        grant: MayOpen,
        idempotency_key: IdemKey = None,
    ) -> dict[str, Any]:
        """Open a ticket (support.TicketOpened) for a customer known to support; answers its SLA deadlines."""
        result = await run(new_id(), body, grant, request, response, None, idempotency_key, 201)
        response.headers["Location"] = f"/tickets/{result['id']}"
        return result

    @app.get("/tickets/{ticket_id}")
    async def get_ticket(ticket_id: UUID, request: Request, response: Response, grant: MayRead) -> dict[str, Any]:
        """Current write-side state of a ticket with its handling history, SLA and satisfaction; ETag = version.

        Fields the caller's role may not see (complaint details, root causes: docs/adr/0011) are absent."""
        state = await visible_ticket(grant, ticket_id)
        response.headers["ETag"] = f'"{state.version}"'
        visible = grant.visible(ticket_view(state), ownership=ownership(state))
        if state.customer_id is not None:
            await access_log().record(
                grant.actor, state.customer_id, personal_fields_in(visible, TICKET_PERSONAL), request
            )
        return visible

    def command_endpoint(
        suffix: str, model: type[BaseModel], summary: str, name: str, body_optional: bool = False
    ) -> None:
        # A command without required fields (reopen, close) may be sent without a body.
        body_param = Body(default_factory=model) if body_optional else Body()
        Allowed = Annotated[Grant, Depends(permission(rules, current_actor, name))]  # noqa: N806

        async def endpoint(
            ticket_id: UUID,
            request: Request,
            response: Response,
            grant: Allowed,
            body: Annotated[model, body_param],  # type: ignore[valid-type]
            if_match: IfMatch = None,
            idempotency_key: IdemKey = None,
        ) -> dict[str, Any]:
            return await run(ticket_id, body, grant, request, response, if_match, idempotency_key)

        endpoint.__doc__ = summary
        app.post(f"/tickets/{{ticket_id}}/{suffix}", response_model=Accepted, name=suffix, summary=summary)(endpoint)

    command_endpoint(
        "assign", AssignTicket, "Assign or reassign to staff and/or a team (TicketAssigned)", "ticket.assign"
    )
    command_endpoint(
        "reply", ReplyToCustomer, "Reply to the customer (TicketReplied; the first meets the SLA)", "ticket.reply"
    )
    command_endpoint("note", AddNote, "Add an internal note (TicketNoteAdded)", "ticket.add_note")
    command_endpoint(
        "escalate", EscalateTicket, "Escalate to a higher level with a reason (TicketEscalated)", "ticket.escalate"
    )
    command_endpoint(
        "status", ChangeStatus, "Move to open or pending customer (TicketStatusChanged)", "ticket.change_status"
    )
    command_endpoint(
        "resolve",
        ResolveTicket,
        "Resolve; complaints need root_cause and prevention (TicketResolved)",
        "ticket.resolve",
    )
    command_endpoint(
        "reopen", ReopenTicket, "Reopen a resolved ticket (TicketReopened)", "ticket.reopen", body_optional=True
    )
    command_endpoint("close", CloseTicket, "Close a resolved ticket (TicketClosed)", "ticket.close", body_optional=True)
    command_endpoint(
        "satisfaction",
        RecordSatisfaction,
        "Record CSAT 1-5 once per resolution (TicketSatisfactionRated)",
        "ticket.record_satisfaction",
    )
    command_endpoint("links", LinkTicket, "Link to a deal, an order or another ticket (TicketLinked)", "ticket.link")
    document_permissions(app, rules)
    return app
