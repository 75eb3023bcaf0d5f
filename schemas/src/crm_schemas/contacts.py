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


DecisionRole = Literal["decision_maker", "approver", "influencer", "user"]
ConsentChannel = Literal["email", "phone", "post"]


class CustomerRenamed(ContactsEvent):
    """The customer's name (and its kana reading) changed."""

    summary_en: ClassVar[str] = "Renamed to {name}"
    summary_ja: ClassVar[str] = "名称変更：{name}"

    type: Literal["contacts.CustomerRenamed"] = "contacts.CustomerRenamed"
    schema_version: Literal[1] = 1
    name: Personal[str]
    name_kana: Personal[str | None] = None


class CustomerAddressChanged(ContactsEvent):
    """The customer moved or corrected its address."""

    summary_en: ClassVar[str] = "Address changed"
    summary_ja: ClassVar[str] = "住所変更"

    type: Literal["contacts.CustomerAddressChanged"] = "contacts.CustomerAddressChanged"
    schema_version: Literal[1] = 1
    address: Personal[PostalAddress | None] = None


class CustomerPhoneChanged(ContactsEvent):
    """The customer's main phone number changed (E.164)."""

    summary_en: ClassVar[str] = "Phone number changed"
    summary_ja: ClassVar[str] = "電話番号変更"

    type: Literal["contacts.CustomerPhoneChanged"] = "contacts.CustomerPhoneChanged"
    schema_version: Literal[1] = 1
    phone: Personal[str | None] = None


class CustomerEmailChanged(ContactsEvent):
    """The customer's main e-mail address changed."""

    summary_en: ClassVar[str] = "E-mail address changed"
    summary_ja: ClassVar[str] = "メールアドレス変更"

    type: Literal["contacts.CustomerEmailChanged"] = "contacts.CustomerEmailChanged"
    schema_version: Literal[1] = 1
    email: Personal[str | None] = None


class CustomerWebsiteChanged(ContactsEvent):
    """The company's website URL changed."""

    summary_en: ClassVar[str] = "Website changed: {url}"
    summary_ja: ClassVar[str] = "URL変更：{url}"

    type: Literal["contacts.CustomerWebsiteChanged"] = "contacts.CustomerWebsiteChanged"
    schema_version: Literal[1] = 1
    url: str | None = None


class CustomerIndustryChanged(ContactsEvent):
    """The company's industry classification changed."""

    summary_en: ClassVar[str] = "Industry changed: {industry}"
    summary_ja: ClassVar[str] = "業種変更：{industry}"

    type: Literal["contacts.CustomerIndustryChanged"] = "contacts.CustomerIndustryChanged"
    schema_version: Literal[1] = 1
    industry: str | None = None


class CustomerCorporateNumberAssigned(ContactsEvent):
    """The company's 法人番号 became known or was corrected."""

    summary_en: ClassVar[str] = "Corporate number set: {corporate_number}"
    summary_ja: ClassVar[str] = "法人番号登録：{corporate_number}"

    type: Literal["contacts.CustomerCorporateNumberAssigned"] = "contacts.CustomerCorporateNumberAssigned"
    schema_version: Literal[1] = 1
    corporate_number: str | None = None


class CustomerCapitalChanged(ContactsEvent):
    """The company's capital changed (decimal string, JPY)."""

    summary_en: ClassVar[str] = "Capital changed: {capital}"
    summary_ja: ClassVar[str] = "資本金変更：{capital}"

    type: Literal["contacts.CustomerCapitalChanged"] = "contacts.CustomerCapitalChanged"
    schema_version: Literal[1] = 1
    capital: str | None = None


class CustomerHeadcountChanged(ContactsEvent):
    """The company's employee count changed."""

    summary_en: ClassVar[str] = "Employee count changed: {employee_count}"
    summary_ja: ClassVar[str] = "従業員数変更：{employee_count}"

    type: Literal["contacts.CustomerHeadcountChanged"] = "contacts.CustomerHeadcountChanged"
    schema_version: Literal[1] = 1
    employee_count: int | None = None


