"""Worker processes' probes: ready only while the work loop keeps proving its dependencies."""

import asyncio
import json
import urllib.error
import urllib.request

import pytest
from crm_cli.infra import free_port
from crm_eventstore.worker_probes import Heartbeat, keep_beating, serve_probes


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_readiness_follows_the_heartbeat_and_liveness_does_not() -> None:
    now = [0.0]
    heartbeat = Heartbeat(max_age=30, clock=lambda: now[0])
    port = free_port()
    server = serve_probes("127.0.0.1", port, heartbeat)
    try:
        base = f"http://127.0.0.1:{port}"
        assert _get(f"{base}/readyz")[0] == 503
        assert _get(f"{base}/healthz")[0] == 200
        heartbeat.beat()
        assert _get(f"{base}/readyz")[0] == 200
        now[0] += 31
        status, body = _get(f"{base}/readyz")
        assert status == 503
        assert json.loads(body)["status"] == "not ready"
        assert _get(f"{base}/healthz")[0] == 200
        assert "python_info" in _get(f"{base}/metrics")[1]
    finally:
        server.shutdown()


@pytest.mark.asyncio(loop_scope="session")
async def test_a_failing_dependency_check_never_beats() -> None:
    heartbeat = Heartbeat()
    stop = asyncio.Event()

    async def broken() -> None:
        raise ConnectionError("database down")

    task = asyncio.create_task(keep_beating(broken, stop, heartbeat, interval=0.01))
    await asyncio.sleep(0.05)
    stop.set()
    await task
    assert not heartbeat.ready()
    assert heartbeat.reason == "ConnectionError"
