"""The daemon and the operator commands as a user runs them: real `pollerd` subprocesses,
signals, the state-directory lock, exit codes and the messages that go with them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from pollerd_sim import WebhookSink, WooSim
from pollerd_sim.harness import KEY, SECRET, pollerd, pollerd_env, write_config
from tests.support import ROOT


def test_run_announces_changes_and_stops_cleanly_on_sigterm(
    tmp_path: Path, sim: WooSim, sink: WebhookSink, daemon_factory: Any
) -> None:
    config = write_config(tmp_path, sim.url, sink.url, store={"start_from": "now"})
    daemon = daemon_factory(config)
    daemon.start()
    paid = sim.create_order(payment_method="stripe", set_paid=True)
    assert sink.wait_for(2, timeout=30), daemon.output()
    cod = sim.create_order(payment_method="cod")
    sim.checkout(cod)  # processing with date_paid, but nothing collected yet
    sim.set_status(paid, "completed")
    assert sink.wait_for(4, timeout=30), daemon.output()
    assert daemon.stop() == 0
    assert Counter(sink.ids()) == Counter(
        {
            f"shop:{paid}:order.created": 1,
            f"shop:{paid}:order.paid": 1,
            f"shop:{paid}:order.fulfilled": 1,
            f"shop:{cod}:order.created": 1,
        }
    )
    # A restart resumes from the saved cursor: the old orders are not announced again.
    sim.set_status(cod, "completed")
    daemon.start()
    assert sink.wait_for(6, timeout=30), daemon.output()
    assert daemon.stop() == 0
    counts = Counter(sink.ids())
    assert counts[f"shop:{cod}:order.paid"] == 1 and counts[f"shop:{cod}:order.fulfilled"] == 1
    assert max(counts.values()) == 1
    assert KEY not in daemon.output() and SECRET not in daemon.output()


def test_once_while_run_holds_the_lock_exits_75(
    tmp_path: Path, sim: WooSim, sink: WebhookSink, daemon_factory: Any
) -> None:
    config = write_config(tmp_path, sim.url, sink.url)
    daemon = daemon_factory(config)
    daemon.start()
    try:
        blocked = pollerd("once", "--config", str(config))
        assert blocked.returncode == 75
        assert "another pollerd" in blocked.stderr and "Traceback" not in blocked.stderr
    finally:
        assert daemon.stop() == 0
    assert pollerd("once", "--config", str(config)).returncode == 0


def test_sigint_is_a_clean_stop_too(
    tmp_path: Path, sim: WooSim, sink: WebhookSink, daemon_factory: Any
) -> None:
    config = write_config(tmp_path, sim.url, sink.url)
    daemon = daemon_factory(config)
    daemon.start()
    daemon.proc.send_signal(signal.SIGINT)
    assert daemon.proc.wait(30) == 0


def test_bad_config_exits_78_naming_the_key(tmp_path: Path, sim: WooSim, sink: WebhookSink) -> None:
    config = write_config(tmp_path, sim.url, sink.url, store={"intervall": "5s"})
    for command in ("run", "once", "check", "status"):
        result = pollerd(command, "--config", str(config))
        assert result.returncode == 78, (command, result.stderr)
        assert "stores[0].intervall: unknown key 'intervall' (did you mean 'interval'?" in (
            result.stderr
        )
        assert "Traceback" not in result.stderr
    env = pollerd_env()
    del env["TEST_WC_SECRET"]
    config = write_config(tmp_path, sim.url, sink.url)
    result = pollerd("once", "--config", str(config), env=env)
    assert result.returncode == 78
    assert "stores[0].consumer_secret: env var TEST_WC_SECRET is not set" in result.stderr


def test_usage_errors_exit_2(tmp_path: Path, sim: WooSim, sink: WebhookSink) -> None:
    bogus = pollerd("sim", "--platform", "magento")
    assert bogus.returncode == 2 and "woocommerce or shopify" in bogus.stderr
    config = write_config(tmp_path, sim.url, sink.url)
    result = pollerd("backfill", "--store", "shop", "--since", "last tuesday", "-c", str(config))
    assert result.returncode == 2 and "--since" in result.stderr
    assert pollerd("frobnicate").returncode == 2


def test_check_probes_stores_read_only(tmp_path: Path, sink: WebhookSink) -> None:
    with WooSim(consumer_key=KEY, consumer_secret=SECRET) as sim:
        config = write_config(tmp_path, sim.url, sink.url)
        good = pollerd("check", "--config", str(config))
        assert good.returncode == 0, good.stdout + good.stderr
        assert "shop" in good.stdout
        writes = [r for r in sim.request_log if r.get("method") not in ("GET", "OPTIONS", "HEAD")]
        assert not writes
    with WooSim(consumer_key=KEY, consumer_secret="cs_someone_else") as other:
        config = write_config(tmp_path, other.url, sink.url)
        bad = pollerd("check", "--config", str(config))
        assert bad.returncode == 1
        assert "consumer secret" in (bad.stdout + bad.stderr).lower()
        assert SECRET not in bad.stdout + bad.stderr


def test_notify_test_sends_a_sample_through_the_channel(
    tmp_path: Path, sim: WooSim, sink: WebhookSink
) -> None:
    config = write_config(tmp_path, sim.url, sink.url)
    result = pollerd("notify-test", "--channel", "hook", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert sink.wait_for(1, timeout=10)
    body = sink.receipts[0].json()
    assert body["test"] is True and body["type"] == "order.paid"
    assert not pollerd("deliveries", "list", "--json", "-c", str(config)).stdout.strip("[]\n ")
    sink.mode = "410"
    gone = pollerd("notify-test", "--channel", "hook", "--config", str(config))
    assert gone.returncode == 1 and "410" in gone.stdout + gone.stderr
    missing = pollerd("notify-test", "--channel", "nope", "--config", str(config))
    assert missing.returncode != 0 and "hook" in missing.stderr


def test_status_json_reports_cursor_and_outbox(
    tmp_path: Path, sim: WooSim, sink: WebhookSink
) -> None:
    config = write_config(tmp_path, sim.url, sink.url)
    sim.create_order(payment_method="stripe", set_paid=True)
    assert pollerd("once", "--config", str(config)).returncode == 0
    result = pollerd("status", "--json", "--config", str(config))
    assert result.returncode == 0
    report = json.loads(result.stdout)
    assert report["healthy"] is True
    assert report["stores"][0]["name"] == "shop" and report["stores"][0]["cursor"]
    assert report["channels"][0]["sent"] == 2
    assert 0.0 <= report["stores"][0]["budget_used"] <= 1.0  # recorded by the pass
    human = pollerd("status", "--config", str(config))
    assert human.returncode == 0 and "shop" in human.stdout


def test_demo_prints_alerts_and_stops(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pollerd", "demo", "--seconds", "6", "--rate", "600"],
        capture_output=True,
        text=True,
        env=pollerd_env(),
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "[demo-store]" in result.stdout and "[demo-shopify]" in result.stdout
    assert "New order" in result.stdout or "Order" in result.stdout
    assert "Traceback" not in result.stderr
    # The shop's history (#100-#102, placed days before the demo started) alerts what happens
    # to it now, never its creation.
    for line in ("Order #100 paid", "Order #101 cancelled", "Order #102 fulfilled"):
        assert f"[demo-store] {line}" in result.stdout
    assert not any(f"[demo-store] New order #{n} " in result.stdout for n in (100, 101, 102))
