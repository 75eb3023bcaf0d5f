"""The keyring: per-customer keys, wrapped at rest, shredded everywhere within the cache TTL."""

import pytest
from crm_cli.testing import MASTER_KEY
from crm_eventstore.errors import KeyDestroyed
from crm_eventstore.ids import new_id
from crm_eventstore.keyring import Keyring
from crm_schemas.personal import is_ciphertext
from cryptography.exceptions import InvalidTag

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


async def test_a_key_destroyed_by_another_process_stops_working_here_after_the_cache_ttl(keyring: Keyring) -> None:
    now = [1000.0]
    # Without rechecks (recheck_interval=inf) the cache TTL alone bounds how long a destroyed key works.
    reader = Keyring(keyring._pool, MASTER_KEY, cache_ttl=60, clock=lambda: now[0], recheck_interval=float("inf"))
    cid, eid = new_id(), new_id()
    sealed = await keyring.encrypt_fields(cid, eid, {"name": "山田 太郎", "kind": "person"}, frozenset({"name"}))
    assert is_ciphertext(sealed["name"])
    assert (await reader.decrypt_fields(cid, eid, sealed))["name"] == "山田 太郎"
    assert await keyring.destroy(cid)
    now[0] += 59  # still cached in the reading process
    assert (await reader.decrypt_fields(cid, eid, sealed))["name"] == "山田 太郎"
    now[0] += 2
    with pytest.raises(KeyDestroyed):
        await reader.decrypt_fields(cid, eid, sealed)


async def test_wrapped_keys_are_useless_without_the_master_key(keyring: Keyring) -> None:
    cid, eid = new_id(), new_id()
    sealed = await keyring.encrypt_fields(cid, eid, {"email": "a@example.jp"}, frozenset({"email"}))
    stranger = Keyring(keyring._pool, bytes(32))
    with pytest.raises(InvalidTag):
        await stranger.decrypt_fields(cid, eid, sealed)


async def test_destroying_twice_reports_that_nothing_was_left(keyring: Keyring) -> None:
    cid = new_id()
    await keyring.encrypt_fields(cid, new_id(), {"name": "x"}, frozenset({"name"}))
    assert await keyring.destroy(cid)
    assert not await keyring.destroy(cid)