class CustomerFiscalMonthChanged(ContactsEvent):
    """The company's fiscal year-end month changed."""

    summary_en: ClassVar[str] = "Fiscal month changed: {fiscal_month}"
    summary_ja: ClassVar[str] = "決算月変更：{fiscal_month}月"

    type: Literal["contacts.CustomerFiscalMonthChanged"] = "contacts.CustomerFiscalMonthChanged"
    schema_version: Literal[1] = 1
    fiscal_month: int | None = Field(default=None, ge=1, le=12)


class CustomerRepresentativeChanged(ContactsEvent):
    """The company's representative (代表者) changed."""

    summary_en: ClassVar[str] = "Representative changed: {representative}"
    summary_ja: ClassVar[str] = "代表者変更：{representative}"

    type: Literal["contacts.CustomerRepresentativeChanged"] = "contacts.CustomerRepresentativeChanged"
    schema_version: Literal[1] = 1
    representative: Personal[str | None] = None


class CustomerPersonalDetailsChanged(ContactsEvent):
    """A person customer's birth date, gender or occupation was changed or corrected."""

    summary_en: ClassVar[str] = "Personal details changed"
    summary_ja: ClassVar[str] = "個人情報変更"

    type: Literal["contacts.CustomerPersonalDetailsChanged"] = "contacts.CustomerPersonalDetailsChanged"
    schema_version: Literal[1] = 1
    changed: list[str] = Field(description="Which of birth_date, gender, occupation changed")
    birth_date: Personal[date | None] = None
    gender: Personal[str | None] = None
    occupation: Personal[str | None] = None


class CustomerRankChanged(ContactsEvent):
    """The customer's rank changed."""

    summary_en: ClassVar[str] = "Rank changed: {previous_rank} → {rank}"
    summary_ja: ClassVar[str] = "顧客ランク変更：{previous_rank} → {rank}"

    type: Literal["contacts.CustomerRankChanged"] = "contacts.CustomerRankChanged"
    schema_version: Literal[1] = 1
    rank: str | None = None
    previous_rank: str | None = None


class CustomerTagged(ContactsEvent):
    """A tag was put on the customer."""

    summary_en: ClassVar[str] = "Tagged: {tag}"
    summary_ja: ClassVar[str] = "タグ追加：{tag}"

    type: Literal["contacts.CustomerTagged"] = "contacts.CustomerTagged"
    schema_version: Literal[1] = 1
    tag: str


class CustomerUntagged(ContactsEvent):
    """A tag was taken off the customer."""

    summary_en: ClassVar[str] = "Tag removed: {tag}"
    summary_ja: ClassVar[str] = "タグ削除：{tag}"

    type: Literal["contacts.CustomerUntagged"] = "contacts.CustomerUntagged"
    schema_version: Literal[1] = 1
    tag: str


class MarketingInterestAdded(ContactsEvent):
    """The customer showed interest in a topic or product line."""

    summary_en: ClassVar[str] = "Interest added: {interest}"
    summary_ja: ClassVar[str] = "関心事項追加：{interest}"

    type: Literal["contacts.MarketingInterestAdded"] = "contacts.MarketingInterestAdded"
    schema_version: Literal[1] = 1
    interest: str


class MarketingInterestRemoved(ContactsEvent):
    """An interest no longer applies."""

    summary_en: ClassVar[str] = "Interest removed: {interest}"
    summary_ja: ClassVar[str] = "関心事項削除：{interest}"

    type: Literal["contacts.MarketingInterestRemoved"] = "contacts.MarketingInterestRemoved"
    schema_version: Literal[1] = 1
    interest: str


class CampaignJoined(ContactsEvent):
    """The customer joined a marketing campaign."""

    summary_en: ClassVar[str] = "Joined campaign {campaign}"
    summary_ja: ClassVar[str] = "キャンペーン参加：{campaign}"

    type: Literal["contacts.CampaignJoined"] = "contacts.CampaignJoined"
    schema_version: Literal[1] = 1
    campaign: str


