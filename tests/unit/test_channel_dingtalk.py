"""`dingtalk` channel against `ChatSim`'s DingTalk robot (real HTTP on loopback): markdown from
the `dingtalk` templates with a title, the `text` fallback, signing, keyword, escaping, fitting;
gateway answers the simulator does not give come from an `httpx.MockTransport`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus

import httpx
import pytest
from pydantic import ValidationError

from pollerd.channels import dingtalk
from pollerd.channels.base import ChannelContext, SendResult
from pollerd.channels.dingtalk import TEXT_BYTES, DingTalkChannel, sign
from pollerd.channels.robot import utf8_len
from pollerd.model import Event
from pollerd_sim.chat import ChatSim
from pollerd_sim.testing.events import CUSTOMER, ITEM, line_items, paid_event
from pollerd_sim.testing.sending import send_events

TOKEN = "ding-token-0001"
SECRET = "SECding0001"
AT = datetime(2026, 11, 22, 9, 32, 36, tzinfo=UTC)
ADMIN = "https://acme.example.com/wp-admin/post.php?post=1001&action=edit"
HOSTILE = '<s>**x**</s> @all @everyone [x](http://evil) <font color="info">'
# The common brief's hostile customer and item: they must reach the wire inert.


def sample(name: str = "Jane D.", items: int = 2, item_name: str = "Mug") -> Event:
    return paid_event(
        name, items=line_items(items, item_name), email="j***@example.com", admin_url=ADMIN
    )


def long_event() -> Event:
    return sample(items=30, item_name="超长的商品名称" * 25, name="张" * 150)


def deliver(
    options: dict[str, Any],
    event: Event | None = None,
    *,
    times: int = 1,
    locale: str = "en",
    clock: Callable[[], float] | None = None,
    transport: httpx.MockTransport | None = None,
) -> tuple[list[SendResult], str]:
    def make(http: httpx.AsyncClient) -> DingTalkChannel:
        channel = DingTalkChannel(ChannelContext("ops", options, http, locale=locale))
        if clock is not None:
            channel.clock = clock
        return channel

    sent = send_events(make, [event or sample()], times=times, transport=transport)
    return sent.results, sent.rendered[0]


@pytest.fixture(scope="module")
def server() -> Iterator[ChatSim]:
    with ChatSim() as sim:
        yield sim


@pytest.fixture
def sim(server: ChatSim) -> ChatSim:
    server.clear()
    return server


def signed(sim: ChatSim, **more: Any) -> dict[str, Any]:
    return {"url": sim.endpoint("dingtalk"), "secret": SECRET, **more}


# --- signing ----------------------------------------------------------------------------------


def test_research_vector() -> None:
    """research §4.2: secret `this is secret`, 1700000000000 ms → this URL-encoded sign."""
    expected = "sSFWELbV2YwjdDQhWZwTcWlX5BWUx5J6TPpsZmuPii0%3D"
    assert quote_plus(sign("this is secret", 1700000000000)) == expected


def test_signed_markdown_is_accepted(sim: ChatSim) -> None:
    [result], _ = deliver(signed(sim))
    assert result.kind == "ok", result.detail
    [got] = sim.received("dingtalk")
    stamp = int(got.query["timestamp"])
    assert got.query["sign"] == sign(SECRET, stamp)
    assert got.query["access_token"] == TOKEN
    assert got.json["msgtype"] == "markdown"
    assert got.json["markdown"]["title"].startswith("[acme] Order #1001 paid")
    text = got.json["markdown"]["text"]
    assert text.startswith("**") and f"[{ADMIN}]({ADMIN})" in text
    assert "\n\nTotal: €25.00\n\n" in text
    assert "at" not in got.json


def test_timestamp_is_milliseconds_taken_at_each_attempt() -> None:
    now = [1_700_000_000.0]
    with ChatSim(wall_clock=lambda: now[0]) as sim:

        def clock() -> float:
            now[0] += 1.5
            return now[0]

        deliver(signed(sim), times=2, clock=clock)
        stamps = [r.query["timestamp"] for r in sim.received("dingtalk")]
        first, second = (r.json for r in sim.received("dingtalk"))
    assert stamps == ["1700000001500", "1700000003000"]
    assert first == second  # the stored body is resent as is; only the query is new


def test_sign_is_url_encoded_on_the_wire() -> None:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"errcode": 0, "errmsg": "ok"})

    options = {"token": TOKEN, "secret": "SECthis"}
    deliver(options, clock=lambda: 1_700_000_000.0, transport=httpx.MockTransport(record))
    query = seen[0].url.query.decode()
    expected = quote_plus(sign("SECthis", 1700000000000))
    assert query == f"access_token={TOKEN}&timestamp=1700000000000&sign={expected}"
    assert str(seen[0].url).startswith("https://oapi.dingtalk.com/robot/send?")


def test_unsigned_robot_gets_no_signature() -> None:
    with ChatSim(dingtalk_secret=None) as sim:
        [result], _ = deliver({"url": sim.endpoint("dingtalk")})
        [got] = sim.received("dingtalk")
    assert result.kind == "ok"
    assert set(got.query) == {"access_token"}


# --- keyword, mentions, escaping --------------------------------------------------------------


def test_keyword_is_appended_when_missing() -> None:
    with ChatSim(dingtalk_keyword="订单") as sim:
        [result], _ = deliver(signed(sim, keyword="订单"))
        [got] = sim.received("dingtalk")
    assert result.kind == "ok", result.detail
    assert got.json["markdown"]["text"].endswith("\n\n订单")


def test_keyword_is_in_the_text_fallback_too() -> None:
    with ChatSim(dingtalk_keyword="订单") as sim:
        sim.fail("dingtalk", "400402")
        [result], rendered = deliver(signed(sim, keyword="订单"))
        [got] = sim.received("dingtalk")
    assert result.kind == "ok", result.detail
    assert got.json["msgtype"] == "text" and got.json["text"]["content"].endswith("\n订单")
    assert got.json == json.loads(rendered)[1]


def test_keyword_already_in_the_text_is_not_repeated() -> None:
    with ChatSim(dingtalk_keyword="订单") as sim:
        [result], _ = deliver(signed(sim, keyword="订单"), locale="zh-CN")
        [got] = sim.received("dingtalk")
    assert result.kind == "ok"
    text = got.json["markdown"]["text"]
    assert "订单 #1001 已付款" in text and not text.endswith("\n\n订单")


def test_missing_keyword_holds_the_channel() -> None:
    with ChatSim(dingtalk_keyword="订单") as sim:
        [result], _ = deliver(signed(sim))
    assert (result.kind, result.scope) == ("permanent", "channel")
    assert "310000" in result.detail and "custom keywords" in result.detail
    assert "set keyword" in result.detail


def test_keyword_survives_truncation() -> None:
    with ChatSim(dingtalk_keyword="pollerd-alert") as sim:
        [result], rendered = deliver(signed(sim, keyword="pollerd-alert"), long_event())
    assert result.kind == "ok"
    markdown, text = json.loads(rendered)
    assert utf8_len(markdown["markdown"]["text"]) <= TEXT_BYTES
    assert markdown["markdown"]["text"].endswith("\n\npollerd-alert")
    assert text["text"]["content"].endswith("\npollerd-alert")


def test_keyword_is_counted_in_the_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """A keyword appended after fitting could push the message over the limit: it is part
    of what is measured."""
    monkeypatch.setattr(dingtalk, "TEXT_BYTES", 1200)
    keyword = "关键词" * 40  # 360 bytes
    with ChatSim(dingtalk_keyword=keyword) as sim:
        [result], rendered = deliver(signed(sim, keyword=keyword), long_event())
    assert result.kind == "ok", result.detail
    for payload in json.loads(rendered):
        part = payload[payload["msgtype"]]
        assert utf8_len(json.dumps(part, ensure_ascii=False)) <= 1200
        body = part.get("text") or part["content"]
        assert body.endswith(keyword) and ADMIN in body


def test_mention_all_sets_is_at_all(sim: ChatSim) -> None:
    [result], rendered = deliver(signed(sim, mention_all=True))
    assert result.kind == "ok"
    markdown, text = json.loads(rendered)
    assert markdown["at"] == text["at"] == {"isAtAll": True}
    assert sim.received("dingtalk")[0].json == markdown


def test_hostile_customer_name_is_inert(sim: ChatSim) -> None:
    [result], _ = deliver(signed(sim), sample(name=HOSTILE))
    assert result.kind == "ok"
    got = sim.received("dingtalk")[0].json["markdown"]
    customer = next(p for p in got["text"].split("\n\n") if p.startswith("Customer:"))
    for forbidden in ("<", ">", "**", "[x](", "http://evil", "@all", "@everyone"):
        assert forbidden not in customer, forbidden
    assert "<" not in got["title"] and "@all" not in got["title"]


def test_hostile_customer_and_item_reach_the_wire_inert(sim: ChatSim) -> None:
    sim.fail("dingtalk", "400402")  # the markdown is refused: the text fallback goes out too
    [result], _ = deliver(signed(sim), sample(name=CUSTOMER, item_name=ITEM))
    assert result.kind == "ok", result.detail
    markdown, text = (a.json for a in sim.attempts("dingtalk"))
    md = markdown["markdown"]["text"]
    for forbidden in ("<s>", "<b>", "**x**", "*big*", "@everyone", "[x](", "http://evil"):
        assert forbidden not in md, forbidden
    assert md.count("**") == 2  # pollerd's own bold summary, nothing else
    assert "＜s＞∗∗x∗∗ ＠everyone ［x］(http：//evil)" in md and "1 × ∗big∗ ＜b＞ 0" in md
    plain = text["text"]["content"]
    for forbidden in ("<s>", "<b>", "@everyone", "http://evil"):
        assert forbidden not in plain, forbidden
    title = markdown["markdown"]["title"]
    assert "<" not in title and "@everyone" not in title


def test_rejected_markdown_is_resent_as_text(sim: ChatSim) -> None:
    sim.fail("dingtalk", "400402")
    [result], _ = deliver(signed(sim))
    assert result.kind == "ok", result.detail
    assert "markdown rejected" in result.detail and "400402" in result.detail
    assert "sent as text" in result.detail
    assert [a.json["msgtype"] for a in sim.attempts("dingtalk")] == ["markdown", "text"]
    text = sim.received("dingtalk")[0].json["text"]["content"]
    assert text.startswith("[acme] Order #1001 paid") and text.endswith(f"Open: {ADMIN}")
    assert not text.startswith("**") and f"]({ADMIN})" not in text


@pytest.mark.parametrize("kind", ["400402", "460101", "400"])
def test_both_formats_rejected_is_a_dead_message(sim: ChatSim, kind: str) -> None:
    sim.fail("dingtalk", kind, count=2)
    [result], _ = deliver(signed(sim))
    assert (result.kind, result.scope) == ("permanent", "message")
    assert "markdown rejected" in result.detail and "text fallback" in result.detail
    assert len(sim.attempts("dingtalk")) == 2
    assert TOKEN not in result.detail and SECRET not in result.detail


def test_long_alert_fits_and_keeps_the_link(sim: ChatSim) -> None:
    [result], rendered = deliver(signed(sim), long_event(), locale="zh-CN")
    assert result.kind == "ok", result.detail
    text = json.loads(rendered)[0]["markdown"]["text"]
    assert utf8_len(text) <= TEXT_BYTES and ADMIN in text.split("\n\n")[-1]


def test_300_items_are_shortened_into_one_message(
    sim: ChatSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten items of ~400 bytes fit DingTalk's ~20 000 bytes, so the limit is lowered to make
    the fitting visible: fewer items, "… (+N items)", the link kept, one message."""
    monkeypatch.setattr(dingtalk, "TEXT_BYTES", 3000)
    event = sample(items=300, item_name="手工上釉陶瓷马克杯" * 15)
    [result], rendered = deliver(signed(sim), event)
    assert result.kind == "ok", result.detail
    [got] = sim.received("dingtalk")  # ONE message
    markdown, text = json.loads(rendered)
    assert got.json == markdown
    for lines in (markdown["markdown"]["text"].split("\n\n"), text["text"]["content"].split("\n")):
        shown = sum(" × 手工上釉" in line for line in lines)
        assert 0 < shown < 10
        assert lines[-2] == f"… (+{300 - shown} items)" and ADMIN in lines[-1]
    for payload in (markdown, text):
        part = payload[payload["msgtype"]]
        assert utf8_len(json.dumps(part, ensure_ascii=False)) <= 3000


