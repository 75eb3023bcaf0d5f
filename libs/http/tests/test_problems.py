from collections.abc import Callable
from typing import Annotated

import httpx
import pytest
from crm_http.problems import (
    PROBLEM_CONTENT_TYPE,
    FieldError,
    Problem,
    conflict,
    install_problem_handlers,
    not_found,
    problem_type,
    unprocessable,
)
from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel, Field

ClientFor = Callable[[FastAPI], httpx.AsyncClient]


class Address(BaseModel):
    street: str
    postal_code: str = Field(pattern=r"^\d{3}-\d{4}$")


class NewCustomer(BaseModel):
    name: str = Field(min_length=1)
    password: str = Field(min_length=12)
    address: Address


def build_app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/customers")
    async def register(customer: NewCustomer) -> dict[str, str]:
        return {"name": customer.name}

    @app.get("/customers")
    async def search(limit: Annotated[int, Query(ge=1, le=100)] = 10) -> list[str]:
        return []

    @app.get("/customers/{customer_id}")
    async def get_customer(customer_id: str) -> dict[str, str]:
        raise not_found(f"No customer {customer_id}.")

    @app.post("/customers/{customer_id}/merge")
    async def merge(customer_id: str) -> None:
        raise conflict("The customer was changed meanwhile.", expected_version=3, actual_version=4)

    @app.post("/customers/{customer_id}/email")
    async def change_email(customer_id: str) -> None:
        raise unprocessable("email", "Another customer already uses this address.")

    @app.get("/forbidden")
    async def forbidden() -> None:
        raise HTTPException(403, "Only managers may see this.")

    @app.get("/busy")
    async def busy() -> None:
        raise Problem(503, detail="Try later.", headers={"Retry-After": "5"})

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("connection to postgres://crm:s3cret@db failed")

    return app


VALID_BODY = {
    "name": "Aiko",
    "password": "correct horse battery",
    "address": {"street": "1-2-3 Chuo", "postal_code": "100-0001"},
}


async def test_nested_body_field_is_named_by_dotted_path_and_its_location(client_for: ClientFor) -> None:
    body = {**VALID_BODY, "address": {"street": "1-2-3 Chuo", "postal_code": "1000001"}}
    async with client_for(build_app()) as client:
        response = await client.post("/customers", json=body)

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    problem = response.json()
    assert problem["type"] == problem_type("request-validation")
    assert problem["title"] == "Request validation failed"
    assert problem["status"] == 422
    assert [(e["in"], e["field"], e["code"]) for e in problem["errors"]] == [
        ("body", "address.postal_code", "string_pattern_mismatch")
    ]


async def test_every_invalid_field_is_listed(client_for: ClientFor) -> None:
    async with client_for(build_app()) as client:
        response = await client.post("/customers", json={"name": "", "address": {}})

    fields = sorted(error["field"] for error in response.json()["errors"])
    assert fields == ["address.postal_code", "address.street", "name", "password"]
    assert response.json()["detail"] == "The request has 4 invalid fields."


async def test_query_parameter_error_is_located_in_the_query(client_for: ClientFor) -> None:
    async with client_for(build_app()) as client:
        response = await client.get("/customers", params={"limit": "500"})

    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert (error["in"], error["field"]) == ("query", "limit")


async def test_rejected_input_is_not_echoed_back(client_for: ClientFor) -> None:
    async with client_for(build_app()) as client:
        response = await client.post("/customers", json={**VALID_BODY, "password": "hunter2"})

    assert response.status_code == 422
    assert "hunter2" not in response.text


async def test_body_that_is_not_json_is_a_validation_problem(client_for: ClientFor) -> None:
    async with client_for(build_app()) as client:
        response = await client.post(
            "/customers", content=b'{"name": "Aiko",', headers={"content-type": "application/json"}
        )

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    (error,) = response.json()["errors"]
    assert (error["in"], error["field"], error["code"]) == ("body", "", "json_invalid")
    assert error["message"].startswith("Invalid JSON at position")


async def test_not_found_helper_answers_404(client_for: ClientFor) -> None:
    async with client_for(build_app()) as client:
        response = await client.get("/customers/c-1")

    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert response.json() == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "No customer c-1.",
    }


async def test_conflict_helper_carries_its_extra_members(client_for: ClientFor) -> None:
    async with client_for(build_app()) as client:
        response = await client.post("/customers/c-1/merge")

    assert response.status_code == 409
    problem = response.json()
    assert problem["type"] == problem_type("conflict")
    assert (problem["expected_version"], problem["actual_version"]) == (3, 4)


async def test_unprocessable_helper_names_the_field_at_fault(client_for: ClientFor) -> None:
    async with client_for(build_app()) as client:
        response = await client.post("/customers/c-1/email")

    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "email", "message": "Another customer already uses this address."}]


async def test_problem_headers_are_sent(client_for: ClientFor) -> None:
    async with client_for(build_app()) as client:
        response = await client.get("/busy")

    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["title"] == "Service Unavailable"


async def test_http_exception_keeps_its_status_and_detail(client_for: ClientFor) -> None:
    async with client_for(build_app()) as client:
        response = await client.get("/forbidden")

    assert response.status_code == 403
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert response.json()["detail"] == "Only managers may see this."


async def test_unknown_route_is_a_404_problem(client_for: ClientFor) -> None:
    async with client_for(build_app()) as client:
        response = await client.get("/nowhere")

    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert response.json()["title"] == "Not Found"


async def test_wrong_method_is_a_405_problem_keeping_the_allow_header(client_for: ClientFor) -> None:
    async with client_for(build_app()) as client:
        response = await client.delete("/customers/c-1")

    assert response.status_code == 405
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert response.headers["allow"] == "GET"


async def test_unexpected_error_is_a_500_problem_that_hides_the_internals(client_for: ClientFor) -> None:
    async with client_for(build_app()) as client:
        response = await client.get("/boom")

    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert response.json() == {
        "type": "about:blank",
        "title": "Internal Server Error",
        "status": 500,
        "detail": "An unexpected error occurred.",
    }
    assert "s3cret" not in response.text


def test_extra_members_cannot_overwrite_standard_members() -> None:
    with pytest.raises(ValueError, match="status"):
        Problem(409, extra={"status": 200})


def test_a_problem_needs_an_error_status() -> None:
    with pytest.raises(ValueError, match="error status"):
        Problem(200)


def test_problem_document_puts_field_location_under_in() -> None:
    problem = Problem(
        400,
        errors=[FieldError(field="address.postal_code", message="too short", location="body")],
        instance="/customers/c-1",
    )

    assert problem.to_dict() == {
        "type": "about:blank",
        "title": "Bad Request",
        "status": 400,
        "instance": "/customers/c-1",
        "errors": [{"field": "address.postal_code", "message": "too short", "in": "body"}],
    }
