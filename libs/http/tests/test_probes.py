import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import httpx
import pytest
from crm_http.auth import Actor, DevIssuer, TokenVerifier, actor_dependency
from crm_http.probes import UNMATCHED_ROUTE, ReadinessCheck, install_probes
from crm_http.problems import install_problem_handlers
from fastapi import APIRouter, Depends, FastAPI
from prometheus_client import REGISTRY

ClientFor = Callable[[FastAPI], httpx.AsyncClient]


@pytest.fixture
def service() -> str:
    """A service name of its own, so each test reads only its own time series."""
    return f"svc-{uuid.uuid4().hex[:8]}"


async def healthy() -> None:
    return None


async def database_down() -> None:
    raise ConnectionRefusedError("postgresql://crm:s3cret@db:5432 refused the connection")


async def hangs() -> None:
    await asyncio.sleep(10)


def build_app(service: str, checks: dict[str, ReadinessCheck] | None = None) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    install_probes(app, service, checks or {}, check_timeout_seconds=0.05)
    customers = APIRouter()

    @customers.get("/{customer_id}")
    async def get_customer(customer_id: str) -> dict[str, str]:
        return {"id": customer_id}

    notes = APIRouter(prefix="/notes")

    @notes.get("/{note_id}")
    async def get_note(customer_id: str, note_id: str) -> dict[str, str]:
        return {"id": note_id}

    @customers.get("/{customer_id}/fail")
    async def fail(customer_id: str) -> None:
        raise RuntimeError("bug")

    customers.include_router(notes, prefix="/{customer_id}")
    app.include_router(customers, prefix="/customers")
    return app


def observed(service: str, method: str, route: str, status: str) -> float:
    labels = {"service": service, "method": method, "route": route, "status": status}
    return REGISTRY.get_sample_value("crm_http_request_duration_seconds_count", labels) or 0.0


async def test_healthz_answers_ok_without_running_the_readiness_checks(client_for: ClientFor, service: str) -> None:
    calls = []

    async def counted() -> None:
        calls.append(1)

    async with client_for(build_app(service, {"database": counted})) as client:
        response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert calls == []


async def test_readyz_reports_every_passing_check(client_for: ClientFor, service: str) -> None:
    async with client_for(build_app(service, {"database": healthy, "kafka": healthy})) as client:
        response = await client.get("/readyz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert {name: result["status"] for name, result in body["checks"].items()} == {
        "database": "ok",
        "kafka": "ok",
    }


async def test_readyz_is_503_naming_the_failing_check(client_for: ClientFor, service: str) -> None:
    async with client_for(build_app(service, {"database": database_down, "kafka": healthy})) as client:
        response = await client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["database"]
    assert body["checks"]["database"]["status"] == "failed"
    assert body["checks"]["database"]["error"] == "ConnectionRefusedError"
    assert body["checks"]["kafka"]["status"] == "ok"
    assert "s3cret" not in response.text


async def test_readyz_is_503_when_a_check_exceeds_its_timeout(client_for: ClientFor, service: str) -> None:
    async with client_for(build_app(service, {"kafka": hangs})) as client:
        response = await client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["failing"] == ["kafka"]
    assert response.json()["checks"]["kafka"]["status"] == "timeout"


async def test_metrics_are_served_in_the_prometheus_text_format(client_for: ClientFor, service: str) -> None:
    async with client_for(build_app(service)) as client:
        await client.get("/customers/c-1")
        response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    assert "# TYPE crm_http_request_duration_seconds histogram" in response.text
    assert f'route="/customers/{{customer_id}}",service="{service}",status="200"' in response.text


async def test_latency_is_labelled_by_route_template_not_by_raw_path(client_for: ClientFor, service: str) -> None:
    async with client_for(build_app(service)) as client:
        for customer in ("c-1", "c-2", "c-3"):
            await client.get(f"/customers/{customer}")
        await client.get("/customers/c-1/notes/n-9")

    assert observed(service, "GET", "/customers/{customer_id}", "200") == 3
    assert observed(service, "GET", "/customers/{customer_id}/notes/{note_id}", "200") == 1


async def test_unmatched_paths_share_one_route_label(client_for: ClientFor, service: str) -> None:
    async with client_for(build_app(service)) as client:
        await client.get("/wp-admin")
        await client.get("/.env")

    assert observed(service, "GET", UNMATCHED_ROUTE, "404") == 2


async def test_unknown_methods_share_one_method_label(client_for: ClientFor, service: str) -> None:
    async with client_for(build_app(service)) as client:
        await client.request("BREW", "/customers/c-1")

    assert observed(service, "OTHER", "/customers/{customer_id}", "405") == 1


async def test_unhandled_error_is_recorded_as_500(client_for: ClientFor, service: str) -> None:
    async with client_for(build_app(service)) as client:
        response = await client.get("/customers/c-1/fail")

    assert response.status_code == 500
    assert observed(service, "GET", "/customers/{customer_id}/fail", "500") == 1


async def test_routes_of_a_mounted_app_are_labelled_with_the_mount_prefix(client_for: ClientFor, service: str) -> None:
    app, admin = build_app(service), FastAPI()

    @admin.get("/jobs/{job_id}")
    async def job(job_id: str) -> dict[str, str]:
        return {"id": job_id}

    app.mount("/admin", admin)

    async with client_for(app) as client:
        await client.get("/admin/jobs/j-1")

    assert observed(service, "GET", "/admin/jobs/{job_id}", "200") == 1


async def test_probes_answer_without_authentication_even_when_the_app_requires_it(
    client_for: ClientFor, service: str, tmp_path: Path
) -> None:
    verifier = TokenVerifier(DevIssuer(tmp_path / "idp").auth_settings())
    current_actor = actor_dependency(verifier)
    app = FastAPI(dependencies=[Depends(current_actor)])
    install_problem_handlers(app)
    install_probes(app, service, {"database": healthy})

    @app.get("/customers")
    async def customers(actor: Annotated[Actor, Depends(current_actor)]) -> list[str]:
        return []

    async with client_for(app) as client:
        assert (await client.get("/customers")).status_code == 401
        for probe in ("/healthz", "/readyz", "/metrics"):
            assert (await client.get(probe)).status_code == 200, probe


async def test_probes_are_left_out_of_the_openapi_document(client_for: ClientFor, service: str) -> None:
    async with client_for(build_app(service)) as client:
        paths = (await client.get("/openapi.json")).json()["paths"]

    assert not {"/healthz", "/readyz", "/metrics"} & set(paths)
