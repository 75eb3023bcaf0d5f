"""`crm demo`: load the planned Japanese B2B/B2C book through the services' public HTTP APIs.

Going through HTTP (not straight into the event stores) means the demo data passes every validation
and cross-service check a real client meets, including the deals and support services' replicas of
the customer master: a command naming a customer the replica has not seen yet is answered 422, so
the loader retries those for a bounded time (the consistency window, docs/adr/0007).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from crm_cli.demo_book import CustomerPlan, plan_book

REPLICA_WAIT_SECONDS = 60.0


class DemoCommandFailed(Exception):
    """A command of the demo was refused; carries the status and the problem body."""

    def __init__(self, service: str, path: str, status: int, body: Any) -> None:
        super().__init__(f"{service} POST {path} → {status}: {body}")
        self.status = status
        self.body = body


@dataclass
class DemoReport:
    """What loading the demo did."""

    customers: int = 0
    commands: int = 0
    by_path: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    customer_ids: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.commands / self.seconds if self.seconds else 0.0


def _waiting_for_replica(error: DemoCommandFailed) -> bool:
    """A 422 naming the customer or contact person: the service's replica may simply be behind."""
    if error.status != 422 or not isinstance(error.body, dict):
        return False
    text = str(error.body.get("errors", "")) + str(error.body.get("detail", ""))
    return ("customer_id" in text or "contact_person_id" in text) and "merged" not in text


