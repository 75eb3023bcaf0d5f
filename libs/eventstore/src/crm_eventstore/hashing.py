"""The per-stream hash chain: a canonical encoding of each envelope, hashed with SHA-256."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

HASHED_MEMBERS = (
    "event_id",
    "type",
    "schema_version",
    "service",
    "stream_id",
    "version",
    "customer_id",
    "occurred_at",
    "recorded_at",
    "actor",
    "correlation_id",
    "causation_id",
    "traceparent",
    "payload",
    "prev_hash",
)


def canonical_time(value: datetime) -> str:
    """UTC ISO-8601 with microseconds: the one spelling of an instant in the chain."""
    if value.tzinfo is None:
        raise ValueError("naive datetime in an event envelope")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_PLAIN = (str, int, bool, type(None))


def _normalise(value: Any) -> Any:
    # Exact-type fast paths first: this runs for every member of every event appended.
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is dict:
        return {str(k): _normalise(v) for k, v in value.items()}
    if kind is list:
        return [_normalise(v) for v in value]
    # Floats are refused: their JSON spelling is not stable across jsonb round trips.
    # Money and other decimals travel as decimal strings.
    if isinstance(value, float):
        raise TypeError("floats are not allowed in events; use decimal strings")
    if isinstance(value, datetime):
        return canonical_time(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(v) for v in value]
    return value


def canonical_bytes(envelope: Mapping[str, Any]) -> bytes:
    """Canonical JSON (sorted keys, no spaces, UTF-8) of the hashed envelope members."""
    body = {name: _normalise(envelope.get(name)) for name in HASHED_MEMBERS}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def event_hash(envelope: Mapping[str, Any]) -> str:
    """SHA-256 hex digest of an envelope's canonical encoding (prev_hash included)."""
    return hashlib.sha256(canonical_bytes(envelope)).hexdigest()
