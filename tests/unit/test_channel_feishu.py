"""`feishu` and `lark` channels against `ChatSim`'s Feishu bot (real HTTP on loopback): an
interactive card from the `feishu` templates, the `text` fallback, signing, keyword, escaping,
fitting to the 20 KB body; the older success shape and a few other answers come from an
`httpx.MockTransport`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, cast

import httpx
import pytest
from pydantic import ValidationError

from pollerd.channels import feishu
from pollerd.channels.base import ChannelContext, SendResult
from pollerd.channels.feishu import FeishuChannel, LarkChannel, sign
from pollerd.channels.robot import utf8_len
from pollerd.model import Event
from pollerd_sim.chat import ChatSim
from pollerd_sim.testing.events import CUSTOMER, ITEM, line_items, paid_event
from pollerd_sim.testing.sending import send_events

HOOK = "feishu-hook-0001"
SECRET = "feishu-secret-0001"
AT = datetime(2026, 11, 22, 9, 32, 36, tzinfo=UTC)
ADMIN = "https://acme.example.com/wp-admin/post.php?post=1001&action=edit"
HOSTILE = '<at user_id="all">x</at> <s>**x**</s> @all @everyone [x](http://evil)'
# The common brief's hostile customer and item: they must reach the wire inert.


def sample(name: str = "Jane D.", items: int = 2, item_name: str = "Mug") -> Event:
    return paid_event(
        name, items=line_items(items, item_name), email="j***@example.com", admin_url=ADMIN
    )


def deliver(
    options: dict[str, Any],
    event: Event | None = None,
    *,
    cls: type[FeishuChannel] = FeishuChannel,
    times: int = 1,
    locale: str = "en",
    clock: Callable[[], float] | None = None,
    transport: httpx.MockTransport | None = None,
) -> tuple[list[SendResult], str]:
    def make(http: httpx.AsyncClient) -> FeishuChannel:
        channel = cls(ChannelContext("ops", options, http, locale=locale))
        if clock is not None:
            channel.clock = clock
        return channel

    sent = send_events(make, [event or sample()], times=times, transport=transport)
    return sent.results, sent.rendered[0]


def ok_transport(seen: list[httpx.Request], body: dict[str, Any] | None = None) -> Any:
    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=body if body is not None else {"code": 0, "msg": "ok"})

    return httpx.MockTransport(record)


@pytest.fixture(scope="module")
def server() -> Iterator[ChatSim]:
    with ChatSim() as sim:
        yield sim


@pytest.fixture
def sim(server: ChatSim) -> ChatSim:
    server.clear()
    return server


def signed(sim: ChatSim, **more: Any) -> dict[str, Any]:
    return {"url": sim.endpoint("feishu"), "secret": SECRET, **more}


def lines(card: dict[str, Any]) -> list[str]:
    """The lines of the card's lark_md block (the alert's body)."""
    first = card["card"]["elements"][0]["text"]
    assert first["tag"] == "lark_md"
    return str(first["content"]).split("\n")


def header(card: dict[str, Any]) -> str:
    title = card["card"]["header"]["title"]
    assert title["tag"] == "plain_text"
    return str(title["content"])


# --- signing ----------------------------------------------------------------------------------


def test_research_vector() -> None:
    """research §4.3: secret `this is secret`, 1700000000 s → this sign (key/message swapped
    relative to DingTalk, seconds not milliseconds)."""
    assert sign("this is secret", 1700000000) == "OfGzRzoUICBOoc8wVra1e4A1hPfbZ9zqXozA8CWVUuY="


def test_signed_card_is_accepted(sim: ChatSim) -> None:
    [result], _ = deliver(signed(sim))
    assert result.kind == "ok", result.detail
    [got] = sim.received("feishu")
    assert got.json["sign"] == sign(SECRET, int(got.json["timestamp"]))
    assert isinstance(got.json["timestamp"], str) and len(got.json["timestamp"]) == 10
    assert got.json["msg_type"] == "interactive"
    assert header(got.json).startswith("[acme] Order #1001 paid · €25.00 · j***@example.com")
    body = lines(got.json)
    assert body[0] == "Total: €25.00" and body[-1] == f"Open: [{ADMIN}]({ADMIN})"
    assert "1 × Mug 0" in body and "1 × Mug 1" in body


def test_card_has_the_feishu_card_shape() -> None:
    """msg_type interactive, a plain_text header, one div of lark_md: nothing else."""
    unused = cast(httpx.AsyncClient, None)  # rendering never touches the network
    channel = FeishuChannel(ChannelContext("ops", {"hook": HOOK}, unused))
    card, text = json.loads(channel.render(sample(items=1)))
    assert set(card) == {"msg_type", "card"} and set(card["card"]) == {"header", "elements"}
    assert card["card"]["header"] == {"title": {"tag": "plain_text", "content": header(card)}}
    [element] = card["card"]["elements"]
    assert element == {"tag": "div", "text": {"tag": "lark_md", "content": "\n".join(lines(card))}}
    assert text == {"msg_type": "text", "content": {"text": text["content"]["text"]}}
    assert text["content"]["text"].splitlines()[0] == header(card)


def test_signature_is_fresh_on_every_attempt() -> None:
    now = [1_700_000_000.0]
    with ChatSim(wall_clock=lambda: now[0]) as sim:

        def clock() -> float:
            now[0] += 61
            return now[0]

        deliver(signed(sim), times=2, clock=clock)
        got = [r.json for r in sim.received("feishu")]
    assert [g["timestamp"] for g in got] == ["1700000061", "1700000122"]
    assert got[0]["sign"] != got[1]["sign"]
    assert {k: v for k, v in got[0].items() if k not in ("timestamp", "sign")} == {
        k: v for k, v in got[1].items() if k not in ("timestamp", "sign")
    }


def test_chinese_alert(sim: ChatSim) -> None:
    [result], _ = deliver(signed(sim), locale="zh-CN")
    assert result.kind == "ok"
    card = sim.received("feishu")[0].json
    assert header(card).startswith("【acme】订单 #1001 已付款 · €25.00")
    assert lines(card)[0] == "金额：€25.00" and lines(card)[-1].startswith("后台：[")


def test_unsigned_bot_gets_no_signature() -> None:
    with ChatSim(feishu_secret=None) as sim:
        [result], _ = deliver({"url": sim.endpoint("feishu")})
        [got] = sim.received("feishu")
    assert result.kind == "ok"
    assert "sign" not in got.json and "timestamp" not in got.json


@pytest.mark.parametrize(("cls", "host"), [(FeishuChannel, "open.feishu.cn"),
                                           (LarkChannel, "open.larksuite.com")])  # fmt: skip
def test_hook_option_posts_to_each_default_host(cls: type[FeishuChannel], host: str) -> None:
    seen: list[httpx.Request] = []
    [result], _ = deliver({"hook": HOOK}, cls=cls, transport=ok_transport(seen))
    assert result.kind == "ok"
    assert str(seen[0].url) == f"https://{host}/open-apis/bot/v2/hook/{HOOK}"
    assert cls.kind in ("feishu", "lark") and cls.kind in result.detail


def test_lark_against_the_sim(sim: ChatSim) -> None:
    [result], _ = deliver(signed(sim), cls=LarkChannel)
    assert result.kind == "ok" and result.detail.startswith("lark ")


def test_older_success_shape_is_accepted() -> None:
    seen: list[httpx.Request] = []
    body = {"StatusCode": 0, "StatusMessage": "success"}
    [result], _ = deliver({"hook": HOOK}, transport=ok_transport(seen, body))
    assert result.kind == "ok"


# --- fallback ---------------------------------------------------------------------------------


def test_rejected_card_is_resent_as_text(sim: ChatSim) -> None:
    sim.fail("feishu", "9499")
    [result], _ = deliver(signed(sim))
    assert result.kind == "ok"
    assert "card rejected" in result.detail and "9499" in result.detail
    assert [a.json["msg_type"] for a in sim.attempts("feishu")] == ["interactive", "text"]
    text = sim.received("feishu")[0].json["content"]["text"]
    assert text.startswith("[acme] Order #1001 paid") and text.endswith(f"Open: {ADMIN}")


def test_both_formats_rejected_is_a_dead_message(sim: ChatSim) -> None:
    sim.fail("feishu", "9499", count=2)
    [result], _ = deliver(signed(sim))
    assert (result.kind, result.scope) == ("permanent", "message")
    assert "text fallback" in result.detail and "HTTP 400" in result.detail


# --- keyword, mentions, escaping --------------------------------------------------------------


def test_keyword_is_appended_when_missing() -> None:
    with ChatSim(feishu_keyword="pollerd") as sim:
        [result], rendered = deliver(signed(sim, keyword="pollerd"))
    assert result.kind == "ok", result.detail
    card, text = json.loads(rendered)
    last = card["card"]["elements"][-1]
    assert last == {"tag": "div", "text": {"tag": "plain_text", "content": "pollerd"}}
    assert text["content"]["text"].endswith("\npollerd")


def test_keyword_already_in_the_text_is_not_repeated(sim: ChatSim) -> None:
    [_], rendered = deliver(signed(sim, keyword="Total"))
    card, text = json.loads(rendered)
    assert len(card["card"]["elements"]) == 1 and text["content"]["text"].endswith(ADMIN)


def test_missing_keyword_holds_the_channel() -> None:
    with ChatSim(feishu_keyword="pollerd") as sim:
        [result], _ = deliver(signed(sim))
    assert (result.kind, result.scope) == ("permanent", "channel")
    assert "19024" in result.detail and "set keyword" in result.detail


def test_mention_all(sim: ChatSim) -> None:
    [result], rendered = deliver(signed(sim, mention_all=True))
    assert result.kind == "ok"
    card, text = json.loads(rendered)
    last = card["card"]["elements"][-1]
    assert last == {"tag": "div", "text": {"tag": "lark_md", "content": "<at id=all></at>"}}
    assert text["content"]["text"].endswith('<at user_id="all">所有人</at>')


def test_hostile_customer_name_is_inert(sim: ChatSim) -> None:
    [result], rendered = deliver(signed(sim), sample(name=HOSTILE))
    assert result.kind == "ok"
    card, text = json.loads(rendered)
    customer = next(t for t in lines(card) if t.startswith("Customer:"))
    plain = next(t for t in text["content"]["text"].splitlines() if t.startswith("Customer:"))
    for line in (customer, plain):
        for forbidden in ("<at", "<s>", "@all", "@everyone", "http://evil"):
            assert forbidden not in line, forbidden
        assert "＜at user" in line
    assert "**x**" not in customer and "[x](" not in customer


def test_hostile_customer_and_item_reach_the_wire_inert(sim: ChatSim) -> None:
    sim.fail("feishu", "9499")  # the card is refused: the text fallback goes on the wire too
    [result], _ = deliver(signed(sim), sample(name=CUSTOMER, item_name=ITEM))
    assert result.kind == "ok", result.detail
    card, text = (a.json for a in sim.attempts("feishu"))
    body = "\n".join(lines(card))
    for forbidden in ("<s>", "<b>", "<at", "**", "*big*", "@everyone", "[x](", "http://evil"):
        assert forbidden not in body, forbidden
    assert "＜s＞∗∗x∗∗ ＠everyone ［x］(http：//evil)" in body and "1 × ∗big∗ ＜b＞ 0" in body
    plain = text["content"]["text"]
    for forbidden in ("<s>", "<b>", "<at", "@everyone", "http://evil"):
        assert forbidden not in plain, forbidden
    assert "<" not in header(card) and "@everyone" not in header(card)


def test_oversized_body_is_cut_to_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real alerts stay far below 20 KB (values are capped at 200 characters, items at 10), so
    the budget is shrunk here to prove the cut keeps the title and the link."""
    monkeypatch.setattr(feishu, "BODY_BYTES", 1500)
    seen: list[httpx.Request] = []
    event = sample(items=12, item_name="很长的商品名" * 10)
    [result], rendered = deliver({"hook": HOOK, "secret": SECRET}, event, locale="zh-CN",
                                 transport=ok_transport(seen))  # fmt: skip
    assert result.kind == "ok"
    card, text = json.loads(rendered)
    assert len(seen[0].content) <= 1500
    rows = lines(card)
    assert rows[-1] == f"后台：[{ADMIN}]({ADMIN})" and rows[-2].startswith("…（另有 ")
    assert text["content"]["text"].endswith(ADMIN)
    assert utf8_len(json.dumps(text, ensure_ascii=False)) <= 1500


