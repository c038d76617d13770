"""`pollerd_sim.WebhookSink`: what a webhook receiver accepted, what it refused, and how."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from pollerd_sim import WebhookSink

HEADERS = {
    "webhook-id": "shop:100:order.paid",
    "webhook-timestamp": "1795339956",
    "webhook-signature": "v1,abc=",
}


@pytest.fixture
def sink() -> Iterator[WebhookSink]:
    with WebhookSink(delay=0.3) as server:
        yield server


def post(sink: WebhookSink, body: bytes = b'{"id":"x"}', timeout: float = 5) -> httpx.Response:
    return httpx.post(f"{sink.url}/hook", content=body, headers=HEADERS, timeout=timeout)


def test_ok_records_a_receipt(sink: WebhookSink) -> None:
    assert post(sink).status_code == 200
    assert sink.wait_for(1, timeout=1)
    [receipt] = sink.receipts
    assert receipt.webhook_id == "shop:100:order.paid"
    assert receipt.timestamp == "1795339956" and receipt.signature == "v1,abc="
    assert receipt.body == b'{"id":"x"}' and receipt.json() == {"id": "x"}
    assert receipt.path == "/hook" and receipt.headers["content-length"] == "10"
    assert abs(receipt.received_at - time.time()) < 5
    assert sink.ids() == ["shop:100:order.paid"]


@pytest.mark.parametrize(("mode", "status"), [("500", 500), ("410", 410), ("429", 429)])
def test_refusals_are_attempts_not_receipts(sink: WebhookSink, mode: str, status: int) -> None:
    sink.mode = mode
    r = post(sink)
    assert r.status_code == status and "Retry-After" not in r.headers
    assert sink.receipts == [] and [a.status for a in sink.attempts] == [status]
    assert not sink.wait_for(1, timeout=0.05)


def test_429_with_retry_after(sink: WebhookSink) -> None:
    sink.set_mode("429", retry_after=30)
    assert post(sink).headers["Retry-After"] == "30"


def test_down_drops_the_connection(sink: WebhookSink) -> None:
    sink.mode = "down"
    with pytest.raises(httpx.TransportError):
        post(sink)
    assert sink.receipts == [] and [a.status for a in sink.attempts] == [0]
    sink.mode = "ok"
    assert post(sink).status_code == 200
    assert sink.ids() == ["shop:100:order.paid"]


def test_accept_reset_keeps_the_message_and_drops_the_answer(sink: WebhookSink) -> None:
    """The receiver acted on it, the sender cannot know: its retry is a real duplicate."""
    sink.mode = "accept_reset"
    with pytest.raises(httpx.TransportError):
        post(sink)
    assert sink.ids() == ["shop:100:order.paid"] and [a.status for a in sink.attempts] == [0]


def test_a_request_cut_short_is_an_attempt_not_a_receipt(sink: WebhookSink) -> None:
    """A sender killed between its headers and the end of its body (the fault suite's kill -9)
    delivered nothing: counting it would hide a lost alert behind its webhook-id."""
    host, port = sink.url.removeprefix("http://").split("/")[0].split(":")
    with socket.create_connection((host, int(port))) as conn:
        head = "".join(f"{k}: {v}\r\n" for k, v in HEADERS.items())
        conn.sendall(f"POST /hook HTTP/1.1\r\nContent-Length: 100\r\n{head}\r\n".encode())
        conn.sendall(b'{"id":')
    assert sink.wait_for_attempts(1)
    assert sink.receipts == [] and sink.attempts[0].status == 0
    assert post(sink).status_code == 200 and len(sink.receipts) == 1  # the sink goes on


def test_slow_answers_late(sink: WebhookSink) -> None:
    sink.mode = "slow"
    started = time.monotonic()
    assert post(sink).status_code == 200
    assert time.monotonic() - started >= 0.3
    with pytest.raises(httpx.TimeoutException):
        post(sink, timeout=0.05)


def test_wait_for_wakes_on_arrival(sink: WebhookSink) -> None:
    threading.Timer(0.1, lambda: [post(sink) for _ in range(3)]).start()
    started = time.monotonic()
    assert sink.wait_for(3, timeout=5)
    assert time.monotonic() - started < 4
    assert sink.ids() == ["shop:100:order.paid"] * 3  # duplicates are kept


def test_queued_modes_then_fallback(sink: WebhookSink) -> None:
    sink.queue_modes("500", "down")
    assert post(sink).status_code == 500
    with pytest.raises(httpx.TransportError):
        post(sink)
    assert post(sink).status_code == 200
    assert [a.status for a in sink.attempts] == [500, 0, 200]
    with pytest.raises(ValueError, match="unknown sink mode"):
        sink.set_mode("teapot")


def test_admin_api(sink: WebhookSink) -> None:
    admin = f"{sink.url}/__sink"
    assert httpx.post(f"{admin}/mode", json={"mode": "429", "retry_after": 5}).json() == {
        "mode": "429"
    }
    assert post(sink).headers["Retry-After"] == "5"
    assert httpx.post(f"{admin}/mode", json={"mode": "ok"}).status_code == 200
    post(sink, '{"order":"张伟"}'.encode())
    receipts = httpx.get(f"{admin}/receipts").json()
    assert [(r["webhook_id"], r["body"]) for r in receipts] == [
        ("shop:100:order.paid", '{"order":"张伟"}')
    ]
    assert httpx.post(f"{admin}/mode", json={"mode": "nope"}).status_code == 400
    assert len(sink.attempts) == 2  # admin calls are not attempts


def test_keep_alive_and_stop(sink: WebhookSink) -> None:
    with httpx.Client(base_url=sink.url) as client:
        for _ in range(4):
            assert client.post("/hook", content=b"{}", headers=HEADERS).status_code == 200
        assert sink.connections_accepted == 1
        sink.stop()
        with pytest.raises(httpx.TransportError):
            client.post("/hook", content=b"{}", headers=HEADERS)
