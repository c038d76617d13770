"""Orders older than pollerd (issue 11 items 1-3, 17): `StoreSync` + `WooCommerceSource` + a real
SQLite store against `WooSim` holding a history placed days before the daemon starts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pollerd import baseline
from pollerd.config import RouteConfig
from pollerd.sources.woocommerce import WooCommerceStore
from pollerd.sources.woocommerce.client import WooCommerceSource
from pollerd.store import Store, open_store
from pollerd.sync import StoreSync
from pollerd_sim import WooSim
from pollerd_sim.harness import KEY, SECRET

DAY = timedelta(days=1)


@pytest.fixture
def shop() -> Iterator[WooSim]:
    with WooSim(consumer_key=KEY, consumer_secret=SECRET) as server:
        yield server


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = open_store(f"sqlite:///{tmp_path / 'pollerd.db'}")
    yield db
    db.close()


def config(url: str, **kw: Any) -> WooCommerceStore:
    return WooCommerceStore(
        name="shop",
        platform="woocommerce",
        url=url,
        consumer_key=KEY,
        consumer_secret=SECRET,
        max_requests_per_minute=6000,
        timeout=timedelta(seconds=5),
        **kw,
    )


def drive(
    sim: WooSim, store: Store, body: Callable[[StoreSync], Awaitable[None]], **kw: Any
) -> None:
    cfg = config(sim.url, **kw)

    async def scenario() -> None:
        source = WooCommerceSource(cfg)
        try:
            await body(StoreSync(cfg, source, store, [RouteConfig(channels=["hook"])]))
        finally:
            await source.aclose()

    asyncio.run(scenario())


def events(store: Store) -> list[str]:
    return sorted(e["id"] for e in store.events("shop"))


def history(sim: WooSim, now: datetime) -> dict[str, int]:
    """A shop's last weeks before pollerd: placed days ago and untouched since (one of them
    trashed two days ago)."""
    binned = sim.create_order(status="processing", created_at=now - 6 * DAY)
    sim.trash(binned, when=now - 2 * DAY)
    return {
        "binned": binned,
        "bacs_paid": sim.create_order(status="on-hold", created_at=now - 5 * DAY),
        "bacs_cancelled": sim.create_order(status="on-hold", created_at=now - 4 * DAY),
        "card_refunded": sim.create_order(
            status="processing", payment_method="stripe", created_at=now - 9 * DAY
        ),
        "completed": sim.create_order(
            status="processing", payment_method="stripe", created_at=now - 3 * DAY
        ),
        "trashed": sim.create_order(status="processing", created_at=now - 20 * DAY),
        "old_cancelled": sim.create_order(status="cancelled", created_at=now - 30 * DAY),
        "quiet_done": sim.create_order(status="completed", created_at=now - 60 * DAY),
        "quiet_hold": sim.create_order(status="on-hold", created_at=now - 2 * DAY),
    }


def change_after_start(sim: WooSim, ids: dict[str, int]) -> None:
    sim.touch(ids["binned"])  # edited in the trash (a plugin, the REST API): still history
    sim.set_status(ids["bacs_paid"], "processing")
    sim.set_status(ids["bacs_cancelled"], "cancelled")
    sim.set_status(ids["card_refunded"], "refunded")
    sim.set_status(ids["completed"], "completed")
    sim.trash(ids["trashed"])


EXPECTED = {
    ("bacs_paid", "order.paid"),
    ("bacs_cancelled", "order.cancelled"),
    ("card_refunded", "order.refunded"),
    ("completed", "order.fulfilled"),
    ("trashed", "order.deleted"),
}


def test_changes_to_orders_placed_before_the_first_run_alert_once(
    shop: WooSim, store: Store
) -> None:
    ids = history(shop, datetime.now(UTC))

    async def body(sync: StoreSync) -> None:
        sync.ensure_cursor()
        await sync.poll()  # the baseline records the history, silently
        assert events(store) == []
        assert baseline.progress(store, "shop")["done"] is True  # type: ignore[index]
        change_after_start(shop, ids)
        shop.touch(ids["old_cancelled"])  # moves, but nothing happened: no alert
        await sync.poll()
        await sync.poll(sweep=True)  # sweeps and replays add nothing

    drive(shop, store, body)
    assert events(store) == sorted(f"shop:{ids[name]}:{kind}" for name, kind in EXPECTED)


def test_changes_before_the_baseline_reached_them_are_dated_by_evidence(
    shop: WooSim, store: Store
) -> None:
    """The baseline runs after the fast path: changes it has not recorded yet are dated by the
    order's own fields, or by `updated_at` when it has none (a cancellation)."""
    ids = history(shop, datetime.now(UTC))

    async def body(sync: StoreSync) -> None:
        sync.ensure_cursor()
        change_after_start(shop, ids)
        await sync.poll()
        await sync.poll()

    drive(shop, store, body)
    assert events(store) == sorted(f"shop:{ids[name]}:{kind}" for name, kind in EXPECTED)


