"""How the seller rules hang on the pass: facts written with every page, the rules judged after
each store's pass only when an `[[alerts]]` table applies, a failing rule logged without failing
the pass, a reload's `[[alerts]]` in force at the next pass, and a backfill paging nobody."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pollerd import runtime as runtime_module
from pollerd.config import load
from pollerd.runtime import Runtime
from pollerd_sim import WebhookSink, WooSim
from pollerd_sim.harness import pollerd, write_config

HIGH_VALUE = """
[[routes]]
events = ["alert.*"]
channels = ["hook"]

[[alerts]]
type = "high_value"
thresholds = { USD = 700 }
"""


def judged(monkeypatch: pytest.MonkeyPatch, fail: bool = False) -> list[str]:
    """Stand in for `seller.judge` in the runtime: the stores it was called for."""
    calls: list[str] = []

    def judge(store: Any, alerts: Any, routes: Any, name: str, *args: Any, **kw: Any) -> list[Any]:
        calls.append(name)
        if fail:
            raise RuntimeError("a rule broke")
        return []

    monkeypatch.setattr(runtime_module, "judge", judge)
    return calls


def one_pass(config: Path, settings: Any = None) -> tuple[Any, Runtime]:
    async def go() -> tuple[Any, Runtime]:
        rt = Runtime.build(settings or load(config))
        try:
            return await rt.poll("shop"), rt
        finally:
            await rt.aclose()

    return asyncio.run(go())


def facts(tmp: Path) -> int:
    with sqlite3.connect(tmp / "pollerd.db") as db:
        return int(db.execute("select count(*) from order_fact").fetchone()[0])


def test_no_alerts_no_judging_but_facts_are_written(
    tmp_path: Path, sim: WooSim, sink: WebhookSink, env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = judged(monkeypatch)
    sim.create_order(total="900.00", ip="198.51.100.7")
    report, _ = one_pass(write_config(tmp_path, sim.url, sink.url))
    assert report is not None and calls == []
    assert facts(tmp_path) == 1  # facts are facts: ready for `alerts test` and later rules


def test_a_failing_rule_is_logged_and_the_pass_succeeds(
    tmp_path: Path,
    sim: WooSim,
    sink: WebhookSink,
    env: None,
    monkeypatch: pytest.MonkeyPatch,
    errors: list[str],
) -> None:
    calls = judged(monkeypatch, fail=True)
    sim.create_order(total="900.00")
    report, _ = one_pass(write_config(tmp_path, sim.url, sink.url, extra=HIGH_VALUE))
    assert report is not None and report.events >= 1
    assert calls == ["shop"]
    assert any("seller alert rules failed" in line for line in errors)


def test_a_reload_brings_its_alerts_to_the_next_pass(
    tmp_path: Path, sim: WooSim, sink: WebhookSink, env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = judged(monkeypatch)
    plain = load(write_config(tmp_path, sim.url, sink.url))
    ruled = load(write_config(tmp_path, sim.url, sink.url, extra=HIGH_VALUE))

    async def go() -> None:
        rt = Runtime.build(plain)
        try:
            await rt.poll("shop")
            assert calls == []
            rt.reconfigure(ruled, rt.channels)
            await rt.poll("shop")
            assert calls == ["shop"]
        finally:
            await rt.aclose()

    asyncio.run(go())


def test_backfilled_history_pages_nobody(tmp_path: Path, sim: WooSim, sink: WebhookSink) -> None:
    last_year = datetime.now(UTC) - timedelta(days=365)
    for _ in range(3):
        sim.create_order(total="900.00", created_at=last_year, ip="198.51.100.9")
    config = write_config(
        tmp_path, sim.url, sink.url, store={"start_from": "now"}, extra=HIGH_VALUE
    )
    assert pollerd("once", "--config", str(config)).returncode == 0
    since = (last_year - timedelta(days=1)).strftime("%Y-%m-%d")
    result = pollerd("backfill", "--store", "shop", "--since", since, "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert facts(tmp_path) == 3  # the history's facts are stored ...
    assert pollerd("once", "--config", str(config)).returncode == 0
    assert not sink.receipts  # ... and alert nobody about last year
    new = sim.create_order(total="900.00")
    assert pollerd("once", "--config", str(config)).returncode == 0
    kinds = [json.loads(r.body)["type"] for r in sink.receipts]
    assert kinds.count("alert.high_value") == 1
    assert f"shop:alert.high_value:{new}" in sink.ids()
