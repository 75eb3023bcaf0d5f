"""`crm demo` loads a consistent book through the real services, and it shows up in the read models."""

from __future__ import annotations

import asyncio
import time
from datetime import date
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
from crm_cli.demo_book import CustomerPlan, plan_book
from crm_http.auth import DevIssuer

from .conftest import Stack

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

SEED = 11
CUSTOMERS = 5
TODAY = "2026-11-24"


def _expected_metrics(plan: CustomerPlan) -> dict[str, Any]:
    """What the 360 must say, computed from the plan (not from the services' code)."""
    counted = 0
    invoiced = paid = Decimal(0)
    for order in plan.orders:
        fully_returned = len(order.lines) == 1 and any(r["quantity"] == order.lines[0][1] for r in order.returns)
        if not order.cancel and not fully_returned:
            counted += 1
        if order.invoice is not None:
            invoiced += Decimal(order.invoice.body["amount"])
            paid += sum((Decimal(p["amount"]) for p in order.invoice.payments), Decimal(0))
    expected: dict[str, Any] = {
        "order_count": counted,
        "outstanding_amount": invoiced - paid,
        "complaint_count": sum(1 for t in plan.tickets if t.body["kind"] == "complaint"),
    }
    if not any(o.returns for o in plan.orders):
        expected["cumulative_purchase_amount"] = sum(
            (Decimal(o.body["total"]) for o in plan.orders if not o.cancel), Decimal(0)
        )
    return expected


async def _customer_ids(stack: Stack) -> dict[str, str]:
    """external_id → customer id, read from the contacts event store (external ids are not personal)."""
    url = stack.endpoints["database_urls"]["contacts"]
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT customer_id::text, payload->>'external_id' AS ext FROM events"
            " WHERE type = 'contacts.CustomerRegistered' AND payload->>'external_id' LIKE $1",
            f"DEMO{SEED}-%",
        )
    finally:
        await conn.close()
    return {r["ext"]: r["customer_id"] for r in rows}


async def _eventually(probe: Any, wait: float = 60.0) -> Any:
    deadline = time.monotonic() + wait
    while True:
        ok, value = await probe()
        if ok or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.5)


async def test_the_demo_book_loads_without_a_refusal_and_each_customer_360_matches_the_plan(stack: Stack) -> None:
    loaded = await asyncio.to_thread(
        stack.crm, "demo", "--customers", str(CUSTOMERS), "--seed", str(SEED), "--today", TODAY
    )
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    assert f"demo: {CUSTOMERS} customers" in loaded.stdout

    plans = plan_book(CUSTOMERS, SEED, date.fromisoformat(TODAY))
    ids = await _customer_ids(stack)
    assert len(ids) == CUSTOMERS
    # A manager: the admin's development token does not see outstanding amounts (policy, ADR 0011).
    manager = DevIssuer(stack.home / "issuer").issue("demo.manager", "manager")
    headers = {"Authorization": f"Bearer {manager}"}
    query = stack.endpoints["services"]["projections"]
    async with httpx.AsyncClient(base_url=query, headers=headers, timeout=10) as client:
        for plan in plans:
            kind = "C" if plan.register["kind"] == "company" else "P"
            customer_id = ids[f"DEMO{SEED}-{kind}{plan.key:05d}"]
            expected = _expected_metrics(plan)
            wanted_events = 1 + len(plan.orders) + len(plan.tickets)

            async def probe(cid: str = customer_id, want: dict[str, Any] = expected) -> tuple[bool, Any]:
                response = await client.get(f"/customers/{cid}")
                if response.status_code != 200:
                    return False, response.text
                metrics = response.json()["metrics"]
                got = {k: (Decimal(metrics[k]) if k.endswith("amount") else metrics[k]) for k in want}
                return got == want, got

            assert await _eventually(probe) == expected

            async def timeline(cid: str = customer_id, want: int = wanted_events) -> tuple[bool, Any]:
                page = await client.get(f"/customers/{cid}/timeline", params={"limit": 500})
                types = [item["type"] for item in page.json().get("items", [])]
                found = sum(
                    t in ("contacts.CustomerRegistered", "deals.OrderPlaced", "support.TicketOpened") for t in types
                )
                return found == want, types

            types = await _eventually(timeline)
            assert types.count("deals.OrderPlaced") == len(plan.orders)
            assert types.count("support.TicketOpened") == len(plan.tickets)
            assert types.count("deals.DealOpened") == len(plan.deals)


async def test_running_the_same_demo_again_replays_instead_of_duplicating(stack: Stack) -> None:
    for _ in range(2):  # the first run may itself be a replay of the test above
        again = await asyncio.to_thread(
            stack.crm, "demo", "--customers", str(CUSTOMERS), "--seed", str(SEED), "--today", TODAY
        )
        assert again.returncode == 0, again.stdout + again.stderr
    assert len(await _customer_ids(stack)) == CUSTOMERS