def test_300_items_are_shortened_into_one_message(
    sim: ChatSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten items of ~400 bytes fit the 20 KB body, so the limit is lowered to make the fitting
    visible: fewer items, "… (+N items)", the link kept, one message, signature included."""
    monkeypatch.setattr(feishu, "BODY_BYTES", 3000)
    event = sample(items=300, item_name="手工上釉陶瓷马克杯" * 15)
    [result], rendered = deliver(signed(sim), event)
    assert result.kind == "ok", result.detail
    [got] = sim.received("feishu")  # ONE message
    assert len(got.body) <= 3000
    card, text = json.loads(rendered)
    assert got.json["card"] == card["card"]
    for body in (lines(card), text["content"]["text"].splitlines()):
        shown = sum(" × 手工上釉" in line for line in body)
        assert 0 < shown < 10
        assert body[-2] == f"… (+{300 - shown} items)" and ADMIN in body[-1]
    assert utf8_len(json.dumps(text, ensure_ascii=False)) <= 3000


def test_300_items_at_the_real_limit_show_ten(sim: ChatSim) -> None:
    [result], rendered = deliver(signed(sim), sample(items=300), locale="zh-CN")
    assert result.kind == "ok", result.detail
    body = lines(json.loads(rendered)[0])
    assert sum(line.startswith("1 × Mug") for line in body) == 10
    assert body[-2] == "…（另有 290 项）" and ADMIN in body[-1]


# --- classification ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "expected", "scope", "after"),
    [
        ("11232", "retry", "message", 60.0),
        ("500", "retry", "message", None),
        ("reset", "retry", "message", None),
        ("19021", "permanent", "channel", None),
        ("19022", "permanent", "channel", None),
        ("19024", "permanent", "channel", None),
        ("19001", "permanent", "channel", None),
    ],
)
def test_failure_classes(
    sim: ChatSim, kind: str, expected: str, scope: str, after: float | None
) -> None:
    sim.fail("feishu", kind)
    [result], _ = deliver(signed(sim))
    assert (result.kind, result.scope, result.retry_after) == (expected, scope, after)
    assert len(sim.attempts("feishu")) == 1  # not a payload problem: no text fallback
    assert HOOK not in result.detail and SECRET not in result.detail


def test_wrong_secret_holds_the_channel(sim: ChatSim) -> None:
    [result], _ = deliver(signed(sim, secret="not-the-secret"))
    assert (result.kind, result.scope) == ("permanent", "channel")
    assert "19021" in result.detail and "签名校验" in result.detail and "clock" in result.detail
    assert "not-the-secret" not in result.detail


def test_unsigned_channel_for_a_signing_bot_holds_the_channel(sim: ChatSim) -> None:
    [result], _ = deliver({"url": sim.endpoint("feishu")})
    assert (result.kind, result.scope) == ("permanent", "channel") and "19021" in result.detail


def test_wrong_hook_holds_the_channel(sim: ChatSim) -> None:
    url = sim.endpoint("feishu").replace(HOOK, "feishu-hook-9999")
    [result], _ = deliver({"url": url, "secret": SECRET})
    assert (result.kind, result.scope) == ("permanent", "channel")
    assert "19001" in result.detail and "feishu-hook-9999" not in result.detail


def test_real_rate_limit_is_retried() -> None:
    with ChatSim(clock=lambda: 7.0) as sim:  # one instant: the 5-per-second window fills
        results, _ = deliver(signed(sim), times=6)
    assert [r.kind for r in results] == ["ok"] * 5 + ["retry"]
    assert results[-1].retry_after == 60.0 and "11232" in results[-1].detail


def test_timeout_is_retried() -> None:
    with ChatSim() as sim:
        sim.fail("feishu", "slow")
        [result], _ = deliver(signed(sim, timeout="200ms"))
    assert result.kind == "retry" and "0.2s" in result.detail


@pytest.mark.parametrize(
    ("status", "body", "kind", "scope"),
    [
        (200, {"code": 19002, "msg": "params error, msg_type need"}, "permanent", "message"),
        (429, {"code": 11232, "msg": "frequency limited"}, "retry", "message"),
        (200, {"code": 19001, "msg": "param invalid: content"}, "permanent", "message"),
        (500, {"code": 99991, "msg": "internal"}, "retry", "message"),
    ],
)
def test_other_answers(status: int, body: dict[str, Any], kind: str, scope: str) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body)

    [result], _ = deliver({"hook": HOOK}, transport=httpx.MockTransport(answer))
    assert (result.kind, result.scope) == (kind, scope), result.detail


# --- options ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({}, "missing: set url"),
        ({"hook": HOOK, "url": f"https://open.feishu.cn/open-apis/bot/v2/hook/{HOOK}"},
         "not both"),
        ({"url": "https://open.feishu.cn/open-apis/bot/v2/"}, "hook/<id>"),
        ({"url": f"mailto:{HOOK}"}, "webhook URL"),
        ({"hook": f"https://open.feishu.cn/open-apis/bot/v2/hook/{HOOK}"}, "like a URL"),
        ({"hook": HOOK, "secret": "two words"}, "whitespace"),
        ({"hook": HOOK, "keyword": ""}, "one of the bot's keywords"),
        ({"hook": HOOK, "format": "card"}, "Extra inputs"),
    ],
)  # fmt: skip
def test_options_are_validated(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError) as caught:
        LarkChannel.Options.model_validate(options)
    messages = " ".join(e["msg"] for e in caught.value.errors(include_input=False))
    assert problem in messages
    assert HOOK not in messages and "two words" not in messages


def test_secrets_do_not_print() -> None:
    options = FeishuChannel.Options.model_validate({"hook": HOOK, "secret": SECRET})
    assert HOOK not in repr(options) and SECRET not in repr(options)
