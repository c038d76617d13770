"""The seller rules end to end: `pollerd once` (as from a timer) and `pollerd run` (killed with
-9 in the middle) against the simulated Shopify store, alerts received by a real webhook sink.

One scripted history produces each of the five alerts exactly once: a high-value order, an
order still unpaid an hour after it was placed (its creation dated in the past: no sleeping for
a timer), three orders from one IP within the hour, a day whose cancellations run above the
previous days' mean, and an open dispute whose evidence is due within the reminder's 72 h.
Then `pollerd alerts test` replays it without recording or sending anything.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pollerd_sim import ShopSim, WebhookSink
from pollerd_sim.harness import SHOPIFY_TOKEN, Daemon, pollerd, write_config

ALERTS = """
[[routes]]
events = ["alert.*", "dispute.deadline"]
channels = ["hook"]

[[alerts]]
type = "high_value"
thresholds = { CNY = 5000 }

[[alerts]]
type = "unpaid_timeout"
after = "30m"

[[alerts]]
type = "order_burst"
by = ["ip"]
count = 3
window = "1h"

[[alerts]]
type = "cancellation_rate"
window = "1d"
min_orders = 5
max_rate = 1.0

[[alerts]]
type = "dispute_deadline"
before = ["72h"]
"""

FIVE = {
    "alert.high_value",
    "alert.unpaid_timeout",
    "alert.order_burst",
    "alert.cancellation_rate",
    "dispute.deadline",
}


@pytest.fixture
def shop() -> Iterator[ShopSim]:
    with ShopSim(access_token=SHOPIFY_TOKEN) as server:
        yield server


def config_for(tmp: Path, shop: ShopSim, sink: WebhookSink) -> Path:
    return write_config(tmp, shop.url, sink.url, platform="shopify", extra=ALERTS)


def alerts(sink: WebhookSink, *, distinct: bool = False) -> Counter[str]:
    """Alert receipts by type; a repeated webhook id counts twice unless `distinct`."""
    found: Counter[str] = Counter()
    seen: set[str | None] = set()
    for receipt in sink.receipts:
        kind = json.loads(receipt.body)["type"]
        if kind in FIVE and not (distinct and receipt.webhook_id in seen):
            found[kind] += 1
            seen.add(receipt.webhook_id)
    return found


def wait_for(sink: WebhookSink, kinds: set[str], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if kinds <= set(alerts(sink)):
            return True
        sink.wait_for(len(sink.receipts) + 1, timeout=0.2)
    return False


def history(shop: ShopSim, *, burst: bool = True, dispute: bool = True) -> dict[str, int]:
    """The scripted history (module docstring); `burst`/`dispute` False leave out the burst's
    third order and the dispute, for `late_history` to add."""
    now = datetime.now(UTC)
    for i in range(10):  # the previous days: ten orders, none cancelled (mean rate 0)
        shop.create_order(
            financial="PAID", created_at=now - timedelta(days=2 + i % 5), ip=f"198.51.100.{i}"
        )
    ids = {
        "big": shop.create_order(
            financial="PAID",
            total="6000.00",
            currency="CNY",
            created_at=now - timedelta(hours=2),
            ip="198.51.100.101",
        ),
        "late": shop.create_order(
            financial="PENDING", created_at=now - timedelta(hours=1), ip="198.51.100.102"
        ),
    }
    for n in range(2):  # today: two of the day's orders cancelled
        gone = shop.create_order(
            financial="PAID", created_at=now - timedelta(hours=4), ip=f"198.51.100.{103 + n}"
        )
        shop.cancel(gone)
    for minutes in (40, 30):
        shop.create_order(
            financial="PAID", created_at=now - timedelta(minutes=minutes), ip="203.0.113.7"
        )
    ids["disputed"] = shop.create_order(
        financial="PAID", total="80.00", created_at=now - timedelta(days=1, hours=1)
    )
    if burst:
        late_burst(shop)
    if dispute:
        late_dispute(shop, ids["disputed"])
    return ids


def late_burst(shop: ShopSim) -> None:
    """Placed now: an order dated in the past would be listed only by a sweep."""
    shop.create_order(financial="PAID", ip="203.0.113.7")


def late_dispute(shop: ShopSim, order: int) -> None:
    due = datetime.now(UTC) + timedelta(hours=48)
    shop.add_dispute(order, "80.00", reason="FRAUDULENT", evidence_due_by=due)


def once(config: Path) -> None:
    result = pollerd("once", "--config", str(config))
    assert result.returncode == 0, result.stderr


def deliveries(tmp: Path) -> tuple[int, ...]:
    """What a dry run must leave as it was: deliveries, events and the rules' state in meta."""
    with sqlite3.connect(tmp / "pollerd.db") as db:
        return tuple(
            db.execute(query).fetchone()[0]
            for query in (
                "select count(*) from delivery",
                "select count(*) from event",
                "select group_concat(key || '=' || value) from meta where key like 'rule:%'",
            )
        )


