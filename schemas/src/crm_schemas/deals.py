"""Public events of the deals service (topic crm.deals.events.v1).

Deals (商談), communication history (活動履歴), contracts, orders, invoices, payments and budgets.
Money is a decimal string everywhere (never a JSON number): ``"12345"``, ``"1980.50"``; the currency
is an ISO 4217 code beside it.  Revenue is the pre-tax ``total`` of an order minus what its
cancellations and returns reverse (``amount`` on ``OrderCancelled`` / ``OrderReturned``).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from crm_schemas.base import DomainEvent
from crm_schemas.personal import Personal

#: A decimal amount as a string: optional minus sign, digits, optional fraction.
Money = Annotated[str, Field(pattern=r"^-?[0-9]+(\.[0-9]+)?$", description='Decimal string, e.g. "12345" or "99.50"')]
#: ISO 4217 alphabetic currency code.
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. JPY")]

ActivityKind = Literal["visit", "call", "email", "meeting", "online_meeting", "document_sent"]
BillingCycle = Literal["one_time", "monthly", "quarterly", "semiannual", "yearly"]
PaymentMethod = Literal["bank_transfer", "credit_card", "cash", "direct_debit", "convenience_store", "other"]


class DealsEvent(DomainEvent):
    """Base of deals-service events."""

    service: ClassVar[str] = "deals"
    stream_prefix: ClassVar[str] = "deal"


# --------------------------------------------------------------------------------------------
# Deal (商談): stream deal-<uuid>
# --------------------------------------------------------------------------------------------


class DealEvent(DealsEvent):
    """Base of deal events: one stream per deal (deal-<uuid>)."""

    deal_id: UUID


class DealOpened(DealEvent):
    """A deal (商談) was opened for a customer."""

    summary_en: ClassVar[str] = "Deal opened: {title} ({amount} {currency}, stage {stage})"
    summary_ja: ClassVar[str] = "商談開始：{title}（{amount} {currency}、{stage}）"

    type: Literal["deals.DealOpened"] = "deals.DealOpened"
    schema_version: Literal[1] = 1
    title: str
    owner: str = Field(description="Staff subject who owns the deal")
    team: str | None = Field(default=None, description="The owner's team, for record-level sharing")
    contact_person_id: UUID | None = Field(default=None, description="Counterpart contact person at the customer")
    amount: Money
    currency: Currency = "JPY"
    expected_close_date: date | None = None
    source: str | None = Field(default=None, description="Where the deal came from: referral, web, exhibition, ...")
    pipeline: str = Field(default="default", description="Name of the pipeline the stages come from")
    stage: str = Field(description="First stage of the pipeline, normally lead")


class DealStageChanged(DealEvent):
    """The deal moved to another open stage of its pipeline (won and lost have their own events)."""

    summary_en: ClassVar[str] = "Deal stage: {previous_stage} → {stage}"
    summary_ja: ClassVar[str] = "商談フェーズ変更：{previous_stage} → {stage}"

    type: Literal["deals.DealStageChanged"] = "deals.DealStageChanged"
    schema_version: Literal[1] = 1
    stage: str
    previous_stage: str


class DealAmountRevised(DealEvent):
    """The expected amount of the deal was revised."""

    summary_en: ClassVar[str] = "Deal amount revised: {previous_amount} → {amount} {currency}"
    summary_ja: ClassVar[str] = "商談金額変更：{previous_amount} → {amount} {currency}"

    type: Literal["deals.DealAmountRevised"] = "deals.DealAmountRevised"
    schema_version: Literal[1] = 1
    amount: Money
    previous_amount: Money
    currency: Currency
    reason: str | None = None


class DealCloseDateRevised(DealEvent):
    """The expected close date of the deal was revised."""

    summary_en: ClassVar[str] = "Expected close date: {previous_close_date} → {expected_close_date}"
    summary_ja: ClassVar[str] = "受注予定日変更：{previous_close_date} → {expected_close_date}"

    type: Literal["deals.DealCloseDateRevised"] = "deals.DealCloseDateRevised"
    schema_version: Literal[1] = 1
    expected_close_date: date
    previous_close_date: date | None = None


class DealOwnerChanged(DealEvent):
    """The deal was handed to another staff member (and team)."""

    summary_en: ClassVar[str] = "Deal owner: {previous_owner} → {owner}"
    summary_ja: ClassVar[str] = "商談担当変更：{previous_owner} → {owner}"

    type: Literal["deals.DealOwnerChanged"] = "deals.DealOwnerChanged"
    schema_version: Literal[1] = 1
    owner: str
    team: str | None = None
    previous_owner: str
    previous_team: str | None = None


class DealNextActionSet(DealEvent):
    """The next action on the deal was set (what, by when)."""

    summary_en: ClassVar[str] = "Next action set: {action} (due {due_on})"
    summary_ja: ClassVar[str] = "次回アクション設定：{action}（期限 {due_on}）"

    type: Literal["deals.DealNextActionSet"] = "deals.DealNextActionSet"
    schema_version: Literal[1] = 1
    action_id: UUID
    action: Personal[str]
    due_on: date | None = None


class DealNextActionDone(DealEvent):
    """The deal's next action was done."""

    summary_en: ClassVar[str] = "Next action done: {action}"
    summary_ja: ClassVar[str] = "次回アクション完了：{action}"

    type: Literal["deals.DealNextActionDone"] = "deals.DealNextActionDone"
    schema_version: Literal[1] = 1
    action_id: UUID
    action: Personal[str]


