"""`dingtalk`: a DingTalk (钉钉) custom robot, signed, with the robot's keyword inserted.

Wire format (research §4.2): `POST {host}/robot/send?access_token=T&timestamp=MS&sign=S`, a JSON
`markdown` body rendered from the `dingtalk` templates (`title` is mandatory: 400402 otherwise;
the title is what the chat list and the phone notification show, so it is the alert's one-line
summary); when DingTalk rejects the markdown as a payload, the alert is resent at once as
`text`, rendered from the `text` templates. Each is fitted on its own to stay under DingTalk's
~20 000-byte message (counted as the JSON of the message part, the way it is sent).

Signing ("加签"): `S = base64(HMAC-SHA256(key=secret, msg=f"{MS}\\n{secret}"))`, URL-encoded,
with `MS` the Unix time in *milliseconds* taken at each attempt (DingTalk rejects timestamps
more than an hour off). A robot whose security setting is "custom keywords" drops every
message without one, so a configured `keyword` is appended as the last line when the text does
not already contain it (in both formats, and counted in the size). `mention_all` sets
`at.isAtAll`.

Outcomes (research §4.9; DingTalk answers HTTP 200 whatever happened, some gateways 429/5xx):

    errcode 0                                  ok
    130101 send too fast                       retry, not before 600 s: past 20 messages a
                                               minute DingTalk blocks the robot for 10 minutes
    310000 invalid timestamp                   retry after 60 s: this server's clock is off
    310000 timestamp / sign, no secret set     permanent, channel: the robot signs, set secret
    310000 keywords / sign / ip whitelist      permanent, channel: the robot's security
                                               settings and the channel disagree
    300001, 300005 token is not exist          permanent, channel
    400402 (no title), other codes             permanent, message (after the text fallback)
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
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

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
    query_value,
    robot_keyword,
    utf8_len,
)
from pollerd.config.types import Duration, invalid
from pollerd.secrets import Secret
from pollerd.templates import Message

DINGTALK_HOST = "https://oapi.dingtalk.com"
# Research §4.2: "~20 000 bytes" is Apprise's figure (19 985), not a quoted doc; stay below it.
# Counted on the JSON of the message part (`{"title":…,"text":…}`), as ChatSim's fake does.
TEXT_BYTES = 19_000
PENALTY = 600.0  # 130101: "如果超过20条，会限流10分钟"
CLOCK_WAIT = 60.0


def sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's `sign` before URL-encoding: base64(HMAC-SHA256(secret, "ts\\nsecret"))."""
    to_sign = f"{timestamp_ms}\n{secret}".encode()
    return base64.b64encode(hmac.new(secret.encode(), to_sign, hashlib.sha256).digest()).decode()


def _secret(value: Secret) -> Secret:
    text = value.get()
    if not text.startswith("SEC") or any(c.isspace() for c in text):
        raise invalid(
            "is not a DingTalk signing secret (they start with SEC)",
            "copy the secret shown under the robot's 安全设置 → 加签",
        )
    return value


def _url_problem(url: str) -> str | None:
    return None if query_value(url, "access_token") else "has no access_token=… parameter"


_SECURITY = (  # 310000 carries one errcode for four settings; errmsg tells which
    (
        "timestamp",
        Outcome(
            "retry",
            "DingTalk rejected the timestamp: this server's clock is more than an hour off",
            "sync the clock (NTP)",
            after=CLOCK_WAIT,
        ),
    ),
    (
        "keyword",
        Outcome(
            "channel",
            "the message contains none of the robot's custom keywords",
            "set keyword to one of the keywords listed under the robot's 安全设置",
        ),
    ),
    (
        "sign",
        Outcome(
            "channel",
            "the signature does not match",
            "set secret to the robot's 加签 secret (SEC…), or remove secret if the robot does "
            "not sign",
        ),
    ),
    (
        "whitelist",
        Outcome(
            "channel",
            "this server's IP address is not in the robot's IP allow-list",
            "add this server's public IP under the robot's 安全设置 → IP地址（段）",
        ),
    ),
)
_UNSIGNED = Outcome(
    "channel",
    "the robot requires signing (加签) but the channel has no secret",
    "set secret to the robot's 加签 secret (SEC…)",
)
_TOKEN = Outcome(
    "channel",
    "the access token does not exist (the robot was removed, or the token is mistyped)",
    "copy the robot's webhook URL again into url (or its access_token= value into token)",
)


