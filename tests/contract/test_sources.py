"""One contract every order source keeps, run against each source and its simulator: what the
sync loop relies on, whatever the platform (STYLE.md: "one parametrised contract suite every
source must pass")."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pollerd.sources.base import Listed, ListPage, Source
from pollerd.sources.shopify import ShopifyStore
from pollerd.sources.woocommerce import WooCommerceStore
from pollerd_sim import ShopSim, WooSim
from pollerd_sim.harness import KEY, SECRET, SHOPIFY_TOKEN


@dataclass
class Rig:
    """A simulator, a source on it, and the platform's words for "new order" and "paid"."""

    make: Callable[[], Source]
    create: Callable[[], int]
    pay: Callable[[int], None]
    paid_status: str


def woo(sim: WooSim) -> Rig:
    cfg = WooCommerceStore(
        name="shop",
        platform="woocommerce",
        url=sim.url,
        consumer_key=KEY,
        consumer_secret=SECRET,
        max_requests_per_minute=6000,
    )
    from pollerd.sources.woocommerce.client import WooCommerceSource

    return Rig(
        make=lambda: WooCommerceSource(cfg),
        create=lambda: sim.create_order(payment_method="stripe"),
        pay=lambda oid: sim.set_status(oid, "processing"),
        paid_status="processing",
    )


def shopify(sim: ShopSim, api: str) -> Rig:
    cfg = ShopifyStore(
        name="shop",
        platform="shopify",
        shop="acme.myshopify.com",
        base_url=sim.url,
        access_token=SHOPIFY_TOKEN,
        api=api,  # type: ignore[arg-type]
    )
    from pollerd.daemon import build_source

    return Rig(
        make=lambda: build_source(cfg),
        create=lambda: sim.create_order(financial="PENDING"),
        pay=sim.pay,
        paid_status="paid",
    )


@pytest.fixture(params=["woocommerce", "shopify-graphql", "shopify-rest"])
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    if request.param == "woocommerce":
        with WooSim(consumer_key=KEY, consumer_secret=SECRET) as sim:
            yield woo(sim)
    else:
        with ShopSim(access_token=SHOPIFY_TOKEN) as sim:
            yield shopify(sim, request.param.removeprefix("shopify-"))


def run(rig: Rig, body: Callable[[Source], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        source = rig.make()
        try:
            return await body(source)
        finally:
            await source.aclose()

    return asyncio.run(main())


async def walk(source: Source, after: datetime) -> list[Listed]:
    rows: list[Listed] = []
    page: int | str | None = None
    while True:
        listing: ListPage = await source.list_modified(after, page)
        rows.extend(listing.rows)
        if listing.next is None:
            return rows
        page = listing.next


def test_check_describes_the_store(rig: Rig) -> None:
    text = run(rig, lambda s: s.check())
    assert isinstance(text, str) and text.strip()


def test_listing_pages_cover_every_order_once(rig: Rig) -> None:
    ids = {str(rig.create()) for _ in range(120)}
    after = datetime.now(UTC) - timedelta(hours=1)
    rows = run(rig, lambda s: walk(s, after))
    assert sorted(r.id for r in rows) == sorted(ids)
    assert all(r.updated_at.tzinfo is not None for r in rows)


def test_listed_status_matches_the_fetched_order(rig: Rig) -> None:
    unpaid, paid = rig.create(), rig.create()
    rig.pay(paid)
    after = datetime.now(UTC) - timedelta(hours=1)

    async def body(source: Source) -> tuple[list[Listed], list[Any]]:
        rows = await walk(source, after)
        return rows, await source.fetch([r.id for r in rows])

    rows, orders = run(rig, body)
    by_id = {o.id: o for o in orders}
    assert set(by_id) == {str(unpaid), str(paid)}
    for row in rows:
        order = by_id[row.id]
        assert row.status == order.status and row.updated_at == order.updated_at
    assert by_id[str(paid)].status == rig.paid_status


def test_fetch_skips_unknown_ids(rig: Rig) -> None:
    known = rig.create()
    orders = run(rig, lambda s: s.fetch([str(known), "999999999999999"]))
    assert [o.id for o in orders] == [str(known)]


def test_listing_window_excludes_older_changes(rig: Rig) -> None:
    rig.create()
    later = datetime.now(UTC) + timedelta(hours=1)
    assert run(rig, lambda s: walk(s, later)) == []


def test_probe_reports_the_newest_change_or_nothing(rig: Rig) -> None:
    first = rig.create()
    newest = run(rig, lambda s: s.probe())
    if newest is not None:  # sources without a cheap probe return None: always walk
        assert newest.id == str(first)