def test_each_alert_once_with_pollerd_once_from_a_timer(
    tmp_path: Path, shop: ShopSim, sink: WebhookSink
) -> None:
    config = config_for(tmp_path, shop, sink)
    history(shop)
    for _ in range(3):  # a timer firing again and again: nothing new, nothing repeated
        once(config)
    assert alerts(sink) == Counter(dict.fromkeys(FIVE, 1))

    # The dry run sees the same five, records and sends nothing (run beside the state).
    sent, queued = len(sink.receipts), deliveries(tmp_path)
    dry = pollerd("alerts", "test", "--days", "7", "--config", str(config))
    assert dry.returncode == 0, dry.stderr
    for kind in FIVE:
        assert kind in dry.stdout
    assert "5 alert(s) would have fired" in dry.stdout
    assert deliveries(tmp_path) == queued
    once(config)
    assert len(sink.receipts) == sent


def test_each_alert_once_across_a_kill_9(tmp_path: Path, shop: ShopSim, sink: WebhookSink) -> None:
    config = config_for(tmp_path, shop, sink)
    ids = history(shop, burst=False, dispute=False)
    daemon = Daemon(config, tmp_path)
    try:
        daemon.start()
        first = {"alert.high_value", "alert.unpaid_timeout", "alert.cancellation_rate"}
        assert wait_for(sink, first), daemon.output()
        daemon.kill()
        late_burst(shop)
        late_dispute(shop, ids["disputed"])
        daemon.start()
        assert wait_for(sink, FIVE), daemon.output()
        assert daemon.stop() == 0
    finally:
        daemon.close()
    # Each alert exactly once. A receipt may repeat only in DESIGN §6's window (killed between
    # handing a message to the channel and recording it), under the same webhook id.
    assert alerts(sink, distinct=True) == Counter(dict.fromkeys(FIVE, 1))
    repeated = len(sink.receipts)
    once(config)  # and a later `once` repeats none of them
    assert len(sink.receipts) == repeated


def test_alerts_test_without_alerts_and_with_bad_arguments(
    tmp_path: Path, shop: ShopSim, sink: WebhookSink
) -> None:
    plain = write_config(tmp_path / "plain", shop.url, sink.url, platform="shopify")
    result = pollerd("alerts", "test", "--config", str(plain))
    assert result.returncode == 0, result.stderr
    assert "no [[alerts]] configured" in result.stdout

    config = config_for(tmp_path / "rules", shop, sink)
    days = pollerd("alerts", "test", "--days", "0", "--config", str(config))
    assert days.returncode == 2 and "--days" in days.stderr
    store = pollerd("alerts", "test", "--store", "nope", "--config", str(config))
    assert store.returncode == 2 and "--store" in store.stderr
    empty = pollerd("alerts", "test", "--config", str(config))  # no database yet: nothing
    assert empty.returncode == 0, empty.stderr
    assert "no alert would have fired" in empty.stdout