class ConsentGranted(ContactsEvent):
    """The customer opted in to contact on a channel for a purpose."""

    summary_en: ClassVar[str] = "Consent granted: {channel} ({purpose})"
    summary_ja: ClassVar[str] = "同意取得：{channel}（{purpose}）"

    type: Literal["contacts.ConsentGranted"] = "contacts.ConsentGranted"
    schema_version: Literal[1] = 1
    channel: ConsentChannel
    purpose: str = "newsletter"
    source: str


class ConsentWithdrawn(ContactsEvent):
    """The customer opted out of contact on a channel for a purpose."""

    summary_en: ClassVar[str] = "Consent withdrawn: {channel} ({purpose})"
    summary_ja: ClassVar[str] = "同意撤回：{channel}（{purpose}）"

    type: Literal["contacts.ConsentWithdrawn"] = "contacts.ConsentWithdrawn"
    schema_version: Literal[1] = 1
    channel: ConsentChannel
    purpose: str = "newsletter"
    source: str


class PaymentTermsSet(ContactsEvent):
    """The company's payment terms (支払条件) were set."""

    summary_en: ClassVar[str] = "Payment terms: {payment_terms}"
    summary_ja: ClassVar[str] = "支払条件：{payment_terms}"

    type: Literal["contacts.PaymentTermsSet"] = "contacts.PaymentTermsSet"
    schema_version: Literal[1] = 1
    payment_terms: str


class ContactPersonAdded(ContactsEvent):
    """A contact person at the company was recorded."""

    summary_en: ClassVar[str] = "Contact person added: {name} ({department} {title})"
    summary_ja: ClassVar[str] = "担当者追加：{name}（{department} {title}）"

    type: Literal["contacts.ContactPersonAdded"] = "contacts.ContactPersonAdded"
    schema_version: Literal[1] = 1
    person_id: UUID
    name: Personal[str]
    name_kana: Personal[str | None] = None
    department: str | None = None
    title: str | None = None
    email: Personal[str | None] = None
    phone: Personal[str | None] = None
    decision_role: DecisionRole | None = None
    interests: list[str] = Field(default_factory=list)


class ContactPersonTitleChanged(ContactsEvent):
    """A contact person's title (役職) changed."""

    summary_en: ClassVar[str] = "Contact person's title changed: {title}"
    summary_ja: ClassVar[str] = "担当者の役職変更：{title}"

    type: Literal["contacts.ContactPersonTitleChanged"] = "contacts.ContactPersonTitleChanged"
    schema_version: Literal[1] = 1
    person_id: UUID
    title: str | None = None


class ContactPersonMovedDepartment(ContactsEvent):
    """A contact person moved to another department (異動)."""

    summary_en: ClassVar[str] = "Contact person moved to {department}"
    summary_ja: ClassVar[str] = "担当者の部署異動：{department}"

    type: Literal["contacts.ContactPersonMovedDepartment"] = "contacts.ContactPersonMovedDepartment"
    schema_version: Literal[1] = 1
    person_id: UUID
    department: str
    previous_department: str | None = None


class ContactPersonContactDetailsChanged(ContactsEvent):
    """A contact person's e-mail or phone changed."""

    summary_en: ClassVar[str] = "Contact person's contact details changed"
    summary_ja: ClassVar[str] = "担当者の連絡先変更"

    type: Literal["contacts.ContactPersonContactDetailsChanged"] = "contacts.ContactPersonContactDetailsChanged"
    schema_version: Literal[1] = 1
    person_id: UUID
    email: Personal[str | None] = None
    phone: Personal[str | None] = None


class ContactPersonDecisionRoleChanged(ContactsEvent):
    """A contact person's role in the decision/approval flow changed."""

    summary_en: ClassVar[str] = "Contact person's decision role: {decision_role}"
    summary_ja: ClassVar[str] = "担当者の決裁権限変更：{decision_role}"

    type: Literal["contacts.ContactPersonDecisionRoleChanged"] = "contacts.ContactPersonDecisionRoleChanged"
    schema_version: Literal[1] = 1
    person_id: UUID
    decision_role: DecisionRole | None = None


