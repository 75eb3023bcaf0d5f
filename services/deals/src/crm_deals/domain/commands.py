"""Commands of the deals service: what callers ask for, validated at the edge (extra fields forbidden).

Money is a decimal string (``"12000"``, ``"99.50"``) or an integer; a JSON number with a fraction is
refused, so no amount ever passes through a float.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

from crm_schemas.deals import ActivityKind, BillingCycle, Currency, PaymentMethod
from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

_DECIMAL = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")


def _decimal_text(value: Any) -> Any:
    if isinstance(value, (bool, float)):
        raise ValueError(
            'money is a decimal string, e.g. "12000" or "99.50" (a JSON number with a fraction is a float)'
        )
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and not _DECIMAL.match(value.strip()):
        raise ValueError('must be a decimal string, e.g. "12000" or "99.50"')
    return value


def _money_schema(description: str) -> WithJsonSchema:
    return WithJsonSchema(
        {"type": "string", "pattern": _DECIMAL.pattern, "description": description, "examples": ["12000"]}
    )


#: A non-negative amount of money.
Amount = Annotated[
    Decimal, BeforeValidator(_decimal_text), Field(ge=0, allow_inf_nan=False), _money_schema("Decimal string, ≥ 0")
]
#: A positive amount of money.
PositiveAmount = Annotated[
    Decimal, BeforeValidator(_decimal_text), Field(gt=0, allow_inf_nan=False), _money_schema("Decimal string, > 0")
]
#: A tax rate between 0 and 1, e.g. "0.10" (standard) or "0.08" (reduced).
TaxRate = Annotated[
    Decimal,
    BeforeValidator(_decimal_text),
    Field(ge=0, lt=1, allow_inf_nan=False),
    _money_schema('Tax rate as a decimal string, e.g. "0.10"'),
]

Text = Annotated[str, Field(min_length=1, max_length=200)]
LongText = Annotated[str, Field(min_length=1, max_length=20_000)]


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


# --- deals -------------------------------------------------------------------------------------


class OpenDeal(_Command):
    """Open a deal (商談) for a customer at the first stage of its pipeline."""

    customer_id: UUID
    title: Text
    owner: Text = Field(description="Staff subject who owns the deal")
    amount: Amount
    currency: Currency = "JPY"
    expected_close_date: date | None = None
    contact_person_id: UUID | None = Field(default=None, description="Counterpart contact person at the customer")
    source: Text | None = Field(default=None, description="referral, web, exhibition, ...")
    team: Text | None = None
    pipeline: Text = "default"


class MoveDealStage(_Command):
    """Move an open deal to another open stage of its pipeline (forward or back)."""

    stage: Text


class ReviseDealAmount(_Command):
    """Revise the expected amount of an open deal."""

    amount: Amount
    currency: Currency | None = Field(default=None, description="Must be the deal's currency when given")
    reason: Text | None = None


class ReviseCloseDate(_Command):
    """Revise the expected close date of an open deal."""

    expected_close_date: date


class ChangeDealOwner(_Command):
    """Hand the deal to another staff member (and team)."""

    owner: Text
    team: Text | None = None


class SetNextAction(_Command):
    """Set the deal's next action (replaces the current one)."""

    action: Annotated[str, Field(min_length=1, max_length=2000)]
    due_on: date | None = None
    action_id: UUID | None = Field(default=None, description="Chosen by the service when absent")


class CompleteNextAction(_Command):
    """Mark the deal's current next action done."""

    action_id: UUID


class WinDeal(_Command):
    """Close the deal as won (受注) at its final amount (default: the deal's amount)."""

    amount: Amount | None = None
    currency: Currency | None = Field(default=None, description="Must be the deal's currency when given")
    won_on: date | None = Field(default=None, description="Default: today (JST)")


class LoseDeal(_Command):
    """Close the deal as lost (失注) with the reason and, when known, the competitor."""

    reason: Annotated[str, Field(min_length=1, max_length=2000)]
    competitor: Text | None = None
    lost_on: date | None = Field(default=None, description="Default: today (JST)")


class ReopenDeal(_Command):
    """Reopen a won or lost deal at an open stage (default: the stage it was closed from)."""

    stage: Text | None = None
    reason: Annotated[str, Field(min_length=1, max_length=2000)] | None = None


# --- activities --------------------------------------------------------------------------------


class RecordActivity(_Command):
    """Record a visit, call, email, meeting, online meeting or document sent, on a deal or on the customer."""

    customer_id: UUID | None = Field(default=None, description="Required unless the activity is on a deal")
    kind: ActivityKind
    subject: Text
    deal_id: UUID | None = None
    contact_person_id: UUID | None = None
    staff: Text | None = Field(default=None, description="Who carried it out; default: the caller")
    participants: list[Text] = Field(default_factory=list, max_length=100)
    content: LongText | None = None
    outcome: Annotated[str, Field(min_length=1, max_length=5000)] | None = None
    occurred_at: AwareDatetime | None = Field(default=None, description="When it happened; default: now")


