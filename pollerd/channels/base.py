"""What every channel is: render an event once, send it, say ok / retry(after) / permanent(scope).

Channels decide success from the HTTP status *and* the body at their own edge; the delivery
loop never guesses. A channel never imports a source, and never sees a secret it does not own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import httpx

from pollerd.model import Event

Scope = Literal["message", "channel", "recipient"]


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
class ChannelContext:
    """What the daemon hands every channel: its config table and the shared pieces."""

    name: str
    options: dict[str, Any]  # the [[channels]] table minus name/type, secrets already resolved
    http: httpx.AsyncClient
    timezone: str = "UTC"
    locale: str = "en"


class Channel:
    """Base class; subclasses set `kind` and implement `render` and `send`.

    `render` runs once per delivery and its result is stored in the outbox, so a resend is
    byte-identical (receivers that dedupe on content, e.g. WeCom app messages, rely on that).
    """

    kind: ClassVar[str] = ""
    secret_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, ctx: ChannelContext) -> None:
        self.ctx = ctx
        self.name = ctx.name

    def render(self, event: Event) -> str:
        raise NotImplementedError

    async def send(self, event: Event, rendered: str) -> SendResult:
        raise NotImplementedError

    async def close(self) -> None:
        return None


def retry_after_seconds(value: str | None) -> float | None:
    """`Retry-After` as seconds or an HTTP-date (RFC 9110 §10.2.3); None when absent or junk."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from datetime import UTC, datetime
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
