"""The backfill's own request budget (`Backfilling`) and its prefetch (`pollerd.prefetch`), on
fake time: a Shopify backfill beside a live pass on one cost bucket, the WooCommerce backfill
pacer, the config keys, and the one-page-ahead listing."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pollerd.config import load
from pollerd.errors import ConfigError, RetryableSourceError
from pollerd.prefetch import Prefetch
from pollerd.sources.base import Backfilling, ListPage, PageToken
from pollerd.sources.ratelimit import CostBudget, backfill_keep
from pollerd.sources.shopify.graphql import ShopifyGraphQLSource
from pollerd.sources.shopify.options import ShopifyStore
from pollerd.sources.shopify.rest import ShopifyRestSource
from pollerd.sources.woocommerce.client import WooCommerceSource, naive_utc
from pollerd.sources.woocommerce.options import WooCommerceStore
from pollerd_sim import WooSim
from pollerd_sim.harness import KEY, SECRET
from tests.support.clocks import FakeTime

# --- Shopify: a backfill and a live pass on one bucket -----------------------------------------


@dataclass
class Bucket:
    """The shop's side of the cost bucket (what Shopify keeps): refills with the fake clock,
    refuses a request it cannot cover (THROTTLED)."""

    t: FakeTime
    maximum: float = 1000.0
    restore: float = 50.0
    level: float = 1000.0
    at: float = 0.0
    refused: int = 0
    lowest: float = 1000.0

    def refill(self) -> None:
        self.level = min(self.maximum, self.level + (self.t.now - self.at) * self.restore)
        self.at = self.t.now

    def take(self, cost: float) -> dict[str, float]:
        self.refill()
        if cost > self.level:
            self.refused += 1
        else:
            self.level -= cost
            self.lowest = min(self.lowest, self.level)
        return {
            "maximumAvailable": self.maximum,
            "currentlyAvailable": self.level,
            "restoreRate": self.restore,
        }


@dataclass
class Client:
    """One process spending from the bucket through its own `CostBudget`: a request is due at
    `due`; it goes when the budget says it fits, or waits as long as the budget says."""

    budget: CostBudget
    cost: float
    due: float
    every: float = 0.0  # the live pass asks every `every` s; 0: back to back (the backfill)
    waits: list[float] = field(default_factory=list)
    spent: float = 0.0
    _asked: float | None = None

    def step(self, bucket: Bucket) -> None:
        if self._asked is None:
            self._asked = self.due
        wait = self.budget.delay(self.cost)
        if wait > 0:
            self.due = bucket.t.now + max(wait, 1e-3)  # float dust must not stall time
            return
        self.budget._advance()
        self.budget._available -= self.cost
        self.budget._allowance -= self.cost
        self.budget.observe(bucket.take(self.cost))
        self.budget.settle(self.cost, self.cost)
        self.spent += self.cost
        self.waits.append(bucket.t.now - self._asked)
        self._asked = None
        self.due = bucket.t.now + (self.every or 0.01)


def share_one_bucket(
    keep: float | None, live_cost: float = 40.0, seconds: float = 600.0
) -> tuple[Bucket, Client, Client]:
    """A backfill (`backfill_max_budget` 0.9, floor `keep`) pulling 200-point pages back to
    back and a live pass (`max_budget` 0.5) sending `live_cost` every 2 s, on one 1000-point
    bucket refilled at 50/s, for `seconds` of fake time."""
    t = FakeTime(0.0)
    bucket = Bucket(t)
    live = Client(CostBudget(0.5, t.clock), cost=live_cost, due=1.0, every=2.0)
    backfill = Client(CostBudget(0.9, t.clock, keep=keep), cost=200.0, due=0.0)
    while t.now < seconds:
        actor = min((live, backfill), key=lambda c: c.due)
        t.now = max(t.now, actor.due)
        actor.step(bucket)
    return bucket, live, backfill


def test_a_backfill_beside_the_live_pass_leaves_the_live_share_free() -> None:
    """The backfill spends above its floor (`backfill_keep`): nobody is ever refused, the live
    pass's probes and pages of changes go out at once, and the backfill still gets nearly all
    the rest of the restore rate (more than the live budget's half)."""
    bucket, live, backfill = share_one_bucket(backfill_keep(0.5))
    assert bucket.refused == 0
    assert max(live.waits) == 0.0, "the live pass waited for the backfill"
    assert bucket.lowest >= 0.5 * bucket.maximum  # the live pass's headroom for others
    rate = backfill.spent / 600.0
    assert 0.5 * 50 < rate <= 0.9 * 50 + 1  # more than max_budget, within backfill_max_budget
    assert rate + live.spent / 600.0 <= 50 + 2  # and the shop's restore rate holds it all


def test_without_the_floor_the_same_backfill_starves_the_live_pass() -> None:
    """The check above can fail: a backfill budget with only the usual headroom (1 − share)
    keeps the bucket under what the live pass needs, and the live pass waits seconds a time."""
    bucket, live, _ = share_one_bucket(None)
    assert max(live.waits) > 2.0
    assert bucket.lowest < 0.5 * bucket.maximum


def test_backfill_keep_is_the_live_headroom_plus_half_the_live_share() -> None:
    assert backfill_keep(0.5) == 0.75
    assert backfill_keep(1.0) == 0.5
    assert backfill_keep(0.2) == pytest.approx(0.9)


def test_a_floor_caps_the_request_size_to_what_is_above_it() -> None:
    """A query larger than what the backfill may drink at once would wait for a full bucket:
    pages and chunks are sized to the part above the floor."""
    t = FakeTime()
    b = CostBudget(0.9, t.clock, t.sleep, keep=0.75)
    b.observe({"maximumAvailable": 2000, "currentlyAvailable": 2000, "restoreRate": 100})
    assert b.floor == 1500.0
    assert b.max_cost() == 500
    assert CostBudget(0.5, t.clock, t.sleep, maximum=2000).max_cost() == 1000  # live: unchanged
    with pytest.raises(ValueError, match="keep"):
        CostBudget(0.9, keep=1.0)


def test_shopify_sources_switch_to_the_backfill_budget() -> None:
    graphql = ShopifyGraphQLSource(shopify_cfg(max_budget=0.6, backfill_max_budget=0.8))
    rest = ShopifyRestSource(shopify_cfg(api="rest", max_budget=0.6))
    try:
        assert isinstance(graphql, Backfilling) and isinstance(rest, Backfilling)
        assert graphql.client.budget.share == 0.6
        words = graphql.use_backfill_budget()
        budget = graphql.client.budget
        assert (budget.share, budget.keep) == (0.8, pytest.approx(0.7))
        assert "backfill_max_budget" in words
        rest.use_backfill_budget()
        assert rest._bucket.budget == pytest.approx(0.3)  # half the live share
    finally:
        asyncio.run(graphql.aclose())
        asyncio.run(rest.aclose())


def shopify_cfg(**kw: Any) -> ShopifyStore:
    values: dict[str, Any] = {
        "name": "shop",
        "platform": "shopify",
        "shop": "acme.myshopify.com",
        "access_token": "shpat_test",
        **kw,
    }
    return ShopifyStore(**values)


# --- WooCommerce: a pacer of its own, back-off included ----------------------------------------


def test_woocommerce_backfill_paces_by_its_own_budget_and_still_honours_retry_after() -> None:
    """Live: 60 a minute (1 s apart); the backfill's 240 a minute: 0.25 s apart. A 429 with
    Retry-After still makes the backfill wait it out, and slows it down (back-off)."""
    t = FakeTime(5000.0)
    after = datetime(2020, 1, 1, tzinfo=UTC)
    with WooSim(consumer_key=KEY, consumer_secret=SECRET) as sim:
        for _ in range(3):
            sim.create_order()
        config = WooCommerceStore(
            name="shop",
            platform="woocommerce",
            url=sim.url,
            consumer_key=KEY,
            consumer_secret=SECRET,
            max_requests_per_minute=60,
            backfill_requests_per_minute=240,
            timeout=timedelta(seconds=5),
        )

        async def main() -> tuple[list[float], list[float]]:
            source = WooCommerceSource(config, clock=t.clock, sleep=t.sleep)
            try:
                await source.list_modified(after, None)  # gate + first page at the live pace
                await source.list_modified(after, None)
                live = list(t.sleeps)
                assert "240 requests a minute" in source.use_backfill_budget()
                t.sleeps.clear()
                for _ in range(3):
                    await source.list_modified(after, None)
                sim.add_fault("429", count=1, retry_after=3)
                with pytest.raises(RetryableSourceError, match="429"):
                    await source.list_modified(after, None)
                await source.list_modified(after, None)  # waits out the Retry-After first
                return live, list(t.sleeps)
            finally:
                await source.aclose()

        live, backfill = asyncio.run(main())
    assert live and all(s == pytest.approx(1.0) for s in live), live
    assert backfill[:2] == pytest.approx([0.25, 0.25]), backfill
    assert any(s >= 2.9 for s in backfill[2:]), f"Retry-After not honoured: {backfill}"


def test_backfill_budget_keys_are_validated_by_name(tmp_path: Any) -> None:
    for key, value in (
        ("backfill_requests_per_minute", 0),
        ("backfill_max_budget", 1.5),
        ("backfill_max_budget", 0),
    ):
        platform = "shopify" if key == "backfill_max_budget" else "woocommerce"
        head = (
            'platform = "shopify"\nshop = "acme.myshopify.com"\naccess_token = "shpat_x"'
            if platform == "shopify"
            else 'platform = "woocommerce"\nurl = "https://shop.example.com"\n'
            'consumer_key = "ck_x"\nconsumer_secret = "cs_x"'
        )
        path = tmp_path / f"{key}-{value}.toml"
        path.write_text(f'[[stores]]\nname = "shop"\n{head}\n{key} = {value}\n')
        with pytest.raises(ConfigError) as info:
            load(path)
        assert key in str(info.value), str(info.value)


def test_woocommerce_defaults_give_the_backfill_more_than_the_live_pass() -> None:
    fields = WooCommerceStore.model_fields
    live = fields["max_requests_per_minute"].default
    assert fields["backfill_requests_per_minute"].default > live
    assert ShopifyStore.model_fields["backfill_max_budget"].default > 0.5
    assert naive_utc(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01T00:00:00"


# --- Prefetch: one page ahead, never a wrong one ---------------------------------------------


class Pages:
    """A lister whose answers the test releases one by one; records what was asked when."""

    def __init__(self) -> None:
        self.asked: list[PageToken] = []
        self.gates: dict[PageToken, asyncio.Event] = {}
        self.in_flight = 0
        self.peak = 0

    async def __call__(self, token: PageToken) -> ListPage:
        self.asked.append(token)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await self.gates.setdefault(token, asyncio.Event()).wait()
        finally:
            self.in_flight -= 1
        if token == 99:
            raise RuntimeError("page 99 failed")
        return ListPage(rows=[], next=int(token or 1) + 1, total=None)

    def release(self, token: PageToken) -> None:
        self.gates.setdefault(token, asyncio.Event()).set()


def test_prefetch_reads_one_page_ahead_and_hands_over_the_page_asked_for() -> None:
    async def main() -> Pages:
        pages = Pages()
        prepared: list[PageToken] = []

        async def prepare(listing: ListPage) -> str:
            prepared.append(listing.next)
            return f"prepared up to {listing.next}"

        ahead = Prefetch(pages, enabled=True, prepare=prepare)
        pages.release(None)
        first, extra = await ahead.page(None)
        assert extra is None  # asked on demand: listed only
        ahead.ahead(first.next)  # page 2 in flight while page 1 "commits"
        ahead.ahead(first.next)  # once only
        await asyncio.sleep(0)
        assert pages.asked == [None, 2] and pages.in_flight == 1
        pages.release(2)
        second, extra = await ahead.page(2)  # the same request, not a second one
        assert second.next == 3 and pages.asked == [None, 2]
        assert extra == "prepared up to 3" and prepared == [3]  # read ahead: prepared too
        ahead.ahead(3)
        await asyncio.sleep(0)
        pages.release(1)
        await ahead.page(1)  # a re-walk from page 1: page 3 is dropped, page 1 asked anew
        assert pages.asked == [None, 2, 3, 1]
        ahead.ahead(99)
        await asyncio.sleep(0)
        pages.release(99)
        await ahead.close()  # the failure of a page nobody asked for is not raised
        return pages

    pages = asyncio.run(main())
    assert pages.peak == 1  # never two listings at once
    assert pages.in_flight == 0


def test_prefetch_disabled_asks_nothing_ahead() -> None:
    async def main() -> list[PageToken]:
        pages = Pages()
        ahead = Prefetch(pages, enabled=False)
        pages.release(None)
        await ahead.page(None)
        ahead.ahead(2)
        await asyncio.sleep(0)
        return pages.asked

    assert asyncio.run(main()) == [None]


def test_prefetch_close_cancels_a_page_in_flight() -> None:
    async def main() -> Pages:
        pages = Pages()
        ahead = Prefetch(pages, enabled=True)
        ahead.ahead(5)
        await asyncio.sleep(0)
        assert pages.in_flight == 1
        await ahead.close()
        return pages

    assert asyncio.run(main()).in_flight == 0
