"""`feishu` and `lark`: a Feishu (飞书) / Lark custom bot, signed, a card with a text fallback.

The two are one protocol on two hosts (research §4.3): `POST {host}/open-apis/bot/v2/hook/HOOK`
with `open.feishu.cn` for Feishu and `open.larksuite.com` for Lark. The alert goes as an
`interactive` card: the one-line summary as the header title (`plain_text`, taken from the `text`
rendering: no markdown there, and no `<at …>` tag can reach it), the detail lines as one
`lark_md` block rendered from the `feishu` templates (order values as lookalike characters, the
admin link as a markdown link), `<at id=all></at>` with `mention_all`. When the bot rejects the
card as a payload, the alert is resent at once as `text` (the `text` templates, with
`<at user_id="all">` for `mention_all`). The request body may not exceed 20 KB: each payload is
fitted to that on its own, signature included.

Signing ("签名校验") differs from DingTalk's in three ways: the timestamp is in *seconds*, the
HMAC key is `f"{ts}\\n{secret}"` and the message is empty, and `timestamp` + `sign` go in the
JSON body, not the URL. Both are added per attempt, so a retry an hour later is still valid.
A configured `keyword` is appended as a last paragraph (plain text, raw: it must match the bot's
keyword exactly) when the body does not contain it.

Outcomes (research §4.9; Feishu answers HTTP 200 for most failures, 400 for 9499):

    code 0 (or StatusCode 0)                   ok
    11232 frequency limited                    retry after 60 s (5/s and 100/min per bot)
    19021 sign / timestamp                     permanent, channel: wrong secret, a bot that
                                               signs with none configured, or a clock more
                                               than an hour off
    19022 IP not allowed, 19024 keyword        permanent, channel
    19001 "incoming webhook access token       permanent, channel: the bot is gone or the
    invalid"                                   URL is mistyped (other 19001s: message)
    9499 bad request, other codes              permanent, message (after the text fallback)
    HTTP 5xx, 429, timeout, reset              retry
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any, ClassVar
from urllib.parse import quote, urlsplit

from pydantic import AfterValidator, model_validator

from pollerd.channels.base import Budget, ChannelContext, ChannelOptions, destination
from pollerd.channels.robot import (
    Answer,
    Outcome,
    Payload,
    Render,
    Robot,
    bare_credential,
    hook_url,
    one_credential,
    robot_keyword,
    utf8_len,
)
from pollerd.config.types import Duration, invalid
from pollerd.secrets import Secret
from pollerd.templates import Message

FEISHU_HOST = "https://open.feishu.cn"
LARK_HOST = "https://open.larksuite.com"
HOOK_PATH = "/open-apis/bot/v2/hook/"
BODY_BYTES = 20_000  # "request body ≤ 20 KB" (自定义机器人使用指南)
_SIGNATURE_ROOM = 100  # `"timestamp":"…","sign":"…"` added at send time
RATE_WAIT = 60.0
_AT_ALL_TEXT = '<at user_id="all">所有人</at>'  # in a `text` message
_AT_ALL_CARD = "<at id=all></at>"  # in a card's `lark_md'


def sign(secret: str, timestamp: int) -> str:
    """Feishu's `sign`: base64(HMAC-SHA256(key=f"{timestamp}\\n{secret}", msg=b""))."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def _url_problem(url: str) -> str | None:
    path = urlsplit(url).path
    hook = path.partition("/hook/")[2]
    if "/hook/" not in path or not hook or "/" in hook:
        return "has no /open-apis/bot/v2/hook/<id> path"
    return None


def _secret(value: Secret) -> Secret:
    if any(c.isspace() for c in value.get()):
        raise invalid("contains whitespace", "copy the bot's 签名校验 secret exactly")
    return value


_NO_SUCH_HOOK = Outcome(
    "channel",
    "the webhook is invalid (the bot was removed, or the URL is mistyped)",
    "copy the bot's webhook URL again into url (or its last path segment into hook)",
)


