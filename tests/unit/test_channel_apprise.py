"""`apprise` bridge channel against loopback receivers only: Apprise's generic `json://` and
`form://` plugins posting to `WebhookSink` (or a tiny stdlib server for redirects). Covers the
result mapping, one attempt per send whatever `?retry=` says, the schemes refused in favour of
the native robots, config errors for URLs Apprise cannot use or a missing/old apprise, and
secrets kept out of details and reprs."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs

import apprise
import httpx
import pytest
from pydantic import ValidationError

from pollerd.channels.apprise_bridge import AppriseChannel
from pollerd.channels.base import ChannelContext, SendResult
from pollerd.config import load
from pollerd.errors import ConfigError
from pollerd.model import Event, LineItem
from pollerd_sim import WebhookSink
from pollerd_sim.testing.events import paid_event
from pollerd_sim.testing.ports import free_port
from pollerd_sim.testing.sending import send_events

AT = datetime(2026, 11, 22, 9, 32, 36, tzinfo=UTC)
USER, PASSWORD = "hookuser", "PW_TOPSECRET_1234"
PATH_TOKEN, HEADER_TOKEN = "PATHTOKEN_TOPSECRET_5678", "HDR_TOPSECRET_9abc"
SECRETS = (PASSWORD, PATH_TOKEN, HEADER_TOKEN)
SUMMARY = "[acme] Order #1001 paid · €25.00 · Jane D. · Nov 22, 2026 09:32 UTC"
HOSTILE = "<s>**x** @everyone [x](http://evil)"
ADMIN = "https://shop.example/wp-admin/post.php?post=1001&action=edit"


def sample(
    name: str = "Jane D.",
    *,
    items: tuple[LineItem, ...] = (LineItem("Mug", 2, "12.50"),),
    admin_url: str | None = None,
) -> Event:
    return paid_event(name, items=items, admin_url=admin_url)


def hook_url(port: int, scheme: str = "json", query: str = "") -> str:
    extra = f"&{query}" if query else ""
    return (
        f"{scheme}://{USER}:{PASSWORD}@127.0.0.1:{port}/hooks/{PATH_TOKEN}"
        f"?+X-Token={HEADER_TOKEN}{extra}"
    )


def deliver(
    url: str, *, times: int = 1, locale: str = "en", event: Event | None = None, **options: Any
) -> list[SendResult]:
    """Render once, send `times` times, like the outbox does."""

    def make(http: httpx.AsyncClient) -> AppriseChannel:
        return AppriseChannel(
            ChannelContext("ops-apprise", {"url": url, **options}, http, locale=locale)
        )

    return send_events(make, [event or sample()], times=times).results


def assert_no_secrets(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, text


@pytest.fixture
def sink() -> Iterator[WebhookSink]:
    with WebhookSink() as server:
        yield server


def test_ok_posts_summary_title_and_detail_body(sink: WebhookSink) -> None:
    [result] = deliver(hook_url(sink.port))
    assert result.kind == "ok", result.detail
    assert result.detail == f"apprise json://127.0.0.1:{sink.port}: sent"
    [got] = sink.receipts
    assert got.path == f"/hooks/{PATH_TOKEN}"
    assert got.headers["x-token"] == HEADER_TOKEN  # the URL's +Header reached the receiver
    payload = got.json()
    assert payload["title"] == SUMMARY
    assert payload["message"].splitlines() == [
        "- Total: €25.00",
        "- Customer: Jane D.",
        "- 2 × Mug",
    ]


def test_fixed_title_moves_the_summary_into_the_body_in_chinese(sink: WebhookSink) -> None:
    [result] = deliver(hook_url(sink.port), locale="zh-CN", title="新订单提醒")
    assert result.kind == "ok", result.detail
    payload = sink.receipts[0].json()
    assert payload["title"] == "新订单提醒"
    summary, *lines = payload["message"].splitlines()
    assert summary.startswith("**【acme】订单 #1001 已付款 · €25.00 · Jane D. · 2026年11月22日")
    assert lines[:2] == ["", "- 金额：€25.00"]


def test_form_scheme_posts_fields(sink: WebhookSink) -> None:
    [result] = deliver(hook_url(sink.port, scheme="form"))
    assert result.kind == "ok", result.detail
    fields = parse_qs(sink.receipts[0].body.decode())
    assert fields["title"] == [SUMMARY]


def test_broadcast_mentions_in_order_text_are_broken(sink: WebhookSink) -> None:
    event = sample(name="@everyone @here Bob")

    async def go() -> str:
        async with httpx.AsyncClient() as http:
            channel = AppriseChannel(ChannelContext("a", {"url": hook_url(sink.port)}, http))
            return channel.render(event)

    rendered = json.loads(asyncio.run(go()))
    assert "@everyone" not in rendered["body"] and "＠everyone ＠here Bob" in rendered["body"]
    assert "@here" not in rendered["body"]
    assert "＠everyone ＠here Bob" in rendered["title"]


def render(event: Event, url: str = "json://127.0.0.1:9/", **options: Any) -> dict[str, Any]:
    """What `render` stores for `event`, decoded."""
    channel = AppriseChannel(ChannelContext("a", {"url": url, **options}, None))  # type: ignore[arg-type]
    stored = json.loads(channel.render(event))
    assert isinstance(stored, dict)
    return stored


def test_stored_form_is_markdown_title_and_body() -> None:
    stored = render(sample(admin_url=ADMIN))
    assert stored == {
        "title": SUMMARY,
        "body": f"- Total: €25.00\n- Customer: Jane D.\n- 2 × Mug\n- Open: [{ADMIN}]({ADMIN})",
        "format": "markdown",
    }
    fixed = render(sample(), title="Shop")
    assert fixed["title"] == "Shop" and fixed["body"].startswith(f"**{SUMMARY}**\n")


def test_hostile_customer_and_item_are_inert_on_the_wire(sink: WebhookSink) -> None:
    """Apprise treats the whole message as Markdown (and writes the title into the body of
    services without a title field), so order data is escaped in title and body alike. Sent
    through `?format=html`, Apprise's own Markdown → HTML conversion shows the result: no
    tag, no bold, no mention, no link."""
    event = sample(HOSTILE, items=(LineItem("*big* <b>", 1, "25.00"),))
    stored = render(event)
    for text in (stored["title"], stored["body"]):
        assert "＜s＞∗∗x∗∗ ＠everyone ［x］(http：//evil)" in text
        assert "<" not in text and "*" not in text and "@everyone" not in text
        assert "](" not in text and "http://evil" not in text
    assert "- 1 × ∗big∗ ＜b＞" in stored["body"]
    [result] = deliver(hook_url(sink.port, query="format=html"), event=event)
    assert result.kind == "ok", result.detail
    page = sink.receipts[0].json()["message"]
    assert "Customer: ＜s＞∗∗x∗∗ ＠everyone ［x］(http：//evil)" in page
    for live in ("<s>", "<b>", "<strong>", "<em>", "<a ", "@everyone", "http://evil"):
        assert live not in page, (live, page)


def test_300_items_show_ten_the_count_and_the_link(sink: WebhookSink) -> None:
    items = tuple(LineItem(f"Sticker {n}", 1, "0.10") for n in range(300))
    [result] = deliver(hook_url(sink.port), event=sample(items=items, admin_url=ADMIN))
    assert result.kind == "ok", result.detail
    [got] = sink.receipts
    lines = got.json()["message"].splitlines()
    assert [line for line in lines if "Sticker" in line] == [
        f"- 1 × Sticker {n}" for n in range(10)
    ]
    assert lines[-2:] == ["- … (+290 items)", f"- Open: [{ADMIN}]({ADMIN})"]


def test_a_short_service_limit_drops_items_but_keeps_the_link() -> None:
    """Apprise's own `body_maxlen` per service is the size limit (Apprise would otherwise
    pass an oversized text upstream, to be refused or cut there)."""
    items = tuple(LineItem(f"Sticker {n}", 1, "0.10") for n in range(300))
    channel = AppriseChannel(
        ChannelContext("a", {"url": "json://127.0.0.1:9/"}, None)  # type: ignore[arg-type]
    )
    assert channel._service is not None
    channel._service.body_maxlen = 250
    stored = json.loads(channel.render(sample(items=items, admin_url=ADMIN)))
    body = stored["body"]
    assert len(body) <= 250 and body.count("Sticker") < 10
    assert body.endswith(f"items)\n- Open: [{ADMIN}]({ADMIN})") and "- … (+" in body


def test_renderings_stored_before_markdown_are_sent_as_text(sink: WebhookSink) -> None:
    """An outbox row rendered by an older pollerd has no `format`: it is still plain text."""
    sent: list[dict[str, Any]] = []

    async def go() -> None:
        async with httpx.AsyncClient() as http:
            channel = AppriseChannel(ChannelContext("a", {"url": hook_url(sink.port)}, http))
            assert channel._apprise is not None
            real = channel._apprise.async_notify

            async def spy(**kwargs: Any) -> Any:
                sent.append(kwargs)
                return await real(**kwargs)

            channel._apprise.async_notify = spy  # type: ignore[method-assign]
            old = json.dumps({"title": "t", "body": "**not bold**"})
            assert (await channel.send(sample(), old)).kind == "ok"
            assert (await channel.send(sample(), channel.render(sample()))).kind == "ok"

    asyncio.run(go())
    assert [call["body_format"] for call in sent] == ["text", "markdown"]


def test_plain_text_rendering_is_sent_with_its_first_line_as_title(sink: WebhookSink) -> None:
    """A rendering that is not this channel's JSON (e.g. a base-class plain-text one)."""
    event = sample()

    async def go() -> SendResult:
        async with httpx.AsyncClient() as http:
            channel = AppriseChannel(ChannelContext("a", {"url": hook_url(sink.port)}, http))
            return await channel.send(event, "2 order alerts\n[acme] Order #1 by @everyone")

    assert asyncio.run(go()).kind == "ok"
    payload = sink.receipts[0].json()
    assert payload["title"] == "2 order alerts"
    assert payload["message"] == "[acme] Order #1 by @\u2060everyone"


