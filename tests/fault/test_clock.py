"""Fault matrix row 16 (research §B.6): two instances, and clocks that jump.

- `pollerd once` while `pollerd run` owns the state: the loser exits 75 and touches nothing
  (no request to the store, no send, not a byte of the database, no new file).
- pollerd's wall clock an hour ahead, then an hour behind (the `clock_skew:SECONDS` failpoint
  moves `time.time`, as a system clock that is off would), while orders change: the bookmark
  is the data's, never pollerd's clock (DESIGN §5), so lost 0 and dups 0.
- Daylight saving time: the shop's site time zone (Europe/Berlin) and pollerd's own (`TZ`)
  cross the autumn change, when local 02:00-03:00 happens twice, and the spring one, when it
  never happens, on the simulator's injected clock (pollerd's skewed to match it, run by run).

The broken variant `local_cursor` (the bookmark from pollerd's clock) loses the orders that
change in the hour the fast clock put the bookmark ahead
(`test_the_clock_test_catches_a_cursor_from_the_local_clock`).

The store is reached with Basic auth (the sim believes it is behind TLS): WooCommerce's
OAuth 1.0a refuses a timestamp more than 15 minutes off (the sim does too,
tests/unit/test_sim_woocommerce.py), so a server clock an hour off cannot poll an http://
shop at all; what pollerd says then is not this row's, the cursor is."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pollerd_sim import WebhookSink, WooSim
from pollerd_sim.harness import KEY, SECRET, pollerd, pollerd_env, write_config
from pollerd_sim.testing.faults import Report
from tests.fault.rig import intact, verdict

pytestmark = pytest.mark.fault
BASIC = {"auth": "basic"}
MINUTE = timedelta(minutes=1)


class SimClock:
    """The simulator's injected clock: it stands still until the test moves it."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def skew(self) -> int:
        """Seconds to add to the real clock for pollerd's to read what this one reads."""
        return round(self.at.timestamp() - time.time())


def once(config: Path, skew: int = 0, *, failpoint: str = "", **env: str) -> None:
    points = [p for p in (failpoint, f"clock_skew:{skew:+d}" if skew else "") if p]
    extra = {"POLLERD_FAILPOINT": ",".join(points)} if points else {}
    result = pollerd("once", "--config", str(config), env=pollerd_env(**extra, **env))
    assert result.returncode == 0, result.stdout + result.stderr


def change(sim: WooSim, ids: list[int], new: int) -> None:
    """`new` orders, and the status of the older ones moved one step on."""
    for oid in ids[::2]:
        status = sim.order(oid)["status"]
        nxt = {"pending": "processing", "processing": "completed"}.get(status)
        if nxt:
            sim.set_status(oid, nxt)
    ids.extend(sim.create_order(payment_method="stripe") for _ in range(new))


# two instances ------------------------------------------------------------------------------


def state(folder: Path) -> dict[str, str]:
    """Every file of the state folder by content digest, and the database's rows. The WAL
    index (`-shm`) is left out: any reader, this function's own, writes to it."""
    files = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file() and p.suffix not in (".sock", ".log") and not p.name.endswith("-shm")
    }
    with contextlib.closing(
        sqlite3.connect(f"file:{folder / 'pollerd.db'}?mode=ro", uri=True)
    ) as conn:
        for table in ("cursor", "event", "delivery", "snapshot"):
            rows = conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()  # noqa: S608
            files[f"table {table}"] = hashlib.sha256(repr(rows).encode()).hexdigest()
    return files


