"""The customer aggregate (stream customer-<uuid>): state, decide and evolve."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Literal, assert_never
from uuid import UUID

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
    CustomerErased,
    CustomerFiscalMonthChanged,
    CustomerHeadcountChanged,
    CustomerIndustryChanged,
    CustomerMergedInto,
    CustomerPersonalDetailsChanged,
    CustomerPhoneChanged,
    CustomerRankChanged,
    CustomerRegistered,
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

from crm_contacts.domain.commands import (
    COMPANY_ONLY,
    PERSON_ONLY,
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
    EraseCustomer,
    JoinCampaign,
    MergeCustomer,
    MoveContactPerson,
    RecordConsent,
    RegisterCustomer,
    RenameCustomer,
    SetPaymentTerms,
    UnmergeCustomer,
)

__all__ = [
    "COMPANY_ONLY",
    "JST",
    "PERSON_ONLY",
    "AddressIn",
    "Customer",
    "CustomerAlreadyExists",
    "DomainError",
    "RegisterCustomer",
    "decide",
    "evolve",
    "fold",
    "stream_id",
]

# Dates in this domain are Japanese calendar dates: "today" and effective dates are in JST
# (UTC+9, no DST), so a change effective "today" at 01:00 JST is not "in the future".
JST = timezone(timedelta(hours=9), "JST")

#: Profile fields a merge chooses between, field by field.
PROFILE_FIELDS = (
    "name",
    "name_kana",
    "address",
    "phone",
    "email",
    "url",
    "industry",
    "corporate_number",
    "capital",
    "employee_count",
    "fiscal_month",
    "representative",
    "birth_date",
    "gender",
    "occupation",
    "rank",
    "payment_terms",
)


class DomainError(Exception):
    """A command the customer aggregate rejects (422 unless a subclass says otherwise)."""

    status = 422

    def __init__(self, message: str, field: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.field = field
        self.extra = extra


class CustomerAlreadyExists(DomainError):
    """Registering a customer id that is already taken."""

    status = 409


class UnknownCustomer(DomainError):
    """The customer does not exist."""

    status = 404


class CustomerWasMerged(DomainError):
    """The customer was merged into another: commands go to the survivor."""

    status = 409


class UnknownContactPerson(DomainError):
    """No such contact person at this customer."""

    status = 404


class ContactPersonHasLeft(DomainError):
    """The contact person left the company; their record is history now."""

    status = 409


class CustomerWasErased(DomainError):
    """The customer's personal data was erased: the record takes no more commands."""

    status = 410


class NotMerged(DomainError):
    """Unmerging a pair that is not merged."""

    status = 409


@dataclass(frozen=True)
class ContactPerson:
    """A person at a company customer."""

    id: UUID
    name: str
    name_kana: str | None = None
    department: str | None = None
    title: str | None = None
    email: str | None = None
    phone: str | None = None
    decision_role: str | None = None
    interests: tuple[str, ...] = ()
    active: bool = True
    left_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "person_id": str(self.id),
            "name": self.name,
            "name_kana": self.name_kana,
            "department": self.department,
            "title": self.title,
            "email": self.email,
            "phone": self.phone,
            "decision_role": self.decision_role,
            "interests": list(self.interests),
            "active": self.active,
            "left_at": self.left_at.isoformat() if self.left_at else None,
        }


@dataclass(frozen=True)
class Consent:
    """The latest consent decision for one channel and purpose."""

    granted: bool
    source: str
    at: datetime


@dataclass(frozen=True)
class MergeRecord:
    """What a merge changed on the survivor, so that it can be reversed."""

    taken: dict[str, Any]
    previous: dict[str, Any]
    added_tags: tuple[str, ...]
    added_interests: tuple[str, ...]
    added_person_ids: tuple[UUID, ...]
    #: When the survivor's replaced values had been confirmed; a field it had no value for is absent.
    confirmed_before: dict[str, datetime] = field(default_factory=dict)


