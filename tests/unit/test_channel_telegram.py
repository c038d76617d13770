"""`telegram` channel against `ChatSim`'s Bot API: success, every refusal it has (parse errors
resent as plain text, a migrated group followed), strict escaping of attacker-chosen order text
(the engine's `telegram` flavour, and `text` for the plain fallback), the 4096 limit, digests,
and the bot token kept out of details and reprs."""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from pollerd.channels.base import ChannelContext, SendResult
from pollerd.channels.telegram import TEXT_LIMIT, TelegramChannel
from pollerd.model import Event
from pollerd_sim.chat import ChatSim
from pollerd_sim.testing.events import CUSTOMER, ITEM, line_items, paid_event
from pollerd_sim.testing.sending import send_events
from tests.samples import numbered

AT = datetime(2026, 11, 22, 9, 32, 36, tzinfo=UTC)
ADMIN = "https://shop.example/wp-admin/post.php?post=1001&action=edit"
HOSTILE = '<s>** @everyone [x](http://evil) <a href="http://evil">Open</a> &amp; </b>'
SUMMARY = "[acme] Order #1001 paid · €25.00 · Jane D. · Nov 22, 2026 09:32 UTC"
HREF = html.escape(ADMIN)
LINK = f'Open: <a href="{HREF}">{HREF}</a>'
TOKEN = "123456:ABC-telegram"
CHAT = "-1001234567890"


def sample(name: str = "Jane D.", items: int = 2, item_name: str = "Mug", **extra: Any) -> Event:
    reason = extra.get("cancel_reason")
    return paid_event(name, items=line_items(items, item_name), reason=reason, **extra)


def options(sim: ChatSim | None, **more: Any) -> dict[str, Any]:
    base = {"token": TOKEN, "chat_id": CHAT, "api_base": sim.url if sim else "https://x.example"}
    return {**base, **more}


def deliver(
    opts: dict[str, Any], *events: Event, locale: str = "en"
) -> tuple[list[SendResult], TelegramChannel]:
    """Render each event once and send it, through one channel and one shared client."""

    def make(http: httpx.AsyncClient) -> TelegramChannel:
        return TelegramChannel(ChannelContext("tg", opts, http, locale=locale))

    sent = send_events(make, events or (sample(),))
    assert isinstance(sent.channel, TelegramChannel)
    return sent.results, sent.channel


def rendered(event: Event, locale: str = "en") -> dict[str, str]:
    ch = TelegramChannel(ChannelContext("tg", options(None), None, locale=locale))  # type: ignore[arg-type]
    stored: dict[str, str] = json.loads(ch.render(event))
    return stored


def order_events(count: int) -> list[Event]:
    """`count` paid orders #1000… of 25.00 EUR each, for digests."""
    return numbered(sample(), count)


def units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def tags(text: str) -> set[str]:
    return {m.lower() for m in re.findall(r"</?([A-Za-z][A-Za-z0-9-]*)", text)}


@pytest.fixture
def sim() -> Iterator[ChatSim]:
    with ChatSim(enforce_rate_limits=False) as server:
        yield server


def test_ok_sends_html_to_the_chat(sim: ChatSim) -> None:
    [result], _ = deliver(options(sim, disable_notification=True, message_thread_id=7))
    assert result.kind == "ok" and result.detail == "message_id 1"
    [got] = sim.received("telegram")
    assert got.path == f"/bot{TOKEN}/sendMessage"
    sent = got.json
    assert sent["chat_id"] == CHAT and sent["parse_mode"] == "HTML"
    assert sent["link_preview_options"] == {"is_disabled": True}
    assert sent["disable_notification"] is True and sent["message_thread_id"] == 7
    assert sent["text"] == (
        f"<b>{SUMMARY}</b>\nTotal: €25.00\nCustomer: Jane D.\n1 × Mug 0\n1 × Mug 1\n{LINK}"
    )
    plain = rendered(sample())["plain"]
    assert plain == f"{SUMMARY}\nTotal: €25.00\nCustomer: Jane D.\n1 × Mug 0\n1 × Mug 1\n" + (
        f"Open: {ADMIN}"
    )


def test_hostile_order_text_is_escaped() -> None:
    event = sample(name=HOSTILE, item_name=HOSTILE, cancel_reason=HOSTILE)
    stored = rendered(event)
    assert tags(stored["html"]) == {"b", "a"}
    assert stored["html"].count("<a ") == 1 and stored["html"].count("<b>") == 1
    assert "&lt;s&gt;" in stored["html"] and "&amp;amp;" in stored["html"]
    assert "&lt;a href=&quot;http：//evil&quot;&gt;" in stored["html"]
    for text in stored.values():  # no @mention or autolinked URL Telegram would make live
        assert "@everyone" not in text and "http://evil" not in text
    assert not tags(stored["plain"])  # the fallback is sent without parse_mode anyway
    assert "＜s＞** ＠everyone [x](http：//evil)" in stored["plain"]