@pytest.mark.parametrize("mode", ["500", "429", "410"])
def test_failure_is_one_attempt_and_a_retry(sink: WebhookSink, mode: str) -> None:
    """`?retry=3` in the URL is overridden: the outbox owns retries. Apprise cannot tell a 410
    from a 503 (its result carries no status), so both are retries with Apprise's reason."""
    sink.set_mode(mode)
    [result] = deliver(hook_url(sink.port, query="retry=3&wait=0"))
    assert result.kind == "retry", result
    assert result.detail.startswith(f"apprise json://127.0.0.1:{sink.port}: not sent: ")
    assert f"error={mode}" in result.detail
    assert len(sink.attempts) == 1
    assert_no_secrets(result.detail)


def test_resend_after_a_failure_is_identical(sink: WebhookSink) -> None:
    sink.queue_modes("500")
    first, second = deliver(hook_url(sink.port), times=2)
    assert (first.kind, second.kind) == ("retry", "ok")
    one, two = sink.attempts
    assert one.body == two.body


def test_connection_refused_is_retry() -> None:
    [result] = deliver(hook_url(free_port()))
    assert result.kind == "retry", result
    assert "Connection error" in result.detail
    assert_no_secrets(result.detail)


def test_dropped_connection_is_retry(sink: WebhookSink) -> None:
    sink.set_mode("down")
    [result] = deliver(hook_url(sink.port))
    assert result.kind == "retry", result