@dataclass(frozen=True)
class Customer:
    """What the write side knows of a customer."""

    id: UUID
    registered: bool = False
    kind: str | None = None
    profile: dict[str, Any] = field(default_factory=dict)
    confirmed_at: dict[str, datetime] = field(default_factory=dict)
    external_id: str | None = None
    tags: frozenset[str] = frozenset()
    interests: frozenset[str] = frozenset()
    campaigns: tuple[str, ...] = ()
    consents: dict[tuple[str, str], Consent] = field(default_factory=dict)
    persons: dict[UUID, ContactPerson] = field(default_factory=dict)
    merged_into: UUID | None = None
    merges: dict[UUID, MergeRecord] = field(default_factory=dict)
    #: Personal data erased: recorded by CustomerErased, or the data key is gone (nothing can be decrypted).
    erased: bool = False
    erasure_recorded: bool = False
    version: int = 0

    @property
    def name(self) -> str | None:
        """Current name."""
        value = self.profile.get("name")
        return None if value is None else str(value)

    @property
    def name_kana(self) -> str | None:
        """Current kana reading."""
        value = self.profile.get("name_kana")
        return None if value is None else str(value)


@dataclass(frozen=True)
class ForPerson:
    """A command addressed to one contact person of the customer."""

    person_id: UUID
    command: (
        ChangeContactPersonTitle
        | MoveContactPerson
        | ChangeContactPersonDetails
        | ChangeDecisionRole
        | (ContactPersonLeaves)
    )


CustomerCommand = (
    RegisterCustomer
    | RenameCustomer
    | ChangeAddress
    | ChangePhone
    | ChangeEmail
    | ChangeProfile
    | ChangeRank
    | ChangeTags
    | ChangeInterests
    | JoinCampaign
    | RecordConsent
    | SetPaymentTerms
    | AddContactPerson
    | ForPerson
)
Command = CustomerCommand


def _when(effective_on: date | None, now: datetime) -> datetime:
    if effective_on is None:
        return now
    if effective_on > now.astimezone(JST).date():
        raise DomainError("the effective date is in the future", field="effective_on")
    return datetime.combine(effective_on, time(0, 0), tzinfo=JST)


def _address(value: AddressIn | None) -> PostalAddress | None:
    return None if value is None else PostalAddress(**value.model_dump())


def _live(state: Customer) -> None:
    if not state.registered:
        raise UnknownCustomer(f"customer {state.id} does not exist", field="id")
    if state.erased:
        raise CustomerWasErased(f"customer {state.id} was erased", field="id")
    if state.merged_into is not None:
        raise CustomerWasMerged(
            f"customer {state.id} was merged into {state.merged_into}",
            field="id",
            survivor_id=str(state.merged_into),
        )


def _company(state: Customer, what: str) -> None:
    if state.kind != "company":
        raise DomainError(f"{what} apply to company customers only", field="kind")


def _person(state: Customer, person_id: UUID) -> ContactPerson:
    person = state.persons.get(person_id)
    if person is None:
        raise UnknownContactPerson(f"no contact person {person_id} at customer {state.id}", field="person_id")
    if not person.active:
        raise ContactPersonHasLeft(f"contact person {person_id} left the company", field="person_id")
    return person


def _register(cmd: RegisterCustomer, state: Customer, now: datetime) -> list[DomainEvent]:
    if state.registered:
        raise CustomerAlreadyExists(f"customer {state.id} is already registered", field="id")
    if cmd.birth_date is not None and cmd.birth_date > now.astimezone(JST).date():
        raise DomainError("birth date is in the future", field="birth_date")
    fields = cmd.model_dump(exclude={"address", "capital"})
    return [
        CustomerRegistered(
            customer_id=state.id,
            occurred_at=now,
            address=_address(cmd.address),
            capital=None if cmd.capital is None else str(cmd.capital),
            **fields,
        )
    ]


