"""Liveness, readiness and metrics for the non-HTTP processes (relays, consumers, workers)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)


class Heartbeat:
    """Readiness as 'the work loop proved its dependencies reachable within max_age seconds'."""

    def __init__(self, max_age: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age = max_age
        self._clock = clock
        self._last: float | None = None
        self.reason = "starting"

    def beat(self) -> None:
        """The loop just completed a cycle that touched its dependencies."""
        self._last = self._clock()
        self.reason = "ok"

    def fail(self, reason: str) -> None:
        """The loop could not reach a dependency."""
        self.reason = reason

    def ready(self) -> bool:
        """True if the last successful cycle is recent enough."""
        return self._last is not None and self._clock() - self._last <= self.max_age


HEARTBEAT = Heartbeat()


def _handler(heartbeat: Heartbeat) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._send(200, "application/json", json.dumps({"status": "ok"}).encode())
            elif self.path == "/readyz":
                ready = heartbeat.ready()
                body = json.dumps({"status": "ready" if ready else "not ready", "reason": heartbeat.reason})
                self._send(200 if ready else 503, "application/json", body.encode())
            else:
                self._send(200, CONTENT_TYPE_LATEST, generate_latest())

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


def serve_probes(host: str, port: int, heartbeat: Heartbeat = HEARTBEAT) -> ThreadingHTTPServer:
    """Serve /healthz (process up), /readyz (heartbeat fresh) and /metrics on a daemon thread."""
    server = ThreadingHTTPServer((host, port), _handler(heartbeat))
    threading.Thread(target=server.serve_forever, name="probes", daemon=True).start()
    return server


async def keep_beating(
    checks: Callable[[], Awaitable[None]],
    stop: asyncio.Event,
    heartbeat: Heartbeat = HEARTBEAT,
    interval: float = 5.0,
) -> None:
    """Run dependency checks every `interval` seconds, beating on success, until stop is set."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(checks(), timeout=interval)
            heartbeat.beat()
        except Exception as exc:
            heartbeat.fail(f"{type(exc).__name__}")
            log.warning("readiness check failed: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
