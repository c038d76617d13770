"""End to end through the CLI: `pollerd once` / `pollerd run` subprocesses against the simulated
WooCommerce store, alerts received by a real webhook sink. Expected events come from the
lifecycle each test drives, not from pollerd's own diff."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pollerd_sim import WebhookSink, WooSim
from pollerd_sim.harness import HOOK_SECRET, KEY, SECRET, pollerd, write_config


def received(sink: WebhookSink) -> Counter[str]:
    return Counter(sink.ids())


def verify_signature(receipt: object) -> None:
    """Standard Webhooks, computed here independently of the channel code."""
    key = base64.b64decode(HOOK_SECRET.removeprefix("whsec_"))
    signed = f"{receipt.webhook_id}.{receipt.timestamp}.".encode() + receipt.body  # type: ignore[attr-defined]
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert expected in receipt.signature.split(" ")  # type: ignore[attr-defined]


def test_each_lifecycle_event_exactly_once(tmp_path: Path, sim: WooSim, sink: WebhookSink) -> None:
    config = write_config(tmp_path, sim.url, sink.url)
    card = sim.create_order(payment_method="stripe")
    bacs = sim.create_order(payment_method="bacs")
    cod = sim.create_order(payment_method="cod")
    draft = sim.create_order(status="checkout-draft")
    assert pollerd("once", "--config", str(config)).returncode == 0
    assert set(received(sink)) == {f"shop:{i}:order.created" for i in (card, bacs, cod)}

    sim.set_status(card, "processing")
    sim.checkout(bacs)  # on-hold: not paid
    sim.checkout(cod)  # processing with date_paid: not paid either
    sim.set_status(draft, "pending")
    assert pollerd("once", "--config", str(config)).returncode == 0
    sim.set_status(bacs, "processing")
    sim.set_status(cod, "completed")
    sim.refund(card, "5.00", "damaged")
    assert pollerd("once", "--config", str(config)).returncode == 0
    sim.set_status(card, "cancelled")
    sim.trash(bacs)
    result = pollerd("once", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert pollerd("once", "--config", str(config)).returncode == 0  # nothing new

    expected = {
        f"shop:{card}:order.created",
        f"shop:{card}:order.paid",
        f"shop:{card}:order.partially_refunded",
        f"shop:{card}:order.cancelled",
        f"shop:{bacs}:order.created",
        f"shop:{bacs}:order.paid",
        f"shop:{bacs}:order.deleted",
        f"shop:{cod}:order.created",
        f"shop:{cod}:order.paid",
        f"shop:{cod}:order.fulfilled",
        f"shop:{draft}:order.created",
    }
    counts = received(sink)
    assert set(counts) == expected
    assert max(counts.values()) == 1
    for receipt in sink.receipts:
        verify_signature(receipt)
        body = json.loads(receipt.body)
        assert body["id"] == receipt.webhook_id and body["store"] == "shop"
        assert "ada@example.test" not in receipt.body.decode()  # masked customer


def test_site_east_of_utc_loses_nothing(tmp_path: Path, sink: WebhookSink) -> None:
    """On a UTC+8 site a `Z` in modified_after would skip 8 hours of orders (research §1.5)."""
    with WooSim(consumer_key=KEY, consumer_secret=SECRET, site_timezone="Asia/Shanghai") as sim:
        config = write_config(tmp_path, sim.url, sink.url, store={"start_from": "now"})
        assert pollerd("once", "--config", str(config)).returncode == 0  # cursor at "now"
        ids = [sim.create_order(payment_method="stripe", set_paid=True) for _ in range(5)]
        assert pollerd("once", "--config", str(config)).returncode == 0
        # The same order is modified again within the cursor's second: still seen.
        sim.set_status(ids[0], "completed")
        assert pollerd("once", "--config", str(config)).returncode == 0
    counts = received(sink)
    assert {f"shop:{i}:order.paid" for i in ids} <= set(counts)
    assert f"shop:{ids[0]}:order.fulfilled" in counts
    assert max(counts.values()) == 1


def test_250_orders_modified_in_one_second(tmp_path: Path, sim: WooSim, sink: WebhookSink) -> None:
    ids = [sim.create_order(payment_method="stripe") for _ in range(250)]
    second = datetime(2026, 11, 22, 9, 32, 36, tzinfo=UTC)
    sim.set_modified(ids, second)
    config = write_config(tmp_path, sim.url, sink.url)
    assert pollerd("once", "--config", str(config)).returncode == 0
    counts = received(sink)
    assert len(counts) == 250 and max(counts.values()) == 1
    status = json.loads(pollerd("status", "--json", "--config", str(config)).stdout)
    assert status["stores"][0]["cursor"] == second.isoformat()
    # The next pass re-reads the overlap (3 pages) but announces nothing again.
    sim.set_status(ids[-1], "processing")
    assert pollerd("once", "--config", str(config)).returncode == 0
    assert received(sink)[f"shop:{ids[-1]}:order.paid"] == 1
    assert len(received(sink)) == 251


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "429"},
        {"kind": "429", "retry_after": 1},
        {"kind": "403html"},
        {"kind": "500"},
        {"kind": "503", "retry_after": 1},
        {"kind": "malformed"},
        {"kind": "reset"},
    ],
    ids=lambda f: "-".join(str(v) for v in f.values()),
)
def test_store_faults_lose_and_repeat_nothing(
    tmp_path: Path, sim: WooSim, sink: WebhookSink, fault: dict[str, object]
) -> None:
    config = write_config(tmp_path, sim.url, sink.url)
    first = [sim.create_order(payment_method="stripe", set_paid=True) for _ in range(3)]
    assert pollerd("once", "--config", str(config)).returncode == 0
    more = [sim.create_order(payment_method="stripe", set_paid=True) for _ in range(3)]
    sim.add_fault(fault["kind"], count=1000, retry_after=fault.get("retry_after"))  # type: ignore[arg-type]
    failed = pollerd("once", "--config", str(config))
    assert failed.returncode == 1, failed.stderr
    assert KEY not in failed.stderr and SECRET not in failed.stderr
    sim.clear_faults()
    assert pollerd("once", "--config", str(config)).returncode == 0
    counts = received(sink)
    assert set(counts) == {
        f"shop:{i}:{t}" for i in first + more for t in ("order.created", "order.paid")
    }
    assert max(counts.values()) == 1


def test_sink_down_then_delivered_with_same_webhook_id(
    tmp_path: Path, sim: WooSim, sink: WebhookSink
) -> None:
    config = write_config(tmp_path, sim.url, sink.url)
    order = sim.create_order(payment_method="stripe", set_paid=True)
    sink.mode = "down"
    assert pollerd("once", "--config", str(config)).returncode == 1  # to retry
    sink.mode = "500"
    assert pollerd("once", "--config", str(config)).returncode == 1
    listed = pollerd("deliveries", "list", "--json", "--config", str(config))
    rows = json.loads(listed.stdout)
    attempts = {r["event_id"]: (r["state"], r["attempts"]) for r in rows}
    # One attempt per `once`; the paid alert waits behind the created one (per-order order).
    assert attempts == {
        f"shop:{order}:order.created": ("pending", 2),
        f"shop:{order}:order.paid": ("pending", 0),
    }
    sink.mode = "ok"
    # Back-off is short in tests; `once` delivers whatever is due (retry makes it due now).
    assert (
        pollerd("deliveries", "retry", "--channel", "hook", "--config", str(config)).returncode == 0
    )
    assert pollerd("once", "--config", str(config)).returncode == 0
    attempts = [a.webhook_id for a in sink.attempts]
    assert received(sink) == Counter(
        {f"shop:{order}:order.created": 1, f"shop:{order}:order.paid": 1}
    )
    # Every attempt carried the same id as the one that finally landed.
    assert set(attempts) == set(received(sink))
    assert len(attempts) > 2


def test_gone_endpoint_holds_channel_until_retry(
    tmp_path: Path, sim: WooSim, sink: WebhookSink
) -> None:
    config = write_config(tmp_path, sim.url, sink.url)
    sim.create_order(payment_method="stripe", set_paid=True)
    sink.mode = "410"
    assert pollerd("once", "--config", str(config)).returncode == 1
    status = json.loads(pollerd("status", "--json", "--config", str(config)).stdout)
    assert status["healthy"] is False and status["channels"][0]["broken"]
    sink.mode = "ok"
    assert pollerd("once", "--config", str(config)).returncode == 0
    assert not sink.receipts  # still held
    assert (
        pollerd("deliveries", "retry", "--channel", "hook", "--config", str(config)).returncode == 0
    )
    assert pollerd("once", "--config", str(config)).returncode == 0
    assert len(received(sink)) == 2


def test_a_broken_channel_is_announced_on_another_once(
    tmp_path: Path, sim: WooSim, sink: WebhookSink
) -> None:
    with WebhookSink() as ops:
        extra = "\n".join(
            [
                "[[channels]]",
                'name = "ops"',
                'type = "webhook"',
                f'url = "{ops.url}"',
                'secret = "env:TEST_HOOK_SECRET"',
                "[[routes]]",
                'events = ["alert.*"]',
                'channels = ["ops", "hook"]',
            ]
        )
        config = write_config(tmp_path, sim.url, sink.url, extra=extra)
        sim.create_order(payment_method="stripe", set_paid=True)
        sink.mode = "410"
        assert pollerd("once", "--config", str(config)).returncode == 1
        pollerd("once", "--config", str(config))  # the channel is still held: no second alert
        alerts = [json.loads(r.body) for r in ops.receipts]
    assert [a["type"] for a in alerts] == ["alert.channel_failing"]
    assert "channel hook" in alerts[0]["reason"] and "deliveries retry" in alerts[0]["reason"]
    assert not sink.receipts  # never routed to the failing channel itself


def test_dead_letters_listed_and_retried(tmp_path: Path, sim: WooSim, sink: WebhookSink) -> None:
    config = write_config(tmp_path, sim.url, sink.url, delivery={"max_attempts": 1})
    sim.create_order()
    sink.mode = "500"
    assert pollerd("once", "--config", str(config)).returncode == 1
    dead = json.loads(
        pollerd("deliveries", "list", "--dead", "--json", "--config", str(config)).stdout
    )
    assert len(dead) == 1 and "500" in dead[0]["last_error"]
    assert pollerd("status", "--config", str(config)).returncode == 1
    sink.mode = "ok"
    assert pollerd("deliveries", "retry", "--config", str(config)).returncode == 0
    assert pollerd("once", "--config", str(config)).returncode == 0
    assert len(sink.receipts) == 1
    assert pollerd("status", "--config", str(config)).returncode == 0


def test_backfill_records_history_without_alerts(
    tmp_path: Path, sim: WooSim, sink: WebhookSink
) -> None:
    old = [sim.create_order(payment_method="stripe", set_paid=True) for _ in range(120)]
    config = write_config(tmp_path, sim.url, sink.url, store={"start_from": "now"})
    result = pollerd(
        "backfill", "--store", "shop", "--since", "2020-01-01", "--config", str(config)
    )
    assert result.returncode == 0, result.stderr
    assert "120 orders listed" in result.stdout
    assert not sink.receipts
    sim.set_status(old[0], "completed")
    assert pollerd("once", "--config", str(config)).returncode == 0
    assert received(sink) == Counter({f"shop:{old[0]}:order.fulfilled": 1})
    notified = pollerd(
        "backfill", "--store", "shop", "--since", "2020-01-01", "--notify", "--config", str(config)
    )
    assert notified.returncode == 0
    assert len(sink.receipts) == 1  # history already recorded: nothing new to announce
