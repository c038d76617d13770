"""`pollerd status` data: a store is failing when its last poll failed, stale when nobody has
polled it successfully for a while (the daemon is down), and either makes the report unhealthy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pollerd.config import load
from pollerd.status import collect, stale_after
from pollerd.store import open_store
from pollerd_sim.harness import pollerd_env, write_config


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, value in pollerd_env().items():
        if name.startswith("TEST_"):
            monkeypatch.setenv(name, value)
    return write_config(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9/hook")


def polled(config: Path, *, ago: timedelta, error: str | None = None) -> dict[str, object]:
    settings = load(config)
    store = open_store(settings.pollerd.database)
    now = datetime.now(UTC)
    store.init_cursor("shop", now - timedelta(days=1))
    store.record_poll("shop", error=None, when=now - ago)
    if error:
        store.record_poll("shop", error=error, when=now)
    store.close()
    return collect(settings)


def test_a_recent_success_is_ok(config: Path) -> None:
    report = polled(config, ago=timedelta(seconds=5))
    assert report["healthy"] is True and report["stores"][0]["state"] == "ok"


def test_no_success_for_longer_than_the_horizon_is_stale(config: Path) -> None:
    report = polled(config, ago=timedelta(minutes=6))
    assert report["healthy"] is False and report["stores"][0]["state"] == "stale"


def test_a_failed_last_poll_is_failing_and_names_the_error(config: Path) -> None:
    report = polled(config, ago=timedelta(seconds=5), error="HTTP 401 from the store")
    store = report["stores"][0]
    assert report["healthy"] is False and store["state"] == "failing"
    assert store["last_error"] == "HTTP 401 from the store"


def test_the_stale_horizon_tolerates_a_per_minute_timer() -> None:
    assert stale_after(timedelta(seconds=10)) == 300.0
    assert stale_after(timedelta(minutes=10)) == 1800.0


def test_the_budget_in_use_at_the_last_pass_is_shown(config: Path) -> None:
    settings = load(config)
    store = open_store(settings.pollerd.database)
    store.init_cursor("shop", datetime.now(UTC))
    assert collect(settings)["stores"][0]["budget_used"] is None
    store.record_poll("shop", error=None, when=datetime.now(UTC), budget=0.42)
    store.close()
    assert collect(settings)["stores"][0]["budget_used"] == pytest.approx(0.42)


def test_a_channel_failing_for_failing_after_is_failing_and_unhealthy(config: Path) -> None:
    """The daemon records a failing episode (every attempt failed since `since`); `status` in
    another process shows the channel failing once it has lasted `failing_after` (15m)."""
    from pollerd.alerts.channel import ChannelWatch

    report = polled(config, ago=timedelta(seconds=5))
    assert report["healthy"] is True and report["channels"][0]["failing"] is None
    settings = load(config)
    store = open_store(settings.pollerd.database)
    watch = ChannelWatch(store, 900.0, list)  # no routes: the alert is not recorded
    now = datetime.now(UTC).timestamp()
    watch.failed("hook", "webhook answered HTTP 500", now - 1200)
    store.close()
    report = collect(settings)
    [channel] = report["channels"]
    assert report["healthy"] is False
    assert channel["failing"] == "failing for 20m: webhook answered HTTP 500"