def _profile_events(cmd: ChangeProfile, state: Customer, at: datetime) -> list[DomainEvent]:
    wrong = PERSON_ONLY if state.kind == "company" else COMPANY_ONLY
    for name in sorted(cmd.model_fields_set & set(wrong)):
        raise DomainError(f"{name} does not apply to a {state.kind}", field=name)
    changed = {
        name: getattr(cmd, name)
        for name in sorted(cmd.model_fields_set - {"effective_on"})
        if _plain(getattr(cmd, name)) != state.profile.get(name)
    }
    cid = state.id
    events: list[DomainEvent] = []
    simple: dict[str, Any] = {
        "url": lambda v: CustomerWebsiteChanged(customer_id=cid, occurred_at=at, url=v),
        "industry": lambda v: CustomerIndustryChanged(customer_id=cid, occurred_at=at, industry=v),
        "corporate_number": lambda v: CustomerCorporateNumberAssigned(
            customer_id=cid, occurred_at=at, corporate_number=v
        ),
        "capital": lambda v: CustomerCapitalChanged(
            customer_id=cid, occurred_at=at, capital=None if v is None else str(v)
        ),
        "employee_count": lambda v: CustomerHeadcountChanged(customer_id=cid, occurred_at=at, employee_count=v),
        "fiscal_month": lambda v: CustomerFiscalMonthChanged(customer_id=cid, occurred_at=at, fiscal_month=v),
        "representative": lambda v: CustomerRepresentativeChanged(customer_id=cid, occurred_at=at, representative=v),
    }
    for name, value in changed.items():
        if name in simple:
            events.append(simple[name](value))
    personal = [n for n in PERSON_ONLY if n in changed]
    if personal:
        if "birth_date" in changed and changed["birth_date"] and changed["birth_date"] > at.astimezone(JST).date():
            raise DomainError("birth date is in the future", field="birth_date")
        events.append(
            CustomerPersonalDetailsChanged(
                customer_id=cid,
                occurred_at=at,
                changed=personal,
                birth_date=cmd.birth_date if "birth_date" in changed else state.profile.get("birth_date"),
                gender=cmd.gender if "gender" in changed else state.profile.get("gender"),
                occupation=cmd.occupation if "occupation" in changed else state.profile.get("occupation"),
            )
        )
    return events


def _plain(value: Any) -> Any:
    """A command value in the form state keeps it (decimals as strings, dates as dates)."""
    from decimal import Decimal

    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, AddressIn):
        return PostalAddress(**value.model_dump()).model_dump()
    return value


