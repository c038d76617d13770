"""`webhook` channel against real receivers on loopback: the `WebhookSink` for the failure
modes it has, and a tiny status responder for the answers it does not (3xx, 401, 404, 422)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from pollerd.channels.base import ChannelContext, SendResult
from pollerd.channels.webhook import WebhookChannel, sign, signing_key
from pollerd.model import Event
from pollerd.secrets import Secret
from pollerd_sim import WebhookSink
from pollerd_sim.loopback import LoopbackHandler, LoopbackService
from pollerd_sim.sink import Receipt
from pollerd_sim.testing.events import paid_event
from pollerd_sim.testing.sending import send_events

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
AT = datetime(2026, 11, 22, 9, 32, 36, tzinfo=UTC)


def sample(name: str = "Jane D.") -> Event:
    return paid_event(name, admin_url=None)


def verify(receipt: Receipt, secret: str = SECRET) -> bool:
    """Standard Webhooks verification written from the spec, independent of the channel."""
    if secret.startswith("whsec_"):
        key = base64.b64decode(secret[len("whsec_") :])
    else:
        key = secret.encode()
    signed = f"{receipt.webhook_id}.{receipt.timestamp}.".encode() + receipt.body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    sent = (receipt.signature or "").split(" ")
    return any(hmac.compare_digest(expected, s) for s in sent)


def deliver(
    url: str, event: Event | None = None, *, times: int = 1, **options: Any
) -> list[SendResult]:
    """Render once, send `times` times through one shared client, like the outbox does."""

    def make(http: httpx.AsyncClient) -> WebhookChannel:
        return WebhookChannel(
            ChannelContext("hook", {"url": url, "secret": SECRET, **options}, http)
        )

    return send_events(make, [event or sample()], times=times).results


@pytest.fixture
def sink() -> Iterator[WebhookSink]:
    with WebhookSink(delay=0.5) as server:
        yield server


class StatusHandler(LoopbackHandler):
    """POST /<status> answers that status (3xx with a Location); the body echoes the signature
    header, as debugging receivers do, so tests can prove it never leaks into a detail."""

    def do_POST(self) -> None:
        self.read_body()
        status = int(self.path.strip("/").partition("?")[0])
        extra = [("Location", "https://hooks.example.com/final?token=abc")] if status < 400 else []
        got = {"webhook-signature": self.headers.get("webhook-signature")}
        echo = json.dumps({"error": "signature mismatch", "got": got}).encode()
        self.send_body(status, echo, headers=extra)


class Responder(LoopbackService):
    handler_class = StatusHandler


@pytest.fixture(scope="module")
def responder() -> Iterator[Responder]:
    with Responder() as server:
        yield server


def test_spec_vector() -> None:
    signature = sign(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, '{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_secret_without_prefix_is_raw_bytes() -> None:
    assert signing_key("plain-shared-string") == b"plain-shared-string"
    with pytest.raises(ValueError):
        signing_key("whsec_not*base64")


def test_ok_posts_exact_body_with_valid_signature(sink: WebhookSink) -> None:
    event = sample(name="Zoë ✓")  # non-ASCII: the signature covers the UTF-8 bytes sent
    [result] = deliver(f"{sink.url}/hook", event, headers={"X-Team": "ops"})
    assert result.kind == "ok"
    [receipt] = sink.receipts
    assert receipt.body == event.body().encode("utf-8")
    assert receipt.webhook_id == "acme:1001:order.paid" == event.id
    assert receipt.headers["content-type"] == "application/json"
    assert receipt.headers["x-team"] == "ops"
    assert receipt.timestamp is not None and receipt.timestamp.isdigit()
    assert abs(int(receipt.timestamp) - receipt.received_at) < 60
    assert verify(receipt)


def test_raw_secret_signs_with_its_bytes(sink: WebhookSink) -> None:
    async def go() -> SendResult:
        async with httpx.AsyncClient() as http:
            options = {"url": sink.url, "secret": "value-of-hook_secret"}
            ch = WebhookChannel(ChannelContext("hook", options, http))
            return await ch.send(sample(), ch.render(sample()))

    assert asyncio.run(go()).kind == "ok"
    assert verify(sink.receipts[0], "value-of-hook_secret")
    assert not verify(sink.receipts[0], SECRET)


def test_timestamp_is_taken_at_send_time(sink: WebhookSink) -> None:
    async def go() -> None:
        async with httpx.AsyncClient() as http:
            ch = WebhookChannel(ChannelContext("hook", {"url": sink.url, "secret": SECRET}, http))
            body = ch.render(sample())
            for now in (1614265330.9, 1614265399.0):
                ch.clock = lambda now=now: now  # type: ignore[misc]
                await ch.send(sample(), body)

    asyncio.run(go())
    assert [r.timestamp for r in sink.receipts] == ["1614265330", "1614265399"]
    assert all(verify(r) for r in sink.receipts)


def test_retry_carries_the_same_webhook_id(sink: WebhookSink) -> None:
    sink.queue_modes("500")
    first, second = deliver(sink.url, times=2)
    assert first.kind == "retry" and "HTTP 500" in first.detail
    assert second.kind == "ok"
    assert [a.status for a in sink.attempts] == [500, 200]
    assert {a.webhook_id for a in sink.attempts} == {"acme:1001:order.paid"}
    assert sink.attempts[0].body == sink.attempts[1].body
    assert all(verify(a) for a in sink.attempts)


def test_410_holds_the_channel(sink: WebhookSink) -> None:
    sink.set_mode("410")
    [result] = deliver(sink.url)
    assert (result.kind, result.scope) == ("permanent", "channel")
    assert "410" in result.detail and "url" in result.detail


@pytest.mark.parametrize(("after", "expected"), [(30, 30.0), (None, None)])
def test_429_honours_retry_after(sink: WebhookSink, after: int | None, expected: float) -> None:
    sink.set_mode("429", retry_after=after)
    [result] = deliver(sink.url)
    assert result.kind == "retry" and result.retry_after == expected
    assert "429" in result.detail


def test_500_is_retried(sink: WebhookSink) -> None:
    sink.set_mode("500")
    [result] = deliver(sink.url)
    assert result.kind == "retry" and result.retry_after is None


def test_timeout_is_retried(sink: WebhookSink) -> None:
    sink.set_mode("slow")  # answers after 0.5 s
    [result] = deliver(sink.url, timeout="100ms")
    assert result.kind == "retry" and "timed out" in result.detail and "0.1s" in result.detail


def test_dropped_connection_is_retried(sink: WebhookSink) -> None:
    sink.set_mode("down")
    [result] = deliver(sink.url)
    assert result.kind == "retry"


def test_refused_connection_is_retried(sink: WebhookSink) -> None:
    url = sink.url
    sink.stop()
    [result] = deliver(url)
    assert result.kind == "retry" and "ConnectError" in result.detail


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirect_is_a_channel_problem(responder: Responder, status: int) -> None:
    [result] = deliver(f"{responder.url}/{status}")
    assert (result.kind, result.scope) == ("permanent", "channel")
    assert "redirects" in result.detail and "configure the final URL" in result.detail
    assert "https://hooks.example.com/final?…" in result.detail
    assert "token=abc" not in result.detail


@pytest.mark.parametrize(
    ("status", "kind", "scope"),
    [
        (401, "permanent", "channel"),
        (403, "permanent", "channel"),
        (404, "permanent", "channel"),
        (400, "permanent", "message"),
        (413, "permanent", "message"),
        (422, "permanent", "message"),
        (408, "retry", "message"),
        (409, "retry", "message"),
        (425, "retry", "message"),
        (502, "retry", "message"),
        (503, "retry", "message"),
        (200, "ok", "message"),
        (204, "ok", "message"),
    ],
)
def test_status_classification(responder: Responder, status: int, kind: str, scope: str) -> None:
    [result] = deliver(f"{responder.url}/{status}")
    assert (result.kind, result.scope) == (kind, scope), result.detail


def test_details_never_show_secret_or_signature(responder: Responder) -> None:
    [result] = deliver(f"{responder.url}/422")
    assert "webhook-signature" in result.detail  # the echo made it into the excerpt ...
    assert "v1," not in result.detail  # ... with the signature blanked out
    assert SECRET not in result.detail and SECRET[6:] not in result.detail
    [result] = deliver(f"{responder.url}/401")
    assert "secret" in result.detail and "v1," not in result.detail


def test_details_do_not_echo_the_hook_path(sink: WebhookSink) -> None:
    sink.set_mode("500")
    [result] = deliver(f"{sink.url}/hooks/T0KEN123")
    assert "T0KEN123" not in result.detail and "127.0.0.1" in result.detail


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"url": "ftp://x.example.com/"}, "http:// or https://"),
        ({"url": "https://"}, "http:// or https://"),
        ({"secret": "whsec_not*base64!"}, "not base64"),
        ({"secret": "whsec_"}, "empty"),
        ({"headers": {"webhook-signature": "x"}}, "set by pollerd"),
        ({"headers": {"Content-Type": "text/plain"}}, "set by pollerd"),
        ({"headers": {"Bad Name": "x"}}, "not a valid header name"),
        ({"headers": {"X-A": "a\r\nX-B: b"}}, "line break"),
        ({"timeout": "soon"}, "not a duration"),
        ({"retries": 3}, "Extra inputs"),
    ],
)
def test_options_are_validated(options: dict[str, Any], problem: str) -> None:
    base = {"url": "https://hooks.example.com/x", "secret": SECRET}
    with pytest.raises(ValidationError) as caught:
        WebhookChannel.Options.model_validate({**base, **options})
    assert problem in str(caught.value)
    assert SECRET[6:] not in str(caught.value)


def test_options_defaults() -> None:
    options = WebhookChannel.Options.model_validate({"url": "http://127.0.0.1:9/x", "secret": "s"})
    assert options.timeout.total_seconds() == 10 and options.headers == {}
    assert isinstance(options.secret, Secret) and "s" not in repr(options).split("secret=")[1][:12]
