"""Fault matrix row 5 (research §B.6): a storm of 5xx answers from the store's API while orders
change (about 30 % of listing requests answered 500, 502 or 503), then every request answered
503 with `Retry-After`, then recovery.

What must hold: nothing lost, nothing repeated, per order in order (no kill here, so exactly
once); and during the 503 wall no listing request comes sooner than the Retry-After asked.
The same run with the header ignored (`ignore_retry_after`) comes back early, which proves
the second assertion can fail."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from pollerd_sim import WebhookSink, WooSim
from pollerd_sim.harness import KEY, SECRET, write_config
from pollerd_sim.testing.faults import Report, woo_truth
from tests.fault.rig import intact, sized, verdict

pytestmark = pytest.mark.fault
WAIT = 3  # Retry-After of the 503 wall, seconds (the pass interval is 1 s)
WALL = 4  # 503 answers served before the wall comes down


def storm(tmp: Path, factory: Any, *, failpoint: str = "") -> tuple[Report, list[float]]:
    """Returns the checker's report and the gaps (seconds) after each 503 of the wall."""
    with WooSim(consumer_key=KEY, consumer_secret=SECRET, seed=5) as sim, WebhookSink() as sink:
        config = write_config(tmp, sim.url, sink.url, store={"start_from": "now"})
        daemon = factory(config, **({"POLLERD_FAILPOINT": failpoint} if failpoint else {}))
        daemon.start()
        for kind in ("500", "502", "503"):
            sim.add_fault(kind, rate=0.11)
        ids: list[int] = []
        kinds = ("500", "502", "503")
        deadline = time.monotonic() + 60
        # The storm lasts until it has served each kind (pollerd makes a request or two a
        # second, so that is ten seconds or more), and at least the row's number of orders.
        while len(ids) < sized(200) or not all(sim.fault_counts.get(k) for k in kinds):
            assert time.monotonic() < deadline, f"storm too thin: {sim.fault_counts}"
            ids.append(sim.create_order(payment_method="stripe"))
            if len(ids) % 3 == 0:
                sim.set_status(ids[-2], "processing")
            time.sleep(0.02)  # the load's pace, not a synchronisation
        sim.clear_faults()
        before, wall_from = sim.fault_counts.get("503", 0), _seconds(sim.clock())
        sim.add_fault("503", rate=1.0, retry_after=WAIT)
        deadline = time.monotonic() + 60
        while sim.fault_counts.get("503", 0) < before + WALL:
            assert time.monotonic() < deadline, "the wall was never met"
            time.sleep(0.05)  # polling the sim's own count, as test_shopify_bulk_kill does
        sim.clear_faults()
        for oid in ids[::2]:
            sim.set_status(oid, "cancelled")
        assert sink.wait_for_ids(set(woo_truth(sim.history())), timeout=90), daemon.output()[-3000:]
        assert daemon.stop() == 0
        intact(tmp / "pollerd.db")
        return verdict(sim, sink), _gaps(sim.request_log, wall_from)


def _gaps(log: list[dict[str, Any]], wall_from: float) -> list[float]:
    """Seconds from each 503 of the wall (served from `wall_from` on, each with Retry-After) to
    the next listing request."""
    orders = [e for e in log if e["path"].startswith("/wp-json/wc/v3/orders")]
    walls = [
        i for i, e in enumerate(orders) if e["fault"] == "503" and _seconds(e["time"]) >= wall_from
    ]
    return [
        _seconds(orders[i + 1]["time"]) - _seconds(orders[i]["time"])
        for i in walls
        if i + 1 < len(orders)
    ]


def _seconds(value: datetime | float) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


def test_5xx_storm_then_retry_after(tmp_path: Path, daemon_factory: Any) -> None:
    report, gaps = storm(tmp_path, daemon_factory)
    assert report.ok and not report.duplicated, report.summary()
    assert len(gaps) >= WALL - 1, gaps
    assert min(gaps) >= WAIT - 0.05, f"a request came before Retry-After ({WAIT} s): {gaps}"


def test_the_storm_test_catches_an_ignored_retry_after(tmp_path: Path, daemon_factory: Any) -> None:
    report, gaps = storm(tmp_path, daemon_factory, failpoint="ignore_retry_after")
    assert not report.lost, report.summary()  # late, but nothing lost either way
    assert min(gaps) < WAIT - 0.05, gaps
