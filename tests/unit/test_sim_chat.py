"""`pollerd_sim.ChatSim`: seven chat/SMS services on loopback, answering like the real ones
(research `notifications.md` §4.1–§4.7, §4.9), over real HTTP.

Signatures are computed here with plain `hmac`, never with the simulator's or a channel's code,
and the research's test vectors are sent literally."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pollerd_sim import ChatSim
from pollerd_sim.chat_bots import dingtalk_sign, feishu_sign
from pollerd_sim.chat_markup import MarkupError, parse_markup

WALL0 = 1_700_000_000.5  # the instant the research's vectors were computed for (§4.2, §4.3)
DING_SECRET = "SECding0001"
FEISHU_SECRET = "feishu-secret-0001"
TWILIO_AUTH = ("AC0001", "twilio-token-0001")
CHAT = "-1001234567890"
DROP: Any = object()  # leave this default argument out of the request


class Clocks:
    """A monotonic clock for the rate windows and a wall clock for signature timestamps."""

    def __init__(self) -> None:
        self.mono = 1000.0

    def __call__(self) -> float:
        return self.mono

    def wall(self) -> float:
        return WALL0 + self.mono - 1000.0

    def advance(self, seconds: float) -> None:
        self.mono += seconds


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


@pytest.fixture
def sim(clocks: Clocks) -> Iterator[ChatSim]:
    with ChatSim(clock=clocks, wall_clock=clocks.wall) as server:
        yield server


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    # One client for the module: building its TLS context costs ~0.1 s per test otherwise.
    with httpx.Client(timeout=5) as c:
        yield c


def ding_sign(secret: str, ts_ms: int) -> str:
    digest = hmac.new(secret.encode(), f"{ts_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return urllib.parse.quote(base64.b64encode(digest).decode(), safe="")


def ding_url(sim: ChatSim, ts_ms: int | None = None, secret: str = DING_SECRET) -> str:
    ts = int(WALL0 * 1000) if ts_ms is None else ts_ms
    return f"{sim.endpoint('dingtalk')}&timestamp={ts}&sign={ding_sign(secret, ts)}"


def feishu_body(msg: dict[str, Any], ts: int = int(WALL0), secret: str = FEISHU_SECRET) -> Any:
    key = f"{ts}\n{secret}".encode()
    sign = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
    return {"timestamp": str(ts), "sign": sign, **msg}


FEISHU_TEXT = {"msg_type": "text", "content": {"text": "order 1001 paid"}}
DING_TEXT = {"msgtype": "text", "text": {"content": "order 1001 paid"}}
WECOM_TEXT = {"msgtype": "text", "text": {"content": "order 1001 paid"}}


def send(sim: ChatSim, client: httpx.Client, service: str, **kw: Any) -> httpx.Response:
    """The minimal valid message for `service`, overridable with httpx keyword arguments."""
    defaults: dict[str, dict[str, Any]] = {
        "wecom": {"url": sim.endpoint("wecom"), "json": WECOM_TEXT},
        "dingtalk": {"url": ding_url(sim), "json": DING_TEXT},
        "feishu": {"url": sim.endpoint("feishu"), "json": feishu_body(FEISHU_TEXT)},
        "slack": {"url": sim.endpoint("slack"), "json": {"text": "order 1001 paid"}},
        "telegram": {
            "url": sim.endpoint("telegram"),
            "json": {"chat_id": CHAT, "text": "<b>order</b> 1001 paid", "parse_mode": "HTML"},
        },
        "discord": {
            "url": sim.endpoint("discord"),
            "json": {"content": "order 1001 paid", "allowed_mentions": {"parse": []}},
        },
        "twilio": {
            "url": sim.endpoint("twilio"),
            "data": {"To": "+15557654321", "From": "+15550001111", "Body": "order 1001 paid"},
            "auth": TWILIO_AUTH,
        },
    }
    args = {k: v for k, v in {**defaults[service], **kw}.items() if v is not DROP}
    return client.post(args.pop("url"), **args)


# -- success -------------------------------------------------------------------------------

SUCCESS = [
    ("wecom", 200, {"errcode": 0, "errmsg": "ok"}),
    ("dingtalk", 200, {"errcode": 0, "errmsg": "ok"}),
    ("feishu", 200, {"code": 0, "msg": "success", "StatusCode": 0}),
    ("slack", 200, "ok"),
    ("telegram", 200, {"ok": True}),
    ("discord", 204, ""),
    ("twilio", 201, {"status": "queued", "error_code": None}),
]


@pytest.mark.parametrize(("service", "status", "expected"), SUCCESS)
def test_each_service_accepts_a_valid_message(
    sim: ChatSim, client: httpx.Client, service: str, status: int, expected: Any
) -> None:
    r = send(sim, client, service)
    assert r.status_code == status
    if isinstance(expected, dict):
        assert expected.items() <= r.json().items()
    else:
        assert r.text == expected
    [got] = sim.received(service)
    assert got.service == service and got.at == 1000.0
    assert b"1001" in got.body
    assert got.headers["host"].startswith("127.0.0.1")
    assert (got.form is not None) == (service == "twilio")
    assert (got.json is not None) == (service != "twilio")
    assert sim.received() == [got]
    [attempt] = sim.attempts(service)
    assert attempt.accepted and attempt.status == status and attempt.forced is None
    assert sim.stats()[service] == {
        "attempts": 1,
        "accepted": 1,
        "refused": 0,
        "forced": 0,
        "pending_failures": 0,
    }


def test_telegram_answers_the_message_with_its_entities(sim: ChatSim, client: httpx.Client) -> None:
    r = send(sim, client, "telegram")
    result = r.json()["result"]
    assert result["text"] == "order 1001 paid"
    assert result["entities"] == [{"offset": 0, "length": 5, "type": "bold"}]
    assert result["chat"] == {"id": int(CHAT), "type": "supergroup"}
    assert result["from"]["is_bot"] is True and result["date"] == int(WALL0)


def test_discord_wait_true_answers_the_message(sim: ChatSim, client: httpx.Client) -> None:
    r = send(sim, client, "discord", url=sim.endpoint("discord") + "?wait=true")
    assert r.status_code == 200
    msg = r.json()
    assert msg["content"] == "order 1001 paid" and msg["webhook_id"] == "111"
    assert msg["id"].isdigit() and msg["mention_everyone"] is False
    assert r.headers["X-RateLimit-Limit"] == "5" and r.headers["X-RateLimit-Remaining"] == "4"


def test_twilio_resource_and_segments(sim: ChatSim, client: httpx.Client) -> None:
    body = "订单" * 36  # 72 UCS-2 units: over one 70-unit segment
    r = send(
        sim, client, "twilio", data={"To": "+8613800001111", "From": "+15550001111", "Body": body}
    )
    data = r.json()
    assert r.status_code == 201 and data["sid"].startswith("SM") and len(data["sid"]) == 34
    assert data["num_segments"] == "2" and data["to"] == "+8613800001111"
    assert data["uri"] == f"/2010-04-01/Accounts/AC0001/Messages/{data['sid']}.json"
    assert sim.received("twilio")[0].form == {
        "To": "+8613800001111",
        "From": "+15550001111",
        "Body": body,
    }


def test_lark_path_and_legacy_slack_form_payload(sim: ChatSim, client: httpx.Client) -> None:
    r = client.post(sim.endpoint("slack"), data={"payload": '{"text":"from a form"}'})
    assert (r.status_code, r.text) == (200, "ok")
    assert sim.received("slack")[0].form == {"payload": '{"text":"from a form"}'}


# -- signatures ----------------------------------------------------------------------------


def test_research_vectors() -> None:
    """§4.2 and §4.3 test vectors, against the simulator's own signing functions."""
    assert (
        urllib.parse.quote(dingtalk_sign("this is secret", 1700000000000), safe="")
        == "sSFWELbV2YwjdDQhWZwTcWlX5BWUx5J6TPpsZmuPii0%3D"
    )
    assert feishu_sign("this is secret", 1700000000) == (
        "OfGzRzoUICBOoc8wVra1e4A1hPfbZ9zqXozA8CWVUuY="
    )


