"""What every channel is: render an event once, send it, say ok / retry(after) / permanent(scope).

Channels decide success from the HTTP status *and* the body at their own edge; the delivery
loop never guesses. A channel never imports a source, and never sees a secret it does not own.
Every HTTP channel sends through `Channel.post` (the one edge, `pollerd.http.Edge`: timeouts,
transport failures, scrubbing, the DEBUG line) and keeps only its `classify(response)`.
The outcome is the error tree's vocabulary (`pollerd.errors`): `SendResult` is its value form,
and a `classify` hook (or a whole `send`) may raise a `ChannelError` instead of returning one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict

from pollerd.config.types import invalid
from pollerd.errors import (
    ChannelError,
    ChannelScope,
    PermanentChannelError,
    RetryableChannelError,
)
from pollerd.failpoints import armed
from pollerd.http import Edge, parse_retry_after, transport_error
from pollerd.model import Event
from pollerd.templates import Footer, Message, Templates, templates_for

Scope = ChannelScope
Window = tuple[int, float]
"""At most `count` messages in any `seconds`-long window."""


@dataclass(frozen=True)
class SendResult:
    """The outcome of one send attempt.

    kind: "ok"; "retry" (try again, not before `retry_after` seconds when given); or
    "permanent" with a `scope`: "message" (this delivery is dead), "channel" (the destination
    itself is broken, e.g. 410 Gone or a revoked key: hold all its deliveries), "recipient".
    """

    kind: Literal["ok", "retry", "permanent"]
    detail: str = ""
    retry_after: float | None = None
    scope: Scope = "message"

    @classmethod
    def ok(cls, detail: str = "") -> SendResult:
        return cls("ok", detail)

    @classmethod
    def retry(cls, detail: str, after: float | None = None) -> SendResult:
        return cls("retry", detail, retry_after=after)

    @classmethod
    def permanent(cls, detail: str, scope: Scope = "message") -> SendResult:
        return cls("permanent", detail, scope=scope)

    @classmethod
    def of(cls, error: ChannelError) -> SendResult:
        """The value of a raised failure: retryable → retry, permanent → its scope; any other
        `ChannelError` is taken as retryable (nothing says it is final)."""
        if isinstance(error, PermanentChannelError):
            return cls.permanent(error.detail, error.scope)
        return cls.retry(error.detail, getattr(error, "retry_after", None))

    def error(self) -> ChannelError | None:
        """The failure as the error tree's exception (None when ok), for callers that raise."""
        if self.kind == "retry":
            return RetryableChannelError(self.detail, retry_after=self.retry_after)
        if self.kind == "permanent":
            return PermanentChannelError(self.detail, scope=self.scope)
        return None


