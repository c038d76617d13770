"""One contract every order source keeps, run against each source and its simulator: what the
sync loop relies on, whatever the platform (STYLE.md: "one parametrised contract suite every
source must pass").

The suite runs for every platform registered in the `pollerd.sources` entry-point group, the
toy platform of `tests/support/toyplatform` included (installed for the run through a real
entry point). A platform supplies its simulator as a `contract_rig(build)` context manager
beside its `Platform` object; the built-in ones are below."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pollerd.sources import PLATFORMS
from pollerd.sources.base import Listed, ListPage, Source
from pollerd.sources.shopify import ShopifyStore
from pollerd.sources.woocommerce import WooCommerceStore
from pollerd_sim import ShopSim, WooSim
from pollerd_sim.harness import KEY, SECRET, SHOPIFY_TOKEN
from tests.support import toyplatform


@dataclass
class Rig:
    """A simulator, a source on it, and the platform's words for "new order" and "paid"."""

    make: Callable[[], Source]
    create: Callable[[], int]
    pay: Callable[[int], None]
    paid_status: str


Build = Callable[[Any], Source]


@contextlib.contextmanager
def woo(build: Build) -> Iterator[Rig]:
    with WooSim(consumer_key=KEY, consumer_secret=SECRET) as sim:
        cfg = WooCommerceStore(
            name="shop",
            platform="woocommerce",
            url=sim.url,
            consumer_key=KEY,
            consumer_secret=SECRET,
            max_requests_per_minute=6000,
        )
        yield Rig(
            make=lambda: build(cfg),
            create=lambda: sim.create_order(payment_method="stripe"),
            pay=lambda oid: sim.set_status(oid, "processing"),
            paid_status="processing",
        )


def shopify(api: str) -> Callable[[Build], contextlib.AbstractContextManager[Rig]]:
    @contextlib.contextmanager
    def rig(build: Build) -> Iterator[Rig]:
        with ShopSim(access_token=SHOPIFY_TOKEN) as sim:
            cfg = ShopifyStore(
                name="shop",
                platform="shopify",
                shop="acme.myshopify.com",
                base_url=sim.url,
                access_token=SHOPIFY_TOKEN,
                api=api,  # type: ignore[arg-type]
            )
            yield Rig(
                make=lambda: build(cfg),
                create=lambda: sim.create_order(financial="PENDING"),
                pay=sim.pay,
                paid_status="paid",
            )

    return rig


BUILT_IN = {
    "woocommerce": {"woocommerce": woo},
    "shopify": {"shopify-graphql": shopify("graphql"), "shopify-rest": shopify("rest")},
}
with toyplatform.registered():
    REGISTERED = sorted(PLATFORMS.names())
VARIANTS = [
    pytest.param((name, variant), id=variant)
    for name in REGISTERED
    for variant in BUILT_IN.get(name, {name: None})
]


def test_the_toy_platform_is_registered_through_its_entry_point() -> None:
    assert REGISTERED == ["shopify", "toy", "woocommerce"]


@pytest.fixture(params=VARIANTS)
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    name, variant = request.param
    with toyplatform.registered():
        plugin = PLATFORMS.load(name)

        def build(cfg: Any) -> Source:
            return plugin.build(cfg, sleep=asyncio.sleep)

        if name in BUILT_IN:
            make = BUILT_IN[name][variant]
        else:  # a platform brings its own simulator, beside its Platform object
            make = getattr(sys.modules[type(plugin).__module__], "contract_rig", None)
            assert make is not None, f"platform {name!r} has no contract_rig for this suite"
        with make(build) as made:
            yield made


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
