"""`wecom` channel against `ChatSim`'s WeCom robot (real HTTP on loopback): markdown from the
`wecom` templates, the `text` fallback, escaping, fitting each to its byte limit, answers.

A few answers the simulator does not give (HTTP 200 that is not JSON, a redirect) come from an
`httpx.MockTransport`: no server of our own."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, cast

import httpx
import pytest
from pydantic import ValidationError

from pollerd.channels import wecom
from pollerd.channels.base import ChannelContext, SendResult
from pollerd.channels.robot import utf8_len
from pollerd.channels.wecom import MARKDOWN_BYTES, TEXT_BYTES, WeComChannel
from pollerd.model import Event
from pollerd.templates.escape import escape_markdown, escape_text
from pollerd_sim.chat import ChatSim
from pollerd_sim.testing.events import CUSTOMER, ITEM, line_items, paid_event
from pollerd_sim.testing.sending import send_events

AT = datetime(2026, 11, 22, 9, 32, 36, tzinfo=UTC)
KEY = "wecom-key-0001"
ADMIN = "https://acme.example.com/wp-admin/post.php?post=1001&action=edit"
HOSTILE = '<s>**x**</s> @all @everyone [x](http://evil) <@zhangsan> <font color="info">'
# The common brief's hostile customer and item: they must reach the wire inert.


def sample(
    name: str = "Jane D.", items: int = 2, item_name: str = "Mug", reason: str | None = None
) -> Event:
    return paid_event(
        name,
        items=line_items(items, item_name),
        email="j***@example.com",
        admin_url=ADMIN,
        reason=reason,
    )


def deliver(
    options: dict[str, Any],
    event: Event | None = None,
    *,
    times: int = 1,
    locale: str = "en",
    timezone: str = "UTC",
    transport: httpx.MockTransport | None = None,
) -> tuple[list[SendResult], str]:
    """Render once, send `times` times through one shared client, like the outbox does."""

    def make(http: httpx.AsyncClient) -> WeComChannel:
        ctx = ChannelContext("group", options, http, timezone=timezone, locale=locale)
        return WeComChannel(ctx)

    sent = send_events(make, [event or sample()], times=times, transport=transport)
    return sent.results, sent.rendered[0]


def answering(status: int, body: bytes, headers: dict[str, str] | None = None) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers=headers or {})

    return httpx.MockTransport(handler)


@pytest.fixture(scope="module")
def server() -> Iterator[ChatSim]:
    with ChatSim() as sim:
        yield sim


@pytest.fixture
def sim(server: ChatSim) -> ChatSim:
    server.clear()
    return server


def content(sim: ChatSim, index: int = -1) -> dict[str, Any]:
    body = sim.attempts("wecom")[index].json
    assert isinstance(body, dict)
    return body


# --- success ----------------------------------------------------------------------------------


def test_markdown_is_accepted(sim: ChatSim) -> None:
    [result], _ = deliver({"url": sim.endpoint("wecom")})
    assert result.kind == "ok", result.detail
    [got] = sim.received("wecom")
    assert got.json["msgtype"] == "markdown"
    text = got.json["markdown"]["content"]
    assert text.startswith("**") and "Order #1001 paid" in text
    assert f"[{ADMIN}]({ADMIN})" in text
    assert "1 × Mug 0\n1 × Mug 1" in text


def test_chinese_alert_in_shanghai_time(sim: ChatSim) -> None:
    [result], _ = deliver({"url": sim.endpoint("wecom")}, locale="zh-CN", timezone="Asia/Shanghai")
    assert result.kind == "ok"
    text = sim.received("wecom")[0].json["markdown"]["content"]
    assert "【acme】订单 #1001 已付款" in text and "2026年11月22日 17:32 北京时间" in text
    assert "金额：€25.00" in text and "后台：[" in text


def test_render_is_stored_and_resent_byte_identical(sim: ChatSim) -> None:
    results, rendered = deliver({"url": sim.endpoint("wecom")}, times=2)
    assert [r.kind for r in results] == ["ok", "ok"]
    first, second = sim.received("wecom")
    assert first.body == second.body
    assert json.loads(rendered)[0] == first.json


def test_mention_all_goes_as_text_with_mentioned_list(sim: ChatSim) -> None:
    [result], rendered = deliver({"url": sim.endpoint("wecom"), "mention_all": True})
    assert result.kind == "ok"
    [got] = sim.received("wecom")
    assert got.json["msgtype"] == "text"
    assert got.json["text"]["mentioned_list"] == ["@all"]
    assert ADMIN in got.json["text"]["content"]
    assert len(json.loads(rendered)) == 1  # nothing to fall back to


# --- fallback ---------------------------------------------------------------------------------


def test_rejected_markdown_is_resent_as_text(sim: ChatSim) -> None:
    sim.fail("wecom", "40058")
    [result], _ = deliver({"url": sim.endpoint("wecom")})
    assert result.kind == "ok"
    assert "markdown rejected" in result.detail and "40058" in result.detail
    assert "sent as text" in result.detail
    tried = [a.json["msgtype"] for a in sim.attempts("wecom")]
    assert tried == ["markdown", "text"]
    [got] = sim.received("wecom")
    text = got.json["text"]["content"]
    assert "Order #1001 paid" in text and f"Open: {ADMIN}" in text
    assert not text.startswith("**") and f"]({ADMIN})" not in text


@pytest.mark.parametrize("kind", ["40058", "40008", "44004"])
def test_both_formats_rejected_is_a_dead_message(sim: ChatSim, kind: str) -> None:
    sim.fail("wecom", kind, count=2)
    [result], _ = deliver({"url": sim.endpoint("wecom")})
    assert (result.kind, result.scope) == ("permanent", "message")
    assert "markdown rejected" in result.detail and "text fallback" in result.detail
    assert kind in result.detail
    assert len(sim.attempts("wecom")) == 2


# --- classification ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "expected", "scope", "after"),
    [
        ("45009", "retry", "message", 60.0),
        ("-1", "retry", "message", None),
        ("500", "retry", "message", None),
        ("reset", "retry", "message", None),
        ("93000", "permanent", "channel", None),
    ],
)
def test_failure_classes(
    sim: ChatSim, kind: str, expected: str, scope: str, after: float | None
) -> None:
    sim.fail("wecom", kind)
    [result], _ = deliver({"url": sim.endpoint("wecom")})
    assert (result.kind, result.scope, result.retry_after) == (expected, scope, after)
    assert len(sim.attempts("wecom")) == 1  # no text fallback for these
    assert KEY not in result.detail


def test_wrong_key_holds_the_channel(sim: ChatSim) -> None:
    url = sim.endpoint("wecom").replace(KEY, "not-the-key-42")
    [result], _ = deliver({"url": url})
    assert (result.kind, result.scope) == ("permanent", "channel")
    assert "93000" in result.detail and "invalid or the robot was removed" in result.detail
    assert "copy the robot's webhook URL" in result.detail
    assert "not-the-key-42" not in result.detail


def test_real_rate_limit_waits_a_minute() -> None:
    with ChatSim(clock=lambda: 100.0) as sim:  # every request in the same instant
        results, _ = deliver({"url": sim.endpoint("wecom")}, times=21)
    assert [r.kind for r in results] == ["ok"] * 20 + ["retry"]
    assert results[-1].retry_after == 60.0 and "45009" in results[-1].detail
    assert "20 messages a minute" in results[-1].detail


def test_timeout_is_retried() -> None:
    with ChatSim() as sim:
        sim.fail("wecom", "slow")
        [result], _ = deliver({"url": sim.endpoint("wecom"), "timeout": "200ms"})
    assert result.kind == "retry" and "0.2s" in result.detail


def test_refused_connection_is_retried() -> None:
    sim = ChatSim().start()
    url = sim.endpoint("wecom")
    sim.stop()
    [result], _ = deliver({"url": url})
    assert result.kind == "retry" and "ConnectError" in result.detail


def test_unknown_path_holds_the_channel(sim: ChatSim) -> None:
    [result], _ = deliver({"url": f"{sim.url}/cgi-bin/webhook/sendx?key={KEY}"})
    assert (result.kind, result.scope) == ("permanent", "channel")
    assert "HTTP 404" in result.detail and KEY not in result.detail


@pytest.mark.parametrize(
    ("status", "body", "headers", "kind", "scope", "after"),
    [
        (200, b"<html>captive portal</html>", {}, "permanent", "channel", None),
        (302, b"", {"location": "https://x.example/?key=abc"}, "permanent", "channel", None),
        (429, b"", {"retry-after": "7"}, "retry", "message", 7.0),
        (502, b"bad gateway", {}, "retry", "message", None),
        (400, b"bad", {}, "permanent", "message", None),
        (200, b'{"errcode": 12345, "errmsg": "new"}', {}, "permanent", "message", None),
        (503, b'{"errcode": 12345, "errmsg": "new"}', {}, "retry", "message", None),
        (200, b'{"errcode": "45009", "errmsg": "as a string"}', {}, "retry", "message", 60.0),
    ],
)
def test_answers_the_sim_does_not_give(
    status: int,
    body: bytes,
    headers: dict[str, str],
    kind: str,
    scope: str,
    after: float | None,
) -> None:
    options = {"url": f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY}"}
    [result], _ = deliver(options, transport=answering(status, body, headers))
    assert (result.kind, result.scope, result.retry_after) == (kind, scope, after), result.detail
    assert "qyapi.weixin.qq.com" in result.detail and KEY not in result.detail


def test_details_scrub_an_echoed_key() -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"errcode": 40058, "errmsg": f"bad url {request.url}"})

    options = {"key": KEY}
    [result], _ = deliver(options, transport=httpx.MockTransport(echo))
    assert result.kind == "permanent"
    assert "bad url ****" in result.detail and KEY not in result.detail


def test_key_option_posts_to_the_wecom_host() -> None:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"errcode": 0, "errmsg": "ok"})

    [result], _ = deliver({"key": KEY}, transport=httpx.MockTransport(record))
    assert result.kind == "ok"
    assert str(seen[0].url) == f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY}"
    assert seen[0].headers["content-type"].startswith("application/json")


# --- escaping ---------------------------------------------------------------------------------


def test_hostile_customer_name_is_inert(sim: ChatSim) -> None:
    [result], rendered = deliver({"url": sim.endpoint("wecom")}, sample(name=HOSTILE))
    assert result.kind == "ok"
    markdown, text = (p[p["msgtype"]]["content"] for p in json.loads(rendered))
    customer = next(line for line in markdown.splitlines() if line.startswith("Customer:"))
    for forbidden in ("<", ">", "**", "[x](", "http://evil", "@all", "@everyone", "<@"):
        assert forbidden not in customer, forbidden
    assert "∗∗x∗∗" in customer and "＠all" in customer and "［x］" in customer
    plain = next(line for line in text.splitlines() if line.startswith("Customer:"))
    for forbidden in ("<", ">", "http://evil", "@all", "@everyone"):
        assert forbidden not in plain, forbidden
    assert "j∗∗∗@example.com" in customer  # a masked email keeps its '@'


@pytest.mark.parametrize(
    ("raw", "markdown", "text"),
    [
        ("**bold**", "∗∗bold∗∗", "**bold**"),
        ("<s>x</s>", "＜s＞x＜/s＞", "＜s＞x＜/s＞"),
        ("@all", "＠all", "＠all"),
        ("hi @everyone", "hi ＠everyone", "hi ＠everyone"),
        ("[x](http://evil)", "［x］(http：//evil)", "[x](http：//evil)"),
        ("a_b `c` ~d~ |e| \\f", "a＿b ˋcˋ ～d～ ｜e｜ ＼f", "a_b `c` ~d~ |e| \\f"),
        ("&lt;b&gt;", "＆lt;b＆gt;", "&lt;b&gt;"),
        ("j***@example.com", "j∗∗∗@example.com", "j***@example.com"),
        ("AT&T", "AT&T", "AT&T"),
    ],
)
def test_escapers(raw: str, markdown: str, text: str) -> None:
    assert escape_markdown(raw) == markdown
    assert escape_text(raw) == text


def test_hostile_customer_and_item_reach_the_wire_inert(sim: ChatSim) -> None:
    sim.fail("wecom", "40058")  # the markdown is refused: the text fallback goes on the wire too
    [result], _ = deliver({"url": sim.endpoint("wecom")}, sample(name=CUSTOMER, item_name=ITEM))
    assert result.kind == "ok", result.detail
    markdown, text = (a.json for a in sim.attempts("wecom"))
    md = markdown["markdown"]["content"]
    for forbidden in ("<s>", "<b>", "**x**", "*big*", "@everyone", "[x](", "http://evil"):
        assert forbidden not in md, forbidden
    assert md.count("**") == 2  # pollerd's own bold summary, nothing else
    assert "＜s＞∗∗x∗∗ ＠everyone ［x］(http：//evil)" in md and "1 × ∗big∗ ＜b＞ 0" in md
    plain = text["text"]["content"]
    for forbidden in ("<s>", "<b>", "@everyone", "http://evil"):
        assert forbidden not in plain, forbidden
    assert "＜s＞**x** ＠everyone [x](http：//evil)" in plain  # text renders no markdown


# --- length -----------------------------------------------------------------------------------


def long_event() -> Event:
    return sample(items=30, item_name="超长的商品名称" * 25, name="张" * 150)


def test_long_alert_fits_each_format_and_keeps_the_link(sim: ChatSim) -> None:
    [result], rendered = deliver({"url": sim.endpoint("wecom")}, long_event(), locale="zh-CN")
    assert result.kind == "ok", result.detail
    markdown, text = (p[p["msgtype"]]["content"] for p in json.loads(rendered))
    # one item line is ~600 bytes: the fullest version that fits is at most one item short
    assert utf8_len(markdown) <= MARKDOWN_BYTES < utf8_len(markdown) + 700
    assert utf8_len(text) <= TEXT_BYTES
    for body in (markdown, text):
        assert "订单 #1001 已付款" in body.splitlines()[0]
        assert ADMIN in body.splitlines()[-1]
        assert "…（另有 " in body
    shown = sum("× 超长的商品名称" in line for line in markdown.splitlines())
    more = next(line for line in markdown.splitlines() if line.startswith("…（另有 "))
    assert more == f"…（另有 {30 - shown} 项）"
    assert sim.received("wecom")[0].json["msgtype"] == "markdown"  # one message, not split


def test_text_fallback_of_a_long_alert_is_accepted(sim: ChatSim) -> None:
    sim.fail("wecom", "40058")
    [result], _ = deliver({"url": sim.endpoint("wecom")}, long_event(), locale="zh-CN")
    assert result.kind == "ok"
    [got] = sim.received("wecom")
    assert got.json["msgtype"] == "text" and ADMIN in got.json["text"]["content"]


def test_300_items_are_shortened_into_one_message(sim: ChatSim) -> None:
    event = sample(items=300, item_name="手工上釉陶瓷马克杯" * 15)  # ~400 bytes an item line
    [result], rendered = deliver({"url": sim.endpoint("wecom")}, event)
    assert result.kind == "ok", result.detail
    [got] = sim.received("wecom")  # ONE message
    for payload, limit in zip(json.loads(rendered), (MARKDOWN_BYTES, TEXT_BYTES), strict=True):
        lines = payload[payload["msgtype"]]["content"].splitlines()
        assert utf8_len("\n".join(lines)) <= limit
        shown = sum(" × 手工上釉" in line for line in lines)
        assert 0 < shown < 10  # fewer than the ten an alert shows at most: cut to fit
        assert lines[-2] == f"… (+{300 - shown} items)" and ADMIN in lines[-1]
    assert got.json == json.loads(rendered)[0]


def test_items_go_before_the_summary_is_touched(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lowering the limit: first fewer items, then the brief form (summary, "… (+N items)",
    link), and the link is kept to the end."""
    full = json.loads(WeComChannel(_offline()).render(sample(items=5)))[0]["markdown"]["content"]
    monkeypatch.setattr(wecom, "MARKDOWN_BYTES", utf8_len(full) - 1)
    fewer = json.loads(WeComChannel(_offline()).render(sample(items=5)))[0]["markdown"]["content"]
    assert fewer.splitlines()[0] == full.splitlines()[0]
    kept = sum(line.startswith("1 × Mug") for line in fewer.splitlines())
    assert 2 <= kept < 5 and f"… (+{5 - kept} item" in fewer  # "item" or "items"
    monkeypatch.setattr(wecom, "MARKDOWN_BYTES", 260)
    brief = json.loads(WeComChannel(_offline()).render(sample(items=5)))[0]["markdown"]["content"]
    assert utf8_len(brief) <= 260 and "Total:" not in brief and "1 × Mug" not in brief
    assert "… (+5 items)" in brief and brief.endswith(f"({ADMIN})")


