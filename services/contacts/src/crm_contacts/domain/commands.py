"""Commands on the customer aggregate: what callers ask for, validated at the edge (extra fields forbidden)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from crm_contacts.domain.validation import (
    PREFECTURES,
    normalise_corporate_number,
    normalise_email,
    normalise_phone,
    normalise_postal_code,
)

COMPANY_ONLY = ("corporate_number", "capital", "employee_count", "fiscal_month", "representative")
PERSON_ONLY = ("birth_date", "gender", "occupation")

DecisionRole = Literal["decision_maker", "approver", "influencer", "user"]
Gender = Literal["female", "male", "other", "unspecified"]


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


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    effective_on: date | None = Field(
        default=None, description="When the change took effect in the world (default: now)"
    )


def _phone(v: str | None) -> str | None:
    return None if v is None else normalise_phone(v)


def _email(v: str | None) -> str | None:
    return None if v is None else normalise_email(v)


class RenameCustomer(_Command):
    """Change the customer's name and kana reading."""

    name: str = Field(min_length=1, max_length=200)
    name_kana: str | None = Field(default=None, max_length=200)


class ChangeAddress(_Command):
    """Record a new or corrected address."""

    address: AddressIn | None


class ChangePhone(_Command):
    """Record a new main phone number."""

    phone: str | None

    @field_validator("phone")
    @classmethod
    def _normalise_phone(cls, v: str | None) -> str | None:
        return _phone(v)


class ChangeEmail(_Command):
    """Record a new main e-mail address."""

    email: str | None

    @field_validator("email")
    @classmethod
    def _normalise_email(cls, v: str | None) -> str | None:
        return _email(v)


class ChangeProfile(_Command):
    """Change company or personal profile fields; each changed field emits its own event."""

    url: str | None = Field(default=None, max_length=500, pattern=r"^https?://\S+$")
    industry: str | None = Field(default=None, max_length=100)
    corporate_number: str | None = None
    capital: Decimal | None = Field(default=None, ge=0, max_digits=20, decimal_places=0)
    employee_count: int | None = Field(default=None, ge=0)
    fiscal_month: int | None = Field(default=None, ge=1, le=12)
    representative: str | None = Field(default=None, max_length=200)
    birth_date: date | None = None
    gender: Gender | None = None
    occupation: str | None = Field(default=None, max_length=100)

    @field_validator("corporate_number")
    @classmethod
    def _corporate_number(cls, v: str | None) -> str | None:
        return None if v is None else normalise_corporate_number(v)

    @model_validator(mode="after")
    def _something(self) -> ChangeProfile:
        if not self.model_fields_set - {"effective_on"}:
            raise ValueError("name at least one field to change")
        return self


class ChangeRank(_Command):
    """Set the customer's rank (e.g. S, A, B, C)."""

    rank: str | None = Field(max_length=20)


class ChangeTags(_Command):
    """Add and remove tags."""

    add: list[str] = Field(default_factory=list, max_length=50)
    remove: list[str] = Field(default_factory=list, max_length=50)


class ChangeInterests(_Command):
    """Add and remove marketing interests."""

    add: list[str] = Field(default_factory=list, max_length=50)
    remove: list[str] = Field(default_factory=list, max_length=50)


class JoinCampaign(_Command):
    """Record that the customer joined a campaign."""

    campaign: str = Field(min_length=1, max_length=200)


class RecordConsent(_Command):
    """Grant or withdraw consent for a channel and purpose, with its source."""

    channel: Literal["email", "phone", "post"]
    granted: bool
    purpose: str = Field(default="newsletter", min_length=1, max_length=50)
    source: str = Field(min_length=1, max_length=200, description="Where the decision came from, e.g. web-form")


class SetPaymentTerms(_Command):
    """Set the company's payment terms."""

    payment_terms: str = Field(min_length=1, max_length=200)


class AddContactPerson(_Command):
    """Add a contact person at the company."""

    person_id: UUID | None = None
    name: str = Field(min_length=1, max_length=200)
    name_kana: str | None = Field(default=None, max_length=200)
    department: str | None = Field(default=None, max_length=100)
    title: str | None = Field(default=None, max_length=100)
    email: str | None = None
    phone: str | None = None
    decision_role: DecisionRole | None = None
    interests: list[str] = Field(default_factory=list, max_length=50)

    @field_validator("phone")
    @classmethod
    def _normalise_phone(cls, v: str | None) -> str | None:
        return _phone(v)

    @field_validator("email")
    @classmethod
    def _normalise_email(cls, v: str | None) -> str | None:
        return _email(v)


class ChangeContactPersonTitle(_Command):
    """Change a contact person's title."""

    title: str | None = Field(max_length=100)


class MoveContactPerson(_Command):
    """Record that a contact person moved department."""

    department: str = Field(min_length=1, max_length=100)
    title: str | None = Field(default=None, max_length=100)


class ChangeContactPersonDetails(_Command):
    """Change a contact person's e-mail and/or phone."""

    email: str | None = None
    phone: str | None = None

    @field_validator("phone")
    @classmethod
    def _normalise_phone(cls, v: str | None) -> str | None:
        return _phone(v)

    @field_validator("email")
    @classmethod
    def _normalise_email(cls, v: str | None) -> str | None:
        return _email(v)


class ChangeDecisionRole(_Command):
    """Change a contact person's role in the decision flow."""

    decision_role: DecisionRole | None


class ContactPersonLeaves(_Command):
    """Record that a contact person left the company."""

    reason: str | None = Field(default=None, max_length=500)


class MergeCustomer(_Command):
    """Merge a duplicate (absorbed) into this customer; fields choose whose value survives."""

    absorbed_id: UUID
    fields: dict[str, Literal["survivor", "absorbed"]] = Field(default_factory=dict)


class UnmergeCustomer(_Command):
    """Reverse an earlier merge of `absorbed_id` into this customer."""

    absorbed_id: UUID


class EraseCustomer(BaseModel):
    """Erase the customer's personal data for good (crypto-shredding); privileged and irreversible."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    basis: Literal["data_subject_request", "retention_expired", "legal_obligation"] = Field(
        default="data_subject_request", description="Why the data is erased"
    )
