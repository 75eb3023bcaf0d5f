"""Commands through the three services' HTTP APIs appear in the timeline, 360, search, segments, pivots
and pipeline of the query API (real processes, real PostgreSQL, real Kafka-protocol broker)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from .conftest import Stack

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


async def _eventually(probe: Callable[[], Awaitable[tuple[bool, Any]]], wait: float = 60.0) -> Any:
    deadline = time.monotonic() + wait
    while True:
        ok, value = await probe()
        if ok:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened; last seen: {value}")
        await asyncio.sleep(0.3)


async def _command(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST, waiting out a service replica that has not seen the new customer yet (its consistency window)."""

    async def send() -> tuple[bool, Any]:
        response = await client.post(url, json=body)
        return response.status_code < 300, response

    response = await _eventually(send, wait=30)
    result: dict[str, Any] = response.json()
    return result


async def test_a_customer_s_commands_in_three_services_show_up_in_every_read_model(stack: Stack) -> None:
    services = stack.endpoints["services"]
    token = secrets.token_hex(3).upper()
    name = f"株式会社{token}精機"
    today = datetime.now(UTC).date()
    bought = today - timedelta(days=3 * 365 + 180)  # between 3 and 4 years ago
    headers = {"Authorization": f"Bearer {stack.token}"}
    async with httpx.AsyncClient(headers=headers, timeout=15) as client:
        customer = await _command(
            client,
            f"{services['contacts']}/customers",
            {
                "kind": "company",
                "name": name,
                "industry": "製造業",
                "fiscal_month": 3,
                "address": {"postal_code": "530-0001", "prefecture": "大阪府", "city": "大阪市北区"},
            },
        )
        cid = customer["id"]
        order = await _command(
            client,
            f"{services['deals']}/orders",
            {
                "customer_id": cid,
                "order_date": bought.isoformat(),
                "delivery_date": (bought + timedelta(days=7)).isoformat(),
                "currency": "JPY",
                "lines": [
                    {
                        "product_code": "PC-NB-14",
                        "product_name": "ノートPC",
                        "category": "PC",
                        "unit_price": "128000",
                        "quantity": 3,
                        "discount": "4000",
                    },
                    {
                        "product_code": "AC-MS-01",
                        "product_name": "マウス",
                        "category": "周辺機器",
                        "unit_price": "2980",
                        "quantity": 3,
                    },
                ],
                "total": "388940",
            },
        )
        assert order["id"]
        deal = await _command(
            client,
            f"{services['deals']}/deals",
            {"customer_id": cid, "title": "PC入替", "owner": "e2e.sales", "amount": "1500000", "currency": "JPY",
             "expected_close_date": (today + timedelta(days=30)).isoformat()},
        )  # fmt: skip
        await _command(client, f"{services['deals']}/deals/{deal['id']}/stage", {"stage": "proposal"})
        ticket = await _command(
            client,
            f"{services['support']}/tickets",
            {"customer_id": cid, "kind": "complaint", "channel": "phone", "category": "product",
             "priority": "high", "subject": "ノートPCが起動しない", "content": "3台中1台が起動しない"},
        )  # fmt: skip

        query = httpx.AsyncClient(base_url=services["projections"], headers=headers, timeout=15)
        async with query:

            async def timeline() -> tuple[bool, Any]:
                page = (await query.get(f"/customers/{cid}/timeline", params={"limit": 100})).json()
                services_seen = {item["service"] for item in page.get("items", [])}
                return services_seen == {"contacts", "deals", "support"}, page

            page = await _eventually(timeline)
            types = {item["type"] for item in page["items"]}
            assert {"contacts.CustomerRegistered", "deals.OrderPlaced", "deals.DealOpened",
                    "deals.DealStageChanged", "support.TicketOpened"} <= types  # fmt: skip

            async def profile() -> tuple[bool, Any]:
                body = (await query.get(f"/customers/{cid}")).json()
                ready = body.get("open_complaints") and body.get("open_deals")
                return bool(ready) and body["metrics"]["order_count"] == 1, body

            body = await _eventually(profile)
            assert Decimal(body["metrics"]["cumulative_purchase_amount"]) == Decimal("388940")
            assert body["metrics"]["complaint_count"] == 1
            assert [d["stage"] for d in body["open_deals"]] == ["proposal"]

            def pc_buyers(open_complaint: bool) -> dict[str, str]:
                return {
                    "kind": "company",
                    "q": token,
                    "bought_category": "PC",
                    "bought_from": (today - timedelta(days=4 * 365)).isoformat(),
                    "bought_to": (today - timedelta(days=3 * 365)).isoformat(),
                    "has_open_complaint": str(open_complaint).lower(),
                }

            async def found(params: dict[str, str]) -> list[str]:
                response = await query.get("/customers", params=params)
                assert response.status_code == 200, response.text
                return [item["customer_id"] for item in response.json()["items"]]

            async def with_open_complaint() -> tuple[bool, Any]:
                ids = await found(pc_buyers(True))
                return ids == [cid], ids

            await _eventually(with_open_complaint)
            assert await found(pc_buyers(False)) == []

            await _command(
                client,
                f"{services['support']}/tickets/{ticket['id']}/resolve",
                {"resolution": "交換済み", "root_cause": "検品漏れ", "prevention": "出荷前通電試験を追加"},
            )

            async def without_open_complaint() -> tuple[bool, Any]:
                ids = await found(pc_buyers(False))
                return ids == [cid], ids

            await _eventually(without_open_complaint)

            segment_filters: dict[str, Any] = {**pc_buyers(False), "kind": ["company"], "bought_category": ["PC"]}
            segment_filters["has_open_complaint"] = False
            saved = await query.post(
                "/segments", json={"name": f"PC購入・クレームなし {token}", "filters": segment_filters}
            )
            assert saved.status_code == 201, saved.text
            members = (await query.get(f"/segments/{saved.json()['segment_id']}/customers")).json()
            assert [m["customer_id"] for m in members["items"]] == [cid]

            pivot = await query.get(
                "/reports/pivot",
                params={"rows": "prefecture", "columns": "product_category", "measure": "revenue", "q": token},
            )
            assert pivot.status_code == 200, pivot.text
            report = pivot.json()
            assert report["rows"] == ["大阪府"]
            cells = dict(zip(report["columns"], report["cells"][0], strict=True))
            assert Decimal(cells["PC"]) == Decimal("380000")
            assert Decimal(cells["周辺機器"]) == Decimal("8940")
            assert Decimal(report["totals"]["grand"]) == Decimal("388940")
            as_csv = await query.get(
                "/reports/pivot",
                params={"rows": "prefecture", "measure": "revenue", "q": token},
                headers={"Accept": "text/csv"},
            )
            assert as_csv.headers["content-type"].startswith("text/csv")
            assert "大阪府" in as_csv.text

            pipeline = (await query.get("/deals/pipeline", params={"owner": "e2e.sales"})).json()
            stages = {s["stage"]: s for s in pipeline["open"]["stages"]}
            assert stages["proposal"]["count"] >= 1
            assert Decimal(stages["proposal"]["amount"]) >= Decimal("1500000")