def decide(command: Command, state: Customer, now: datetime) -> list[DomainEvent]:
    """The events a command produces on a customer, or a DomainError."""
    if isinstance(command, RegisterCustomer):
        return _register(command, state, now)
    _live(state)
    cid = state.id
    match command:
        case RegisterCustomer():
            raise AssertionError("handled above")
        case RenameCustomer():
            at = _when(command.effective_on, now)
            if command.name == state.name and command.name_kana == state.name_kana:
                return []
            return [CustomerRenamed(customer_id=cid, occurred_at=at, name=command.name, name_kana=command.name_kana)]
        case ChangeAddress():
            at = _when(command.effective_on, now)
            if _plain(command.address) == state.profile.get("address"):
                return []
            return [CustomerAddressChanged(customer_id=cid, occurred_at=at, address=_address(command.address))]
        case ChangePhone():
            at = _when(command.effective_on, now)
            if command.phone == state.profile.get("phone"):
                return []
            return [CustomerPhoneChanged(customer_id=cid, occurred_at=at, phone=command.phone)]
        case ChangeEmail():
            at = _when(command.effective_on, now)
            if command.email == state.profile.get("email"):
                return []
            return [CustomerEmailChanged(customer_id=cid, occurred_at=at, email=command.email)]
        case ChangeProfile():
            return _profile_events(command, state, _when(command.effective_on, now))
        case ChangeRank():
            at = _when(command.effective_on, now)
            previous = state.profile.get("rank")
            if command.rank == previous:
                return []
            return [CustomerRankChanged(customer_id=cid, occurred_at=at, rank=command.rank, previous_rank=previous)]
        case ChangeTags():
            at = _when(command.effective_on, now)
            overlap = set(command.add) & set(command.remove)
            if overlap:
                raise DomainError(f"tags both added and removed: {sorted(overlap)}", field="remove")
            tagged: list[DomainEvent] = [
                CustomerTagged(customer_id=cid, occurred_at=at, tag=t)
                for t in dict.fromkeys(command.add)
                if t not in state.tags
            ]
            untagged: list[DomainEvent] = [
                CustomerUntagged(customer_id=cid, occurred_at=at, tag=t)
                for t in dict.fromkeys(command.remove)
                if t in state.tags
            ]
            return tagged + untagged
        case ChangeInterests():
            at = _when(command.effective_on, now)
            added: list[DomainEvent] = [
                MarketingInterestAdded(customer_id=cid, occurred_at=at, interest=i)
                for i in dict.fromkeys(command.add)
                if i not in state.interests
            ]
            removed: list[DomainEvent] = [
                MarketingInterestRemoved(customer_id=cid, occurred_at=at, interest=i)
                for i in dict.fromkeys(command.remove)
                if i in state.interests
            ]
            return added + removed
        case JoinCampaign():
            at = _when(command.effective_on, now)
            if command.campaign in state.campaigns:
                return []
            return [CampaignJoined(customer_id=cid, occurred_at=at, campaign=command.campaign)]
        case RecordConsent():
            at = _when(command.effective_on, now)
            event_type = ConsentGranted if command.granted else ConsentWithdrawn
            return [
                event_type(
                    customer_id=cid,
                    occurred_at=at,
                    channel=command.channel,
                    purpose=command.purpose,
                    source=command.source,
                )
            ]
        case SetPaymentTerms():
            _company(state, "payment terms")
            at = _when(command.effective_on, now)
            if command.payment_terms == state.profile.get("payment_terms"):
                return []
            return [PaymentTermsSet(customer_id=cid, occurred_at=at, payment_terms=command.payment_terms)]
        case AddContactPerson():
            _company(state, "contact persons")
            at = _when(command.effective_on, now)
            if command.person_id is None:
                raise DomainError("a new contact person needs an id", field="person_id")
            if command.person_id in state.persons:
                raise DomainError(f"contact person {command.person_id} already exists", field="person_id")
            return [
                ContactPersonAdded(
                    customer_id=cid,
                    occurred_at=at,
                    **command.model_dump(exclude={"effective_on"}),
                )
            ]
        case ForPerson():
            return _decide_person(command, state, now)
        case _:
            assert_never(command)


def _decide_person(wrapped: ForPerson, state: Customer, now: datetime) -> list[DomainEvent]:
    person = _person(state, wrapped.person_id)
    cid, pid = state.id, wrapped.person_id
    command = wrapped.command
    at = _when(command.effective_on, now)
    match command:
        case ChangeContactPersonTitle():
            if command.title == person.title:
                return []
            return [ContactPersonTitleChanged(customer_id=cid, occurred_at=at, person_id=pid, title=command.title)]
        case MoveContactPerson():
            events: list[DomainEvent] = []
            if command.department != person.department:
                events.append(
                    ContactPersonMovedDepartment(
                        customer_id=cid,
                        occurred_at=at,
                        person_id=pid,
                        department=command.department,
                        previous_department=person.department,
                    )
                )
            if "title" in command.model_fields_set and command.title != person.title:
                events.append(
                    ContactPersonTitleChanged(customer_id=cid, occurred_at=at, person_id=pid, title=command.title)
                )
            return events
        case ChangeContactPersonDetails():
            email = command.email if "email" in command.model_fields_set else person.email
            phone = command.phone if "phone" in command.model_fields_set else person.phone
            if (email, phone) == (person.email, person.phone):
                return []
            return [
                ContactPersonContactDetailsChanged(
                    customer_id=cid, occurred_at=at, person_id=pid, email=email, phone=phone
                )
            ]
        case ChangeDecisionRole():
            if command.decision_role == person.decision_role:
                return []
            return [
                ContactPersonDecisionRoleChanged(
                    customer_id=cid, occurred_at=at, person_id=pid, decision_role=command.decision_role
                )
            ]
        case ContactPersonLeaves():
            return [ContactPersonLeftCompany(customer_id=cid, occurred_at=at, person_id=pid, reason=command.reason)]
        case _:
            assert_never(command)


