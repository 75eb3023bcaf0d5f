"""Liveness, readiness and Prometheus metrics endpoints, and request-latency recording."""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from prometheus_client import REGISTRY, Histogram
from prometheus_client.exposition import choose_encoder
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[None]]

UNMATCHED_ROUTE = "<unmatched>"

_NO_STORE = {"Cache-Control": "no-store"}
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def install_probes(
    app: FastAPI,
    service: str,
    readiness_checks: Mapping[str, ReadinessCheck],
    *,
    check_timeout_seconds: float = 2.0,
) -> None:
    """Add ``/healthz``, ``/readyz`` and ``/metrics`` to ``app`` and record every request's latency."""
    checks = dict(readiness_checks)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"}, headers=_NO_STORE)

    async def readyz(request: Request) -> Response:
        results = await _run_checks(checks, check_timeout_seconds)
        failing = sorted(name for name, result in results.items() if result["status"] != "ok")
        if failing:
            body = {"status": "unavailable", "failing": failing, "checks": results}
            return JSONResponse(body, status_code=503, headers=_NO_STORE)
        return JSONResponse({"status": "ready", "checks": results}, headers=_NO_STORE)

    async def metrics(request: Request) -> Response:
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encode(REGISTRY), headers={**_NO_STORE, "Content-Type": content_type})

    # Plain Starlette routes: they bypass the app's and routers' dependencies (authentication
    # above all), which orchestrators and scrapers cannot satisfy.
    for path, endpoint in (("/healthz", healthz), ("/readyz", readyz), ("/metrics", metrics)):
        app.router.add_route(path, endpoint, methods=["GET"], include_in_schema=False)
    app.add_middleware(_RequestMetrics, service=service, templates=_RouteTemplates(app.router))


class _RequestMetrics:
    def __init__(self, app: ASGIApp, service: str, templates: _RouteTemplates) -> None:
        self.app = app
        self.service = service
        self.templates = templates
        self.histogram = _request_duration_histogram()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Read before the app runs: mounts rewrite root_path in this same scope.
        path, status = _route_path(scope), 500
        started = time.perf_counter()

        async def send_observing_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_observing_status)
        finally:
            method = scope["method"] if scope["method"] in _KNOWN_METHODS else "OTHER"
            route = self.templates.template(path, scope["method"])
            self.histogram.labels(self.service, method, route, str(status)).observe(time.perf_counter() - started)


@functools.cache
def _request_duration_histogram() -> Histogram:
    return Histogram(
        "crm_http_request_duration_seconds",
        "Time from receiving an HTTP request to finishing its response.",
        ["service", "method", "route", "status"],
    )


@dataclass(frozen=True, slots=True)
class _Template:
    regex: re.Pattern[str]
    path_format: str
    methods: frozenset[str] | None
    mounted: tuple[_Template, ...] | None


class _RouteTemplates:
    """Maps a request path to the template of the route it matches, e.g. ``/customers/{customer_id}``.

    Label values must stay a small fixed set, so the raw path (one series per customer id) is
    never used. Nor is ``scope["route"]``: FastAPI routers included with a prefix leave the prefix
    out of the route's own path, so ``/customers/{id}`` and ``/deals/{id}`` would both read ``/{id}``.
    """

    def __init__(self, router: Router) -> None:
        self._router = router
        self._built_from: tuple[int, ...] = ()
        self._table: tuple[_Template, ...] = ()

    def template(self, path: str, method: str) -> str:
        routes = self._router.routes
        built_from = tuple(map(id, routes))
        if built_from != self._built_from:
            self._table, self._built_from = _templates(routes), built_from
        return _match(self._table, path, method) or UNMATCHED_ROUTE


def _templates(routes: Sequence[BaseRoute]) -> tuple[_Template, ...]:
    table = []
    for context in iter_route_contexts(routes):
        regex, path_format = getattr(context, "path_regex", None), context.path_format
        if not isinstance(regex, re.Pattern) or path_format is None:
            continue
        route = context.original_route
        mounted = _templates(route.routes) if isinstance(route, Mount) else None
        methods = frozenset(context.methods) if context.methods is not None else None
        table.append(_Template(regex, path_format, methods, mounted))
    return tuple(table)


def _match(table: Sequence[_Template], path: str, method: str) -> str | None:
    wrong_method = None
    for entry in table:
        matched = entry.regex.match(path)
        if matched is None:
            continue
        if entry.mounted is not None:
            inner = _match(entry.mounted, "/" + matched.group("path"), method)
            return entry.path_format.removesuffix("/{path}") + inner if inner else entry.path_format
        if entry.methods is None or method in entry.methods:
            return entry.path_format
        wrong_method = wrong_method or entry.path_format
    return wrong_method


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path + "/"):
        return path[len(root_path) :]
    return path


async def _run_checks(checks: Mapping[str, ReadinessCheck], time_limit: float) -> dict[str, dict[str, Any]]:
    outcomes = await asyncio.gather(*(_run_check(name, check, time_limit) for name, check in checks.items()))
    return dict(zip(checks, outcomes, strict=True))


async def _run_check(name: str, check: ReadinessCheck, time_limit: float) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(time_limit):
            await check()
    except TimeoutError:
        logger.warning("readiness check %r timed out after %ss", name, time_limit)
        outcome: dict[str, Any] = {"status": "timeout"}
    except Exception as error:
        # Only the exception's class goes to the unauthenticated caller; the message may carry
        # hostnames or credentials, so it stays in the log.
        logger.warning("readiness check %r failed", name, exc_info=True)
        outcome = {"status": "failed", "error": type(error).__name__}
    else:
        outcome = {"status": "ok"}
    outcome["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return outcome
