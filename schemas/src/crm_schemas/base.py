"""Base class of every public domain event."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from crm_schemas.personal import personal_fields

#: Envelope members that a domain event carries but that are not repeated in the payload.
ENVELOPE_MEMBERS = frozenset({"type", "schema_version", "customer_id", "occurred_at"})


class DomainEvent(BaseModel):
    """A past-tense fact about one customer; frozen and tolerant of unknown fields."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    service: ClassVar[str]
    stream_prefix: ClassVar[str]
    summary_en: ClassVar[str] = ""
    summary_ja: ClassVar[str] = ""

    type: str
    schema_version: int
    customer_id: UUID
    occurred_at: datetime

    @classmethod
    def personal_fields(cls) -> frozenset[str]:
        """Fields of this event that hold personal data."""
        return personal_fields(cls)

    def to_payload(self) -> dict[str, Any]:
        """JSON-ready payload (plaintext) without the envelope members."""
        return self.model_dump(mode="json", exclude=set(ENVELOPE_MEMBERS))
