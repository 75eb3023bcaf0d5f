"""What every command endpoint takes from its request: idempotency claim, command context, If-Match."""

import hashlib
import json
from typing import Any
from uuid import UUID

from crm_http.auth import Actor
from crm_http.problems import Problem, problem_type, unprocessable
from crm_schemas.envelope import ActorRef
from fastapi import FastAPI, Request
from fastapi.responses import Response

from crm_eventstore.errors import KeyDestroyed
from crm_eventstore.ids import new_id
from crm_eventstore.store import CommandContext, IdempotencyClaim


def idempotency_claim(actor: Actor, key: str | None, request: Request, body: Any) -> IdempotencyClaim | None:
    """The caller-scoped Idempotency-Key with a fingerprint of the request (method, path, body)."""
    if key is None:
        return None
    if not 1 <= len(key) <= 200:
        raise unprocessable("Idempotency-Key", "must be 1 to 200 characters")
    fingerprint = json.dumps([request.method, request.url.path, body], sort_keys=True, default=str)
    return IdempotencyClaim(f"{actor.subject}:{key}", hashlib.sha256(fingerprint.encode()).hexdigest())


def command_context(actor: Actor, request: Request) -> CommandContext:
    """Actor, correlation id (X-Correlation-ID or a new one) and W3C traceparent of a command."""
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


def expected_version(if_match: str | None, resource: str) -> int | None:
    """The version an If-Match header expects (None for absent or `*`)."""
    if if_match is None or if_match.strip() == "*":
        return None
    text = if_match.strip().removeprefix("W/").strip('"')
    if not text.isdigit():
        raise unprocessable("If-Match", f'must be the ETag of the {resource}, e.g. "3"')
    return int(text)


def install_erasure_problems(app: FastAPI) -> None:
    """Answer 410 problem+json, not 500, when a request needs the data key of an erased (crypto-shredded) customer.

    A record whose personal fields were encrypted with that key can neither be read in full nor
    be given new personal data any more.
    """

    async def erased(request: Request, exc: Exception) -> Response:
        return Problem(
            410,
            "Gone",
            "The customer's personal data was erased; this record's personal fields cannot be read or written.",
            type=problem_type("customer-erased"),
        ).to_response()

    app.add_exception_handler(KeyDestroyed, erased)
