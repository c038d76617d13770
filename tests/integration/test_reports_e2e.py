"""Reports end to end: real `pollerd once` subprocesses against the WooCommerce simulator and a
webhook sink. Yesterday's orders (Beijing time) come back in one `report.daily`, sent once
however often a timer runs `pollerd once`; a broken `[[reports]]` table stops `pollerd check`
with exit 78 naming the key. In process: no `[[reports]]`, no report work; a failing report is
logged once and `once` still succeeds."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from pollerd import runtime as runtime_module
from pollerd.config import load
from pollerd.errors import EXIT_CONFIG
from pollerd_sim import WebhookSink, WooSim
from pollerd_sim.harness import pollerd, write_config

SH = ZoneInfo("Asia/Shanghai")
DAILY = """
[[reports]]
type = "daily"
at = "00:00"
channels = ["hook"]
"""


def config(tmp: Path, sim: WooSim, sink: WebhookSink, extra: str) -> Path:
    path = write_config(tmp, sim.url, sink.url, extra=extra)
    text = path.read_text(encoding="utf-8").replace(
        "[pollerd]\n", '[pollerd]\ntimezone = "Asia/Shanghai"\n', 1
    )
    path.write_text(text, encoding="utf-8")
    return path


def test_yesterdays_digest_once_across_pollerd_once_runs(
    tmp_path: Path, sim: WooSim, sink: WebhookSink
) -> None:
    today = datetime.now(SH).date()
    yesterday = datetime(today.year, today.month, today.day, tzinfo=SH) - timedelta(days=1)
    sim.create_order(total="100.10", set_paid=True, created_at=yesterday + timedelta(hours=10))
    sim.create_order(total="0.20", set_paid=True, created_at=yesterday + timedelta(hours=20))
    sim.create_order(total="7.00", currency="EUR", created_at=yesterday - timedelta(seconds=1))
    path = config(tmp_path, sim, sink, DAILY)
    key = f"shop:report.daily:{yesterday.date().isoformat()}@hook"
    for _ in range(3):  # a timer running `pollerd once`: each run a new process
        result = pollerd("once", "--config", str(path))
        assert result.returncode == 0, result.stderr[-2000:]
    assert sink.wait_for_ids({key})
    [report] = [r.json() for r in sink.receipts if r.webhook_id == key]
    assert sink.ids().count(key) == 1
    assert report["type"] == "report.daily" and report["order"] == {"id": report["order"]["id"]}
    figures = report["report"]
    assert figures["timezone"] == "Asia/Shanghai" and figures["day"] == str(yesterday.date())
    assert figures["total"]["orders"] == 2  # the EUR order was the day before, in Beijing
    assert figures["total"]["revenue"] == {"USD": "100.30"}


def test_check_refuses_a_broken_reports_table(
    tmp_path: Path, sim: WooSim, sink: WebhookSink
) -> None:
    path = config(tmp_path, sim, sink, DAILY.replace('["hook"]', '["hook", "wecom"]'))
    result = pollerd("check", "--config", str(path))
    assert result.returncode == EXIT_CONFIG
    assert "reports[0].channels[1]" in result.stderr + result.stdout
    assert "defined: hook" in result.stderr + result.stdout


def test_the_daemon_sends_it_once_across_kill_9(
    tmp_path: Path, sim: WooSim, sink: WebhookSink, daemon_factory: Any
) -> None:
    today = datetime.now(SH).date()
    yesterday = datetime(today.year, today.month, today.day, tzinfo=SH) - timedelta(days=1)
    sim.create_order(total="12.00", set_paid=True, created_at=yesterday + timedelta(hours=12))
    key = f"shop:report.daily:{yesterday.date().isoformat()}@hook"
    daemon = daemon_factory(config(tmp_path, sim, sink, DAILY), keep_notify=True)
    daemon.start()
    assert sink.wait_for_ids({key}, timeout=30), daemon.output()[-3000:]
    daemon.kill()  # kill -9 right after: the report is recorded, never made again
    daemon.start()
    fresh = sim.create_order(total="3.00")  # proof that a pass ran after the restart...
    assert sink.wait_for_ids({f"shop:{fresh}:order.created"}, timeout=30)
    for _ in range(2):  # ...and two ticks after it, each of which would have made the report
        assert daemon.wait_notice(lambda n: "STATUS=" in n, timeout=15) is not None
    assert daemon.stop() == 0
    with sqlite3.connect(tmp_path / "pollerd.db") as db:
        made = db.execute("select id from event where type = 'report.daily'").fetchall()
        rows = db.execute("select state from delivery where event_id = ?", (key,)).fetchall()
    assert made == [(key,)] and rows == [("sent",)]  # made once, one delivery
    # A send cut by kill -9 before it was marked sent is resent with the same id and body
    # (at least once, DESIGN §6): a receiver dedupes on webhook-id.
    bodies = {r.body for r in sink.receipts if r.webhook_id == key}
    assert len(bodies) == 1


def reports_made(monkeypatch: pytest.MonkeyPatch, fail: bool = False) -> list[float]:
    """Stand in for `send_reports` in the runtime: the moments it was called at."""
    calls: list[float] = []

    def send(store: Any, settings: Any, now: float) -> int:
        calls.append(now)
        if fail:
            raise RuntimeError("a report broke")
        return 0

    monkeypatch.setattr(runtime_module, "send_reports", send)
    return calls


def test_once_without_reports_makes_none(
    tmp_path: Path, sim: WooSim, sink: WebhookSink, env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = reports_made(monkeypatch)
    sim.create_order(total="5.00")
    assert asyncio.run(runtime_module.once(load(config(tmp_path, sim, sink, "")))) == 0
    assert calls == [] and sink.wait_for(1)  # the pass and its delivery ran


def test_a_failing_report_is_logged_and_once_succeeds(
    tmp_path: Path,
    sim: WooSim,
    sink: WebhookSink,
    env: None,
    monkeypatch: pytest.MonkeyPatch,
    errors: list[str],
) -> None:
    calls = reports_made(monkeypatch, fail=True)
    sim.create_order(total="5.00")
    assert asyncio.run(runtime_module.once(load(config(tmp_path, sim, sink, DAILY)))) == 0
    assert len(calls) == 1  # after the passes, not per store
    assert sum("the reports failed" in line for line in errors) == 1
    assert sink.wait_for(1)  # the order event was still delivered
