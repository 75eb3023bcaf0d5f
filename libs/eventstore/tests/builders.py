"""Test-data builders for event store tests."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from crm_eventstore.ids import new_id
from crm_eventstore.store import CommandContext
from crm_schemas.contacts import CustomerRegistered
from crm_schemas.envelope import ActorRef


def registered(customer_id: UUID | None = None, name: str = "株式会社ABC商事", **fields: object) -> CustomerRegistered:
    """A CustomerRegistered event for a company."""
    return CustomerRegistered(
        customer_id=customer_id or new_id(),
        occurred_at=datetime.now(UTC),
        kind="company",
        name=name,
        **fields,  # type: ignore[arg-type]
    )


def context(subject: str = "tester", role: str = "admin") -> CommandContext:
    """A command context for a test actor."""
    return CommandContext(actor=ActorRef(subject=subject, role=role, team="qa"))