def test_the_baseline_is_paged_and_resumes_after_a_crash(shop: WooSim, store: Store) -> None:
    now = datetime.now(UTC)
    old = [shop.create_order(status="on-hold", created_at=now - 3 * DAY) for _ in range(250)]
    ancient = shop.create_order(status="on-hold", created_at=now - 200 * DAY)  # past the horizon

    async def first(sync: StoreSync) -> None:
        sync.ensure_cursor()
        source = sync.source
        assert (
            await baseline.step(store, "shop", source, rules=sync.rules, clock=sync.clock, pages=1)
            is False
        )  # type: ignore[arg-type]

    drive(shop, store, first)  # "crashed" after one page
    assert baseline.progress(store, "shop")["page"] == 2  # type: ignore[index]
    requests = len(shop.request_log)

    async def rest(sync: StoreSync) -> None:
        await sync.poll()
        shop.set_status(old[-1], "cancelled")
        shop.set_status(ancient, "cancelled")  # outside it: updated_at decides, still alerts
        await sync.poll()

    drive(shop, store, rest)
    state = baseline.progress(store, "shop")
    assert state is not None and state["done"] is True and state["recorded"] == 250
    assert len(store.snapshots("shop", [str(i) for i in old])) == 250
    assert events(store) == sorted(
        [f"shop:{old[-1]}:order.cancelled", f"shop:{ancient}:order.cancelled"]
    )
    fetched = [r for r in shop.request_log[requests:] if "include" in r["params"]]
    assert len(fetched) <= 3  # pages 2 and 3, and the fast path's fetch


def test_an_order_paid_and_trashed_between_polls_is_announced(shop: WooSim, store: Store) -> None:
    async def body(sync: StoreSync) -> None:
        sync.ensure_cursor()
        await sync.poll()
        order = shop.create_order(payment_method="stripe", set_paid=True)
        shop.trash(order)  # both while pollerd was not polling
        await sync.poll()
        await sync.poll()
        body.order = order  # type: ignore[attr-defined]

    drive(shop, store, body)
    order = body.order  # type: ignore[attr-defined]
    assert events(store) == sorted(
        f"shop:{order}:{kind}" for kind in ("order.created", "order.paid", "order.deleted")
    )


def test_a_permanently_deleted_order_is_announced_once(shop: WooSim, store: Store) -> None:
    async def body(sync: StoreSync) -> None:
        sync.ensure_cursor()
        kept = shop.create_order(status="on-hold")
        gone = shop.create_order(status="processing", set_paid=True)
        trashed = shop.create_order(status="on-hold")
        await sync.poll()
        shop.delete(gone)  # DELETE orders/<id>?force=true: in no listing any more
        shop.trash(trashed)
        shop.delete(trashed)  # emptied from the trash before pollerd saw it there
        mark = len(shop.request_log)
        await sync.poll(sweep=True)
        checks = [r for r in shop.request_log[mark:] if r["params"].get("_fields") == ["id,status"]]
        assert len(checks) == 2  # one include= for the open orders, one under trash
        await sync.poll(sweep=True)
        body.ids = (kept, gone, trashed)  # type: ignore[attr-defined]

    drive(shop, store, body)
    kept, gone, trashed = body.ids  # type: ignore[attr-defined]
    deleted = [e for e in store.events("shop") if e["type"] == "order.deleted"]
    assert sorted(e["id"] for e in deleted) == sorted(
        [f"shop:{gone}:order.deleted", f"shop:{trashed}:order.deleted"]
    )
    assert all("permanently" in json.loads(e["payload"])["reason"] for e in deleted)
    assert f"shop:{kept}:order.deleted" not in events(store)


