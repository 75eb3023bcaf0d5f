"""Time-ordered identifiers (UUIDv7) for events and new aggregates."""

from __future__ import annotations

import uuid

import uuid6


def new_id() -> uuid.UUID:
    """A fresh UUIDv7 as a standard-library UUID."""
    return uuid.UUID(bytes=uuid6.uuid7().bytes)
