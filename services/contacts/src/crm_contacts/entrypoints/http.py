"""HTTP API of the contacts service (port 8001)."""

import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any
from uuid import UUID

from crm_eventstore.errors import IdempotencyKeyReused, WrongExpectedVersion
from crm_eventstore.ids import new_id
from crm_eventstore.store import AppendResult, CommandContext, IdempotencyClaim, StoredResponse
from crm_http.auth import Actor, TokenVerifier, actor_dependency
from crm_http.probes import install_probes
from crm_http.problems import Problem, conflict, install_problem_handlers, not_found, unprocessable
from crm_schemas.envelope import ActorRef
from fastapi import Depends, FastAPI, Header, Request, Response
from pydantic import BaseModel

from crm_contacts.app.customers import CustomerCommands
from crm_contacts.domain.customer import DomainError, RegisterCustomer


class Created(BaseModel):
    """A new customer's id and stream version."""

    id: UUID
    version: int


def _claim(actor: Actor, key: str | None, request: Request, body: Any) -> IdempotencyClaim | None:
    if key is None:
        return None
    if not 1 <= len(key) <= 200:
        raise unprocessable("Idempotency-Key", "must be 1 to 200 characters")
    fingerprint = json.dumps([request.method, request.url.path, body], sort_keys=True, default=str)
    return IdempotencyClaim(f"{actor.subject}:{key}", hashlib.sha256(fingerprint.encode()).hexdigest())


def _context(actor: Actor, request: Request) -> CommandContext:
    correlation = request.headers.get("x-correlation-id")
    try:
        correlation_id = UUID(correlation) if correlation else new_id()
    except ValueError:
        raise unprocessable("X-Correlation-ID", "must be a UUID") from None
    return CommandContext(
        actor=ActorRef(**actor.as_envelope()),
        correlation_id=correlation_id,
        traceparent=request.headers.get("traceparent"),
    )


def _domain_problem(error: DomainError) -> Problem:
    if error.status == 409:
        return conflict(str(error))
    return unprocessable(error.field or "body", str(error))


def create_app(commands: CustomerCommands | None, verifier: TokenVerifier, lifespan: Any = None) -> FastAPI:
    """The contacts FastAPI app; `commands` may be bound later via app.state.commands."""
    app = FastAPI(
        title="CRM contacts service",
        version="1.0.0",
        description="Customer master commands. Every command needs a bearer JWT.",
        lifespan=lifespan,
    )
    app.state.commands = commands
    install_problem_handlers(app)

    async def database_ready() -> None:
        await app.state.commands.store.pool.fetchval("SELECT 1")

    install_probes(app, "contacts", {"database": database_ready})
    current_actor = actor_dependency(verifier)

    @app.post("/customers", status_code=201, response_model=Created)
    async def register_customer(
        body: RegisterCustomer,
        request: Request,
        response: Response,
        actor: Annotated[Actor, Depends(current_actor)],
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
    ) -> Any:
        """Register a company or a person; emits contacts.CustomerRegistered."""
        commands: CustomerCommands = app.state.commands
        claim = _claim(actor, idempotency_key, request, body.model_dump(mode="json"))
        customer_id = new_id()

        def respond(result: AppendResult) -> StoredResponse:
            return StoredResponse(201, {"id": str(customer_id), "version": result.version})

        try:
            result = await commands.handle(
                customer_id, body, _context(actor, request), idempotency=claim, respond=respond
            )
        except DomainError as error:
            raise _domain_problem(error) from None
        except IdempotencyKeyReused as error:
            raise unprocessable("Idempotency-Key", str(error)) from None
        stored = result.replayed or respond(result)
        response.status_code = stored.status_code
        response.headers["Location"] = f"/customers/{stored.body['id']}"
        response.headers["ETag"] = f'"{stored.body["version"]}"'
        if result.replayed is not None:
            response.headers["Idempotent-Replayed"] = "true"
        return stored.body

    @app.get("/customers/{customer_id}")
    async def get_customer(
        customer_id: UUID, response: Response, actor: Annotated[Actor, Depends(current_actor)]
    ) -> dict[str, Any]:
        """Current write-side state of a customer, with its version as ETag."""
        commands: CustomerCommands = app.state.commands
        state = await commands.load(customer_id)
        if not state.registered:
            raise not_found(f"customer {customer_id} does not exist")
        response.headers["ETag"] = f'"{state.version}"'
        return {
            "id": str(state.id),
            "kind": state.kind,
            "name": state.name,
            "name_kana": state.name_kana,
            "version": state.version,
        }

    @app.exception_handler(WrongExpectedVersion)
    async def _stale(request: Request, exc: WrongExpectedVersion) -> Response:
        return conflict(str(exc), current_version=exc.current).to_response()

    return app


def build_app() -> FastAPI:
    """The app as run by uvicorn: settings from the environment, pools opened on startup."""
    from crm_contacts.bootstrap import bootstrap

    return bootstrap()


@asynccontextmanager
async def _noop(_: FastAPI) -> AsyncIterator[None]:
    yield