class DealWon(DealEvent):
    """The deal was won (受注) at a final amount."""

    summary_en: ClassVar[str] = "Deal won: {amount} {currency}"
    summary_ja: ClassVar[str] = "受注：{amount} {currency}"

    type: Literal["deals.DealWon"] = "deals.DealWon"
    schema_version: Literal[1] = 1
    amount: Money
    currency: Currency
    previous_stage: str
    won_on: date


class DealLost(DealEvent):
    """The deal was lost (失注), with the reason and, when known, the competitor who won it."""

    summary_en: ClassVar[str] = "Deal lost: {reason}"
    summary_ja: ClassVar[str] = "失注：{reason}"

    type: Literal["deals.DealLost"] = "deals.DealLost"
    schema_version: Literal[1] = 1
    reason: str
    competitor: str | None = None
    previous_stage: str
    lost_on: date


class DealReopened(DealEvent):
    """A won or lost deal was reopened at an open stage."""

    summary_en: ClassVar[str] = "Deal reopened at {stage}"
    summary_ja: ClassVar[str] = "商談再開：{stage}"

    type: Literal["deals.DealReopened"] = "deals.DealReopened"
    schema_version: Literal[1] = 1
    stage: str
    previous_outcome: Literal["won", "lost"]
    reason: str | None = None


# --------------------------------------------------------------------------------------------
# Communication history (活動履歴): stream activity-<uuid>
# --------------------------------------------------------------------------------------------


class ActivityRecorded(DealsEvent):
    """A visit, call, email, meeting, online meeting or document sent was recorded, on a deal or on the customer."""

    stream_prefix: ClassVar[str] = "activity"
    summary_en: ClassVar[str] = "Activity ({kind}): {subject}"
    summary_ja: ClassVar[str] = "活動記録（{kind}）：{subject}"

    type: Literal["deals.ActivityRecorded"] = "deals.ActivityRecorded"
    schema_version: Literal[1] = 1
    activity_id: UUID
    kind: ActivityKind
    deal_id: UUID | None = Field(default=None, description="The deal the activity belongs to, if any")
    contact_person_id: UUID | None = None
    staff: str = Field(description="Staff subject who carried out the activity")
    participants: Personal[list[str]] = Field(default_factory=list)
    subject: Personal[str]
    content: Personal[str | None] = None
    outcome: Personal[str | None] = None


# --------------------------------------------------------------------------------------------
# Contract: stream contract-<uuid>
# --------------------------------------------------------------------------------------------


class ContractEvent(DealsEvent):
    """Base of contract events: one stream per contract (contract-<uuid>)."""

    stream_prefix: ClassVar[str] = "contract"
    contract_id: UUID


class ContractSigned(ContractEvent):
    """A contract was signed with the customer, optionally from a won deal."""

    summary_en: ClassVar[str] = "Contract signed: {title} ({amount} {currency}, {start_date} – {end_date})"
    summary_ja: ClassVar[str] = "契約締結：{title}（{amount} {currency}、{start_date}〜{end_date}）"

    type: Literal["deals.ContractSigned"] = "deals.ContractSigned"
    schema_version: Literal[1] = 1
    title: str
    deal_id: UUID | None = None
    terms: str | None = None
    start_date: date
    end_date: date
    amount: Money = Field(description="Amount per billing period (the whole amount when one_time)")
    currency: Currency = "JPY"
    billing_cycle: BillingCycle
    auto_renewal: bool = False
    owner: str | None = None


