"""Test-data builders ("controls") for the contacts service."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from crm_contacts.domain.customer import RegisterCustomer
from crm_eventstore.ids import new_id
from crm_schemas.contacts import ContactPersonAdded, CustomerRegistered

# 国税庁 (National Tax Agency), as published on its own 法人番号 page.
NTA_CORPORATE_NUMBER = "7000012050002"

NOW = datetime(2025, 4, 1, 3, 0, tzinfo=UTC)


def corporate_number_check_digit(base: str) -> int:
    """The 法人番号 check digit of a 12-digit base: 9 - (Σ Pn·Qn mod 9), Qn = 1 odd / 2 even from the right.

    Written independently of crm_contacts.domain.validation, so the tests do not check it against itself.
    """
    assert len(base) == 12
    assert base.isascii()
    assert base.isdigit()
    weighted = 0
    for n, digit in enumerate(reversed(base), start=1):
        weighted += int(digit) * (2 if n % 2 == 0 else 1)
    return 9 - weighted % 9


def corporate_number(base: str = "012345678901") -> str:
    """A valid 法人番号 with the given 12-digit base."""
    return f"{corporate_number_check_digit(base)}{base}"


def company_body(**overrides: Any) -> dict[str, Any]:
    """The JSON body of a valid company registration (as a front end would send it)."""
    body: dict[str, Any] = {
        "kind": "company",
        "name": "株式会社ABC商事",
        "name_kana": "カブシキガイシャエービーシーショウジ",
        "corporate_number": corporate_number(),
        "industry": "卸売業",
        "address": {
            "postal_code": "１００－０００１",
            "prefecture": "東京都",
            "city": "千代田区",
            "street": "千代田1-1",
        },
        "phone": "03-1234-5678",
        "email": "Sales.Desk@ABC-Shoji.CO.JP",
        "url": "https://abc-shoji.example.co.jp/",
        "capital": "10000000",
        "employee_count": 120,
        "fiscal_month": 3,
        "representative": "山田 太郎",
    }
    return {**body, **overrides}


def person_body(**overrides: Any) -> dict[str, Any]:
    """The JSON body of a valid person (B2C) registration."""
    body: dict[str, Any] = {
        "kind": "person",
        "name": "佐藤 花子",
        "name_kana": "サトウ ハナコ",
        "birth_date": "1985-06-15",
        "gender": "female",
        "occupation": "会社員",
        "address": {"postal_code": "5300001", "prefecture": "大阪府", "city": "大阪市北区", "street": "梅田1-1-1"},
        "phone": "090-1234-5678",
        "email": "hanako.sato@Example.com",
    }
    return {**body, **overrides}


def company_command(**overrides: Any) -> RegisterCustomer:
    """A valid RegisterCustomer for a company."""
    return RegisterCustomer.model_validate(company_body(**overrides))


def person_command(**overrides: Any) -> RegisterCustomer:
    """A valid RegisterCustomer for a person."""
    return RegisterCustomer.model_validate(person_body(**overrides))


def registered(
    customer_id: UUID | None = None,
    name: str = "株式会社ABC商事",
    occurred_at: datetime = NOW,
    **fields: Any,
) -> CustomerRegistered:
    """A CustomerRegistered event for a company, as already in a customer's stream."""
    return CustomerRegistered(
        customer_id=customer_id or new_id(),
        occurred_at=occurred_at,
        kind=fields.pop("kind", "company"),
        name=name,
        **fields,
    )


# --- builders for command tests (events already in a stream, and the commands on them) ----------


def registered_person(
    customer_id: UUID | None = None,
    name: str = "佐藤 花子",
    occurred_at: datetime = NOW,
    **fields: Any,
) -> CustomerRegistered:
    """A CustomerRegistered event for a person (B2C) customer."""
    return registered(customer_id, name=name, occurred_at=occurred_at, kind="person", **fields)


def contact_person_added(
    customer_id: UUID,
    person_id: UUID | None = None,
    name: str = "鈴木 一郎",
    occurred_at: datetime = NOW,
    **fields: Any,
) -> ContactPersonAdded:
    """A ContactPersonAdded event: a contact person at a company customer."""
    return ContactPersonAdded(
        customer_id=customer_id,
        occurred_at=occurred_at,
        person_id=person_id or new_id(),
        name=name,
        **fields,
    )


def contact_body(**overrides: Any) -> dict[str, Any]:
    """The JSON body of a valid POST /customers/{id}/contacts."""
    body: dict[str, Any] = {
        "name": "鈴木 一郎",
        "name_kana": "スズキ イチロウ",
        "department": "購買部",
        "title": "課長",
        "email": "ichiro.suzuki@abc-shoji.example.co.jp",
        "phone": "03-1234-5679",
        "decision_role": "approver",
    }
    return {**body, **overrides}
