"""The customer aggregate: given events, when a command, then events or an error. No database, no mocks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from uuid import UUID

import pytest
from crm_contacts.domain.customer import (
    CustomerAlreadyExists,
    DomainError,
    RegisterCustomer,
    decide,
    fold,
)
from crm_contacts.domain.validation import corporate_number_is_valid
from crm_eventstore.ids import new_id
from crm_schemas.base import DomainEvent
from crm_schemas.contacts import CustomerRegistered, PostalAddress
from hypothesis import given as for_all
from hypothesis import strategies as st
from pydantic import ValidationError

from .builders import (
    NOW,
    NTA_CORPORATE_NUMBER,
    company_body,
    company_command,
    corporate_number,
    corporate_number_check_digit,
    person_body,
    person_command,
    registered,
)


def when(
    command: RegisterCustomer,
    given: Sequence[DomainEvent] = (),
    *,
    at: datetime = NOW,
    customer_id: UUID | None = None,
) -> list[DomainEvent]:
    """Decide `command` on the customer that the `given` events built."""
    cid = customer_id or (given[0].customer_id if given else new_id())
    return decide(command, fold(cid, list(given)), at)


def rejected_fields(body: dict[str, object]) -> list[str]:
    """The fields a RegisterCustomer body is rejected for."""
    with pytest.raises(ValidationError) as error:
        RegisterCustomer.model_validate(body)
    return [".".join(str(part) for part in e["loc"]) for e in error.value.errors()]


# --- registering ----------------------------------------------------------------------------


def test_registering_a_company_emits_exactly_one_customer_registered_with_normalised_fields() -> None:
    cid = new_id()
    events = when(company_command(), customer_id=cid)

    assert len(events) == 1
    event = events[0]
    assert isinstance(event, CustomerRegistered)
    assert event.customer_id == cid
    assert event.occurred_at == NOW
    assert event.kind == "company"
    assert event.name == "株式会社ABC商事"
    assert event.phone == "+81312345678"
    assert event.email == "Sales.Desk@abc-shoji.co.jp"  # domain lower-cased, local part kept
    assert event.address == PostalAddress(
        postal_code="100-0001", prefecture="東京都", city="千代田区", street="千代田1-1"
    )
    assert event.capital == "10000000"
    assert event.fiscal_month == 3
    assert event.birth_date is None


def test_registering_a_person_emits_their_b2c_fields_with_a_mobile_in_e164() -> None:
    [event] = when(person_command())

    assert isinstance(event, CustomerRegistered)
    assert event.kind == "person"
    assert event.phone == "+819012345678"
    assert event.email == "hanako.sato@example.com"
    assert event.birth_date == date(1985, 6, 15)
    assert event.address is not None
    assert event.address.postal_code == "530-0001"
    assert event.corporate_number is None


@pytest.mark.parametrize(
    ("written", "e164"),
    [
        ("03-1234-5678", "+81312345678"),
        ("０３－１２３４－５６７８", "+81312345678"),
        ("(03) 1234 5678", "+81312345678"),
        ("+81 3 1234 5678", "+81312345678"),
        ("09012345678", "+819012345678"),
    ],
)
def test_phone_numbers_in_any_notation_are_stored_in_e164(written: str, e164: str) -> None:
    assert company_command(phone=written).phone == e164


@pytest.mark.parametrize("written", ["１００－０００１", "１０００００１", "100-0001", "1000001", " 100‐0001 "])
def test_postal_codes_are_stored_as_nnn_nnnn_from_full_or_half_width_digits(written: str) -> None:
    command = company_command(address={"postal_code": written, "prefecture": "東京都"})
    assert command.address is not None
    assert command.address.postal_code == "100-0001"


def test_a_registered_customer_folds_to_version_one_with_its_name() -> None:
    event = registered(name="株式会社テスト")
    state = fold(event.customer_id, [event])
    assert (state.registered, state.kind, state.name, state.name_kana, state.version) == (
        True,
        "company",
        "株式会社テスト",
        None,
        1,
    )
    assert state.id == event.customer_id


def test_second_registration_of_the_same_customer_is_rejected() -> None:
    with pytest.raises(CustomerAlreadyExists) as error:
        when(company_command(), given=[registered()])
    assert error.value.status == 409


# --- birth date ------------------------------------------------------------------------------


def test_a_birth_date_in_the_future_is_rejected_naming_birth_date() -> None:
    tomorrow = (NOW + timedelta(days=2)).date()
    with pytest.raises(DomainError) as error:
        when(person_command(birth_date=tomorrow.isoformat()))
    assert error.value.field == "birth_date"
    assert not isinstance(error.value, CustomerAlreadyExists)


def test_a_baby_born_today_in_japan_can_be_registered_while_it_is_still_yesterday_in_utc() -> None:
    # 01:00 JST on 2 April is 16:00 UTC on 1 April.
    night_in_tokyo = datetime(2025, 4, 1, 16, 0, tzinfo=UTC)
    [event] = when(person_command(birth_date="2025-04-02"), at=night_in_tokyo)
    assert isinstance(event, CustomerRegistered)
    with pytest.raises(DomainError):
        when(person_command(birth_date="2025-04-03"), at=night_in_tokyo)


# --- fields that do not fit the kind -----------------------------------------------------------


@pytest.mark.parametrize(("field", "value"), [("birth_date", "1980-01-01"), ("gender", "male"), ("occupation", "医師")])
def test_person_only_fields_on_a_company_are_rejected_naming_the_field(field: str, value: str) -> None:
    assert rejected_fields(company_body(**{field: value})) == [field]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("corporate_number", NTA_CORPORATE_NUMBER),
        ("capital", "1000000"),
        ("employee_count", 10),
        ("fiscal_month", 3),
        ("representative", "山田 太郎"),
    ],
)
def test_company_only_fields_on_a_person_are_rejected_naming_the_field(field: str, value: object) -> None:
    assert rejected_fields(person_body(**{field: value})) == [field]


# --- 法人番号 -----------------------------------------------------------------------------------


def test_the_national_tax_agencys_published_corporate_number_is_valid() -> None:
    assert corporate_number_check_digit(NTA_CORPORATE_NUMBER[1:]) == 7
    assert corporate_number_is_valid(NTA_CORPORATE_NUMBER)
    assert company_command(corporate_number=NTA_CORPORATE_NUMBER).corporate_number == NTA_CORPORATE_NUMBER


def test_a_corporate_number_with_a_wrong_check_digit_is_rejected() -> None:
    for wrong in "012345689":  # every first digit but the right one, 7
        assert rejected_fields(company_body(corporate_number=wrong + NTA_CORPORATE_NUMBER[1:])) == ["corporate_number"]


@pytest.mark.parametrize("bad", ["700001205000", "70000120500021", "7000-0120-50002", "", "abcdefghijklm"])
def test_a_corporate_number_that_is_not_13_digits_is_rejected(bad: str) -> None:
    assert rejected_fields(company_body(corporate_number=bad)) == ["corporate_number"]


def test_a_full_width_corporate_number_is_stored_in_half_width_digits() -> None:
    assert company_command(corporate_number="７００００１２０５０００２").corporate_number == NTA_CORPORATE_NUMBER


def test_digits_of_other_scripts_are_not_accepted_as_a_corporate_number_or_postal_code() -> None:
    devanagari = str.maketrans("0123456789", "०१२३४५६७८९")
    assert rejected_fields(company_body(corporate_number=NTA_CORPORATE_NUMBER.translate(devanagari))) == [
        "corporate_number"
    ]
    address = {"postal_code": "100-0001".translate(devanagari), "prefecture": "東京都"}
    assert rejected_fields(company_body(address=address)) == ["address.postal_code"]


@for_all(st.text(alphabet="0123456789", min_size=12, max_size=12))
def test_for_any_12_digit_base_exactly_one_check_digit_makes_a_valid_corporate_number(base: str) -> None:
    valid = [digit for digit in "0123456789" if corporate_number_is_valid(digit + base)]
    assert valid == [str(corporate_number_check_digit(base))]


def test_the_builders_computed_corporate_number_is_accepted() -> None:
    number = corporate_number("123456789012")
    assert company_command(corporate_number=number).corporate_number == number


# --- other invalid input -------------------------------------------------------------------------


@pytest.mark.parametrize("prefecture", ["東京", "Tokyo", "大阪県", "北海道庁"])
def test_an_unknown_prefecture_is_rejected(prefecture: str) -> None:
    assert rejected_fields(company_body(address={"prefecture": prefecture})) == ["address.prefecture"]


def test_an_unknown_field_is_rejected() -> None:
    assert rejected_fields(company_body(nickname="ABC")) == ["nickname"]
    assert rejected_fields(company_body(address={"prefecture": "東京都", "building": "ABCビル"})) == [
        "address.building"
    ]


@pytest.mark.parametrize("email", ["not-an-email", "taro@", "taro@localhost", "taro@@example.com"])
def test_an_invalid_email_is_rejected(email: str) -> None:
    assert rejected_fields(company_body(email=email)) == ["email"]


@pytest.mark.parametrize("phone", ["12345", "03-1234", "電話番号", "+1 555 0100"])
def test_an_invalid_phone_is_rejected(phone: str) -> None:
    assert rejected_fields(company_body(phone=phone)) == ["phone"]


def test_a_blank_name_is_rejected() -> None:
    assert rejected_fields(company_body(name="   ")) == ["name"]
