"""Every public event type, by its stable type string, and the topic it is published on."""

from __future__ import annotations

from crm_schemas import contacts, deals, support
from crm_schemas.base import DomainEvent

SERVICES: tuple[str, ...] = ("contacts", "deals", "support")

DEADLETTER_TOPIC = "crm.deadletter.v1"


def _events_of(module: object) -> list[type[DomainEvent]]:
    return [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, DomainEvent)
        and "type" in value.model_fields
        and isinstance(value.model_fields["type"].default, str)
    ]


EVENT_TYPES: dict[str, type[DomainEvent]] = {
    model.model_fields["type"].default: model for module in (contacts, deals, support) for model in _events_of(module)
}


def topic_for(service: str) -> str:
    """Kafka topic carrying one service's events."""
    return f"crm.{service}.events.v1"


def event_model(event_type: str) -> type[DomainEvent] | None:
    """The model of an event type, or None if this build does not know it."""
    return EVENT_TYPES.get(event_type)
