import base64
import hashlib
import hmac
import json
import stat
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import httpx
import jwt
import pytest
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
from crm_http.problems import PROBLEM_CONTENT_TYPE, install_problem_handlers
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import Depends, FastAPI
from pydantic import ValidationError
from starlette.types import Receive, Scope, Send


def _now() -> datetime:
    return datetime.now(UTC)


ClientFor = Callable[[FastAPI], httpx.AsyncClient]


@pytest.fixture
def issuer(tmp_path: Path) -> DevIssuer:
    return DevIssuer(tmp_path / "idp")


@pytest.fixture
def other_issuer(tmp_path: Path) -> DevIssuer:
    return DevIssuer(tmp_path / "other-idp")


def app_for(verifier: TokenVerifier) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    current_actor = actor_dependency(verifier)

    @app.get("/me")
    async def me(actor: Annotated[Actor, Depends(current_actor)]) -> dict[str, str | None]:
        return actor.as_envelope()

    return app


@pytest.fixture
def app(issuer: DevIssuer) -> FastAPI:
    return app_for(TokenVerifier(issuer.auth_settings()))


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid claims for the dev issuer; an override of None removes the claim."""
    base = {
        "iss": "crm-dev",
        "aud": "crm",
        "sub": "user-1",
        "role": "sales",
        "iat": int(_now().timestamp()),
        "nbf": int(_now().timestamp()),
        "exp": int((_now() + timedelta(hours=1)).timestamp()),
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def sign(issuer: DevIssuer, payload: dict[str, Any], *, kid: str | None = "issuer's") -> str:
    key = serialization.load_pem_private_key(issuer.private_key_path.read_bytes(), password=None)
    headers = {} if kid is None else {"kid": issuer.kid if kid == "issuer's" else kid}
    return jwt.encode(payload, key, algorithm=issuer.algorithm, headers=headers)  # type: ignore[arg-type]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def get_me(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get("/me", headers={"Authorization": f"Bearer {token}"})


async def assert_refused(client: httpx.AsyncClient, token: str, detail: str) -> None:
    response = await get_me(client, token)
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert response.headers["www-authenticate"].startswith('Bearer realm="crm", error="invalid_token"')
    assert response.json()["detail"] == detail


@pytest.mark.parametrize("algorithm", ["ES256", "RS256"])
async def test_valid_token_maps_its_claims_to_the_actor(
    tmp_path: Path, client_for: ClientFor, algorithm: Algorithm
) -> None:
    issuer = DevIssuer(tmp_path / algorithm, algorithm=algorithm)
    token = issuer.issue("user-7", "support_agent", team="tier-2", department="support")

    async with client_for(app_for(TokenVerifier(issuer.auth_settings()))) as client:
        response = await get_me(client, token)

    assert response.status_code == 200
    assert response.json() == {
        "subject": "user-7",
        "role": "support_agent",
        "team": "tier-2",
        "department": "support",
    }


async def test_team_and_department_are_optional(issuer: DevIssuer) -> None:
    actor = await TokenVerifier(issuer.auth_settings()).verify(issuer.issue("user-1", "admin"))

    assert actor == Actor(subject="user-1", role="admin")


async def test_request_without_a_token_is_challenged(app: FastAPI, client_for: ClientFor) -> None:
    async with client_for(app) as client:
        response = await client.get("/me")

    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert response.headers["www-authenticate"] == 'Bearer realm="crm"'


async def test_request_with_another_auth_scheme_is_challenged(app: FastAPI, client_for: ClientFor) -> None:
    async with client_for(app) as client:
        response = await client.get("/me", headers={"Authorization": "Basic dXNlcjpwYXNz"})

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="crm"'


async def test_unsigned_alg_none_token_is_refused(app: FastAPI, client_for: ClientFor, issuer: DevIssuer) -> None:
    header = b64(json.dumps({"alg": "none", "kid": issuer.kid, "typ": "JWT"}).encode())
    token = f"{header}.{b64(json.dumps(claims()).encode())}."

    async with client_for(app) as client:
        await assert_refused(client, token, "The token's signing algorithm is not accepted.")


async def test_hs256_token_keyed_with_the_public_key_is_refused(
    app: FastAPI, client_for: ClientFor, issuer: DevIssuer
) -> None:
    private_key = serialization.load_pem_private_key(issuer.private_key_path.read_bytes(), password=None)
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64(json.dumps({"alg": "HS256", "kid": issuer.kid}).encode())
    signing_input = f"{header}.{b64(json.dumps(claims()).encode())}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()

    async with client_for(app) as client:
        await assert_refused(client, f"{signing_input}.{b64(mac)}", "The token's signing algorithm is not accepted.")


async def test_token_with_an_unknown_kid_is_refused(
    app: FastAPI, client_for: ClientFor, other_issuer: DevIssuer
) -> None:
    async with client_for(app) as client:
        await assert_refused(client, other_issuer.issue("user-1", "admin"), "The token is signed by an unknown key.")


async def test_token_without_a_kid_is_refused(app: FastAPI, client_for: ClientFor, issuer: DevIssuer) -> None:
    async with client_for(app) as client:
        await assert_refused(client, sign(issuer, claims(), kid=None), "The token names no signing key.")


async def test_token_naming_a_key_of_another_algorithm_is_refused(
    tmp_path: Path, client_for: ClientFor, issuer: DevIssuer
) -> None:
    rsa_issuer = DevIssuer(tmp_path / "rsa", algorithm="RS256")
    both = {
        "keys": [
            *json.loads(issuer.jwks_path.read_text())["keys"],
            *json.loads(rsa_issuer.jwks_path.read_text())["keys"],
        ]
    }
    jwks_file = tmp_path / "both.json"
    jwks_file.write_text(json.dumps(both))
    verifier = TokenVerifier(AuthSettings(issuer="crm-dev", jwks_file=jwks_file))

    async with client_for(app_for(verifier)) as client:
        await assert_refused(
            client, sign(issuer, claims(), kid=rsa_issuer.kid), "The token is signed by an unknown key."
        )


async def test_token_from_another_issuer_is_refused(app: FastAPI, client_for: ClientFor, issuer: DevIssuer) -> None:
    async with client_for(app) as client:
        await assert_refused(
            client, sign(issuer, claims(iss="https://evil.example")), "The token's issuer is not trusted."
        )


async def test_token_for_another_audience_is_refused(app: FastAPI, client_for: ClientFor, issuer: DevIssuer) -> None:
    async with client_for(app) as client:
        await assert_refused(client, sign(issuer, claims(aud="billing")), "The token is not meant for this audience.")


async def test_token_without_an_audience_is_refused(app: FastAPI, client_for: ClientFor, issuer: DevIssuer) -> None:
    async with client_for(app) as client:
        await assert_refused(client, sign(issuer, claims(aud=None)), "The token lacks the 'aud' claim.")


async def test_expired_token_is_refused(app: FastAPI, client_for: ClientFor, issuer: DevIssuer) -> None:
    token = issuer.issue("user-1", "sales", ttl=timedelta(hours=1), now=_now() - timedelta(hours=2))

    async with client_for(app) as client:
        await assert_refused(client, token, "The token has expired.")


async def test_token_expired_within_the_leeway_is_accepted(
    app: FastAPI, client_for: ClientFor, issuer: DevIssuer
) -> None:
    token = issuer.issue("user-1", "sales", ttl=timedelta(hours=1), now=_now() - timedelta(hours=1, seconds=10))

    async with client_for(app) as client:
        response = await get_me(client, token)

    assert response.status_code == 200


async def test_token_without_an_expiry_is_refused(app: FastAPI, client_for: ClientFor, issuer: DevIssuer) -> None:
    async with client_for(app) as client:
        await assert_refused(client, sign(issuer, claims(exp=None)), "The token lacks the 'exp' claim.")


async def test_token_not_valid_yet_is_refused(app: FastAPI, client_for: ClientFor, issuer: DevIssuer) -> None:
    token = issuer.issue("user-1", "sales", now=_now() + timedelta(minutes=10))

    async with client_for(app) as client:
        await assert_refused(client, token, "The token is not valid yet.")


async def test_token_with_a_tampered_payload_is_refused(app: FastAPI, client_for: ClientFor, issuer: DevIssuer) -> None:
    header, _, signature = issuer.issue("user-1", "sales").split(".")
    forged = f"{header}.{b64(json.dumps(claims(role='admin')).encode())}.{signature}"

    async with client_for(app) as client:
        await assert_refused(client, forged, "The token's signature is invalid.")


async def test_token_with_a_tampered_signature_is_refused(
    app: FastAPI, client_for: ClientFor, issuer: DevIssuer
) -> None:
    header, payload, signature = issuer.issue("user-1", "sales").split(".")
    flipped = signature[:20] + ("A" if signature[20] != "A" else "B") + signature[21:]

    async with client_for(app) as client:
        await assert_refused(client, f"{header}.{payload}.{flipped}", "The token's signature is invalid.")


async def test_truncated_token_is_refused(app: FastAPI, client_for: ClientFor, issuer: DevIssuer) -> None:
    truncated = issuer.issue("user-1", "sales").rsplit(".", 1)[0]

    async with client_for(app) as client:
        await assert_refused(client, truncated, "The token is malformed.")


async def test_garbage_token_is_refused(app: FastAPI, client_for: ClientFor) -> None:
    async with client_for(app) as client:
        await assert_refused(client, "not-a-jwt", "The token is malformed.")


async def test_oversized_token_is_refused(app: FastAPI, client_for: ClientFor, issuer: DevIssuer) -> None:
    token = sign(issuer, claims(padding="x" * 10_000))

    async with client_for(app) as client:
        await assert_refused(client, token, "The token is too long.")


async def test_token_without_a_subject_is_refused(app: FastAPI, client_for: ClientFor, issuer: DevIssuer) -> None:
    async with client_for(app) as client:
        await assert_refused(client, sign(issuer, claims(sub=None)), "The token lacks the 'sub' claim.")


async def test_token_without_a_role_is_refused(app: FastAPI, client_for: ClientFor, issuer: DevIssuer) -> None:
    async with client_for(app) as client:
        await assert_refused(client, sign(issuer, claims(role=None)), "The token lacks the 'role' claim.")


async def test_token_with_a_non_string_team_is_refused(app: FastAPI, client_for: ClientFor, issuer: DevIssuer) -> None:
    async with client_for(app) as client:
        await assert_refused(
            client,
            sign(issuer, claims(team=["a", "b"])),
            "The token's 'team' or 'department' claim is not a string.",
        )


class JwksEndpoint:
    """A stand-in identity provider serving a JWKS document and counting fetches."""

    def __init__(self, *issuers: DevIssuer) -> None:
        self.serve(*issuers)
        self.fetches = 0
        self.failing = False

    def serve(self, *issuers: DevIssuer) -> None:
        self.document = {"keys": [key for i in issuers for key in json.loads(i.jwks_path.read_text())["keys"]]}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        assert scope["path"] == "/jwks"
        self.fetches += 1
        status, body = (500, b"down") if self.failing else (200, json.dumps(self.document).encode())
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def url_verifier(endpoint: JwksEndpoint, clock: Callable[[], float], **settings: Any) -> TokenVerifier:
    return TokenVerifier(
        AuthSettings(issuer="crm-dev", jwks_url="http://idp.test/jwks", **settings),
        transport=httpx.ASGITransport(app=endpoint),
        clock=clock,
    )


async def test_unknown_kid_refetches_the_jwks_and_accepts_a_rotated_key(
    issuer: DevIssuer, other_issuer: DevIssuer
) -> None:
    endpoint, clock = JwksEndpoint(issuer), FakeClock()
    verifier = url_verifier(endpoint, clock)
    await verifier.verify(issuer.issue("user-1", "sales"))

    endpoint.serve(issuer, other_issuer)
    clock.now += 31
    actor = await verifier.verify(other_issuer.issue("user-2", "sales"))

    assert actor.subject == "user-2"
    assert endpoint.fetches == 2


async def test_unknown_kid_refetches_only_once_per_token(issuer: DevIssuer) -> None:
    endpoint = JwksEndpoint(issuer)
    verifier = url_verifier(endpoint, FakeClock(), jwks_min_refetch_seconds=0)
    await verifier.verify(issuer.issue("user-1", "sales"))

    with pytest.raises(InvalidTokenError, match="unknown key"):
        await verifier.verify(sign(issuer, claims(), kid="made-up"))

    assert endpoint.fetches == 2


async def test_unknown_kid_refetch_is_rate_limited(issuer: DevIssuer, other_issuer: DevIssuer) -> None:
    endpoint, clock = JwksEndpoint(issuer), FakeClock()
    verifier = url_verifier(endpoint, clock, jwks_min_refetch_seconds=30)
    await verifier.verify(issuer.issue("user-1", "sales"))
    endpoint.serve(issuer, other_issuer)
    rotated = other_issuer.issue("user-2", "sales")

    for _ in range(5):
        clock.now += 5
        with pytest.raises(InvalidTokenError, match="unknown key"):
            await verifier.verify(rotated)
    assert endpoint.fetches == 1

    clock.now += 6
    assert (await verifier.verify(rotated)).subject == "user-2"
    assert endpoint.fetches == 2


async def test_jwks_is_refetched_once_it_is_older_than_its_max_age(issuer: DevIssuer) -> None:
    endpoint, clock = JwksEndpoint(issuer), FakeClock()
    verifier = url_verifier(endpoint, clock, jwks_max_age_seconds=300)
    token = issuer.issue("user-1", "sales")
    await verifier.verify(token)
    clock.now += 299
    await verifier.verify(token)
    assert endpoint.fetches == 1

    clock.now += 2
    await verifier.verify(token)
    assert endpoint.fetches == 2


async def test_known_keys_are_kept_when_a_refresh_fails(issuer: DevIssuer) -> None:
    endpoint, clock = JwksEndpoint(issuer), FakeClock()
    verifier = url_verifier(endpoint, clock, jwks_max_age_seconds=60)
    token = issuer.issue("user-1", "sales")
    await verifier.verify(token)

    endpoint.failing = True
    clock.now += 61

    assert (await verifier.verify(token)).subject == "user-1"
    assert endpoint.fetches == 2


async def test_unreachable_jwks_answers_503_rather_than_401(issuer: DevIssuer, client_for: ClientFor) -> None:
    endpoint = JwksEndpoint(issuer)
    endpoint.failing = True

    async with client_for(app_for(url_verifier(endpoint, FakeClock()))) as client:
        response = await get_me(client, issuer.issue("user-1", "sales"))

    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE


async def test_unreachable_jwks_is_not_fetched_again_within_the_interval(issuer: DevIssuer) -> None:
    endpoint = JwksEndpoint(issuer)
    endpoint.failing = True
    verifier = url_verifier(endpoint, FakeClock())
    token = issuer.issue("user-1", "sales")

    for _ in range(3):
        with pytest.raises(KeysUnavailableError):
            await verifier.verify(token)

    assert endpoint.fetches == 1


async def test_jwks_file_is_reread_when_an_unknown_kid_arrives(
    tmp_path: Path, issuer: DevIssuer, other_issuer: DevIssuer
) -> None:
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(issuer.jwks_path.read_text())
    verifier = TokenVerifier(AuthSettings(issuer="crm-dev", jwks_file=jwks_file, jwks_min_refetch_seconds=0))
    await verifier.verify(issuer.issue("user-1", "sales"))

    jwks_file.write_text(other_issuer.jwks_path.read_text())

    assert (await verifier.verify(other_issuer.issue("user-2", "sales"))).subject == "user-2"


async def test_private_and_encryption_keys_in_a_jwks_are_ignored(tmp_path: Path, issuer: DevIssuer) -> None:
    key = serialization.load_pem_private_key(issuer.private_key_path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    private_jwk = {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key)), "kid": issuer.kid}
    public_for_encryption = {**json.loads(issuer.jwks_path.read_text())["keys"][0], "use": "enc"}
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [private_jwk, public_for_encryption]}))
    verifier = TokenVerifier(AuthSettings(issuer="crm-dev", jwks_file=jwks_file))

    with pytest.raises(KeysUnavailableError):
        await verifier.verify(issuer.issue("user-1", "sales"))


def test_dev_issuer_keeps_its_private_key_private_and_publishes_only_the_public_key(
    issuer: DevIssuer,
) -> None:
    assert stat.S_IMODE(issuer.private_key_path.stat().st_mode) == 0o600
    (jwk,) = json.loads(issuer.jwks_path.read_text())["keys"]
    assert jwk["kid"] == issuer.kid
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == ("EC", "P-256", "ES256", "sig")
    assert "d" not in jwk


async def test_dev_issuer_reuses_its_key_across_restarts(tmp_path: Path) -> None:
    first = DevIssuer(tmp_path / "idp")
    token = first.issue("user-1", "sales")

    second = DevIssuer(tmp_path / "idp")

    assert second.kid == first.kid
    assert (await TokenVerifier(second.auth_settings()).verify(token)).subject == "user-1"


def test_dev_issuer_refuses_a_key_of_another_algorithm(tmp_path: Path) -> None:
    DevIssuer(tmp_path / "idp", algorithm="ES256")

    with pytest.raises(ValueError, match="cannot sign RS256"):
        DevIssuer(tmp_path / "idp", algorithm="RS256")


def test_settings_need_exactly_one_key_source(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        AuthSettings(issuer="crm-dev")
    with pytest.raises(ValidationError, match="exactly one"):
        AuthSettings(issuer="crm-dev", jwks_url="https://idp.example/jwks", jwks_file=tmp_path / "jwks.json")


def test_settings_accept_no_symmetric_algorithm(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        AuthSettings(issuer="crm-dev", jwks_file=tmp_path / "jwks.json", algorithms=frozenset({"HS256"}))


def test_actor_fills_the_event_envelope_actor() -> None:
    actor = Actor(subject="user-7", role="support_agent", team="tier-2")

    assert actor.as_envelope() == {
        "subject": "user-7",
        "role": "support_agent",
        "team": "tier-2",
        "department": None,
    }
