"""The stored and published form of every event: envelope fields plus the payload."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class ActorRef(BaseModel):
    """Who caused an event: the token subject and their role, team and department."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    subject: str
    role: str
    team: str | None = None
    department: str | None = None


class EventEnvelope(BaseModel):
    """One recorded event as stored in an event store and published on Kafka."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: UUID = Field(description="UUIDv7, unique across all services")
    type: str = Field(description="Stable event type, e.g. contacts.CustomerRegistered")
    schema_version: int = Field(ge=1)
    service: str = Field(description="Service whose event store holds the event")
    stream_id: str = Field(description="Aggregate stream, e.g. customer-<uuid>")
    version: int = Field(ge=1, description="Position of the event in its stream, from 1")
    customer_id: UUID = Field(description="The data subject (customer) the event belongs to")
    occurred_at: datetime = Field(description="Effective time: when it happened in the world")
    recorded_at: datetime = Field(description="When the event store recorded it")
    actor: ActorRef
    correlation_id: UUID
    causation_id: UUID | None = None
    traceparent: str | None = Field(default=None, description="W3C trace context of the command")
    payload: dict[str, Any] = Field(description="Event body; personal fields hold enc:v1: AES-256-GCM ciphertext")
    prev_hash: str | None = Field(
        default=None, description="hash of the previous event of the stream (null for version 1)"
    )
    hash: str = Field(description="SHA-256 hex over the canonical encoding of this envelope")
