"""Test-data builders ("controls") for the deals service."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar
from uuid import UUID

from crm_deals.domain import contract, deal, invoice, order
from crm_deals.domain.commands import IssueInvoice, OpenDeal, PlaceOrder, SignContract
from crm_deals.domain.customers import CustomerStanding
from crm_eventstore.ids import new_id
from crm_eventstore.store import CommandContext
from crm_schemas.base import DomainEvent
from crm_schemas.contacts import ContactPersonAdded, CustomerRegistered, CustomersMerged, CustomersUnmerged
from crm_schemas.envelope import ActorRef

JST = timezone(timedelta(hours=9), "JST")

#: Wednesday 2026-04-01 10:00 JST.
NOW = datetime(2026, 4, 1, 10, 0, tzinfo=JST)
DAY = timedelta(days=1)

S = TypeVar("S")


def known(customer_id: UUID, persons: Sequence[UUID] = (), survivor_id: UUID | None = None) -> CustomerStanding:
    """A customer as the deals service's replica knows it."""
    return CustomerStanding(customer_id, known=True, survivor_id=survivor_id, contact_person_ids=frozenset(persons))


def fold(evolve: Callable[[S, DomainEvent], S], state: S, events: Sequence[DomainEvent]) -> S:
    """The state the events built."""
    for event in events:
        state = evolve(state, event)
    return state


def context(subject: str = "tanaka.sales", role: str = "sales") -> CommandContext:
    """A command context for a sales rep."""
    return CommandContext(actor=ActorRef(subject=subject, role=role, team="sales-tokyo"))


def utc(value: datetime) -> datetime:
    """The same instant in UTC."""
    return value.astimezone(UTC)


# --- deals -------------------------------------------------------------------------------------


def deal_body(customer_id: UUID | str | None = None, **overrides: Any) -> dict[str, Any]:
    """The JSON body of a valid POST /deals."""
    body: dict[str, Any] = {
        "customer_id": str(customer_id or new_id()),
        "title": "基幹システム更改",
        "owner": "tanaka.sales",
        "amount": "12000000",
        "currency": "JPY",
        "expected_close_date": "2026-06-30",
    }
    return {**body, **overrides}


def opened_deal(customer_id: UUID | None = None, **overrides: Any) -> list[DomainEvent]:
    """The events of opening a deal."""
    cid = customer_id or new_id()
    command = OpenDeal.model_validate(deal_body(cid, **overrides))
    return deal.decide_open(command, deal.initial(new_id()), known(cid), NOW)


def deal_after(given: Sequence[DomainEvent]) -> deal.Deal:
    """The deal the events built."""
    return fold(deal.evolve, deal.initial(given[0].deal_id), given)  # type: ignore[attr-defined]


def on_deal(given: Sequence[DomainEvent], *commands: deal.Command, at: datetime = NOW) -> list[DomainEvent]:
    """The given events followed by each command's events."""
    events = list(given)
    for command in commands:
        events += deal.decide(command, deal_after(events), at)
    return events


# --- contracts ---------------------------------------------------------------------------------


def contract_body(customer_id: UUID | str | None = None, **overrides: Any) -> dict[str, Any]:
    """The JSON body of a valid POST /contracts: one year of monthly maintenance."""
    body: dict[str, Any] = {
        "customer_id": str(customer_id or new_id()),
        "title": "保守サポート契約",
        "start_date": "2026-04-01",
        "end_date": "2027-03-31",
        "amount": "50000",
        "currency": "JPY",
        "billing_cycle": "monthly",
        "auto_renewal": False,
    }
    return {**body, **overrides}


def signed_contract(customer_id: UUID | None = None, **overrides: Any) -> list[DomainEvent]:
    """The events of signing a contract."""
    cid = customer_id or new_id()
    command = SignContract.model_validate(contract_body(cid, **overrides))
    return contract.decide_sign(command, contract.initial(new_id()), known(cid), None, NOW)


def contract_after(given: Sequence[DomainEvent]) -> contract.Contract:
    """The contract the events built."""
    return fold(contract.evolve, contract.initial(given[0].contract_id), given)  # type: ignore[attr-defined]


# --- orders ------------------------------------------------------------------------------------


