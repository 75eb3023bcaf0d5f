"""RFC 9457 problem details: the one error shape every CRM service answers with."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://crm.example/problems/"

_STANDARD_MEMBERS = frozenset({"type", "title", "status", "detail", "instance", "errors"})
_LOCATIONS = frozenset({"body", "query", "header", "path", "cookie"})
_NO_BODY_STATUSES = frozenset({204, 304})


def problem_type(slug: str) -> str:
    """URI of a CRM problem type, e.g. ``problem_type("conflict")``."""
    return PROBLEM_TYPE_BASE + slug


@dataclass(frozen=True, slots=True)
class FieldError:
    """One invalid input: its dotted path, what is wrong, and where it was sent (body, query, ...)."""

    field: str
    message: str
    location: str | None = None
    code: str | None = None

    def to_dict(self) -> dict[str, str]:
        """Member of a problem's ``errors`` list; ``location`` is spelled ``in``."""
        member = {"field": self.field, "message": self.message}
        if self.location is not None:
            member["in"] = self.location
        if self.code is not None:
            member["code"] = self.code
        return member


class Problem(Exception):
    """An error that the installed handlers turn into an RFC 9457 problem+json response."""

    def __init__(
        self,
        status: int,
        title: str | None = None,
        detail: str | None = None,
        *,
        type: str = "about:blank",
        instance: str | None = None,
        errors: Sequence[FieldError] = (),
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if not 400 <= status <= 599:
            raise ValueError(f"a problem needs an error status, not {status}")
        clash = _STANDARD_MEMBERS.intersection(extra or {})
        if clash:
            raise ValueError(f"extra members would overwrite standard members: {sorted(clash)}")
        self.status = status
        self.title = title if title is not None else _phrase(status)
        self.detail = detail
        self.type = type
        self.instance = instance
        self.errors = list(errors)
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})
        super().__init__(detail or self.title)

    def to_dict(self) -> dict[str, Any]:
        """The problem+json document."""
        document: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status}
        if self.detail is not None:
            document["detail"] = self.detail
        if self.instance is not None:
            document["instance"] = self.instance
        document.update(jsonable_encoder(self.extra))
        if self.errors:
            document["errors"] = [error.to_dict() for error in self.errors]
        return document

    def to_response(self) -> JSONResponse:
        """The problem as an ``application/problem+json`` response with its headers."""
        return JSONResponse(
            self.to_dict(),
            status_code=self.status,
            headers=self.headers,
            media_type=PROBLEM_CONTENT_TYPE,
        )

    def __repr__(self) -> str:
        return f"Problem(status={self.status!r}, title={self.title!r}, detail={self.detail!r})"


def not_found(detail: str) -> Problem:
    """404: the addressed resource does not exist."""
    return Problem(404, "Not Found", detail)


def conflict(detail: str, **extra: Any) -> Problem:
    """409: the request conflicts with the current state; ``extra`` becomes problem members."""
    return Problem(409, "Conflict", detail, type=problem_type("conflict"), extra=extra)


def unprocessable(field: str, message: str) -> Problem:
    """422: well-formed input that a business rule rejects, naming the field at fault."""
    return Problem(
        422,
        "Unprocessable Content",
        message,
        type=problem_type("unprocessable"),
        errors=[FieldError(field=field, message=message)],
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` (raised, invalid request, HTTP, unexpected) with problem+json."""
    app.add_exception_handler(Problem, _handle_problem)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _handle_validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _handle_http_exception)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _handle_unexpected)
    _document_problems(app)


#: The problem+json document as a JSON Schema (RFC 9457; extension members are allowed).
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {
                    "field": {"type": "string"},
                    "message": {"type": "string"},
                    "in": {"type": "string"},
                    "code": {"type": "string"},
                },
            },
        },
    },
    "additionalProperties": True,
}


def _document_problems(app: FastAPI) -> None:
    """Make the app's OpenAPI say what the handlers answer: every error is problem+json.

    FastAPI documents its 422 as application/json HTTPValidationError; the handlers answer
    problem+json. Secured operations also document 401 and 429, and every operation a
    `default` problem for the rest (404, 409, 413, 428, ... as the endpoint's description says).
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        document.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
        problem = {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for item in document.get("paths", {}).values():
            for operation in item.values():
                if not isinstance(operation, dict) or "responses" not in operation:
                    continue
                responses = operation["responses"]
                for status, response in responses.items():
                    declared = response.get("content", {}).get(PROBLEM_CONTENT_TYPE, {})
                    if (status.startswith(("4", "5")) or status == "default") and not declared.get("schema"):
                        response["content"] = problem
                if operation.get("security"):
                    responses.setdefault("401", {"description": "Missing or invalid bearer token", "content": problem})
                    responses.setdefault("429", {"description": "Rate limit exceeded", "content": problem})
                responses.setdefault("default", {"description": "Any other error", "content": problem})
        schemas = document["components"]["schemas"]
        for name in ("HTTPValidationError", "ValidationError"):
            if name in schemas and f'"#/components/schemas/{name}"' not in json.dumps(document):
                del schemas[name]
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def validation_problem(errors: Sequence[Mapping[str, Any]]) -> Problem:
    """422 problem for FastAPI/pydantic validation errors, one ``FieldError`` per error."""
    field_errors = [_field_error(error) for error in errors]
    count = len(field_errors)
    return Problem(
        422,
        "Request validation failed",
        f"The request has {count} invalid field{'' if count == 1 else 's'}.",
        type=problem_type("request-validation"),
        errors=field_errors,
    )


def _field_error(error: Mapping[str, Any]) -> FieldError:
    # The input value is deliberately not echoed back: it may be a password or personal data.
    loc = tuple(error.get("loc", ()))
    location = loc[0] if loc and loc[0] in _LOCATIONS else None
    path = loc[1:] if location is not None else loc
    code = error.get("type")
    if code == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", "malformed JSON")
        position = f" at position {path[0]}" if path else ""
        return FieldError(field="", message=f"Invalid JSON{position}: {reason}", location=location, code=code)
    return FieldError(
        field=".".join(str(part) for part in path),
        message=str(error.get("msg", "Invalid value")),
        location=location,
        code=str(code) if code is not None else None,
    )


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


async def _handle_problem(request: Request, exc: Problem) -> Response:
    return exc.to_response()


async def _handle_validation_error(request: Request, exc: RequestValidationError) -> Response:
    return validation_problem(exc.errors()).to_response()


async def _handle_http_exception(request: Request, exc: StarletteHTTPException) -> Response:
    if exc.status_code in _NO_BODY_STATUSES or exc.status_code < 400:
        return Response(status_code=exc.status_code, headers=exc.headers)
    title = _phrase(exc.status_code)
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else None
    return Problem(exc.status_code, title, detail, headers=exc.headers).to_response()


async def _handle_unexpected(request: Request, exc: Exception) -> Response:
    # Starlette's ServerErrorMiddleware re-raises after sending this response, so the server
    # logs the traceback; the client gets nothing that describes the internals.
    return Problem(500, "Internal Server Error", "An unexpected error occurred.").to_response()
