"""`wecom`: a WeCom (企业微信) group robot: markdown, with a plain-text fallback.

Wire format (research §4.1): `POST {host}/cgi-bin/webhook/send?key=KEY`, a JSON body, no
signing (the key in the URL is the only credential, so the URL is a secret too). The alert goes
as `markdown` rendered from the `wecom` templates (≤ 4 096 UTF-8 bytes of content); when WeCom
rejects the markdown as a payload it is resent at once as `text`, rendered from the `text`
templates (≤ 2 048 bytes). Each is fitted to its own limit: a long order shows fewer items
("… (+N items)") and keeps its link, in one message. With `mention_all` the alert goes as
`text` only: markdown cannot @all (WeCom's markdown only knows `<@userid>`). Both bodies are
rendered once and stored, as a JSON list in the order they are tried.

Every robot answers HTTP 200 whatever happened, so success is HTTP 2xx *and* `errcode == 0`.
Outcomes (research §4.9):

    errcode 0                            ok
    45009 api freq out of limit          retry, not before 60 s (20 messages/min per robot)
    -1 system busy                       retry
    93000 invalid webhook URL            permanent, channel: the key is wrong or the robot
                                         was removed; every message would fail the same way
    40008, 40058, other codes            permanent, message (after the text fallback)
    HTTP 5xx, 408, 429, timeout, reset   retry (429 honours Retry-After)
    HTTP 3xx, 401, 403, 404, 410         permanent, channel: check url
    HTTP 2xx that is not the API's JSON  permanent, channel: url points at something else

The robot machinery shared with `dingtalk` and `feishu` lives in `robot.py`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, ClassVar
from urllib.parse import quote

from pydantic import AfterValidator, model_validator

from pollerd.channels.base import Budget, ChannelOptions, destination
from pollerd.channels.robot import (
    Outcome,
    Payload,
    Render,
    Robot,
    bare_credential,
    hook_url,
    one_credential,
    query_value,
    utf8_len,
)
from pollerd.config.types import Duration
from pollerd.secrets import Secret
from pollerd.templates import Message

WECOM_HOST = "https://qyapi.weixin.qq.com"
MARKDOWN_BYTES = 4096
TEXT_BYTES = 2048
RATE_WAIT = 60.0  # 45009: the window is a minute; practitioner libraries wait 60-65 s


def _wecom_url_problem(url: str) -> str | None:
    return None if query_value(url, "key") else "has no key=… parameter"


class WeComChannel(Robot):
    """A WeCom group robot (群机器人): markdown, text fallback, @all through text."""

    kind: ClassVar[str] = "wecom"
    flavour: ClassVar[str] = "wecom"
    label: ClassVar[str] = "WeCom"
    secret_fields: ClassVar[tuple[str, ...]] = ("url", "key")
    codes: ClassVar[dict[int, Outcome]] = {
        45009: Outcome(
            "retry", "rate limited (WeCom allows 20 messages a minute per robot)", after=RATE_WAIT
        ),
        -1: Outcome("retry", "WeCom is busy"),
        93000: Outcome(
            "channel",
            "the webhook key is invalid or the robot was removed from its group",
            "copy the robot's webhook URL from the group's robot settings into url (or its "
            "key= value into key)",
        ),
        40008: Outcome("message", "WeCom does not accept this message type"),
        40058: Outcome("message", "a field of the message is invalid"),
    }

    class Options(ChannelOptions):
        url: (
            Annotated[
                Secret,
                AfterValidator(
                    hook_url(
                        _wecom_url_problem,
                        '"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…"',
                    )
                ),
            ]
            | None
        ) = None
        key: Annotated[Secret, AfterValidator(bare_credential("key"))] | None = None
        mention_all: bool = False
        timeout: Duration = timedelta(seconds=10)

        @model_validator(mode="after")
        def _one_credential(self) -> WeComChannel.Options:
            one_credential(self.url, self.key, "key", "WECOM_WEBHOOK")
            return self

    def endpoint(self) -> str:
        if self.options.url is not None:
            return str(self.options.url.get().strip())
        return f"{WECOM_HOST}/cgi-bin/webhook/send?key={quote(self.options.key.get(), safe='')}"

    def secrets(self) -> list[str]:
        values = [self.endpoint(), query_value(self.endpoint(), "key")]
        return [*values, quote(values[1], safe="")]

    def budget(self) -> Budget:
        # "每个机器人发送的消息不能超过20条/分钟" (research §4.1)
        return Budget(destination(self.kind, self.endpoint()), ((20, 60.0),))

    def payloads_for(self, render: Render) -> list[Payload]:
        text = self.fitted(render, "text", self.text, _text_fits)
        if self.options.mention_all:
            return [text]  # nothing to fall back to: markdown cannot @all
        return [self.fitted(render, self.flavour, self.markdown, _markdown_fits), text]

    def markdown(self, message: Message) -> Payload:
        """Bold summary, one detail per line, the admin link as a markdown link."""
        return {"msgtype": "markdown", "markdown": {"content": message.body}}

    def text(self, message: Message) -> Payload:
        """Summary and detail lines as plain text, the admin URL as itself (WeCom links it)."""
        text: dict[str, Any] = {"content": message.body}
        if self.options.mention_all:
            text["mentioned_list"] = ["@all"]
        return {"msgtype": "text", "text": text}


# The limits are read at call time, so a test can lower them.
def _markdown_fits(payload: Payload) -> bool:
    return utf8_len(payload["markdown"]["content"]) <= MARKDOWN_BYTES


def _text_fits(payload: Payload) -> bool:
    return utf8_len(payload["text"]["content"]) <= TEXT_BYTES
