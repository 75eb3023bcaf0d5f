"""Rate limits per principal (429 + Retry-After) and request body limits (413), in-process."""

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from crm_http.auth import Actor, DevIssuer, TokenVerifier, actor_dependency
from crm_http.limits import ApiLimits, RateLimiter, install_api_limits
from crm_http.probes import install_probes
from crm_http.problems import install_problem_handlers
from fastapi import Depends, FastAPI, Request

PROBLEM_JSON = "application/problem+json"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def issuer(tmp_path: Path) -> DevIssuer:
    return DevIssuer(tmp_path / "idp")


@pytest.fixture
def clock() -> Clock:
    return Clock()


def build(issuer: DevIssuer, clock: Clock, limits: ApiLimits) -> FastAPI:
    verifier = TokenVerifier(issuer.auth_settings())
    app = FastAPI()
    install_problem_handlers(app)
    install_probes(app, "limits-test", {})
    install_api_limits(app, verifier, limits, clock=clock)
    current_actor = actor_dependency(verifier)

    @app.get("/things")
    async def things(actor: Annotated[Actor, Depends(current_actor)]) -> dict[str, str]:
        return {"subject": actor.subject}

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    @app.post("/imports")
    async def imports(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    return app


ClientOf = Callable[[ApiLimits], httpx.AsyncClient]


@pytest.fixture
async def client_of(issuer: DevIssuer, clock: Clock) -> AsyncIterator[ClientOf]:
    opened: list[httpx.AsyncClient] = []

    def make(limits: ApiLimits) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=build(issuer, clock, limits), raise_app_exceptions=False)
        client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        opened.append(client)
        return client

    yield make
    for client in opened:
        await client.aclose()


def bearer(issuer: DevIssuer, subject: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.issue(subject, 'sales')}"}


async def test_a_principal_gets_its_burst_then_429_with_retry_after_as_problem_json(
    client_of: ClientOf, issuer: DevIssuer
) -> None:
    client = client_of(ApiLimits(rate_per_minute=60, burst=3))
    headers = bearer(issuer, "sato")
    statuses = [(await client.get("/things", headers=headers)).status_code for _ in range(3)]
    refused = await client.get("/things", headers=headers)
    assert statuses == [200, 200, 200]
    assert refused.status_code == 429
    assert refused.headers["content-type"] == PROBLEM_JSON
    assert refused.headers["Retry-After"] == "1"
    assert refused.json()["status"] == 429


async def test_after_waiting_retry_after_seconds_the_principal_may_go_on(
    client_of: ClientOf, issuer: DevIssuer, clock: Clock
) -> None:
    client = client_of(ApiLimits(rate_per_minute=6, burst=1))
    headers = bearer(issuer, "sato")
    assert (await client.get("/things", headers=headers)).status_code == 200
    refused = await client.get("/things", headers=headers)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "10"
    clock.now += 9.5
    assert (await client.get("/things", headers=headers)).status_code == 429
    clock.now += 0.5
    assert (await client.get("/things", headers=headers)).status_code == 200


async def test_each_principal_has_a_bucket_of_its_own(client_of: ClientOf, issuer: DevIssuer) -> None:
    client = client_of(ApiLimits(rate_per_minute=60, burst=1))
    assert (await client.get("/things", headers=bearer(issuer, "sato"))).status_code == 200
    assert (await client.get("/things", headers=bearer(issuer, "sato"))).status_code == 429
    assert (await client.get("/things", headers=bearer(issuer, "suzuki"))).status_code == 200


async def test_a_forged_token_naming_someone_does_not_use_up_their_bucket(
    client_of: ClientOf, issuer: DevIssuer, tmp_path: Path
) -> None:
    client = client_of(ApiLimits(rate_per_minute=60, burst=1))
    forger = DevIssuer(tmp_path / "someone-else")
    forged = {"Authorization": f"Bearer {forger.issue('sato', 'admin')}"}
    assert (await client.get("/things", headers=forged)).status_code == 401
    assert (await client.get("/things", headers=forged)).status_code == 429
    assert (await client.get("/things", headers=bearer(issuer, "sato"))).status_code == 200


async def test_probes_and_metrics_are_never_rate_limited(client_of: ClientOf) -> None:
    client = client_of(ApiLimits(rate_per_minute=1, burst=1))
    statuses = {(await client.get(path)).status_code for path in ["/healthz"] * 5 + ["/metrics"] * 5}
    assert statuses == {200}


async def test_a_body_declared_larger_than_the_limit_is_refused_413_as_problem_json(client_of: ClientOf) -> None:
    client = client_of(ApiLimits(max_body_bytes=100))
    assert (await client.post("/echo", content=b"x" * 100)).json() == {"bytes": 100}
    refused = await client.post("/echo", content=b"x" * 101)
    assert refused.status_code == 413
    assert refused.headers["content-type"] == PROBLEM_JSON
    assert refused.json()["type"].endswith("/content-too-large")


async def test_a_chunked_body_is_cut_off_once_it_grows_past_the_limit(client_of: ClientOf) -> None:
    client = client_of(ApiLimits(max_body_bytes=100))
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(50):
            sent += 40
            yield b"y" * 40

    refused = await client.post("/echo", content=chunks())
    assert refused.status_code == 413
    assert refused.headers["content-type"] == PROBLEM_JSON


async def test_a_path_with_an_allowance_takes_larger_bodies(client_of: ClientOf) -> None:
    client = client_of(ApiLimits(max_body_bytes=100, body_allowances={"/imports": 10_000}))
    assert (await client.post("/imports", content=b"z" * 5000)).json() == {"bytes": 5000}
    assert (await client.post("/echo", content=b"z" * 5000)).status_code == 413
    assert (await client.post("/imports", content=b"z" * 10_001)).status_code == 413


def test_limits_come_from_the_environment_when_set() -> None:
    env: dict[str, Any] = {"CRM_RATE_LIMIT_PER_MINUTE": "30", "CRM_RATE_LIMIT_BURST": "5", "CRM_MAX_BODY_BYTES": "2048"}
    limits = ApiLimits.from_environ(env)
    assert (limits.rate_per_minute, limits.burst, limits.max_body_bytes) == (30, 5, 2048)
    assert ApiLimits.from_environ({}) == ApiLimits()


def test_the_limiter_admits_the_sustained_rate_and_no_more() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_minute=120, burst=2, clock=clock)
    admitted = 0
    for _ in range(600):  # one request every 0.1 s for a minute: 10 per second offered, 2 per second allowed
        clock.now += 0.1
        admitted += limiter.acquire("k") == 0
    assert 120 <= admitted <= 122
