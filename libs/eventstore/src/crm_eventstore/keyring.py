"""Per-customer data keys for personal fields, wrapped by a master key, kept in their own database."""

from __future__ import annotations

import base64
import json
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from uuid import UUID

import asyncpg
from crm_schemas.personal import CIPHERTEXT_PREFIX, is_ciphertext
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crm_eventstore.errors import KeyDestroyed

KEYRING_SCHEMA = """
CREATE TABLE IF NOT EXISTS customer_keys (
    customer_id  uuid PRIMARY KEY,
    wrapped_key  bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    destroyed_at timestamptz,
    CHECK ((wrapped_key IS NULL) = (destroyed_at IS NOT NULL))
);
-- Recently destroyed keys, which every process evicts from its cache (Keyring._evict_destroyed).
CREATE INDEX IF NOT EXISTS customer_keys_destroyed ON customer_keys (destroyed_at) WHERE destroyed_at IS NOT NULL;
"""

_NONCE = 12


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parse_master_key(text: str) -> bytes:
    """Decode a base64 master key and check it is 256 bits."""
    key = _unb64(text.strip())
    if len(key) != 32:
        raise ValueError("the keyring master key must be 32 bytes, base64-encoded")
    return key


def new_master_key() -> str:
    """A fresh random master key, base64-encoded."""
    return _b64(os.urandom(32))


