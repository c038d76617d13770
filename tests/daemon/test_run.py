"""`pollerd run` under a service manager, as systemd would see it: a real subprocess with a
unixgram NOTIFY_SOCKET bound in tmp_path and WATCHDOG_USEC set (research §C.3/§C.4).

Each notice is awaited on the socket, each alert on the sink's condition variable. The only
waits that are not events are the ones asserting an absence (the watchdog going quiet): those
are socket reads with a timeout, and the tests first prove the pings flow without the fault.
"""

from __future__ import annotations

import signal
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from pollerd_sim import WebhookSink, WooSim
from pollerd_sim.harness import KEY, SECRET, Daemon, write_config

WATCHDOG_USEC = "1000000"  # 1 s: pings every 0.5 s


def watchdog(notice: str) -> bool:
    return "WATCHDOG=1" in notice.split("\n")


def lines(notice: str, prefix: str) -> list[str]:
    return [line for line in notice.split("\n") if line.startswith(prefix)]


def start(factory: Any, config: Path, **env: str) -> Daemon:
    daemon: Daemon = factory(config, keep_notify=True, WATCHDOG_USEC=WATCHDOG_USEC, **env)
    daemon.start()
    return daemon


def watchdog_goes_quiet(daemon: Daemon, quiet: float, within: float) -> bool:
    """True once no WATCHDOG=1 arrived for `quiet` seconds, trying for at most `within`."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if daemon.wait_notice(watchdog, timeout=quiet) is None:
            return True
    return False


def add_store_and_channel(config: Path, sim: WooSim, sink: WebhookSink) -> str:
    """The harness config plus a store "shop2" and a channel "hook2"; every order to both."""
    text = config.read_text(encoding="utf-8")
    text = text.replace('channels = ["hook"]', 'channels = ["hook", "hook2"]')
    return (
        text
        + f"""
[[stores]]
name = "shop2"
platform = "woocommerce"
url = "{sim.url}"
consumer_key = "env:TEST_WC_KEY"
consumer_secret = "env:TEST_WC_SECRET"
interval = "1s"
max_requests_per_minute = 6000
start_from = "2020-01-01T00:00:00Z"
timeout = "5s"