@dataclass(frozen=True)
class Budget:
    """A destination's published rate limit (research §4.1–§4.6): every window in `windows`
    holds at once. `key` names the destination, not the pollerd channel, so two channels
    pointed at the same robot or chat share one budget; it never contains a credential."""

    key: str
    windows: tuple[Window, ...]

    def capacity(self, horizon: float) -> int:
        """How many messages the budget lets out within `horizon` seconds, at most."""
        return min(count * max(1, int(horizon // seconds)) for count, seconds in self.windows)


def destination(kind: str, *parts: str) -> str:
    """A budget key from the values that identify a destination (webhook URL, token, chat):
    hashed, because those values are credentials and keys end up in logs."""
    digest = hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()[:16]
    return f"{kind}:{digest}"


def http_url(value: str, *, query: bool = True) -> bool:
    """Whether `value` is an http(s) URL with a host and a usable port (and, unless `query`,
    without a query or fragment). Callers never echo the URL: it often carries a credential."""
    parts = urlsplit(value.strip())
    try:
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a port that is not a number in range
        return False
    return valid and (query or not (parts.query or parts.fragment))


def base_url(default: str) -> Callable[[str], str]:
    """A validator for an API's base URL (a proxy or a simulator may replace `default`)."""

    def validate(value: str) -> str:
        if not http_url(value, query=False):
            raise invalid("must be an http:// or https:// URL without a query", f'e.g. "{default}"')
        return value.strip().rstrip("/")

    return validate


@dataclass(frozen=True)
class ChannelContext:
    """What the daemon hands every channel: its config table and the shared pieces."""

    name: str
    # The channel's validated `Options` model (config builds it), or for a channel without one
    # the [[channels]] table minus name/type as a dict, secrets already resolved.
    options: BaseModel | dict[str, Any] | None
    http: httpx.AsyncClient
    timezone: str = "UTC"
    locale: str = "en"
    # One-click unsubscribe (pollerd.unsubscribe): (channel name, address) → opted out?, and
    # → the personal https link; None when the daemon has no store / no public_url.
    suppressed: Callable[[str, str], bool] | None = None
    unsubscribe_link: Callable[[str, str], str] | None = None
    # Built-in templates plus the user's folder (`[pollerd] templates`), shared by all channels.
    templates: Templates = field(default_factory=templates_for)


class ChannelOptions(BaseModel):
    """The base of a channel's `Options`: unknown keys are errors (a typo must not pass), the
    model is frozen, and no validation error repeats its input (it may be a credential)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, arbitrary_types_allowed=True, hide_input_in_errors=True
    )


class Channel:
    """Base class; subclasses set `kind` and implement `render` and `send`.

    `render` runs once per delivery and its result is stored in the outbox, so a resend is
    byte-identical (receivers that dedupe on content, e.g. WeCom app messages, rely on that).
    A subclass with an `Options` model gets its config table validated into `self.options`
    (config validates it already; a test may hand a plain dict).
    """

    kind: ClassVar[str] = ""
    secret_fields: ClassVar[tuple[str, ...]] = ()
    flavour: ClassVar[str] = "text"  # the templates' flavour this channel renders (templates/)
    Options: ClassVar[type[BaseModel] | None] = None

    def __init__(self, ctx: ChannelContext) -> None:
        self.ctx = ctx
        self.name = ctx.name
        raw, model = ctx.options, self.Options
        self.options: Any = (
            raw if model is None or isinstance(raw, model) else model.model_validate(raw or {})
        )

    def message(
        self,
        event: Event,
        *,
        flavour: str | None = None,
        fits: Callable[[Message], bool] | None = None,
        footer: Footer | None = None,
    ) -> Message:
        """`event` rendered from the templates in this channel's locale and time zone, the
        fullest version that `fits` (see `pollerd.templates.fit`)."""
        return self.ctx.templates.render(
            event.to_json(),
            flavour=flavour or self.flavour,
            locale=self.ctx.locale,
            timezone=self.ctx.timezone,
            fits=fits,
            footer=footer,
        )

    def digest_message(
        self,
        events: Sequence[Event],
        *,
        flavour: str | None = None,
        fits: Callable[[Message], bool] | None = None,
        footer: Footer | None = None,
    ) -> Message:
        """ONE message standing for `events` (a flash sale through a rate-limited robot):
        count, totals per currency, a summary line per event as many as fit."""
        return self.ctx.templates.render_digest(
            [event.to_json() for event in events],
            flavour=flavour or self.flavour,
            locale=self.ctx.locale,
            timezone=self.ctx.timezone,
            fits=fits,
            footer=footer,
        )

    def render(self, event: Event) -> str:
        raise NotImplementedError

    def budget(self) -> Budget | None:
        """The destination's rate limit, or None when it has none worth pacing (console,
        webhook, email). The delivery loop never sends past it; see `pollerd.delivery`."""
        return None

    def render_digest(self, events: list[Event]) -> str:
        """ONE message standing for `events` (in order), in the form `send` takes. This
        default is plain text; chat channels render through their own escaping and limits."""
        return self.digest_message(events, flavour="text").body

    @property
    def digestible(self) -> bool:
        """Whether a digest of this channel is a message people read: true for channels that
        render their own (chat robots, console). The plain-text default is not what the
        others send (an email is a whole MIME message; a webhook's body is one event's signed
        JSON, the contract its receiver parses), so held rows released at the end of quiet
        hours go to them one by one, in order."""
        return type(self).render_digest is not Channel.render_digest

    async def send(self, event: Event, rendered: str) -> SendResult:
        raise NotImplementedError

    async def close(self) -> None:
        return None

    # the HTTP edge ------------------------------------------------------------------------
    def where(self) -> str:
        """How details name the destination: kind and origin, never a path (a hook's path
        is often its credential)."""
        return self.kind

    def secrets(self) -> list[str]:
        """Values that must never reach a detail or a log line (tokens, keys, hook URLs)."""
        return []

    def scrub(self, text: str) -> str:
        return self.edge.scrub(text)

    @cached_property
    def edge(self) -> Edge:
        """This channel's way out: the shared client, named by `where`, scrubbed of `secrets`."""
        return Edge(self.ctx.http, self.where(), self.secrets)

    async def post(
        self, url: str, classify: Callable[[httpx.Response], SendResult], **kwargs: Any
    ) -> SendResult:
        """POST through the edge and classify the answer; a transport failure (or a
        `ChannelError` the hook raises) becomes its SendResult. `kwargs` go to httpx
        (`content`, `json`, `data`, `params`, `headers`, `auth`), plus the edge's `timeout`
        (default: the channel's `timeout` option) and `unsure`."""
        kwargs.setdefault("timeout", self.options.timeout.total_seconds())
        try:
            return await self.edge.send("POST", url, classify, **kwargs)
        except ChannelError as exc:
            if armed("tls_is_permanent") and "TLS handshake failed" in exc.detail:
                return SendResult.permanent(exc.detail)  # test-only (failpoints.py)
            return SendResult.of(exc)

    async def probe_get(self, url: str, *, timeout: float, **kwargs: Any) -> httpx.Response:
        """GET a read-only endpoint for `pollerd check` through the edge; a transport failure
        is `ProbeFailed`, worded and scrubbed like a send's."""
        try:
            return await self.edge.request("GET", url, timeout=timeout, **kwargs)
        except RetryableChannelError as exc:
            raise ProbeFailed(exc.detail) from None

    # `pollerd check` ----------------------------------------------------------------------
    def probe_url(self) -> str | None:
        """Where a send would go, for the default `probe`; None when there is no such address."""
        return None

    async def probe(self, timeout: float = 10.0) -> str | None:
        """What `pollerd check` can learn about the destination WITHOUT sending anything:
        nobody is notified, nothing is posted. This default resolves `probe_url()`'s host and
        opens a TCP (and, for https, a verified TLS) connection, then closes it: no HTTP
        request, since a webhook has no read-only endpoint. Channels with an endpoint that
        is read-only by design (Telegram getMe, Twilio's account) or a protocol that can
        authenticate without sending (SMTP) override it. None: no such probe exists (e.g.
        console, Apprise); `ProbeFailed` says what failed."""
        url = self.probe_url()
        return None if url is None else await reach(url, timeout)


class ProbeFailed(ChannelError):
    """A channel probe failed; the message names host and port, never a URL's secret parts."""


async def reach(url: str, timeout: float) -> str:
    """DNS + TCP (+ TLS for https) to `url`'s host, then hang up: "host:port reachable"."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    where = f"{host}:{port}"
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(
                host, port, ssl=ssl.create_default_context() if tls else None
            )
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    except TimeoutError:
        raise ProbeFailed(f"{where}: no answer within {timeout:g}s") from None
    except ssl.SSLError as exc:
        raise ProbeFailed(f"{where}: TLS failed ({exc.reason or exc})") from None
    except OSError as exc:  # DNS (socket.gaierror) and refused connections
        raise ProbeFailed(f"{where}: {exc.strerror or exc}") from None
    return f"{where} reachable" + (" (TLS verified)" if tls else "") + ", nothing sent"


# The channels' name for the one parser (pollerd.http): capped, so a receiver's `Retry-After:
# 99999999` cannot strand a delivery for years. Prefer `pollerd.http.retry_after(response)`.
retry_after_seconds = parse_retry_after
# One description of a failed exchange for every channel: host:port and what failed (refused,
# reset, DNS, TLS), where httpx alone says `ConnectError: All connection attempts failed`.
describe_transport = transport_error


def json_object(response: httpx.Response) -> dict[str, Any] | None:
    """The response body as a JSON object, or None (HTML error pages, empty bodies, lists)."""
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
