"""End to end through the CLI against the simulated Shopify store (`ShopSim`): `pollerd once`
and `pollerd run` subprocesses, alerts received by a real webhook sink. Expected events come
from the lifecycle each test drives, not from pollerd's own diff."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pollerd_sim import ShopSim, WebhookSink
from pollerd_sim.harness import SHOPIFY_TOKEN, pollerd, write_config
from tests.support.clocks import WallClock


@pytest.fixture
def shop() -> Iterator[ShopSim]:
    with ShopSim(access_token=SHOPIFY_TOKEN) as server:
        yield server


def received(sink: WebhookSink) -> Counter[str]:
    return Counter(i for i in sink.ids() if i)


def config_for(tmp: Path, shop: ShopSim, sink: WebhookSink, **store: Any) -> Path:
    return write_config(tmp, shop.url, sink.url, platform="shopify", store=store)


def once(config: Path, *args: str) -> None:
    result = pollerd("once", "--config", str(config), *args)
    assert result.returncode == 0, result.stderr
    assert SHOPIFY_TOKEN not in result.stderr + result.stdout


def test_each_lifecycle_event_exactly_once(
    tmp_path: Path, shop: ShopSim, sink: WebhookSink
) -> None:
    config = config_for(tmp_path, shop, sink)
    held = shop.create_order(financial="AUTHORIZED")  # a hold on the card, never "paid"
    card = shop.create_order(financial="PAID", total="40.00")
    later = shop.create_order(financial="PENDING")
    trial = shop.create_order(financial="PAID", test=True)
    once(config)
    assert set(received(sink)) == {
        f"shop:{held}:order.created",
        f"shop:{card}:order.created",
        f"shop:{card}:order.paid",
        f"shop:{later}:order.created",
        f"shop:{trial}:order.created",
        f"shop:{trial}:order.paid",
    }
    shop.touch(held)  # updatedAt moves, nothing else: no alert
    shop.refund(card, "10.00")
    shop.pay(later)
    once(config)
    shop.refund(card, "30.00")
    shop.fulfill(later)
    shop.cancel(held, reason="FRAUD")
    shop.delete(trial)
    once(config)
    once(config)  # nothing new
    expected = {
        f"shop:{held}:order.created",
        f"shop:{held}:order.cancelled",
        f"shop:{card}:order.created",
        f"shop:{card}:order.paid",
        f"shop:{card}:order.partially_refunded",
        f"shop:{card}:order.refunded",
        f"shop:{later}:order.created",
        f"shop:{later}:order.paid",
        f"shop:{later}:order.fulfilled",
        f"shop:{trial}:order.created",
        f"shop:{trial}:order.paid",
        f"shop:{trial}:order.deleted",
    }
    counts = received(sink)
    assert set(counts) == expected and max(counts.values()) == 1
    bodies = {json.loads(r.body)["id"]: json.loads(r.body) for r in sink.receipts}
    assert bodies[f"shop:{trial}:order.paid"]["test"] is True
    assert bodies[f"shop:{card}:order.paid"]["test"] is False
    assert bodies[f"shop:{held}:order.cancelled"]["reason"] == "fraud"
    paid = bodies[f"shop:{card}:order.paid"]["order"]
    assert paid["number"].startswith("#") and paid["total"] == "40.00"
    assert paid["financial_status"] == "paid" and paid["admin_url"].startswith(
        "https://admin.shopify.com/store/acme/orders/"
    )
    assert "ada@example.test" not in json.dumps(bodies)  # masked customer


def test_orders_sharing_one_updated_at_across_small_pages(
    tmp_path: Path, sink: WebhookSink
) -> None:
    # Pages above 10 orders answer HTTP 500 ("huge orders"): pollerd must shrink to pages of
    # 10, and a cluster of 30 orders with one updatedAt must page through by cursor, each once.
    with ShopSim(access_token=SHOPIFY_TOKEN, max_ok_page=10) as shop:
        config = config_for(tmp_path, shop, sink)
        ids = [shop.create_order(financial="PAID") for _ in range(30)]
        shop.set_updated(ids, datetime.now(UTC).replace(microsecond=0))
        once(config)
        once(config)
    counts = received(sink)
    assert set(counts) == {f"shop:{i}:{t}" for i in ids for t in ("order.created", "order.paid")}
    assert max(counts.values()) == 1


def test_index_lag_is_waited_out_and_late_finds_are_counted(
    tmp_path: Path, sink: WebhookSink
) -> None:
    clock = WallClock()
    with ShopSim(access_token=SHOPIFY_TOKEN, index_lag=20, clock=clock) as shop:
        config = config_for(tmp_path, shop, sink, overlap="2s")
        first = shop.create_order(financial="PAID")
        once(config)
        assert not sink.receipts  # not yet in the search index: nothing, and no error
        clock.advance(21)
        once(config)
        assert set(received(sink)) == {f"shop:{first}:order.created", f"shop:{first}:order.paid"}
        # An order whose indexed updatedAt fell behind the bookmark by more than the overlap is
        # invisible to the fast path; the sweep (created_at, a second access path) finds it.
        hidden = shop.create_order(financial="PAID")
        newer = shop.create_order(financial="PENDING")
        shop.set_updated([hidden], clock.now - timedelta(minutes=10))
        clock.advance(21)  # the index now shows `hidden` 10 minutes behind the bookmark
        once(config)
        assert f"shop:{newer}:order.created" in received(sink)
        assert f"shop:{hidden}:order.created" not in received(sink)
        once(config, "--sweep")
    counts = received(sink)
    assert counts[f"shop:{hidden}:order.paid"] == 1 and max(counts.values()) == 1
    db = sqlite3.connect(tmp_path / "pollerd.db")
    late = {row[0] for row in db.execute("SELECT id FROM event WHERE late")}
    assert late == {f"shop:{hidden}:order.created", f"shop:{hidden}:order.paid"}
    status = json.loads(pollerd("status", "--json", "--config", str(config)).stdout)
    assert status["stores"][0]["late_events"] == 2


def test_another_client_drains_the_budget_and_nothing_is_lost(
    tmp_path: Path, daemon_factory: Any, sink: WebhookSink
) -> None:
    with ShopSim(access_token=SHOPIFY_TOKEN, bucket=1000, restore=50) as shop:
        config = config_for(tmp_path, shop, sink, max_budget=0.5)
        daemon = daemon_factory(config)
        daemon.start()
        stop = threading.Event()

        def other_app() -> None:  # the merchant's other tool on the same app token
            while not stop.is_set():
                shop.consume(20)
                stop.wait(0.5)

        hog = threading.Thread(target=other_app)
        hog.start()
        started = time.monotonic()
        ids = []
        for _ in range(20):
            ids.append(shop.create_order(financial="PAID"))
            time.sleep(0.2)
        expected = {f"shop:{i}:{t}" for i in ids for t in ("order.created", "order.paid")}
        try:
            assert sink.wait_for_ids(expected, timeout=60)
        finally:
            stop.set()
            hog.join()
        elapsed = time.monotonic() - started
        assert daemon.stop() == 0
        # consume() is not a request, so every GraphQL request in the log is pollerd's.
        ours = [e for e in shop.request_log if e["path"].endswith("graphql.json")]
        spent = sum(e.get("actual") or 0 for e in ours)
    assert max(received(sink).values()) == 1
    # pollerd's share is half the 50 points/s restore rate; allow one bucket-full of burst.
    assert spent <= 0.5 * 50 * elapsed + 500, (spent, elapsed)
    assert not any(e.get("throttled") for e in ours), "pollerd asked for more than was left"


def test_token_expiry_mid_run_is_refreshed(
    tmp_path: Path, daemon_factory: Any, sink: WebhookSink
) -> None:
    with ShopSim(
        access_token=None, client_id="cid_test", client_secret="csecret_test_0123456789"
    ) as shop:
        config = config_for(
            tmp_path, shop, sink, client_id="cid_test", client_secret="csecret_test_0123456789"
        )
        daemon = daemon_factory(config)
        daemon.start()
        first = shop.create_order(financial="PAID")
        assert sink.wait_for_ids({f"shop:{first}:order.paid"}, timeout=30)
        shop.expire_tokens()
        second = shop.create_order(financial="PAID")
        assert sink.wait_for_ids({f"shop:{second}:order.paid"}, timeout=30)
        assert daemon.stop() == 0
        assert "csecret_test_0123456789" not in daemon.output()
    assert max(received(sink).values()) == 1


def test_version_fall_forward_warns_and_bad_token_explains(
    tmp_path: Path, shop: ShopSim, sink: WebhookSink
) -> None:
    config = config_for(tmp_path, shop, sink, api_version="2024-01")
    result = pollerd("check", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "2024-01" in result.stdout + result.stderr and "2026-01" in result.stdout + result.stderr
    wrong = write_config(tmp_path / "wrong", shop.url, sink.url, platform="shopify", store={})
    text = wrong.read_text().replace('"env:TEST_SHOPIFY_TOKEN"', '"shpat_wrong_token_abcdef"')
    wrong.write_text(text)
    failed = pollerd("check", "--config", str(wrong))
    assert failed.returncode == 1
    assert "shpat_wrong_token_abcdef" not in failed.stdout + failed.stderr
    assert "token" in (failed.stdout + failed.stderr).lower()
