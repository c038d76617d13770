"""`/metrics` and `/healthz` over real HTTP on 127.0.0.1: `pollerd.web.scrape.serve()` in-process
after a real pass against `WooSim`, and a real `pollerd run` subprocess with `metrics_listen`.
Every exposition is read back with prometheus_client's own parsers (text and OpenMetrics)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from pollerd import metrics
from pollerd.config import RouteConfig
from pollerd.errors import ConfigError
from pollerd.sources.woocommerce import WooCommerceStore
from pollerd.sources.woocommerce.client import WooCommerceSource
from pollerd.store import open_store
from pollerd.sync import StoreSync
from pollerd.web import scrape
from pollerd_sim import WebhookSink, WooSim
from pollerd_sim.harness import KEY, SECRET, write_config
from pollerd_sim.testing.ports import free_port

Health = Callable[[], tuple[bool, dict[str, Any]]]
HTTP = httpx.Client(timeout=5)  # one client: building one per request costs ~0.1 s (TLS setup)


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    metrics.reset()
    yield
    metrics.reset()


@contextlib.contextmanager
def serving(health: Health, listen: str = "127.0.0.1:0") -> Iterator[scrape.MetricsServer]:
    server = scrape.serve(listen, health)
    try:
        yield server
    finally:
        server.close()


def healthy() -> tuple[bool, dict[str, Any]]:
    return True, {"stores": {"shop": {"healthy": True}}}


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """{sorted label pairs: value} of one sample name in a text exposition."""
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_scraping_metrics_after_a_real_pass(tmp_path: Path) -> None:
    with WooSim(consumer_key=KEY, consumer_secret=SECRET) as sim:
        sim.create_order(payment_method="stripe", set_paid=True)
        cfg = WooCommerceStore(
            name="shop",
            platform="woocommerce",
            url=sim.url,
            consumer_key=KEY,
            consumer_secret=SECRET,
            start_from=datetime(2020, 1, 1, tzinfo=UTC),
            max_requests_per_minute=600,
            timeout=timedelta(seconds=5),
        )
        store = open_store(f"sqlite:///{tmp_path / 'pollerd.db'}")
        metrics.declare(["shop"], ["hook"])

        async def one_pass() -> None:
            source = WooCommerceSource(cfg)
            try:
                await StoreSync(cfg, source, store, [RouteConfig(channels=["hook"])]).poll()
            finally:
                await source.aclose()

        asyncio.run(one_pass())
        answered = sim.stats()["requests"]["200"]
        store.close()

    with serving(healthy) as server:
        response = HTTP.get(f"{server.url}/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = response.text
        assert samples(text, "pollerd_polls_total") == {
            (("result", "error"), ("store", "shop")): 0.0,
            (("result", "ok"), ("store", "shop")): 1.0,
            (("result", "throttled"), ("store", "shop")): 0.0,
        }
        assert samples(text, "pollerd_api_requests_total") == {
            (("code", "200"), ("store", "shop")): float(answered)
        }
        events = samples(text, "pollerd_events_total")
        assert events[(("store", "shop"), ("type", "order.paid"))] == 1.0
        assert samples(text, "pollerd_deliveries_total")[
            (("channel", "hook"), ("result", "sent"))
        ] == (0.0)
        [rss] = samples(text, "process_resident_memory_bytes").values()
        assert rss > 1_000_000
        [(labels, one)] = samples(text, "pollerd_build_info").items()
        assert one == 1.0 and dict(labels)["version"]

        # OpenMetrics when the scraper asks for it (Prometheus does by default), gzip too.
        om = HTTP.get(
            f"{server.url}/metrics",
            headers={
                "Accept": "application/openmetrics-text; version=1.0.0",
                "Accept-Encoding": "gzip",
            },
            timeout=5,
        )
        assert om.status_code == 200
        assert om.headers["content-type"].startswith("application/openmetrics-text")
        assert om.headers["content-encoding"] == "gzip"
        families = {f.name: f for f in openmetrics_families(om.text)}
        assert families["pollerd_polls"].type == "counter"
        assert families["pollerd_poll_duration_seconds"].type == "histogram"
        assert om.text.rstrip().endswith("# EOF")


def test_healthz_is_200_when_healthy_and_503_with_the_reason_otherwise() -> None:
    state: dict[str, Any] = {"ok": True}

    def health() -> tuple[bool, dict[str, Any]]:
        if state.get("raise"):
            raise RuntimeError("boom with shpat_not_for_logs")
        if state["ok"]:
            return True, {"stores": {"shop": {"healthy": True}}, "status_line": "已轮询 1 家店铺"}
        return False, {
            "reason": "store shop: no successful poll for 31s (limit 30s)",
            "stores": {"shop": {"healthy": False}},
        }

    with serving(health) as server:
        ok = HTTP.get(f"{server.url}/healthz")
        assert ok.status_code == 200
        assert ok.headers["content-type"] == "application/json; charset=utf-8"
        assert ok.headers["cache-control"] == "no-store"
        assert ok.json() == {
            "status": "ok",
            "stores": {"shop": {"healthy": True}},
            "status_line": "已轮询 1 家店铺",
        }

        state["ok"] = False
        bad = HTTP.get(f"{server.url}/healthz")
        assert bad.status_code == 503
        assert bad.json() == {
            "status": "unhealthy",
            "reason": "store shop: no successful poll for 31s (limit 30s)",
            "stores": {"shop": {"healthy": False}},
        }

        state["raise"] = True
        broken = HTTP.get(f"{server.url}/healthz")
        assert broken.status_code == 503
        assert broken.json() == {
            "status": "unhealthy",
            "reason": "health check failed: RuntimeError",
        }
        assert "shpat_" not in broken.text  # an exception's text never reaches the answer

        head = HTTP.head(f"{server.url}/healthz")
        assert head.status_code == 503 and head.content == b""
        assert int(head.headers["content-length"]) == len(broken.content)
        assert HTTP.post(f"{server.url}/healthz").status_code == 405
        assert HTTP.get(f"{server.url}/nothing-here").status_code == 404
        assert HTTP.get(f"{server.url}/").status_code == 200


def test_a_wedged_event_loop_still_gets_an_answer_503_not_a_timeout() -> None:
    """/healthz is served from its own thread: when the loop whose heartbeat it reads hangs,
    the scraper gets a fast 503 (which is what should page someone), not a timeout."""
    beat = [time.monotonic()]
    wedged, release = threading.Event(), threading.Event()

    async def loop_body() -> None:
        for _ in range(3):
            beat[0] = time.monotonic()
            await asyncio.sleep(0.01)
        wedged.set()
        release.wait(30)  # a blocking call inside a coroutine: the whole loop stops

    def health() -> tuple[bool, dict[str, Any]]:
        age = time.monotonic() - beat[0]
        ok = age < 0.3
        return ok, {} if ok else {"reason": f"loop stalled: no progress for {age:.1f}s"}

    loop_thread = threading.Thread(target=asyncio.run, args=(loop_body(),), daemon=True)
    loop_thread.start()
    try:
        assert wedged.wait(10)
        with serving(health) as server:
            deadline = time.monotonic() + 10
            answer = HTTP.get(f"{server.url}/healthz", timeout=2)
            while answer.status_code == 200 and time.monotonic() < deadline:
                answer = HTTP.get(f"{server.url}/healthz", timeout=2)
            assert answer.status_code == 503
            assert answer.json()["reason"].startswith("loop stalled")
            assert answer.elapsed.total_seconds() < 1.0
    finally:
        release.set()
        loop_thread.join(10)


def test_close_frees_the_port_and_a_busy_port_is_a_config_error() -> None:
    with serving(healthy) as server:
        port = server.port
        assert port > 0 and server.url == f"http://127.0.0.1:{port}"
        with pytest.raises(ConfigError) as busy:
            scrape.serve(f"127.0.0.1:{port}", healthy)
        assert busy.value.field == "pollerd.metrics_listen"
        assert "pick a free port" in str(busy.value)
    with pytest.raises(httpx.ConnectError):
        HTTP.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
    with serving(healthy, f"127.0.0.1:{port}") as again:  # free again at once
        assert HTTP.get(f"{again.url}/healthz").status_code == 200


def test_ipv6_loopback() -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    with serving(healthy, "[::1]:0") as server:
        assert server.url.startswith("http://[::1]:")
        assert HTTP.get(f"{server.url}/healthz").json()["status"] == "ok"


def test_a_reset_registry_is_what_a_live_server_serves() -> None:
    with serving(healthy) as server:
        metrics.declare(["first"], [])
        assert 'store="first"' in HTTP.get(f"{server.url}/metrics").text
        metrics.reset()
        metrics.declare(["second"], [])
        text = HTTP.get(f"{server.url}/metrics").text
        assert 'store="second"' in text and 'store="first"' not in text


def test_pollerd_run_serves_metrics_and_health(tmp_path: Path, daemon_factory: Any) -> None:
    """The daemon wires `serve()` to `metrics_listen`: its own passes and sends show up."""
    port = free_port()
    with WooSim(consumer_key=KEY, consumer_secret=SECRET) as sim, WebhookSink() as sink:
        order = sim.create_order(payment_method="stripe")
        config = write_config(tmp_path, sim.url, sink.url)
        text = config.read_text(encoding="utf-8")
        config.write_text(
            text.replace("[pollerd]\n", f'[pollerd]\nmetrics_listen = "127.0.0.1:{port}"\n', 1),
            encoding="utf-8",
        )
        daemon = daemon_factory(config)
        daemon.start()
        assert sink.wait_for_ids({f"shop:{order}:order.created"}, timeout=20)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        sent: float | None = None
        ok: float | None = None
        # The delivery counter moves right after the sink's 200, the pass counter when the pass
        # ends (after the trash listing and the first-run baseline), which may come later.
        while time.monotonic() < deadline:
            text = HTTP.get(f"{url}/metrics").text
            sent = samples(text, "pollerd_deliveries_total").get(
                (("channel", "hook"), ("result", "sent"))
            )
            ok = samples(text, "pollerd_polls_total").get((("result", "ok"), ("store", "shop")))
            if sent and ok:
                break
        assert sent == 1.0
        assert ok is not None and ok >= 1
        assert samples(text, "pollerd_events_total")[
            (("store", "shop"), ("type", "order.created"))
        ] == (1.0)
        health = HTTP.get(f"{url}/healthz")
        assert health.status_code == 200, health.text
        assert health.json()["status"] == "ok"
        assert daemon.stop() == 0
    with pytest.raises(httpx.ConnectError):
        HTTP.get(f"{url}/healthz", timeout=2)
