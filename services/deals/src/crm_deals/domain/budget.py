"""Customer budgets per fiscal year (stream budget-<customer uuid>)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from crm_schemas.base import DomainEvent
from crm_schemas.deals import CustomerBudgetSet

from crm_deals.domain.commands import SetBudget
from crm_deals.domain.customers import CustomerStanding, check_customer
from crm_deals.domain.errors import DomainError
from crm_deals.domain.money import check_amount, parse, text


@dataclass(frozen=True)
class Budgets:
    """A customer's budget for each fiscal year: year → (amount, currency)."""

    customer_id: UUID
    years: tuple[tuple[int, Decimal, str], ...] = ()
    version: int = 0

    def of(self, fiscal_year: int) -> tuple[Decimal, str] | None:
        """The budget of one fiscal year, if set."""
        return next(((amount, cur) for year, amount, cur in self.years if year == fiscal_year), None)


def decide_set(command: SetBudget, state: Budgets, customer: CustomerStanding, now: datetime) -> list[DomainEvent]:
    """The event of setting a known customer's budget for a fiscal year (nothing if unchanged)."""
    cid = check_customer(customer)
    amount = check_amount(command.amount, command.currency, "amount")
    current = state.of(command.fiscal_year)
    if current is not None:
        if current[1] != command.currency:
            raise DomainError(
                f"the FY{command.fiscal_year} budget is in {current[1]}, not {command.currency}", field="currency"
            )
        if current[0] == amount:
            return []
    return [
        CustomerBudgetSet(
            customer_id=cid,
            occurred_at=now,
            fiscal_year=command.fiscal_year,
            amount=text(amount, command.currency),
            currency=command.currency,
            previous_amount=None if current is None else text(current[0], command.currency),
        )
    ]


def evolve(state: Budgets, event: DomainEvent) -> Budgets:
    """The budgets after an event."""
    if isinstance(event, CustomerBudgetSet):
        others = tuple(entry for entry in state.years if entry[0] != event.fiscal_year)
        years = tuple(sorted((*others, (event.fiscal_year, parse(event.amount), event.currency))))
        state = replace(state, years=years)
    return replace(state, version=state.version + 1)


def initial(customer_id: UUID) -> Budgets:
    """A customer without budgets."""
    return Budgets(customer_id=customer_id)


def stream_id(customer_id: UUID) -> str:
    """The stream of a customer's budgets."""
    return f"budget-{customer_id}"