[[channels]]
name = "hook2"
type = "webhook"
url = "{sink.url}"
secret = "env:TEST_HOOK_SECRET"
timeout = "5s"
"""
    )


def reload(daemon: Daemon) -> str:
    """SIGHUP; returns the datagram that ends the reload (READY=1)."""
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    reloading = daemon.wait_notice(lambda n: "RELOADING=1" in n.split("\n"), timeout=10)
    assert reloading is not None, daemon.output()
    (usec,) = lines(reloading, "MONOTONIC_USEC=")
    assert int(usec.removeprefix("MONOTONIC_USEC=")) > 0
    ready = daemon.wait_notice(lambda n: "READY=1" in n.split("\n"), timeout=30)
    assert ready is not None, daemon.output()
    return ready


def test_ready_watchdog_and_a_chinese_status(
    tmp_path: Path, sim: WooSim, sink: WebhookSink, daemon_factory: Any
) -> None:
    config = write_config(tmp_path, sim.url, sink.url)
    text = config.read_text(encoding="utf-8").replace(
        "[pollerd]\n", '[pollerd]\nlocale = "zh-CN"\n'
    )
    config.write_text(text, encoding="utf-8")
    daemon = start(daemon_factory, config)
    assert "READY=1" in daemon.notices[-1].split("\n")
    started = time.monotonic()
    order = sim.create_order(payment_method="stripe")
    assert sink.wait_for(1, timeout=30), daemon.output()
    assert sink.ids() == [f"shop:{order}:order.created"]
    # Pings keep coming at WATCHDOG_USEC / 2, each with a one-line status in Chinese.
    pings = 0
    while pings < 6:
        notice = daemon.wait_notice(watchdog, timeout=2.0)
        assert notice is not None, f"the watchdog went quiet; log:\n{daemon.output()}"
        pings += 1
    assert time.monotonic() - started < 15
    (status,) = lines(notice, "STATUS=")
    assert status.startswith("STATUS=1 家店铺正常, 待发送 0, 上次轮询 "), status
    assert status.endswith(" 秒前")
    assert daemon.stop() == 0
    assert daemon.wait_notice(lambda n: "STOPPING=1" in n.split("\n"), timeout=5) is not None


@pytest.mark.parametrize("failpoint", ["hang_delivery", "block_loop"])
def test_a_hung_loop_stops_the_watchdog_pings(
    tmp_path: Path, sim: WooSim, sink: WebhookSink, daemon_factory: Any, failpoint: str
) -> None:
    """hang_delivery: the outbox loop hangs in a send while the event loop runs on (the
    scheduler still polls and still updates STATUS); block_loop: the event loop thread itself
    blocks. Either way the pings must stop, so systemd restarts pollerd."""
    config = write_config(tmp_path, sim.url, sink.url, delivery={"send_timeout": "1s"})
    daemon = start(daemon_factory, config, POLLERD_FAILPOINT=failpoint)
    assert daemon.wait_notice(watchdog, timeout=5) is not None, "pings must flow before the hang"
    sim.create_order(payment_method="stripe")  # its delivery runs into the failpoint
    if failpoint == "hang_delivery":
        stalled = daemon.wait_notice(lambda n: "delivery loop stalled" in n, timeout=20)
        assert stalled is not None, daemon.output()
        assert not watchdog(stalled)
    assert watchdog_goes_quiet(daemon, quiet=3.0, within=20), daemon.output()
    assert daemon.proc is not None and daemon.proc.poll() is None, "quiet, not dead"
    assert f"FAILPOINT {failpoint}" in daemon.output()
    if failpoint == "hang_delivery":  # the event loop still works: status keeps coming
        later = daemon.wait_notice(lambda n: n.startswith("STATUS=delivery loop stalled"), 3)
        assert later is not None
        assert "delivery loop stalled" in daemon.output()  # logged for the operator, once
    assert sink.ids() == []


def test_sigterm_drains_in_flight_sends_and_never_duplicates(
    tmp_path: Path, sim: WooSim, daemon_factory: Any
) -> None:
    """Six alerts queue behind a slow receiver (one send at a time). SIGTERM while the second
    is in flight: that one finishes and is recorded, no other starts, exit 0. After a restart
    the other four go out, and every alert reached the receiver exactly once."""
    with WebhookSink(mode="slow", delay=2.0) as sink:
        config = write_config(tmp_path, sim.url, sink.url, delivery={"concurrency": 1})
        text = config.read_text(encoding="utf-8").replace('timeout = "2s"', 'timeout = "10s"')
        config.write_text(text, encoding="utf-8")  # the channel outwaits the slow receiver
        orders = [sim.create_order(payment_method="stripe") for _ in range(6)]
        expected = {f"shop:{order}:order.created" for order in orders}
        daemon = start(daemon_factory, config)
        assert sink.wait_for(1, timeout=30), daemon.output()
        # The sink has no "request started" event: the second send began when the first was
        # answered, and takes 2 s, so half a second later it is surely in flight.
        time.sleep(0.5)
        assert daemon.proc is not None
        stopped_at = time.monotonic()
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.wait_notice(lambda n: "STOPPING=1" in n.split("\n"), 5) is not None
        assert daemon.proc.wait(30) == 0
        took = time.monotonic() - stopped_at
        # Only the send in flight finished (≤ 2 s); draining the queue would take 8 s more.
        assert took < 6.0, f"stop took {took:.1f}s: sends started after SIGTERM"
        assert len(sink.ids()) == 2, sink.ids()
        assert "stopped cleanly" in daemon.output()

        sink.set_mode("ok")
        daemon.start()
        assert sink.wait_for_ids(expected, timeout=30), daemon.output()
        assert daemon.stop() == 0
        counts = Counter(sink.ids())
        assert set(counts) == expected
        assert max(counts.values()) == 1, f"duplicates: {counts}"


def test_sighup_adds_changes_and_removes_stores_and_channels(
    tmp_path: Path, sim: WooSim, sink: WebhookSink, daemon_factory: Any
) -> None:
    with (
        WooSim(consumer_key=KEY, consumer_secret=SECRET) as sim2,
        WebhookSink() as sink2,
    ):
        config = write_config(tmp_path, sim.url, sink.url)
        original = config.read_text(encoding="utf-8")
        daemon = start(daemon_factory, config)
        before = sim.create_order(payment_method="stripe")
        assert sink.wait_for(1, timeout=30), daemon.output()

        # Add a store and a channel; route everything to both channels.
        grown = add_store_and_channel(config, sim2, sink2)
        config.write_text(grown, encoding="utf-8")
        ready = reload(daemon)
        assert lines(ready, "STATUS=")[0].startswith("STATUS=2 stores ok"), ready
        assert "added: shop2" in daemon.output()
        new = sim2.create_order(payment_method="stripe")
        old = sim.create_order(payment_method="stripe")
        both = {f"shop2:{new}:order.created", f"shop:{old}:order.created"}
        assert sink.wait_for_ids(both, timeout=30), daemon.output()
        assert sink2.wait_for_ids(both, timeout=30), daemon.output()
        sim.set_status(old, "processing")
        paid = f"shop:{old}:order.paid"
        assert sink.wait_for_ids({paid}, timeout=30) and sink2.wait_for_ids({paid}, timeout=30)

        # Change a store (its interval): a fresh source, same cursor, nothing repeated.
        config.write_text(grown.replace('interval = "1s"', 'interval = "2s"', 1), "utf-8")
        reload(daemon)
        assert "changed: shop;" in daemon.output()
        changed = sim.create_order(payment_method="stripe")
        assert sink.wait_for_ids({f"shop:{changed}:order.created"}, timeout=30)

        # Remove the store and the channel again.
        config.write_text(original, encoding="utf-8")
        reload(daemon)
        assert "removed: shop2" in daemon.output()
        requests_to_sim2 = len(sim2.request_log)
        sim2.create_order(payment_method="stripe")
        last = sim.create_order(payment_method="stripe")
        assert sink.wait_for_ids({f"shop:{last}:order.created"}, timeout=30)
        assert len(sim2.request_log) == requests_to_sim2, "a removed store is still polled"
        assert daemon.stop() == 0

        counts, counts2 = Counter(sink.ids()), Counter(sink2.ids())
        assert max(counts.values()) == 1 and max(counts2.values()) == 1, (counts, counts2)
        assert set(counts) == {
            f"shop:{before}:order.created",
            *both,
            paid,
            f"shop:{changed}:order.created",
            f"shop:{last}:order.created",
        }
        # hook2 got what was routed to it while it existed, and nothing from before it.
        assert f"shop:{before}:order.created" not in counts2
        assert f"shop:{last}:order.created" not in counts2
        assert both | {paid} <= set(counts2)


def test_a_bad_config_on_sighup_is_refused_and_the_old_one_keeps_running(
    tmp_path: Path, sim: WooSim, sink: WebhookSink, daemon_factory: Any
) -> None:
    config = write_config(tmp_path, sim.url, sink.url)
    good = config.read_text(encoding="utf-8")
    daemon = start(daemon_factory, config)
    config.write_text(good.replace('interval = "1s"', 'interval = "soon"'), encoding="utf-8")
    reload(daemon)
    refused = [n for n in daemon.notices if "reload failed" in n]
    assert refused, daemon.notices
    assert lines(refused[0], "STATUS=")[0].startswith(
        "STATUS=reload failed: config: stores[0].interval: 'soon' is not a duration"
    )
    assert "reload refused, the running config stays: config: stores[0].interval" in (
        daemon.output()
    )
    order = sim.create_order(payment_method="stripe")  # the old config still polls and sends
    assert sink.wait_for_ids({f"shop:{order}:order.created"}, timeout=30), daemon.output()
    status = daemon.wait_notice(lambda n: "STATUS=" in n, timeout=5)
    assert status is not None and "last reload failed: stores[0].interval" in status

    config.write_text(good, encoding="utf-8")  # fixed: the next reload clears the note
    ready = reload(daemon)
    assert "reload failed" not in ready
    assert daemon.stop() == 0


def test_healthz_names_a_store_that_stopped_polling_and_recovers(
    tmp_path: Path, sim: WooSim, sink: WebhookSink, daemon_factory: Any
) -> None:
    """The daemon's side of /healthz (pollerd.web.scrape serves it): 503 naming the store once it
    has had no successful pass for 3 intervals, 200 again after the next success."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = write_config(tmp_path, sim.url, sink.url)
    text = config.read_text(encoding="utf-8")
    listen = f'[pollerd]\nmetrics_listen = "127.0.0.1:{port}"\n'
    config.write_text(text.replace("[pollerd]\n", listen, 1), encoding="utf-8")
    daemon = start(daemon_factory, config)
    healthz = f"http://127.0.0.1:{port}/healthz"
    assert daemon.wait_notice(lambda n: "1 store ok" in n and "last poll" in n, 20), daemon.output()
    assert httpx.get(healthz, timeout=5).status_code == 200

    sim.add_fault("500", rate=1.0)  # every request to the shop's API fails from now on
    assert daemon.wait_notice(lambda n: "0 of 1 stores ok (shop: " in n, 30), daemon.output()
    answer = httpx.get(healthz, timeout=5)
    assert answer.status_code == 503
    body = answer.json()
    assert body["status"] == "unhealthy" and body["reason"].startswith("store shop: no successful")
    assert not body["stores"]["shop"]["healthy"] and body["delivery"]["healthy"]
    assert any(watchdog(n) for n in daemon.notices[-3:]), "a store being down is no restart"

    sim.clear_faults()
    assert daemon.wait_notice(lambda n: "STATUS=1 store ok" in n, 30), daemon.output()
    assert httpx.get(healthz, timeout=5).status_code == 200
    assert daemon.stop() == 0