def test_hostile_text_reaches_the_chat_as_typed(sim: ChatSim) -> None:
    name = HOSTILE + ' O\'Brien "Ünï" 🛒'
    [result], _ = deliver(options(sim), sample(name=name, item_name=name))
    assert result.kind == "ok", result.detail
    shown = sim.attempts("telegram")[0].answer_json()["result"]
    # the sim parses the HTML like Telegram does: the markup characters are text
    assert (
        '<s>** ＠everyone [x](http：//evil) <a href="http：//evil">Open</a> &amp; </b>'
        in (shown["text"])
    )
    assert ' O\'Brien "Ünï" 🛒' in shown["text"]
    assert {e["type"] for e in shown["entities"]} == {"bold", "text_link"}


def test_hostile_customer_and_item_reach_the_chat_inert(sim: ChatSim) -> None:
    [result], _ = deliver(options(sim), sample(name=CUSTOMER, item_name=ITEM))
    assert result.kind == "ok", result.detail
    shown = sim.attempts("telegram")[0].answer_json()["result"]
    text = shown["text"]
    bold, link = shown["entities"]  # no tag, bold or link but pollerd's own
    first = text.split("\n")[0]
    assert (bold["type"], bold["offset"], bold["length"]) == ("bold", 0, units(first))
    assert (link["type"], link["url"]) == ("text_link", ADMIN)
    assert "<s>**x** ＠everyone [x](http：//evil)" in first  # shown, not obeyed
    assert "1 × *big* <b> 0" in text
    assert "@everyone" not in text and "http://evil" not in text  # no mention, no autolink


def test_parse_error_is_resent_as_plain_text(sim: ChatSim) -> None:
    sim.fail("telegram", "400_parse")
    [result], _ = deliver(options(sim))
    assert result.kind == "ok", result.detail
    assert "sent as plain text" in result.detail and "can't parse entities" in result.detail
    first, second = sim.attempts("telegram")
    assert first.json["parse_mode"] == "HTML" and "parse_mode" not in second.json
    assert second.json["text"] == rendered(sample())["plain"]
    assert "<b>" not in second.json["text"] and ADMIN in second.json["text"]


def test_plain_resend_failing_is_classified(sim: ChatSim) -> None:
    sim.fail("telegram", "400_parse", count=2)
    [result], _ = deliver(options(sim))
    assert (result.kind, result.scope) == ("permanent", "message")
    assert len(sim.attempts("telegram")) == 2  # one plain retry, not a loop


def test_plain_resend_that_hits_flood_control_waits(sim: ChatSim) -> None:
    sim.fail("telegram", "400_parse")
    sim.fail("telegram", "429", retry_after=9)
    [result], _ = deliver(options(sim))
    assert result.kind == "retry" and result.retry_after == 9.0
    assert "sent as plain text" in result.detail


def test_migrated_group_is_followed_and_reported() -> None:
    with ChatSim(enforce_rate_limits=False, telegram_chat="-1009876543210") as sim:
        sim.fail("telegram", "400_migrate")
        results, ch = deliver(options(sim), sample(), sample())
        chats = [a.json["chat_id"] for a in sim.attempts("telegram")]
    assert [r.kind for r in results] == ["ok", "ok"]
    assert "set chat_id = -1009876543210" in results[0].detail
    assert chats == [CHAT, "-1009876543210", "-1009876543210"]
    assert ch.chat_id == "-1009876543210"


@pytest.mark.parametrize(
    ("fault", "kind", "scope", "words"),
    [
        ("400_chat", "permanent", "channel", "chat_id"),
        ("401", "permanent", "channel", "token"),
        ("403_blocked", "permanent", "recipient", "unblock"),
        ("500", "retry", "message", "500"),
        ("reset", "retry", "message", "telegram http://127.0.0.1"),
    ],
)
def test_refusals(sim: ChatSim, fault: str, kind: str, scope: str, words: str) -> None:
    sim.fail("telegram", fault)
    [result], _ = deliver(options(sim))
    assert (result.kind, result.scope) == (kind, scope), result.detail
    assert words in result.detail
    assert not sim.received("telegram")


def test_429_honours_retry_after_from_the_body(sim: ChatSim) -> None:
    sim.fail("telegram", "429", retry_after=17)
    [result], _ = deliver(options(sim))
    assert result.kind == "retry" and result.retry_after == 17.0