def _merge_value(state: Customer, name: str) -> Any:
    return state.profile.get(name)


def decide_merge(
    command: MergeCustomer, survivor: Customer, absorbed: Customer, now: datetime
) -> tuple[list[DomainEvent], list[DomainEvent]]:
    """Events for the survivor and for the absorbed customer of a merge (名寄せ)."""
    _live(survivor)
    if command.absorbed_id == survivor.id:
        raise DomainError("a customer cannot be merged into itself", field="absorbed_id")
    if not absorbed.registered:
        raise UnknownCustomer(f"customer {absorbed.id} does not exist", field="absorbed_id")
    if absorbed.erased:
        raise CustomerWasErased(f"customer {absorbed.id} was erased", field="absorbed_id")
    if absorbed.merged_into is not None:
        raise CustomerWasMerged(
            f"customer {absorbed.id} was already merged into {absorbed.merged_into}",
            field="absorbed_id",
            survivor_id=str(absorbed.merged_into),
        )
    if absorbed.kind != survivor.kind:
        raise DomainError("a company and a person cannot be merged", field="absorbed_id")
    unknown = set(command.fields) - set(PROFILE_FIELDS)
    if unknown:
        raise DomainError(f"not a mergeable field: {sorted(unknown)[0]}", field=f"fields.{sorted(unknown)[0]}")
    at = _when(command.effective_on, now)
    choices: dict[str, Literal["survivor", "absorbed"]] = {}
    taken: dict[str, Any] = {}
    previous: dict[str, Any] = {}
    for name in PROFILE_FIELDS:
        mine, theirs = _merge_value(survivor, name), _merge_value(absorbed, name)
        if mine is None and theirs is None:
            continue
        if name in command.fields:
            choice = command.fields[name]
        elif theirs is None or mine == theirs:
            choice = "survivor"
        elif mine is None:
            choice = "absorbed"
        else:
            # Default rule: the most recently confirmed value wins, field by field.
            mine_at = survivor.confirmed_at.get(name, datetime.min.replace(tzinfo=JST))
            theirs_at = absorbed.confirmed_at.get(name, datetime.min.replace(tzinfo=JST))
            choice = "absorbed" if theirs_at > mine_at else "survivor"
        choices[name] = choice
        if choice == "absorbed" and theirs != mine:
            taken[name] = _json(theirs)
            previous[name] = _json(mine)
    added_persons = [p for pid, p in absorbed.persons.items() if pid not in survivor.persons]
    survivor_events: list[DomainEvent] = [
        CustomersMerged(
            customer_id=survivor.id,
            occurred_at=at,
            absorbed_id=absorbed.id,
            field_choices=choices,
            taken=taken,
            previous=previous,
            added_tags=sorted(absorbed.tags - survivor.tags),
            added_interests=sorted(absorbed.interests - survivor.interests),
            added_person_ids=[p.id for p in added_persons],
            added_persons=[p.as_dict() for p in added_persons],
        )
    ]
    absorbed_events: list[DomainEvent] = [
        CustomerMergedInto(customer_id=absorbed.id, occurred_at=at, survivor_id=survivor.id)
    ]
    return survivor_events, absorbed_events


