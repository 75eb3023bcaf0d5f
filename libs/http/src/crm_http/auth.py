"""Bearer-token authentication: RS256/ES256 JWTs verified against a JWKS, mapped to an Actor."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from pydantic import BaseModel, Field, model_validator

from crm_http.problems import Problem

logger = logging.getLogger(__name__)

Algorithm = Literal["RS256", "ES256"]

DEFAULT_TOKEN_TTL = timedelta(hours=12)

_REQUIRED_CLAIMS = ["exp", "iss", "aud", "sub"]
# Far above any token our identity provider issues; refusing early bounds the parsing work
# an anonymous caller can make us do.
_MAX_TOKEN_LENGTH = 8192
_MAX_JWKS_BYTES = 512 * 1024
_REALM = "crm"


class Actor(BaseModel, frozen=True):
    """The authenticated caller: token subject, role, and optional team and department."""

    subject: str
    role: str
    team: str | None = None
    department: str | None = None

    def as_envelope(self) -> dict[str, str | None]:
        """The ``actor`` member of an event envelope."""
        return {
            "subject": self.subject,
            "role": self.role,
            "team": self.team,
            "department": self.department,
        }


class AuthSettings(BaseModel, frozen=True):
    """Which issuer and audience to trust, and where its public signing keys (JWKS) live."""

    issuer: str
    audience: str = "crm"
    jwks_url: str | None = Field(default=None, pattern=r"^https?://")
    jwks_file: Path | None = None
    leeway_seconds: float = Field(default=30, ge=0, le=300)
    algorithms: frozenset[Algorithm] = frozenset({"RS256", "ES256"})
    jwks_max_age_seconds: float = Field(default=300, gt=0)
    jwks_min_refetch_seconds: float = Field(default=30, ge=0)
    jwks_fetch_timeout_seconds: float = Field(default=5, gt=0)

    @model_validator(mode="after")
    def _exactly_one_key_source(self) -> Self:
        if (self.jwks_url is None) == (self.jwks_file is None):
            raise ValueError("set exactly one of jwks_url and jwks_file")
        if not self.algorithms:
            raise ValueError("allow at least one signing algorithm")
        return self


class InvalidTokenError(Exception):
    """A bearer token was refused; the message is safe to show to the caller."""


class KeysUnavailableError(Exception):
    """No signing keys could be loaded, so no token can be verified."""


class TokenVerifier:
    """Verifies bearer JWTs (signature, issuer, audience, lifetime, claims) and names the Actor."""

    def __init__(
        self,
        settings: AuthSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._transport = transport
        self._keys = _KeyCache(
            self._load_jwks,
            algorithms=settings.algorithms,
            max_age=settings.jwks_max_age_seconds,
            min_refetch=settings.jwks_min_refetch_seconds,
            clock=clock,
        )

    async def verify(self, token: str) -> Actor:
        """The Actor a valid token speaks for; raises InvalidTokenError or KeysUnavailableError."""
        if len(token) > _MAX_TOKEN_LENGTH:
            raise InvalidTokenError("The token is too long.")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise InvalidTokenError("The token is malformed.") from error
        # The algorithm is pinned by our settings and by the key, never by the token: this is
        # what stops "alg: none" and HS256-signed-with-the-public-key confusion attacks.
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._settings.algorithms:
            raise InvalidTokenError("The token's signing algorithm is not accepted.")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidTokenError("The token names no signing key.")
        key = await self._keys.get(kid)
        if key is None or key.algorithm_name != alg:
            raise InvalidTokenError("The token is signed by an unknown key.")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=self._settings.audience,
                issuer=self._settings.issuer,
                leeway=self._settings.leeway_seconds,
                options={"require": _REQUIRED_CLAIMS},
            )
        except jwt.PyJWTError as error:
            raise InvalidTokenError(_refusal(error)) from error
        return _actor_from(claims)

    async def _load_jwks(self) -> bytes:
        if self._settings.jwks_file is not None:
            return await asyncio.to_thread(self._settings.jwks_file.read_bytes)
        assert self._settings.jwks_url is not None
        async with httpx.AsyncClient(
            transport=self._transport,
            timeout=self._settings.jwks_fetch_timeout_seconds,
            follow_redirects=False,
        ) as client:
            response = await client.get(self._settings.jwks_url, headers={"Accept": "application/json"})
            response.raise_for_status()
            return response.content


class _KeyCache:
    def __init__(
        self,
        load: Callable[[], Awaitable[bytes]],
        *,
        algorithms: frozenset[str],
        max_age: float,
        min_refetch: float,
        clock: Callable[[], float],
    ) -> None:
        self._load = load
        self._algorithms = algorithms
        self._max_age = max_age
        self._min_refetch = min_refetch
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._loaded_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()

    async def get(self, kid: str) -> jwt.PyJWK | None:
        if not self._fresh():
            await self._refresh(unknown_kid=None)
        key = self._keys.get(kid)
        if key is None:
            await self._refresh(unknown_kid=kid)
            key = self._keys.get(kid)
        return key

    def _fresh(self) -> bool:
        return self._loaded_at is not None and self._clock() - self._loaded_at < self._max_age

    async def _refresh(self, *, unknown_kid: str | None) -> None:
        async with self._lock:
            if unknown_kid is None and self._fresh():
                return
            if unknown_kid is not None and unknown_kid in self._keys:
                return
            now = self._clock()
            # One fetch per interval at most, whatever triggered it: a stream of tokens with
            # made-up key ids, or a JWKS endpoint that is down, must not become a request storm.
            if self._attempted_at is not None and now - self._attempted_at < self._min_refetch:
                if not self._keys:
                    raise KeysUnavailableError("signing keys could not be loaded")
                return
            self._attempted_at = now
            try:
                self._keys = _usable_keys(await self._load(), self._algorithms)
            except (httpx.HTTPError, OSError, ValueError) as error:
                if not self._keys:
                    raise KeysUnavailableError("signing keys could not be loaded") from error
                logger.warning("JWKS refresh failed; keeping the keys loaded before: %s", error)
                return
            self._loaded_at = now


def _usable_keys(document: bytes, algorithms: frozenset[str]) -> dict[str, jwt.PyJWK]:
    if len(document) > _MAX_JWKS_BYTES:
        raise ValueError("JWKS document is too large")
    parsed = json.loads(document)
    members = parsed.get("keys") if isinstance(parsed, dict) else None
    if not isinstance(members, list):
        raise ValueError("JWKS document has no 'keys' list")
    keys: dict[str, jwt.PyJWK] = {}
    for member in members:
        if not isinstance(member, dict) or member.get("use", "sig") != "sig" or "d" in member:
            continue
        kid = member.get("kid")
        if not isinstance(kid, str) or not kid or kid in keys:
            continue
        try:
            key = jwt.PyJWK(member)
        except (jwt.PyJWTError, KeyError, TypeError, ValueError):
            continue
        if key.algorithm_name in algorithms:
            keys[kid] = key
    if not keys:
        raise ValueError("JWKS document has no usable signing keys")
    return keys


def _refusal(error: jwt.PyJWTError) -> str:
    match error:
        case jwt.ExpiredSignatureError():
            return "The token has expired."
        case jwt.ImmatureSignatureError():
            return "The token is not valid yet."
        case jwt.InvalidIssuerError():
            return "The token's issuer is not trusted."
        case jwt.InvalidAudienceError():
            return "The token is not meant for this audience."
        case jwt.MissingRequiredClaimError(claim=claim):
            return f"The token lacks the '{claim}' claim."
        case jwt.InvalidSignatureError():
            return "The token's signature is invalid."
        case _:
            return "The token is invalid."


def _actor_from(claims: Mapping[str, Any]) -> Actor:
    subject, role = claims.get("sub"), claims.get("role")
    if not isinstance(subject, str) or not subject:
        raise InvalidTokenError("The token lacks the 'sub' claim.")
    if not isinstance(role, str) or not role:
        raise InvalidTokenError("The token lacks the 'role' claim.")
    team, department = claims.get("team"), claims.get("department")
    if not isinstance(team, str | None) or not isinstance(department, str | None):
        raise InvalidTokenError("The token's 'team' or 'department' claim is not a string.")
    return Actor(subject=subject, role=role, team=team, department=department)


_bearer = HTTPBearer(auto_error=False, description="JWT issued by the CRM identity provider")


def actor_dependency(
    verifier: TokenVerifier,
) -> Callable[[HTTPAuthorizationCredentials | None], Awaitable[Actor]]:
    """FastAPI dependency yielding the caller's Actor, or answering 401 problem+json."""

    async def current_actor(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Actor:
        if credentials is None:
            raise Problem(
                401,
                "Unauthorized",
                "A bearer token is required.",
                headers={"WWW-Authenticate": f'Bearer realm="{_REALM}"'},
            )
        try:
            return await verifier.verify(credentials.credentials)
        except InvalidTokenError as error:
            logger.info("bearer token refused: %s", error)
            challenge = f'Bearer realm="{_REALM}", error="invalid_token", error_description="{error}"'
            raise Problem(401, "Unauthorized", str(error), headers={"WWW-Authenticate": challenge}) from None
        except KeysUnavailableError:
            logger.exception("cannot verify bearer tokens: no signing keys")
            raise Problem(
                503,
                "Service Unavailable",
                "Token signing keys are unavailable; try again shortly.",
                headers={"Retry-After": "30"},
            ) from None

    return current_actor


class DevIssuer:
    """Development identity provider: a real key pair on disk that signs CRM tokens."""

    PRIVATE_KEY_FILE = "private_key.pem"
    JWKS_FILE = "jwks.json"

    def __init__(
        self,
        directory: Path,
        *,
        algorithm: Algorithm = "ES256",
        issuer: str = "crm-dev",
        audience: str = "crm",
    ) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.algorithm: Algorithm = algorithm
        self.issuer = issuer
        self.audience = audience
        self.private_key_path = directory / self.PRIVATE_KEY_FILE
        self.jwks_path = directory / self.JWKS_FILE
        self._private_key = _load_or_create_private_key(self.private_key_path, algorithm)
        public_jwk = _public_jwk(self._private_key)
        self.kid = _jwk_thumbprint(public_jwk)
        _write_atomically(
            self.jwks_path,
            json.dumps({"keys": [{**public_jwk, "kid": self.kid, "alg": algorithm, "use": "sig"}]}, indent=2),
        )

    def auth_settings(self) -> AuthSettings:
        """Settings under which a TokenVerifier accepts this issuer's tokens."""
        return AuthSettings(issuer=self.issuer, audience=self.audience, jwks_file=self.jwks_path)

    def issue(
        self,
        subject: str,
        role: str,
        team: str | None = None,
        department: str | None = None,
        ttl: timedelta = DEFAULT_TOKEN_TTL,
        *,
        now: datetime | None = None,
    ) -> str:
        """A signed token for ``subject`` acting in ``role``, valid from ``now`` for ``ttl``."""
        issued_at = now if now is not None else datetime.now(UTC)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "role": role,
            "iat": issued_at,
            "nbf": issued_at,
            "exp": issued_at + ttl,
            "jti": str(uuid.uuid4()),
        }
        if team is not None:
            claims["team"] = team
        if department is not None:
            claims["department"] = department
        return jwt.encode(claims, self._private_key, algorithm=self.algorithm, headers={"kid": self.kid, "typ": "JWT"})


_PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _load_or_create_private_key(path: Path, algorithm: Algorithm) -> _PrivateKey:
    if path.exists():
        return _load_private_key(path, algorithm)
    key: _PrivateKey = (
        ec.generate_private_key(ec.SECP256R1())
        if algorithm == "ES256"
        else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    try:
        # O_EXCL with mode 0600: the key is never readable by others, not even for an instant,
        # and of two processes starting together the second loads the first one's key.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _load_private_key(path, algorithm)
    with os.fdopen(descriptor, "wb") as file:
        file.write(pem)
    return key


def _load_private_key(path: Path, algorithm: Algorithm) -> _PrivateKey:
    if path.stat().st_mode & 0o077:
        logger.warning("%s is readable by other users; it should be mode 0600", path)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if algorithm == "ES256" and isinstance(key, ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError(f"{path} holds an EC key on {key.curve.name}; ES256 needs P-256")
        return key
    if algorithm == "RS256" and isinstance(key, rsa.RSAPrivateKey):
        return key
    raise ValueError(f"{path} holds a {type(key).__name__}, which cannot sign {algorithm}")


def _public_jwk(key: _PrivateKey) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        return RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return ECAlgorithm.to_jwk(key.public_key(), as_dict=True)


def _jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    required = ("e", "kty", "n") if jwk["kty"] == "RSA" else ("crv", "kty", "x", "y")
    canonical = json.dumps({name: jwk[name] for name in required}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    temporary.replace(path)