def test_real_flood_control_is_retried() -> None:
    with ChatSim(clock=lambda: 100.0) as sim:  # 1 message per second per chat
        results, _ = deliver(options(sim), sample(), sample())
    assert results[0].kind == "ok"
    assert results[1].kind == "retry" and results[1].retry_after == 1.0


def test_wrong_chat_and_wrong_token_hold_the_channel(sim: ChatSim) -> None:
    [chat], _ = deliver(options(sim, chat_id=-1000000000001))
    [token], _ = deliver(options(sim, token="123456:WRONG-token"))
    assert (chat.kind, chat.scope) == ("permanent", "channel") and "chat not found" in chat.detail
    assert (token.kind, token.scope) == ("permanent", "channel") and "401" in token.detail
    assert "WRONG-token" not in token.detail


def test_timeout_and_refused_connection_are_retried(sim: ChatSim) -> None:
    sim.fail("telegram", "slow")
    [slow], _ = deliver(options(sim, timeout="200ms"))
    url = sim.url
    sim.stop()
    [down], _ = deliver({**options(None), "api_base": url})
    assert slow.kind == "retry" and "no answer after 0.2s" in slow.detail
    assert down.kind == "retry" and "ConnectError" in down.detail


def test_many_items_are_cut_to_the_limit_keeping_the_link(sim: ChatSim) -> None:
    event = sample(items=40, item_name="&" * 190)
    stored = rendered(event)
    assert units(stored["html"]) <= TEXT_LIMIT and units(stored["plain"]) <= TEXT_LIMIT
    shown = stored["html"].count("× ")
    assert 0 < shown < 10
    assert stored["html"].endswith(f"… (+{40 - shown} items)\n{LINK}")
    assert re.search(r"… \(\+\d+ items\)\nOpen: https://", stored["plain"])
    [result], _ = deliver(options(sim), event)
    assert result.kind == "ok"
    assert sim.received("telegram")[0].json["text"] == stored["html"]


def test_300_items_are_shortened_into_one_message(sim: ChatSim) -> None:
    event = sample(items=300, item_name="R&D " * 48)  # ~390 UTF-16 units each as HTML
    [result], _ = deliver(options(sim), event)
    assert result.kind == "ok", result.detail
    [got] = sim.attempts("telegram")  # one message, not a thread of them
    text = got.json["text"]
    assert units(text) <= TEXT_LIMIT
    shown = text.count("× ")
    assert 0 < shown < 10  # the limit, not only the template's 10 items, cut them
    assert text.startswith(f"<b>{SUMMARY}</b>\n") and text.endswith(
        f"… (+{300 - shown} items)\n{LINK}"
    )
    assert {e["type"] for e in got.answer_json()["result"]["entities"]} == {"bold", "text_link"}


def test_absurd_fields_are_shortened_and_the_link_kept() -> None:
    amp = "&" * 200
    event = sample(
        name=amp, items=0, store=amp, number=amp, payment_method_title=amp, cancel_reason=amp
    )
    stored = rendered(event)
    assert units(stored["html"]) <= TEXT_LIMIT and units(stored["plain"]) <= TEXT_LIMIT
    assert stored["html"].endswith(LINK)
    assert "Payment: " not in stored["html"]  # the brief form: summary and link
    assert tags(stored["html"]) == {"b", "a"}
    assert not re.search(r"&[a-z]*$", stored["html"].split("\n")[-2])  # no half entity


def test_emoji_count_twice() -> None:
    stored = rendered(sample(items=40, item_name="🛒" * 190))
    assert len(stored["html"]) < units(stored["html"]) <= TEXT_LIMIT
    assert units(stored["html"]) > TEXT_LIMIT - 2 * 200  # only the next item did not fit


def test_chinese_summary_and_marker() -> None:
    stored = rendered(sample(items=40, item_name="&" * 190), locale="zh-CN")
    assert stored["plain"].startswith("【acme】订单 #1001 已付款 · €25.00")
    assert re.search(r"…（另有 \d+ 项）\n后台：https://", stored["plain"])
    assert re.search(r"…（另有 \d+ 项）\n后台：<a href=", stored["html"])