def test_300_items_at_the_real_limit_show_ten(sim: ChatSim) -> None:
    [result], rendered = deliver(signed(sim), sample(items=300), locale="zh-CN")
    assert result.kind == "ok", result.detail
    paragraphs = json.loads(rendered)[0]["markdown"]["text"].split("\n\n")
    assert sum(p.startswith("1 × Mug") for p in paragraphs) == 10
    assert paragraphs[-2] == "…（另有 290 项）" and ADMIN in paragraphs[-1]


# --- classification ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "expected", "scope", "after"),
    [
        ("130101", "retry", "message", 600.0),
        ("500", "retry", "message", None),
        ("reset", "retry", "message", None),
        ("310000", "permanent", "channel", None),
        ("300001", "permanent", "channel", None),
    ],
)
def test_failure_classes(
    sim: ChatSim, kind: str, expected: str, scope: str, after: float | None
) -> None:
    sim.fail("dingtalk", kind)
    [result], _ = deliver(signed(sim))
    assert (result.kind, result.scope, result.retry_after) == (expected, scope, after)
    assert len(sim.attempts("dingtalk")) == 1  # not a payload problem: no text fallback
    assert TOKEN not in result.detail and SECRET not in result.detail


def test_wrong_secret_holds_the_channel(sim: ChatSim) -> None:
    [result], _ = deliver(signed(sim, secret="SECwrong"))
    assert (result.kind, result.scope) == ("permanent", "channel")
    assert "signature does not match" in result.detail and "加签" in result.detail
    assert "SECwrong" not in result.detail