def test_dingtalk_accepts_the_research_vector_literally(
    clocks: Clocks, client: httpx.Client
) -> None:
    with ChatSim(dingtalk_secret="this is secret", clock=clocks, wall_clock=clocks.wall) as sim:
        url = (
            f"{sim.endpoint('dingtalk')}&timestamp=1700000000000"
            "&sign=sSFWELbV2YwjdDQhWZwTcWlX5BWUx5J6TPpsZmuPii0%3D"
        )
        assert client.post(url, json=DING_TEXT).json() == {"errcode": 0, "errmsg": "ok"}
        bad = url.replace("sSFW", "tSFW")
        assert client.post(bad, json=DING_TEXT).json()["errcode"] == 310000
        assert len(sim.received("dingtalk")) == 1


def test_feishu_accepts_the_research_vector_literally(clocks: Clocks, client: httpx.Client) -> None:
    with ChatSim(feishu_secret="this is secret", clock=clocks, wall_clock=clocks.wall) as sim:
        body = {
            "timestamp": "1700000000",
            "sign": "OfGzRzoUICBOoc8wVra1e4A1hPfbZ9zqXozA8CWVUuY=",
            **FEISHU_TEXT,
        }
        assert client.post(sim.endpoint("feishu"), json=body).json()["code"] == 0
        body["timestamp"] = "1700000001"
        assert client.post(sim.endpoint("feishu"), json=body).json()["code"] == 19021
        assert len(sim.received("feishu")) == 1


