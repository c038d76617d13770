"""`discord` channel against `ChatSim`'s webhook: success, every refusal it has, mentions locked
off, markdown escaping of attacker-chosen order text (the engine's `discord` flavour), the 2000
limit, digests, and the webhook token kept out of details and reprs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from pollerd.channels.base import ChannelContext, SendResult
from pollerd.channels.discord import CONTENT_LIMIT, DiscordChannel
from pollerd.model import Event
from pollerd.templates.escape import escape_discord
from pollerd_sim.chat import ChatSim
from pollerd_sim.testing.events import CUSTOMER, ITEM, line_items, paid_event
from pollerd_sim.testing.sending import send_events
from tests.samples import numbered

AT = datetime(2026, 11, 22, 9, 32, 36, tzinfo=UTC)
ADMIN = "https://shop.example/wp-admin/post.php?post=1001&action=edit"
HOSTILE = "<s>** @everyone @here <@123> [x](http://evil) __u__ ~~s~~ `c` ||spoiler|| # h"
LINK = f"Open: <{ADMIN}>"  # pollerd's own link: `<…>` keeps Discord from embedding it
SUMMARY = "[acme] Order #1001 paid · €25.00 · Jane D. · Nov 22, 2026 09:32 UTC"
TOKEN = "discord-token-0001"


def sample(name: str = "Jane D.", items: int = 2, item_name: str = "Mug", **extra: Any) -> Event:
    reason = extra.get("cancel_reason")
    return paid_event(name, items=line_items(items, item_name), reason=reason, **extra)


def deliver(url: str, *events: Event, locale: str = "en", **options: Any) -> list[SendResult]:
    """Render each event once and send it, through one channel and one shared client."""

    def make(http: httpx.AsyncClient) -> DiscordChannel:
        return DiscordChannel(ChannelContext("dc", {"url": url, **options}, http, locale=locale))

    return send_events(make, events or (sample(),)).results


def offline(locale: str = "en", **options: Any) -> DiscordChannel:
    url = f"https://discord.com/api/webhooks/111/{TOKEN}"
    return DiscordChannel(ChannelContext("dc", {"url": url, **options}, None, locale=locale))  # type: ignore[arg-type]


def order_events(count: int) -> list[Event]:
    """`count` paid orders #1000… of 25.00 EUR each, for digests."""
    return numbered(sample(), count)


def live(text: str) -> str:
    """What of `text` Discord could read as markup: every backslash pair removed."""
    return re.sub(r"\\.", "", text)


def units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def unescaped(text: str) -> str:
    """What Discord shows for escaped text: the backslash before punctuation is dropped."""
    return re.sub(r"\\([^0-9A-Za-z\s])", r"\1", text)


@pytest.fixture
def sim() -> Iterator[ChatSim]:
    with ChatSim(enforce_rate_limits=False) as server:
        yield server


def test_ok_waits_for_the_message_and_locks_mentions(sim: ChatSim) -> None:
    [result] = deliver(sim.endpoint("discord"), username="pollerd")
    assert result.kind == "ok" and result.detail.startswith("message id ")
    [got] = sim.received("discord")
    assert got.query == {"wait": "true"}
    sent = got.json
    assert sent["allowed_mentions"] == {"parse": []} and sent["flags"] == 4
    assert sent["username"] == "pollerd"
    first, *_, last = sent["content"].split("\n")
    assert unescaped(first) == f"**{SUMMARY}**"
    assert unescaped(first) == first.replace("\\", "")
    assert unescaped(sent["content"]) == (
        f"**{SUMMARY}**\nTotal: €25.00\nCustomer: Jane D.\n1 × Mug 0\n1 × Mug 1\n{LINK}"
    )
    assert last == LINK


def test_thread_id_goes_in_the_query(sim: ChatSim) -> None:
    [result] = deliver(sim.endpoint("discord"), thread_id=998877)
    assert result.kind == "ok"
    assert sim.received("discord")[0].query == {"wait": "true", "thread_id": "998877"}


def test_hostile_order_text_is_inert(sim: ChatSim) -> None:
    event = sample(name=HOSTILE, item_name=HOSTILE, cancel_reason=HOSTILE)
    [result] = deliver(sim.endpoint("discord"), event)
    assert result.kind == "ok"
    [attempt] = sim.attempts("discord")
    content = attempt.json["content"]
    assert HOSTILE in unescaped(content)  # shown exactly as typed
    assert content.count(escape_discord(HOSTILE)) >= 3  # name, item, reason: all escaped
    head, *lines, link = content.split("\n")
    assert head.startswith("**") and head.endswith("**") and link == LINK
    bare = live("\n".join([head[2:-2], *lines]))
    assert not re.search(r"[*_~`|<>()@\\]", bare), bare  # no markup but pollerd's "[acme]"
    assert attempt.answer_json()["mention_everyone"] is False


