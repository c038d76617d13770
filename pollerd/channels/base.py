"""What every channel is: render an event once, send it, say ok / retry(after) / permanent(scope).

Channels decide success from the HTTP status *and* the body at their own edge; the delivery
loop never guesses. A channel never imports a source, and never sees a secret it does not own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import httpx

from pollerd.errors import PollerdError
from pollerd.http import parse_retry_after, transport_error
from pollerd.model import Event
from pollerd.templates import Footer, Message, Templates, templates_for

Scope = Literal["message", "channel", "recipient"]
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


@dataclass(frozen=True)
class ChannelContext:
    """What the daemon hands every channel: its config table and the shared pieces."""

    name: str
    options: dict[str, Any]  # the [[channels]] table minus name/type, secrets already resolved
    http: httpx.AsyncClient
    timezone: str = "UTC"
    locale: str = "en"
    # One-click unsubscribe (pollerd.unsubscribe): (channel name, address) → opted out?, and
    # → the personal https link; None when the daemon has no store / no public_url.
    suppressed: Callable[[str, str], bool] | None = None
    unsubscribe_link: Callable[[str, str], str] | None = None
    # Built-in templates plus the user's folder (`[pollerd] templates`), shared by all channels.
    templates: Templates = field(default_factory=templates_for)


class Channel:
    """Base class; subclasses set `kind` and implement `render` and `send`.

    `render` runs once per delivery and its result is stored in the outbox, so a resend is
    byte-identical (receivers that dedupe on content, e.g. WeCom app messages, rely on that).
    """

    kind: ClassVar[str] = ""
    secret_fields: ClassVar[tuple[str, ...]] = ()
    flavour: ClassVar[str] = "text"  # the templates' flavour this channel renders (templates/)

    def __init__(self, ctx: ChannelContext) -> None:
        self.ctx = ctx
        self.name = ctx.name

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

    async def send(self, event: Event, rendered: str) -> SendResult:
        raise NotImplementedError

    async def close(self) -> None:
        return None

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


class ProbeFailed(PollerdError):
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
# 99999999` cannot strand a delivery for years.
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
