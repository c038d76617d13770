"""Quiet hours survive `kill -9` (issue 14 item 7): what a quiet route held is stored, not
remembered, so a daemon killed in the night loses nothing and sends nothing early, and
`pollerd once` from a timer after the end, or the daemon started again, sends the night as
ONE digest.

Real processes and clocks. The morning is reached by moving the stored end of the hold to now
once the daemon is dead (what the clock would have done by 08:00): the night itself is a whole
minute at least, and waiting for it cost this test 60 s a run. That a held row becomes due at
its `quiet_until` on a real clock is tests/unit/test_quiet_hours.py's to prove."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from pollerd.store import open_store
from pollerd_sim import WebhookSink, WooSim
from pollerd_sim.chat import ChatSim
from pollerd_sim.harness import KEY, SECRET, Daemon, pollerd, pollerd_env, write_config

pytestmark = pytest.mark.fault
BEIJING = ZoneInfo("Asia/Shanghai")


def quiet_now(lead: float = 600.0) -> tuple[str, float]:
    """A quiet_hours window (Beijing time) that started 30 minutes ago and ends at the first
    whole minute `lead` seconds from now or later; and that end, epoch seconds."""
    soon = datetime.now(BEIJING) + timedelta(seconds=lead)
    end = soon.replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = end - timedelta(minutes=30)
    return f"{start:%H:%M}-{end:%H:%M}", end.timestamp()


def morning_comes(database: Path, channel: str) -> None:
    """The clock reaches the end of the night: the channel's held rows become due now (module
    docstring). Only the stored end moves; the rows stay held rows (`quiet_until` set)."""
    now = time.time()
    with sqlite3.connect(database) as db:
        moved = db.execute(
            "UPDATE delivery SET quiet_until = ?, next_at = ? WHERE channel = ? AND state = ?",
            (now, now, channel, "pending"),
        ).rowcount
    assert moved == 3


@pytest.mark.parametrize("morning", ["once", "run"])
def test_kill_9_in_quiet_hours_then_after_the_end_one_digest(tmp_path: Path, morning: str) -> None:
    """After the end: `pollerd once` (a timer), or `pollerd run` started again."""
    window, end = quiet_now()
    with (
        WooSim(consumer_key=KEY, consumer_secret=SECRET) as sim,
        WebhookSink() as sink,
        ChatSim(enforce_rate_limits=True) as chat,
    ):
        extra = "\n".join(
            [
                "[[channels]]",
                'name = "ops"',
                'type = "wecom"',
                'url = "env:TEST_WECOM_URL"',
                'locale = "zh-CN"',
                "[[routes]]",
                'events = ["order.*"]',
                'channels = ["ops"]',
                f'quiet_hours = "{window}"',
                'timezone = "Asia/Shanghai"',
            ]
        )
        config = write_config(tmp_path, sim.url, sink.url, store={"start_from": "now"}, extra=extra)
        env = {"TEST_WECOM_URL": chat.endpoint("wecom")}
        daemon = Daemon(config, tmp_path, **env)
        try:
            daemon.start()
            ids = [sim.create_order(payment_method="stripe") for _ in range(3)]
            expected = {f"shop:{i}:order.created" for i in ids}
            # The webhook's route is awake: once it has them, the quiet route's rows are
            # committed too (one page, one transaction).
            assert sink.wait_for_ids(expected, timeout=30), daemon.output()
            assert time.time() < end, "too slow: the quiet hours ended before the orders came"
            store = open_store(f"sqlite:///{tmp_path / 'pollerd.db'}")
            try:
                held = [r for r in store.deliveries() if r["channel"] == "ops"]
            finally:
                store.close()
            assert {r["event_id"] for r in held} == expected
            assert {(r["state"], r["quiet_until"]) for r in held} == {("pending", end)}
            listed = pollerd("deliveries", "list", "--config", str(config), env=pollerd_env(**env))
            until = datetime.fromtimestamp(end, UTC).strftime("%H:%M")  # [pollerd] timezone
            assert listed.stdout.count(f"held until {until} (quiet hours)") == 3, listed.stdout
            status = pollerd("status", "--config", str(config), env=pollerd_env(**env))
            assert f"ops: 3 held until {until} (quiet hours)" in status.stdout, status.stdout
            daemon.kill()  # SIGKILL in the night
        finally:
            daemon.close()
        assert chat.received("wecom") == []  # nothing went out early
        morning_comes(tmp_path / "pollerd.db", "ops")
        if morning == "once":
            once = pollerd("once", "--config", str(config), env=pollerd_env(**env))
            assert once.returncode == 0, once.stdout + once.stderr
        else:
            daemon = Daemon(config, tmp_path, **env)
            try:
                daemon.start()
                assert chat.wait_for(1, "wecom", timeout=30), daemon.output()
                assert daemon.stop() == 0
            finally:
                daemon.close()
        [digest] = chat.received("wecom")
        text = digest.json["markdown"]["content"]
        assert all(f"#{i}" in text for i in ids), text
        assert "汇总：3 条订单通知" in text, text  # one digest of the three, in zh-CN
    store = open_store(f"sqlite:///{tmp_path / 'pollerd.db'}")
    try:
        rows = [r for r in store.deliveries() if r["channel"] == "ops"]
    finally:
        store.close()
    assert {r["state"] for r in rows} == {"sent"}
    assert len({r["digest"] for r in rows}) == 1 and rows[0]["digest"] is not None
