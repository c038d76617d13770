"""Fault matrix: `kill -9` a Shopify bulk backfill while the export runs. The operation id was
saved the moment Shopify accepted the job, so the next `pollerd backfill` resumes the same
operation (no second export paid for) and records every order exactly once."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pollerd_sim import ShopSim, WebhookSink
from pollerd_sim.harness import SHOPIFY_TOKEN, pollerd, pollerd_env, write_config
from tests.support import ROOT

pytestmark = pytest.mark.fault


def test_kill_during_bulk_backfill_resumes_the_same_operation(tmp_path: Path) -> None:
    old = "2026-01-01T00:00:00Z"
    with (
        ShopSim(access_token=SHOPIFY_TOKEN, bulk_seconds=4.0) as shop,
        WebhookSink() as sink,
    ):
        ids = [shop.create_order(financial="PAID") for _ in range(300)]
        config = write_config(
            tmp_path, shop.url, sink.url, platform="shopify", store={"start_from": "now"}
        )
        command = [sys.executable, "-m", "pollerd", "backfill", "--config", str(config)]
        command += ["--store", "shop", "--since", old]
        child = subprocess.Popen(
            command, env=pollerd_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 30
        while shop.stats().get("bulk_started", 0) < 1:  # the sim's own count, not a guess
            assert child.poll() is None, child.stderr.read() if child.stderr else ""
            assert time.monotonic() < deadline, "the backfill never started a bulk operation"
            time.sleep(0.05)
        db = tmp_path / "pollerd.db"
        while not _saved_operation(db):  # saved in the state before the kill
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        result = pollerd("backfill", "--config", str(config), "--store", "shop", "--since", old)
        assert result.returncode == 0, result.stderr
        assert shop.stats()["bulk_started"] == 1, "the resumed backfill started a second export"
    rows = sqlite3.connect(db).execute("SELECT order_id FROM snapshot").fetchall()
    assert sorted(int(r[0]) for r in rows) == sorted(ids)
    assert not sink.receipts  # backfill without --notify announces nothing
    assert _saved_operation(db) is None  # finished: nothing left to resume


def _saved_operation(db: Path) -> str | None:
    if not db.exists():
        return None
    try:
        row = (
            sqlite3.connect(db).execute("SELECT value FROM meta WHERE key = 'bulk:shop'").fetchone()
        )
    except sqlite3.OperationalError:
        return None
    return row[0] if row else None