def test_unsigned_channel_for_a_signing_robot_holds_the_channel(sim: ChatSim) -> None:
    [result], _ = deliver({"url": sim.endpoint("dingtalk")})
    assert (result.kind, result.scope) == ("permanent", "channel")
    assert "310000" in result.detail and "has no secret" in result.detail


def test_clock_skew_is_retried_with_a_hint(sim: ChatSim) -> None:
    [result], _ = deliver(signed(sim), clock=lambda: 1_000_000_000.0)  # 2001
    assert result.kind == "retry" and result.retry_after == 60.0
    assert "clock" in result.detail and "NTP" in result.detail


def test_wrong_token_holds_the_channel(sim: ChatSim) -> None:
    url = sim.endpoint("dingtalk").replace(TOKEN, "ding-token-9999")
    [result], _ = deliver({"url": url, "secret": SECRET})
    assert (result.kind, result.scope) == ("permanent", "channel")
    assert "300001" in result.detail and "access token does not exist" in result.detail
    assert "ding-token-9999" not in result.detail


def test_real_rate_limit_waits_out_the_penalty() -> None:
    with ChatSim(clock=lambda: 50.0) as sim:
        results, _ = deliver(signed(sim), times=21)
    assert [r.kind for r in results] == ["ok"] * 20 + ["retry"]
    assert results[-1].retry_after == 600.0 and "10 minutes" in results[-1].detail