# --- contracts ---------------------------------------------------------------------------------


class SignContract(_Command):
    """Sign a contract with a customer, optionally from a won deal."""

    customer_id: UUID
    title: Text
    start_date: date
    end_date: date
    amount: Amount = Field(description="Per billing period (the whole amount when one_time)")
    currency: Currency = "JPY"
    billing_cycle: BillingCycle = "one_time"
    auto_renewal: bool = False
    deal_id: UUID | None = None
    terms: LongText | None = None
    owner: Text | None = None


class RenewContract(_Command):
    """Renew an active contract to a later end date (optionally at a new amount)."""

    end_date: date
    amount: Amount | None = None


class AmendContract(_Command):
    """Amend terms of an active contract; name the reason and at least one change."""

    reason: Annotated[str, Field(min_length=1, max_length=2000)]
    amount: Amount | None = None
    end_date: date | None = None
    terms: LongText | None = None
    billing_cycle: BillingCycle | None = None
    auto_renewal: bool | None = None


class CancelContract(_Command):
    """Cancel (解約) an active contract from a date (default: today)."""

    reason: Annotated[str, Field(min_length=1, max_length=2000)]
    effective_on: date | None = None


class ExpireContract(_Command):
    """Let a contract that reached its end date expire, or renew it if it renews automatically (scheduler)."""

    end_date: date


# --- orders ------------------------------------------------------------------------------------


class OrderLineInput(_Command):
    """One line as ordered; the service computes line_amount = unit_price × quantity − discount, and tax."""

    product_code: Text
    product_name: Text
    category: Text | None = None
    unit_price: Amount
    quantity: int = Field(ge=1, le=10_000_000, strict=True)
    discount: Amount = Decimal(0)
    tax_rate: TaxRate | None = Field(default=None, description='Default "0.10"')


class PlaceOrder(_Command):
    """Place an order (受注・購買); a given total must equal the sum of the line amounts (pre-tax)."""

    customer_id: UUID
    order_date: date
    delivery_date: date | None = None
    currency: Currency = "JPY"
    lines: list[OrderLineInput] = Field(min_length=1, max_length=1000)
    total: Amount | None = None
    deal_id: UUID | None = None
    contract_id: UUID | None = None


class DeliverOrder(_Command):
    """Record that the order was delivered (default: today)."""

    delivered_on: date | None = None


class CancelOrder(_Command):
    """Cancel an order that was not delivered."""

    reason: Annotated[str, Field(min_length=1, max_length=2000)] | None = None


class ReturnLineInput(_Command):
    """Units of one order line that came back."""

    line_no: int = Field(ge=1, strict=True)
    quantity: int = Field(ge=1, strict=True)


class ReturnOrder(_Command):
    """Take goods back: the given lines, or everything that remains when no lines are given."""

    lines: list[ReturnLineInput] = Field(default_factory=list, max_length=1000)
    returned_on: date | None = None
    reason: Annotated[str, Field(min_length=1, max_length=2000)] | None = None

    @model_validator(mode="after")
    def _each_line_once(self) -> ReturnOrder:
        numbers = [line.line_no for line in self.lines]
        if len(numbers) != len(set(numbers)):
            raise ValueError("name each line_no once")
        return self


# --- invoices, payments, budgets ---------------------------------------------------------------


class IssueInvoice(_Command):
    """Issue an invoice (請求書) with a due date; the amount is tax included."""

    customer_id: UUID
    due_date: date
    amount: PositiveAmount
    currency: Currency = "JPY"
    invoice_number: Text | None = Field(default=None, description="Default: derived from the invoice id")
    issued_on: date | None = Field(default=None, description="Default: today (JST)")
    order_id: UUID | None = None
    contract_id: UUID | None = None


class CancelInvoice(_Command):
    """Void an invoice that has no payments."""

    reason: Annotated[str, Field(min_length=1, max_length=2000)]


class MarkInvoiceOverdue(_Command):
    """Record that an invoice's due date passed with an amount outstanding (scheduler)."""

    due_date: date


class RecordPayment(_Command):
    """A payment (入金) received, against an invoice or unapplied; never more than the invoice has outstanding."""

    customer_id: UUID
    amount: PositiveAmount
    paid_on: date
    method: PaymentMethod
    invoice_id: UUID | None = None
    currency: Currency | None = Field(default=None, description="Default: the invoice's currency, else JPY")
    payment_id: UUID | None = Field(default=None, description="Chosen by the service when absent")


class SetBudget(_Command):
    """Set or revise the customer's budget for one of their fiscal years."""

    fiscal_year: int = Field(ge=1900, le=2999, strict=True)
    amount: Amount
    currency: Currency = "JPY"
