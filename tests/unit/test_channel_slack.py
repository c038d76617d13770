"""`slack` channel against `ChatSim`'s incoming webhook: success, every refusal it has, escaping
of attacker-chosen order text (the engine's `slack` flavour), the 3000-character section limit,
digests, and secrets kept out of details. Answers the simulator cannot give (a 2xx that is not
`ok`, a redirect) are fed to the classifier as plain `httpx.Response`s."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from pollerd.channels.base import ChannelContext, SendResult
from pollerd.channels.slack import SECTION_LIMIT, SlackChannel
from pollerd.model import Event
from pollerd.templates.escape import escape_slack
from pollerd_sim.chat import ChatSim
from pollerd_sim.testing.events import CUSTOMER, ITEM, line_items, paid_event
from pollerd_sim.testing.sending import send_events
from tests.samples import numbered

AT = datetime(2026, 11, 22, 9, 32, 36, tzinfo=UTC)
ADMIN = "https://shop.example/wp-admin/post.php?post=1001&action=edit"
SLACK_ADMIN = ADMIN.replace("&", "&amp;")
LINK = f"Open: <{SLACK_ADMIN}|{SLACK_ADMIN}>"  # the one `<…>` of an alert, pollerd's own
HOSTILE = "<s>** @everyone @here [x](http://evil) <!channel> <@U0001|boss> & co"
HOOK_PATH = "/services/T000/B000/XXXX"
SUMMARY = "[acme] Order #1001 paid · €25.00 · Jane D. · Nov 22, 2026 09:32 UTC"


def sample(name: str = "Jane D.", items: int = 2, item_name: str = "Mug", **extra: Any) -> Event:
    return paid_event(name, items=line_items(items, item_name), **extra)


def channel(http: httpx.AsyncClient, url: str, **options: Any) -> SlackChannel:
    return SlackChannel(ChannelContext("ops-slack", {"url": url, **options}, http))


def deliver(
    url: str, event: Event | None = None, *, times: int = 1, **options: Any
) -> list[SendResult]:
    """Render once, send `times` times through one shared client, like the outbox does."""
    return send_events(
        lambda http: channel(http, url, **options), [event or sample()], times=times
    ).results


def offline(locale: str = "en") -> SlackChannel:
    url = "https://hooks.slack.com" + HOOK_PATH
    return SlackChannel(ChannelContext("s", {"url": url}, None, locale=locale))  # type: ignore[arg-type]


def rendered(event: Event, locale: str = "en") -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(offline(locale).render(event))
    return payload


def texts(payload: dict[str, Any]) -> list[str]:
    return [payload["text"], *(block["text"]["text"] for block in payload["blocks"])]


def without_link(text: str) -> str:
    """The section text minus pollerd's own `<url|url>` link markup."""
    return re.sub(r"<https://shop\.example/[^<>]*>", "", text)


def order_events(count: int) -> list[Event]:
    """`count` paid orders #1000… of 25.00 EUR each, for digests."""
    return numbered(sample(), count)


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
    assert payload["text"] == SUMMARY  # the notification: plain, no mrkdwn
    head, rest = (block["text"] for block in payload["blocks"])
    assert head == {"type": "mrkdwn", "text": f"*{SUMMARY}*"}
    assert rest["type"] == "mrkdwn"
    assert rest["text"] == f"Total: €25.00\nCustomer: Jane D.\n1 × Mug 0\n1 × Mug 1\n{LINK}"


def test_resend_is_byte_identical(sim: ChatSim) -> None:
    sim.fail("slack", "500")
    first, second = deliver(sim.endpoint("slack"), times=2)
    assert (first.kind, second.kind) == ("retry", "ok")
    one, two = sim.attempts("slack")
    assert one.body == two.body


def test_hostile_order_text_is_inert() -> None:
    payload = rendered(sample(name=HOSTILE, item_name=HOSTILE))
    for text in texts(payload):  # the link is the one `<…>` that is ours
        assert "<" not in without_link(text) and ">" not in without_link(text), text
    head = payload["blocks"][0]["text"]["text"]
    assert head.startswith("*") and head.endswith("*") and "*" not in head[1:-1]
    joined = "\n".join(texts(payload)[1:])
    assert (
        "&lt;s&gt;" in joined and "&lt;!channel&gt;" in joined and "&lt;@U0001|boss&gt;" in joined
    )
    assert "&amp; co" in joined and "∗∗" in joined and "http：//evil" in joined
    assert not re.search(r"@(everyone|here|channel)\b", "\n".join(texts(payload)))
    assert "@\u2060everyone" in joined and "@\u2060here" in joined
    assert "http://evil" not in json.dumps(payload)


