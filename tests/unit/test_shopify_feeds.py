"""`ShopifyFeeds` (deletions through `events`, disputes) against a real `ShopSim` on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar

import pytest

from pollerd.sources.base import Deletion, Dispute, Feeds, FeedUnavailable
from pollerd.sources.shopify import ShopifyStore
from pollerd.sources.shopify.client import ShopifyClient
from pollerd.sources.shopify.feeds import ShopifyFeeds
from pollerd_sim import ShopSim
from tests.support.clocks import WallClock

STORE = "acme"
SHOP = "acme.myshopify.com"
TOKEN = "shpat_sim_token"
T0 = datetime(2026, 11, 22, 9, 0, 0, tzinfo=UTC)
T = TypeVar("T")


@pytest.fixture
def clock() -> WallClock:
    return WallClock(T0)


@pytest.fixture
def shop(clock: WallClock) -> Iterator[ShopSim]:
    with ShopSim(shop=SHOP, access_token=TOKEN, clock=clock) as sim:
        yield sim


def feeds_call(sim: ShopSim, call: Callable[[ShopifyFeeds], Awaitable[T]]) -> T:
    cfg = ShopifyStore.model_validate(
        {
            "name": STORE,
            "platform": "shopify",
            "shop": SHOP,
            "access_token": TOKEN,
            "base_url": sim.url,
        }
    )

    async def main() -> T:
        client = ShopifyClient(cfg)
        try:
            return await call(ShopifyFeeds(client, STORE))
        finally:
            await client.aclose()

    return asyncio.run(main())


def test_shopify_feeds_is_a_feeds() -> None:
    assert issubclass(ShopifyFeeds, Feeds)


# --- deletions ----------------------------------------------------------------------------------


def test_deleted_orders_are_listed_oldest_first_with_shopifys_message(
    shop: ShopSim, clock: WallClock
) -> None:
    kept = shop.create_order()
    first = shop.create_order()
    second = shop.create_order()
    clock.now = T0 + timedelta(minutes=5)
    shop.delete(second)
    clock.now = T0 + timedelta(minutes=6)
    shop.delete(first)

    got = feeds_call(shop, lambda f: f.deletions(T0))
    assert got == [
        Deletion(str(second), T0 + timedelta(minutes=5), "Order #1003 was deleted."),
        Deletion(str(first), T0 + timedelta(minutes=6), "Order #1002 was deleted."),
    ]
    assert str(kept) not in {d.order_id for d in got}


def test_deletions_start_at_after_inclusive_to_the_second(shop: ShopSim, clock: WallClock) -> None:
    early, late = shop.create_order(), shop.create_order()
    clock.now = T0 + timedelta(minutes=1)
    shop.delete(early)
    clock.now = T0 + timedelta(minutes=2)
    shop.delete(late)

    # `after` with a fraction of a second still includes a deletion at that whole second.
    got = feeds_call(shop, lambda f: f.deletions(T0 + timedelta(minutes=2, microseconds=700)))
    assert [d.order_id for d in got] == [str(late)]
    assert feeds_call(shop, lambda f: f.deletions(T0 + timedelta(minutes=3))) == []


def test_deletions_are_paged_past_one_page(shop: ShopSim) -> None:
    ids = [shop.create_order() for _ in range(260)]  # events(first: 250)
    for order_id in ids:
        shop.delete(order_id)
    got = feeds_call(shop, lambda f: f.deletions(T0 - timedelta(days=1)))
    assert sorted(d.order_id for d in got) == sorted(str(i) for i in ids)
    assert len(got) == len({d.order_id for d in got})


def test_events_that_are_not_order_destroys_are_never_deletions() -> None:
    """Shopify's search ignores a term it cannot parse; the rows are checked again here."""
    feeds = ShopifyFeeds(client=None, store=STORE)  # type: ignore[arg-type]
    base = {
        "id": "gid://shopify/BasicEvent/1",
        "createdAt": "2026-11-22T09:00:00Z",
        "message": "m",
        "action": "destroy",
        "subjectType": "ORDER",
        "subjectId": "gid://shopify/Order/7",
    }
    assert feeds._deletion(base, T0) == Deletion("7", T0, "m")
    assert feeds._deletion({**base, "action": "create"}, T0) is None
    assert feeds._deletion({**base, "subjectType": "PRODUCT"}, T0) is None
    assert feeds._deletion({**base, "subjectId": "gid://shopify/Product/7"}, T0) is None
    assert feeds._deletion(base, T0 + timedelta(seconds=1)) is None