class ContactPersonLeftCompany(ContactsEvent):
    """A contact person left the company (退職); their history is kept."""

    summary_en: ClassVar[str] = "Contact person left the company"
    summary_ja: ClassVar[str] = "担当者退職"

    type: Literal["contacts.ContactPersonLeftCompany"] = "contacts.ContactPersonLeftCompany"
    schema_version: Literal[1] = 1
    person_id: UUID
    reason: str | None = None


class CustomersMerged(ContactsEvent):
    """Another customer record (a duplicate) was merged into this one (名寄せ)."""

    summary_en: ClassVar[str] = "Merged duplicate {absorbed_id} into this customer"
    summary_ja: ClassVar[str] = "名寄せ：{absorbed_id} を統合"

    type: Literal["contacts.CustomersMerged"] = "contacts.CustomersMerged"
    schema_version: Literal[1] = 1
    absorbed_id: UUID
    field_choices: dict[str, Literal["survivor", "absorbed"]] = Field(
        description="For every mergeable field, whose value the survivor keeps"
    )
    taken: Personal[dict[str, object]] = Field(description="Values taken from the absorbed customer")
    previous: Personal[dict[str, object]] = Field(description="The survivor's values they replaced")
    added_tags: list[str] = Field(default_factory=list)
    added_interests: list[str] = Field(default_factory=list)
    added_person_ids: list[UUID] = Field(default_factory=list)
    added_persons: Personal[list[dict[str, object]]] = Field(default_factory=list)


class CustomerMergedInto(ContactsEvent):
    """This customer was a duplicate and now lives on in the survivor; its id stays resolvable."""

    summary_en: ClassVar[str] = "Merged into {survivor_id}"
    summary_ja: ClassVar[str] = "{survivor_id} に統合"

    type: Literal["contacts.CustomerMergedInto"] = "contacts.CustomerMergedInto"
    schema_version: Literal[1] = 1
    survivor_id: UUID


class CustomersUnmerged(ContactsEvent):
    """A merge was reversed: the values and records taken from the absorbed customer were given back."""

    summary_en: ClassVar[str] = "Unmerged {absorbed_id}"
    summary_ja: ClassVar[str] = "名寄せ解除：{absorbed_id}"

    type: Literal["contacts.CustomersUnmerged"] = "contacts.CustomersUnmerged"
    schema_version: Literal[1] = 1
    absorbed_id: UUID
    restored: Personal[dict[str, object]] = Field(description="The survivor's values as before the merge")
    removed_tags: list[str] = Field(default_factory=list)
    removed_interests: list[str] = Field(default_factory=list)
    removed_person_ids: list[UUID] = Field(default_factory=list)


class CustomerUnmergedFrom(ContactsEvent):
    """This customer is its own record again after a merge was reversed."""

    summary_en: ClassVar[str] = "Split off again from {survivor_id}"
    summary_ja: ClassVar[str] = "{survivor_id} から名寄せ解除"

    type: Literal["contacts.CustomerUnmergedFrom"] = "contacts.CustomerUnmergedFrom"
    schema_version: Literal[1] = 1
    survivor_id: UUID


ErasureBasis = Literal["data_subject_request", "retention_expired", "legal_obligation"]


class CustomerErased(ContactsEvent):
    """The customer's personal data was erased: its data key is destroyed, its earlier personal fields unreadable."""

    summary_en: ClassVar[str] = "Personal data erased ({basis})"
    summary_ja: ClassVar[str] = "個人データ消去（{basis}）"

    type: Literal["contacts.CustomerErased"] = "contacts.CustomerErased"
    schema_version: Literal[1] = 1
    basis: ErasureBasis = Field(description="Why: the data subject asked (GDPR Art. 17, APPI §35), retention ended, …")
    survivor_id: UUID | None = Field(
        default=None, description="Set on a merged duplicate erased together with the customer it was merged into"
    )