def test_timeout_is_retry_and_the_loop_stays_free(sink: WebhookSink) -> None:
    """The send runs off the event loop: a ticker keeps ticking while Apprise waits."""
    sink.set_mode("slow", delay=1.5)
    event = sample()
    gaps: list[float] = []

    async def go() -> tuple[SendResult, float]:
        async with httpx.AsyncClient() as http:
            options = {"url": hook_url(sink.port), "timeout": "400ms"}
            channel = AppriseChannel(ChannelContext("a", options, http))
            rendered = channel.render(event)
            done = asyncio.Event()

            async def ticker() -> None:
                last = time.monotonic()
                while not done.is_set():
                    await asyncio.sleep(0.02)
                    now = time.monotonic()
                    gaps.append(now - last)
                    last = now

            task = asyncio.create_task(ticker())
            started = time.monotonic()
            result = await channel.send(event, rendered)
            elapsed = time.monotonic() - started
            done.set()
            await task
            return result, elapsed

    result, elapsed = asyncio.run(go())
    assert result.kind == "retry", result
    assert elapsed < 1.4  # the 400 ms timeout, not the sink's 1.5 s answer, ended the send
    assert len(gaps) >= 5 and max(gaps) < 0.3
    assert_no_secrets(result.detail)


class _Redirect(BaseHTTPRequestHandler):
    hits: ClassVar[list[tuple[str, str]]] = []

    def _answer(self) -> None:
        type(self).hits.append((self.command, self.path))
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        if self.path.startswith("/old"):
            self.send_response(302)
            self.send_header("Location", "/new")
        else:
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_GET = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def redirector() -> Iterator[int]:
    _Redirect.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def test_redirect_is_not_followed_unless_the_url_asks(redirector: int) -> None:
    """requests turns a POST through a 302 into a bodyless GET, which Apprise calls sent."""
    [result] = deliver(f"json://127.0.0.1:{redirector}/old")
    assert result.kind == "retry", result
    assert _Redirect.hits == [("POST", "/old")]
    [result] = deliver(f"json://127.0.0.1:{redirector}/old?redirect=yes")
    assert result.kind == "ok", result
    assert _Redirect.hits[1:] == [("POST", "/old"), ("GET", "/new")]


