"""Fault matrix row 5 (research §B.6): a storm of 5xx answers from the store's API while orders
change (about 30 % of listing requests answered 500, 502 or 503), then every request answered
503 with `Retry-After`, then recovery.

What must hold: nothing lost, nothing repeated, per order in order (no kill here, so exactly
once); during the 503 wall no listing request comes sooner than the Retry-After asked; and
`pollerd_api_requests_total{code=~"5.."}` (scraped from `metrics_listen`) equals the 5xx the
sim served. The same run with the header ignored (`ignore_retry_after`) comes back early,
which proves the timing assertion can fail.

The request-rate ceiling is checked in a quiet run of its own (`paced`): during the storm the
back-off stretches the spacing up to 32 times, so a ceiling that binds between the requests of
one pass (600 a minute: 0.1 s) would make the storm last a minute more. There the requests the
sim logged never come faster than `max_requests_per_minute`; with the pacing off (`unpaced`)
they do."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pollerd_sim import WebhookSink, WooSim
from pollerd_sim.harness import KEY, SECRET, write_config
from pollerd_sim.testing.faults import Report, woo_truth
from pollerd_sim.testing.ports import free_port
from tests.fault.rig import intact, sized, verdict

pytestmark = pytest.mark.fault
WAIT = 3  # Retry-After of the 503 wall, seconds (the pass interval is 1 s)
WALL = 4  # 503 answers served before the wall comes down
CEILING = 600  # max_requests_per_minute: 0.1 s between request starts at the least
JITTER = 0.1  # seconds: see _too_fast
REQUESTS = 24  # logged by the ceiling run: eight passes (bound by the clock, not sized)
FIVES = ("500", "502", "503")


@dataclass
class Storm:
    report: Report
    gaps: list[float]  # seconds from each 503 of the wall to the next listing request
    counted: float  # pollerd_api_requests_total{store="shop", code=~"5.."} at the end
    served: int  # 5xx answers the sim served


def storm(tmp: Path, factory: Any, *, failpoint: str = "") -> Storm:
    with WooSim(consumer_key=KEY, consumer_secret=SECRET, seed=5) as sim, WebhookSink() as sink:
        port = free_port()
        config = write_config(
            tmp,
            sim.url,
            sink.url,
            store={"start_from": "now"},
        )
        text = config.read_text(encoding="utf-8")
        config.write_text(
            text.replace("[pollerd]\n", f'[pollerd]\nmetrics_listen = "127.0.0.1:{port}"\n', 1),
            encoding="utf-8",
        )
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
        counted = _fives(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text)
        assert daemon.stop() == 0
        intact(tmp / "pollerd.db")
        served = sum(sim.fault_counts.get(k, 0) for k in FIVES)
        return Storm(verdict(sim, sink), _gaps(sim.request_log, wall_from), counted, served)


def _fives(exposition: str) -> float:
    """pollerd_api_requests_total{store="shop", code=~"5.."} in a text exposition."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == "pollerd_api_requests_total"
        and sample.labels.get("store") == "shop"
        and sample.labels.get("code", "").startswith("5")
    )


def _too_fast(times: list[float], spacing: float, jitter: float) -> list[tuple[int, float]]:
    """Runs of requests faster than the ceiling allows: (requests after the first, seconds they
    took) wherever n requests after one came sooner than n × spacing − jitter. `jitter` covers
    the time from pollerd's pacer to the sim's log, which varies per request."""
    times = sorted(times)
    return [
        (j - i, round(times[j] - times[i], 3))
        for i in range(len(times))
        for j in range(i + 1, len(times))
        if times[j] - times[i] < (j - i) * spacing - jitter
    ]


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
    run = storm(tmp_path, daemon_factory)
    assert run.report.ok and not run.report.duplicated, run.report.summary()
    assert len(run.gaps) >= WALL - 1, run.gaps
    assert min(run.gaps) >= WAIT - 0.05, f"a request came before Retry-After ({WAIT} s): {run.gaps}"
    assert run.served >= WALL and run.counted == run.served


def test_the_storm_test_catches_an_ignored_retry_after(tmp_path: Path, daemon_factory: Any) -> None:
    run = storm(tmp_path, daemon_factory, failpoint="ignore_retry_after")
    assert not run.report.lost, run.report.summary()  # late, but nothing lost either way
    assert min(run.gaps) < WAIT - 0.05, run.gaps


def paced(tmp: Path, factory: Any, *, failpoint: str = "") -> list[float]:
    """A quiet run at `max_requests_per_minute = CEILING` while orders keep changing, so each
    pass asks the probe, the listing and the trash one after another; returns when each
    request reached the sim, once it has logged REQUESTS."""
    with WooSim(consumer_key=KEY, consumer_secret=SECRET) as sim, WebhookSink() as sink:
        config = write_config(
            tmp, sim.url, sink.url, store={"start_from": "now", "max_requests_per_minute": CEILING}
        )
        daemon = factory(config, **({"POLLERD_FAILPOINT": failpoint} if failpoint else {}))
        daemon.start()
        deadline = time.monotonic() + 60
        while len(sim.request_log) < REQUESTS:
            assert time.monotonic() < deadline, f"{len(sim.request_log)} requests in 60 s"
            sim.create_order(payment_method="stripe")
            time.sleep(0.1)  # the load's pace, not a synchronisation
        assert sink.wait_for_ids(set(woo_truth(sim.history())), timeout=60), daemon.output()
        assert daemon.stop() == 0
        report = verdict(sim, sink)
        assert report.ok and not report.duplicated, report.summary()
        return [_seconds(e["time"]) for e in sim.request_log]


def test_requests_never_come_faster_than_the_ceiling(tmp_path: Path, daemon_factory: Any) -> None:
    times = paced(tmp_path, daemon_factory)
    assert not _too_fast(times, 60 / CEILING, JITTER)


def test_the_ceiling_test_catches_requests_sent_unpaced(
    tmp_path: Path, daemon_factory: Any
) -> None:
    times = paced(tmp_path, daemon_factory, failpoint="unpaced")
    assert _too_fast(times, 60 / CEILING, JITTER)