def test_unsigned_robots_accept_without_signature(clocks: Clocks, client: httpx.Client) -> None:
    with ChatSim(dingtalk_secret=None, feishu_secret=None, clock=clocks) as sim:
        assert client.post(sim.endpoint("dingtalk"), json=DING_TEXT).json()["errcode"] == 0
        assert client.post(sim.endpoint("feishu"), json=FEISHU_TEXT).json()["code"] == 0


# -- refusals hidden in HTTP 200 (and the other shapes) --------------------------------------

SIGN_NOT_MATCH = "sign not match"
HOUR_MS = 3_600_000

REFUSALS: list[tuple[str, dict[str, Any], int, str, Any]] = [
    # service, request overrides, HTTP status, code field, expected code
    ("wecom", {"url": "/cgi-bin/webhook/send?key=wrong"}, 200, "errcode", 93000),
    ("wecom", {"url": "/cgi-bin/webhook/send"}, 200, "errcode", 93000),
    ("wecom", {"json": {"msgtype": "voiceover", "text": {}}}, 200, "errcode", 40008),
    ("wecom", {"json": {"msgtype": "text", "text": {"content": ""}}}, 200, "errcode", 44004),
    ("wecom", {"content": b"{not json", "json": DROP}, 200, "errcode", 40058),
    (
        "wecom",
        {"json": {"msgtype": "text", "text": {"content": "中" * 683}}},  # 2 049 bytes
        200,
        "errcode",
        40058,
    ),
    (
        "wecom",
        {"json": {"msgtype": "markdown", "markdown": {"content": "x" * 4097}}},
        200,
        "errcode",
        40058,
    ),
    ("dingtalk", {"url": "/robot/send?access_token=nope"}, 200, "errcode", 300001),
    ("dingtalk", {"sign_secret": "SECwrong"}, 200, "errcode", 310000),
    ("dingtalk", {"ts_ms": int(WALL0 * 1000) - HOUR_MS - 1000}, 200, "errcode", 310000),
    ("dingtalk", {"url": "/robot/send?access_token=ding-token-0001"}, 200, "errcode", 310000),
    (
        "dingtalk",
        {"json": {"msgtype": "markdown", "markdown": {"text": "no title"}}},
        200,
        "errcode",
        400402,
    ),
    (
        "dingtalk",
        {"json": {"msgtype": "text", "text": {"content": "中" * 6700}}},  # 20 100 bytes
        200,
        "errcode",
        460101,
    ),
    ("dingtalk", {"content": b"x=1", "json": DROP}, 200, "errcode", 43004),
    ("feishu", {"url": "/open-apis/bot/v2/hook/wrong"}, 200, "code", 19001),
    ("feishu", {"json": feishu_body(FEISHU_TEXT, secret="wrong")}, 200, "code", 19021),
    ("feishu", {"json": feishu_body(FEISHU_TEXT, ts=int(WALL0) - 3700)}, 200, "code", 19021),
    ("feishu", {"json": FEISHU_TEXT}, 200, "code", 19021),
    ("feishu", {"json": feishu_body({"content": {"text": "x"}})}, 200, "code", 19002),
    ("feishu", {"content": b"{oops", "json": DROP}, 400, "code", 9499),
    (
        "feishu",
        {"json": feishu_body({"msg_type": "text", "content": {"text": "x" * 21000}})},
        400,
        "code",
        9499,
    ),
    ("telegram", {"url": "/bot999:WRONG/sendMessage"}, 401, "error_code", 401),
    ("telegram", {"json": {"chat_id": "-42", "text": "hi"}}, 400, "error_code", 400),
    ("telegram", {"json": {"chat_id": CHAT, "text": ""}}, 400, "error_code", 400),
    ("telegram", {"json": {"chat_id": CHAT, "text": "x" * 4097}}, 400, "error_code", 400),
    ("discord", {"url": "/api/webhooks/999/discord-token-0001"}, 404, "code", 10015),
    ("discord", {"url": "/api/webhooks/111/wrong"}, 401, "code", 50027),
    ("discord", {"json": {"content": ""}}, 400, "code", 50006),
    ("discord", {"content": b"{", "json": DROP}, 400, "code", 50109),
    ("discord", {"json": {"content": "x" * 2001}}, 400, "code", 50035),
    ("discord", {"json": {"embeds": [{"description": "x"}] * 11}}, 400, "code", 50035),
    ("discord", {"json": {"embeds": [{"description": "x" * 6001}]}}, 400, "code", 50035),
    ("twilio", {"auth": DROP}, 401, "code", 20003),
    ("twilio", {"auth": ("AC0001", "wrong")}, 401, "code", 20003),
    (
        "twilio",
        {"data": {"To": "5551234", "From": "+15550001111", "Body": "x"}},
        400,
        "code",
        21211,
    ),
    ("twilio", {"data": {"From": "+15550001111", "Body": "x"}}, 400, "code", 21604),
    (
        "twilio",
        {"data": {"To": "+15557654321", "From": "+19990000000", "Body": "x"}},
        400,
        "code",
        21606,
    ),
    ("twilio", {"data": {"To": "+15557654321", "Body": "x"}}, 400, "code", 21603),
    ("twilio", {"data": {"To": "+15557654321", "From": "+15550001111"}}, 400, "code", 21602),
    (
        "twilio",
        {"data": {"To": "+15557654321", "From": "+15550001111", "Body": "x" * 1601}},
        400,
        "code",
        21617,
    ),
    ("twilio", {"data": DROP, "json": {"To": "+15557654321", "Body": "x"}}, 400, "code", 21604),
]


