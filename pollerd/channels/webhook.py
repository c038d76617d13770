"""`webhook`: POST the event JSON, signed per the Standard Webhooks spec (DESIGN §7).

Wire format: the body is `Event.body()` byte for byte (rendered once, stored, resent unchanged);
headers `webhook-id` = the event id (the receiver's idempotency key, the same on every retry),
`webhook-timestamp` = Unix seconds of *this* attempt (receivers reject stale ones, so it is not
stored with the body), `webhook-signature` = `v1,` + base64(HMAC-SHA256(key, "id.ts.body")).

Outcomes, decided here from the status (the spec's delivery rules, research §4.8):

    2xx                          ok
    408 409 425 429, 5xx         retry, not before Retry-After
    timeout, connection error    retry
    3xx                          permanent, channel: not followed (a POST through a 301/302
                                 becomes a bodyless GET), the user must configure the final URL
    401 403 404 410              permanent, channel: wrong URL or secret, or an endpoint that
                                 was removed; every later message would fail the same way, so
                                 the channel is held until its config is fixed
    other 4xx                    permanent, message: the receiver rejects this payload

Details never carry the secret or the signature: a debugging receiver may echo the request's
headers in its error body, and details end up in logs and `pollerd deliveries list`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, ClassVar
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import AfterValidator, Field

from pollerd.channels.base import Channel, ChannelContext, ChannelOptions, SendResult, http_url
from pollerd.config.types import Duration, invalid
from pollerd.http import excerpt, retry_after, scrub
from pollerd.model import Event
from pollerd.secrets import Secret

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format marker, not a secret
RETRY_STATUSES = frozenset({408, 409, 425, 429})
CHANNEL_STATUSES = {
    401: "check that the channel's secret (and headers) match what the receiver expects",
    403: "check that the channel's secret (and headers) match what the receiver expects",
    404: "check the channel's url",
    410: "the receiver removed this endpoint: fix the channel's url or remove the channel",
}
# Headers pollerd owns: a configured header must not replace the signature or the body's type.
RESERVED_HEADERS = frozenset(
    {"content-type", "content-length", "host", "transfer-encoding"}
    | {"webhook-id", "webhook-timestamp", "webhook-signature"}
)
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 field-name


def signing_key(secret: str) -> bytes:
    """The HMAC key of a signing secret. `whsec_` + base64 is the spec's format (the key is the
    decoded part); any other secret is used as its raw UTF-8 bytes, so a receiver configured
    with a plain shared string works too. ValueError for a `whsec_` secret that is not base64.
    """
    if not secret.startswith(SECRET_PREFIX):
        return secret.encode("utf-8")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64 after whsec_") from None
    if not key:
        raise ValueError("empty after whsec_")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    """The `webhook-signature` value (`v1,<base64>`) for one message, per Standard Webhooks."""
    return _sign_with_key(signing_key(secret), msg_id, timestamp, body)


def _sign_with_key(key: bytes, msg_id: str, timestamp: int, body: str) -> str:
    signed = f"{msg_id}.{timestamp}.{body}".encode()
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def _webhook_url(value: str) -> str:
    """http(s) with a host. The URL is never echoed: many hook URLs carry a token in the path."""
    if not http_url(value):
        raise invalid(
            "must be an http:// or https:// URL", 'e.g. "https://hooks.example.com/pollerd"'
        )
    return value.strip()


def _signing_secret(value: Secret) -> Secret:
    try:
        signing_key(value.get())
    except ValueError as exc:  # the message names the problem, never the secret
        fix = "copy it exactly as the receiver shows it; whsec_ must be followed by base64"
        raise invalid(f"is a {SECRET_PREFIX} secret, but {exc}", fix) from None
    return value


def _extra_headers(value: dict[str, str]) -> dict[str, str]:
    for name, header in value.items():
        if name.lower() in RESERVED_HEADERS:
            raise invalid(f"{name!r} is set by pollerd itself", "remove it from headers")
        if not _TOKEN.match(name):
            raise invalid(f"{name!r} is not a valid header name", 'e.g. "X-Team"')
        if any(c in header for c in "\r\n\0"):
            raise invalid(f"the value of {name!r} contains a line break", "use one line")
    return value


class WebhookChannel(Channel):
    """POSTs `Event.body()` with Standard Webhooks headers through the shared httpx client."""

    kind: ClassVar[str] = "webhook"
    secret_fields: ClassVar[tuple[str, ...]] = ("secret",)

    class Options(ChannelOptions):
        url: Annotated[str, AfterValidator(_webhook_url)]
        secret: Annotated[Secret, AfterValidator(_signing_secret)]
        timeout: Duration = timedelta(seconds=10)
        headers: Annotated[dict[str, str], AfterValidator(_extra_headers)] = Field(
            default_factory=dict
        )

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        self._key = signing_key(self.options.secret.get())
        self.clock: Callable[[], float] = time.time  # injectable: tests pin the timestamp

    def probe_url(self) -> str:
        return self.options.url

    def render(self, event: Event) -> str:
        return event.body()

    async def send(self, event: Event, rendered: str) -> SendResult:
        timestamp = int(self.clock())
        signature = _sign_with_key(self._key, event.id, timestamp, rendered)
        headers = {
            **self.options.headers,
            "content-type": "application/json",
            "webhook-id": event.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature,
        }
        return await self.post(
            self.options.url,
            lambda response: self._classify(response, signature),
            content=rendered.encode("utf-8"),
            headers=headers,
        )

    def _classify(self, response: httpx.Response, signature: str) -> SendResult:
        status = response.status_code
        if 200 <= status < 300:
            return SendResult.ok(f"HTTP {status}")
        what = f"{self.where()} answered HTTP {status}"
        excerpt = self._excerpt(response, signature)
        if 300 <= status < 400:
            target = _without_query(response.headers.get("location", ""))
            to = f" to {target}" if target else ""
            return SendResult.permanent(
                f"webhook URL redirects ({status}){to}; configure the final URL in the "
                "channel's url (pollerd does not follow redirects: a POST through a redirect "
                "loses its body)",
                scope="channel",
            )
        if status in CHANNEL_STATUSES:
            return SendResult.permanent(f"{what}{excerpt}; {CHANNEL_STATUSES[status]}", "channel")
        if status in RETRY_STATUSES or status >= 500:
            return SendResult.retry(f"{what}{excerpt}", after=retry_after(response))
        if 400 <= status < 500:
            return SendResult.permanent(f"{what}{excerpt}; the receiver rejects this message")
        return SendResult.retry(f"{what}{excerpt}")  # 1xx as final status: a broken proxy

    def where(self) -> str:
        """The receiver's origin only: the path and query of a hook URL may hold a token."""
        parts = urlsplit(self.options.url)
        return f"webhook {parts.scheme}://{parts.hostname}" + (
            f":{parts.port}" if parts.port else ""
        )

    def secrets(self) -> list[str]:
        return [self.options.secret.get()]

    def _excerpt(self, response: httpx.Response, signature: str) -> str:
        """The start of the receiver's error body (it often says what is wrong), on one line,
        with anything that could be our signature or secret blanked out."""
        secrets = [signature, signature.removeprefix("v1,"), *self.secrets()]
        text = excerpt(response, scrub=lambda raw: scrub(raw, secrets))
        return f": {text}" if text else ""


def _without_query(url: str) -> str:
    """A redirect target without credentials or query string, either of which may be a token."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    if not parts.netloc and not parts.path:
        return ""
    query = "?…" if parts.query else ""
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", "")) + query
