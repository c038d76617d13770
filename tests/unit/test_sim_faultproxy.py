"""`pollerd_sim.faultproxy.FaultProxy`: each toxic does to a plain HTTP client what it says,
so a fault test that passes through it has met the fault it names."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pollerd_sim import WooSim
from pollerd_sim.faultproxy import FaultProxy
from pollerd_sim.testing.smtp import make_certs

PATH = "/wp-json/wc/v3/orders"  # OPTIONS: the schema, a few kB of JSON, no credentials needed


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    with WooSim() as sim, FaultProxy(sim.url) as through:
        yield through


def options(proxy: FaultProxy, timeout: float = 2.0) -> httpx.Response:
    return httpx.options(proxy.url + PATH, timeout=timeout)


def test_none_and_slice_pass_the_whole_answer(proxy: FaultProxy) -> None:
    whole = options(proxy)
    assert whole.status_code == 200 and whole.json()["namespace"] == "wc/v3"
    proxy.set_toxic("slice")
    assert options(proxy).content == whole.content
    assert proxy.connections == {"none": 1, "slice": 1}


@pytest.mark.parametrize(
    ("toxic", "error"),
    [
        ("reset", httpx.TransportError),
        ("half_open", httpx.ReadTimeout),
        ("cut", httpx.RemoteProtocolError),
    ],
)
def test_broken_connections(proxy: FaultProxy, toxic: str, error: type[Exception]) -> None:
    proxy.set_toxic(toxic, limit=10)
    began = time.monotonic()
    with pytest.raises(error):
        options(proxy, timeout=0.5)
    assert time.monotonic() - began < 5


def test_truncate_is_a_whole_answer_with_half_a_document(proxy: FaultProxy) -> None:
    proxy.set_toxic("truncate", limit=25)
    cut = options(proxy)
    assert cut.status_code == 200 and len(cut.content) == 25
    with pytest.raises(ValueError):
        cut.json()


def test_slow_delays_each_chunk(proxy: FaultProxy) -> None:
    proxy.set_toxic("slow", delay=0.3)
    began = time.monotonic()
    assert options(proxy).status_code == 200
    assert time.monotonic() - began >= 0.3


def test_unknown_toxic_is_refused(proxy: FaultProxy) -> None:
    with pytest.raises(ValueError, match="unknown toxic"):
        proxy.set_toxic("latency")


def test_tls_terminates_and_tls_fail_refuses_the_handshake(tmp_path: Path) -> None:
    certs = make_certs(tmp_path)
    trust = ssl.create_default_context(cafile=str(certs.ca))
    with WooSim() as sim, FaultProxy(sim.url, tls=certs.server_context()) as proxy:
        assert proxy.url.startswith("https://")
        whole = httpx.options(proxy.url + PATH, verify=trust, timeout=5)
        assert whole.status_code == 200 and whole.json()["namespace"] == "wc/v3"
        proxy.set_toxic("tls_fail")
        began = time.monotonic()
        with pytest.raises(httpx.ConnectError, match="HANDSHAKE_FAILURE"):
            httpx.options(proxy.url + PATH, verify=trust, timeout=5)
        assert time.monotonic() - began < 5
        assert proxy.connections == {"none": 1, "tls_fail": 1}
        with pytest.raises(ValueError, match="plaintext"):
            proxy.set_toxic("truncate")