# config-time checks -------------------------------------------------------------------------

WECOM_FIX = (
    "Apprise reports WeCom's HTTP 200 errcode failures as sent "
    '(use the native channel: type = "wecom")'
)
NATIVE = [
    ("wecombot://KEY_TOPSECRET_0001", "wecombot://", WECOM_FIX),
    ("WeComBot://KEY_TOPSECRET_0001", "wecombot://", WECOM_FIX),
    (
        "dingtalk://SEC_TOPSECRET@TOKEN_TOPSECRET/",
        "dingtalk://",
        "Apprise reports DingTalk's HTTP 200 errcode failures as sent "
        '(use the native channel: type = "dingtalk")',
    ),
    (
        "feishu://TOKEN_TOPSECRET",
        "feishu://",
        "Apprise cannot sign Feishu requests and reports its HTTP 200 error codes as sent "
        '(use the native channel: type = "feishu")',
    ),
    (
        "lark://TOKEN-TOPSECRET",
        "lark://",
        "Apprise cannot sign Lark requests and reports its HTTP 200 error codes as sent "
        '(use the native channel: type = "lark")',
    ),
    (
        "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=KEY_TOPSECRET_0001",
        "qyapi.weixin.qq.com",
        WECOM_FIX,
    ),
    (
        "https://open.larksuite.com/open-apis/bot/v2/hook/TOKEN-TOPSECRET",
        "open.larksuite.com",
        '(use the native channel: type = "lark")',
    ),
    (
        "https://oapi.dingtalk.com/robot/send?access_token=TOKEN_TOPSECRET",
        "oapi.dingtalk.com",
        '(use the native channel: type = "dingtalk")',
    ),
    (
        "jsons://open.feishu.cn/open-apis/bot/v2/hook/TOKEN_TOPSECRET",
        "open.feishu.cn",
        '(use the native channel: type = "feishu")',
    ),
]


def config_error(tmp_path: Path, url: str, extra: str = "") -> str:
    path = tmp_path / "pollerd.toml"
    path.write_text(
        f'[[channels]]\nname = "push"\ntype = "apprise"\nurl = "{url}"\n{extra}', encoding="utf-8"
    )
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert "TOPSECRET" not in message
    return message


@pytest.mark.parametrize(("url", "what", "fix"), NATIVE, ids=[n[1] for n in NATIVE])
def test_native_robot_urls_are_refused(tmp_path: Path, url: str, what: str, fix: str) -> None:
    message = config_error(tmp_path, url)
    assert message.startswith(
        f"config: channels[0].url: {what} is not supported through Apprise: "
    ), message
    assert message.endswith(fix), message


