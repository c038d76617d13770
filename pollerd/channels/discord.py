"""`discord`: one webhook message per alert, Discord markdown in `content` (research §4.6).

Wire format: POST `{url}?wait=true` with JSON `content` (≤ 2000 characters),
`allowed_mentions: {"parse": []}` and `flags: 4` (no embeds: an admin URL would unfurl the shop's
login page). `wait=true` makes Discord answer with the created message, so success is a message
id and not just an empty 204. The URL is the credential (`…/webhooks/{id}/{token}`): details name
the host only.

`allowed_mentions` is not an option and is set at send time, not stored with the rendering: a
customer named `@everyone` must never ping a server, whatever markup slips through. On top of
that, `content` is the `discord` flavour of the templates, where the engine backslash-escapes
every order-derived character Discord markdown gives a meaning (backslash, asterisk,
underscore, tilde, backtick, `| > < # - [ ] ( ) : @`), so `**`, `[x](http://evil)`, `<@123>` and
`http://…` in a name show as typed: no formatting, masked link, mention or auto-link. Over 2000
UTF-16 units, the engine shows fewer line items ("… (+N items)"), then the brief form, keeping
the admin link (`<url>`: no embed); a message is never split.

Outcomes, from the status and the JSON body (`message`, `code`, `retry_after`):

    204, or 200 + a message with an id       ok
    429                                      retry, not before retry_after (body, seconds;
                                             the Retry-After header when the body is absurd)
    408, 5xx, timeout, connection error      retry
    401 403 404 (10015 Unknown Webhook,      permanent, channel: the webhook was deleted or
        50027 Invalid Webhook Token)         its token is wrong
    400 220001/220003 (forum without thread) permanent, channel: set thread_id
    other 4xx (400 Invalid Form Body, …)     permanent, message
    another 2xx, 3xx                         permanent, channel: the url is not a webhook
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, ClassVar
from urllib.parse import urlsplit

import httpx
from pydantic import AfterValidator, Field

from pollerd.channels.base import (
    Budget,
    Channel,
    ChannelContext,
    ChannelOptions,
    SendResult,
    destination,
    http_url,
    json_object,
)
from pollerd.config.types import Duration, invalid
from pollerd.http import excerpt, retry_after
from pollerd.model import Event
from pollerd.secrets import Secret
from pollerd.templates import Message

CONTENT_LIMIT = 2000  # characters of `content` (Discord "Execute Webhook")
SUPPRESS_EMBEDS = 1 << 2
MAX_WAIT = 3600.0  # a retry_after beyond this is taken as a unit mix-up (discord-api-docs #4722)
CHANNEL_STATUSES = frozenset({401, 403, 404})
CHANNEL_CODES = frozenset({220001, 220003})  # forum/media channel: needs a thread
_WEBHOOK_PATH = re.compile(r"/webhooks/\d+/[^/]+/?$")


def _units(text: str) -> int:
    """Length as Discord counts it (JavaScript string length: UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def _webhook_url(value: Secret) -> Secret:
    """`https://discord.com/api/webhooks/{id}/{token}` or a proxy with the same path tail.
    Never echoed: the last segment is the token."""
    parts = urlsplit(value.get().strip())
    if not http_url(value.get()) or not _WEBHOOK_PATH.search(parts.path):
        raise invalid(
            "must be the webhook URL Discord shows (Server Settings → Integrations → Webhooks)",
            'e.g. "https://discord.com/api/webhooks/123…/abc…", or env:DISCORD_WEBHOOK_URL',
        )
    if parts.query or parts.fragment:
        raise invalid("must not carry a query", "use thread_id for a thread; drop ?wait=…")
    return value


class DiscordChannel(Channel):
    """Posts one message per alert through a Discord channel webhook."""

    kind: ClassVar[str] = "discord"
    flavour: ClassVar[str] = "discord"
    secret_fields: ClassVar[tuple[str, ...]] = ("url",)

    class Options(ChannelOptions):
        url: Annotated[Secret, AfterValidator(_webhook_url)]
        username: str | None = Field(None, min_length=1, max_length=80)
        thread_id: int | None = None
        timeout: Duration = timedelta(seconds=10)

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        self._url = self.options.url.get().strip().rstrip("/")

    def probe_url(self) -> str:
        return self._url

    def render(self, event: Event) -> str:
        """The `content` markdown (the rest of the payload is added per send)."""
        return self.message(event, fits=_fits).body

    def budget(self) -> Budget:
        # ~5 requests per 2 s per webhook, plus the undocumented 30 a minute per channel that
        # webhooks hit (research §4.6, discord-api-docs #367/#1454): stay under both.
        return Budget(destination(self.kind, self._url), ((5, 2.0), (30, 60.0)))

    def render_digest(self, events: list[Event]) -> str:
        """The digest's `content`, held to the same 2000 units as one alert."""
        return self.digest_message(events, fits=_fits).body

    async def send(self, event: Event, rendered: str) -> SendResult:
        payload: dict[str, Any] = {
            "content": rendered,
            "allowed_mentions": {"parse": []},
            "flags": SUPPRESS_EMBEDS,
        }
        if self.options.username:
            payload["username"] = self.options.username
        params: dict[str, str] = {"wait": "true"}
        if self.options.thread_id is not None:
            params["thread_id"] = str(self.options.thread_id)
        return await self.post(self._url, self._classify, json=payload, params=params)

    def _classify(self, response: httpx.Response) -> SendResult:
        status = response.status_code
        body = json_object(response)
        said = self.scrub(_said(response, body))
        what = f"{self.where()} answered HTTP {status}" + (f": {said}" if said else "")
        if status == 204:
            return SendResult.ok("HTTP 204")
        if 200 <= status < 300:
            if body is not None and body.get("id"):
                return SendResult.ok(f"message id {body['id']}")
            return SendResult.permanent(
                f"{what}; that is not Discord's answer: check the channel's url", "channel"
            )
        if 300 <= status < 400:
            return SendResult.permanent(
                f"{self.where()} redirects (HTTP {status}); set the channel's url to the "
                "webhook URL Discord shows",
                scope="channel",
            )
        if status == 429:
            return SendResult.retry(f"{what} (rate limited)", after=_wait(response, body))
        if status == 408 or status >= 500:
            return SendResult.retry(what)
        code = body.get("code") if body is not None else None
        if status in CHANNEL_STATUSES:
            fix = "the webhook was deleted or its token changed: create one and set the url"
            return SendResult.permanent(f"{what}; {fix}", scope="channel")
        if code in CHANNEL_CODES:
            fix = "this is a forum channel: set thread_id to the thread alerts should go to"
            return SendResult.permanent(f"{what}; {fix}", scope="channel")
        if 400 <= status < 500:
            return SendResult.permanent(f"{what}; Discord refused this message")
        return SendResult.retry(what)  # 1xx as a final status: a broken proxy

    def where(self) -> str:
        parts = urlsplit(self._url)
        return f"discord {parts.scheme}://{parts.hostname}" + (
            f":{parts.port}" if parts.port else ""
        )

    def secrets(self) -> list[str]:
        url = self.options.url.get().strip().rstrip("/")
        return [url, urlsplit(url).path.rstrip("/").rpartition("/")[2]]


def _fits(message: Message) -> bool:
    """Discord's limit as the engine asks it: `content` in UTF-16 units (JavaScript length)."""
    return _units(message.body) <= CONTENT_LIMIT


def _said(response: httpx.Response, body: dict[str, Any] | None) -> str:
    """Discord's words: `message (code)` from its error JSON, else the body's start."""
    message, code = (body or {}).get("message"), (body or {}).get("code")
    if not isinstance(message, str):
        return excerpt(response)
    return excerpt(response, f"{message} ({code})" if code else message)


def _wait(response: httpx.Response, body: dict[str, Any] | None) -> float | None:
    """Seconds to wait on a 429: the body's float `retry_after`, unless the Retry-After header
    says it is far off (one report saw milliseconds in the body); clamped to an hour."""
    header = retry_after(response)
    value = body.get("retry_after") if body is not None else None
    seconds = (
        float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
    )
    if seconds is None or seconds < 0 or (header is not None and seconds > header + 1):
        seconds = header
    return None if seconds is None else min(seconds, MAX_WAIT)
