"""Contacts commands through the running system: HTTP → event store → Kafka → timeline."""

import asyncio
import time
from typing import Any

import httpx
import pytest

from .conftest import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


async def _types_on_timeline(
    client: httpx.AsyncClient, stack: Stack, customer_id: str, expected: set[str], wait: float = 30
) -> list[dict[str, Any]]:
    url = stack.endpoints["services"]["projections"]
    deadline = time.monotonic() + wait
    while True:
        response = await client.get(
            f"{url}/customers/{customer_id}/timeline", headers={"Authorization": f"Bearer {stack.token}"}
        )
        items: list[dict[str, Any]] = response.json().get("items", []) if response.status_code == 200 else []
        if expected <= {i["type"] for i in items}:
            return items
        if time.monotonic() > deadline:
            raise AssertionError(f"missing {expected - {i['type'] for i in items}} on the timeline of {customer_id}")
        await asyncio.sleep(0.1)


async def test_a_company_life_story_reaches_its_timeline(stack: Stack) -> None:
    contacts = stack.endpoints["services"]["contacts"]
    auth = {"Authorization": f"Bearer {stack.token}"}
    async with httpx.AsyncClient(timeout=10, headers=auth) as client:
        created = await client.post(
            f"{contacts}/customers",
            json={"kind": "company", "name": "株式会社みなと商会", "name_kana": "ミナトショウカイ"},
        )
        cid = created.json()["id"]
        base = f"{contacts}/customers/{cid}"
        renamed = await client.post(
            f"{base}/rename", json={"name": "株式会社みなとホールディングス"}, headers={"If-Match": '"1"'}
        )
        assert renamed.status_code == 200, renamed.text
        stale = await client.post(f"{base}/rename", json={"name": "x"}, headers={"If-Match": '"1"'})
        assert stale.status_code == 409
        assert stale.json()["current_version"] == 2
        person = await client.post(
            f"{base}/contacts", json={"name": "鈴木 一郎", "department": "総務部", "title": "課長"}
        )
        assert person.status_code == 201, person.text
        pid = person.json()["person_id"]
        moved = await client.post(
            f"{base}/contacts/{pid}/move", json={"department": "経営企画部", "effective_on": "2026-04-01"}
        )
        assert moved.status_code == 200, moved.text
        consent = await client.post(f"{base}/consents", json={"channel": "email", "granted": True, "source": "展示会"})
        assert consent.status_code == 200, consent.text
        items = await _types_on_timeline(
            client,
            stack,
            cid,
            {
                "contacts.CustomerRegistered",
                "contacts.CustomerRenamed",
                "contacts.ContactPersonAdded",
                "contacts.ContactPersonMovedDepartment",
                "contacts.ConsentGranted",
            },
        )
    move = next(i for i in items if i["type"] == "contacts.ContactPersonMovedDepartment")
    assert move["occurred_at"].startswith("2026-03-31T15:00:00")  # 2026-04-01 00:00 JST, effective time
    assert move["data"]["previous_department"] == "総務部"
    occurred = [i["occurred_at"] for i in items]
    assert occurred == sorted(occurred, reverse=True)


async def test_merge_and_unmerge_are_recorded_on_both_timelines(stack: Stack) -> None:
    contacts = stack.endpoints["services"]["contacts"]
    auth = {"Authorization": f"Bearer {stack.token}"}
    async with httpx.AsyncClient(timeout=10, headers=auth) as client:
        a = (
            await client.post(
                f"{contacts}/customers", json={"kind": "company", "name": "株式会社ABC商事", "phone": "03-1234-5678"}
            )
        ).json()["id"]
        second = await client.post(
            f"{contacts}/customers",
            json={"kind": "company", "name": "(株)ＡＢＣ商事", "phone": "03‐1234‐5678", "email": "info@abc.example"},
        )
        assert second.status_code == 201
        b = second.json()["id"]
        assert a in [c["customer_id"] for c in second.json()["possible_duplicates"]]
        listed = (await client.get(f"{contacts}/duplicates", params={"min_score": 0.8})).json()
        assert any(set(item["customer_ids"]) == {a, b} for item in listed["items"])
        merged = await client.post(f"{contacts}/customers/{a}/merge", json={"absorbed_id": b})
        assert merged.status_code == 200, merged.text
        refused = await client.post(f"{contacts}/customers/{b}/rename", json={"name": "x"})
        assert refused.status_code == 409
        assert refused.json()["survivor_id"] == a
        survivor = (await client.get(f"{contacts}/customers/{a}")).json()
        assert survivor["email"] == "info@abc.example"
        unmerged = await client.post(f"{contacts}/customers/{a}/unmerge", json={"absorbed_id": b})
        assert unmerged.status_code == 200, unmerged.text
        restored = (await client.get(f"{contacts}/customers/{a}")).json()
        assert restored.get("email") is None
        assert (await client.get(f"{contacts}/customers/{b}")).json()["merged_into"] is None
        await _types_on_timeline(client, stack, a, {"contacts.CustomersMerged", "contacts.CustomersUnmerged"})
        await _types_on_timeline(client, stack, b, {"contacts.CustomerMergedInto", "contacts.CustomerUnmergedFrom"})
