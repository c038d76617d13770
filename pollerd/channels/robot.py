"""The pieces the three Chinese group robots (`wecom`, `dingtalk`, `feishu`/`lark`) share.

`Robot` renders an alert (or a digest) into the payloads it will try, in order, and stores them;
at send time it posts the first and classifies the answer: every robot answers HTTP 200 whatever
happened, so success is HTTP 2xx *and* the API's own code (research §4.9). When the service
rejects the first payload as a payload, the next one (plain text) goes at once.

The words come from the templates (`pollerd.templates`): the rich payload in the channel's
flavour, the fallback in the `text` flavour, each fitted on its own to the size the service
counts for that payload (`Robot.fitted`): the engine shows fewer line items ("… (+N items)"),
then the brief form, and never splits an alert into two messages. Escaping is the engine's:
order-derived values reach a robot's markdown as lookalike characters (`∗∗x∗∗ ＜＠all＞
［x］(http：//evil)`), since none of these markdown dialects documents backslash escapes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qs, urlsplit

import httpx

from pollerd.channels.base import Channel, SendResult, http_url
from pollerd.config.types import invalid
from pollerd.errors import ChannelScope
from pollerd.failpoints import armed
from pollerd.http import EXCERPT, retry_after
from pollerd.model import Event
from pollerd.secrets import Secret
from pollerd.templates import Message

Fits = Callable[[Message], bool]
Render = Callable[[str, Fits | None], Message]
"""`render(flavour, fits)`: the alert (or digest) being stored, rendered in `flavour`, the
fullest version that `fits` (None: in full)."""
Payload = dict[str, Any]


def utf8_len(text: str) -> int:
    """Bytes as WeCom and DingTalk count their limits: UTF-8 (a Chinese character is 3)."""
    return len(text.encode("utf-8"))


# --- credentials in options ---------------------------------------------------------------------


def hook_url(check: Callable[[str], str | None], example: str) -> Callable[[Secret], Secret]:
    """A validator for a robot's webhook URL held as a Secret (the URL carries the credential,
    so no error message repeats it). `check(url)` names what is missing, or None."""

    def validate(value: Secret) -> Secret:
        text = value.get().strip()
        if not http_url(text):
            raise invalid("must be the robot's webhook URL", f"e.g. {example}")
        problem = check(text)
        if problem:
            raise invalid(problem, f"copy the whole webhook URL, e.g. {example}")
        return value

    return validate


def bare_credential(name: str) -> Callable[[Secret], Secret]:
    """A key/token/hook given alone: one word, not a URL (that belongs in `url`)."""

    def validate(value: Secret) -> Secret:
        text = value.get().strip()
        if "://" in text or "/" in text or "?" in text:
            raise invalid(
                "looks like a URL", f"put the whole webhook URL in url, or only the {name} here"
            )
        if any(c.isspace() for c in text):
            raise invalid("contains whitespace", f"copy the {name} exactly")
        return value

    return validate


def one_credential(url: object, credential: object, name: str, env: str) -> None:
    """A robot is configured by its whole webhook `url` or by the bare `name` (key, token, hook
    id), exactly one of them: two would disagree sooner or later, none reaches nobody."""
    if (url is None) == (credential is None):
        raise invalid(
            f"set either url (the whole webhook URL) or {name}, not both"
            if url is not None
            else f"missing: set url (the webhook URL) or {name}",
            f'e.g. url = "env:{env}"',
            key="url",
        )


def robot_keyword(noun: str) -> Callable[[str], str]:
    """A validator for a robot's custom keyword (`noun`: "robot", "bot"): one line, not empty;
    it is inserted raw, since it must match the one set on the robot exactly."""

    def validate(value: str) -> str:
        value = value.strip()
        if not value or any(c in value for c in "\r\n"):
            raise invalid(f"must be one of the {noun}'s keywords, on one line", 'e.g. "订单"')
        return value

    return validate


def query_value(url: str, name: str) -> str:
    values = parse_qs(urlsplit(url).query).get(name) or [""]
    return values[0]


# --- the base of the three robots ---------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What a robot said: the HTTP status and the code and message from its JSON body
    (`errcode`/`errmsg`, `code`/`msg`, or Feishu's older `StatusCode`/`StatusMessage`)."""

    status: int
    code: int | None
    message: str
    retry_after: float | None

    @classmethod
    def of(cls, response: httpx.Response) -> Answer:
        try:
            body = response.json()
        except ValueError:
            body = None
        code: Any = None
        message: Any = ""
        if isinstance(body, dict):
            for code_key, message_key in (
                ("errcode", "errmsg"),
                ("code", "msg"),
                ("StatusCode", "StatusMessage"),
            ):
                if code_key in body:
                    code, message = body[code_key], body.get(message_key, "")
                    break
        if not isinstance(code, int) or isinstance(code, bool):
            try:
                code = int(code) if code is not None else None
            except (TypeError, ValueError):
                code = None
        return cls(response.status_code, code, str(message or ""), retry_after(response))


@dataclass(frozen=True)
class Outcome:
    """One row of a robot's code table."""

    kind: Literal["retry", "channel", "message"]  # retryable, or permanent with this scope
    problem: str
    fix: str = ""
    after: float | None = None


