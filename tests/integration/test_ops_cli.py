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