class DemoLoader:
    """Sends one customer's plan after another (several customers at once) to the services."""

    def __init__(self, services: dict[str, str], token: str, report: DemoReport, on_command: Any = None) -> None:
        self._clients = {
            name: httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30.0)
            for name, url in services.items()
        }
        self._report = report
        self._on_command = on_command

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()

    async def post(
        self, service: str, path: str, body: dict[str, Any], label: str, key: str | None = None
    ) -> dict[str, Any]:
        """POST a command; retries 5xx/transport errors and replica lag (bounded), raises on refusal.

        ``key`` becomes the Idempotency-Key, so a rerun of the same book replays what already happened
        (same ids in the answers) and carries on where an interrupted run stopped.
        """
        headers = {} if key is None else {"Idempotency-Key": key}
        deadline = time.monotonic() + REPLICA_WAIT_SECONDS
        delay = 0.05
        while True:
            try:
                response = await self._clients[service].post(path, json=body, headers=headers)
            except httpx.TransportError as transport_error:
                if time.monotonic() > deadline:
                    raise DemoCommandFailed(service, path, 0, str(transport_error)) from transport_error
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            if response.status_code < 300:
                self._report.commands += 1
                self._report.by_path[label] += 1
                if self._on_command is not None:
                    self._on_command()
                result: dict[str, Any] = response.json()
                return result
            try:
                problem: Any = response.json()
            except ValueError:
                problem = response.text
            error = DemoCommandFailed(service, path, response.status_code, problem)
            # 409 with current_version: another writer (e.g. the deals scheduler marking a back-dated
            # invoice overdue) appended to the stream between the service's read and write; sent again
            # without If-Match, the command is decided on the new state.
            stale = response.status_code == 409 and isinstance(problem, dict) and "current_version" in problem
            retry = response.status_code >= 500 or stale or _waiting_for_replica(error)
            if not retry or time.monotonic() > deadline:
                raise error
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def load_customer(self, plan: CustomerPlan, seed: int) -> None:
        """Every command of one customer's plan, in order (later commands use the ids earlier ones got)."""
        step = 0
        plain_post = self.post

        async def post(service: str, path: str, body: dict[str, Any], label: str) -> dict[str, Any]:
            nonlocal step
            step += 1
            return await plain_post(service, path, body, label, f"demo-{seed}-{plan.key}-{step}")

        customer = await post("contacts", "/customers", plan.register, "contacts: register customer")
        cid = str(customer["id"])
        self._report.customer_ids.append(cid)
        if plan.rank:
            await post("contacts", f"/customers/{cid}/rank", {"rank": plan.rank}, "contacts: rank")
        if plan.tags:
            await post("contacts", f"/customers/{cid}/tags", {"add": plan.tags}, "contacts: tags")
        for consent in plan.consents:
            await post("contacts", f"/customers/{cid}/consents", consent, "contacts: consent")
        people: list[str] = []
        for contact in plan.contacts:
            added = await post("contacts", f"/customers/{cid}/contacts", contact.body, "contacts: contact person")
            people.append(str(added.get("person_id") or added["id"]))
        for activity in plan.activities:
            await post("deals", "/activities", {"customer_id": cid, **activity}, "deals: activity")
        for deal in plan.deals:
            body = {"customer_id": cid, **deal.body}
            if people:
                body["contact_person_id"] = people[0]
            opened = await post("deals", "/deals", body, "deals: open deal")
            did = str(opened.get("deal_id") or opened["id"])
            for stage in deal.stages:
                await post("deals", f"/deals/{did}/stage", {"stage": stage}, "deals: stage")
            for activity in deal.activities:
                await post("deals", f"/deals/{did}/activities", activity, "deals: activity")
            if deal.outcome == "won":
                await post("deals", f"/deals/{did}/won", {"amount": deal.final_amount}, "deals: won")
            elif deal.outcome == "lost":
                lost = {"reason": deal.lost_reason, "competitor": deal.competitor}
                await post("deals", f"/deals/{did}/lost", lost, "deals: lost")
            if deal.contract is not None:
                contract = {"customer_id": cid, "deal_id": did, **deal.contract}
                await post("deals", "/contracts", contract, "deals: contract")
        order_ids: list[str] = []
        for order in plan.orders:
            placed = await post("deals", "/orders", {"customer_id": cid, **order.body}, "deals: order")
            oid = str(placed.get("order_id") or placed["id"])
            order_ids.append(oid)
            if order.deliver_on is not None:
                delivered = {"delivered_on": order.deliver_on.isoformat()}
                await post("deals", f"/orders/{oid}/deliver", delivered, "deals: deliver")
            for returned in order.returns:
                ret = {"lines": [returned], "reason": "数量誤り"}
                await post("deals", f"/orders/{oid}/return", ret, "deals: return")
            if order.cancel:
                await post("deals", f"/orders/{oid}/cancel", {"reason": "お客様都合"}, "deals: cancel")
            if order.invoice is not None:
                invoice_body = {"customer_id": cid, "order_id": oid, **order.invoice.body}
                issued = await post("deals", "/invoices", invoice_body, "deals: invoice")
                iid = str(issued.get("invoice_id") or issued["id"])
                for payment in order.invoice.payments:
                    pay = {"customer_id": cid, "invoice_id": iid, **payment}
                    await post("deals", "/payments", pay, "deals: payment")
            if order.direct_payment is not None:
                await post("deals", "/payments", {"customer_id": cid, **order.direct_payment}, "deals: payment")
        for budget in plan.budgets:
            await post("deals", f"/customers/{cid}/budgets", budget, "deals: budget")
        for ticket in plan.tickets:
            body = {"customer_id": cid, **ticket.body}
            if ticket.order_index is not None:
                body["order_id"] = order_ids[ticket.order_index]
            if people:
                body["contact_person_id"] = people[-1]
            opened = await post("support", "/tickets", body, "support: open ticket")
            tid = str(opened.get("ticket_id") or opened["id"])
            assignee, team = ticket.assign
            await post("support", f"/tickets/{tid}/assign", {"assignee": assignee, "team": team}, "support: assign")
            await post("support", f"/tickets/{tid}/reply", {"content": ticket.reply}, "support: reply")
            if ticket.escalate is not None:
                await post("support", f"/tickets/{tid}/escalate", ticket.escalate, "support: escalate")
            if ticket.resolve is not None:
                await post("support", f"/tickets/{tid}/resolve", ticket.resolve, "support: resolve")
                if ticket.csat is not None:
                    await post("support", f"/tickets/{tid}/satisfaction", ticket.csat, "support: satisfaction")
                if ticket.close:
                    await post("support", f"/tickets/{tid}/close", {}, "support: close")
        self._report.customers += 1


async def load_demo(
    services: dict[str, str],
    token: str,
    customers: int,
    seed: int,
    today: date,
    concurrency: int = 8,
    console: Console | None = None,
) -> DemoReport:
    """Plan the book and load it; a refused command is reported and stops only its own customer."""
    plans = plan_book(customers, seed, today)
    report = DemoReport()
    total = sum(p.command_count() for p in plans)
    progress = Progress(
        TextColumn("[bold]demo[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>6.1f} cmd/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    started = time.monotonic()
    with progress:
        task = progress.add_task("commands", total=total, rate=0.0)

        def advanced() -> None:
            elapsed = time.monotonic() - started
            progress.update(task, advance=1, rate=report.commands / elapsed if elapsed else 0.0)

        loader = DemoLoader(services, token, report, advanced)
        gate = asyncio.Semaphore(concurrency)

        async def one(plan: CustomerPlan) -> None:
            async with gate:
                try:
                    await loader.load_customer(plan, seed)
                except DemoCommandFailed as error:
                    report.failures.append(f"customer #{plan.key}: {error}")

        try:
            await asyncio.gather(*(one(p) for p in plans))
        finally:
            await loader.aclose()
    report.seconds = time.monotonic() - started
    return report