@pytest.mark.parametrize(
    ("service", "overrides", "status", "field", "code"),
    REFUSALS,
    ids=[f"{r[0]}-{r[4]}-{i}" for i, r in enumerate(REFUSALS)],
)
def test_refusals_are_answered_in_the_services_own_shape(
    sim: ChatSim,
    client: httpx.Client,
    service: str,
    overrides: dict[str, Any],
    status: int,
    field: str,
    code: int,
) -> None:
    kw = dict(overrides)
    if "sign_secret" in kw or "ts_ms" in kw:
        kw["url"] = ding_url(sim, kw.pop("ts_ms", None), kw.pop("sign_secret", DING_SECRET))
    elif "url" in kw:
        kw["url"] = sim.url + kw["url"]
    r = send(sim, client, service, **kw)
    assert r.status_code == status
    assert r.json()[field] == code
    assert sim.received() == []
    [attempt] = sim.attempts()
    assert not attempt.accepted and attempt.status == status and attempt.forced is None


def test_wecom_byte_limit_is_inclusive(sim: ChatSim, client: httpx.Client) -> None:
    text = {"msgtype": "text", "text": {"content": "中" * 682 + "ab"}}  # exactly 2 048 bytes
    assert send(sim, client, "wecom", json=text).json()["errcode"] == 0
    md = {"msgtype": "markdown", "markdown": {"content": "x" * 4096}}
    assert send(sim, client, "wecom", json=md).json()["errcode"] == 0


def test_wecom_errmsg_has_the_real_shape(sim: ChatSim, client: httpx.Client) -> None:
    body = {"msgtype": "markdown", "markdown": {"content": "x" * 5000}}
    errmsg = send(sim, client, "wecom", json=body).json()["errmsg"]
    assert errmsg.startswith("markdown.content exceed max length 4096.")
    assert "more info at https://open.work.weixin.qq.com/devtool/query?e=40058" in errmsg


def test_dingtalk_errmsgs(sim: ChatSim, client: httpx.Client) -> None:
    bad_sign = client.post(ding_url(sim, secret="SECwrong"), json=DING_TEXT).json()
    assert bad_sign["errmsg"].startswith("sign not match")
    stale = client.post(ding_url(sim, int(WALL0 * 1000) - 2 * HOUR_MS), json=DING_TEXT).json()
    assert stale["errmsg"].startswith("invalid timestamp")
    # A `+` or `/` in the base64 must be URL-encoded: a raw `+` arrives as a space.
    raw = client.post(sim.endpoint("dingtalk") + "&timestamp=1&sign=a+b", json=DING_TEXT)
    assert raw.json()["errcode"] == 310000


