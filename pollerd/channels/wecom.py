"""`wecom`: a WeCom (企业微信) group robot, and the pieces the three Chinese robots share.

Wire format (research §4.1): `POST {host}/cgi-bin/webhook/send?key=KEY`, a JSON body, no
signing (the key in the URL is the only credential, so the URL is a secret too). The alert goes
as `markdown` (≤ 4 096 bytes of content); when WeCom rejects the markdown as a payload it is
resent at once as `text` (≤ 2 048 bytes). With `mention_all` the alert goes as `text` only:
markdown cannot @all (WeCom's markdown only knows `<@userid>`). Both bodies are rendered once
and stored, as a JSON list in the order they are tried.

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

from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator

from pollerd.channels.base import Budget, destination
from pollerd.channels.robot import (
    Outcome,
    Robot,
    Words,
    bare_credential,
    escape_markdown,
    hook_url,
    markdown_link,
    one_credential,
    plain_text,
    query_value,
    utf8_len,
)
from pollerd.config import Duration
from pollerd.secrets import Secret

WECOM_HOST = "https://qyapi.weixin.qq.com"
MARKDOWN_BYTES = 4096
TEXT_BYTES = 2048
RATE_WAIT = 60.0  # 45009: the window is a minute; practitioner libraries wait 60-65 s


def _wecom_url_problem(url: str) -> str | None:
    return None if query_value(url, "key") else "has no key=… parameter"


class WeComChannel(Robot):
    """A WeCom group robot (群机器人): markdown, text fallback, @all through text."""

    kind: ClassVar[str] = "wecom"
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

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
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

    def payloads_for(self, words: Words) -> list[dict[str, Any]]:
        text = words.shrink(lambda w: utf8_len(plain_text(w)) <= TEXT_BYTES)
        text_payload: dict[str, Any] = {"msgtype": "text", "text": {"content": plain_text(text)}}
        if self.options.mention_all:
            text_payload["text"]["mentioned_list"] = ["@all"]
            return [text_payload]
        markdown = words.shrink(lambda w: utf8_len(wecom_markdown(w)) <= MARKDOWN_BYTES)
        return [
            {"msgtype": "markdown", "markdown": {"content": wecom_markdown(markdown)}},
            text_payload,
        ]


def wecom_markdown(words: Words) -> str:
    """Bold summary, one detail per line, the admin link as a markdown link."""
    lines = [f"**{escape_markdown(words.title)}**"] if words.title else []
    lines += [escape_markdown(line) for line in words.body()]
    if words.link is not None:
        label, url = words.link
        before, _, after = label.partition("{value}")
        lines.append(escape_markdown(before) + markdown_link(url) + escape_markdown(after))
    return "\n".join(lines)
