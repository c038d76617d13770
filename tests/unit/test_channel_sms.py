"""`sms` channel against `ChatSim`'s Twilio Messages API: success (Basic auth, form body), every
refusal it has by Twilio error code, segment-aware text within `max_segments`, and the auth
token kept out of details and reprs."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from pollerd.channels.base import ChannelContext, SendResult
from pollerd.channels.sms import SmsChannel, segments
from pollerd.model import Event, LineItem
from pollerd_sim.chat import ChatSim
from pollerd_sim.chat_apis import sms_segments
from pollerd_sim.testing.events import paid_event
from pollerd_sim.testing.sending import send_events

AT = datetime(2026, 11, 22, 9, 32, 36, tzinfo=UTC)
ADMIN = "https://shop.example/wp-admin/post.php?post=1001&action=edit"
HOSTILE = "<s>**x** @everyone [x](http://evil)"
TOKEN = "twilio-token-0001"
TO = "+15557654321"


def sample(
    name: str = "Jane D.",
    *,
    test: bool = False,
    items: tuple[LineItem, ...] = (LineItem("Mug", 2, "10.00"),),
    **extra: Any,
) -> Event:
    return paid_event(name, items=items, test=test, **extra)


def options(sim: ChatSim | None, **more: Any) -> dict[str, Any]:
    base = {
        "account_sid": "AC0001",
        "auth_token": TOKEN,
        "sender": "+15550001111",
        "to": TO,
        "api_base": sim.url if sim else "https://api.twilio.com",
    }
    return {k: v for k, v in {**base, **more}.items() if v is not None}


def deliver(opts: dict[str, Any], event: Event | None = None) -> SendResult:
    """Render once and send, as the outbox does."""

    def make(http: httpx.AsyncClient) -> SmsChannel:
        return SmsChannel(ChannelContext("sms", opts, http))

    [result] = send_events(make, [event or sample()]).results
    return result


def text(event: Event, locale: str = "en", **more: Any) -> str:
    ch = SmsChannel(ChannelContext("sms", options(None, **more), None, locale=locale))  # type: ignore[arg-type]
    return ch.render(event)


@pytest.fixture
def sim() -> Iterator[ChatSim]:
    with ChatSim(enforce_rate_limits=False) as server:
        yield server


def test_ok_posts_the_form_with_basic_auth(sim: ChatSim) -> None:
    result = deliver(options(sim))
    assert result.kind == "ok", result.detail
    assert result.detail.startswith("sid SM") and "(queued), 1 segment(s)" in result.detail
    [got] = sim.received("twilio")
    assert got.path == "/2010-04-01/Accounts/AC0001/Messages.json"
    expected = base64.b64encode(f"AC0001:{TOKEN}".encode()).decode()
    assert got.headers["authorization"] == f"Basic {expected}"
    assert got.headers["content-type"].startswith("application/x-www-form-urlencoded")
    assert got.form == {"To": TO, "From": "+15550001111", "Body": text(sample())}
    assert got.form["Body"] == (
        "[acme] Order #1001 paid - €25.00 - Jane D. - Nov 22, 2026 09:32 UTC\n" + ADMIN
    )


def test_messaging_service_instead_of_a_number(sim: ChatSim) -> None:
    result = deliver(options(sim, sender=None, messaging_service_sid="MG0001"))
    assert result.kind == "ok" and "(accepted)" in result.detail
    form = sim.received("twilio")[0].form
    assert form is not None and form["MessagingServiceSid"] == "MG0001" and "From" not in form


@pytest.mark.parametrize(
    ("body", "count"),
    [
        ("", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),  # 160 septets
        ("€" * 81, 2),
        ("a" * 152 + "€", 1),  # 154 septets: still one 160-septet segment
        ("a" * 160 + "€" * 73, 2),  # 306 septets
        ("a" * 152 + "€" + "a" * 152, 3),  # the escape pair is not split across segments
        ("中" * 70, 1),
        ("中" * 71, 2),
        ("中" * 134, 2),
        ("中" * 135, 3),
        ("a" * 69 + "·", 1),  # one non-GSM character makes all of it UCS-2
        ("a" * 70 + "·", 2),
        ("🛒" * 35, 1),  # 70 UTF-16 units
        ("🛒" * 36, 2),
        ("aa" + "🛒" * 66, 3),  # 134 units, but a surrogate pair is never split: 66 | 66 | 2
    ],
)
def test_segments(body: str, count: int) -> None:
    assert segments(body) == count


@pytest.mark.parametrize("body", ["a" * 500, "中文" * 100, "€{}" * 50, "mixed ü ß 😀 text " * 9])
def test_segments_agree_with_the_simulator(body: str) -> None:
    assert segments(body) >= sms_segments(body)


@pytest.mark.parametrize("limit", [1, 2, 3])
@pytest.mark.parametrize("locale", ["en", "zh-CN"])
def test_long_text_fits_max_segments(limit: int, locale: str) -> None:
    event = sample(name="Ä" * 200, email="verylongname@" + "sub." * 30 + "example.com")
    body = text(event, locale=locale, max_segments=limit)
    assert segments(body) <= limit
    assert ("Order #1001 paid" if locale == "en" else "订单 #1001 已付款") in body


def test_parts_are_dropped_least_important_first() -> None:
    event = sample(name="J" * 70)
    full = text(event, max_segments=10)
    assert full.split("\n")[0].split(" - ") == [
        "[acme] Order #1001 paid",
        "€25.00",
        "J" * 70,
        "Nov 22, 2026 09:32 UTC",
    ]
    two = text(event)  # 2 segments: everything fits
    assert two == full
    one = text(event, max_segments=1)  # 160 GSM characters: time and customer go, link stays
    assert one == f"[acme] Order #1001 paid - €25.00\n{ADMIN}"
    assert segments(one) == 1
    # The link outranks the amount; only when even "title + link" is too long does it go.
    short = text(sample(admin_url=ADMIN + "&x=" + "y" * 66), max_segments=1)
    assert short == f"[acme] Order #1001 paid\n{ADMIN}&x={'y' * 66}"
    long_link = ADMIN + "&x=" + "y" * 150
    assert text(sample(admin_url=long_link), max_segments=1) == "[acme] Order #1001 paid"


def test_test_orders_stay_marked() -> None:
    assert text(sample(test=True), max_segments=1).startswith("[TEST] [acme] Order #1001 paid")


def test_chinese_is_ucs2_and_short() -> None:
    body = text(sample(), locale="zh-CN", max_segments=1)
    assert body.startswith("【acme】订单 #1001 已付款") and len(body) <= 70


def test_hostile_name_goes_out_inert(sim: ChatSim) -> None:
    """SMS has no markup, but phones link URLs and apps act on `@name`: the name arrives
    readable, with no tag, mention or link left in it (and the item names are not sent)."""
    event = sample(name=HOSTILE, items=(LineItem("*big* <b>", 1, "25.00"),))
    result = deliver(options(sim, max_segments=3), event)
    assert result.kind == "ok", result.detail
    body = sim.received("twilio")[0].form["Body"]  # type: ignore[index]
    assert "- ＜s＞**x** ＠everyone [x](http：//evil) -" in body
    assert "<" not in body and "@everyone" not in body and "http://evil" not in body
    assert "big" not in body
    assert segments(body) <= 3 and body.endswith(f"\n{ADMIN}")


def test_300_items_are_one_short_message_with_the_link(sim: ChatSim) -> None:
    """The SMS layout lists no items at all (each segment is paid for): a 300-item order is
    the same one- or two-segment text, link included, in ONE message."""
    items = tuple(LineItem(f"Sticker {n}", 1, "0.10") for n in range(300))
    result = deliver(options(sim), sample(items=items))
    assert result.kind == "ok", result.detail
    [got] = sim.received("twilio")
    body = got.form["Body"]  # type: ignore[index]
    assert body == "[acme] Order #1001 paid - €25.00 - Jane D. - Nov 22, 2026 09:32 UTC\n" + ADMIN
    assert "Sticker" not in body and segments(body) == 1


def test_newlines_in_order_text_cannot_forge_lines() -> None:
    body = text(sample(name="Jane\nOrder #9999 refunded\r\nx"))
    assert body.count("\n") == 1 and body.endswith(ADMIN)


@pytest.mark.parametrize(
    ("fault", "kind", "scope"),
    [
        ("21610", "permanent", "recipient"),
        ("21211", "permanent", "message"),
        ("21606", "permanent", "channel"),
        ("21408", "permanent", "channel"),
        ("20003", "permanent", "channel"),
        ("500", "retry", "message"),
        ("reset", "retry", "message"),
    ],
)
def test_refusals(sim: ChatSim, fault: str, kind: str, scope: str) -> None:
    sim.fail("twilio", fault)
    result = deliver(options(sim))
    assert (result.kind, result.scope) == (kind, scope), result.detail
    if fault not in ("reset",):
        assert (fault if fault != "500" else "20500") in result.detail
    assert not sim.received("twilio")


def test_unsubscribed_recipient_says_how_to_undo_it(sim: ChatSim) -> None:
    sim.fail("twilio", "21610")
    result = deliver(options(sim))
    assert "STOP" in result.detail and "START" in result.detail


@pytest.mark.parametrize(("after", "expected"), [(30, 30.0), (None, None)])
def test_20429_is_retried(sim: ChatSim, after: float | None, expected: float | None) -> None:
    sim.fail("twilio", "20429", retry_after=after)
    result = deliver(options(sim))
    assert result.kind == "retry" and result.retry_after == expected and "20429" in result.detail


def test_wrong_token_and_sender_are_channel_problems(sim: ChatSim) -> None:
    auth = deliver(options(sim, auth_token="wrong-token-9999"))
    sender = deliver(options(sim, sender="+15559999999"))
    account = deliver(options(sim, account_sid="AC9999"))
    assert (auth.kind, auth.scope) == ("permanent", "channel") and "20003" in auth.detail
    assert "wrong-token-9999" not in auth.detail
    assert (sender.kind, sender.scope) == ("permanent", "channel") and "21606" in sender.detail
    assert (account.kind, account.scope) == ("permanent", "channel")


def test_timeout_may_have_sent_and_is_retried(sim: ChatSim) -> None:
    sim.fail("twilio", "slow")
    result = deliver(options(sim, timeout="200ms"))
    assert result.kind == "retry" and "no answer after 0.2s" in result.detail
    assert "may have been sent" in result.detail


def test_refused_connection_is_retried() -> None:
    with ChatSim() as sim:
        opts = options(sim)
    result = deliver(opts)
    assert result.kind == "retry" and "ConnectError" in result.detail
    assert "may have been sent" not in result.detail


@pytest.mark.parametrize(
    ("status", "body", "kind", "scope"),
    [
        (201, {"sid": "SM1", "status": "queued"}, "ok", "message"),
        (200, {"hello": "proxy"}, "permanent", "channel"),
        (400, {"code": 21612, "message": "unreachable"}, "permanent", "recipient"),
        (400, {"code": 21614, "message": "not a mobile"}, "permanent", "recipient"),
        (400, {"code": 21608, "message": "unverified (trial)"}, "permanent", "channel"),
        (400, {"code": 21617, "message": "too long"}, "permanent", "message"),
        (404, {"code": 20404, "message": "not found"}, "permanent", "channel"),
        (429, None, "retry", "message"),
        (503, None, "retry", "message"),
        (302, None, "permanent", "channel"),
    ],
)
def test_classification(status: int, body: Any, kind: str, scope: str) -> None:
    ch = SmsChannel(ChannelContext("sms", options(None), None))  # type: ignore[arg-type]
    response = (
        httpx.Response(status, json=body) if body is not None else httpx.Response(status, text="x")
    )
    result = ch._classify(response, 1)
    assert (result.kind, result.scope) == (kind, scope), result.detail


def test_secrets_never_in_details_or_repr(sim: ChatSim) -> None:
    results = []
    for fault in ("21610", "21211", "20003", "20429", "500", "reset"):
        sim.fail("twilio", fault)
        results.append(deliver(options(sim)))
    ch = SmsChannel(ChannelContext("sms", options(sim), None))  # type: ignore[arg-type]
    echo = httpx.Response(401, json={"code": 20003, "message": f"bad token {TOKEN}"})
    for result in [*results, ch._classify(echo, 1)]:
        assert TOKEN not in result.detail, result.detail
    for shown in (repr(ch.options), str(ch.options), repr(ch), repr(ch.options.model_dump())):
        assert TOKEN not in shown


@pytest.mark.parametrize(
    ("more", "problem"),
    [
        ({"to": "5557654321"}, "E.164"),
        ({"sender": None}, "exactly one of sender and messaging_service_sid"),
        ({"messaging_service_sid": "MG1"}, "exactly one of sender and messaging_service_sid"),
        ({"account_sid": "SK0001"}, "Account SID"),
        ({"max_segments": 0}, "greater than or equal to 1"),
        ({"api_base": "api.twilio.com"}, "http:// or https://"),
        ({"auth_token": ""}, "non-empty"),
    ],
)
def test_bad_options(more: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError) as caught:
        SmsChannel.Options.model_validate(options(None, **more))
    assert problem in str(caught.value)
    assert TOKEN not in str(caught.value)


def probe(opts: dict[str, Any]) -> str | None:
    async def go() -> str | None:
        async with httpx.AsyncClient() as http:
            return await SmsChannel(ChannelContext("sms", opts, http)).probe()

    return asyncio.run(go())


def test_check_probe_reads_the_account_and_sends_nothing(sim: ChatSim) -> None:
    """Issue 12 item 9: the account resource proves account_sid + auth_token, read-only."""
    from pollerd.channels.base import ProbeFailed

    assert probe(options(sim)) == "account readable (credentials accepted), nothing sent"
    assert all(not got.path.endswith("/Messages.json") for got in sim.received("twilio"))
    with pytest.raises(ProbeFailed, match=r"account: HTTP 401 \(check account_sid") as info:
        probe(options(sim, auth_token="wrong-token-0002"))
    assert "wrong-token-0002" not in str(info.value)
