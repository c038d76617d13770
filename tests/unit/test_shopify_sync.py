"""The Shopify pass in-process: `StoreSync` + `ShopifyGraphQLSource` + a real SQLite store against
`ShopSim`, with the simulator's clock held still so several changes share one second."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pollerd.config import RouteConfig
from pollerd.sources.shopify import ShopifyStore
from pollerd.sources.shopify.graphql import ShopifyGraphQLSource
from pollerd.sources.shopify.rest import ShopifyRestSource
from pollerd.store import open_store
from pollerd.sync import StoreSync
from pollerd_sim import ShopSim

TOKEN = "shpat_unit_0123456789"


def test_a_change_hiding_behind_the_bookmark_in_the_same_second_is_walked(
    tmp_path: Path,
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    with ShopSim(access_token=TOKEN, clock=lambda: now) as shop:
        cfg = ShopifyStore(
            name="shop",
            platform="shopify",
            shop="acme.myshopify.com",
            base_url=shop.url,
            access_token=TOKEN,
            start_from=datetime(2020, 1, 1, tzinfo=UTC),
        )
        store = open_store(f"sqlite:///{tmp_path / 'pollerd.db'}")
        routes = [RouteConfig(channels=["hook"])]

        async def scenario() -> tuple[int, str]:
            source = ShopifyGraphQLSource(cfg)
            sync = StoreSync(cfg, source, store, routes)
            try:
                first = shop.create_order(financial="PENDING")
                shop.create_order(financial="PENDING")  # the bookmark: same second, higher id
                await sync.poll()
                shop.pay(first)  # same second again, lower id: the probe shows nothing newer
                report = await sync.poll()
                quiet = await sync.poll()  # and once the seam is walked, idle passes stay cheap
                assert quiet.events == 0
                return report.events, str(first)
            finally:
                await source.aclose()

        found, first = asyncio.run(scenario())
        paid = [e["id"] for e in store.events("shop") if e["type"] == "order.paid"]
        store.close()
    assert found == 1 and paid == [f"shop:{first}:order.paid"]


def _sync_config(url: str) -> ShopifyStore:
    return ShopifyStore(
        name="shop",
        platform="shopify",
        shop="acme.myshopify.com",
        base_url=url,
        access_token=TOKEN,
        start_from="now",
        deletions=False,
        disputes=False,
    )


@pytest.mark.parametrize("api", ["graphql", "rest"])
def test_orders_placed_before_the_first_run_alert_what_happens_after_it(
    tmp_path: Path, api: str
) -> None:
    """Shopify dates every change (capture, refund, fulfillment, cancellation), so no baseline
    is needed: an old order alerts exactly what happened after the start point. REST reads a
    capture's date from the order's transactions."""
    now = datetime.now(UTC)
    with ShopSim(access_token=TOKEN) as shop:
        held = shop.create_order(financial="AUTHORIZED", created_at=now - timedelta(days=6))
        cancelled = shop.create_order(financial="PAID", created_at=now - timedelta(days=12))
        refunded = shop.create_order(financial="PAID", created_at=now - timedelta(days=30))
        shipped = shop.create_order(financial="PAID", created_at=now - timedelta(days=2))
        quiet = shop.create_order(financial="PAID", created_at=now - timedelta(days=3))
        gone = shop.create_order(financial="PAID", created_at=now - timedelta(days=40))
        cfg = _sync_config(shop.url).model_copy(update={"api": api, "deletions": True})
        store = open_store(f"sqlite:///{tmp_path / 'pollerd.db'}")

        async def scenario() -> None:
            source = ShopifyGraphQLSource(cfg) if api == "graphql" else ShopifyRestSource(cfg)
            sync = StoreSync(cfg, source, store, [RouteConfig(channels=["hook"])])
            try:
                sync.ensure_cursor()
                await sync.poll()
                shop.pay(held)  # the capture of an authorisation placed days ago
                shop.cancel(cancelled)
                shop.refund(refunded, "25.00")
                shop.fulfill(shipped)
                shop.touch(quiet)  # moved, nothing happened
                shop.delete(gone)  # never seen, deleted after the start point
                sync._feeds_due["deletions"] = 0.0  # the feed's own 30 s clock, made due now
                await sync.poll()
                await sync.poll(sweep=True)
            finally:
                await source.aclose()

        asyncio.run(scenario())
        found = sorted(e["id"] for e in store.events("shop"))
        store.close()
    assert found == sorted(
        [
            f"shop:{held}:order.paid",
            f"shop:{cancelled}:order.cancelled",
            f"shop:{refunded}:order.refunded",
            f"shop:{shipped}:order.fulfilled",
            f"shop:{gone}:order.deleted",
        ]
    )


def test_a_late_indexed_order_in_the_bookmarks_second_is_found_by_the_next_probe(
    tmp_path: Path,
) -> None:
    """Both orders change in one second; the search index (20 s behind) shows the first to the
    walk and the second, with the higher id, only later. The probe must see it is past the
    bookmark by key `(updatedAt, id)`, not wait for the once-a-minute walk."""
    moment = [datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)]
    with ShopSim(access_token=TOKEN, clock=lambda: moment[0], index_lag=20) as shop:
        cfg = _sync_config(shop.url).model_copy(
            update={"start_from": datetime(2020, 1, 1, tzinfo=UTC)}
        )
        store = open_store(f"sqlite:///{tmp_path / 'pollerd.db'}")

        async def scenario() -> tuple[int, int]:
            source = ShopifyGraphQLSource(cfg)
            sync = StoreSync(
                cfg, source, store, [RouteConfig(channels=["hook"])], clock=lambda: moment[0]
            )
            try:
                shop.create_order(financial="PENDING")
                moment[0] += timedelta(milliseconds=600)
                late = shop.create_order(financial="PENDING")  # same second, higher id
                moment[0] += timedelta(seconds=19.6)  # the first is indexed, the second not yet
                first = await sync.poll()
                moment[0] += timedelta(seconds=1)  # now the index shows the second one
                second = await sync.poll()
                assert store.events("shop")[-1]["id"] == f"shop:{late}:order.created"
                return first.events, second.events
            finally:
                await source.aclose()

        found = asyncio.run(scenario())
        store.close()
    assert found == (1, 1)
