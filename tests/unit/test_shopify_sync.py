"""The Shopify pass in-process: `StoreSync` + `ShopifyGraphQLSource` + a real SQLite store against
`ShopSim`, with the simulator's clock held still so several changes share one second."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from pollerd.config import RouteConfig, ShopifyStore
from pollerd.sim import ShopSim
from pollerd.sources.shopify_graphql import ShopifyGraphQLSource
from pollerd.store import open_store
from pollerd.sync import StoreSync

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
