"""Operator safety through the real `pollerd` entry point (issue 11 items 4-8, 18): start
points, the database path, test sends, the demo on real channels, key rotation and local times.
"""

from __future__ import annotations

import re
from pathlib import Path

from pollerd.sim import WebhookSink, WooSim
from pollerd.sim.harness import pollerd, write_config


def test_notify_test_ids_never_collide_with_a_real_order(
    tmp_path: Path, sim: WooSim, sink: WebhookSink
) -> None:
    config = write_config(tmp_path, sim.url, sink.url)
    for _ in range(2):
        result = pollerd("notify-test", "--channel", "hook", "--config", str(config))
        assert result.returncode == 0, result.stderr
    assert sink.wait_for(2, timeout=10)
    bodies = [receipt.json() for receipt in sink.receipts]
    ids = [body["id"] for body in bodies]
    assert len(set(ids)) == 2, ids  # a receiver deduping on ids shows both test sends
    for body, receipt in zip(bodies, sink.receipts, strict=True):
        assert body["test"] is True
        order_id = body["order"]["id"]
        assert re.fullmatch(r"notify-test-\d{8}T\d{6}Z-[0-9a-f]{6}", order_id), order_id
        assert body["id"] == f"shop:{order_id}:order.paid"
        assert receipt.headers["webhook-id"] == body["id"]


def _shanghai(config: Path) -> None:
    """The seller's zone, as a Chinese shop writes it."""
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("[pollerd]\n", '[pollerd]\ntimezone = "Asia/Shanghai"\n', 1))


def test_backfill_reads_a_date_in_the_configured_zone_and_says_so(
    tmp_path: Path, sim: WooSim, sink: WebhookSink
) -> None:
    config = write_config(tmp_path, sim.url, sink.url)
    _shanghai(config)
    result = pollerd(
        "backfill", "--store", "shop", "--since", "2026-11-01", "--until", "2026-11-02T12:00",
        "--config", str(config),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    assert "2026-11-01 00:00:00 Asia/Shanghai (2026-10-31T16:00:00Z)" in out, out
    assert "2026-11-02 12:00:00 Asia/Shanghai (2026-11-02T04:00:00Z)" in out, out
    asked = {a for r in sim.request_log for a in r["params"].get("modified_after", [])}
    assert asked == {"2026-10-31T15:59:59"}, asked  # modified_after is a strict >
    # An explicit offset is taken as written.
    result = pollerd(
        "backfill", "--store", "shop", "--since", "2026-11-01T00:00:00Z", "--config", str(config)
    )
    assert result.returncode == 0, result.stderr
    assert "2026-11-01 08:00:00 Asia/Shanghai (2026-11-01T00:00:00Z)" in result.stdout
