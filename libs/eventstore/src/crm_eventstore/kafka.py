"""Kafka plumbing shared by relays and consumers: producer settings, topics, CloudEvents headers."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context
from aiokafka.structs import TopicPartition
from crm_schemas.envelope import EventEnvelope
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from crm_eventstore.hashing import canonical_time

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/json"


class KafkaSecurity(Protocol):
    """The Kafka connection settings a process reads (see InfraSettings)."""

    kafka_security_protocol: str
    kafka_sasl_mechanism: str
    kafka_sasl_username: str | None
    kafka_sasl_password: str | None
    kafka_ssl_cafile: Path | None


def client_security(settings: KafkaSecurity | None) -> dict[str, Any]:
    """aiokafka keyword arguments for TLS and SASL (nothing for PLAINTEXT)."""
    if settings is None or settings.kafka_security_protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        cafile = str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
        options["ssl_context"] = create_ssl_context(cafile=cafile)
    if settings.kafka_security_protocol.startswith("SASL"):
        options.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=settings.kafka_sasl_password,
        )
    return options


def faststream_security(settings: KafkaSecurity | None) -> BaseSecurity | None:
    """The same settings as a FastStream security object."""
    options = client_security(settings)
    if not options:
        return None
    assert settings is not None
    ssl_context = options.get("ssl_context")
    if not settings.kafka_security_protocol.startswith("SASL"):
        return BaseSecurity(ssl_context=ssl_context, use_ssl=True)
    kind = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}[
        settings.kafka_sasl_mechanism
    ]
    return kind(
        settings.kafka_sasl_username or "",
        settings.kafka_sasl_password or "",
        ssl_context=ssl_context,
        use_ssl=settings.kafka_security_protocol == "SASL_SSL",
    )


async def start_producer(
    bootstrap_servers: str, idempotence: str = "auto", client_id: str = "crm", security: dict[str, Any] | None = None
) -> AIOKafkaProducer:
    """A started producer with acks=all; idempotent unless the broker refuses it ("auto") or it is off."""
    modes = {"auto": [True, False], "true": [True], "false": [False]}[idempotence.lower()]
    last: Exception | None = None
    for enable in modes:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            acks="all",
            enable_idempotence=enable,
            client_id=client_id,
            linger_ms=0,
            request_timeout_ms=30_000,
            **(security or {}),
        )
        try:
            await producer.start()
            if enable:
                # The producer id is requested lazily; ask now so a broker without
                # InitProducerId support is detected before the first event is sent.
                await producer.client.bootstrap()
                await asyncio.wait_for(producer._sender._maybe_wait_for_pid(), 10)
            return producer
        except (KafkaError, OSError, TimeoutError) as exc:
            last = exc
            await producer.stop()
            if enable and len(modes) > 1:
                log.warning("broker refused an idempotent producer (%s); continuing with acks=all only", exc)
    raise RuntimeError(f"cannot start a Kafka producer on {bootstrap_servers}: {last}")


async def ensure_topics(
    bootstrap_servers: str,
    topics: Sequence[str],
    partitions: int,
    replication_factor: int = 1,
    security: dict[str, Any] | None = None,
) -> set[str]:
    """Create missing topics with a fixed partition count, kept forever; return the ones created now."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="crm-admin", **(security or {}))
    await admin.start()
    created: set[str] = set()
    try:
        existing = set(await admin.list_topics())
        for topic in topics:
            if topic in existing:
                continue
            try:
                # Event topics are the replay source: never delete by age or size.
                await admin.create_topics(
                    [
                        NewTopic(
                            topic,
                            num_partitions=partitions,
                            replication_factor=replication_factor,
                            topic_configs={"retention.ms": "-1", "retention.bytes": "-1"},
                        )
                    ]
                )
                created.add(topic)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()
    return created


async def topic_is_empty(producer: AIOKafkaProducer, topic: str, security: dict[str, Any] | None = None) -> bool:
    """True if no partition of a topic holds any record (e.g. an in-memory broker restarted)."""
    partitions = await producer.partitions_for(topic)
    if not partitions:
        return True
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        bootstrap_servers=producer.client._bootstrap_servers,
        enable_auto_commit=False,
        **(security or {}),
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        ends = await consumer.end_offsets(tps)
        return all(offset == 0 for offset in ends.values())
    finally:
        await consumer.stop()


def cloudevent_headers(envelope: EventEnvelope, source: str) -> list[tuple[str, bytes]]:
    """CloudEvents 1.0 binary-mode Kafka headers for an event, plus W3C traceparent."""
    headers = {
        "ce_specversion": "1.0",
        "ce_id": str(envelope.event_id),
        "ce_type": envelope.type,
        "ce_source": source,
        "ce_subject": str(envelope.customer_id),
        "ce_time": canonical_time(envelope.occurred_at),
        "ce_dataschema": f"schemas/json/{envelope.type}/v{envelope.schema_version}.json",
        "ce_schemaversion": str(envelope.schema_version),
        "ce_streamid": envelope.stream_id,
        "ce_streamversion": str(envelope.version),
        "content-type": CONTENT_TYPE,
    }
    if envelope.traceparent:
        headers["traceparent"] = envelope.traceparent
    return [(k, v.encode()) for k, v in headers.items()]


def encode_value(envelope: EventEnvelope) -> bytes:
    """The record value: the whole envelope as JSON (personal fields stay ciphertext)."""
    return envelope.model_dump_json().encode()


def decode_headers(headers: Sequence[tuple[str, bytes]] | Mapping[str, Any]) -> dict[str, str]:
    """Kafka headers as a str -> str mapping."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {k: (v.decode() if isinstance(v, bytes | bytearray) else str(v)) for k, v in items}


def decode_value(value: bytes) -> EventEnvelope:
    """Parse a record value back into an envelope."""
    return EventEnvelope.model_validate(json.loads(value))
