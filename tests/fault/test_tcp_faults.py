"""Fault matrix row 13 (research §B.6): TCP faults between pollerd and the store, and between
pollerd and the receiver, through `pollerd_sim.faultproxy.FaultProxy` (reset, half-open,
1-byte slices, a body cut short, a body truncated with a matching length, slow answers).

What must hold: every run ends within its timeouts (no pass hangs); a broken answer from the
store fails the pass (exit 1, retried next time) and is never read as "no orders"; a broken
answer from the receiver is retried with the same id and bytes (a duplicate only where the
receiver had accepted before the connection broke); and once the fault is gone, a clean run
delivers every event the sim's history implies, exactly once.

The same truncated answer read leniently (`lenient_json`: not-JSON taken as an empty list)
passes for "no orders", which the exit-code assertion catches."""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pollerd_sim import ShopSim, WebhookSink, WooSim
from pollerd_sim.faultproxy import FaultProxy
from pollerd_sim.harness import KEY, SECRET, SHOPIFY_TOKEN, pollerd, pollerd_env, write_config
from pollerd_sim.testing.faults import Report, check, receipts_of, shop_truth
from pollerd_sim.testing.smtp import make_certs
from tests.fault.rig import clean, intact, verdict

pytestmark = pytest.mark.fault
TIMEOUT = 2.0  # the store's and the channel's timeout in these configs
BOUND = 30.0  # a run that meets a fault ends within this (retries included): it never hangs


@contextlib.contextmanager
def proxied_sim(proxy: FaultProxy) -> Iterator[WooSim]:
    """A WooSim behind `proxy`: its own address (which OAuth signs) is the proxy's."""
    with WooSim(consumer_key=KEY, consumer_secret=SECRET, home_url=proxy.url) as sim:
        proxy.point_to(sim.url)
        yield sim


def faulty_once(config: Path, **env: str) -> tuple[int, float, str]:
    began = time.monotonic()
    result = pollerd("once", "--config", str(config), env=pollerd_env(**env), timeout=BOUND * 2)
    return result.returncode, time.monotonic() - began, result.stderr


@pytest.mark.parametrize(
    ("toxic", "passes"),
    [
        ("reset", False),
        ("half_open", False),
        ("cut", False),
        ("truncate", False),
        ("slice", True),
        ("slow", True),
    ],
)
def test_store_connection_faults(tmp_path: Path, toxic: str, passes: bool) -> None:
    with FaultProxy() as proxy, proxied_sim(proxy) as sim, WebhookSink() as sink:
        config = write_config(tmp_path, proxy.url, sink.url, store={"timeout": f"{TIMEOUT}s"})
        for _ in range(5):
            sim.create_order(payment_method="stripe", set_paid=True)
        proxy.set_toxic(toxic, limit=40, delay=0.1)
        code, took, stderr = faulty_once(config)
        assert proxy.connections.get(toxic), "the fault was never met"
        assert took < BOUND, f"{toxic}: the run took {took:.1f}s"
        if passes:
            assert code == 0, stderr
        else:
            assert code == 1, stderr  # failed and said so; never "nothing new"
            assert not sink.receipts
            if toxic == "truncate":  # a whole HTTP answer, half a JSON document
                assert "a body that is not JSON" in stderr, stderr
        intact(tmp_path / "pollerd.db")
        proxy.set_toxic("none")
        clean("once", "--config", str(config))
        report = verdict(sim, sink)
    assert report.ok and not report.duplicated and report.received == 10, report.summary()


@pytest.mark.parametrize("toxic", ["reset", "half_open", "cut", "slow"])
def test_receiver_connection_faults(tmp_path: Path, toxic: str) -> None:
    with (
        WooSim(consumer_key=KEY, consumer_secret=SECRET) as sim,
        WebhookSink() as sink,
        FaultProxy(sink.url) as proxy,
    ):
        config = write_config(tmp_path, sim.url, proxy.url + "/hook")
        for _ in range(5):
            sim.create_order(payment_method="stripe", set_paid=True)
        proxy.set_toxic(toxic, limit=3, delay=0.1)
        code, took, stderr = faulty_once(config)
        met = proxy.connections.get(toxic, 0)
        assert met, "the fault was never met"
        assert took < BOUND, f"{toxic}: the run took {took:.1f}s"
        assert code in (0, 1), stderr
        proxy.set_toxic("none")
        clean("once", "--config", str(config))
        intact(tmp_path / "pollerd.db")
        report = verdict(sim, sink)
    assert not report.lost and not report.unexpected, report.summary()
    assert not report.order_violations, report.summary()
    # Only an answer lost after the receiver accepted repeats, with the same bytes.
    assert report.extra_copies <= met and all(d.same_body for d in report.duplicated)
    if toxic in ("reset", "half_open"):
        assert not report.duplicated  # nothing reached the receiver


def test_the_tcp_test_catches_a_lenient_reader(tmp_path: Path) -> None:
    with FaultProxy() as proxy, proxied_sim(proxy) as sim, WebhookSink() as sink:
        config = write_config(tmp_path, proxy.url, sink.url, store={"timeout": f"{TIMEOUT}s"})
        sim.create_order(payment_method="stripe", set_paid=True)
        proxy.set_toxic("truncate", limit=40)
        code, _, stderr = faulty_once(config, POLLERD_FAILPOINT="lenient_json")
    assert code == 0, stderr  # "no orders": the assertion `code == 1` above would fail
    assert not sink.receipts


# --- TLS handshake failure (row 13's last toxic) ------------------------------------------------
# The proxy terminates TLS with a throwaway CA's certificate (trusted through SSL_CERT_FILE,
# which httpx reads); `tls_fail` answers the ClientHello with a fatal handshake_failure alert.


