"""`slack` channel against `ChatSim`'s incoming webhook: success, every refusal it has, escaping
of attacker-chosen order text, the 3000-character section limit, and secrets kept out of details.
Answers the simulator cannot give (a 2xx that is not `ok`, a redirect) are fed to the classifier
as plain `httpx.Response`s."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from pollerd.channels.base import ChannelContext, SendResult
from pollerd.channels.slack import SECTION_LIMIT, SlackChannel, escape
from pollerd.model import Event, LineItem, Order
from pollerd.sim.chat import ChatSim

AT = datetime(2026, 11, 22, 9, 32, 36, tzinfo=UTC)
ADMIN = "https://shop.example/wp-admin/post.php?post=1001&action=edit"
HOSTILE = "<s>** @everyone @here [x](http://evil) <!channel> <@U0001|boss> & co"
HOOK_PATH = "/services/T000/B000/XXXX"


def sample(name: str = "Jane D.", items: int = 2, item_name: str = "Mug", **extra: Any) -> Event:
    order = Order(
        store="acme",
        platform="woocommerce",
        id="1001",
        number="1001",
        status="processing",
        created_at=AT,
        updated_at=AT,
        total="25.00",
        currency="EUR",
        customer_name=name,
        line_items=tuple(LineItem(f"{item_name} {i}", 1, "1.00") for i in range(items)),
        **{"admin_url": ADMIN, **extra},
    )
    return Event("order.paid", "acme", "woocommerce", "1001", AT, AT, False, order.to_json())


def channel(http: httpx.AsyncClient, url: str, **options: Any) -> SlackChannel:
    return SlackChannel(ChannelContext("ops-slack", {"url": url, **options}, http))


def deliver(
    url: str, event: Event | None = None, *, times: int = 1, **options: Any
) -> list[SendResult]:
    """Render once, send `times` times through one shared client, like the outbox does."""
    event = event or sample()

    async def go() -> list[SendResult]:
        async with httpx.AsyncClient() as http:
            ch = channel(http, url, **options)
            rendered = ch.render(event)
            return [await ch.send(event, rendered) for _ in range(times)]

    return asyncio.run(go())


def rendered(event: Event) -> dict[str, Any]:
    async def go() -> str:
        async with httpx.AsyncClient() as http:
            return channel(http, "https://hooks.slack.com" + HOOK_PATH).render(event)

    payload: dict[str, Any] = json.loads(asyncio.run(go()))
    return payload


def texts(payload: dict[str, Any]) -> list[str]:
    return [payload["text"], *(block["text"]["text"] for block in payload["blocks"])]


@pytest.fixture
def sim() -> Iterator[ChatSim]:
    with ChatSim(enforce_rate_limits=False) as server:
        yield server


def test_ok_posts_blocks_with_summary_details_and_link(sim: ChatSim) -> None:
    [result] = deliver(sim.endpoint("slack"))
    assert result.kind == "ok", result.detail
    [got] = sim.received("slack")
    assert got.headers["content-type"].startswith("application/json")
    payload = got.json
    assert payload["unfurl_links"] is False and payload["unfurl_media"] is False
    assert "Order #1001 paid" in payload["text"] and "25.00 EUR" in payload["text"]
    head, lines, link = (block["text"] for block in payload["blocks"])
    assert head["type"] == "mrkdwn" and head["text"].startswith("*[acme] Order #1001 paid")
    assert "1 × Mug 0\n1 × Mug 1" in lines["text"]
    assert link["text"] == f"Open: <{ADMIN.replace('&', '&amp;')}>"


def test_resend_is_byte_identical(sim: ChatSim) -> None:
    sim.fail("slack", "500")
    first, second = deliver(sim.endpoint("slack"), times=2)
    assert (first.kind, second.kind) == ("retry", "ok")
    one, two = sim.attempts("slack")
    assert one.body == two.body


def test_hostile_order_text_is_inert() -> None:
    payload = rendered(sample(name=HOSTILE, item_name=HOSTILE))
    for text in texts(payload)[:-1]:  # the link block holds the one `<…>` that is ours
        assert "<" not in text and ">" not in text, text
    joined = "\n".join(texts(payload))
    assert (
        "&lt;s&gt;" in joined and "&lt;!channel&gt;" in joined and "&lt;@U0001|boss&gt;" in joined
    )
    assert "&amp; co" in joined
    assert not re.search(r"@(everyone|here|channel)\b", joined)
    assert "@\u2060everyone" in joined and "@\u2060here" in joined


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("<s>", "&lt;s&gt;"),
        ("a & b", "a &amp; b"),
        ("&lt;", "&amp;lt;"),  # already-escaped text stays what it was
        ("<!here>", "&lt;!here&gt;"),
        ("@channel @Here x@everyone", "@\u2060channel @\u2060Here x@\u2060everyone"),
        ("ops@example.com @channels", "ops@example.com @channels"),
        ("**bold** [x](http://evil)", "**bold** [x](http://evil)"),  # no meaning in mrkdwn
    ],
)
def test_escape(raw: str, safe: str) -> None:
    assert escape(raw) == safe


def test_link_cannot_be_split_or_relabelled() -> None:
    event = sample(admin_url="https://shop.example/o?a=1&b=2|Click here>x")
    link = rendered(event)["blocks"][-1]["text"]["text"]
    assert link == "Open: <https://shop.example/o?a=1&amp;b=2%7CClick%20here%3Ex>"


def test_javascript_admin_url_is_not_a_link() -> None:
    payload = rendered(sample(admin_url="javascript:alert(1)"))
    assert len(payload["blocks"]) == 2 and "javascript" not in json.dumps(payload)


def test_many_long_items_fit_the_section_limit(sim: ChatSim) -> None:
    event = sample(items=25, item_name="&" * 190)  # each escapes to ~960 characters
    payload = rendered(event)
    lines = payload["blocks"][1]["text"]["text"]
    assert len(lines) <= SECTION_LIMIT
    shown = lines.count("× ")
    assert 0 < shown < 10 and lines.endswith(f"… (+{25 - shown} items)")
    assert payload["blocks"][-1]["text"]["text"].startswith("Open: <https://shop.example/")
    [result] = deliver(sim.endpoint("slack"), event)
    assert result.kind == "ok"


def test_items_beyond_the_template_limit_keep_its_count() -> None:
    lines = rendered(sample(items=12))["blocks"][1]["text"]["text"]
    assert lines.count("× ") == 10 and lines.endswith("… and 2 more")


def test_chinese_marker() -> None:
    async def go() -> str:
        async with httpx.AsyncClient() as http:
            ctx = ChannelContext("s", {"url": "https://hooks.slack.com/x"}, http, locale="zh-CN")
            return SlackChannel(ctx).render(sample(items=25, item_name="&" * 190))

    lines = json.loads(asyncio.run(go()))["blocks"][1]["text"]["text"]
    assert re.search(r"…（另有 \d+ 项）$", lines)


@pytest.mark.parametrize(
    ("fault", "kind", "scope"),
    [
        ("invalid_payload", "permanent", "message"),
        ("no_text", "permanent", "message"),
        ("channel_not_found", "permanent", "channel"),
        ("channel_is_archived", "permanent", "channel"),
        ("action_prohibited", "permanent", "channel"),
        ("no_service", "permanent", "channel"),
        ("500", "retry", "message"),
        ("reset", "retry", "message"),
    ],
)
def test_refusals(sim: ChatSim, fault: str, kind: str, scope: str) -> None:
    sim.fail("slack", fault)
    [result] = deliver(sim.endpoint("slack"))
    assert (result.kind, result.scope) == (kind, scope), result.detail
    if fault not in ("500", "reset"):
        assert fault in result.detail
    assert not sim.received("slack")


def test_429_honours_retry_after(sim: ChatSim) -> None:
    sim.fail("slack", "429", retry_after=7)
    [result] = deliver(sim.endpoint("slack"))
    assert result.kind == "retry" and result.retry_after == 7.0 and "429" in result.detail


def test_real_rate_limit_is_retried() -> None:
    with ChatSim(clock=lambda: 100.0) as sim:  # Slack: 1 message per second per hook
        first, second = deliver(sim.endpoint("slack"), times=2)
    assert first.kind == "ok"
    assert second.kind == "retry" and second.retry_after == 1.0


def test_unknown_hook_holds_the_channel(sim: ChatSim) -> None:
    [result] = deliver(sim.url + "/services/T000/B000/WRONG")
    assert (result.kind, result.scope) == ("permanent", "channel")
    assert "no_service" in result.detail and "WRONG" not in result.detail


def test_timeout_is_retried(sim: ChatSim) -> None:
    sim.fail("slack", "slow")
    [result] = deliver(sim.endpoint("slack"), timeout="200ms")
    assert result.kind == "retry" and "no answer after 0.2s" in result.detail


def test_refused_connection_is_retried() -> None:
    with ChatSim() as sim:
        url = sim.endpoint("slack")
    [result] = deliver(url)
    assert result.kind == "retry" and "ConnectError" in result.detail


@pytest.mark.parametrize(
    ("status", "body", "kind", "scope"),
    [
        (200, "ok", "ok", "message"),
        (200, '{"ok": true}', "ok", "message"),
        (200, "<html>captive portal</html>", "permanent", "channel"),
        (204, "", "permanent", "channel"),
        (302, "", "permanent", "channel"),
        (401, "invalid_token", "permanent", "channel"),
        (403, "team_disabled", "permanent", "channel"),
        (400, "channel_not_found", "permanent", "channel"),  # the code decides, not the status
        (404, "invalid_payload", "permanent", "message"),
        (400, "something_new", "permanent", "message"),
        (413, "", "permanent", "message"),
        (408, "", "retry", "message"),
        (503, "<html>down</html>", "retry", "message"),
    ],
)
def test_classification(status: int, body: str, kind: str, scope: str) -> None:
    ch = SlackChannel(ChannelContext("s", {"url": "https://hooks.slack.com" + HOOK_PATH}, None))  # type: ignore[arg-type]
    result = ch._classify(httpx.Response(status, text=body))
    assert (result.kind, result.scope) == (kind, scope), result.detail


def test_details_and_repr_never_show_the_hook(sim: ChatSim) -> None:
    url = sim.endpoint("slack")
    results = []
    for fault in ("invalid_payload", "channel_is_archived", "429", "500", "reset"):
        sim.fail("slack", fault)
        results += deliver(url)
    ch = SlackChannel(ChannelContext("s", {"url": url}, None))  # type: ignore[arg-type]
    echo = ch._classify(httpx.Response(400, text=f"bad request to {url} ({HOOK_PATH})"))
    for result in [*results, echo]:
        assert "XXXX" not in result.detail and "B000" not in result.detail, result.detail
        assert "slack http://127.0.0.1:" in result.detail
    for shown in (repr(ch.options), str(ch.options), repr(ch), repr(ch.options.model_dump())):
        assert "XXXX" not in shown and HOOK_PATH not in shown


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"url": "ftp://hooks.slack.com/services/SECRETPATH"}, "incoming webhook URL"),
        ({"url": "hooks.slack.com/services/SECRETPATH"}, "incoming webhook URL"),
        ({"url": "https://hooks.slack.com/x", "channel": "#ops"}, "Extra inputs"),
    ],
)
def test_bad_options(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError) as caught:
        SlackChannel.Options.model_validate(options)
    assert problem in str(caught.value)
    assert "SECRETPATH" not in str(caught.value)