def decide_unmerge(
    command: UnmergeCustomer, survivor: Customer, absorbed: Customer, now: datetime
) -> tuple[list[DomainEvent], list[DomainEvent]]:
    """Events that reverse a merge, for the survivor and for the absorbed customer."""
    _live(survivor)
    record = survivor.merges.get(command.absorbed_id)
    if record is None or absorbed.merged_into != survivor.id:
        raise NotMerged(f"customer {command.absorbed_id} is not merged into {survivor.id}", field="absorbed_id")
    at = _when(command.effective_on, now)
    # Give back only what still carries the merged-in value; later deliberate changes stay.
    restored = {
        name: record.previous.get(name)
        for name, value in record.taken.items()
        if _json(survivor.profile.get(name)) == value
    }
    return (
        [
            CustomersUnmerged(
                customer_id=survivor.id,
                occurred_at=at,
                absorbed_id=command.absorbed_id,
                restored=restored,
                removed_tags=[t for t in record.added_tags if t in survivor.tags],
                removed_interests=[i for i in record.added_interests if i in survivor.interests],
                removed_person_ids=[p for p in record.added_person_ids if p in survivor.persons],
            )
        ],
        [CustomerUnmergedFrom(customer_id=absorbed.id, occurred_at=at, survivor_id=survivor.id)],
    )


def decide_erase(
    command: EraseCustomer, state: Customer, absorbed: Sequence[Customer], now: datetime
) -> dict[UUID, list[DomainEvent]]:
    """CustomerErased for the customer and for every duplicate still merged into it, by customer id.

    A merged duplicate is the same data subject and its values were copied into the survivor's
    stream, so it is erased with it; erasing the duplicate alone is refused (address the survivor).
    An erasure already recorded yields nothing: the caller still makes sure the keys are destroyed.
    """
    if not state.registered:
        raise UnknownCustomer(f"customer {state.id} does not exist", field="id")
    if state.merged_into is not None and not state.erasure_recorded:
        raise CustomerWasMerged(
            f"customer {state.id} was merged into {state.merged_into}: erase that customer",
            field="id",
            survivor_id=str(state.merged_into),
        )
    out: dict[UUID, list[DomainEvent]] = {}
    if not state.erasure_recorded:
        out[state.id] = [CustomerErased(customer_id=state.id, occurred_at=now, basis=command.basis)]
    for duplicate in absorbed:
        if duplicate.merged_into == state.id and not duplicate.erasure_recorded:
            out[duplicate.id] = [
                CustomerErased(customer_id=duplicate.id, occurred_at=now, basis=command.basis, survivor_id=state.id)
            ]
    return out


def shredded(customer_id: UUID, recorded: Sequence[tuple[str, Mapping[str, Any]]]) -> Customer:
    """What is left of a customer whose data key is destroyed, from its events' types and clear payload fields."""
    state = Customer(id=customer_id, erased=True)
    for event_type, payload in recorded:
        match event_type:
            case "contacts.CustomerRegistered":
                kind = payload.get("kind")
                state = replace(state, registered=True, kind=None if kind is None else str(kind))
            case "contacts.CustomerMergedInto":
                state = replace(state, merged_into=UUID(str(payload["survivor_id"])))
            case "contacts.CustomerUnmergedFrom":
                state = replace(state, merged_into=None)
            case "contacts.CustomersMerged":
                absorbed = UUID(str(payload["absorbed_id"]))
                record = MergeRecord({}, {}, (), (), ())
                state = replace(state, merges={**state.merges, absorbed: record})
            case "contacts.CustomersUnmerged":
                absorbed = UUID(str(payload["absorbed_id"]))
                state = replace(state, merges={k: v for k, v in state.merges.items() if k != absorbed})
            case "contacts.CustomerErased":
                state = replace(state, erasure_recorded=True)
            case _:
                pass
        state = replace(state, version=state.version + 1)
    return state


