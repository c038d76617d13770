"""A paged backfill with prefetch, killed mid-way (a real SIGKILL at a page boundary while the
next page's listing is in flight: `test_backfill_lists_the_next_page_while_committing` shows it
is), then run again: every order is recorded exactly once, the
resume point never runs ahead of what was committed, and nothing is announced (no --notify).

WooCommerce (offset pages with a resume point) and Shopify (cursor pages, walked again from the
start: snapshots make re-read pages no-ops) alike."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pollerd import runtime
from pollerd.config import load
from pollerd_sim import ShopSim, WebhookSink, WooSim
from pollerd_sim.harness import KEY, SECRET, SHOPIFY_TOKEN, write_config
from tests.fault.rig import clean, intact, killed

pytestmark = pytest.mark.fault
ORDERS = "/wp-json/wc/v3/orders"


def listed_pages(sim: WooSim) -> list[int]:
    return [
        int(entry["params"]["page"][0])
        for entry in sim.request_log
        if entry["path"] == ORDERS and "modified_after" in entry["params"]
    ]


def recorded(db: Path) -> tuple[list[str], list[tuple[str, str, int]], int]:
    """Snapshot order ids, (order, type, copies) of any event recorded twice, and the
    number of deliveries."""
    with sqlite3.connect(db) as conn:
        ids = [str(r[0]) for r in conn.execute("SELECT order_id FROM snapshot")]
        twice = conn.execute(
            "SELECT order_id, type, count(*) FROM event GROUP BY store, order_id, type "
            "HAVING count(*) > 1"
        ).fetchall()
        (deliveries,) = conn.execute("SELECT count(*) FROM delivery").fetchone()
    return ids, twice, int(deliveries)


def resume_point(db: Path) -> dict[str, int] | None:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT value FROM meta WHERE key LIKE 'backfill:%'").fetchone()
    return json.loads(row[0]) if row else None


def test_woocommerce_backfill_killed_while_prefetching_resumes_and_records_each_order_once(
    tmp_path: Path,
) -> None:
    with WooSim(consumer_key=KEY, consumer_secret=SECRET) as sim, WebhookSink() as sink:
        ids = [sim.create_order(payment_method="stripe", set_paid=True) for _ in range(550)]
        config = write_config(tmp_path, sim.url, sink.url, store={"start_from": "now"})
        args = ("backfill", "--config", str(config), "--store", "shop", "--since", "2020-01-01")
        db = tmp_path / "pollerd.db"
        # Killed inside page 2's transaction, while page 3's listing is in flight.
        killed(*args, failpoint="before_page_commit:2")
        intact(db)
        point = resume_point(db)
        assert point is not None and point["page"] == 1, point  # only what was committed
        assert len(recorded(db)[0]) == 100
        # Killed again right after page 4's commit (the run resumes at page 2).
        sim.request_log.clear()
        killed(*args, failpoint="after_page_commit:3")
        intact(db)
        pages = listed_pages(sim)
        assert pages[0] == 1, pages  # the last page committed is re-read first
        point = resume_point(db)
        assert point is not None and point["page"] == 3, point
        clean(*args)
        assert resume_point(db) is None  # finished: the point is dropped
    snapshots, twice, deliveries = recorded(db)
    assert sorted(int(i) for i in snapshots) == sorted(ids)
    assert len(snapshots) == len(set(snapshots))
    assert twice == []
    assert deliveries == 0 and not sink.receipts  # a backfill without --notify


def test_shopify_paged_backfill_killed_while_prefetching_records_each_order_once(
    tmp_path: Path,
) -> None:
    since = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with ShopSim(access_token=SHOPIFY_TOKEN) as shop, WebhookSink() as sink:
        ids = [shop.create_order(financial="PAID") for _ in range(600)]
        config = write_config(
            tmp_path, shop.url, sink.url, platform="shopify", store={"start_from": "now"}
        )
        args = ("backfill", "--config", str(config), "--store", "shop", "--since", since)
        db = tmp_path / "pollerd.db"
        killed(*args, failpoint="before_page_commit:2")
        intact(db)
        first = len(recorded(db)[0])
        assert 0 < first < len(ids)
        clean(*args)
        assert shop.stats()["throttled"] == 0
        assert shop.stats()["bulk_started"] == 0  # a window under 7 days: pages
    snapshots, twice, deliveries = recorded(db)
    assert sorted(int(i) for i in snapshots) == sorted(ids)
    assert twice == []
    assert deliveries == 0 and not sink.receipts


def test_backfill_lists_the_next_page_while_committing(
    tmp_path: Path, sim: WooSim, sink: WebhookSink, env: None
) -> None:
    """When page N's commit has returned (the progress callback), page N + 1's listing has
    already reached the store: it went out while page N was being written."""
    for _ in range(550):
        sim.create_order(payment_method="stripe", set_paid=True)
    settings = load(
        write_config(
            tmp_path,
            sim.url,
            sink.url,
            store={"start_from": "now", "backfill_requests_per_minute": 60000},
        )
    )
    early: list[bool] = []

    def committed(done: int, total: int | None) -> None:
        page = done // 100
        if done % 100 == 0 and page < 6:
            early.append(page + 1 in listed_pages(sim))

    asyncio.run(
        runtime.backfill(
            settings,
            store="shop",
            since=datetime(2020, 1, 1, tzinfo=UTC),
            until=None,
            notify_channels=False,
            progress=committed,
        )
    )
    assert len(early) == 5 and any(early), early
    assert listed_pages(sim) == [1, 2, 3, 4, 5, 6]  # each page once, none beyond the last