class Keyring:
    """Encrypts and decrypts personal fields with AES-256-GCM under each customer's data key."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        master_key: bytes,
        cache_size: int = 10_000,
        cache_ttl: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        recheck_interval: float = 1.0,
    ) -> None:
        self._pool = pool
        self._master = AESGCM(master_key)
        # Unwrapped keys are cached for at most cache_ttl seconds, so a key destroyed by another
        # process (crypto-shredding) stops decrypting everywhere within that bound.
        self._cache: OrderedDict[UUID, tuple[AESGCM, float]] = OrderedDict()
        self._cache_size = cache_size
        self._cache_ttl = cache_ttl
        self._clock = clock
        # Another process's destroy() (an erasure) evicts the key here within recheck_interval, not
        # only when the cache entry expires: cached keys are checked against recent destructions.
        self._recheck_interval = recheck_interval
        self._checked_at = clock()

    def _unwrap(self, customer_id: UUID, wrapped: bytes) -> AESGCM:
        key = self._master.decrypt(wrapped[:_NONCE], wrapped[_NONCE:], b"crm-key:" + customer_id.bytes)
        return AESGCM(key)

    def _remember(self, customer_id: UUID, aead: AESGCM) -> AESGCM:
        self._cache[customer_id] = (aead, self._clock())
        self._cache.move_to_end(customer_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return aead

    async def _evict_destroyed(self) -> None:
        now = self._clock()
        if now - self._checked_at < self._recheck_interval:
            return
        self._checked_at = now
        # destroyed_at is the destroying transaction's start: the margin covers one that commits late.
        rows = await self._pool.fetch(
            "SELECT customer_id FROM customer_keys"
            " WHERE destroyed_at >= now() - make_interval(secs => $1::double precision)",
            self._cache_ttl + self._recheck_interval + 30.0,
        )
        for row in rows:
            self._cache.pop(row["customer_id"], None)

    async def _key(self, customer_id: UUID, create: bool) -> AESGCM:
        if customer_id in self._cache:
            await self._evict_destroyed()
        cached = self._cache.get(customer_id)
        if cached is not None:
            aead, loaded_at = cached
            if self._clock() - loaded_at < self._cache_ttl:
                return aead
            del self._cache[customer_id]
        row = await self._pool.fetchrow(
            "SELECT wrapped_key, destroyed_at FROM customer_keys WHERE customer_id = $1", customer_id
        )
        if row is None and create:
            key = AESGCM.generate_key(bit_length=256)
            nonce = os.urandom(_NONCE)
            wrapped = nonce + self._master.encrypt(nonce, key, b"crm-key:" + customer_id.bytes)
            # Two writers may race to create the key: the first insert wins, everyone reads it back.
            await self._pool.execute(
                "INSERT INTO customer_keys (customer_id, wrapped_key) VALUES ($1, $2)"
                " ON CONFLICT (customer_id) DO NOTHING",
                customer_id,
                wrapped,
            )
            row = await self._pool.fetchrow(
                "SELECT wrapped_key, destroyed_at FROM customer_keys WHERE customer_id = $1", customer_id
            )
        if row is None or row["wrapped_key"] is None:
            raise KeyDestroyed(f"no data key for customer {customer_id}")
        return self._remember(customer_id, self._unwrap(customer_id, bytes(row["wrapped_key"])))

    async def create_keys(self, customer_ids: Iterable[UUID]) -> None:
        """Make sure customers have data keys: the missing ones are created in one statement, all are cached."""
        wanted = [c for c in dict.fromkeys(customer_ids) if c not in self._cache]
        if not wanted:
            return
        wrapped: list[bytes] = []
        for customer_id in wanted:
            nonce = os.urandom(_NONCE)
            key = AESGCM.generate_key(bit_length=256)
            wrapped.append(nonce + self._master.encrypt(nonce, key, b"crm-key:" + customer_id.bytes))
        # As in _key(): concurrent creators race, the first insert wins and everyone reads the winner back.
        await self._pool.execute(
            "INSERT INTO customer_keys (customer_id, wrapped_key)"
            " SELECT * FROM unnest($1::uuid[], $2::bytea[]) ON CONFLICT (customer_id) DO NOTHING",
            wanted,
            wrapped,
        )
        rows = await self._pool.fetch(
            "SELECT customer_id, wrapped_key FROM customer_keys WHERE customer_id = ANY($1::uuid[])", wanted
        )
        for row in rows:
            if row["wrapped_key"] is not None:
                self._remember(row["customer_id"], self._unwrap(row["customer_id"], bytes(row["wrapped_key"])))

    async def encrypt_fields(
        self, customer_id: UUID, event_id: UUID, payload: Mapping[str, Any], fields: frozenset[str]
    ) -> dict[str, Any]:
        """Payload with each present personal field replaced by enc:v1: ciphertext."""
        out = dict(payload)
        present = [f for f in fields if out.get(f) is not None]
        if not present:
            return out
        aead = await self._key(customer_id, create=True)
        for name in present:
            nonce = os.urandom(_NONCE)
            plaintext = json.dumps(out[name], ensure_ascii=False, separators=(",", ":")).encode()
            sealed = aead.encrypt(nonce, plaintext, f"{event_id}:{name}".encode())
            out[name] = CIPHERTEXT_PREFIX + _b64(nonce + sealed)
        return out

    async def decrypt_fields(self, customer_id: UUID, event_id: UUID, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Payload with every ciphertext field decrypted; raises KeyDestroyed after shredding."""
        out = dict(payload)
        sealed_fields = [name for name, value in out.items() if is_ciphertext(value)]
        if not sealed_fields:
            return out
        aead = await self._key(customer_id, create=False)
        for name in sealed_fields:
            raw = _unb64(str(out[name])[len(CIPHERTEXT_PREFIX) :])
            plaintext = aead.decrypt(raw[:_NONCE], raw[_NONCE:], f"{event_id}:{name}".encode())
            out[name] = json.loads(plaintext)
        return out

    async def destroy(self, customer_id: UUID) -> bool:
        """Crypto-shred a customer's data key; their personal fields become unreadable everywhere."""
        self._cache.pop(customer_id, None)
        result = await self._pool.execute(
            "UPDATE customer_keys SET wrapped_key = NULL, destroyed_at = now()"
            " WHERE customer_id = $1 AND destroyed_at IS NULL",
            customer_id,
        )
        return bool(result.endswith(" 1"))