def test_hostile_customer_and_item_reach_the_webhook_inert(sim: ChatSim) -> None:
    [result] = deliver(sim.endpoint("discord"), sample(name=CUSTOMER, item_name=ITEM))
    assert result.kind == "ok", result.detail
    [attempt] = sim.attempts("discord")
    content = attempt.json["content"]
    head, *lines, link = content.split("\n")
    bare = live("\n".join([head[2:-2], *lines]))
    assert "<" not in bare and "*" not in bare  # no tag, no bold but the summary's own
    assert "@" not in bare and "](" not in bare and "://" not in bare  # no mention, no link
    assert f"**[acme] Order \\#1001 paid · €25.00 · {escape_discord(CUSTOMER)} · " in head
    assert f"1 × {escape_discord(ITEM)} 0" in lines and link == LINK
    assert attempt.json["allowed_mentions"] == {"parse": []}
    assert attempt.answer_json()["mention_everyone"] is False


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("<s>", r"\<s\>"),
        ("**x**", r"\*\*x\*\*"),
        ("@everyone", r"\@everyone"),
        ("[x](http://evil)", r"\[x\]\(http\://evil\)"),
        ("a\\b", r"a\\b"),
        ("Zoë 中文 1.5", "Zoë 中文 1.5"),
    ],
)
def test_escape(raw: str, safe: str) -> None:
    assert escape_discord(raw) == safe
    assert unescaped(escape_discord(raw)) == raw


def test_allowed_mentions_cannot_be_configured() -> None:
    with pytest.raises(ValidationError):
        offline(allowed_mentions={"parse": ["everyone"]})


def test_many_items_are_cut_to_the_limit_keeping_the_link(sim: ChatSim) -> None:
    event = sample(items=40, item_name="*" * 190)
    content = offline().render(event)
    assert units(content) <= CONTENT_LIMIT
    shown = content.count("× ")
    assert 0 < shown < 10
    assert unescaped(content).endswith(f"… (+{40 - shown} items)\n{LINK}")
    [result] = deliver(sim.endpoint("discord"), event)
    assert result.kind == "ok"


def test_300_items_are_shortened_into_one_message(sim: ChatSim) -> None:
    event = sample(items=300, item_name="R&D (EU) #" * 20)  # ~280 UTF-16 units each, escaped
    [result] = deliver(sim.endpoint("discord"), event)
    assert result.kind == "ok", result.detail
    [got] = sim.attempts("discord")  # one message, not a thread of them
    content = got.json["content"]
    assert units(content) <= CONTENT_LIMIT
    shown = content.count("× ")
    assert 0 < shown < 10  # the limit, not only the template's 10 items, cut them
    assert content.endswith(f"… (+{300 - shown} items)\n{LINK}")
    assert unescaped(content.split("\n")[0]) == f"**{SUMMARY}**"


def test_absurd_fields_are_shortened_and_the_link_kept() -> None:
    star = "*" * 200
    event = sample(
        name=star, items=0, store=star, number=star, payment_method_title=star, cancel_reason=star
    )
    content = offline().render(event)
    assert units(content) <= CONTENT_LIMIT and content.endswith(f"\n{LINK}")
    assert "Payment: " not in content  # the brief form: summary and link
    head = content.split("\n")[0]
    assert head.startswith("**") and head.endswith("**") and not live(head[2:-2]).count("*")


def test_chinese_marker() -> None:
    content = offline(locale="zh-CN").render(sample(items=40, item_name="*" * 190))
    assert unescaped(content).startswith("**【acme】订单 #1001 已付款 · €25.00")
    assert re.search(r"…（另有 \d+ 项）\n后台：<https://", unescaped(content))


def test_digest_fits_and_counts_the_rest() -> None:
    content = offline().render_digest(order_events(30))
    head, total, first, *_, more = content.split("\n")
    assert head.startswith("**Digest: 30 order alerts") and head.endswith("**")
    assert total == "Total of 30 orders: €750.00"
    assert unescaped(first) == "[acme] Order #1000 paid · €25.00 · Jane D. · Nov 22, 2026 09:32 UTC"
    assert more == "… and 20 more" and content.count("\n") == 1 + 1 + 10
    hostile = offline().render_digest([sample(name=HOSTILE * 3)] * 400)
    assert units(hostile) <= CONTENT_LIMIT and "@everyone" not in live(hostile)
    shown = unescaped(hostile).count("[acme] Order #1001 paid")
    assert 0 < shown <= 10 and hostile.endswith(f"\n… and {400 - shown} more")