def settled(db: Path, timeout: float) -> bool:
    """Whether, within `timeout`, the store's first pass ended (its success is recorded last)
    and no delivery is left to send or mark: `run` has nothing more to write."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            ended = conn.execute("SELECT last_success FROM cursor").fetchone()[0] is not None
            busy = conn.execute("SELECT count(*) FROM delivery WHERE state != 'sent'").fetchone()
        if ended and busy == (0,):
            return True
        time.sleep(0.05)  # polling rows, the only sign a pass and its sends have ended
    return False


def test_once_while_run_owns_the_state_exits_75_and_touches_nothing(
    tmp_path: Path, daemon_factory: Any
) -> None:
    with WooSim(consumer_key=KEY, consumer_secret=SECRET) as sim, WebhookSink() as sink:
        # An hour between passes: after its first, `run` is quiet while `once` tries.
        config = write_config(tmp_path, sim.url, sink.url, store={"interval": "1h"})
        first = sim.create_order(payment_method="stripe")
        daemon = daemon_factory(config)
        daemon.start()
        assert sink.wait_for_ids({f"shop:{first}:order.created"}, timeout=30), daemon.output()
        assert settled(tmp_path / "pollerd.db", timeout=30), daemon.output()
        second = sim.create_order(payment_method="stripe")  # work a second writer would do
        before, requests, attempts = state(tmp_path), len(sim.request_log), len(sink.attempts)
        blocked = pollerd("once", "--config", str(config))
        assert blocked.returncode == 75, blocked.stdout + blocked.stderr
        assert daemon.proc is not None and str(daemon.proc.pid) in blocked.stderr, blocked.stderr
        assert "Traceback" not in blocked.stderr
        assert len(sim.request_log) == requests, sim.request_log[requests:]
        assert len(sink.attempts) == attempts
        assert state(tmp_path) == before
        assert daemon.stop() == 0
        once(config)  # the lock is free again: the second order goes out
        assert sink.ids().count(f"shop:{second}:order.created") == 1
        report = verdict(sim, sink)
        assert report.ok and not report.duplicated, report.summary()


# clocks -------------------------------------------------------------------------------------


def jumps(tmp: Path, *, failpoint: str = "") -> Report:
    """Orders change before each of three `pollerd once` runs whose clock is an hour ahead, an
    hour behind (two hours back in one step), then right (two hours forward)."""
    with (
        WooSim(consumer_key=KEY, consumer_secret=SECRET, https_detected=True) as sim,
        WebhookSink() as sink,
    ):
        config = write_config(tmp, sim.url, sink.url, store=BASIC)
        ids: list[int] = []
        cursors = None
        for skew in (+3600, -3600, 0)[: 2 if failpoint else 3]:  # the mutant loses by the 2nd
            change(sim, ids, 6)
            once(config, skew, failpoint=failpoint)
            cursors = intact(tmp / "pollerd.db", cursors)
        return verdict(sim, sink)


def test_clock_an_hour_ahead_then_behind_loses_and_repeats_nothing(tmp_path: Path) -> None:
    report = jumps(tmp_path)
    assert report.ok and not report.duplicated, report.summary()


def test_the_clock_test_catches_a_cursor_from_the_local_clock(tmp_path: Path) -> None:
    report = jumps(tmp_path, failpoint="local_cursor")
    assert report.lost, report.summary()


AUTUMN = datetime(2026, 10, 25, 1, 0, tzinfo=UTC)  # Berlin 03:00 CEST → 02:00 CET
SPRING = datetime(2027, 3, 28, 1, 0, tzinfo=UTC)  # Berlin 02:00 CET → 03:00 CEST


def test_daylight_saving_changes_lose_and_repeat_nothing(tmp_path: Path) -> None:
    clock = SimClock(AUTUMN)
    with (
        WooSim(
            consumer_key=KEY,
            consumer_secret=SECRET,
            https_detected=True,
            site_timezone="Europe/Berlin",
            clock=clock,
        ) as sim,
        WebhookSink() as sink,
    ):
        config = write_config(tmp_path, sim.url, sink.url, store=BASIC)
        ids: list[int] = []
        cursors = None
        # A run 20 minutes before each change and one 10 minutes after: in autumn the second
        # run's orders have local times 30 minutes before the first's, in spring 90 minutes
        # after; either is far more than the 5-minute overlap, so a bookmark kept in local
        # time would skip orders (or re-read an hour of them).
        for at in (AUTUMN - 20 * MINUTE, AUTUMN + 10 * MINUTE, SPRING - 20 * MINUTE,
                   SPRING + 10 * MINUTE):  # fmt: skip
            clock.at = at
            change(sim, ids, 4)
            once(config, clock.skew(), TZ="Europe/Berlin")
            cursors = intact(tmp_path / "pollerd.db", cursors)
        report = verdict(sim, sink)
        assert report.ok and not report.duplicated, report.summary()
        assert report.expected >= 16
