"""What every channel is: render an event once, send it, say ok / retry(after) / permanent(scope).

Channels decide success from the HTTP status *and* the body at their own edge; the delivery
loop never guesses. A channel never imports a source, and never sees a secret it does not own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import httpx

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
        fullest version that `fits` (see `pollerd.templates.engine`)."""
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
