"""The customer aggregate (stream customer-<uuid>): commands, state, decide and evolve."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Literal, assert_never
from uuid import UUID

from crm_schemas.base import DomainEvent
from crm_schemas.contacts import CustomerRegistered, PostalAddress
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from crm_contacts.domain.validation import (
    PREFECTURES,
    normalise_corporate_number,
    normalise_email,
    normalise_phone,
    normalise_postal_code,
)

# Birth dates are calendar dates in Japan: "today" is the date in JST (UTC+9, no DST), so a
# baby born on 2 April registered at 01:00 JST (16:00 UTC on 1 April) is not "born in the future".
JST = timezone(timedelta(hours=9), "JST")

COMPANY_ONLY = ("corporate_number", "capital", "employee_count", "fiscal_month", "representative")
PERSON_ONLY = ("birth_date", "gender", "occupation")


class DomainError(Exception):
    """A command the customer aggregate rejects."""

    status = 422

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class CustomerAlreadyExists(DomainError):
    """Registering a customer id that is already taken."""

    status = 409


class AddressIn(BaseModel):
    """A postal address as given in a command."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    postal_code: str | None = None
    prefecture: str | None = None
    city: str | None = None
    street: str | None = None

    @field_validator("postal_code")
    @classmethod
    def _postal(cls, v: str | None) -> str | None:
        return None if v is None else normalise_postal_code(v)

    @field_validator("prefecture")
    @classmethod
    def _prefecture(cls, v: str | None) -> str | None:
        if v is not None and v not in PREFECTURES:
            raise ValueError(f"unknown prefecture: {v}")
        return v


class RegisterCustomer(BaseModel):
    """Register a company (B2B) or a person (B2C) in the customer master."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    kind: Literal["company", "person"]
    name: str = Field(min_length=1, max_length=200)
    name_kana: str | None = Field(default=None, max_length=200)
    corporate_number: str | None = None
    industry: str | None = Field(default=None, max_length=100)
    address: AddressIn | None = None
    phone: str | None = None
    email: str | None = None
    url: str | None = Field(default=None, max_length=500, pattern=r"^https?://\S+$")
    capital: Decimal | None = Field(default=None, ge=0, max_digits=20, decimal_places=0)
    employee_count: int | None = Field(default=None, ge=0)
    fiscal_month: int | None = Field(default=None, ge=1, le=12)
    representative: str | None = Field(default=None, max_length=200)
    birth_date: date | None = None
    gender: Literal["female", "male", "other", "unspecified"] | None = None
    occupation: str | None = Field(default=None, max_length=100)
    external_id: str | None = Field(default=None, max_length=100)

    @field_validator("corporate_number")
    @classmethod
    def _corporate_number(cls, v: str | None) -> str | None:
        return None if v is None else normalise_corporate_number(v)

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str | None) -> str | None:
        return None if v is None else normalise_phone(v)

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        return None if v is None else normalise_email(v)

    @field_validator(*COMPANY_ONLY, *PERSON_ONLY)
    @classmethod
    def _fits_kind(cls, v: object, info: ValidationInfo) -> object:
        # A field validator, not a model validator, so the error is located at the field
        # (`birth_date`), not at the whole body. `kind` is declared first, so it is in info.data
        # whenever it was valid.
        kind = info.data.get("kind")
        wrong = PERSON_ONLY if kind == "company" else COMPANY_ONLY if kind == "person" else ()
        if v is not None and info.field_name in wrong:
            raise ValueError(f"{info.field_name} does not apply to a {kind}")
        return v


Command = RegisterCustomer


@dataclass(frozen=True)
class Customer:
    """What the write side knows of a customer."""

    id: UUID
    registered: bool = False
    kind: str | None = None
    name: str | None = None
    name_kana: str | None = None
    version: int = 0


def decide(command: Command, state: Customer, now: datetime) -> list[DomainEvent]:
    """The events a command produces on a customer, or a DomainError."""
    match command:
        case RegisterCustomer() if state.registered:
            raise CustomerAlreadyExists(f"customer {state.id} is already registered", field="id")
        case RegisterCustomer():
            if command.birth_date is not None and command.birth_date > now.astimezone(JST).date():
                raise DomainError("birth date is in the future", field="birth_date")
            fields = command.model_dump(exclude={"address", "capital"})
            return [
                CustomerRegistered(
                    customer_id=state.id,
                    occurred_at=now,
                    address=PostalAddress(**command.address.model_dump()) if command.address else None,
                    capital=None if command.capital is None else str(command.capital),
                    **fields,
                )
            ]
        case _:
            assert_never(command)


def evolve(state: Customer, event: DomainEvent) -> Customer:
    """The customer after an event."""
    match event:
        case CustomerRegistered():
            return Customer(
                id=state.id,
                registered=True,
                kind=event.kind,
                name=event.name,
                name_kana=event.name_kana,
                version=state.version + 1,
            )
        case _:
            return Customer(**{**state.__dict__, "version": state.version + 1})


def fold(customer_id: UUID, events: list[DomainEvent]) -> Customer:
    """A customer rebuilt from its events."""
    state = Customer(id=customer_id)
    for event in events:
        state = evolve(state, event)
    return state


def stream_id(customer_id: UUID) -> str:
    """The customer's stream name."""
    return f"customer-{customer_id}"