class ContractRenewed(ContractEvent):
    """The contract was renewed to a new end date (by hand or automatically at its end)."""

    summary_en: ClassVar[str] = "Contract renewed until {end_date}"
    summary_ja: ClassVar[str] = "契約更新：{end_date}まで"

    type: Literal["deals.ContractRenewed"] = "deals.ContractRenewed"
    schema_version: Literal[1] = 1
    previous_end_date: date
    end_date: date
    amount: Money
    currency: Currency
    automatic: bool = False


class ContractAmended(ContractEvent):
    """Terms of the contract were amended; only the members that changed are set."""

    summary_en: ClassVar[str] = "Contract amended: {reason}"
    summary_ja: ClassVar[str] = "契約変更：{reason}"

    type: Literal["deals.ContractAmended"] = "deals.ContractAmended"
    schema_version: Literal[1] = 1
    reason: str
    amount: Money | None = None
    end_date: date | None = None
    terms: str | None = None
    billing_cycle: BillingCycle | None = None
    auto_renewal: bool | None = None


class ContractCancelled(ContractEvent):
    """The contract was cancelled (解約) from a date."""

    summary_en: ClassVar[str] = "Contract cancelled from {effective_on}: {reason}"
    summary_ja: ClassVar[str] = "契約解約（{effective_on}付）：{reason}"

    type: Literal["deals.ContractCancelled"] = "deals.ContractCancelled"
    schema_version: Literal[1] = 1
    reason: str
    effective_on: date


class ContractExpired(ContractEvent):
    """The contract reached its end date without renewal (emitted by the scheduler)."""

    summary_en: ClassVar[str] = "Contract expired on {end_date}"
    summary_ja: ClassVar[str] = "契約満了：{end_date}"

    type: Literal["deals.ContractExpired"] = "deals.ContractExpired"
    schema_version: Literal[1] = 1
    end_date: date


# --------------------------------------------------------------------------------------------
# Order / purchase: stream order-<uuid>
# --------------------------------------------------------------------------------------------


class OrderLine(BaseModel):
    """One line of an order; ``line_amount = unit_price × quantity − discount`` (pre-tax)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    line_no: int = Field(ge=1)
    product_code: str
    product_name: str
    category: str | None = None
    unit_price: Money
    quantity: int = Field(ge=1)
    discount: Money = "0"
    line_amount: Money
    tax_rate: Money = Field(default="0.10", description="Consumption tax rate, e.g. 0.10 or 0.08 (reduced)")
    tax_amount: Money


class ReturnedLine(BaseModel):
    """Part of an order line that came back; ``amount`` is the revenue it reverses (pre-tax)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    line_no: int = Field(ge=1)
    quantity: int = Field(ge=1)
    amount: Money


class OrderEvent(DealsEvent):
    """Base of order events: one stream per order (order-<uuid>)."""

    stream_prefix: ClassVar[str] = "order"
    order_id: UUID


class OrderPlaced(OrderEvent):
    """The customer placed an order (受注・購買) with line items."""

    summary_en: ClassVar[str] = "Order placed: {total} {currency} ({line_count} lines)"
    summary_ja: ClassVar[str] = "注文：{total} {currency}（{line_count}明細）"

    type: Literal["deals.OrderPlaced"] = "deals.OrderPlaced"
    schema_version: Literal[1] = 1
    order_date: date
    delivery_date: date | None = None
    currency: Currency = "JPY"
    lines: list[OrderLine] = Field(min_length=1)
    line_count: int = Field(ge=1)
    total: Money = Field(description="Sum of the line amounts, pre-tax: the order's revenue")
    tax_total: Money
    total_with_tax: Money
    deal_id: UUID | None = None
    contract_id: UUID | None = None


class OrderDelivered(OrderEvent):
    """The order was delivered."""

    summary_en: ClassVar[str] = "Order delivered on {delivered_on}"
    summary_ja: ClassVar[str] = "納品：{delivered_on}"

    type: Literal["deals.OrderDelivered"] = "deals.OrderDelivered"
    schema_version: Literal[1] = 1
    delivered_on: date


class OrderCancelled(OrderEvent):
    """The order was cancelled; ``amount`` is the revenue it reverses (what was not yet returned)."""

    summary_en: ClassVar[str] = "Order cancelled ({amount} {currency}): {reason}"
    summary_ja: ClassVar[str] = "注文キャンセル（{amount} {currency}）：{reason}"

    type: Literal["deals.OrderCancelled"] = "deals.OrderCancelled"
    schema_version: Literal[1] = 1
    reason: str | None = None
    amount: Money
    currency: Currency