def test_hostile_customer_and_item_reach_the_hook_inert(sim: ChatSim) -> None:
    [result] = deliver(sim.endpoint("slack"), sample(name=CUSTOMER, item_name=ITEM))
    assert result.kind == "ok", result.detail
    payload = sim.received("slack")[0].json
    for text in texts(payload):
        bare = without_link(text)
        assert "<" not in bare and ">" not in bare, text  # no tag, no <!everyone>, no <url|x>
        assert "http://" not in bare and not re.search(r"@everyone\b", bare), text
    head, rest = (block["text"]["text"] for block in payload["blocks"])
    assert "*" not in head[1:-1] and "*" not in rest  # no bold but the summary's own
    assert "&lt;s&gt;∗∗x∗∗ @\u2060everyone [x](http：//evil)" in head
    assert "1 × ∗big∗ &lt;b&gt; 0" in rest and rest.endswith(LINK)
    assert "＜s＞∗∗x∗∗ ＠everyone [x](http：//evil)" in payload["text"]


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("<s>", "&lt;s&gt;"),
        ("a & b", "a &amp; b"),
        ("&lt;", "&amp;lt;"),  # already-escaped text stays what it was
        ("<!here>", "&lt;!here&gt;"),
        ("@channel @Here x@everyone", "@\u2060channel @\u2060Here x@\u2060everyone"),
        ("ops@example.com @channels", "ops@example.com @channels"),
        ("**bold** _i_ ~s~ `c`", "∗∗bold∗∗ ＿i＿ ～s～ ˋcˋ"),  # no escape in mrkdwn: lookalikes
        ("[x](http://evil)", "[x](http：//evil)"),  # no meaning in mrkdwn, but no autolink
    ],
)
def test_escape(raw: str, safe: str) -> None:
    assert escape_slack(raw) == safe


def test_link_cannot_be_split_or_relabelled() -> None:
    event = sample(admin_url="https://shop.example/o?a=1&b=2|Click here>x")
    link = rendered(event)["blocks"][-1]["text"]["text"].split("\n")[-1]
    target = "https://shop.example/o?a=1&amp;b=2%7CClick%20here%3Ex"
    assert link == f"Open: <{target}|https://shop.example/o?a=1&amp;b=2|Click here&gt;x>"


def test_javascript_admin_url_is_not_a_link() -> None:
    payload = rendered(sample(admin_url="javascript:alert(1)"))
    assert len(payload["blocks"]) == 2 and "javascript" not in json.dumps(payload)
    assert "Open:" not in json.dumps(payload)


def test_many_long_items_fit_the_section_limit(sim: ChatSim) -> None:
    event = sample(items=25, item_name="&" * 190)  # each escapes to ~960 characters
    payload = rendered(event)
    head, rest = (block["text"]["text"] for block in payload["blocks"])
    assert len(head) <= SECTION_LIMIT and len(rest) <= SECTION_LIMIT
    shown = rest.count("× ")
    assert 0 < shown < 10 and rest.endswith(f"… (+{25 - shown} items)\n{LINK}")
    [result] = deliver(sim.endpoint("slack"), event)
    assert result.kind == "ok"


def test_300_items_are_shortened_into_one_message(sim: ChatSim) -> None:
    event = sample(items=300, item_name="R&D " * 48)  # ~390 characters each as mrkdwn
    [result] = deliver(sim.endpoint("slack"), event)
    assert result.kind == "ok", result.detail
    [got] = sim.attempts("slack")  # one message, not a thread of them
    head, rest = (block["text"]["text"] for block in got.json["blocks"])
    assert len(head) <= SECTION_LIMIT and len(rest) <= SECTION_LIMIT
    shown = rest.count("× ")
    assert 0 < shown < 10  # the section limit, not only the template's 10 items, cut them
    assert rest.endswith(f"… (+{300 - shown} items)\n{LINK}")
    assert head == f"*{SUMMARY}*"


def test_items_beyond_the_template_limit_keep_its_count() -> None:
    rest = rendered(sample(items=12))["blocks"][1]["text"]["text"]
    assert rest.count("× ") == 10 and rest.endswith(f"… (+2 items)\n{LINK}")


def test_chinese_marker() -> None:
    payload = rendered(sample(items=25, item_name="&" * 190), locale="zh-CN")
    assert payload["text"].startswith("【acme】订单 #1001 已付款 · €25.00")
    assert re.search(r"…（另有 \d+ 项）\n后台：<https://", payload["blocks"][1]["text"]["text"])


def test_digest_fits_and_counts_the_rest(sim: ChatSim) -> None:
    ch = offline()
    payload = json.loads(ch.render_digest(order_events(30)))
    assert payload["text"].startswith("Digest: 30 order alerts")
    assert payload["unfurl_links"] is False and payload["unfurl_media"] is False
    head, rest = (block["text"]["text"] for block in payload["blocks"])
    assert head == f"*{payload['text']}*"
    lines = rest.split("\n")
    assert lines[0] == "Total of 30 orders: €750.00"
    assert lines[1] == "[acme] Order #1000 paid · €25.00 · Jane D. · Nov 22, 2026 09:32 UTC"
    assert len(lines) == 1 + 10 + 1 and lines[-1] == "… and 20 more"
    assert ch.render_digest(order_events(30)) == ch.render_digest(order_events(30))


def test_digest_of_hostile_names_is_inert_and_fits() -> None:
    events = [sample(name=HOSTILE * 3, item_name=ITEM) for _ in range(400)]
    payload = json.loads(offline().render_digest(events))
    for text in texts(payload):
        assert "<" not in text and ">" not in text and len(text) <= SECTION_LIMIT, text
        assert not re.search(r"@(everyone|here|channel)\b", text)
    rest = payload["blocks"][1]["text"]["text"]
    shown = rest.count("[acme] Order #1001 paid")
    assert 0 < shown <= 10 and rest.endswith(f"\n… and {400 - shown} more")
    assert "&lt;!channel&gt;" in rest and "∗∗" in rest  # each line escaped for mrkdwn


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
