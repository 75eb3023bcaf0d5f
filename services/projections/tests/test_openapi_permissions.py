"""The query API's OpenAPI names the permission each endpoint needs and documents its 403."""

from pathlib import Path

from crm_http.auth import DevIssuer, TokenVerifier
from crm_projections.api import create_app


def test_every_query_endpoint_documents_its_permission_and_403(tmp_path: Path) -> None:
    issuer = DevIssuer(tmp_path / "issuer")
    schema = create_app(TokenVerifier(issuer.auth_settings())).openapi()
    probes = {"/healthz", "/readyz", "/metrics"}
    undocumented = [
        f"{method.upper()} {path}"
        for path, operations in schema["paths"].items()
        if path not in probes
        for method, operation in operations.items()
        if "403" not in operation.get("responses", {}) or "Permission `" not in operation.get("description", "")
    ]
    assert undocumented == []
    timeline = schema["paths"]["/customers/{customer_id}/timeline"]["get"]
    assert "`timeline.read`" in timeline["description"]