class OrderReturned(OrderEvent):
    """Goods came back, the whole order or some lines; ``amount`` is the revenue it reverses."""

    summary_en: ClassVar[str] = "Order returned ({amount} {currency})"
    summary_ja: ClassVar[str] = "返品（{amount} {currency}）"

    type: Literal["deals.OrderReturned"] = "deals.OrderReturned"
    schema_version: Literal[1] = 1
    lines: list[ReturnedLine] = Field(min_length=1)
    amount: Money
    currency: Currency
    full: bool = Field(description="True when nothing of the order remains after this return")
    returned_on: date
    reason: str | None = None


# --------------------------------------------------------------------------------------------
# Invoice and payment: stream invoice-<uuid> (payments without an invoice: payment-<uuid>)
# --------------------------------------------------------------------------------------------


class InvoiceEvent(DealsEvent):
    """Base of invoice events: one stream per invoice (invoice-<uuid>)."""

    stream_prefix: ClassVar[str] = "invoice"
    invoice_id: UUID


class InvoiceIssued(InvoiceEvent):
    """An invoice (請求書) was issued with a due date."""

    summary_en: ClassVar[str] = "Invoice {invoice_number} issued: {amount} {currency}, due {due_date}"
    summary_ja: ClassVar[str] = "請求書発行 {invoice_number}：{amount} {currency}（支払期限 {due_date}）"

    type: Literal["deals.InvoiceIssued"] = "deals.InvoiceIssued"
    schema_version: Literal[1] = 1
    invoice_number: str
    issued_on: date
    due_date: date
    amount: Money = Field(description="Amount billed, tax included")
    currency: Currency = "JPY"
    order_id: UUID | None = None
    contract_id: UUID | None = None


class InvoiceOverdue(InvoiceEvent):
    """The due date passed with an amount still outstanding (emitted by the scheduler)."""

    summary_en: ClassVar[str] = "Invoice overdue: {outstanding} {currency} outstanding (due {due_date})"
    summary_ja: ClassVar[str] = "支払遅延：未入金 {outstanding} {currency}（期限 {due_date}）"

    type: Literal["deals.InvoiceOverdue"] = "deals.InvoiceOverdue"
    schema_version: Literal[1] = 1
    due_date: date
    outstanding: Money
    currency: Currency


class InvoiceCancelled(InvoiceEvent):
    """An unpaid invoice was voided."""

    summary_en: ClassVar[str] = "Invoice cancelled: {reason}"
    summary_ja: ClassVar[str] = "請求取消：{reason}"

    type: Literal["deals.InvoiceCancelled"] = "deals.InvoiceCancelled"
    schema_version: Literal[1] = 1
    reason: str


class PaymentReceived(DealsEvent):
    """A payment (入金) was received, against an invoice (on its stream) or unapplied (payment-<uuid>)."""

    stream_prefix: ClassVar[str] = "invoice"
    summary_en: ClassVar[str] = "Payment received: {amount} {currency} ({method})"
    summary_ja: ClassVar[str] = "入金：{amount} {currency}（{method}）"

    type: Literal["deals.PaymentReceived"] = "deals.PaymentReceived"
    schema_version: Literal[1] = 1
    payment_id: UUID
    invoice_id: UUID | None = None
    amount: Money
    currency: Currency = "JPY"
    paid_on: date
    method: PaymentMethod
    outstanding_after: Money | None = Field(
        default=None, description="What is still owed on the invoice after this payment (null without an invoice)"
    )


# --------------------------------------------------------------------------------------------
# Budget: stream budget-<customer uuid>
# --------------------------------------------------------------------------------------------


class CustomerBudgetSet(DealsEvent):
    """The customer's budget for one of their fiscal years was set or revised."""

    stream_prefix: ClassVar[str] = "budget"
    summary_en: ClassVar[str] = "Budget for FY{fiscal_year}: {amount} {currency}"
    summary_ja: ClassVar[str] = "{fiscal_year}年度予算：{amount} {currency}"

    type: Literal["deals.CustomerBudgetSet"] = "deals.CustomerBudgetSet"
    schema_version: Literal[1] = 1
    fiscal_year: int = Field(ge=1900, le=2999)
    amount: Money
    currency: Currency = "JPY"
    previous_amount: Money | None = None