class DingTalkChannel(Robot):
    """A DingTalk custom robot (自定义机器人): signed markdown with a title, text fallback."""

    kind: ClassVar[str] = "dingtalk"
    flavour: ClassVar[str] = "dingtalk"
    label: ClassVar[str] = "DingTalk"
    secret_fields: ClassVar[tuple[str, ...]] = ("url", "token", "secret")
    codes: ClassVar[dict[int, Outcome]] = {
        130101: Outcome(
            "retry",
            "sending too fast: DingTalk blocks a robot for 10 minutes after 20 messages a minute",
            after=PENALTY,
        ),
        300001: _TOKEN,
        300005: _TOKEN,
        310000: Outcome(
            "channel",
            "the robot's security settings reject this message",
            "check keyword, secret and the IP allow-list against the robot's 安全设置",
        ),
        400402: Outcome("message", "the markdown message has no title (a pollerd bug)"),
    }

    class Options(ChannelOptions):
        url: (
            Annotated[
                Secret,
                AfterValidator(
                    hook_url(_url_problem, '"https://oapi.dingtalk.com/robot/send?access_token=…"')
                ),
            ]
            | None
        ) = None
        token: Annotated[Secret, AfterValidator(bare_credential("access_token"))] | None = None
        secret: Annotated[Secret, AfterValidator(_secret)] | None = None
        keyword: Annotated[str, AfterValidator(robot_keyword("robot"))] | None = None
        mention_all: bool = False
        timeout: Duration = timedelta(seconds=10)

        @model_validator(mode="after")
        def _one_credential(self) -> DingTalkChannel.Options:
            one_credential(self.url, self.token, "token", "DINGTALK_WEBHOOK")
            return self

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        self.clock: Callable[[], float] = time.time  # injectable: tests pin the timestamp

    def endpoint(self) -> str:
        if self.options.url is not None:
            return str(self.options.url.get().strip())
        token = quote(self.options.token.get(), safe="")
        return f"{DINGTALK_HOST}/robot/send?access_token={token}"

    def prepare(self, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if self.options.secret is None:
            return self.endpoint(), payload
        timestamp = int(self.clock() * 1000)
        parts = urlsplit(self.endpoint())
        query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("timestamp", "sign")]
        query += [
            ("timestamp", str(timestamp)),
            ("sign", sign(self.options.secret.get(), timestamp)),
        ]
        return urlunsplit(parts._replace(query=urlencode(query))), payload

    def secrets(self) -> list[str]:
        token = query_value(self.endpoint(), "access_token")
        secret = self.options.secret.get() if self.options.secret else ""
        return [self.endpoint(), token, quote(token, safe=""), secret]

    def outcome(self, answer: Answer) -> Outcome | None:
        if answer.code == 310000:
            said = answer.message.lower()
            for marker, outcome in _SECURITY:
                if marker in said:
                    if marker in ("timestamp", "sign") and self.options.secret is None:
                        return _UNSIGNED  # no timestamp sent: not a clock problem
                    return outcome
        return super().outcome(answer)

    def budget(self) -> Budget:
        # 20 a minute, then a 10-minute block (research §4.2): never exceed
        return Budget(destination(self.kind, self.endpoint()), ((20, 60.0),))

    def payloads_for(self, render: Render) -> list[Payload]:
        return [
            self.fitted(render, self.flavour, self.markdown, _fits),
            self.fitted(render, "text", self.text, _fits),
        ]

    def markdown(self, message: Message) -> Payload:
        """The `dingtalk` layout (bold summary, a paragraph per line since a single newline
        is no line break there, the admin link); `title` is the summary, never empty (400402).
        The keyword goes as its own paragraph, raw: it must match the robot's exactly."""
        part = {
            "title": message.title or "pollerd",
            "text": self.with_keyword(message.body, "\n\n"),
        }
        return self.mention({"msgtype": "markdown", "markdown": part})

    def text(self, message: Message) -> Payload:
        """The text fallback: plain lines, the admin URL as itself."""
        part = {"content": self.with_keyword(message.body, "\n")}
        return self.mention({"msgtype": "text", "text": part})

    def with_keyword(self, body: str, separator: str) -> str:
        """`body` with the configured keyword as its last line when it lacks it: a robot
        secured by keywords drops every message without one (310000)."""
        keyword = self.options.keyword
        return f"{body}{separator}{keyword}" if keyword and keyword not in body else body

    def mention(self, payload: Payload) -> Payload:
        if self.options.mention_all:
            payload["at"] = {"isAtAll": True}
        return payload


def _fits(payload: Payload) -> bool:
    """The message part as sent (JSON, `ensure_ascii=False`) within TEXT_BYTES (read at call
    time, so a test can lower it)."""
    part = payload[payload["msgtype"]]
    return utf8_len(json.dumps(part, ensure_ascii=False)) <= TEXT_BYTES
