"""A WooCommerce backfill that stops half-way (a failed page, Ctrl-C) resumes where it stopped
instead of from page 1, and its progress never shows more done than the total. Real WooSim,
real SQLite, the real `runtime.backfill`."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pollerd import runtime
from pollerd.config import load
from pollerd.errors import PollerdError
from pollerd.resume import ResumePoint, dump, resume_key
from pollerd.sources.woocommerce.client import WooCommerceSource
from pollerd.store import open_store
from pollerd_sim import WebhookSink, WooSim
from pollerd_sim.harness import pollerd, pollerd_env, write_config

SINCE = datetime(2020, 1, 1, tzinfo=UTC)
ORDERS = "/wp-json/wc/v3/orders"


def listed_pages(sim: WooSim) -> list[int]:
    """The page numbers of every listing request (the ones with modified_after)."""
    return [
        int(entry["params"]["page"][0])
        for entry in sim.request_log
        if entry["path"] == ORDERS and "modified_after" in entry["params"]
    ]


def test_an_interrupted_backfill_resumes_where_it_stopped(
    tmp_path: Path, sim: WooSim, sink: WebhookSink, env: None
) -> None:
    for _ in range(350):
        sim.create_order(payment_method="stripe", set_paid=True)
    settings = load(write_config(tmp_path, sim.url, sink.url, store={"start_from": "now"}))
    seen: list[tuple[int, int | None]] = []

    def interrupt(done: int, total: int | None) -> None:
        seen.append((done, total))
        if done >= 200 and not sim.fault_counts:
            sim.add_fault("500")  # the next page fails: the backfill ends with an error

    with pytest.raises(PollerdError):
        asyncio.run(
            runtime.backfill(
                settings,
                store="shop",
                since=SINCE,
                until=None,
                notify_channels=False,
                progress=interrupt,
            )
        )
    # The page after 200 fails, or the one after it: page 3 may have been read ahead, while
    # page 2 committed, before the fault was set.
    stopped = seen[-1][0]
    assert stopped in (200, 300), seen
    sim.request_log.clear()
    resumed: list[tuple[int, int | None]] = []
    report, _ = asyncio.run(
        runtime.backfill(
            settings,
            store="shop",
            since=SINCE,
            until=None,
            notify_channels=False,
            progress=lambda done, total: resumed.append((done, total)),
        )
    )
    pages = listed_pages(sim)
    assert 1 not in pages, pages  # before the fix: [1, 2, 3, 4]
    # The last page done is re-read to check nothing moved.
    assert pages == list(range(stopped // 100, 5)), pages
    assert resumed[0][0] > stopped and resumed[-1] == (350, 350), resumed
    assert report.listed == 350 - stopped
    store = open_store(settings.pollerd.database)
    try:
        assert not store.metas("backfill:"), "a finished backfill leaves no resume point"
    finally:
        store.close()
    # A third run of the same window starts from page 1 again: the last one finished.
    sim.request_log.clear()
    asyncio.run(
        runtime.backfill(settings, store="shop", since=SINCE, until=None, notify_channels=False)
    )
    assert listed_pages(sim)[0] == 1


def test_progress_never_shows_more_done_than_the_total(
    tmp_path: Path, sim: WooSim, sink: WebhookSink, env: None
) -> None:
    for _ in range(250):
        sim.create_order()
    settings = load(write_config(tmp_path, sim.url, sink.url, store={"start_from": "now"}))
    seen: list[tuple[int, int | None]] = []

    def busy_shop(done: int, total: int | None) -> None:
        # Orders placed while the backfill pages: the window grows. Page 2's listing is
        # already in flight (prefetch), so page 3 is the first to see them.
        if not seen:
            for _ in range(5):
                sim.create_order()
        seen.append((done, total))

    asyncio.run(
        runtime.backfill(
            settings,
            store="shop",
            since=SINCE,
            until=None,
            notify_channels=False,
            progress=busy_shop,
        )
    )
    assert all(total is not None and done <= total for done, total in seen), seen
    assert seen[-1] == (255, 255), seen


def test_backfill_cli_bar_ends_at_the_total(tmp_path: Path, sim: WooSim, sink: WebhookSink) -> None:
    for _ in range(120):
        sim.create_order()
    config = write_config(tmp_path, sim.url, sink.url, store={"start_from": "now"})
    done = pollerd(
        "backfill",
        "--store",
        "shop",
        "--since",
        "2020-01-01",
        "--config",
        str(config),
        env=pollerd_env(FORCE_COLOR="0", TERM="xterm", COLUMNS="100"),
    )
    assert done.returncode == 0, done.stderr
    assert "120/120" in done.stdout and "/?" not in done.stdout, done.stdout


def test_a_resume_point_that_moved_starts_again_from_page_one(
    tmp_path: Path, sim: WooSim, sink: WebhookSink, env: None
) -> None:
    """Orders left the window between the runs (trashed): the offsets moved back, so pages
    after the saved point may hold orders never read (and the saved page itself may be empty
    now); the walk starts again from page 1."""
    ids = [sim.create_order() for _ in range(350)]
    settings = load(write_config(tmp_path, sim.url, sink.url, store={"start_from": "now"}))

    def interrupt(done: int, total: int | None) -> None:
        if done >= 200 and not sim.fault_counts:
            sim.add_fault("500")

    with pytest.raises(PollerdError):
        asyncio.run(
            runtime.backfill(
                settings,
                store="shop",
                since=SINCE,
                until=None,
                notify_channels=False,
                progress=interrupt,
            )
        )
    for order in ids[:150]:
        sim.trash(order)
    sim.request_log.clear()
    asyncio.run(
        runtime.backfill(settings, store="shop", since=SINCE, until=None, notify_channels=False)
    )
    pages = listed_pages(sim)
    assert pages[0] in (2, 3) and pages[1] == 1, pages  # the saved page, then page 1 again
    store = open_store(settings.pollerd.database)
    try:
        assert len(store.snapshots("shop", [str(i) for i in ids])) == len(ids)
    finally:
        store.close()


def test_a_saved_page_that_came_back_empty_starts_again_from_page_one(
    tmp_path: Path, sim: WooSim, sink: WebhookSink, env: None
) -> None:
    """The point says page 3 was done (orders 1-300 of 350); 150 orders left the window since,
    so page 3 is now empty and orders 301-350 sit on page 2. Before the fix the empty page
    ended the walk and those 50 were never read."""
    ids = [sim.create_order() for _ in range(350)]
    settings = load(write_config(tmp_path, sim.url, sink.url, store={"start_from": "now"}))
    store = open_store(settings.pollerd.database)
    try:
        point = ResumePoint(page=3, last_id=ids[299], listed=300)
        store.set_meta(resume_key("shop", SINCE, None), dump(point))
    finally:
        store.close()
    for order in ids[:150]:
        sim.trash(order)
    report, _ = asyncio.run(
        runtime.backfill(settings, store="shop", since=SINCE, until=None, notify_channels=False)
    )
    assert listed_pages(sim)[:2] == [3, 1], listed_pages(sim)
    assert report.listed == 200
    store = open_store(settings.pollerd.database)
    try:
        assert len(store.snapshots("shop", [str(i) for i in ids[150:]])) == 200
    finally:
        store.close()


def test_a_backfill_lists_whole_orders_one_request_a_page_and_records_the_same(
    tmp_path: Path, sim: WooSim, sink: WebhookSink, env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backfill lists full pages (no `_fields`) and never fetches by `include=`: one request
    per 100 orders instead of two (on a real store each costs PHP 0.4-0.6 s). What it records
    is exactly what the listing + fetch path records: same events, same payloads."""
    for i in range(230):
        oid = sim.create_order(payment_method="stripe", set_paid=i % 3 != 0)
        if i % 7 == 0:
            sim.set_status(oid, "cancelled")

    def run(name: str) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
        folder = tmp_path / name
        folder.mkdir()
        settings = load(write_config(folder, sim.url, sink.url, store={"start_from": "now"}))
        sim.request_log.clear()
        asyncio.run(
            runtime.backfill(settings, store="shop", since=SINCE, until=None, notify_channels=False)
        )
        store = open_store(settings.pollerd.database)
        try:
            events = sorted(
                (
                    {
                        "id": e["id"],
                        "payload": {  # the wall clock of the run aside
                            k: v for k, v in json.loads(e["payload"]).items() if k != "detected_at"
                        },
                    }
                    for e in store.events()
                ),
                key=lambda e: str(e["id"]),
            )
        finally:
            store.close()
        return events, [e for e in sim.request_log if e["path"] == ORDERS and e["method"] == "GET"]

    whole, requests = run("whole")
    assert len(requests) == 3, [e["params"] for e in requests]  # 230 orders: 3 pages
    assert not any("include" in e["params"] or "_fields" in e["params"] for e in requests)
    original = WooCommerceSource.use_backfill_budget

    def listing_and_fetch(self: WooCommerceSource) -> str:
        said = original(self)
        self._full_pages = False
        return said

    monkeypatch.setattr(WooCommerceSource, "use_backfill_budget", listing_and_fetch)
    fetched, requests = run("fetched")
    assert sum("include" in e["params"] for e in requests) == 3
    assert len(whole) >= 230 + 153 and whole == fetched