def _offline() -> ChannelContext:
    unused = cast(httpx.AsyncClient, None)  # rendering never touches the network
    return ChannelContext("group", {"key": KEY}, unused)


# --- options ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({}, "missing: set url"),
        ({"url": f"https://qyapi.weixin.qq.com/x?key={KEY}", "key": KEY}, "not both"),
        ({"url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"}, "no key="),
        ({"url": f"ftp://qyapi.weixin.qq.com/?key={KEY}"}, "webhook URL"),
        ({"key": f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY}"}, "like a URL"),
        ({"key": "two words"}, "whitespace"),
        ({"key": KEY, "timeout": "soon"}, "not a duration"),
        ({"key": KEY, "keyword": "x"}, "Extra inputs"),
    ],
)
def test_options_are_validated(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError) as caught:
        WeComChannel.Options.model_validate(options)
    assert problem in _messages(caught.value)
    assert KEY not in _messages(caught.value)


def _messages(error: ValidationError) -> str:
    """What the config report shows: the messages, not pydantic's echo of the input."""
    return " ".join(e["msg"] for e in error.errors(include_input=False))


def test_secrets_do_not_print() -> None:
    options = WeComChannel.Options.model_validate({"url": f"https://h.example/s?key={KEY}"})
    assert KEY not in repr(options) and KEY not in str(options)
    assert options.mention_all is False and options.timeout.total_seconds() == 10
