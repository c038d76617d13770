"""The pieces the three Chinese group robots (`wecom`, `dingtalk`, `feishu`/`lark`) share.

`Robot` posts one stored payload and classifies the answer: every robot answers HTTP 200 whatever
happened, so success is HTTP 2xx *and* the API's own code (research §4.9). `Words` is an alert cut
into lines that can be shrunk to a byte budget ("… (+N items)", the order link always kept,
never split into two messages). The escapers neutralise order-derived text.

Escaping is by substitution, not backslashes: neither WeCom's nor DingTalk's markdown subset
documents backslash escapes, and a lookalike character renders the same in every client. So a
customer called `**x** <@all> [x](http://evil)` reaches the group as `∗∗x∗∗ ＜＠all＞
［x］(http：//evil)`: no bold, no mention, no link, no autolink. Whole lines are escaped, since
`summary`/`detail` mix pollerd's labels with order values; pollerd's own markup (the bold
summary, the admin link) is added after escaping.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar
from urllib.parse import parse_qs, quote, urlsplit

import httpx
from pydantic import BaseModel

from pollerd.channels.base import (
    DIGEST_LINES,
    Channel,
    ChannelContext,
    Digest,
    SendResult,
    digest_more,
    retry_after_seconds,
)
from pollerd.config import invalid
from pollerd.model import Event
from pollerd.secrets import Secret
from pollerd.templates import MAX_ITEMS, admin_link, detail, summary

_EXCERPT = 200

# --- escaping ----------------------------------------------------------------------------------

_LOOKALIKE = str.maketrans(
    {
        "\\": "＼",
        "*": "∗",
        "_": "＿",
        "`": "ˋ",
        "~": "～",
        "[": "［",
        "]": "］",
        "<": "＜",
        ">": "＞",
        "|": "｜",
    }
)
_ANGLES = str.maketrans({"<": "＜", ">": "＞"})
# '@' that starts a word (@all, @everyone, @13800001111), not the '@' of a (masked) email.
_MENTION = re.compile(r"(?<![\w.+*-])@(?=\w)")
_SCHEME = re.compile(r"(?<=[A-Za-z0-9]):(?=//)")  # http://evil → http：//evil: no autolink
_ENTITY = re.compile(r"&(?=#?\w+;)")  # DingTalk's markdown renders HTML entities


def escape_markdown(text: str) -> str:
    """Order-derived text for WeCom/DingTalk markdown: inert in any markdown or HTML subset."""
    text = _SCHEME.sub("：", _MENTION.sub("＠", text))
    return _ENTITY.sub("＆", text).translate(_LOOKALIKE)


def escape_text(text: str) -> str:
    """Order-derived text for plain-text messages: no tags (Feishu parses `<at user_id=…>` in
    text), no @mentions, no autolinked URLs; markdown characters stay as they are."""
    return _SCHEME.sub("：", _MENTION.sub("＠", text)).translate(_ANGLES)


def markdown_link(url: str) -> str:
    """`[url](url)` for a validated http(s) URL: the text shows where the link goes (no
    "click here" that could hide a different target), the target cannot end early."""
    href = quote(url, safe="%/:=&?#+!$,;@*~-._")
    return f"[{url.translate(_LOOKALIKE)}]({href})"


# --- the words of an alert, shrinkable ----------------------------------------------------------

_MORE = {"en": "… (+{count} items)", "zh-CN": "…（另有 {count} 项）"}


@dataclass(frozen=True)
class Words:
    """One alert as plain lines: the summary as `title`, detail lines before the line items,
    the items, the lines after them, how many lines are `hidden`, and the admin link."""

    locale: str
    title: str
    before: tuple[str, ...]
    items: tuple[str, ...]
    after: tuple[str, ...]
    hidden: int = 0
    link: tuple[str, str] | None = None  # (label with `{value}`, url)

    @classmethod
    def of(cls, event: Event, *, locale: str, timezone: str) -> Words:
        data = event.to_json()
        lang = "zh-CN" if locale.lower().startswith("zh") else "en"
        lines = detail(data, locale=lang, timezone=timezone, link=False)
        order = data.get("order") if isinstance(data.get("order"), dict) else {}
        products = order.get("line_items") if isinstance(order.get("line_items"), list) else []
        # The item lines are what disappears when the order has no items: everything else
        # comes out of `detail` identically, before and after them.
        bare = {**data, "order": {**order, "line_items": []}}
        without = detail(bare, locale=lang, timezone=timezone, link=False)
        start = 0
        while start < len(without) and lines[start] == without[start]:
            start += 1
        end = len(lines) - (len(without) - start)
        middle = lines[start:end]
        hidden = max(0, len(products) - MAX_ITEMS)
        items = middle[: len(middle) - 1] if hidden and middle else middle
        return cls(
            locale=lang,
            title=summary(data, locale=lang, timezone=timezone),
            before=tuple(lines[:start]),
            items=tuple(items),
            after=tuple(lines[end:]),
            hidden=hidden,
            link=admin_link(data, locale=lang),
        )

    @property
    def more(self) -> str:
        """The "… (+N items)" line, or "" when nothing is hidden."""
        return _MORE[self.locale].format(count=self.hidden) if self.hidden else ""

    def body(self) -> list[str]:
        """Detail lines in order, with the "more" line where the hidden items were."""
        more = [self.more] if self.more else []
        return [*self.before, *self.items, *more, *self.after]

    def shrink(self, fits: Callable[[Words], bool]) -> Words:
        """The fullest version of these words that `fits`: items go first (from the end),
        then the other detail lines, then the summary is cut; the link goes last of all."""
        words = self
        while not fits(words) and words.items:
            words = replace(words, items=words.items[:-1], hidden=words.hidden + 1)
        while not fits(words) and (words.after or words.before):
            if words.after:
                words = replace(words, after=words.after[:-1], hidden=words.hidden + 1)
            else:
                words = replace(words, before=words.before[:-1], hidden=words.hidden + 1)
        if fits(words):
            return words
        for candidate in (words, replace(words, link=None)):
            cut = _longest(candidate, fits)
            if cut is not None:
                return cut
        return replace(words, title="", link=None)


@dataclass(frozen=True)
class DigestWords(Words):
    """A digest as robot words: the summary lines of the events are the `items`, so shrinking
    to a byte budget drops alerts from the end into one "… and M more" line."""

    @classmethod
    def digest(cls, digest: Digest) -> DigestWords:
        shown = digest.lines[:DIGEST_LINES]
        return cls(
            locale=digest.locale,
            title=digest.title,
            before=digest.totals,
            items=shown,
            after=(),
            hidden=len(digest.lines) - len(shown),
        )

    @property
    def more(self) -> str:
        return digest_more(self.locale, self.hidden)


def _longest(words: Words, fits: Callable[[Words], bool]) -> Words | None:
    """The longest cut of the title (ending in "…") that fits, by bisection; None if none."""
    title = words.title
    if not fits(replace(words, title="")):
        return None
    low, high = 0, len(title)
    while low < high:
        mid = (low + high + 1) // 2
        if fits(replace(words, title=title[:mid] + "…")):
            low = mid
        else:
            high = mid - 1
    return replace(words, title=title[:low] + "…" if low else "")


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


# --- credentials in options ---------------------------------------------------------------------


def hook_url(check: Callable[[str], str | None], example: str) -> Callable[[Secret], Secret]:
    """A validator for a robot's webhook URL held as a Secret (the URL carries the credential,
    so no error message repeats it). `check(url)` names what is missing, or None."""

    def validate(value: Secret) -> Secret:
        text = value.get().strip()
        parts = urlsplit(text)
        try:
            valid = parts.scheme in ("http", "https") and bool(parts.hostname)
            valid = valid and parts.port != 0
        except ValueError:
            valid = False
        if not valid:
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
        after = retry_after_seconds(response.headers.get("retry-after"))
        return cls(response.status_code, code, str(message or ""), after)


@dataclass(frozen=True)
class Outcome:
    """One row of a robot's code table."""

    kind: str  # "retry" | "channel" | "message"
    problem: str
    fix: str = ""
    after: float | None = None


