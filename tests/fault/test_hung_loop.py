"""Fault matrix row 14 (research §B.6): a hung loop. The `block_loop` failpoint blocks the event
loop thread, which runs the scheduler, in the first send; systemd's watchdog must notice.

A fake NOTIFY_SOCKET (the harness's unixgram socket) reads what pollerd tells systemd. The
failpoint says `X_POLLERD_FAILPOINT=block_loop` on that socket as it blocks, so the moment of the
hang is in the same stream as the pings: after it no `WATCHDOG=1` may arrive later than
WatchdogSec/2 (the ping interval: one already on its way), and none for the rest of a WatchdogSec
and a half, while the process stays alive (systemd, not pollerd, ends it).

The broken variant `watchdog_thread` pings from a thread of its own, as Puma and Sidekiq do:
the loop hangs and the pings go on, which the same assertions must catch
(`test_the_hung_loop_test_catches_pings_from_a_free_thread`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from pollerd_sim import WebhookSink, WooSim
from pollerd_sim.harness import KEY, SECRET, Daemon, write_config

pytestmark = pytest.mark.fault
WATCHDOG_SEC = 2.0  # WatchdogSec=2s: pollerd pings every second
HANG = "X_POLLERD_FAILPOINT=block_loop"


def hang(tmp: Path, factory: Any, failpoint: str) -> tuple[Daemon, list[float]]:
    """Run pollerd into the hang; returns the daemon and the seconds from the hang to each
    WATCHDOG=1 that came after it, over 1.5 × WatchdogSec."""
    with WooSim(consumer_key=KEY, consumer_secret=SECRET) as sim, WebhookSink() as sink:
        config = write_config(tmp, sim.url, sink.url, delivery={"send_timeout": "1s"})
        daemon: Daemon = factory(
            config,
            keep_notify=True,
            WATCHDOG_USEC=str(int(WATCHDOG_SEC * 1_000_000)),
            POLLERD_FAILPOINT=failpoint,
        )
        daemon.start()
        assert daemon.wait_notice(_ping, timeout=10) is not None, "pings must flow before the hang"
        sim.create_order(payment_method="stripe")  # its first send runs into the failpoint
        seen = daemon.wait_notice(lambda n: HANG in n.split("\n"), timeout=60)
        assert seen is not None, daemon.output()[-3000:]
        hung_at = time.monotonic()
        after: list[float] = []
        while (left := hung_at + 1.5 * WATCHDOG_SEC - time.monotonic()) > 0:
            notice = daemon.wait_notice(lambda n: True, timeout=left)
            if notice is not None and _ping(notice):
                after.append(time.monotonic() - hung_at)
        assert daemon.proc is not None and daemon.proc.poll() is None, "quiet, not dead"
        assert "FAILPOINT block_loop" in daemon.output()
        assert sink.ids() == []  # the send never happened
        return daemon, after


def _ping(notice: str) -> bool:
    return "WATCHDOG=1" in notice.split("\n")


def test_a_blocked_loop_stops_the_watchdog_pings(tmp_path: Path, daemon_factory: Any) -> None:
    _, after = hang(tmp_path, daemon_factory, "block_loop")
    assert all(t <= WATCHDOG_SEC / 2 for t in after), f"pings after the hang at {after} s"


def test_the_hung_loop_test_catches_pings_from_a_free_thread(
    tmp_path: Path, daemon_factory: Any
) -> None:
    _, after = hang(tmp_path, daemon_factory, "block_loop,watchdog_thread")
    assert [t for t in after if t > WATCHDOG_SEC / 2], f"the free thread stopped pinging: {after}"
