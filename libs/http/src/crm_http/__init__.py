"""HTTP plumbing shared by the CRM services: problem+json errors, bearer auth, probes and metrics."""

from crm_http.auth import (
    Actor,
    Algorithm,
    AuthSettings,
    DevIssuer,
    InvalidTokenError,
    KeysUnavailableError,
    TokenVerifier,
    actor_dependency,
)
from crm_http.probes import install_probes
from crm_http.problems import (
    FieldError,
    Problem,
    conflict,
    install_problem_handlers,
    not_found,
    problem_type,
    unprocessable,
    validation_problem,
)

__all__ = [
    "Actor",
    "Algorithm",
    "AuthSettings",
    "DevIssuer",
    "FieldError",
    "InvalidTokenError",
    "KeysUnavailableError",
    "Problem",
    "TokenVerifier",
    "actor_dependency",
    "conflict",
    "install_probes",
    "install_problem_handlers",
    "not_found",
    "problem_type",
    "unprocessable",
    "validation_problem",
]
