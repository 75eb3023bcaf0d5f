"""Every customer command: given events, when a command, then specific events or a rejection. No database."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, get_args
from uuid import UUID

import pytest
from crm_contacts.domain.commands import (
    AddContactPerson,
    AddressIn,
    ChangeAddress,
    ChangeContactPersonDetails,
    ChangeContactPersonTitle,
    ChangeDecisionRole,
    ChangeEmail,
    ChangeInterests,
    ChangePhone,
    ChangeProfile,
    ChangeRank,
    ChangeTags,
    ContactPersonLeaves,
    JoinCampaign,
    MergeCustomer,
    MoveContactPerson,
    RecordConsent,
    RegisterCustomer,
    RenameCustomer,
    SetPaymentTerms,
    UnmergeCustomer,
)
from crm_contacts.domain.customer import (
    JST,
    PROFILE_FIELDS,
    Command,
    ContactPersonHasLeft,
    Customer,
    CustomerWasMerged,
    DomainError,
    ForPerson,
    NotMerged,
    UnknownContactPerson,
    UnknownCustomer,
    decide,
    decide_merge,
    decide_unmerge,
    fold,
)
from crm_eventstore.ids import new_id
from crm_schemas.base import DomainEvent
from crm_schemas.contacts import (
    CampaignJoined,
    ConsentGranted,
    ConsentWithdrawn,
    ContactPersonAdded,
    ContactPersonContactDetailsChanged,
    ContactPersonDecisionRoleChanged,
    ContactPersonLeftCompany,
    ContactPersonMovedDepartment,
    ContactPersonTitleChanged,
    CustomerAddressChanged,
    CustomerCapitalChanged,
    CustomerCorporateNumberAssigned,
    CustomerEmailChanged,
    CustomerFiscalMonthChanged,
    CustomerHeadcountChanged,
    CustomerIndustryChanged,
    CustomerMergedInto,
    CustomerPersonalDetailsChanged,
    CustomerPhoneChanged,
    CustomerRankChanged,
    CustomerRenamed,
    CustomerRepresentativeChanged,
    CustomersMerged,
    CustomersUnmerged,
    CustomerTagged,
    CustomerUnmergedFrom,
    CustomerUntagged,
    CustomerWebsiteChanged,
    MarketingInterestAdded,
    MarketingInterestRemoved,
    PaymentTermsSet,
    PostalAddress,
)
from hypothesis import given as for_all
from hypothesis import settings
from hypothesis import strategies as st
from pydantic import ValidationError

from .builders import (
    NOW,
    NTA_CORPORATE_NUMBER,
    contact_person_added,
    corporate_number,
    registered,
    registered_person,
)

# NOW is 12:00 JST on 1 April 2025.
TODAY_IN_JAPAN = date(2025, 4, 1)
TOMORROW_IN_JAPAN = date(2025, 4, 2)
LAST_MONTH = date(2025, 3, 15)

TOKYO = PostalAddress(postal_code="100-0001", prefecture="東京都", city="千代田区", street="千代田1-1")


def when(command: Command, given: Sequence[DomainEvent], *, at: datetime = NOW) -> list[DomainEvent]:
    """Decide `command` on the customer that the `given` events built."""
    return decide(command, fold(given[0].customer_id, list(given)), at)


def state_of(given: Sequence[DomainEvent]) -> Customer:
    """The customer the `given` events fold to."""
    return fold(given[0].customer_id, list(given))


def company(**fields: Any) -> list[DomainEvent]:
    """A company with a phone, e-mail, address and the usual profile, registered a year before NOW."""
    values: dict[str, Any] = {
        "name_kana": "エービーシーショウジ",
        "phone": "+81312345678",
        "email": "info@abc-shoji.example.co.jp",
        "address": TOKYO,
        "url": "https://abc-shoji.example.co.jp/",
        "industry": "卸売業",
        "corporate_number": NTA_CORPORATE_NUMBER,
        "capital": "10000000",
        "employee_count": 120,
        "fiscal_month": 3,
        "representative": "山田 太郎",
        "occurred_at": NOW - timedelta(days=365),
        **fields,
    }
    return [registered(new_id(), **values)]


def person(**fields: Any) -> list[DomainEvent]:
    """A person (B2C) customer, registered a year before NOW."""
    values: dict[str, Any] = {
        "name_kana": "サトウ ハナコ",
        "phone": "+819012345678",
        "email": "hanako.sato@example.com",
        "birth_date": date(1985, 6, 15),
        "gender": "female",
        "occupation": "会社員",
        "occurred_at": NOW - timedelta(days=365),
        **fields,
    }
    return [registered_person(new_id(), **values)]


def with_contact(given: list[DomainEvent], person_id: UUID, **fields: Any) -> list[DomainEvent]:
    """The `given` stream plus a contact person in 購買部 as 課長."""
    values: dict[str, Any] = {"department": "購買部", "title": "課長", "email": "ichiro@example.co.jp", **fields}
    return [
        *given,
        contact_person_added(given[0].customer_id, person_id, occurred_at=NOW - timedelta(days=300), **values),
    ]


def merged_away(given: list[DomainEvent], survivor_id: UUID) -> list[DomainEvent]:
    """The `given` stream of a customer that was merged into `survivor_id`."""
    return [*given, CustomerMergedInto(customer_id=given[0].customer_id, occurred_at=NOW, survivor_id=survivor_id)]


T0 = NOW - timedelta(days=400)
T1 = NOW - timedelta(days=200)
T2 = NOW - timedelta(days=100)


def merge(
    survivor: Sequence[DomainEvent],
    absorbed: Sequence[DomainEvent],
    *,
    at: datetime = NOW,
    **fields: Any,
) -> tuple[list[DomainEvent], list[DomainEvent]]:
    """Decide a merge of `absorbed` into `survivor`."""
    command = MergeCustomer(absorbed_id=absorbed[0].customer_id, fields=fields)
    return decide_merge(command, state_of(survivor), state_of(absorbed), at)


def unmerge(
    survivor: Sequence[DomainEvent], absorbed: Sequence[DomainEvent], *, at: datetime = NOW
) -> tuple[list[DomainEvent], list[DomainEvent]]:
    """Decide an unmerge of `absorbed` from `survivor`."""
    command = UnmergeCustomer(absorbed_id=absorbed[0].customer_id)
    return decide_unmerge(command, state_of(survivor), state_of(absorbed), at)


def then(events: Sequence[DomainEvent], *more: DomainEvent, at: datetime) -> list[DomainEvent]:
    """`events` followed by `more`, re-addressed to the same customer and dated `at`."""
    cid = events[0].customer_id
    return [*events, *(e.model_copy(update={"customer_id": cid, "occurred_at": at}) for e in more)]


def phone(value: str) -> CustomerPhoneChanged:
    return CustomerPhoneChanged(customer_id=new_id(), occurred_at=NOW, phone=value)


def tagged(tag: str) -> CustomerTagged:
    return CustomerTagged(customer_id=new_id(), occurred_at=NOW, tag=tag)


def only(events: Sequence[DomainEvent]) -> DomainEvent:
    """The one event of a list that must hold exactly one."""
    assert len(events) == 1, events
    return events[0]


# --- customer-level commands: happy paths ---------------------------------------------------------------


def test_renaming_emits_customer_renamed_with_the_name_and_kana() -> None:
    given = company()
    event = only(
        when(RenameCustomer(name="株式会社ABCホールディングス", name_kana="エービーシーホールディングス"), given)
    )
    assert isinstance(event, CustomerRenamed)
    assert (event.customer_id, event.occurred_at) == (given[0].customer_id, NOW)
    assert (event.name, event.name_kana) == ("株式会社ABCホールディングス", "エービーシーホールディングス")
    assert state_of([*given, event]).name == "株式会社ABCホールディングス"


def test_renaming_to_the_same_name_and_kana_emits_nothing() -> None:
    assert when(RenameCustomer(name="株式会社ABC商事", name_kana="エービーシーショウジ"), company()) == []


def test_a_new_kana_reading_alone_is_a_rename() -> None:
    event = only(when(RenameCustomer(name="株式会社ABC商事", name_kana="エイビーシーショウジ"), company()))
    assert isinstance(event, CustomerRenamed)
    assert event.name_kana == "エイビーシーショウジ"


def test_changing_the_address_emits_customer_address_changed_with_the_normalised_address() -> None:
    command = ChangeAddress(address=AddressIn(postal_code="５３０－０００１", prefecture="大阪府", city="大阪市北区"))
    event = only(when(command, company()))
    assert isinstance(event, CustomerAddressChanged)
    assert event.address == PostalAddress(postal_code="530-0001", prefecture="大阪府", city="大阪市北区")


def test_the_same_address_in_another_notation_emits_nothing() -> None:
    same = AddressIn(postal_code="1000001", prefecture="東京都", city="千代田区", street="千代田1-1")
    assert when(ChangeAddress(address=same), company()) == []


def test_clearing_the_address_emits_an_address_change_to_none() -> None:
    event = only(when(ChangeAddress(address=None), company()))
    assert isinstance(event, CustomerAddressChanged)
    assert event.address is None


def test_changing_the_phone_emits_customer_phone_changed_in_e164() -> None:
    event = only(when(ChangePhone(phone="06-1234-5678"), company()))
    assert isinstance(event, CustomerPhoneChanged)
    assert event.phone == "+81612345678"


def test_the_same_phone_in_another_notation_emits_nothing() -> None:
    assert when(ChangePhone(phone="０３（１２３４）５６７８"), company()) == []


def test_changing_the_email_emits_customer_email_changed() -> None:
    event = only(when(ChangeEmail(email="Taro.Yamada@ABC-Shoji.example.co.jp"), company()))
    assert isinstance(event, CustomerEmailChanged)
    assert event.email == "Taro.Yamada@abc-shoji.example.co.jp"  # domain lower-cased, local part kept


def test_the_same_email_with_an_upper_case_domain_emits_nothing() -> None:
    assert when(ChangeEmail(email="info@ABC-SHOJI.example.co.jp"), company()) == []


@pytest.mark.parametrize(
    ("change", "event_type", "field", "value"),
    [
        ({"url": "https://abc.example.jp/"}, CustomerWebsiteChanged, "url", "https://abc.example.jp/"),
        ({"industry": "小売業"}, CustomerIndustryChanged, "industry", "小売業"),
        (
            {"corporate_number": corporate_number("123456789012")},
            CustomerCorporateNumberAssigned,
            "corporate_number",
            corporate_number("123456789012"),
        ),
        ({"capital": "50000000"}, CustomerCapitalChanged, "capital", "50000000"),
        ({"employee_count": 130}, CustomerHeadcountChanged, "employee_count", 130),
        ({"fiscal_month": 12}, CustomerFiscalMonthChanged, "fiscal_month", 12),
        ({"representative": "山田 花子"}, CustomerRepresentativeChanged, "representative", "山田 花子"),
    ],
    ids=["url", "industry", "corporate-number", "capital", "employee-count", "fiscal-month", "representative"],
)
def test_each_company_profile_field_emits_its_own_specific_event(
    change: dict[str, Any], event_type: type[DomainEvent], field: str, value: object
) -> None:
    event = only(when(ChangeProfile.model_validate(change), company()))
    assert isinstance(event, event_type)
    assert getattr(event, field) == value


def test_a_profile_change_of_several_fields_emits_one_event_per_changed_field_only() -> None:
    command = ChangeProfile(employee_count=150, fiscal_month=3, industry="小売業", capital=Decimal(10000000))
    events = when(command, company())
    assert sorted(type(e).__name__ for e in events) == ["CustomerHeadcountChanged", "CustomerIndustryChanged"]


def test_a_profile_change_to_the_same_values_emits_nothing() -> None:
    command = ChangeProfile(capital=Decimal("10000000"), employee_count=120, fiscal_month=3, representative="山田 太郎")
    assert when(command, company()) == []


def test_a_profile_change_naming_no_field_is_rejected_by_the_command() -> None:
    with pytest.raises(ValidationError):
        ChangeProfile.model_validate({"effective_on": "2025-03-01"})


def test_changing_personal_details_emits_one_event_listing_what_changed_and_carrying_the_rest() -> None:
    event = only(when(ChangeProfile(occupation="自営業", gender="female"), person()))
    assert isinstance(event, CustomerPersonalDetailsChanged)
    assert event.changed == ["occupation"]
    assert (event.birth_date, event.gender, event.occupation) == (date(1985, 6, 15), "female", "自営業")


def test_correcting_a_birth_date_emits_personal_details_changed() -> None:
    given = person()
    event = only(when(ChangeProfile(birth_date=date(1985, 6, 16)), given))
    assert isinstance(event, CustomerPersonalDetailsChanged)
    assert event.changed == ["birth_date"]
    assert state_of([*given, event]).profile["birth_date"] == date(1985, 6, 16)


def test_the_same_personal_details_emit_nothing() -> None:
    assert when(ChangeProfile(birth_date=date(1985, 6, 15), gender="female", occupation="会社員"), person()) == []


def test_a_future_birth_date_in_a_profile_change_is_rejected_naming_birth_date() -> None:
    with pytest.raises(DomainError) as error:
        when(ChangeProfile(birth_date=TOMORROW_IN_JAPAN), person())
    assert error.value.field == "birth_date"


def test_changing_the_rank_emits_rank_changed_with_the_previous_rank() -> None:
    given = then(company(), CustomerRankChanged(customer_id=new_id(), occurred_at=NOW, rank="B"), at=T1)
    event = only(when(ChangeRank(rank="A"), given))
    assert isinstance(event, CustomerRankChanged)
    assert (event.rank, event.previous_rank) == ("A", "B")


def test_the_first_rank_has_no_previous_rank_and_the_same_rank_again_emits_nothing() -> None:
    given = company()
    event = only(when(ChangeRank(rank="S"), given))
    assert isinstance(event, CustomerRankChanged)
    assert (event.rank, event.previous_rank) == ("S", None)
    assert when(ChangeRank(rank="S"), [*given, event]) == []


def test_tags_added_and_removed_emit_one_event_per_tag_and_skip_those_already_so() -> None:
    given = then(company(), tagged("展示会2024"), tagged("既存"), at=T1)
    events = when(ChangeTags(add=["重点顧客", "重点顧客", "既存"], remove=["展示会2024", "休眠"]), given)
    # 既存 is already there and 休眠 never was: neither emits anything.
    assert [(type(e), getattr(e, "tag", None)) for e in events] == [
        (CustomerTagged, "重点顧客"),
        (CustomerUntagged, "展示会2024"),
    ]


def test_adding_a_tag_already_there_and_removing_one_that_is_not_emits_nothing() -> None:
    given = then(company(), tagged("重点顧客"), at=T1)
    assert when(ChangeTags(add=["重点顧客"], remove=["休眠"]), given) == []


def test_the_same_tag_added_and_removed_at_once_is_rejected() -> None:
    with pytest.raises(DomainError) as error:
        when(ChangeTags(add=["重点顧客", "休眠"], remove=["休眠"]), company())
    assert error.value.field == "remove"
    assert error.value.status == 422


def test_interests_added_and_removed_emit_specific_events_and_fold_into_the_set() -> None:
    given = company()
    added = when(ChangeInterests(add=["クラウド会計", "勤怠管理"]), given)
    assert [(type(e), getattr(e, "interest", None)) for e in added] == [
        (MarketingInterestAdded, "クラウド会計"),
        (MarketingInterestAdded, "勤怠管理"),
    ]
    given = [*given, *added]
    removed = only(when(ChangeInterests(remove=["勤怠管理", "人事評価"]), given))
    assert isinstance(removed, MarketingInterestRemoved)
    assert removed.interest == "勤怠管理"
    assert state_of([*given, removed]).interests == {"クラウド会計"}
    assert when(ChangeInterests(add=["クラウド会計"]), [*given, removed]) == []


def test_joining_a_campaign_emits_campaign_joined_once() -> None:
    given = company()
    event = only(when(JoinCampaign(campaign="春の新生活キャンペーン2025"), given))
    assert isinstance(event, CampaignJoined)
    assert event.campaign == "春の新生活キャンペーン2025"
    assert when(JoinCampaign(campaign="春の新生活キャンペーン2025"), [*given, event]) == []


def test_granting_consent_emits_consent_granted_with_channel_purpose_and_source() -> None:
    event = only(when(RecordConsent(channel="email", granted=True, source="web-form"), person()))
    assert isinstance(event, ConsentGranted)
    assert (event.channel, event.purpose, event.source) == ("email", "newsletter", "web-form")


def test_consent_granted_then_withdrawn_folds_to_not_granted_with_the_withdrawal_source() -> None:
    given = person()
    granted = when(RecordConsent(channel="email", granted=True, source="web-form"), given, at=NOW - timedelta(days=30))
    given = [*given, *granted]
    withdrawn = only(when(RecordConsent(channel="email", granted=False, source="unsubscribe-link"), given))
    assert isinstance(withdrawn, ConsentWithdrawn)

    consent = state_of([*given, withdrawn]).consents[("email", "newsletter")]
    assert (consent.granted, consent.source, consent.at) == (False, "unsubscribe-link", NOW)


def test_consent_is_kept_per_channel() -> None:
    given = person()
    given = [*given, *when(RecordConsent(channel="post", granted=True, source="店頭"), given)]
    given = [*given, *when(RecordConsent(channel="email", granted=False, source="電話"), given)]
    consents = state_of(given).consents
    assert consents[("post", "newsletter")].granted is True
    assert consents[("email", "newsletter")].granted is False


def test_setting_payment_terms_emits_payment_terms_set_and_the_same_terms_again_nothing() -> None:
    given = company()
    event = only(when(SetPaymentTerms(payment_terms="月末締め翌月末払い"), given))
    assert isinstance(event, PaymentTermsSet)
    assert event.payment_terms == "月末締め翌月末払い"
    assert when(SetPaymentTerms(payment_terms="月末締め翌月末払い"), [*given, event]) == []


# --- effective dates --------------------------------------------------------------------------------------


def test_an_effective_date_sets_occurred_at_to_midnight_of_that_day_in_japan() -> None:
    event = only(when(ChangePhone(phone="06-1234-5678", effective_on=LAST_MONTH), company()))
    assert event.occurred_at == datetime(2025, 3, 15, 0, 0, tzinfo=JST)
    assert event.occurred_at == datetime(2025, 3, 14, 15, 0, tzinfo=UTC)


def test_a_change_effective_today_in_japan_is_accepted_while_it_is_still_yesterday_in_utc() -> None:
    night_in_tokyo = datetime(2025, 3, 31, 16, 0, tzinfo=UTC)  # 01:00 JST on 1 April
    event = only(when(ChangePhone(phone="06-1234-5678", effective_on=TODAY_IN_JAPAN), company(), at=night_in_tokyo))
    assert event.occurred_at == datetime(2025, 4, 1, tzinfo=JST)


# --- contact persons --------------------------------------------------------------------------------------


_ADDED_FIELDS = {
    "person_id",
    "name",
    "name_kana",
    "department",
    "title",
    "email",
    "phone",
    "decision_role",
    "interests",
}


def test_adding_a_contact_person_emits_contact_person_added_with_their_details() -> None:
    given = company()
    pid = new_id()
    command = AddContactPerson(
        person_id=pid,
        name="鈴木 一郎",
        name_kana="スズキ イチロウ",
        department="購買部",
        title="課長",
        email="Ichiro@ABC.example.co.jp",
        phone="090-1111-2222",
        decision_role="approver",
        interests=["クラウド会計"],
    )
    event = only(when(command, given))
    assert isinstance(event, ContactPersonAdded)
    assert event.model_dump(include=_ADDED_FIELDS) == {
        "person_id": pid,
        "name": "鈴木 一郎",
        "name_kana": "スズキ イチロウ",
        "department": "購買部",
        "title": "課長",
        "email": "Ichiro@abc.example.co.jp",
        "phone": "+819011112222",
        "decision_role": "approver",
        "interests": ["クラウド会計"],
    }
    person_now = state_of([*given, event]).persons[pid]
    assert (person_now.name, person_now.department, person_now.active) == ("鈴木 一郎", "購買部", True)


def test_a_contact_person_needs_an_id() -> None:
    with pytest.raises(DomainError) as error:
        when(AddContactPerson(name="鈴木 一郎"), company())
    assert error.value.field == "person_id"


def test_adding_the_same_contact_person_twice_is_rejected() -> None:
    pid = new_id()
    with pytest.raises(DomainError) as error:
        when(AddContactPerson(person_id=pid, name="鈴木 一郎"), with_contact(company(), pid))
    assert error.value.field == "person_id"


def test_changing_a_contact_persons_title_emits_title_changed_and_the_same_title_nothing() -> None:
    pid = new_id()
    given = with_contact(company(), pid)
    event = only(when(ForPerson(pid, ChangeContactPersonTitle(title="部長")), given))
    assert isinstance(event, ContactPersonTitleChanged)
    assert (event.person_id, event.title) == (pid, "部長")
    assert when(ForPerson(pid, ChangeContactPersonTitle(title="部長")), [*given, event]) == []


def test_moving_a_contact_person_emits_moved_department_with_the_previous_department() -> None:
    pid = new_id()
    event = only(when(ForPerson(pid, MoveContactPerson(department="経理部")), with_contact(company(), pid)))
    assert isinstance(event, ContactPersonMovedDepartment)
    assert (event.person_id, event.department, event.previous_department) == (pid, "経理部", "購買部")


def test_moving_with_a_new_title_also_emits_title_changed() -> None:
    pid = new_id()
    events = when(ForPerson(pid, MoveContactPerson(department="経理部", title="部長")), with_contact(company(), pid))
    assert [type(e) for e in events] == [ContactPersonMovedDepartment, ContactPersonTitleChanged]


def test_moving_to_the_same_department_emits_nothing() -> None:
    pid = new_id()
    assert when(ForPerson(pid, MoveContactPerson(department="購買部")), with_contact(company(), pid)) == []


def test_changing_contact_details_carries_both_values_keeping_the_one_not_named() -> None:
    pid = new_id()
    event = only(when(ForPerson(pid, ChangeContactPersonDetails(phone="090-3333-4444")), with_contact(company(), pid)))
    assert isinstance(event, ContactPersonContactDetailsChanged)
    assert (event.email, event.phone) == ("ichiro@example.co.jp", "+819033334444")


def test_the_same_contact_details_emit_nothing() -> None:
    pid = new_id()
    command = ForPerson(pid, ChangeContactPersonDetails(email="ichiro@EXAMPLE.co.jp"))
    assert when(command, with_contact(company(), pid)) == []


def test_changing_the_decision_role_emits_decision_role_changed_and_the_same_role_nothing() -> None:
    pid = new_id()
    given = with_contact(company(), pid, decision_role="influencer")
    event = only(when(ForPerson(pid, ChangeDecisionRole(decision_role="decision_maker")), given))
    assert isinstance(event, ContactPersonDecisionRoleChanged)
    assert event.decision_role == "decision_maker"
    assert when(ForPerson(pid, ChangeDecisionRole(decision_role="influencer")), given) == []


def test_a_contact_person_leaving_emits_left_company_with_the_reason() -> None:
    pid = new_id()
    event = only(when(ForPerson(pid, ContactPersonLeaves(reason="退職")), with_contact(company(), pid)))
    assert isinstance(event, ContactPersonLeftCompany)
    assert (event.person_id, event.reason) == (pid, "退職")


def test_a_contact_persons_history_folds_to_their_current_state_and_keeps_every_step() -> None:
    given = company()
    cid = given[0].customer_id
    pid = new_id()
    history: list[DomainEvent] = list(given)
    steps: list[tuple[Command, datetime]] = [
        (
            AddContactPerson(person_id=pid, name="鈴木 一郎", department="購買部", title="主任"),
            NOW - timedelta(days=90),
        ),
        (ForPerson(pid, MoveContactPerson(department="経理部", effective_on=date(2025, 2, 1))), NOW),
        (ForPerson(pid, ChangeContactPersonTitle(title="課長")), NOW + timedelta(days=1)),
        (ForPerson(pid, MoveContactPerson(department="経営企画部")), NOW + timedelta(days=2)),
        (ForPerson(pid, ContactPersonLeaves(reason="転職")), NOW + timedelta(days=3)),
    ]
    for command, at in steps:
        history.extend(when(command, history, at=at))

    final = state_of(history).persons[pid]
    assert (final.name, final.department, final.title, final.active) == ("鈴木 一郎", "経営企画部", "課長", False)
    assert final.left_at == NOW + timedelta(days=3)
    moves = [e for e in history if isinstance(e, ContactPersonMovedDepartment)]
    assert [(m.previous_department, m.department) for m in moves] == [("購買部", "経理部"), ("経理部", "経営企画部")]
    assert moves[0].occurred_at == datetime(2025, 2, 1, tzinfo=JST)
    assert [type(e) for e in history[1:]] == [
        ContactPersonAdded,
        ContactPersonMovedDepartment,
        ContactPersonTitleChanged,
        ContactPersonMovedDepartment,
        ContactPersonLeftCompany,
    ]
    assert all(e.customer_id == cid for e in history)


PERSON_COMMANDS: list[Any] = [
    ChangeContactPersonTitle(title="部長"),
    MoveContactPerson(department="経理部"),
    ChangeContactPersonDetails(phone="090-3333-4444"),
    ChangeDecisionRole(decision_role="decision_maker"),
    ContactPersonLeaves(reason="退職"),
]
PERSON_IDS = ["title", "move", "details", "decision-role", "leave"]


@pytest.mark.parametrize("command", PERSON_COMMANDS, ids=PERSON_IDS)
def test_a_command_for_an_unknown_contact_person_is_rejected_404(command: Any) -> None:
    with pytest.raises(UnknownContactPerson) as error:
        when(ForPerson(new_id(), command), with_contact(company(), new_id()))
    assert (error.value.status, error.value.field) == (404, "person_id")


@pytest.mark.parametrize("command", PERSON_COMMANDS, ids=PERSON_IDS)
def test_a_command_for_a_contact_person_who_left_is_rejected_409(command: Any) -> None:
    pid = new_id()
    given = with_contact(company(), pid)
    given = [*given, ContactPersonLeftCompany(customer_id=given[0].customer_id, occurred_at=NOW, person_id=pid)]
    with pytest.raises(ContactPersonHasLeft) as error:
        when(ForPerson(pid, command), given)
    assert error.value.status == 409


# --- rejections common to every command -------------------------------------------------------------------


def every_command(person_id: UUID, **common: Any) -> list[Command]:
    """One command of each kind that changes something on `company()` with contact person `person_id`."""
    return [
        RenameCustomer(name="株式会社ABCホールディングス", **common),
        ChangeAddress(address=AddressIn(prefecture="大阪府"), **common),
        ChangePhone(phone="06-1234-5678", **common),
        ChangeEmail(email="sales@abc.example.co.jp", **common),
        ChangeProfile(employee_count=200, **common),
        ChangeRank(rank="A", **common),
        ChangeTags(add=["重点顧客"], **common),
        ChangeInterests(add=["クラウド会計"], **common),
        JoinCampaign(campaign="春の新生活キャンペーン2025", **common),
        RecordConsent(channel="email", granted=True, source="web-form", **common),
        SetPaymentTerms(payment_terms="月末締め翌月末払い", **common),
        AddContactPerson(person_id=new_id(), name="高橋 美咲", **common),
        *(ForPerson(person_id, c.model_copy(update=common)) for c in PERSON_COMMANDS),
    ]


COMMAND_IDS = [
    "rename",
    "address",
    "phone",
    "email",
    "profile",
    "rank",
    "tags",
    "interests",
    "campaign",
    "consent",
    "payment-terms",
    "add-contact",
    *(f"contact-{i}" for i in PERSON_IDS),
]
PID = new_id()


def test_every_command_kind_is_covered() -> None:
    kinds = {t for t in get_args(Command) if t is not RegisterCustomer}
    assert {type(c) for c in every_command(PID)} == kinds


@pytest.mark.parametrize("command", every_command(PID), ids=COMMAND_IDS)
def test_every_command_changes_something_on_a_live_company(command: Command) -> None:
    assert when(command, with_contact(company(), PID)) != []


@pytest.mark.parametrize("command", every_command(PID), ids=COMMAND_IDS)
def test_every_command_on_an_unregistered_customer_is_rejected_404(command: Command) -> None:
    with pytest.raises(UnknownCustomer) as error:
        decide(command, Customer(id=new_id()), NOW)
    assert error.value.status == 404


@pytest.mark.parametrize("command", every_command(PID), ids=COMMAND_IDS)
def test_every_command_on_a_merged_away_customer_is_rejected_409_naming_the_survivor(command: Command) -> None:
    survivor_id = new_id()
    with pytest.raises(CustomerWasMerged) as error:
        when(command, merged_away(with_contact(company(), PID), survivor_id))
    assert error.value.status == 409
    assert error.value.extra["survivor_id"] == str(survivor_id)


@pytest.mark.parametrize("command", every_command(PID, effective_on=TOMORROW_IN_JAPAN), ids=COMMAND_IDS)
def test_every_command_effective_in_the_future_is_rejected_naming_effective_on(command: Command) -> None:
    with pytest.raises(DomainError) as error:
        when(command, with_contact(company(), PID))
    assert error.value.field == "effective_on"
    assert error.value.status == 422


@pytest.mark.parametrize("command", every_command(PID, effective_on=LAST_MONTH), ids=COMMAND_IDS)
def test_every_command_with_an_effective_date_records_it_as_midnight_in_japan(command: Command) -> None:
    events = when(command, with_contact(company(), PID))
    assert events
    assert {e.occurred_at for e in events} == {datetime.combine(LAST_MONTH, time(0, 0), tzinfo=JST)}


# --- fields and commands that do not fit the kind ----------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("corporate_number", NTA_CORPORATE_NUMBER),
        ("capital", "1000000"),
        ("employee_count", 10),
        ("fiscal_month", 3),
        ("representative", "佐藤 一郎"),
    ],
)
def test_company_only_profile_fields_on_a_person_are_rejected_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(DomainError) as error:
        when(ChangeProfile.model_validate({field: value}), person())
    assert (error.value.field, error.value.status) == (field, 422)


@pytest.mark.parametrize(("field", "value"), [("birth_date", "1980-01-01"), ("gender", "male"), ("occupation", "医師")])
def test_person_only_profile_fields_on_a_company_are_rejected_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(DomainError) as error:
        when(ChangeProfile.model_validate({field: value}), company())
    assert (error.value.field, error.value.status) == (field, 422)


@pytest.mark.parametrize(
    "command",
    [AddContactPerson(person_id=new_id(), name="高橋 美咲"), SetPaymentTerms(payment_terms="月末締め翌月末払い")],
    ids=["contact-person", "payment-terms"],
)
def test_company_only_commands_on_a_person_customer_are_rejected_naming_kind(command: Command) -> None:
    with pytest.raises(DomainError) as error:
        when(command, person())
    assert (error.value.field, error.value.status) == ("kind", 422)


# --- merge (名寄せ) ------------------------------------------------------------------------------------------


def duplicate_pair() -> tuple[list[DomainEvent], list[DomainEvent]]:
    """Two records of one company: the survivor's phone was set at T1, the absorbed one's at T2 (later)."""
    survivor = company(occurred_at=T1, phone="+81312345678", email=None, url=None)
    absorbed = company(
        occurred_at=T0,
        name="(株)ABC商事",
        name_kana=None,
        phone="+81300000000",
        email="info@abc.example.co.jp",
        industry="卸売",
        url=None,
    )
    absorbed = then(absorbed, phone("+81355556666"), at=T2)
    return survivor, absorbed


def test_merging_emits_customers_merged_on_the_survivor_and_merged_into_on_the_absorbed() -> None:
    survivor, absorbed = duplicate_pair()
    sid, aid = survivor[0].customer_id, absorbed[0].customer_id
    [merged], [into] = merge(survivor, absorbed)
    assert isinstance(merged, CustomersMerged)
    assert (merged.customer_id, merged.absorbed_id, merged.occurred_at) == (sid, aid, NOW)
    assert isinstance(into, CustomerMergedInto)
    assert (into.customer_id, into.survivor_id) == (aid, sid)
    assert state_of([*absorbed, into]).merged_into == sid


def test_by_default_the_most_recently_confirmed_value_wins_field_by_field() -> None:
    survivor, absorbed = duplicate_pair()
    [merged], _ = merge(survivor, absorbed)
    assert isinstance(merged, CustomersMerged)
    # phone: absorbed changed it at T2, after the survivor's registration at T1
    # name, industry: the survivor's (T1) are newer than the absorbed registration (T0)
    # email: only the absorbed has one; name_kana: only the survivor has one
    assert merged.field_choices["phone"] == "absorbed"
    assert merged.field_choices["name"] == "survivor"
    assert merged.field_choices["industry"] == "survivor"
    assert merged.field_choices["email"] == "absorbed"
    assert merged.field_choices["name_kana"] == "survivor"
    assert merged.taken == {"phone": "+81355556666", "email": "info@abc.example.co.jp"}
    assert merged.previous == {"phone": "+81312345678", "email": None}

    after = state_of([*survivor, merged])
    assert after.profile["phone"] == "+81355556666"
    assert after.profile["email"] == "info@abc.example.co.jp"
    assert after.name == "株式会社ABC商事"
    assert after.profile["industry"] == "卸売業"


def test_the_choice_of_every_field_with_a_value_on_either_side_is_recorded() -> None:
    survivor, absorbed = duplicate_pair()
    [merged], _ = merge(survivor, absorbed)
    assert isinstance(merged, CustomersMerged)
    with_a_value = {
        name
        for name in PROFILE_FIELDS
        if state_of(survivor).profile.get(name) is not None or state_of(absorbed).profile.get(name) is not None
    }
    assert set(merged.field_choices) == with_a_value


def test_the_newer_survivor_value_wins_when_the_survivor_changed_it_later() -> None:
    survivor, absorbed = duplicate_pair()
    survivor = then(survivor, phone("+81311112222"), at=NOW - timedelta(days=1))
    [merged], _ = merge(survivor, absorbed)
    assert isinstance(merged, CustomersMerged)
    assert merged.field_choices["phone"] == "survivor"
    assert "phone" not in merged.taken


def test_an_explicit_field_choice_overrides_the_default_rule() -> None:
    survivor, absorbed = duplicate_pair()
    [merged], _ = merge(survivor, absorbed, phone="survivor", name="absorbed")
    assert isinstance(merged, CustomersMerged)
    assert merged.field_choices["phone"] == "survivor"
    assert merged.field_choices["name"] == "absorbed"
    after = state_of([*survivor, merged])
    assert after.profile["phone"] == "+81312345678"
    assert after.name == "(株)ABC商事"


def test_equal_values_are_kept_from_the_survivor_and_not_taken() -> None:
    survivor = company(occurred_at=T0)
    absorbed = company(occurred_at=T2)
    [merged], _ = merge(survivor, absorbed)
    assert isinstance(merged, CustomersMerged)
    assert set(merged.field_choices.values()) == {"survivor"}
    assert merged.taken == {}


def test_a_merge_unions_tags_interests_and_contact_persons() -> None:
    survivor, absorbed = duplicate_pair()
    shared, theirs, left = new_id(), new_id(), new_id()
    survivor = with_contact(survivor, shared)
    survivor = then(survivor, CustomerTagged(customer_id=new_id(), occurred_at=NOW, tag="重点顧客"), at=T1)
    survivor = then(survivor, MarketingInterestAdded(customer_id=new_id(), occurred_at=NOW, interest="会計"), at=T1)
    absorbed = with_contact(absorbed, theirs, name="高橋 美咲", department="経理部", decision_role="decision_maker")
    absorbed = with_contact(absorbed, left, name="田中 次郎")
    absorbed = then(absorbed, ContactPersonLeftCompany(customer_id=new_id(), occurred_at=NOW, person_id=left), at=T2)
    for tag in ("重点顧客", "展示会2024"):
        absorbed = then(absorbed, CustomerTagged(customer_id=new_id(), occurred_at=NOW, tag=tag), at=T0)
    absorbed = then(absorbed, MarketingInterestAdded(customer_id=new_id(), occurred_at=NOW, interest="勤怠"), at=T0)

    [merged], _ = merge(survivor, absorbed)
    assert isinstance(merged, CustomersMerged)
    assert merged.added_tags == ["展示会2024"]
    assert merged.added_interests == ["勤怠"]
    assert set(merged.added_person_ids) == {theirs, left}

    after = state_of([*survivor, merged])
    assert after.tags == {"重点顧客", "展示会2024"}
    assert after.interests == {"会計", "勤怠"}
    assert set(after.persons) == {shared, theirs, left}
    # The merged-in contact persons arrive as the absorbed customer knew them, history included.
    assert after.persons[theirs] == state_of(absorbed).persons[theirs]
    assert after.persons[left] == state_of(absorbed).persons[left]
    assert after.persons[left].left_at == T2


def test_a_birth_date_taken_in_a_merge_stays_a_date_so_the_same_date_again_changes_nothing() -> None:
    survivor = person(occurred_at=T0)
    absorbed = person(occurred_at=T2, birth_date=date(1985, 6, 16))
    [merged], _ = merge(survivor, absorbed)
    assert isinstance(merged, CustomersMerged)
    assert merged.taken == {"birth_date": "1985-06-16"}  # JSON in the event
    after = [*survivor, merged]
    assert state_of(after).profile["birth_date"] == date(1985, 6, 16)
    assert when(ChangeProfile(birth_date=date(1985, 6, 16)), after) == []


def test_a_customer_cannot_be_merged_into_itself() -> None:
    given = company()
    with pytest.raises(DomainError) as error:
        merge(given, given)
    assert (error.value.field, error.value.status) == ("absorbed_id", 422)


def test_merging_an_already_merged_customer_is_rejected_naming_its_survivor() -> None:
    survivor, absorbed = duplicate_pair()
    elsewhere = new_id()
    with pytest.raises(CustomerWasMerged) as error:
        merge(survivor, merged_away(absorbed, elsewhere))
    assert error.value.extra["survivor_id"] == str(elsewhere)


def test_second_merge_of_the_same_pair_is_rejected() -> None:
    survivor, absorbed = duplicate_pair()
    merged, into = merge(survivor, absorbed)
    with pytest.raises(CustomerWasMerged):
        merge([*survivor, *merged], [*absorbed, *into])


def test_merging_into_a_merged_away_customer_is_rejected() -> None:
    survivor, absorbed = duplicate_pair()
    with pytest.raises(CustomerWasMerged):
        merge(merged_away(survivor, new_id()), absorbed)


def test_merging_an_unregistered_customer_is_rejected_404() -> None:
    survivor, _ = duplicate_pair()
    with pytest.raises(UnknownCustomer) as error:
        decide_merge(MergeCustomer(absorbed_id=(ghost := new_id())), state_of(survivor), Customer(id=ghost), NOW)
    assert error.value.field == "absorbed_id"


def test_a_company_and_a_person_cannot_be_merged() -> None:
    with pytest.raises(DomainError) as error:
        merge(company(), person())
    assert error.value.field == "absorbed_id"
    with pytest.raises(DomainError):
        merge(person(), company())


def test_a_field_choice_for_a_field_that_cannot_be_merged_is_rejected_naming_it() -> None:
    survivor, absorbed = duplicate_pair()
    with pytest.raises(DomainError) as error:
        merge(survivor, absorbed, tags="absorbed")
    assert error.value.field == "fields.tags"


# --- unmerge -------------------------------------------------------------------------------------------------


def merged_pair() -> tuple[list[DomainEvent], list[DomainEvent]]:
    """A duplicate pair with tags, interests and contact persons on both sides, merged at NOW - 10 days."""
    survivor, absorbed = duplicate_pair()
    survivor = with_contact(survivor, new_id())
    survivor = then(survivor, CustomerTagged(customer_id=new_id(), occurred_at=NOW, tag="重点顧客"), at=T1)
    absorbed = with_contact(absorbed, new_id(), name="高橋 美咲")
    absorbed = then(absorbed, CustomerTagged(customer_id=new_id(), occurred_at=NOW, tag="展示会2024"), at=T0)
    absorbed = then(absorbed, MarketingInterestAdded(customer_id=new_id(), occurred_at=NOW, interest="勤怠"), at=T0)
    merged, into = merge(survivor, absorbed, at=NOW - timedelta(days=10), industry="absorbed")
    return [*survivor, *merged], [*absorbed, *into]


def test_unmerge_emits_customers_unmerged_and_unmerged_from() -> None:
    survivor, absorbed = merged_pair()
    [unmerged], [apart] = unmerge(survivor, absorbed)
    assert isinstance(unmerged, CustomersUnmerged)
    assert unmerged.absorbed_id == absorbed[0].customer_id
    assert unmerged.restored == {"phone": "+81312345678", "email": None, "industry": "卸売業"}
    assert unmerged.removed_tags == ["展示会2024"]
    assert unmerged.removed_interests == ["勤怠"]
    assert isinstance(apart, CustomerUnmergedFrom)
    assert apart.survivor_id == survivor[0].customer_id


def test_unmerge_restores_the_survivor_exactly_as_it_was_before_the_merge() -> None:
    survivor, absorbed = merged_pair()
    before = state_of([e for e in survivor if not isinstance(e, CustomersMerged)])
    merged_state = state_of(survivor)
    assert merged_state.profile != before.profile
    assert merged_state.tags != before.tags

    unmerged, _ = unmerge(survivor, absorbed)
    after = state_of([*survivor, *unmerged])

    assert after.profile == before.profile
    assert after.confirmed_at == before.confirmed_at
    assert after.tags == before.tags
    assert after.interests == before.interests
    assert after.persons == before.persons
    assert after.merges == {}


def test_after_unmerge_the_absorbed_customer_is_live_again_as_it_was() -> None:
    survivor, absorbed = merged_pair()
    before = state_of([e for e in absorbed if not isinstance(e, CustomerMergedInto)])
    _, apart = unmerge(survivor, absorbed)
    after = state_of([*absorbed, *apart])

    assert after.merged_into is None
    assert (after.profile, after.tags, after.interests, after.persons) == (
        before.profile,
        before.tags,
        before.interests,
        before.persons,
    )
    assert when(ChangePhone(phone="06-1234-5678"), [*absorbed, *apart]) != []


def test_a_value_changed_on_the_survivor_after_the_merge_is_kept_by_unmerge() -> None:
    survivor, absorbed = merged_pair()
    survivor = then(survivor, phone("+81399998888"), at=NOW - timedelta(days=5))
    [unmerged], _ = unmerge(survivor, absorbed)
    assert isinstance(unmerged, CustomersUnmerged)
    assert "phone" not in unmerged.restored
    after = state_of([*survivor, unmerged])
    assert after.profile["phone"] == "+81399998888"
    assert after.profile["industry"] == "卸売業"  # not touched since the merge: given back


def test_a_merge_undone_and_done_again_decides_the_same_field_choices() -> None:
    survivor, absorbed = duplicate_pair()
    [first], into = merge(survivor, absorbed, at=NOW - timedelta(days=10))
    unmerged, apart = unmerge([*survivor, first], [*absorbed, *into], at=NOW - timedelta(days=5))
    [again], _ = merge([*survivor, first, *unmerged], [*absorbed, *into, *apart])
    assert isinstance(first, CustomersMerged)
    assert isinstance(again, CustomersMerged)
    assert again.field_choices == first.field_choices
    assert again.taken == first.taken


def test_unmerging_a_pair_that_is_not_merged_is_rejected() -> None:
    survivor, absorbed = duplicate_pair()
    with pytest.raises(NotMerged) as error:
        unmerge(survivor, absorbed)
    assert (error.value.status, error.value.field) == (409, "absorbed_id")


def test_unmerging_twice_is_rejected() -> None:
    survivor, absorbed = merged_pair()
    unmerged, apart = unmerge(survivor, absorbed)
    with pytest.raises(NotMerged):
        unmerge([*survivor, *unmerged], [*absorbed, *apart])


def test_unmerging_from_the_wrong_survivor_is_rejected() -> None:
    _, absorbed = merged_pair()
    with pytest.raises(NotMerged):
        unmerge(company(), absorbed)


# --- property: merge then unmerge gives the survivor back ------------------------------------------------

_PHONES = st.sampled_from(["+81312345678", "+81612345678", "+819012345678", "+815012345678"])
_EMAILS = st.sampled_from(["a@example.jp", "b@example.jp", "c@example.co.jp"])
_TEXT = st.text(alphabet="アイウエオカキ株式会社", min_size=1, max_size=6)
_MOMENTS = st.integers(min_value=1, max_value=1000).map(lambda days: NOW - timedelta(days=days))
_ADDRESSES = st.builds(
    PostalAddress,
    postal_code=st.sampled_from(["100-0001", "530-0001"]),
    prefecture=st.sampled_from(["東京都", "大阪府"]),
    city=st.none() | _TEXT,
)

_COMMON_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "name_kana": _TEXT,
    "phone": _PHONES,
    "email": _EMAILS,
    "address": _ADDRESSES,
    "url": st.sampled_from(["https://a.example.jp/", "https://b.example.jp/"]),
    "industry": _TEXT,
}
_KIND_FIELDS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "company": {
        "corporate_number": st.sampled_from([NTA_CORPORATE_NUMBER, None]),
        "capital": st.sampled_from(["1000000", "50000000"]),
        "employee_count": st.integers(min_value=0, max_value=5000),
        "fiscal_month": st.integers(min_value=1, max_value=12),
        "representative": _TEXT,
    },
    "person": {
        "birth_date": st.dates(min_value=date(1930, 1, 1), max_value=date(2010, 12, 31)),
        "gender": st.sampled_from(["female", "male", "other"]),
        "occupation": _TEXT,
    },
}


@st.composite
def customer_history(draw: st.DrawFn, kind: str) -> list[DomainEvent]:
    """A customer registered with random optional fields, then random changes at random moments."""
    cid = new_id()
    fields = {**_COMMON_FIELDS, **_KIND_FIELDS[kind]}
    values = {name: draw(st.none() | strategy) for name, strategy in fields.items()}
    registered_at = draw(_MOMENTS)
    events: list[DomainEvent] = [registered(cid, name=draw(_TEXT), occurred_at=registered_at, kind=kind, **values)]
    changes = draw(st.lists(st.sampled_from(["phone", "email", "rank", "tag", "interest", "person", "address"])))
    moments = sorted(draw(st.lists(_MOMENTS, min_size=len(changes), max_size=len(changes))))
    for change, at in zip(changes, moments, strict=True):
        at = max(at, registered_at)
        if change == "phone":
            events.append(CustomerPhoneChanged(customer_id=cid, occurred_at=at, phone=draw(st.none() | _PHONES)))
        elif change == "email":
            events.append(CustomerEmailChanged(customer_id=cid, occurred_at=at, email=draw(_EMAILS)))
        elif change == "address":
            events.append(CustomerAddressChanged(customer_id=cid, occurred_at=at, address=draw(_ADDRESSES)))
        elif change == "rank":
            events.append(CustomerRankChanged(customer_id=cid, occurred_at=at, rank=draw(st.sampled_from("SABC"))))
        elif change == "tag":
            events.append(CustomerTagged(customer_id=cid, occurred_at=at, tag=draw(st.sampled_from(["x", "y", "z"]))))
        elif change == "interest":
            interest = draw(st.sampled_from(["会計", "勤怠"]))
            events.append(MarketingInterestAdded(customer_id=cid, occurred_at=at, interest=interest))
        elif kind == "company":
            events.append(contact_person_added(cid, occurred_at=at, name=draw(_TEXT)))
    return events


@st.composite
def duplicate_histories(draw: st.DrawFn) -> tuple[list[DomainEvent], list[DomainEvent], dict[str, str]]:
    kind = draw(st.sampled_from(["company", "person"]))
    choices = draw(st.dictionaries(st.sampled_from(PROFILE_FIELDS), st.sampled_from(["survivor", "absorbed"])))
    return draw(customer_history(kind)), draw(customer_history(kind)), choices


@settings(max_examples=200, deadline=None)
@for_all(duplicate_histories())
def test_for_any_histories_merge_then_unmerge_gives_back_the_survivor_as_before(
    pair: tuple[list[DomainEvent], list[DomainEvent], dict[str, str]],
) -> None:
    survivor, absorbed, choices = pair
    before = state_of(survivor)
    command = MergeCustomer.model_validate({"absorbed_id": absorbed[0].customer_id, "fields": choices})
    merged, into = decide_merge(command, before, state_of(absorbed), NOW)
    survivor, absorbed = [*survivor, *merged], [*absorbed, *into]
    unmerged, apart = unmerge(survivor, absorbed)
    after = state_of([*survivor, *unmerged])

    assert after.profile == before.profile
    assert after.confirmed_at == before.confirmed_at
    assert (after.tags, after.interests, after.persons) == (before.tags, before.interests, before.persons)
    assert state_of([*absorbed, *apart]).merged_into is None