class Robot(Channel):
    """Posts one of the stored payloads (the next one if the first is rejected as a payload)
    and turns the answer into a SendResult. Subclasses say where to post and what codes mean."""

    label: ClassVar[str] = "robot"  # "WeCom", "DingTalk", ...: how details name the service
    codes: ClassVar[dict[int, Outcome]] = {}
    first_format: ClassVar[str] = "markdown"

    # subclasses -----------------------------------------------------------------------------
    def endpoint(self) -> str:
        raise NotImplementedError

    def prepare(self, payload: Payload) -> tuple[str, Payload]:
        """The URL and body of one attempt (signing happens here, at send time)."""
        return self.endpoint(), payload

    def outcome(self, answer: Answer) -> Outcome | None:
        return self.codes.get(answer.code) if answer.code is not None else None

    def payloads_for(self, render: Render) -> list[Payload]:
        """The payloads, in the order they are tried: the rich one in `flavour`, then the
        text fallback, each made with `fitted` so each fits its own limit."""
        raise NotImplementedError

    # the shared part --------------------------------------------------------------------------
    @staticmethod
    def fitted(
        render: Render,
        flavour: str,
        build: Callable[[Message], Payload],
        fits: Callable[[Payload], bool],
    ) -> Payload:
        """The payload `build` makes of the fullest rendering in `flavour` whose *payload*
        `fits`: the limit is checked on what goes on the wire (keyword, mentions, JSON
        quoting included), not on the template's text alone."""
        return build(render(flavour, lambda message: fits(build(message))))

    def payloads(self, event: Event) -> list[Payload]:
        """The payloads of one alert, rendered in this channel's locale and time zone."""
        return self.payloads_for(
            lambda flavour, fits: self.message(event, flavour=flavour, fits=fits)
        )

    def digest_payloads(self, events: Sequence[Event]) -> list[Payload]:
        """The payloads of ONE digest message standing for `events`."""
        return self.payloads_for(
            lambda flavour, fits: self.digest_message(events, flavour=flavour, fits=fits)
        )

    def probe_url(self) -> str:
        return self.endpoint()

    def render(self, event: Event) -> str:
        return _stored(self.payloads(event))

    def render_digest(self, events: list[Event]) -> str:
        return _stored(self.digest_payloads(events))

    async def send(self, event: Event, rendered: str) -> SendResult:
        try:
            payloads = json.loads(rendered)
            if not isinstance(payloads, list) or not payloads:
                raise ValueError("not a list of payloads")
        except ValueError:
            return SendResult.permanent(
                f"{self.where()}: the stored message is not a {self.kind} rendering; re-render it"
            )
        result = await self.attempt(payloads[0])
        if result.kind != "permanent" or result.scope != "message" or len(payloads) < 2:
            return result
        second = await self.attempt(payloads[1])
        rejected = f"{self.first_format} rejected ({result.detail})"
        if second.kind == "ok":
            return SendResult.ok(f"{rejected}; sent as text instead")
        return replace(second, detail=f"{rejected}; text fallback: {second.detail}")

    async def attempt(self, payload: Payload) -> SendResult:
        url, body = self.prepare(payload)
        return await self.post(
            url,
            self._classify,
            content=json.dumps(body, ensure_ascii=False).encode("utf-8"),
            headers={"content-type": "application/json; charset=utf-8"},
        )

    def _classify(self, response: httpx.Response) -> SendResult:
        answer = Answer.of(response)
        status = answer.status
        said = self.said(answer)
        # test-only (failpoints.py): `status_only` is Apprise's "HTTP 200 = sent", row 11's mutant
        if 200 <= status < 300 and (answer.code == 0 or armed("status_only")):
            return SendResult.ok(said)
        found = self.outcome(answer) if answer.code not in (None, 0) else None
        if found is not None:
            text = f"{said}: {found.problem}" + (f"; {found.fix}" if found.fix else "")
            if found.kind == "retry":
                wait = max(found.after or 0.0, answer.retry_after or 0.0) or None
                return SendResult.retry(text, after=wait)
            scope: ChannelScope = "channel" if found.kind == "channel" else "message"
            return SendResult.permanent(text, scope=scope)
        if 300 <= status < 400:
            return SendResult.permanent(
                f"{said}: the URL redirects; configure the robot's webhook URL itself "
                "(a POST through a redirect loses its body)",
                scope="channel",
            )
        if status in (401, 403, 404, 410):
            return SendResult.permanent(
                f"{said}: check the channel's url / credential: copy the robot's webhook URL "
                "again (the robot may have been removed)",
                scope="channel",
            )
        if status in (408, 425, 429) or status >= 500:
            return SendResult.retry(said, after=answer.retry_after)
        if 400 <= status < 500:
            return SendResult.permanent(f"{said}: the robot rejects this message")
        if answer.code is None and 200 <= status < 300:
            return SendResult.permanent(
                f"{said}: the answer is not {self.label}'s robot API (no error code in it); "
                "check that url is the robot's webhook URL",
                scope="channel",
            )
        return SendResult.permanent(f"{said}: the robot rejects this message")

    def where(self) -> str:
        parts = urlsplit(self.endpoint())
        port = f":{parts.port}" if parts.port else ""
        return f"{self.kind} {parts.hostname}{port}"

    def said(self, answer: Answer) -> str:
        text = f"{self.where()} answered HTTP {answer.status}"
        if answer.code is not None:
            text += f", code {answer.code}"
        message = " ".join(answer.message.split())[:EXCERPT]
        return self.scrub(f"{text} ({message})" if message else text)


def _stored(payloads: list[Payload]) -> str:
    """The stored form: a compact JSON list of the payloads, tried in order."""
    return json.dumps(payloads, ensure_ascii=False, separators=(",", ":"))