def order_body(customer_id: UUID | str | None = None, **overrides: Any) -> dict[str, Any]:
    """The JSON body of a valid POST /orders: two lines, 3 PCs with a discount and 5 mice; total 318000."""
    body: dict[str, Any] = {
        "customer_id": str(customer_id or new_id()),
        "order_date": "2026-04-01",
        "delivery_date": "2026-04-10",
        "currency": "JPY",
        "lines": [
            {
                "product_code": "PC-X1",
                "product_name": "ノートPC X1",
                "category": "PC",
                "unit_price": "105000",
                "quantity": 3,
                "discount": "7000",
            },
            {
                "product_code": "MS-01",
                "product_name": "ワイヤレスマウス",
                "category": "周辺機器",
                "unit_price": "2000",
                "quantity": 5,
            },
        ],
        "total": "318000",
    }
    return {**body, **overrides}


def placed_order(customer_id: UUID | None = None, **overrides: Any) -> list[DomainEvent]:
    """The events of placing an order."""
    cid = customer_id or new_id()
    command = PlaceOrder.model_validate(order_body(cid, **overrides))
    return order.decide_place(command, order.initial(new_id()), known(cid), NOW)


def order_after(given: Sequence[DomainEvent]) -> order.Order:
    """The order the events built."""
    return fold(order.evolve, order.initial(given[0].order_id), given)  # type: ignore[attr-defined]


def on_order(given: Sequence[DomainEvent], *commands: order.Command, at: datetime = NOW) -> list[DomainEvent]:
    """The given events followed by each command's events."""
    events = list(given)
    for command in commands:
        events += order.decide(command, order_after(events), at)
    return events


# --- invoices ----------------------------------------------------------------------------------


def invoice_body(customer_id: UUID | str | None = None, **overrides: Any) -> dict[str, Any]:
    """The JSON body of a valid POST /invoices: 110000 yen due at the end of April."""
    body: dict[str, Any] = {
        "customer_id": str(customer_id or new_id()),
        "issued_on": "2026-04-01",
        "due_date": "2026-04-30",
        "amount": "110000",
        "currency": "JPY",
    }
    return {**body, **overrides}


def issued_invoice(customer_id: UUID | None = None, **overrides: Any) -> list[DomainEvent]:
    """The events of issuing an invoice."""
    cid = customer_id or new_id()
    command = IssueInvoice.model_validate(invoice_body(cid, **overrides))
    return invoice.decide_issue(command, invoice.initial(new_id()), known(cid), NOW)


def invoice_after(given: Sequence[DomainEvent]) -> invoice.Invoice:
    """The invoice the events built."""
    return fold(invoice.evolve, invoice.initial(given[0].invoice_id), given)  # type: ignore[attr-defined]


def on_invoice(given: Sequence[DomainEvent], *commands: invoice.Command, at: datetime = NOW) -> list[DomainEvent]:
    """The given events followed by each command's events."""
    events = list(given)
    for command in commands:
        events += invoice.decide(command, invoice_after(events), at)
    return events


# --- contacts events, as the deals replica receives them ---------------------------------------


def registered(customer_id: UUID) -> CustomerRegistered:
    """A company registered in the customer master."""
    return CustomerRegistered(customer_id=customer_id, occurred_at=NOW, kind="company", name="株式会社テスト商事")


def person_added(customer_id: UUID, person_id: UUID) -> ContactPersonAdded:
    """A contact person added at a company."""
    return ContactPersonAdded(customer_id=customer_id, occurred_at=NOW, person_id=person_id, name="佐藤 花子")


def merged(survivor: UUID, absorbed: UUID, person_ids: list[UUID] | None = None) -> CustomersMerged:
    """`absorbed` merged into `survivor`, taking over the given contact persons."""
    return CustomersMerged(
        customer_id=survivor,
        occurred_at=NOW,
        absorbed_id=absorbed,
        field_choices={},
        taken={},
        previous={},
        added_person_ids=person_ids or [],
    )


def unmerged(survivor: UUID, absorbed: UUID, person_ids: list[UUID] | None = None) -> CustomersUnmerged:
    """A merge reversed, giving back the given contact persons."""
    return CustomersUnmerged(
        customer_id=survivor, occurred_at=NOW, absorbed_id=absorbed, restored={}, removed_person_ids=person_ids or []
    )
