"""Public events of the contacts service (topic crm.contacts.events.v1)."""

from __future__ import annotations

from datetime import date
from typing import ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from crm_schemas.base import DomainEvent
from crm_schemas.personal import Personal


class PostalAddress(BaseModel):
    """A Japanese postal address."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    postal_code: str | None = None
    prefecture: str | None = None
    city: str | None = None
    street: str | None = None


class ContactsEvent(DomainEvent):
    """Base of contacts events: one stream per customer."""

    service: ClassVar[str] = "contacts"
    stream_prefix: ClassVar[str] = "customer"


class CustomerRegistered(ContactsEvent):
    """A customer (company or person) was registered in the customer master."""

    summary_en: ClassVar[str] = "Customer registered ({kind}): {name}"
    summary_ja: ClassVar[str] = "顧客登録（{kind_ja}）：{name}"

    type: Literal["contacts.CustomerRegistered"] = "contacts.CustomerRegistered"
    schema_version: Literal[1] = 1
    kind: Literal["company", "person"]
    name: Personal[str]
    name_kana: Personal[str | None] = None
    email: Personal[str | None] = None
    phone: Personal[str | None] = None
    address: Personal[PostalAddress | None] = None
    url: str | None = None
    corporate_number: str | None = Field(default=None, description="法人番号, 13 digits")
    industry: str | None = None
    capital: str | None = Field(default=None, description="Decimal string, JPY")
    employee_count: int | None = None
    fiscal_month: int | None = Field(default=None, ge=1, le=12)
    representative: Personal[str | None] = None
    birth_date: Personal[date | None] = None
    gender: Personal[str | None] = None
    occupation: Personal[str | None] = None
    external_id: str | None = None
    registered_by_import: bool = False
    merged_into: UUID | None = None