def test_keywords_must_appear_in_the_message(clocks: Clocks, client: httpx.Client) -> None:
    with ChatSim(
        dingtalk_keyword="pollerd",
        feishu_keyword="pollerd",
        dingtalk_secret=None,
        feishu_secret=None,
        clock=clocks,
    ) as sim:
        ding = sim.endpoint("dingtalk")
        missing = client.post(ding, json=DING_TEXT).json()
        assert missing["errcode"] == 310000
        assert missing["errmsg"].startswith("keywords not in content")
        in_title = {"msgtype": "markdown", "markdown": {"title": "pollerd", "text": "paid"}}
        assert client.post(ding, json=in_title).json()["errcode"] == 0
        hook = sim.endpoint("feishu")
        assert client.post(hook, json=FEISHU_TEXT).json() == {
            "code": 19024,
            "data": {},
            "msg": "Key Words Not Found",
        }
        post = {
            "msg_type": "post",
            "content": {
                "post": {
                    "zh_cn": {"title": "x", "content": [[{"tag": "text", "text": "pollerd: paid"}]]}
                }
            },
        }
        assert client.post(hook, json=post).json()["code"] == 0
        assert [r.service for r in sim.received()] == ["dingtalk", "feishu"]


@pytest.mark.parametrize(
    ("text", "mode", "detail"),
    [
        ("<b>unclosed", "HTML", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<br>line", "HTML", 'Unsupported start tag "br" at byte offset 0'),
        ("1 < 2", "HTML", 'Unsupported start tag "" at byte offset 2'),
        ("é<i>x</b>", "HTML", 'Unmatched end tag at byte offset 6, expected "</i>", found "</b>"'),
        ("x</b>", "HTML", "Unexpected end tag at byte offset 1"),
        ("Total 1.5", "MarkdownV2", "Character '.' is reserved"),
        ("*bold", "MarkdownV2", "Can't find end of Bold entity at byte offset 0"),
        ("_it", "Markdown", "Can't find end of the entity starting at byte offset 0"),
    ],
)
def test_telegram_parse_errors(
    sim: ChatSim, client: httpx.Client, text: str, mode: str, detail: str
) -> None:
    r = send(sim, client, "telegram", json={"chat_id": CHAT, "text": text, "parse_mode": mode})
    body = r.json()
    assert r.status_code == 400 and body["ok"] is False and body["error_code"] == 400
    assert body["description"].startswith("Bad Request: can't parse entities: " + detail)
    # The fix a channel must apply (§4.5): resend without parse_mode.
    r = send(sim, client, "telegram", json={"chat_id": CHAT, "text": text})
    assert r.status_code == 200 and r.json()["result"]["text"] == text
    assert [a.status for a in sim.attempts()] == [400, 200]


@pytest.mark.parametrize(
    ("text", "mode", "plain", "entities"),
    [
        (
            'A &amp; B <a href="https://x.test/o?a=1&amp;b=2">#1001</a> AT&T',
            "HTML",
            "A & B #1001 AT&T",
            [{"offset": 6, "length": 5, "type": "text_link", "url": "https://x.test/o?a=1&b=2"}],
        ),
        (
            '<pre><code class="language-json">{}</code></pre>😀<s>x</s>',
            "HTML",
            "{}😀x",
            [
                {"offset": 0, "length": 2, "type": "pre", "language": "json"},
                {"offset": 4, "length": 1, "type": "strikethrough"},
            ],
        ),
        (
            "*Paid* order \\#1001 \\- 12\\.50 `a.b` ||s||",
            "MarkdownV2",
            "Paid order #1001 - 12.50 a.b s",
            [
                {"offset": 0, "length": 4, "type": "bold"},
                {"offset": 25, "length": 3, "type": "code"},
                {"offset": 29, "length": 1, "type": "spoiler"},
            ],
        ),
        ("plain <b> not parsed", "", "plain <b> not parsed", []),
    ],
)
def test_markup_parsers(text: str, mode: str, plain: str, entities: list[Any]) -> None:
    assert parse_markup(text, mode) == (plain, entities)


def test_telegram_other_refusals(sim: ChatSim, client: httpx.Client) -> None:
    r = send(sim, client, "telegram", json={"chat_id": CHAT, "text": "x", "parse_mode": "BBCode"})
    assert (r.status_code, r.json()["description"]) == (400, "Bad Request: unsupported parse_mode")
    r = send(sim, client, "telegram", json={"chat_id": "-42", "text": "x"})
    assert r.json()["description"] == "Bad Request: chat not found"
    r = client.post(f"{sim.url}/bot123456:ABC-telegram/getUpdates")
    assert r.status_code == 404
    r = client.get(f"{sim.url}/bot123456:ABC-telegram/getMe")  # read-only, what check calls
    assert r.status_code == 200 and r.json()["result"]["username"] == "pollerd_bot"
    # Form bodies are accepted, like the Bot API.
    r = send(sim, client, "telegram", json=DROP, data={"chat_id": CHAT, "text": "form"})
    assert r.status_code == 200 and r.json()["result"]["text"] == "form"
    with pytest.raises(MarkupError):
        parse_markup("<b>", "HTML")


def test_slack_refusals(sim: ChatSim, client: httpx.Client) -> None:
    r = client.post(sim.url + "/services/T000/B000/WRONG", json={"text": "x"})
    assert (r.status_code, r.text) == (404, "no_service")
    r = client.post(sim.endpoint("slack"), json={"username": "x"})
    assert (r.status_code, r.text) == (400, "no_text")
    r = client.post(sim.endpoint("slack"), content=b"{text:")
    assert (r.status_code, r.text) == (400, "invalid_payload")
    assert r.headers["content-type"].startswith("text/plain")
    assert sim.received() == []


def test_discord_allowed_mentions(sim: ChatSim, client: httpx.Client) -> None:
    url = sim.endpoint("discord") + "?wait=true"
    bad = client.post(url, json={"content": "x", "allowed_mentions": {"parse": ["all"]}})
    assert bad.status_code == 400 and bad.json()["message"] == "Invalid Form Body"
    assert "parse" in bad.json()["errors"]["allowed_mentions"]
    both = {"content": "x", "allowed_mentions": {"parse": ["users"], "users": ["1"]}}
    assert client.post(url, json=both).json()["code"] == 50035
    pings = client.post(url, json={"content": "@everyone paid"}).json()
    assert pings["mention_everyone"] is True  # no allowed_mentions: a customer could ping all
    safe = {"content": "@everyone paid", "allowed_mentions": {"parse": []}}
    assert client.post(url, json=safe).json()["mention_everyone"] is False
    assert len(sim.received("discord")) == 2


# -- rate limits -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "allowed", "window", "field", "code"),
    [
        ("wecom", 20, 60.0, "errcode", 45009),
        ("feishu", 5, 1.0, "code", 11232),
        ("slack", 1, 1.0, None, 429),
        ("telegram", 1, 1.0, "error_code", 429),
        ("discord", 5, 2.0, "retry_after", None),
    ],
)
def test_rate_limits(
    sim: ChatSim,
    client: httpx.Client,
    clocks: Clocks,
    service: str,
    allowed: int,
    window: float,
    field: str | None,
    code: int | None,
) -> None:
    for _ in range(allowed):
        assert send(sim, client, service).status_code < 300
    over = send(sim, client, service)
    if field is None:
        assert over.status_code == code and over.headers["Retry-After"] == "1"
    elif code is None:
        assert over.status_code == 429 and 0 < over.json()[field] <= window
        assert over.headers["X-RateLimit-Remaining"] == "0"
    else:
        assert over.json()[field] == code
    assert len(sim.received(service)) == allowed
    clocks.advance(window)
    assert send(sim, client, service).status_code < 300
    assert len(sim.received(service)) == allowed + 1