# --- disputes -----------------------------------------------------------------------------------


def test_disputes_recent_plus_every_open_one_with_current_status(
    shop: ShopSim, clock: WallClock
) -> None:
    order = shop.create_order(total="80.00")
    old_open = shop.add_dispute(order, "80.00")
    old_review = shop.add_dispute(order, "10.00", type="INQUIRY", status="UNDER_REVIEW")
    old_won = shop.add_dispute(order, "20.00")
    shop.set_dispute_status(old_won, "WON")
    clock.now = T0 + timedelta(days=30)
    since = clock.now
    recent_lost = shop.add_dispute(order, "30.00", reason="PRODUCT_NOT_RECEIVED")
    shop.set_dispute_status(recent_lost, "LOST")
    recent_open = shop.add_dispute(order, "5.00")  # matches both searches

    got = feeds_call(shop, lambda f: f.disputes(since))
    by_id = {d.id: d for d in got}
    assert set(by_id) == {str(old_open), str(old_review), str(recent_lost), str(recent_open)}
    assert len(got) == 4  # the overlap of the two searches is de-duplicated
    lost = by_id[str(recent_lost)]
    assert lost == Dispute(
        id=str(recent_lost),
        order_id=str(order),
        order_number="#1001",
        status="LOST",
        type="CHARGEBACK",
        amount="30.00",
        currency="USD",
        reason="PRODUCT_NOT_RECEIVED",
        initiated_at=since,
        evidence_due_by=lost.evidence_due_by,
        finalized_on=since.date(),
    )
    assert isinstance(lost.evidence_due_by, date | datetime)
    assert by_id[str(old_review)].type == "INQUIRY"
    assert by_id[str(old_review)].status == "UNDER_REVIEW"
    assert [d.initiated_at for d in got] == sorted(d.initiated_at for d in got)


def test_dispute_status_changes_show_on_the_next_read(shop: ShopSim) -> None:
    order = shop.create_order()
    dispute = shop.add_dispute(order, "25.00")
    later = T0 + timedelta(days=1)  # `since` past its initiation: only "open" keeps it
    assert [d.status for d in feeds_call(shop, lambda f: f.disputes(later))] == ["NEEDS_RESPONSE"]
    shop.set_dispute_status(dispute, "UNDER_REVIEW")
    assert [d.status for d in feeds_call(shop, lambda f: f.disputes(later))] == ["UNDER_REVIEW"]
    shop.set_dispute_status(dispute, "WON")
    assert feeds_call(shop, lambda f: f.disputes(later)) == []
    [won] = feeds_call(shop, lambda f: f.disputes(T0))
    assert won.status == "WON" and won.finalized_on == T0.date()


def test_missing_disputes_scope_is_a_feed_unavailable_naming_scope_and_fix(
    clock: WallClock,
) -> None:
    with ShopSim(shop=SHOP, access_token=TOKEN, clock=clock, scopes=("read_orders",)) as sim:
        order = sim.create_order()
        sim.delete(order)
        with pytest.raises(FeedUnavailable) as caught:
            feeds_call(sim, lambda f: f.disputes(T0))
        assert caught.value.feed == "disputes" and caught.value.store == STORE
        text = str(caught.value)
        assert "read_shopify_payments_disputes" in text
        assert "reinstall" in text and "disputes = false" in text
        assert TOKEN not in text
        # The deletions feed does not need that scope.
        assert [d.order_id for d in feeds_call(sim, lambda f: f.deletions(T0))] == [str(order)]
