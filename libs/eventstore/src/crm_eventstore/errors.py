"""Typed failures of the event store."""

from __future__ import annotations


class EventStoreError(Exception):
    """Base of event store failures."""


class WrongExpectedVersion(EventStoreError):
    """An append's expected version is not the stream's current version; nothing was written."""

    def __init__(self, stream_id: str, expected: int, current: int) -> None:
        super().__init__(f"stream {stream_id}: expected version {expected}, current is {current}")
        self.stream_id = stream_id
        self.expected = expected
        self.current = current


class IdempotencyKeyReused(EventStoreError):
    """An Idempotency-Key was used before for a different request."""

    def __init__(self, key: str) -> None:
        super().__init__(f"Idempotency-Key {key!r} was already used for a different request")
        self.key = key


class KeyDestroyed(EventStoreError):
    """The customer's data key was destroyed (crypto-shredded): the data cannot be read."""