def test_telegram_429_carries_retry_after(
    sim: ChatSim, client: httpx.Client, clocks: Clocks
) -> None:
    send(sim, client, "telegram")
    clocks.advance(0.2)
    body = send(sim, client, "telegram").json()
    assert body["parameters"] == {"retry_after": 1}
    assert body["description"] == "Too Many Requests: retry after 1"


def test_telegram_group_limit_is_20_per_minute(
    sim: ChatSim, client: httpx.Client, clocks: Clocks
) -> None:
    for _ in range(20):
        assert send(sim, client, "telegram").status_code == 200
        clocks.advance(1.0)
    over = send(sim, client, "telegram").json()
    assert over["error_code"] == 429 and over["parameters"]["retry_after"] == 40
    clocks.advance(40)
    assert send(sim, client, "telegram").status_code == 200


def test_dingtalk_blocks_for_ten_minutes(
    sim: ChatSim, client: httpx.Client, clocks: Clocks
) -> None:
    for _ in range(20):
        assert send(sim, client, "dingtalk").json()["errcode"] == 0
    assert send(sim, client, "dingtalk").json()["errcode"] == 130101
    clocks.advance(61)  # a plain window would be open again; the block is not
    assert send(sim, client, "dingtalk").json()["errcode"] == 130101
    clocks.advance(540)
    assert send(sim, client, "dingtalk").json()["errcode"] == 0