def test_store_tls_handshake_failure(tmp_path: Path) -> None:
    certs = make_certs(tmp_path)
    trust = {"SSL_CERT_FILE": str(certs.ca)}
    with (
        FaultProxy(tls=certs.server_context()) as proxy,
        # Over https WooCommerce takes Basic auth: the site must see its own https (is_ssl()).
        WooSim(
            consumer_key=KEY, consumer_secret=SECRET, home_url=proxy.url, https_detected=True
        ) as sim,
        WebhookSink() as sink,
    ):
        proxy.point_to(sim.url)
        config = write_config(tmp_path, proxy.url, sink.url, store={"timeout": f"{TIMEOUT}s"})
        for _ in range(5):
            sim.create_order(payment_method="stripe", set_paid=True)
        proxy.set_toxic("tls_fail")
        code, took, stderr = faulty_once(config, **trust)
        assert proxy.connections.get("tls_fail"), "the fault was never met"
        assert took < BOUND, f"the run took {took:.1f}s"
        assert code == 1 and not sink.receipts, stderr  # failed and said so; retried next run
        assert re.search(r"TLS handshake failed.*\(will retry\)", stderr), stderr
        intact(tmp_path / "pollerd.db")
        proxy.set_toxic("none")
        clean("once", "--config", str(config), **trust)
        report = verdict(sim, sink)
    assert proxy.connections.get("none"), "the healthy run did not go through the proxy"
    assert report.ok and not report.duplicated and report.received == 10, report.summary()


def receiver_tls_failure(tmp: Path, **env: str) -> tuple[list[dict[str, Any]], Report]:
    """Five orders sent through a receiver whose TLS handshakes fail, then a clean run once it
    is healthy: the outbox after the failed run, and the checker's report after the clean one."""
    certs = make_certs(tmp)
    trust = {"SSL_CERT_FILE": str(certs.ca)}
    with (
        WooSim(consumer_key=KEY, consumer_secret=SECRET) as sim,
        WebhookSink() as sink,
        FaultProxy(sink.url, tls=certs.server_context()) as proxy,
    ):
        config = write_config(tmp, sim.url, proxy.url + "/hook")
        for _ in range(5):
            sim.create_order(payment_method="stripe", set_paid=True)
        proxy.set_toxic("tls_fail")
        code, took, stderr = faulty_once(config, **trust, **env)
        assert proxy.connections.get("tls_fail"), "the fault was never met"
        assert took < BOUND, f"the run took {took:.1f}s"
        assert code == 1 and not sink.attempts, stderr  # nothing reached the receiver
        with sqlite3.connect(tmp / "pollerd.db") as conn:  # the outbox, as the run left it
            conn.row_factory = sqlite3.Row
            query = "SELECT event_id, state, attempts, last_error FROM delivery"
            rows = [dict(r) for r in conn.execute(query)]
        proxy.set_toxic("none")
        clean("once", "--config", str(config), **trust)
        intact(tmp / "pollerd.db")
        return rows, verdict(sim, sink)


def test_receiver_tls_handshake_failure(tmp_path: Path) -> None:
    rows, report = receiver_tls_failure(tmp_path)
    # Retryable: every first event pending with the reason, none dead-lettered...
    failed = [r for r in rows if r["attempts"]]
    assert len(failed) == 5 and all(r["state"] == "pending" for r in rows), rows
    assert all("TLS handshake failed" in (r["last_error"] or "") for r in failed), failed
    # ...and sent once the receiver is healthy.
    assert report.ok and not report.duplicated and report.received == 10, report.summary()


def test_the_tls_test_catches_a_handshake_failure_taken_as_final(tmp_path: Path) -> None:
    rows, report = receiver_tls_failure(tmp_path, POLLERD_FAILPOINT="tls_is_permanent")
    # Dead at the first failure (the `pending` assertion above fails), so never sent: the
    # healthy run delivers nothing for those orders (`report.ok` fails too).
    assert sum(r["state"] == "dead" for r in rows) == 5, rows
    assert len(report.lost) == 10, report.summary()


@pytest.mark.parametrize("toxic", ["reset", "half_open", "truncate"])
def test_shopify_store_connection_faults(tmp_path: Path, toxic: str) -> None:
    """The same faults between pollerd and the Shopify GraphQL API (`ShopSim` behind the
    proxy): the client's inline retries meet the fault each time, the pass fails and says so
    (never "no orders"), and a clean run then delivers each event once."""
    with (
        ShopSim(access_token=SHOPIFY_TOKEN) as sim,
        FaultProxy(sim.url) as proxy,
        WebhookSink() as sink,
    ):
        # 1 s: a half-open store costs a timeout per attempt, and the client meets it ~8 times
        # (each failed listing halves the page down to 10 rows, then retries it inline).
        store = {"timeout": "1s"}
        config = write_config(tmp_path, proxy.url, sink.url, platform="shopify", store=store)
        for _ in range(3):
            sim.create_order(financial="PAID")
        proxy.set_toxic(toxic, limit=40)
        code, took, stderr = faulty_once(config)
        assert proxy.connections.get(toxic), "the fault was never met"
        assert took < BOUND, f"{toxic}: the run took {took:.1f}s"
        assert code == 1, stderr  # failed and said so; never "nothing new"
        assert not sink.receipts
        if toxic == "truncate":  # a whole HTTP answer, half a JSON document
            assert "a body that is not a JSON object" in stderr, stderr
        intact(tmp_path / "pollerd.db")
        proxy.set_toxic("none")
        clean("once", "--config", str(config))
        report = check(shop_truth(sim.history()), receipts_of(sink.receipts))
    assert report.ok and not report.duplicated and report.received == 6, report.summary()
