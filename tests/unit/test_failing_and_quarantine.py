"""Issue 11 items 14 and 16 at unit level, on a real SQLite store with fake clocks: the failure
episode's timing, back-off and log policy (`pollerd.alerts.store`), and the quarantine's
bookkeeping (`pollerd.quarantine`), plus a Shopify order that does not read being set aside."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pollerd.alerts.store import REMIND_EVERY, StoreWatch, episode
from pollerd.config import RouteConfig
from pollerd.model import Order
from pollerd.quarantine import Quarantine, held
from pollerd.sources.base import Malformed
from pollerd.sources.shopify import ShopifyStore
from pollerd.sources.shopify.graphql import ShopifyGraphQLSource
from pollerd.store import Store, open_store
from pollerd_sim import ShopSim
from tests.support.clocks import SecondsClock

T0 = 1_800_000_000.0
WHEN = datetime.fromtimestamp(T0, UTC)
ROUTES = [RouteConfig(events=["alert.*"], channels=["ops"])]


def watch(store: Store, clock: SecondsClock, after: str = "10m") -> StoreWatch:
    minutes = {"10m": 10.0, "0s": 0.0}[after]
    return StoreWatch(
        store,
        failing_after=lambda: timedelta(minutes=minutes),
        backoff_max=lambda: timedelta(minutes=15),
        routes=lambda: ROUTES,
        clock=clock,
        monotonic=clock,
    )


def event_ids(store: Store) -> list[str]:
    return [e["id"] for e in store.events()]


def test_store_failing_fires_once_after_the_delay_and_recovery_once(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'p.db'}")
    clock = SecondsClock(T0)
    w = watch(store, clock)
    for minute in (0, 4, 9):  # under 10 minutes: nothing yet
        clock.now = T0 + minute * 60
        w.failed("shop", "woocommerce", "store shop: HTTP 503", fatal=False, interval=10)
    assert event_ids(store) == []
    for minute in (10, 11, 30):
        clock.now = T0 + minute * 60
        w.failed("shop", "woocommerce", "store shop: HTTP 503", fatal=False, interval=10)
    since = int(T0)  # the episode: the subject of both alerts (docs/alerts.md)
    assert event_ids(store) == [f"shop:alert.store_failing:{since}"]
    assert store.counts()["ops"]["pending"] == 1  # routed like any event
    ep = episode(store, "shop")
    assert ep is not None and ep.failures == 6 and ep.alerted and ep.error == "HTTP 503"

    # A new process (pollerd once from a timer) sees the same episode and does not re-alert.
    again = watch(store, clock)
    again.failed("shop", "woocommerce", "store shop: HTTP 503", fatal=False, interval=10)
    assert len(event_ids(store)) == 1
    again.succeeded("shop", "woocommerce")
    again.succeeded("shop", "woocommerce")
    assert event_ids(store) == [
        f"shop:alert.store_failing:{since}",
        f"shop:alert.store_recovered:{since}",
    ]
    # One outbox group (`order.id`) for both, never a number: recovery waits for failure.
    assert {e["order_id"] for e in store.events()} == {f"-@{since}"}
    assert episode(store, "shop") is None
    store.close()


def test_a_short_episode_recovers_silently_and_the_next_one_is_new(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'p.db'}")
    clock = SecondsClock(T0)
    w = watch(store, clock)
    w.failed("shop", "woocommerce", "boom", fatal=False, interval=10)
    w.succeeded("shop", "woocommerce")
    assert event_ids(store) == []
    clock.now += 3600
    w = watch(store, clock, after="0s")
    w.failed("shop", "woocommerce", "boom", fatal=True, interval=10)
    assert event_ids(store) == [f"shop:alert.store_failing:{int(T0 + 3600)}"]
    store.close()


def test_errors_a_person_must_fix_back_off_and_are_logged_once(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'p.db'}")
    clock = SecondsClock(T0)
    w = watch(store, clock)
    waits, louds = [], []
    for _ in range(12):
        loud, _ep, wait = w.failed("shop", "woocommerce", "HTTP 401", fatal=True, interval=10)
        assert w.waiting("shop") == wait
        waits.append(wait)
        louds.append(loud)
        clock.now += wait
    assert waits[:7] == [20, 40, 80, 160, 320, 640, 900] and set(waits[7:]) == {900}
    # Logged at the start, then as a reminder at most every REMIND_EVERY seconds.
    assert louds[0] and sum(louds) <= 1 + sum(waits) // REMIND_EVERY
    loud, _ep, _wait = w.failed("shop", "woocommerce", "HTTP 403", fatal=True, interval=10)
    assert loud  # a different error is news
    loud, _ep, wait = w.failed("shop", "woocommerce", "HTTP 503", fatal=False, interval=10)
    assert wait == 0 and w.waiting("shop") == 0  # retryable: the store's own pace again
    w.failed("shop", "woocommerce", "HTTP 401", fatal=True, interval=10)
    w.succeeded("shop", "woocommerce")
    assert w.waiting("shop") == 0
    store.close()


def order(oid: str, total: str = "25.00") -> Order:
    return Order(
        store="shop",
        platform="woocommerce",
        id=oid,
        number=oid,
        status="processing",
        created_at=WHEN,
        updated_at=WHEN,
        total=total,
        currency="EUR",
    )


def test_quarantine_holds_alerts_once_and_releases(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'p.db'}")
    q = Quarantine(store, "shop", "woocommerce", lambda: ROUTES)
    bad = Malformed("7", "total", "not an amount: 'garbage'", number="7", admin_url="https://x/7")
    assert q.sort([order("6"), bad, order("8")]) == [order("6"), order("8")]
    assert q.sort([bad]) == []  # seen again: last_seen moves, no second alert
    assert event_ids(store) == ["shop:7:alert.order_quarantined"]
    [entry] = held(store, "shop")
    assert entry["order_id"] == "7" and entry["field"] == "total"
    assert entry["first_seen"] <= entry["last_seen"]
    assert q.sort([order("7")]) == [order("7")]  # reads again: released, diffed by the caller
    assert held(store) == []
    store.close()


def test_a_shopify_order_that_does_not_read_is_set_aside(tmp_path: Path) -> None:
    """The GraphQL source returns the others and a `Malformed` for the broken one."""
    with ShopSim() as sim:
        good, broken = sim.create_order(), sim.create_order()
        nodes = [sim.order(good), sim.order(broken)]
        nodes[1]["totalPriceSet"] = {"shopMoney": {"amount": "garbage", "currencyCode": "EUR"}}
        config = ShopifyStore(
            name="acme",
            platform="shopify",
            shop="acme.myshopify.com",
            access_token="shpat_x",
            base_url=sim.url,
        )

        async def main() -> list[Order | Malformed]:
            source = ShopifyGraphQLSource(config)
            try:
                return source._orders({"nodes": nodes}, {str(good), str(broken)})
            finally:
                await source.aclose()

        found = asyncio.run(main())
    assert isinstance(found[0], Order) and found[0].id == str(good)
    assert isinstance(found[1], Malformed) and found[1].order_id == str(broken)
    assert found[1].field.startswith("totalPriceSet") and "garbage" in found[1].problem
    assert found[1].admin_url.endswith(f"/orders/{broken}")


def test_healthz_names_since_when_a_store_fails_and_its_back_off() -> None:
    from pollerd.health import StoreBeat

    beat = StoreBeat(interval=10, since=0.0)
    beat.failed("store shop: HTTP 401")
    beat.failing_since, beat.backoff_until = "2027-01-15T08:00:00+00:00", 100.0
    _ok, info = beat.check(40.0)
    assert info["failing_since"] == "2027-01-15T08:00:00+00:00"
    assert info["backing_off_seconds"] == 60.0
    beat.succeeded(50.0)
    _ok, info = beat.check(51.0)
    assert "failing_since" not in info and "backing_off_seconds" not in info