def test_feishu_minute_window(sim: ChatSim, client: httpx.Client, clocks: Clocks) -> None:
    for _ in range(100):
        assert send(sim, client, "feishu").json()["code"] == 0
        clocks.advance(0.25)  # 4/s stays under 5/s
    assert send(sim, client, "feishu").json()["code"] == 11232


def test_rate_limits_can_be_switched_off(clocks: Clocks, client: httpx.Client) -> None:
    with ChatSim(enforce_rate_limits=False, clock=clocks, wall_clock=clocks.wall) as sim:
        for _ in range(25):
            assert send(sim, client, "wecom").json()["errcode"] == 0
            assert send(sim, client, "slack").status_code == 200
        assert len(sim.received()) == 50


# -- forced failures -------------------------------------------------------------------------

FORCED: list[tuple[str, str, int, str | None, Any]] = [
    ("wecom", "93000", 200, "errcode", 93000),
    ("wecom", "45009", 200, "errcode", 45009),
    ("wecom", "40058", 200, "errcode", 40058),
    ("wecom", "-1", 200, "errcode", -1),
    ("wecom", "500", 500, None, None),
    ("dingtalk", "310000", 200, "errcode", 310000),
    ("dingtalk", "300001", 200, "errcode", 300001),
    ("dingtalk", "130101", 200, "errcode", 130101),
    ("dingtalk", "400", 400, None, None),
    ("feishu", "19021", 200, "code", 19021),
    ("feishu", "19024", 200, "code", 19024),
    ("feishu", "11232", 200, "code", 11232),
    ("feishu", "9499", 400, "code", 9499),
    ("slack", "invalid_payload", 400, None, "invalid_payload"),
    ("slack", "channel_not_found", 404, None, "channel_not_found"),
    ("slack", "channel_is_archived", 410, None, "channel_is_archived"),
    ("slack", "action_prohibited", 403, None, "action_prohibited"),
    ("slack", "429", 429, None, None),
    ("slack", "500", 500, None, None),
    ("telegram", "400_parse", 400, "description", "Bad Request: can't parse entities"),
    ("telegram", "401", 401, "description", "Unauthorized"),
    ("telegram", "403_blocked", 403, "description", "Forbidden: bot was blocked by the user"),
    ("telegram", "429", 429, "error_code", 429),
    ("telegram", "500", 500, "error_code", 500),
    ("discord", "404_unknown_webhook", 404, "code", 10015),
    ("discord", "401", 401, "code", 50027),
    ("discord", "429", 429, "global", False),
    ("discord", "500", 500, None, None),
    ("twilio", "21211", 400, "code", 21211),
    ("twilio", "21610", 400, "code", 21610),
    ("twilio", "20003", 401, "code", 20003),
    ("twilio", "20429", 429, "code", 20429),
    ("twilio", "500", 500, "status", 500),
]


@pytest.mark.parametrize(
    ("service", "kind", "status", "field", "value"),
    FORCED,
    ids=[f"{f[0]}-{f[1]}" for f in FORCED],
)
def test_fail_forces_the_next_answer(
    sim: ChatSim,
    client: httpx.Client,
    service: str,
    kind: str,
    status: int,
    field: str | None,
    value: Any,
) -> None:
    sim.fail(service, kind)
    assert sim.stats()[service]["pending_failures"] == 1
    r = send(sim, client, service)
    assert r.status_code == status
    if field is not None:
        got = r.json()[field]
        assert got.startswith(value) if isinstance(value, str) else got == value
    elif value is not None:
        assert r.text == value
    assert sim.received() == []
    assert [(a.forced, a.accepted) for a in sim.attempts()] == [(kind, False)]
    assert send(sim, client, service).status_code < 300  # one only, then back to normal
    assert len(sim.received(service)) == 1


