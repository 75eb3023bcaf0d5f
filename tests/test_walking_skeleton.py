"""End to end through real processes: `crm up`, a command, Kafka, the timeline, audit, restart."""

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jsonschema
import pytest
from aiokafka import AIOKafkaConsumer
from crm_eventstore.provision import database_url

from .conftest import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

REPO = Path(__file__).resolve().parents[1]
COMPANY = "株式会社ＡＢＣ商事"


async def _timeline(client: httpx.AsyncClient, url: str, token: str, customer_id: str, wait: float = 30) -> Any:
    deadline = time.monotonic() + wait
    while True:
        response = await client.get(
            f"{url}/customers/{customer_id}/timeline", headers={"Authorization": f"Bearer {token}"}
        )
        if response.status_code == 200 and response.json()["items"]:
            return response.json()
        if time.monotonic() > deadline:
            raise AssertionError(f"timeline never showed {customer_id}: {response.status_code} {response.text}")
        await asyncio.sleep(0.1)


async def test_a_registered_company_flows_to_its_timeline_through_kafka(stack: Stack) -> None:
    services = stack.endpoints["services"]
    async with httpx.AsyncClient(timeout=10) as client:
        unauthenticated = await client.post(f"{services['contacts']}/customers", json={"kind": "company", "name": "x"})
        assert unauthenticated.status_code == 401
        assert unauthenticated.headers["content-type"] == "application/problem+json"

        created = await client.post(
            f"{services['contacts']}/customers",
            json={"kind": "company", "name": COMPANY, "name_kana": "エービーシーショウジ", "phone": "03-1234-5678"},
            headers={"Authorization": f"Bearer {stack.token}"},
        )
        assert created.status_code == 201, created.text
        customer_id = created.json()["id"]
        assert created.headers["location"] == f"/customers/{customer_id}"
        assert created.headers["etag"] == '"1"'

        page = await _timeline(client, services["projections"], stack.token, customer_id)
    [item] = page["items"]
    assert item["type"] == "contacts.CustomerRegistered"
    assert item["service"] == "contacts"
    assert item["data"]["name"] == COMPANY
    assert item["actor"]["subject"] == "dev-admin"
    assert COMPANY in item["summary"]
    assert len(item["hash"]) == 64

    # On the topic: CloudEvents headers, the schema, and ciphertext instead of the name.
    consumer = AIOKafkaConsumer(
        "crm.contacts.events.v1",
        bootstrap_servers=stack.endpoints["kafka_bootstrap_servers"],
        group_id=f"e2e-{customer_id}",
        auto_offset_reset="earliest",
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
    )
    await consumer.start()
    record = None
    try:
        for _ in range(40):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    if r.key == customer_id.encode():
                        record = r
            if record:
                break
    finally:
        await consumer.stop()
    assert record is not None
    headers = {k: v.decode() for k, v in record.headers}
    assert headers["ce_id"] == item["event_id"]
    assert headers["ce_type"] == "contacts.CustomerRegistered"
    assert headers["ce_subject"] == customer_id
    assert COMPANY.encode() not in record.value
    value = json.loads(record.value)
    assert value["payload"]["name"].startswith("enc:v1:")
    schema_file = REPO / "schemas" / "json" / "contacts.CustomerRegistered" / "v1.json"
    jsonschema.Draft202012Validator(json.loads(schema_file.read_text())).validate(value)

    # In the event table: ciphertext too.
    conn = await asyncpg.connect(stack.endpoints["database_urls"]["contacts"])
    try:
        raw = await conn.fetchval("SELECT payload::text FROM events WHERE customer_id = $1", customer_id)
    finally:
        await conn.close()
    assert "商事" not in raw


async def test_audit_verify_passes_then_names_the_event_a_superuser_altered(stack: Stack) -> None:
    ok = stack.crm("audit", "verify")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "contacts: valid" in ok.stdout

    admin = stack.endpoints["admin_database_url"]
    conn = await asyncpg.connect(database_url(admin, "crm_contacts"))
    try:
        event_id = await conn.fetchval("SELECT event_id FROM events ORDER BY position LIMIT 1")
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute(
                "UPDATE events SET occurred_at = occurred_at - interval '1 day' WHERE event_id = $1", event_id
            )
        broken = stack.crm("audit", "verify")
        assert broken.returncode == 1
        assert str(event_id) in broken.stdout
        async with conn.transaction():  # put it back for the restart test
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute(
                "UPDATE events SET occurred_at = occurred_at + interval '1 day' WHERE event_id = $1", event_id
            )
    finally:
        await conn.close()
    assert stack.crm("audit", "verify").returncode == 0


async def test_after_a_restart_the_same_timelines_are_served(stack: Stack) -> None:
    services = stack.endpoints["services"]
    async with httpx.AsyncClient(timeout=10) as client:
        created = await client.post(
            f"{services['contacts']}/customers",
            json={"kind": "person", "name": "山田 太郎", "email": "Taro@Example.JP"},
            headers={"Authorization": f"Bearer {stack.token}", "Idempotency-Key": "restart-1"},
        )
        assert created.status_code == 201
        customer_id = created.json()["id"]
        before = await _timeline(client, services["projections"], stack.token, customer_id)

    stack.stop()
    stack.start()  # same CRM_HOME: the database survives, the in-memory broker does not
    services = stack.endpoints["services"]
    async with httpx.AsyncClient(timeout=10) as client:
        after = await _timeline(client, services["projections"], stack.token, customer_id)
        again = await client.post(
            f"{services['contacts']}/customers",
            json={"kind": "person", "name": "山田 太郎", "email": "Taro@Example.JP"},
            headers={"Authorization": f"Bearer {stack.token}", "Idempotency-Key": "restart-1"},
        )
    assert after["items"] == before["items"]
    assert again.json()["id"] == customer_id
    conn = await asyncpg.connect(stack.endpoints["database_urls"]["projections"])
    try:
        entries = await conn.fetchval("SELECT count(*) FROM timeline_entries WHERE customer_id = $1", customer_id)
    finally:
        await conn.close()
    assert entries == 1