def test_changes_made_during_a_sweep_are_not_late(shop: WooSim, store: Store) -> None:
    async def body(sync: StoreSync) -> None:
        sync.ensure_cursor()
        await sync.poll()
        missed = shop.create_order(payment_method="stripe")
        # The fast path missed this one: its change is stamped before the fast path's read.
        shop.set_modified([missed], datetime.now(UTC) - timedelta(hours=2))
        listing = sync.source.list_created
        made: list[int] = []

        async def during(after: datetime, page: object) -> object:
            if not made:  # a customer orders while the sweep pages
                made.append(shop.create_order(payment_method="stripe"))
            return await listing(after, page)  # type: ignore[arg-type]

        sync.source.list_created = during  # type: ignore[method-assign]
        report = await sync.poll(sweep=True)
        assert report.late_events == 1
        body.ids = (missed, made[0])  # type: ignore[attr-defined]

    drive(shop, store, body)
    missed, fresh = body.ids  # type: ignore[attr-defined]
    assert store.late_events("shop") == 1
    late = [e["id"] for e in store.events("shop") if e.get("late")]
    assert late in ([], [f"shop:{missed}:order.created"])
    assert f"shop:{fresh}:order.created" in events(store)


def test_refunds_of_an_unknown_old_order_are_dated_by_the_refunds_route(store: Store) -> None:
    """WooCommerce orders list refunds without dates; for an order outside the baseline its
    refunds' own dates (`GET orders/<id>/refunds`) tell history from news."""
    moment = [datetime.now(UTC).replace(microsecond=0) - 10 * DAY]
    with WooSim(consumer_key=KEY, consumer_secret=SECRET, clock=lambda: moment[0]) as sim:
        history = sim.create_order(status="processing", payment_method="stripe")
        sim.set_status(history, "refunded")  # ten days before pollerd
        news = sim.create_order(status="processing", payment_method="stripe")
        moment[0] += 10 * DAY

        async def body(sync: StoreSync) -> None:
            sync.clock = lambda: moment[0]
            sync.ensure_cursor()
            await sync.poll()
            moment[0] += timedelta(seconds=5)
            sim.touch(history)  # moves; its refund is old news
            sim.set_status(news, "refunded")
            await sync.poll()

        drive(sim, store, body, baseline_horizon=timedelta(0))
    assert events(store) == [f"shop:{news}:order.refunded"]


def test_a_malformed_old_order_does_not_stop_the_baseline(shop: WooSim, store: Store) -> None:
    from pollerd.sources.base import Malformed

    now = datetime.now(UTC)
    ids = [shop.create_order(status="on-hold", created_at=now - 3 * DAY) for _ in range(5)]
    bad = str(ids[2])

    async def body(sync: StoreSync) -> None:
        fetch = sync.source.fetch

        async def broken(wanted: list[str], *, status: str = "any") -> object:
            found = await fetch(wanted, status=status)
            return [
                Malformed(bad, "total", "not an amount: 'garbage'") if o.id == bad else o
                for o in found
            ]

        sync.source.fetch = broken  # type: ignore[method-assign]
        sync.ensure_cursor()
        await sync.poll()

    drive(shop, store, body)
    state = baseline.progress(store, "shop")
    assert state is not None and state["done"] is True and state["recorded"] == 4
    assert sorted(store.snapshots("shop", [str(i) for i in ids])) == sorted(
        str(i) for i in ids if i != ids[2]
    )


def test_an_order_dated_a_year_ahead_does_not_drag_the_bookmark_past_later_orders(
    shop: WooSim, store: Store
) -> None:
    """A store clock set a year ahead for a moment (or a plugin writing a bad date): that order
    is diffed, but the bookmark must not jump a year ahead, or no later change would be listed
    again (the sweeps read from the bookmark too)."""

    async def body(sync: StoreSync) -> None:
        sync.ensure_cursor()
        ahead = shop.create_order(status="processing", payment_method="stripe")
        shop.set_modified([ahead], datetime.now(UTC) + 365 * DAY)
        await sync.poll()
        cursor = store.cursor("shop")
        assert cursor is not None and cursor.updated_at < datetime.now(UTC) + 2 * DAY
        later = shop.create_order(status="processing", payment_method="stripe")
        await sync.poll()
        assert f"shop:{later}:order.created" in events(store)
        assert f"shop:{ahead}:order.created" in events(store)

    drive(shop, store, body)