class FeishuChannel(Robot):
    """A Feishu custom bot (自定义机器人): a signed `interactive` card, `text` fallback."""

    kind: ClassVar[str] = "feishu"
    flavour: ClassVar[str] = "feishu"
    label: ClassVar[str] = "Feishu"
    host: ClassVar[str] = FEISHU_HOST
    first_format: ClassVar[str] = "card"
    secret_fields: ClassVar[tuple[str, ...]] = ("url", "hook", "secret")
    codes: ClassVar[dict[int, Outcome]] = {
        11232: Outcome(
            "retry",
            "frequency limited (5 messages a second, 100 a minute per bot)",
            after=RATE_WAIT,
        ),
        19021: Outcome(
            "channel",
            "the signature check failed: the secret is wrong or missing, or this server's "
            "clock is more than an hour off",
            "set secret to the bot's 签名校验 secret (or remove it if the bot does not sign) "
            "and check the clock (NTP)",
        ),
        19022: Outcome(
            "channel",
            "this server's IP address is not allowed by the bot",
            "add this server's public IP to the bot's IP allow-list (IP 白名单)",
        ),
        19024: Outcome(
            "channel",
            "the message contains none of the bot's custom keywords",
            "set keyword to one of the keywords in the bot's security settings (自定义关键词)",
        ),
        9499: Outcome("message", "the bot rejects the request as malformed"),
    }

    class Options(ChannelOptions):
        url: (
            Annotated[
                Secret,
                AfterValidator(
                    hook_url(_url_problem, '"https://open.feishu.cn/open-apis/bot/v2/hook/…"')
                ),
            ]
            | None
        ) = None
        hook: Annotated[Secret, AfterValidator(bare_credential("hook id"))] | None = None
        secret: Annotated[Secret, AfterValidator(_secret)] | None = None
        keyword: Annotated[str, AfterValidator(robot_keyword("bot"))] | None = None
        mention_all: bool = False
        timeout: Duration = timedelta(seconds=10)

        @model_validator(mode="after")
        def _one_credential(self) -> FeishuChannel.Options:
            one_credential(self.url, self.hook, "hook", "FEISHU_WEBHOOK")
            return self

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        self.clock: Callable[[], float] = time.time  # injectable: tests pin the timestamp

    def endpoint(self) -> str:
        if self.options.url is not None:
            return str(self.options.url.get().strip())
        return f"{self.host}{HOOK_PATH}{quote(self.options.hook.get(), safe='')}"

    def prepare(self, payload: Payload) -> tuple[str, Payload]:
        if self.options.secret is None:
            return self.endpoint(), payload
        timestamp = int(self.clock())
        signed = {"timestamp": str(timestamp), "sign": sign(self.options.secret.get(), timestamp)}
        return self.endpoint(), {**signed, **payload}

    def secrets(self) -> list[str]:
        hook = urlsplit(self.endpoint()).path.partition("/hook/")[2]
        secret = self.options.secret.get() if self.options.secret else ""
        return [self.endpoint(), hook, secret]

    def outcome(self, answer: Answer) -> Outcome | None:
        # 19001 is "param invalid" in general; about the hook it means a wrong or deleted bot.
        if answer.code == 19001 and "webhook" in answer.message.lower():
            return _NO_SUCH_HOOK
        return super().outcome(answer)

    def budget(self) -> Budget:
        # 5 a second and 100 a minute per bot (research §4.3)
        return Budget(destination(self.kind, self.endpoint()), ((5, 1.0), (100, 60.0)))

    def payloads_for(self, render: Render) -> list[Payload]:
        # The text fallback first: its title, plain, is the card's header title.
        plain = render("text", lambda message: _fits(self.text(message)))
        card = self.fitted(render, self.flavour, lambda m: self.card(m, plain.title), _fits)
        return [card, self.text(plain)]

    def card(self, message: Message, title: str) -> Payload:
        """The card: `title` (plain text) as the header, the `feishu` rendering as one
        `lark_md` block, then the keyword and the @all mention when configured."""
        elements: list[dict[str, Any]] = [_block("lark_md", message.body or message.title)]
        keyword = self.options.keyword
        if keyword and keyword not in message.body:
            elements.append(_block("plain_text", keyword))
        if self.options.mention_all:
            elements.append(_block("lark_md", _AT_ALL_CARD))
        header = {"title": {"tag": "plain_text", "content": title or "pollerd"}}
        return {"msg_type": "interactive", "card": {"header": header, "elements": elements}}

    def text(self, message: Message) -> Payload:
        """The text fallback: summary and detail lines, the admin URL as itself."""
        text = message.body
        keyword = self.options.keyword
        extra = [keyword] if keyword and keyword not in text else []
        if self.options.mention_all:
            extra.append(_AT_ALL_TEXT)
        return {"msg_type": "text", "content": {"text": "\n".join([text, *extra])}}


class LarkChannel(FeishuChannel):
    """The same bot on Lark, Feishu's international edition."""

    kind: ClassVar[str] = "lark"
    label: ClassVar[str] = "Lark"
    host: ClassVar[str] = LARK_HOST


def _block(tag: str, content: str) -> dict[str, Any]:
    return {"tag": "div", "text": {"tag": tag, "content": content}}


def _fits(payload: Payload) -> bool:
    """The request body as `Robot.attempt` encodes it, plus room for the signature, within
    BODY_BYTES (read at call time, so a test can lower it)."""
    body = json.dumps(payload, ensure_ascii=False)
    return utf8_len(body) + _SIGNATURE_ROOM <= BODY_BYTES
