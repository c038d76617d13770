"""Issue 11 item 14 in the daemon: a wrong key is not retried at full rate nor logged every
interval (the pattern that gets an IP blocked by Wordfence-style firewalls); it backs off
exponentially up to `store_backoff_max`, alerts once, and recovers on its own."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from pollerd_sim import WebhookSink, WooSim
from pollerd_sim.harness import KEY, SECRET, write_config

ALERTS_ROUTE = '[[routes]]\nevents = ["alert.*"]\nchannels = ["hook"]\n'
WINDOW = 8.0  # seconds of a failing daemon measured (interval 1 s)


def rejected(sim: WooSim) -> int:
    return sum(1 for entry in list(sim.request_log) if entry["status"] == 401)


def test_a_wrong_key_backs_off_logs_once_and_alerts_once(
    tmp_path: Path, sink: WebhookSink, daemon_factory: Any
) -> None:
    with WooSim(consumer_key="ck_revoked_000000", consumer_secret="cs_revoked_0000") as sim:
        config = write_config(tmp_path, sim.url, sink.url, extra=ALERTS_ROUTE)
        keys = 'store_failing_after = "2s"\nstore_backoff_max = "4s"\n'
        text = config.read_text(encoding="utf-8").replace("[pollerd]\n", f"[pollerd]\n{keys}", 1)
        config.write_text(text, encoding="utf-8")
        daemon = daemon_factory(config)
        daemon.start()
        assert sink.wait_for(1, timeout=30), daemon.output()
        assert re.fullmatch(r"shop:alert\.store_failing:\d+", sink.ids()[0] or ""), sink.ids()

        before = rejected(sim)
        time.sleep(WINDOW)  # a measurement window, not a synchronisation
        during = rejected(sim) - before
        # Every 1 s interval would be 8 requests; backing off (cap 4 s) leaves at most 3.
        assert during <= 3, (during, daemon.output())
        errors = [ln for ln in daemon.output().splitlines() if "consumer_key is not" in ln]
        assert len([ln for ln in errors if "ERROR" in ln]) == 1, errors

        sim.auth.consumer_key, sim.auth.consumer_secret = KEY, SECRET  # fixed in the shop
        assert sink.wait_for(2, timeout=30), daemon.output()
        since = (sink.ids()[0] or "").rpartition(":")[2]  # the episode: both alerts' subject
        assert sink.ids()[1] == f"shop:alert.store_recovered:{since}", sink.ids()
        assert daemon.stop() == 0
    assert len(sink.ids()) == 2
