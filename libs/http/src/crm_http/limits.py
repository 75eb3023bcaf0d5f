"""API hygiene every service installs with one call: per-principal rate limits and request body size limits.

``install_api_limits(app, verifier)`` adds one ASGI middleware that

* answers 429 problem+json with ``Retry-After`` when a principal (the verified token subject, or the
  client address for requests without a valid token) exceeds its rate: a GCRA token bucket of
  ``rate_per_minute`` with bursts of ``burst`` requests, kept per process (with N replicas behind a
  load balancer a principal gets up to N times the rate; that bounds abuse, it is not billing);
* answers 413 problem+json when a request body is larger than ``max_body_bytes`` (or a per-path
  allowance, e.g. CSV imports), by Content-Length up front or while a chunked body streams in;
* answers 422 problem+json when the path, the query or a JSON body carries a NUL character (U+0000),
  which no PostgreSQL text or jsonb value can hold (it would otherwise fail deep in a query as a 500).

Health probes and metrics are exempt. Statement timeouts (no request runs longer than 5 s in
PostgreSQL) are set on the pools: ``crm_eventstore.store.create_pool``.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from fastapi import FastAPI
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crm_http.auth import InvalidTokenError, KeysUnavailableError, TokenVerifier
from crm_http.problems import FieldError, Problem, problem_type

__all__ = ["ApiLimits", "RateLimiter", "install_api_limits"]

EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class ApiLimits(BaseModel, frozen=True):
    """Limits of one service's HTTP API, from CRM_RATE_LIMIT_PER_MINUTE, CRM_RATE_LIMIT_BURST, CRM_MAX_BODY_BYTES.

    Defaults: 200 requests/s per principal (far above a person at a front end or the stack's own command
    throughput, still a bound on a runaway script or a stolen token) and 1 MiB bodies.
    """

    rate_per_minute: float = Field(default=12_000, gt=0, description="Sustained requests per minute per principal")
    burst: int = Field(default=1000, ge=1, description="Requests a principal may make at once")
    max_body_bytes: int = Field(default=1024 * 1024, ge=1, description="Largest request body (bytes)")
    body_allowances: Mapping[str, int] = Field(
        default_factory=dict, description="Larger body limits for exact paths, e.g. {'/imports': 64 MiB}"
    )

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> ApiLimits:
        """Limits from the environment (unset variables keep the defaults), then `overrides`."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name, key in (
            ("rate_per_minute", "CRM_RATE_LIMIT_PER_MINUTE"),
            ("burst", "CRM_RATE_LIMIT_BURST"),
            ("max_body_bytes", "CRM_MAX_BODY_BYTES"),
        ):
            if env.get(key):
                values[name] = env[key]
        return cls.model_validate({**values, **overrides})


@dataclass
class RateLimiter:
    """GCRA (a token bucket without a timer): per key, the theoretical arrival time of the next request."""

    rate_per_minute: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    max_keys: int = 100_000
    _tat: OrderedDict[str, float] = field(default_factory=OrderedDict)

    @property
    def interval(self) -> float:
        """Seconds between requests at the sustained rate."""
        return 60.0 / self.rate_per_minute

    def acquire(self, key: str) -> float:
        """0 if the request may go ahead (and counts), else the seconds to wait before retrying."""
        now = self.clock()
        tat = max(self._tat.get(key, now), now)
        allowed_at = tat - self.interval * (self.burst - 1)
        if now < allowed_at - 1e-9:
            return allowed_at - now
        self._tat[key] = tat + self.interval
        self._tat.move_to_end(key)
        # Keys idle long enough to have a full bucket again carry no state worth keeping.
        while len(self._tat) > self.max_keys:
            self._tat.popitem(last=False)
        return 0.0


class _BodyTooLarge(Exception):
    pass


#: A JSON ``\u0000`` escape that is not itself an escaped backslash followed by "u0000".
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000", re.IGNORECASE)


def _nul_problem(location: str) -> Problem:
    return Problem(
        422,
        "Request validation failed",
        f"The request {location} contains a NUL character (U+0000), which is not accepted.",
        type=problem_type("request-validation"),
        errors=[FieldError(field="", message="NUL characters (U+0000) are not accepted", location=location)],
    )


def _nul_in_url(scope: Scope) -> str | None:
    if "\x00" in scope.get("path", ""):
        return "path"
    query = bytes(scope.get("query_string") or b"").lower()
    if b"%00" in query or b"\x00" in query:
        return "query"
    return None


class _Limits:
    def __init__(self, app: ASGIApp, limits: ApiLimits, verifier: TokenVerifier | None, limiter: RateLimiter) -> None:
        self.app = app
        self.limits = limits
        self.verifier = verifier
        self.limiter = limiter

    async def _principal(self, scope: Scope) -> str:
        headers = dict(scope.get("headers") or [])
        authorization = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = authorization.partition(" ")
        if self.verifier is not None and scheme.lower() == "bearer" and token:
            try:
                actor = await self.verifier.verify(token.strip())
                return f"sub:{actor.subject}"
            except (InvalidTokenError, KeysUnavailableError):
                pass
        elif self.verifier is None and token:
            # Without a verifier the token itself is the principal (hashed: it is a credential).
            return "tok:" + hashlib.sha256(token.encode()).hexdigest()
        client = scope.get("client")
        return f"ip:{client[0] if client else 'unknown'}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        wait = self.limiter.acquire(await self._principal(scope))
        if wait > 0:
            retry_after = str(max(1, math.ceil(wait)))
            problem = Problem(
                429,
                "Too Many Requests",
                f"Rate limit exceeded; retry after {retry_after} s.",
                type=problem_type("rate-limited"),
                headers={"Retry-After": retry_after},
            )
            await problem.to_response()(scope, receive, send)
            return
        limit = self.limits.body_allowances.get(scope.get("path", ""), self.limits.max_body_bytes)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(limit).to_response()(scope, receive, send)
            return
        where = _nul_in_url(scope)
        if where is not None:
            await _nul_problem(where).to_response()(scope, receive, send)
            return
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if content_type == b"application/json" or content_type.endswith(b"+json"):
            # JSON bodies are read whole here (they are parsed whole anyway) to look for NUL escapes.
            body = bytearray()
            more = True
            while more:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away
                body.extend(message.get("body", b""))
                more = message.get("more_body", False)
                if len(body) > limit:
                    await _too_large(limit).to_response()(scope, receive, send)
                    return
            if _JSON_NUL.search(body):
                await _nul_problem("body").to_response()(scope, receive, send)
                return
            receive = _replay(bytes(body), receive)
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if started:
                raise
            await _too_large(limit).to_response()(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands over an already read body first, then what the client sends next (disconnect)."""
    pending = True

    async def replaying() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replaying


def _too_large(limit: int) -> Problem:
    return Problem(
        413,
        "Content Too Large",
        f"The request body is larger than {limit} bytes.",
        type=problem_type("content-too-large"),
    )


def install_api_limits(
    app: FastAPI,
    verifier: TokenVerifier | None = None,
    limits: ApiLimits | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> RateLimiter:
    """Rate limits per principal (429 + Retry-After) and a request body limit (413) on every route of `app`."""
    chosen = limits if limits is not None else ApiLimits.from_environ()
    limiter = RateLimiter(chosen.rate_per_minute, chosen.burst, clock)
    app.add_middleware(_Limits, limits=chosen, verifier=verifier, limiter=limiter)
    return limiter