def test_fail_count_and_retry_after(sim: ChatSim, client: httpx.Client) -> None:
    sim.fail("slack", "429", 2, retry_after=7)
    assert [send(sim, client, "slack").headers.get("Retry-After") for _ in range(2)] == ["7", "7"]
    sim.fail("telegram", "429", retry_after=12)
    assert send(sim, client, "telegram").json()["parameters"] == {"retry_after": 12}
    sim.fail("discord", "429", retry_after=2.5)
    r = send(sim, client, "discord")
    assert r.json()["retry_after"] == 2.5 and r.headers["Retry-After"] == "3"
    sim.fail("twilio", "20429", retry_after=4)
    assert send(sim, client, "twilio").headers["Retry-After"] == "4"
    assert sim.stats()["slack"]["forced"] == 2 and sim.received() == []


def test_fail_rejects_unknown_names(sim: ChatSim) -> None:
    with pytest.raises(ValueError, match=r"wecom has no failure kind '19021'; known: 93000"):
        sim.fail("wecom", "19021")
    with pytest.raises(ValueError, match="no service 'sms'"):
        sim.fail("sms", "500")
    with pytest.raises(ValueError, match="at least 1"):
        sim.fail("slack", "500", 0)


def test_reset_drops_the_connection(sim: ChatSim, client: httpx.Client) -> None:
    sim.fail("feishu", "reset")
    with pytest.raises(httpx.TransportError):
        send(sim, client, "feishu")
    [attempt] = sim.attempts("feishu")
    assert attempt.status == 0 and attempt.forced == "reset" and not attempt.accepted
    assert send(sim, client, "feishu").json()["code"] == 0


def test_slow_outlasts_the_client_but_still_delivers(sim: ChatSim) -> None:
    sim.slow_seconds = 0.5
    sim.fail("wecom", "slow")
    started = time.monotonic()
    with httpx.Client(timeout=0.1) as impatient, pytest.raises(httpx.ReadTimeout):
        send(sim, impatient, "wecom")
    assert time.monotonic() - started < 0.45
    # The service did process it: a client's retry would be a legitimate duplicate.
    assert sim.wait_for(1, "wecom", timeout=5)
    assert sim.attempts("wecom")[0].forced == "slow"


def test_stop_cuts_a_slow_answer_short() -> None:
    sim = ChatSim().start()
    sim.fail("slack", "slow")

    def post() -> None:
        with contextlib.suppress(httpx.HTTPError):  # answered or cut: either is fine here
            httpx.post(sim.endpoint("slack"), json={"text": "x"}, timeout=10)

    worker = threading.Thread(target=post)
    worker.start()
    deadline = time.monotonic() + 5
    while sim.stats()["slack"]["pending_failures"] and time.monotonic() < deadline:
        time.sleep(0.01)
    sim.stop()
    worker.join(timeout=10)
    assert not worker.is_alive()
    # The handler woke up too (instead of sleeping on for 35 s) and finished its work.
    assert sim.wait_for(1, "slack", timeout=3)


# -- bookkeeping -----------------------------------------------------------------------------


def test_unrouted_and_crash(sim: ChatSim, client: httpx.Client) -> None:
    r = client.post(sim.url + "/nowhere", json={})
    assert r.status_code == 404
    assert [a.service for a in sim.attempts("unrouted")] == ["unrouted"]

    def broken(*_: Any) -> Any:
        raise RuntimeError("simulated bug")

    sim.services["wecom"].answer = broken  # type: ignore[method-assign]
    assert send(sim, client, "wecom").status_code == 500


def test_clear_forgets_everything(sim: ChatSim, client: httpx.Client) -> None:
    send(sim, client, "slack")
    sim.fail("slack", "500")
    sim.clear()
    assert sim.received() == [] and sim.attempts() == []
    assert send(sim, client, "slack").status_code == 200  # window and queued failure gone


def test_concurrent_senders_are_all_recorded(clocks: Clocks) -> None:
    with ChatSim(enforce_rate_limits=False, clock=clocks, wall_clock=clocks.wall) as sim:
        statuses: list[int] = []
        lock = threading.Lock()

        def worker(n: int) -> None:
            with httpx.Client(timeout=5) as c:
                for i in range(20):
                    body = {"msgtype": "text", "text": {"content": f"{n}-{i}"}}
                    code = c.post(sim.endpoint("wecom"), json=body).json()["errcode"]
                    with lock:
                        statuses.append(code)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert statuses == [0] * 160
        contents = {r.json["text"]["content"] for r in sim.received("wecom")}
        assert len(contents) == 160
        assert sim.stats()["wecom"]["accepted"] == 160