def test_digest_fits_and_counts_the_rest() -> None:
    ch = TelegramChannel(ChannelContext("tg", options(None), None))  # type: ignore[arg-type]
    stored = json.loads(ch.render_digest(order_events(30)))
    head, total, first, *_, more = stored["html"].split("\n")
    assert head.startswith("<b>Digest: 30 order alerts") and head.endswith("</b>")
    assert total == "Total of 30 orders: €750.00"
    assert first == "[acme] Order #1000 paid · €25.00 · Jane D. · Nov 22, 2026 09:32 UTC"
    assert more == "… and 20 more" and stored["html"].count("\n") == 1 + 1 + 10
    assert stored["plain"] == stored["html"].replace("<b>", "").replace("</b>", "")
    hostile = json.loads(ch.render_digest([sample(name=HOSTILE * 3)] * 400))
    assert tags(hostile["html"]) == {"b"} and units(hostile["html"]) <= TEXT_LIMIT
    shown = hostile["html"].count("[acme] Order #1001 paid")
    assert 0 < shown <= 10 and hostile["html"].endswith(f"\n… and {400 - shown} more")
    assert "&lt;a href=&quot;http：//evil&quot;&gt;" in hostile["html"]
    assert re.search(r"\n… and \d+ more$", hostile["plain"])


def test_render_is_stable() -> None:
    assert rendered(sample(name=HOSTILE)) == rendered(sample(name=HOSTILE))


def test_secrets_never_in_details_or_repr(sim: ChatSim) -> None:
    results = []
    for fault in ("400_parse", "400_chat", "401", "403_blocked", "429", "500", "reset"):
        sim.fail("telegram", fault)
        results += deliver(options(sim))[0]
    ch = TelegramChannel(ChannelContext("tg", options(sim), None))  # type: ignore[arg-type]
    echo = httpx.Response(400, json={"ok": False, "description": f"bad /bot{TOKEN}/sendMessage"})
    for result in [*results, ch._classify(echo)]:
        assert "ABC-telegram" not in result.detail, result.detail
    for shown in (repr(ch.options), str(ch.options), repr(ch), repr(ch.options.model_dump())):
        assert "ABC-telegram" not in shown


def refused(description: str) -> dict[str, Any]:
    return {"ok": False, "description": description}


@pytest.mark.parametrize(
    ("status", "body", "kind", "scope"),
    [
        (200, {"ok": True, "result": {"message_id": 5}}, "ok", "message"),
        (200, "<html>proxy</html>", "permanent", "channel"),
        (302, "", "permanent", "channel"),
        (404, {"ok": False, "error_code": 404, "description": "Not Found"}, "permanent", "channel"),
        (403, refused("Forbidden: user is deactivated"), "permanent", "recipient"),
        (403, refused("Forbidden: bot was kicked from the group chat"), "permanent", "channel"),
        (400, refused("Bad Request: message thread not found"), "permanent", "channel"),
        (400, refused("Bad Request: message is too long"), "permanent", "message"),
        (429, "<html>slow down</html>", "retry", "message"),
        (502, "<html>bad gateway</html>", "retry", "message"),
    ],
)
def test_classification(status: int, body: Any, kind: str, scope: str) -> None:
    ch = TelegramChannel(ChannelContext("tg", options(None), None))  # type: ignore[arg-type]
    response = httpx.Response(
        status, **({"json": body} if isinstance(body, dict) else {"text": body})
    )
    result = ch._classify(response)
    assert (result.kind, result.scope) == (kind, scope), result.detail


def test_chat_id_may_be_a_number_or_a_username() -> None:
    parse = TelegramChannel.Options.model_validate
    assert parse(options(None, chat_id=-100123)).chat_id == "-100123"
    assert parse(options(None, chat_id="@shop_alerts")).chat_id == "@shop_alerts"


@pytest.mark.parametrize(
    ("more", "problem"),
    [
        ({"token": "not a token SECRETVALUE"}, "not a bot token"),
        ({"chat_id": "ops"}, "not a chat id"),
        ({"chat_id": True}, "not a chat id"),
        ({"api_base": "api.telegram.org"}, "http:// or https://"),
        ({"parse_mode": "MarkdownV2"}, "Extra inputs"),
    ],
)
def test_bad_options(more: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError) as caught:
        TelegramChannel.Options.model_validate(options(None, **more))
    assert problem in str(caught.value) and "SECRETVALUE" not in str(caught.value)


def probe(opts: dict[str, Any]) -> str | None:
    async def go() -> str | None:
        async with httpx.AsyncClient() as http:
            return await TelegramChannel(ChannelContext("tg", opts, http)).probe()

    return asyncio.run(go())


def test_check_probes_with_get_me_and_sends_nothing(sim: ChatSim) -> None:
    """Issue 12 item 9: `pollerd check` probes channels where that has no side effect."""
    assert probe(options(sim)) == "getMe: bot @pollerd_bot (token accepted), nothing sent"
    assert all(not got.path.endswith("/sendMessage") for got in sim.received("telegram"))
    from pollerd.channels.base import ProbeFailed

    with pytest.raises(ProbeFailed, match=r"getMe: Unauthorized \(check token") as info:
        probe(options(sim, token="999:wrong-token"))
    assert "wrong-token" not in str(info.value)