def test_wecombot_message_exactly(tmp_path: Path) -> None:
    assert config_error(tmp_path, "wecombot://KEY_TOPSECRET_0001") == (
        "config: channels[0].url: wecombot:// is not supported through Apprise: " + WECOM_FIX
    )


UNUSABLE = [
    ("not-a-url-TOPSECRET", "channels[0].url: must be an Apprise URL"),
    ("nosuch://TOPSECRET", "channels[0].url: Apprise has no service for nosuch:// (check the "
                           "scheme against Apprise's list of services)"),
    ("tgram://TOPSECRET/123", "channels[0].url: Apprise cannot parse this Telegram URL (check "
                              "it against the Telegram URL format in Apprise's documentation)"),
    ("json://a.example/TOPSECRET, json://b.example/x",
     "channels[0].url: holds more than one URL (give each URL a channel of its own)"),
]  # fmt: skip


@pytest.mark.parametrize(("url", "expected"), UNUSABLE, ids=[u[1][15:40] for u in UNUSABLE])
def test_urls_apprise_cannot_use_are_config_errors(tmp_path: Path, url: str, expected: str) -> None:
    assert expected in config_error(tmp_path, url)


def test_good_config_validates_and_keeps_the_url_secret(tmp_path: Path) -> None:
    path = tmp_path / "pollerd.toml"
    path.write_text(
        '[[channels]]\nname = "push"\ntype = "apprise"\nurl = "env:PUSH_URL"\n'
        'title = "Shop"\ntimeout = "5s"\n',
        encoding="utf-8",
    )
    url = hook_url(8080)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PUSH_URL", url)
        settings = load(path)
    options = settings.channel_options["push"]
    assert isinstance(options, AppriseChannel.Options)
    assert options.url.get() == url and options.title == "Shop"
    assert options.timeout.total_seconds() == 5
    assert_no_secrets(repr(options), repr(settings), str(options.url))


def test_validation_error_does_not_echo_the_url() -> None:
    with pytest.raises(ValidationError) as info:
        AppriseChannel.Options.model_validate({"url": "lark://TOKEN-TOPSECRET"})
    assert "TOPSECRET" not in str(info.value)


def test_missing_apprise_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "apprise", None)  # `import apprise` raises ImportError
    message = config_error(tmp_path, "ntfys://ntfy.sh/TOPSECRET")
    assert message == (
        "config: channels[0].type: the apprise channel needs the apprise package, which is not "
        "installed (pip install 'pollerd[apprise]')"
    )


def test_apprise_1x_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """1.x `notify()` returns a bool: no per-service reason to report."""
    monkeypatch.setattr(apprise, "__version__", "1.9.4")
    message = config_error(tmp_path, "ntfys://ntfy.sh/TOPSECRET")
    assert message == (
        "config: channels[0].type: the apprise channel cannot use the installed apprise: "
        "apprise 1.9.4 is installed, pollerd needs >= 2.2 (pip install 'pollerd[apprise]')"
    )


def test_native_scheme_is_refused_even_without_apprise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "apprise", None)
    message = config_error(tmp_path, "wecombot://KEY_TOPSECRET_0001")
    assert message.startswith("config: channels[0].url: wecombot:// is not supported"), message


def test_secrets_stay_out_of_repr_and_masked_text(sink: WebhookSink) -> None:
    async def go() -> AppriseChannel:
        async with httpx.AsyncClient() as http:
            return AppriseChannel(ChannelContext("a", {"url": hook_url(sink.port)}, http))

    channel = asyncio.run(go())
    assert_no_secrets(repr(channel.options), str(channel.options.url))
    # Apprise's log lines quote URLs; whatever it says goes through the mask.
    quoted = f"Unparseable JSON URL {hook_url(sink.port)} user {USER} token {PATH_TOKEN}"
    masked = channel._mask(quoted)
    assert masked == "Unparseable JSON URL **** user **** token ****"
    # ... but a generic HTTP scheme's host is a host, not a secret: it stays readable.
    sent = channel._mask("A Connection error occurred sending JSON notification to 127.0.0.1.")
    assert sent.endswith("to 127.0.0.1.")