@pytest.mark.parametrize(
    ("fault", "kind", "scope", "words"),
    [
        ("404_unknown_webhook", "permanent", "channel", "Unknown Webhook (10015)"),
        ("401", "permanent", "channel", "Invalid Webhook Token"),
        ("400", "permanent", "message", "Invalid Form Body (50035)"),
        ("500", "retry", "message", "500"),
        ("reset", "retry", "message", "discord http://127.0.0.1"),
    ],
)
def test_refusals(sim: ChatSim, fault: str, kind: str, scope: str, words: str) -> None:
    sim.fail("discord", fault)
    [result] = deliver(sim.endpoint("discord"))
    assert (result.kind, result.scope) == (kind, scope), result.detail
    assert words in result.detail
    assert not sim.received("discord")


def test_429_honours_retry_after_from_the_body(sim: ChatSim) -> None:
    sim.fail("discord", "429", retry_after=2.5)
    [result] = deliver(sim.endpoint("discord"))
    assert result.kind == "retry" and result.retry_after == 2.5


def test_real_rate_limit_is_retried() -> None:
    with ChatSim(clock=lambda: 100.0) as sim:  # 5 per 2 s per webhook
        results = deliver(sim.endpoint("discord"), *[sample()] * 6)
    assert [r.kind for r in results] == ["ok"] * 5 + ["retry"]
    assert results[5].retry_after is not None and 0 < results[5].retry_after <= 2.0


def test_deleted_webhook_and_wrong_token_hold_the_channel(sim: ChatSim) -> None:
    [gone] = deliver(f"{sim.url}/api/webhooks/999/{TOKEN}")
    [token] = deliver(f"{sim.url}/api/webhooks/111/wrong-token-9999")
    assert (gone.kind, gone.scope) == ("permanent", "channel") and "10015" in gone.detail
    assert (token.kind, token.scope) == ("permanent", "channel") and "50027" in token.detail
    assert "wrong-token-9999" not in token.detail


def test_timeout_and_refused_connection_are_retried(sim: ChatSim) -> None:
    sim.fail("discord", "slow")
    [slow] = deliver(sim.endpoint("discord"), timeout="200ms")
    url = sim.endpoint("discord")
    sim.stop()
    [down] = deliver(url)
    assert slow.kind == "retry" and "no answer after 0.2s" in slow.detail
    assert down.kind == "retry" and "ConnectError" in down.detail


@pytest.mark.parametrize(
    ("status", "body", "headers", "kind", "scope", "after"),
    [
        (204, None, {}, "ok", "message", None),
        (200, {"id": "1"}, {}, "ok", "message", None),
        (200, {"message": "hi"}, {}, "permanent", "channel", None),
        (301, None, {}, "permanent", "channel", None),
        (403, {"message": "Missing Access", "code": 50001}, {}, "permanent", "channel", None),
        (400, {"message": "needs thread_id", "code": 220001}, {}, "permanent", "channel", None),
        (413, None, {}, "permanent", "message", None),
        (429, {"retry_after": 0.75}, {"retry-after": "1"}, "retry", "message", 0.75),
        (429, {"retry_after": 5000}, {"retry-after": "5"}, "retry", "message", 5.0),  # ms mix-up
        (429, {"retry_after": 86400}, {}, "retry", "message", 3600.0),
        (429, None, {"retry-after": "3"}, "retry", "message", 3.0),  # Cloudflare's HTML 429
        (502, None, {}, "retry", "message", None),
    ],
)
def test_classification(
    status: int, body: Any, headers: dict[str, str], kind: str, scope: str, after: float | None
) -> None:
    if body is None:
        response = httpx.Response(
            status, text="<html>…</html>" if status != 204 else "", headers=headers
        )
    else:
        response = httpx.Response(status, json=body, headers=headers)
    result = offline()._classify(response)
    assert (result.kind, result.scope, result.retry_after) == (kind, scope, after), result.detail


def test_secrets_never_in_details_or_repr(sim: ChatSim) -> None:
    results = []
    for fault in ("404_unknown_webhook", "401", "400", "429", "500", "reset"):
        sim.fail("discord", fault)
        results += deliver(sim.endpoint("discord"))
    ch = offline()
    echo = httpx.Response(400, json={"message": f"bad /webhooks/111/{TOKEN}", "code": 0})
    for result in [*results, ch._classify(echo)]:
        assert TOKEN not in result.detail, result.detail
    for shown in (repr(ch.options), str(ch.options), repr(ch), repr(ch.options.model_dump())):
        assert TOKEN not in shown


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://discord.com/channels/1/2", "webhook URL Discord shows"),
        ("ftp://discord.com/api/webhooks/1/SECRETVALUE", "webhook URL Discord shows"),
        ("https://discord.com/api/webhooks/1/SECRETVALUE?wait=true", "query"),
    ],
)
def test_bad_url(url: str, problem: str) -> None:
    with pytest.raises(ValidationError) as caught:
        DiscordChannel.Options.model_validate({"url": url})
    assert problem in str(caught.value) and "SECRETVALUE" not in str(caught.value)
