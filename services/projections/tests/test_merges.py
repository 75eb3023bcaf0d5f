"""Merges (名寄せ) on the read side: 308 to the survivor, both histories in its 360 and timeline, unmerge splits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import pytest
import pytest_asyncio
from crm_eventstore.ids import new_id
from crm_eventstore.keyring import Keyring
from crm_projections.timeline.merges import Instant, MergeLink, links_in_force, members_of, survivor_of

from .builders import T0, World, merged, open_world, order_placed, registered, ticket_opened, unmerged

pytestmark = pytest.mark.integration

D = timedelta(days=1)


@pytest_asyncio.fixture(loop_scope="session")
async def world(pg_admin_url: str, keyring: Keyring) -> AsyncIterator[World]:
    async with open_world(pg_admin_url, keyring) as w:
        yield w


def _link(absorbed: object, survivor: object, merged_: bool, version: int, day: int) -> MergeLink:
    when = T0 + day * D
    return MergeLink(absorbed, survivor, merged_, version, when, when)  # type: ignore[arg-type]


def test_the_latest_link_by_stream_version_decides_whatever_order_links_arrive_in() -> None:
    a, b = new_id(), new_id()
    links = [_link(a, b, False, 3, 2), _link(a, b, True, 2, 1)]
    assert links_in_force(links) == {}
    assert links_in_force(links, Instant(as_of=T0 + 1 * D)) == {a: b}
    assert links_in_force(list(reversed(links))) == {}


def test_chains_of_merges_resolve_to_the_last_survivor_and_collect_every_member() -> None:
    a, b, c = new_id(), new_id(), new_id()
    in_force = links_in_force([_link(a, b, True, 2, 1), _link(b, c, True, 2, 2)])
    assert survivor_of(in_force, a) == c
    assert members_of(in_force, c) == [c, *sorted([a, b])]
    assert survivor_of({a: b, b: a}, a) in (a, b)  # a corrupt cycle does not hang


async def test_a_merged_record_redirects_and_the_survivor_shows_both_histories_until_unmerged(world: World) -> None:
    survivor, duplicate = new_id(), new_id()
    mine = order_placed(survivor, date(2025, 1, 10), [("10000", 1)])
    theirs = order_placed(duplicate, date(2025, 2, 10), [("30000", 1)])
    await world.record(
        [
            registered(survivor, "株式会社ABC商事"),
            registered(duplicate, "(株)ABC商事"),
            mine,
            theirs,
            ticket_opened(duplicate, "complaint"),
        ]
    )
    entries_before = await world.read_pool.fetchval("SELECT count(*) FROM timeline_entries")
    merge_at = datetime.now(UTC)
    merge_events = await world.record(merged(survivor, duplicate, merge_at))

    redirect = await world.get(f"/customers/{duplicate}", as_role="manager", effective_at="2030-01-01T00:00:00+09:00")
    assert redirect.status_code == 308
    assert redirect.headers["location"] == f"/customers/{survivor}?effective_at=2030-01-01T00%3A00%3A00%2B09%3A00"
    timeline_redirect = await world.get(f"/customers/{duplicate}/timeline")
    assert timeline_redirect.status_code == 308
    assert timeline_redirect.headers["location"] == f"/customers/{survivor}/timeline"

    body = (await world.get(f"/customers/{survivor}")).json()
    assert body["merged_from"] == [str(duplicate)]
    assert body["profile"]["name"] == "株式会社ABC商事"  # the duplicate's own profile does not overwrite
    assert (body["metrics"]["cumulative_purchase_amount"], body["metrics"]["order_count"]) == ("40000", 2)
    assert body["metrics"]["complaint_count"] == 1
    timeline = (await world.get(f"/customers/{survivor}/timeline", limit=100)).json()
    owners = {item["event_id"] for item in timeline["items"]}
    assert {str(e.event_id) for e in world.recorded if e.customer_id == duplicate} <= owners
    assert timeline["merged_from"] == [str(duplicate)]

    # Before the merge was recorded, the duplicate was a record of its own.
    before = await world.get(
        f"/customers/{duplicate}",
        as_role="manager",
        as_of=(merge_events[0].recorded_at - timedelta(microseconds=1)).isoformat(),
    )
    assert before.status_code == 200
    assert before.json()["metrics"]["cumulative_purchase_amount"] == "30000"

    await world.record(unmerged(survivor, duplicate, datetime.now(UTC)))
    split = (await world.get(f"/customers/{survivor}")).json()
    assert (split["merged_from"], split["metrics"]["cumulative_purchase_amount"]) == ([], "10000")
    again = await world.get(f"/customers/{duplicate}")
    assert again.status_code == 200
    assert again.json()["metrics"]["cumulative_purchase_amount"] == "30000"
    assert again.json()["merged_into"] is None

    # Nothing stored was rewritten: four merge/unmerge events were added, every earlier entry is as it was.
    assert await world.read_pool.fetchval("SELECT count(*) FROM timeline_entries") == entries_before + 4
    assert await world.read_pool.fetchval("SELECT count(*) FROM customer_merges WHERE absorbed_id = $1", duplicate) == 2


async def test_a_chain_of_merges_redirects_to_the_last_survivor(world: World) -> None:
    a, b, c = new_id(), new_id(), new_id()
    await world.record([registered(a), registered(b), registered(c), order_placed(a, date(2025, 3, 1), [("700", 1)])])
    await world.record([*merged(b, a, datetime.now(UTC)), *merged(c, b, datetime.now(UTC))])
    response = await world.get(f"/customers/{a}")
    assert response.status_code == 308
    assert response.headers["location"] == f"/customers/{c}"
    body = (await world.get(f"/customers/{c}")).json()
    assert sorted(body["merged_from"]) == sorted([str(a), str(b)])
    assert body["metrics"]["cumulative_purchase_amount"] == "700"


async def test_the_merge_log_is_append_only(world: World) -> None:
    import asyncpg

    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await world.read_pool.execute("DELETE FROM customer_merges")
