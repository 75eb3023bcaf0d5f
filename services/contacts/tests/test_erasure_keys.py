"""Where the data keys live: apart from the events, wrapped by a master key that is never stored beside them."""

from __future__ import annotations

import base64

import asyncpg
import pytest
from crm_cli.testing import MASTER_KEY
from crm_contacts.app.customers import CustomerCommands
from crm_contacts.domain.commands import EraseCustomer, RegisterCustomer
from crm_eventstore.errors import KeyDestroyed
from crm_eventstore.ids import new_id
from crm_eventstore.keyring import Keyring
from crm_eventstore.store import CommandContext, PostgresEventStore
from crm_schemas.envelope import ActorRef
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .builders import person_body

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


def ctx() -> CommandContext:
    return CommandContext(actor=ActorRef(subject="dpo", role="admin"))


async def test_the_event_store_role_cannot_see_the_key_table_from_the_event_database(
    event_store: PostgresEventStore,
) -> None:
    with pytest.raises(asyncpg.UndefinedTableError):
        await event_store.pool.fetch("SELECT * FROM customer_keys")


async def test_a_service_role_cannot_delete_or_truncate_keys_only_the_keyring_may_destroy_them(
    event_store: PostgresEventStore,
) -> None:
    keys = event_store.keyring._pool
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await keys.execute("DELETE FROM customer_keys WHERE customer_id = $1", new_id())
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await keys.execute("TRUNCATE customer_keys")


async def test_a_key_read_straight_from_the_key_table_does_not_decrypt_personal_fields(
    event_store: PostgresEventStore,
) -> None:
    customer_id = new_id()
    await CustomerCommands(event_store).handle(customer_id, RegisterCustomer.model_validate(person_body()), ctx())
    [event] = await event_store.read_stream(f"customer-{customer_id}")
    wrapped = await event_store.keyring._pool.fetchval(
        "SELECT wrapped_key FROM customer_keys WHERE customer_id = $1", customer_id
    )
    sealed = base64.urlsafe_b64decode(event.payload["name"].removeprefix("enc:v1:") + "==")
    for candidate in (bytes(wrapped)[:32], bytes(wrapped)[12:44], bytes(wrapped)[-32:]):
        with pytest.raises(InvalidTag):
            AESGCM(candidate).decrypt(sealed[:12], sealed[12:], f"{event.event_id}:name".encode())


async def test_the_master_key_appears_in_no_event_and_no_key_row(event_store: PostgresEventStore) -> None:
    customer_id = new_id()
    commands = CustomerCommands(event_store)
    await commands.handle(customer_id, RegisterCustomer.model_validate(person_body()), ctx())
    await commands.erase(customer_id, EraseCustomer(), ctx())
    forms = [
        base64.b64encode(MASTER_KEY).decode(),
        base64.urlsafe_b64encode(MASTER_KEY).decode().rstrip("="),
        MASTER_KEY.hex(),
    ]
    events = await event_store.pool.fetch("SELECT t::text AS row FROM events AS t")
    keys = await event_store.keyring._pool.fetch("SELECT t::text AS row FROM customer_keys AS t")
    raw_keys = await event_store.keyring._pool.fetch("SELECT wrapped_key FROM customer_keys")
    assert events
    for row in [*events, *keys]:
        assert not any(form in row["row"] for form in forms)
    assert not any(r["wrapped_key"] is not None and MASTER_KEY in bytes(r["wrapped_key"]) for r in raw_keys)


async def test_after_erasure_the_key_row_holds_no_key_only_when_it_was_destroyed(
    event_store: PostgresEventStore,
) -> None:
    customer_id = new_id()
    commands = CustomerCommands(event_store)
    await commands.handle(customer_id, RegisterCustomer.model_validate(person_body()), ctx())
    await commands.erase(customer_id, EraseCustomer(), ctx())
    row = await event_store.keyring._pool.fetchrow(
        "SELECT wrapped_key, destroyed_at FROM customer_keys WHERE customer_id = $1", customer_id
    )
    assert row["wrapped_key"] is None
    assert row["destroyed_at"] is not None
    state = await commands.load(customer_id)
    assert state.erased
    assert state.registered
    assert state.profile == {}


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_key_destroyed_by_another_process_stops_decrypting_here_long_before_the_cache_expires(
    event_store: PostgresEventStore,
) -> None:
    clock = FakeClock()
    reader = Keyring(event_store.keyring._pool, MASTER_KEY, cache_ttl=60.0, clock=clock, recheck_interval=1.0)
    other_id, customer_id = new_id(), new_id()
    commands = CustomerCommands(event_store)
    for cid in (customer_id, other_id):
        await commands.handle(cid, RegisterCustomer.model_validate(person_body()), ctx())
    [event] = await event_store.read_stream(f"customer-{customer_id}")
    [other] = await event_store.read_stream(f"customer-{other_id}")
    assert (await reader.decrypt_fields(customer_id, event.event_id, event.payload))["name"] == "佐藤 花子"
    assert (await reader.decrypt_fields(other_id, other.event_id, other.payload))["name"] == "佐藤 花子"

    await commands.erase(customer_id, EraseCustomer(), ctx())  # another keyring (another process) destroys it
    clock.now += 1.5

    with pytest.raises(KeyDestroyed):
        await reader.decrypt_fields(customer_id, event.event_id, event.payload)
    assert (await reader.decrypt_fields(other_id, other.event_id, other.payload))["name"] == "佐藤 花子"
