"""Fault matrix rows 3 and 4 (research §B.6).

Row 3, clean bounce (Kafka Connect's `test_bounce(clean=True)`): SIGTERM `pollerd run` while a
send is in flight, restart, many times. A clean stop finishes the sends in flight and records
them, so nothing is lost and nothing is sent twice; it exits 0 within 10 s and tells systemd
STOPPING=1. "In flight" is made certain, not hoped for: before each bounce the sink holds the
next request (`slow`, 0.3 s) and the bounce waits until that request has arrived. The same run
with SIGKILL instead (the hard bounce) must repeat a message per bounce, which proves the
"no duplicates" assertion can fail.

Row 4, crash loop: `pollerd run` SIGKILLed over and over a moment after it starts (often before
it is even ready), while orders change; then one daemon runs on. It must recover: every event
delivered within 2 minutes of the loop's end, the database intact, the cursor never backwards.
With the state lock as a pid file (`pidfile_lock`, the classic stale-lock bug) the first kill -9
after the lock was taken leaves it behind and no pollerd starts again, which the recovery
assertion catches.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pollerd_sim import WebhookSink, WooSim
from pollerd_sim.harness import KEY, SECRET, pollerd_env, write_config
from pollerd_sim.testing.faults import Report, woo_truth
from tests.fault.rig import intact, sized, verdict

pytestmark = pytest.mark.fault
HOLD = 0.3  # seconds the sink holds the request in flight at each bounce


def change(sim: WooSim, ids: list[int], n: int = 6) -> None:
    """The load between bounces: `n` new orders, and the previous ones paid (some cancelled)."""
    for oid in ids[-n:]:
        sim.set_status(oid, "processing")
        if oid % 4 == 0:
            sim.set_status(oid, "cancelled")
    ids.extend(sim.create_order(payment_method="stripe") for _ in range(n))


def bounces(tmp: Path, factory: Any, count: int, *, hard: bool) -> tuple[Report, list[float]]:
    with WooSim(consumer_key=KEY, consumer_secret=SECRET) as sim, WebhookSink(delay=HOLD) as sink:
        config = write_config(tmp, sim.url, sink.url, store={"start_from": "now"})
        daemon = factory(config, keep_notify=True)
        daemon.start()
        ids: list[int] = []
        stops: list[float] = []
        for n in range(1, count + 1):
            sink.queue_modes("slow")
            change(sim, ids)
            assert sink.wait_for_arrival("slow", n, timeout=30), daemon.output()[-2000:]
            if hard:
                daemon.kill()
            else:
                began = time.monotonic()
                assert daemon.stop(timeout=10) == 0, daemon.output()[-2000:]
                stops.append(time.monotonic() - began)
                assert daemon.wait_notice(lambda d: "STOPPING=1" in d.split("\n"), timeout=1)
            intact(tmp / "pollerd.db")
            daemon.start()
        change(sim, ids)
        assert sink.wait_for_ids(set(woo_truth(sim.history())), timeout=60)
        assert daemon.stop() == 0
        return verdict(sim, sink), stops


def test_clean_bounce_loses_and_repeats_nothing(tmp_path: Path, daemon_factory: Any) -> None:
    report, stops = bounces(tmp_path, daemon_factory, sized(6), hard=False)
    assert report.ok and not report.duplicated, report.summary()
    assert max(stops) < 10


def test_the_bounce_test_catches_a_hard_stop(tmp_path: Path, daemon_factory: Any) -> None:
    count = 3
    report, _ = bounces(tmp_path, daemon_factory, count, hard=True)
    assert not report.lost, report.summary()  # a hard stop repeats, it does not lose
    assert report.extra_copies >= count, report.summary()  # the held send, once per bounce


def test_crash_loop_then_recovery(tmp_path: Path, daemon_factory: Any) -> None:
    rng = random.Random(4)
    with WooSim(consumer_key=KEY, consumer_secret=SECRET) as sim, WebhookSink() as sink:
        config = write_config(tmp_path, sim.url, sink.url)
        db = tmp_path / "pollerd.db"
        ids: list[int] = []
        cursors = None
        with (tmp_path / "loop.log").open("ab") as log:
            for _ in range(sized(16)):
                change(sim, ids, 4)
                child = subprocess.Popen(
                    [sys.executable, "-m", "pollerd", "run", "--config", str(config)],
                    env=pollerd_env(),
                    cwd=tmp_path,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
                time.sleep(rng.uniform(0.2, 1.5))  # when to kill: the injection, drawn
                child.send_signal(signal.SIGKILL)
                assert child.wait(10) == -signal.SIGKILL
                if db.exists():
                    cursors = intact(db, cursors)
        change(sim, ids, 4)
        daemon = daemon_factory(config)
        daemon.start()
        truth = set(woo_truth(sim.history()))
        assert sink.wait_for_ids(truth, timeout=120), "no recovery within 2 minutes"
        assert daemon.stop() == 0
        intact(db, cursors)
        report = verdict(sim, sink)
    assert not report.lost and not report.unexpected, report.summary()
    assert not report.order_violations, report.summary()
    assert all(d.same_body for d in report.duplicated), report.summary()


def test_the_crash_loop_test_catches_a_stale_lock(tmp_path: Path, daemon_factory: Any) -> None:
    with WooSim(consumer_key=KEY, consumer_secret=SECRET) as sim, WebhookSink() as sink:
        config = write_config(tmp_path, sim.url, sink.url)
        daemon = daemon_factory(config, POLLERD_FAILPOINT="pidfile_lock")
        daemon.start()
        assert daemon.stop() == 0  # a clean exit removes the pid file: starts again
        daemon.start()
        daemon.kill()  # READY: the lock was taken; kill -9 leaves the pid file
        with pytest.raises(AssertionError, match="never said READY=1"):
            daemon.start(timeout=10)
        assert "another pollerd (pid" in daemon.output()