def test_timeout_is_retried() -> None:
    with ChatSim() as sim:
        sim.fail("dingtalk", "slow")
        [result], _ = deliver(signed(sim, timeout="200ms"))
    assert result.kind == "retry" and "0.2s" in result.detail


@pytest.mark.parametrize(
    ("status", "body", "headers", "kind", "scope", "after"),
    [
        (429, {"errcode": 130101, "errmsg": "send too fast"}, {"retry-after": "30"}, "retry",
         "message", 600.0),
        (500, {"errcode": 130101, "errmsg": "send too fast"}, {}, "retry", "message", 600.0),
        (200, {"errcode": 310000, "errmsg": "ip 203.0.113.9 not in whitelist"}, {}, "permanent",
         "channel", None),
        (200, {"errcode": 310000, "errmsg": "keywords not in content"}, {}, "permanent",
         "channel", None),
        (200, {"errcode": 300005, "errmsg": "token is not exist"}, {}, "permanent", "channel",
         None),
        (200, {"errcode": 43004, "errmsg": "bad header"}, {}, "permanent", "message", None),
    ],
)  # fmt: skip
def test_gateway_answers(
    status: int,
    body: dict[str, Any],
    headers: dict[str, str],
    kind: str,
    scope: str,
    after: float | None,
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body, headers=headers)

    [result], _ = deliver({"token": TOKEN}, transport=httpx.MockTransport(answer))
    assert (result.kind, result.scope, result.retry_after) == (kind, scope, after), result.detail


def test_ip_allow_list_detail_names_the_fix() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"errcode": 310000, "errmsg": "ip 1.2.3.4 not in whitelist"}
        )

    [result], _ = deliver({"token": TOKEN}, transport=httpx.MockTransport(answer))
    assert "IP allow-list" in result.detail and "1.2.3.4" in result.detail


def test_details_scrub_echoed_credentials() -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"errcode": 40035, "errmsg": f"bad {request.url}"})

    [result], _ = deliver({"token": TOKEN, "secret": SECRET}, transport=httpx.MockTransport(echo))
    assert result.kind == "permanent"
    assert TOKEN not in result.detail and SECRET not in result.detail


# --- options ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({}, "missing: set url"),
        ({"token": TOKEN, "url": f"https://oapi.dingtalk.com/robot/send?access_token={TOKEN}"},
         "not both"),
        ({"url": "https://oapi.dingtalk.com/robot/send"}, "no access_token="),
        ({"token": f"https://oapi.dingtalk.com/robot/send?access_token={TOKEN}"}, "like a URL"),
        ({"token": TOKEN, "secret": "ding0001"}, "start with SEC"),
        ({"token": TOKEN, "keyword": "  "}, "one of the robot's keywords"),
        ({"token": TOKEN, "keyword": "a\nb"}, "one line"),
        ({"token": TOKEN, "mention": True}, "Extra inputs"),
    ],
)  # fmt: skip
def test_options_are_validated(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError) as caught:
        DingTalkChannel.Options.model_validate(options)
    messages = " ".join(e["msg"] for e in caught.value.errors(include_input=False))
    assert problem in messages
    assert TOKEN not in messages and "ding0001" not in messages


def test_secrets_do_not_print() -> None:
    options = DingTalkChannel.Options.model_validate({"token": TOKEN, "secret": SECRET})
    assert TOKEN not in repr(options) and SECRET not in repr(options)
    assert options.keyword is None and options.mention_all is False
