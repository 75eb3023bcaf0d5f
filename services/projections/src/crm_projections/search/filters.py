"""The customer filter: what `GET /customers` takes as query parameters and a saved segment stores."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SortKey = Literal[
    "name",
    "-name",
    "revenue",
    "-revenue",
    "last_purchase",
    "-last_purchase",
    "registered",
    "-registered",
]

DEFAULT_SORT: SortKey = "name"
MAX_PAGE_SIZE = 200


class FilterError(ValueError):
    """A filter combination that is well-formed but cannot be answered; names the parameter at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class CustomerFilter(BaseModel):
    """Filters combined with AND; a parameter given several times matches any of its values."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    q: str | None = Field(
        default=None,
        max_length=200,
        description="Substring of the name or its kana reading; width, kana, case and legal forms (株式会社/(株)) folded",
    )
    kind: list[Literal["company", "person"]] | None = None
    prefecture: list[str] | None = None
    city: list[str] | None = None
    industry: list[str] | None = None
    rank: list[str] | None = None
    tag: list[str] | None = Field(default=None, description="Has any of these tags")
    consent: list[str] | None = Field(
        default=None, description="Consent currently granted on a channel (email) or channel:purpose (email:newsletter)"
    )
    owner: list[str] | None = Field(default=None, description="Has a deal owned by this staff member")
    deal_stage: list[str] | None = Field(
        default=None, description="Has a deal at this stage (won and lost included); with owner: the same deal"
    )
    has_open_complaint: bool | None = None
    bought_product: list[str] | None = Field(default=None, description="Bought a product code (not cancelled/returned)")
    bought_category: list[str] | None = Field(default=None, description="Bought a product of this category")
    bought_from: date | None = Field(default=None, description="Order date of that purchase, from (inclusive)")
    bought_to: date | None = Field(default=None, description="Order date of that purchase, to (inclusive)")
    no_purchase_since: date | None = Field(default=None, description="No order on or after this date (or never)")
    min_amount: Decimal | None = Field(default=None, description="Cumulative net purchase amount at least (JPY)")
    max_amount: Decimal | None = Field(default=None, description="Cumulative net purchase amount at most (JPY)")
    last_contact_before: date | None = Field(
        default=None, description="Last recorded activity (visit, call, …) before this date, or none ever"
    )

    def check(self) -> None:
        """Raise FilterError for contradictory bounds."""
        if self.bought_from and self.bought_to and self.bought_from > self.bought_to:
            raise FilterError("bought_to", "bought_to is before bought_from")
        if self.min_amount is not None and self.max_amount is not None and self.min_amount > self.max_amount:
            raise FilterError("max_amount", "max_amount is below min_amount")
        for name in ("min_amount", "max_amount"):
            value = getattr(self, name)
            if value is not None and not value.is_finite():
                raise FilterError(name, f"{name} must be a finite decimal")

    def stored(self) -> dict[str, Any]:
        """The filters as JSON-ready values, without the ones not set (money as decimal strings)."""
        return self.model_dump(mode="json", exclude_none=True)


class CustomerSearch(CustomerFilter):
    """Query parameters of `GET /customers`: the filters plus sort and pagination."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sort: SortKey = Field(
        default=DEFAULT_SORT, description="name, revenue, last_purchase or registered; - for descending"
    )
    cursor: str | None = Field(default=None, description="next_cursor of the previous page")
    limit: int = Field(default=50, ge=1, le=MAX_PAGE_SIZE)

    def filters(self) -> CustomerFilter:
        """Only the filters."""
        return CustomerFilter.model_validate(self.model_dump(exclude={"sort", "cursor", "limit"}))
