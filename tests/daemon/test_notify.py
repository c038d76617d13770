"""The sd_notify protocol (real unixgram sockets, path and abstract), the watchdog variables,
and the health verdicts and status line the daemon builds from its heartbeats."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from pollerd.health import FIRST_POLL_GRACE, Health, StoreBeat, status_line
from pollerd.systemd import MAX_STATUS, monotonic_usec, notify, supervised, watchdog_interval
from tests.support.clocks import SecondsClock


@pytest.fixture
def path_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    address = str(tmp_path / "notify.sock")
    sock.bind(address)
    sock.settimeout(5)
    yield sock, address
    sock.close()


def test_one_datagram_in_utf8_to_a_path_socket(path_socket: tuple[socket.socket, str]) -> None:
    sock, address = path_socket
    env = {"NOTIFY_SOCKET": address}
    assert notify("READY=1", "STATUS=已轮询 3 家店铺, 待发送 0", env=env)
    assert sock.recv(4096).decode("utf-8") == "READY=1\nSTATUS=已轮询 3 家店铺, 待发送 0"


def test_abstract_socket() -> None:
    name = f"pollerd-test-{os.getpid()}-{id(object())}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert notify("WATCHDOG=1", env={"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_a_newline_in_a_value_cannot_forge_another_assignment(
    path_socket: tuple[socket.socket, str],
) -> None:
    sock, address = path_socket
    long = "x" * (MAX_STATUS + 50)
    assert notify("STATUS=bad\nREADY=1", f"STATUS={long}", env={"NOTIFY_SOCKET": address})
    first, second = sock.recv(65536).decode("utf-8").split("\n")
    assert first == "STATUS=bad READY=1"
    assert len(second) == len("STATUS=") + MAX_STATUS and second.endswith("…")


def test_not_supervised_or_unreachable_is_false_never_an_exception(tmp_path: Path) -> None:
    assert not supervised({}) and notify("READY=1", env={}) is False
    assert notify("READY=1", env={"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}) is False
    assert notify("READY=1", env={"NOTIFY_SOCKET": "vsock:2:1234"}) is False
    assert supervised({"NOTIFY_SOCKET": "/run/x"})


def test_watchdog_interval_is_half_the_timeout_for_this_process_only() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "60000000"}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "42"}, pid=42) == 0.5
    assert watchdog_interval({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "42"}, pid=43) is None
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "x"}) is None


def test_monotonic_usec_is_the_monotonic_clock() -> None:
    import time

    before = int(time.monotonic() * 1_000_000)
    assert before - 1000 <= monotonic_usec() <= int(time.monotonic() * 1_000_000) + 1000


def health(clock: SecondsClock, delivered: list[float]) -> Health:
    return Health(
        delivery_last=lambda: delivered[0], delivery_limit=35.0, tick_every=5.0, clock=clock
    )


def test_a_store_is_healthy_until_three_intervals_pass_without_a_success() -> None:
    clock, delivered = SecondsClock(), [1000.0]
    h = health(clock, delivered)
    h.last_tick = clock.now
    beat = StoreBeat(interval=10.0, since=clock.now)
    h.stores = {"acme": beat}
    clock.now += 30 + FIRST_POLL_GRACE  # the first pass may take start-up + 3 intervals
    h.last_tick = delivered[0] = clock.now
    assert h.check()[0]
    clock.now += 1
    h.last_tick = delivered[0] = clock.now
    ok, report = h.check()
    assert not ok and report["status"] == "unhealthy"
    assert report["problems"] == [
        "store acme: no successful poll in the 61s since it was scheduled"
    ]
    assert report["reason"] == report["problems"][0]  # one line for a glance at /healthz
    beat.succeeded(clock.now)
    assert h.check()[0]
    clock.now += 25
    beat.failed("store acme: 429 Too Many Requests (will retry) token=abc123")
    h.last_tick = delivered[0] = clock.now
    ok, report = h.check()
    assert ok and report["stores"]["acme"]["failures_in_a_row"] == 1
    clock.now += 5.5
    h.last_tick = delivered[0] = clock.now
    ok, report = h.check()
    assert not ok
    reason = report["stores"]["acme"]["reason"]
    assert reason.startswith("no successful poll for 30s (3 intervals = 30s); last error: ")
    assert "abc123" not in reason  # served over HTTP: redacted like a log line


def test_a_stalled_delivery_loop_or_scheduler_is_unhealthy() -> None:
    clock, delivered = SecondsClock(), [1000.0]
    h = health(clock, delivered)
    h.last_tick = clock.now
    clock.now += 36
    h.last_tick = clock.now
    ok, report = h.check()
    assert not ok and report["problems"] == ["delivery: delivery loop stalled: no progress for 36s"]
    delivered[0] = clock.now
    clock.now += 21
    ok, report = h.check()
    assert not ok and report["problems"] == ["scheduler: scheduler stalled: no tick for 21s"]
    h.last_tick = delivered[0] = clock.now
    h.delivery_ended = "RuntimeError: boom"
    ok, report = h.check()
    assert not ok and report["delivery"]["reason"] == "delivery loop ended: RuntimeError: boom"


def test_status_line_in_english_and_chinese() -> None:
    clock, delivered = SecondsClock(), [1000.0]
    h = health(clock, delivered)
    h.last_tick = clock.now
    h.stores = {
        name: StoreBeat(interval=10.0, since=clock.now, last_ok=clock.now)
        for name in ("acme", "beta", "gamma")
    }
    _, report = h.check()
    assert (
        status_line(report, due=0, last_poll_age=1.23) == "3 stores ok, 0 due, last poll 1.2s ago"
    )
    assert (
        status_line(report, due=4, last_poll_age=None, locale="zh-CN")
        == "3 家店铺正常, 待发送 4, 尚未轮询"
    )
    h.stores["beta"].failed("store beta: HTTP 503 from the store (will retry)")
    clock.now += 31
    h.stores["acme"].succeeded(clock.now)
    h.stores["gamma"].succeeded(clock.now)
    h.last_tick = delivered[0] = clock.now
    _, report = h.check()
    line = status_line(report, due=None, last_poll_age=0.5, note="stores[1].interval")
    assert line == (
        "2 of 3 stores ok (beta: store beta: HTTP 503 from the store (will retry)), "
        "last poll 0.5s ago; last reload failed: stores[1].interval"
    )