def _json(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    return value


def _set(state: Customer, at: datetime, **values: Any) -> Customer:
    profile = {**state.profile, **values}
    confirmed = {**state.confirmed_at, **dict.fromkeys(values, at)}
    return replace(state, profile=profile, confirmed_at=confirmed)


def _with_person(state: Customer, person_id: UUID, **changes: Any) -> Customer:
    person = state.persons[person_id]
    return replace(state, persons={**state.persons, person_id: replace(person, **changes)})


def _apply(state: Customer, event: DomainEvent) -> Customer:
    at = event.occurred_at
    match event:
        case CustomerRegistered():
            profile_fields = set(PROFILE_FIELDS) - {"rank", "payment_terms"}
            values = event.model_dump(include=profile_fields)
            values["address"] = None if event.address is None else event.address.model_dump()
            values = {k: v for k, v in values.items() if v is not None}
            return replace(_set(state, at, **values), registered=True, kind=event.kind, external_id=event.external_id)
        case CustomerRenamed():
            return _set(state, at, name=event.name, name_kana=event.name_kana)
        case CustomerAddressChanged():
            return _set(state, at, address=None if event.address is None else event.address.model_dump())
        case CustomerPhoneChanged():
            return _set(state, at, phone=event.phone)
        case CustomerEmailChanged():
            return _set(state, at, email=event.email)
        case CustomerWebsiteChanged():
            return _set(state, at, url=event.url)
        case CustomerIndustryChanged():
            return _set(state, at, industry=event.industry)
        case CustomerCorporateNumberAssigned():
            return _set(state, at, corporate_number=event.corporate_number)
        case CustomerCapitalChanged():
            return _set(state, at, capital=event.capital)
        case CustomerHeadcountChanged():
            return _set(state, at, employee_count=event.employee_count)
        case CustomerFiscalMonthChanged():
            return _set(state, at, fiscal_month=event.fiscal_month)
        case CustomerRepresentativeChanged():
            return _set(state, at, representative=event.representative)
        case CustomerPersonalDetailsChanged():
            return _set(state, at, **{name: getattr(event, name) for name in event.changed})
        case CustomerRankChanged():
            return _set(state, at, rank=event.rank)
        case CustomerTagged():
            return replace(state, tags=state.tags | {event.tag})
        case CustomerUntagged():
            return replace(state, tags=state.tags - {event.tag})
        case MarketingInterestAdded():
            return replace(state, interests=state.interests | {event.interest})
        case MarketingInterestRemoved():
            return replace(state, interests=state.interests - {event.interest})
        case CampaignJoined():
            return replace(state, campaigns=(*state.campaigns, event.campaign))
        case ConsentGranted() | ConsentWithdrawn():
            granted = isinstance(event, ConsentGranted)
            consent = Consent(granted=granted, source=event.source, at=at)
            return replace(state, consents={**state.consents, (event.channel, event.purpose): consent})
        case PaymentTermsSet():
            return _set(state, at, payment_terms=event.payment_terms)
        case ContactPersonAdded():
            person = ContactPerson(
                id=event.person_id,
                name=event.name,
                name_kana=event.name_kana,
                department=event.department,
                title=event.title,
                email=event.email,
                phone=event.phone,
                decision_role=event.decision_role,
                interests=tuple(event.interests),
            )
            return replace(state, persons={**state.persons, event.person_id: person})
        case ContactPersonTitleChanged():
            return _with_person(state, event.person_id, title=event.title)
        case ContactPersonMovedDepartment():
            return _with_person(state, event.person_id, department=event.department)
        case ContactPersonContactDetailsChanged():
            return _with_person(state, event.person_id, email=event.email, phone=event.phone)
        case ContactPersonDecisionRoleChanged():
            return _with_person(state, event.person_id, decision_role=event.decision_role)
        case ContactPersonLeftCompany():
            return _with_person(state, event.person_id, active=False, left_at=at)
        case CustomersMerged():
            persons = dict(state.persons)
            for raw in event.added_persons:
                pid = UUID(str(raw["person_id"]))
                persons[pid] = ContactPerson(
                    id=pid,
                    name=str(raw["name"]),
                    name_kana=_opt(raw.get("name_kana")),
                    department=_opt(raw.get("department")),
                    title=_opt(raw.get("title")),
                    email=_opt(raw.get("email")),
                    phone=_opt(raw.get("phone")),
                    decision_role=_opt(raw.get("decision_role")),
                    interests=tuple(str(i) for i in raw.get("interests") or ()),  # type: ignore[attr-defined]
                    active=bool(raw.get("active", True)),
                    left_at=None if raw.get("left_at") is None else datetime.fromisoformat(str(raw["left_at"])),
                )
            merged = _set(state, at, **{name: _state_value(name, v) for name, v in event.taken.items()})
            record = MergeRecord(
                taken=dict(event.taken),
                previous=dict(event.previous),
                added_tags=tuple(event.added_tags),
                added_interests=tuple(event.added_interests),
                added_person_ids=tuple(event.added_person_ids),
                confirmed_before={n: state.confirmed_at[n] for n in event.taken if n in state.confirmed_at},
            )
            return replace(
                merged,
                tags=state.tags | set(event.added_tags),
                interests=state.interests | set(event.added_interests),
                persons=persons,
                merges={**state.merges, event.absorbed_id: record},
            )
        case CustomersUnmerged():
            restored = _set(state, at, **{name: _state_value(name, v) for name, v in event.restored.items()})
            undone = state.merges.get(event.absorbed_id)
            if undone is not None:
                # Give back the values as they were, confirmation times included (the default merge
                # rule compares them), and no value where the survivor had none.
                profile, confirmed = dict(restored.profile), dict(restored.confirmed_at)
                for name in event.restored:
                    if name in undone.confirmed_before:
                        confirmed[name] = undone.confirmed_before[name]
                    else:
                        profile.pop(name, None)
                        confirmed.pop(name, None)
                restored = replace(restored, profile=profile, confirmed_at=confirmed)
            merges = {k: v for k, v in state.merges.items() if k != event.absorbed_id}
            persons = {k: v for k, v in state.persons.items() if k not in set(event.removed_person_ids)}
            return replace(
                restored,
                tags=state.tags - set(event.removed_tags),
                interests=state.interests - set(event.removed_interests),
                persons=persons,
                merges=merges,
            )
        case CustomerMergedInto():
            return replace(state, merged_into=event.survivor_id)
        case CustomerUnmergedFrom():
            return replace(state, merged_into=None)
        case CustomerErased():
            # Only what holds no personal data survives; merge links stay so ids still resolve.
            return Customer(
                id=state.id,
                registered=state.registered,
                kind=state.kind,
                merged_into=state.merged_into,
                merges={absorbed: MergeRecord({}, {}, (), (), ()) for absorbed in state.merges},
                erased=True,
                erasure_recorded=True,
            )
        case _:
            return state


def _state_value(name: str, value: Any) -> Any:
    """A profile value from a merge event's JSON in the form state keeps it (dates as dates)."""
    if name == "birth_date" and isinstance(value, str):
        return date.fromisoformat(value)
    return value


def _opt(value: object) -> str | None:
    return None if value is None else str(value)


def evolve(state: Customer, event: DomainEvent) -> Customer:
    """The customer after an event (unknown event types only advance the version)."""
    return replace(_apply(state, event), version=state.version + 1)


def fold(customer_id: UUID, events: list[DomainEvent]) -> Customer:
    """A customer rebuilt from its events."""
    state = Customer(id=customer_id)
    for event in events:
        state = evolve(state, event)
    return state


def stream_id(customer_id: UUID) -> str:
    """The customer's stream name."""
    return f"customer-{customer_id}"