class Robot(Channel):
    """Posts one of the stored payloads (the next one if the first is rejected as a payload)
    and turns the answer into a SendResult. Subclasses say where to post and what codes mean."""

    label: ClassVar[str] = "robot"  # "WeCom", "DingTalk", ...: how details name the service
    codes: ClassVar[dict[int, Outcome]] = {}
    first_format: ClassVar[str] = "markdown"

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        raw = ctx.options
        options_model: type[BaseModel] = self.Options  # type: ignore[attr-defined]
        self.options: Any = (
            raw if isinstance(raw, options_model) else options_model.model_validate(raw or {})
        )

    # subclasses -----------------------------------------------------------------------------
    def endpoint(self) -> str:
        raise NotImplementedError

    def prepare(self, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The URL and body of one attempt (signing happens here, at send time)."""
        return self.endpoint(), payload

    def secrets(self) -> list[str]:
        """Values that must never reach a detail."""
        return []

    def outcome(self, answer: Answer) -> Outcome | None:
        return self.codes.get(answer.code) if answer.code is not None else None

    def payloads_for(self, words: Words) -> list[dict[str, Any]]:
        """The payloads, in the order they are tried, carrying `words` (shrunk to fit)."""
        raise NotImplementedError

    def payloads(self, event: Event) -> list[dict[str, Any]]:
        return self.payloads_for(
            Words.of(event, locale=self.ctx.locale, timezone=self.ctx.timezone)
        )

    # the shared part --------------------------------------------------------------------------
    def render(self, event: Event) -> str:
        return json.dumps(self.payloads(event), ensure_ascii=False, separators=(",", ":"))

    def render_digest(self, events: list[Event]) -> str:
        digest = Digest.of(events, locale=self.ctx.locale, timezone=self.ctx.timezone)
        payloads = self.payloads_for(DigestWords.digest(digest))
        return json.dumps(payloads, ensure_ascii=False, separators=(",", ":"))

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

    async def attempt(self, payload: dict[str, Any]) -> SendResult:
        url, body = self.prepare(payload)
        timeout = self.options.timeout.total_seconds()
        try:
            response = await self.ctx.http.post(
                url,
                content=json.dumps(body, ensure_ascii=False).encode("utf-8"),
                headers={"content-type": "application/json; charset=utf-8"},
                timeout=timeout,
                follow_redirects=False,
            )
        except httpx.TimeoutException as exc:
            what = "connect timed out" if isinstance(exc, httpx.ConnectTimeout) else "no answer"
            return SendResult.retry(f"{self.where()}: {what} after {timeout:g}s")
        except httpx.TransportError as exc:
            return SendResult.retry(self.scrub(f"{self.where()}: {type(exc).__name__}: {exc}"))
        return self.classify(Answer.of(response), response)

    def classify(self, answer: Answer, response: httpx.Response) -> SendResult:
        status = answer.status
        said = self.said(answer)
        if 200 <= status < 300 and answer.code == 0:
            return SendResult.ok(said)
        found = self.outcome(answer) if answer.code not in (None, 0) else None
        if found is not None:
            text = f"{said}: {found.problem}" + (f"; {found.fix}" if found.fix else "")
            if found.kind == "retry":
                wait = max(found.after or 0.0, answer.retry_after or 0.0) or None
                return SendResult.retry(text, after=wait)
            scope = "channel" if found.kind == "channel" else "message"
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
        message = " ".join(answer.message.split())[:_EXCERPT]
        return self.scrub(f"{text} ({message})" if message else text)

    def scrub(self, text: str) -> str:
        for value in sorted(self.secrets(), key=len, reverse=True):
            if value:
                text = text.replace(value, "****")
        return text


# --- WeCom ---------------------------------------------------------------------------------------


def plain_text(words: Words, *, extra: Sequence[str] = ()) -> str:
    """Summary, detail lines and the admin link as plain lines (the URL itself, unescaped:
    it is validated http(s), and the client makes it clickable)."""
    lines = [escape_text(words.title)] if words.title else []
    lines += [escape_text(line) for line in words.body()]
    if words.link is not None:
        label, url = words.link
        before, _, after = label.partition("{value}")
        lines.append(escape_text(before) + url + escape_text(after))
    return "\n".join([*lines, *extra])
