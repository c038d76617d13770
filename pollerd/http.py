"""The one outgoing-HTTP edge: every request pollerd makes to a store API or a receiver.

`Edge` sends with a timeout, turns transport failures into one retryable error naming
host:port (`transport_error`), scrubs the caller's secrets from anything that reaches an
exception message or the log, counts the request (`observe`) and writes the DEBUG request
line (`log_exchange`). What an *answer* means stays with the caller, as the `classify` hook it
passes to `Edge.send` (errcodes in a 200 body, WAF pages, OAuth re-signing, Telegram's group
migration): Singer SDK's `validate_response`, in our vocabulary (`pollerd.errors`).

ONE `Retry-After` parser, because two disagreed: the channels' took `99999999` at its word (a
row due in ~1,157 days, never dead-lettered, never listed) while the sources' capped it at an
hour. Both now read it here: delta-seconds or an HTTP-date (RFC 9110 §10.2.3), never negative,
never more than `MAX_RETRY_AFTER`, and None for anything else.
"""

from __future__ import annotations

import math
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx
from loguru import logger

from pollerd.errors import RetryableChannelError
from pollerd.failpoints import armed

T = TypeVar("T")

MAX_RETRY_AFTER = 3600.0
"""A `Retry-After` beyond an hour is treated as an hour: a misconfigured proxy or receiver must
not silence a store or strand a delivery for a day; the next answer can always ask again."""


def parse_retry_after(
    value: str | None, *, now: float | None = None, cap: float = MAX_RETRY_AFTER
) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP-date), at most `cap`,
    or None when absent or unreadable. `now` is wall-clock epoch seconds (for the date form);
    a date without a zone is not an RFC 9110 date (those are GMT) and is ignored."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return min(max(seconds, 0.0), cap)


def retry_after(response: httpx.Response) -> float | None:
    """The answer's `Retry-After`, read the one way (`parse_retry_after`)."""
    return parse_retry_after(response.headers.get("retry-after"))


# --- transport failures ------------------------------------------------------------------------

_ACTION: tuple[tuple[type[httpx.HTTPError], str], ...] = (
    (httpx.ConnectTimeout, "no connection to {where} within the timeout"),
    (httpx.ConnectError, "cannot connect to {where}"),
    (httpx.ReadTimeout, "no answer from {where} within the timeout"),
    (httpx.WriteTimeout, "{where} did not take the request within the timeout"),
    (httpx.PoolTimeout, "no free connection to {where} within the timeout"),
    (httpx.ReadError, "the connection to {where} broke while reading the answer"),
    (httpx.WriteError, "the connection to {where} broke while sending the request"),
    (httpx.RemoteProtocolError, "{where} broke off the HTTP exchange"),
    (httpx.ProxyError, "the proxy to {where} refused the connection"),
)


def transport_error(exc: BaseException) -> str:
    """One line for a failed HTTP exchange: which host:port, what kind of failure, why.

    httpx alone says `ConnectError: All connection attempts failed` (no host, no port, no
    reason) or `ReadError: ` (empty): the reason is in the exception chain (refused, DNS, TLS,
    reset), the place in the request. Hosts are never secret; paths and queries may be (hook
    tokens, query-string keys), so they are left out."""
    where = _where(exc)
    action = f"{type(exc).__name__} talking to {where}"
    for kind, text in _ACTION:
        if isinstance(exc, kind):
            action = text.format(where=where)
            break
    reason = _reason(exc)
    return f"{action}" + (f": {reason}" if reason else "") + f" ({type(exc).__name__})"


def _where(exc: BaseException) -> str:
    try:
        url = exc.request.url  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):  # httpx raises RuntimeError when no request is set
        return "the server"
    port = url.port or {"https": 443, "http": 80}.get(url.scheme)
    return f"{url.host}:{port}" if port else str(url.host)


def _reason(exc: BaseException) -> str:
    """The deepest cause in words, or the exception's own text when the chain says nothing."""
    causes: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(causes) < 10:
        causes.append(seen)
        seen = seen.__cause__ or seen.__context__
    for cause in reversed(causes):  # the deepest first: the socket's own word
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS certificate not accepted ({cause.verify_message})"
        if isinstance(cause, ssl.SSLError):
            return f"TLS handshake failed ({cause.reason or cause})"
        if isinstance(cause, socket.gaierror):
            return f"host name not found (DNS: {cause.strerror})"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused, nothing listens there or a firewall rejects it"
        if isinstance(cause, ConnectionResetError):
            return "connection reset by the other side"
        if isinstance(cause, ConnectionAbortedError | BrokenPipeError):
            return "connection closed by the other side"
        if isinstance(cause, OSError) and cause.errno is not None and cause.strerror:
            return cause.strerror.lower()
    text = next((str(c) for c in causes if str(c)), "")
    if text in ("All connection attempts failed", ""):
        return "connection closed by the other side" if isinstance(exc, httpx.ReadError) else ""
    return text.rstrip(".")


# --- request log -------------------------------------------------------------------------------

_SECRET_PARAM = re.compile(r"key|secret|token|signature|oauth|pass|auth|sig", re.IGNORECASE)


def log_exchange(
    who: str,
    method: str,
    url: httpx.URL | str | None,
    status: int | str,
    started: float,
    size: int,
    scrub: Callable[[str], str] = str,
) -> None:
    """One DEBUG line per request: method, path, the query without credentials, status,
    duration, bytes. Never a header (Authorization, the access token, a `Link` that echoes
    query-string keys) and never a parameter whose name suggests a credential. `url=None`
    leaves the path out (a receiver's path is often its credential: Slack, Discord, Telegram
    hooks); `scrub` blanks the caller's own secrets."""
    shown = ""
    if url is not None:
        parsed = httpx.URL(str(url))
        params = [(k, v) for k, v in parsed.params.multi_items() if not _SECRET_PARAM.search(k)]
        query = "&".join(f"{k}={v}" for k, v in params)
        shown = " " + scrub(parsed.path + (f"?{query}" if query else ""))
    logger.debug(
        "{}: {}{} -> {} in {:.0f} ms, {} bytes",
        who,
        method,
        shown,
        status,
        (time.monotonic() - started) * 1000,
        size,
    )


# --- the edge ----------------------------------------------------------------------------------

EXCERPT = 200
"""Characters of an answer a detail quotes: enough for an API's error message, not a page."""


def excerpt(
    response: httpx.Response, said: str | None = None, scrub: Callable[[str], str] = str
) -> str:
    """What the other side said, on one line: `said` (the message field of its JSON) or the
    start of the body, scrubbed BEFORE it is cut (a secret cut in half would escape)."""
    text = said if said is not None else response.text[: EXCERPT * 4]
    return " ".join(scrub(text).split())[:EXCERPT]


MIN_SECRET = 4
"""Shorter values are not blanked: masking every "ab" would garble the text and hide nothing."""


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret value replaced by `****`, the longest first (a URL before the
    token inside it, so no half-masked URL is left)."""
    for value in sorted(secrets, key=len, reverse=True):
        if len(value) >= MIN_SECRET:
            text = text.replace(value, "****")
    return text


def timed_out(exc: httpx.TimeoutException, seconds: float) -> str:
    """The receivers' words for a timeout: a connect timeout sent nothing; a read timeout
    may have (the receiver can have acted before it did not answer)."""
    if isinstance(exc, httpx.ConnectTimeout):
        return f"connect timed out after {seconds:g}s"
    return f"no answer after {seconds:g}s (timed out)"


NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.ProxyError, httpx.PoolTimeout)
"""Transport failures before the request left: nothing can have reached the other side."""


@dataclass
class Edge:
    """One way out for the requests of one caller (a channel, a store client).

    `where` names the other side in every message and log line, by scheme and host only (the
    path of a hook URL is often its credential); `secrets()` are the values that must never
    reach a message or a log; `failure` builds the retryable error a transport failure raises
    (a `RetryableChannelError` by default; a source passes its `RetryableSourceError`);
    `observe` counts each request by status or "timeout"/"error" (`metrics.api_request`);
    `log_path` puts the path and the query (credentials left out) in the DEBUG line.

    A channel gets its edge from `Channel.edge` (`Channel.post` sends and classifies). A store
    client builds one per store, e.g. for WooCommerce::

        Edge(http, f"store {name}", secrets=lambda: [cfg.consumer_secret.get()],
             failure=lambda text: RetryableSourceError(name, text),
             observe=lambda code: metrics.api_request(name, code), log_path=True,
             timeouts=lambda exc, s: f"no answer within {s:g} s (timeout)")

    and calls `await edge.request(method, url, timeout=..., label=f"{method} {path}")` inside
    its pacing slot (a `RetryableSourceError` out of it is also the pacer's `failure()`), then
    its own `classify(response)`: WAF pages, OAuth re-signing and GraphQL errors in a 200."""

    client: httpx.AsyncClient
    where: str
    secrets: Callable[[], Iterable[str]] = tuple
    failure: Callable[[str], Exception] = RetryableChannelError
    observe: Callable[[int | str], None] | None = None
    log_path: bool = False
    timeouts: Callable[[httpx.TimeoutException, float], str] = field(default=timed_out)

    def scrub(self, text: str) -> str:
        return scrub(text, self.secrets())

    async def request(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        timeout: float,
        label: str | None = None,
        unsure: str = "",
        **kwargs: Any,
    ) -> httpx.Response:
        """Send one request, redirects never followed (a POST through a 301/302 arrives as a
        bodyless GET). Raises `failure(text)` on a transport failure, the text naming `label`
        (default `where`), what failed and where; `unsure` is appended when the request may
        have reached the other side before it failed (an SMS that may exist already)."""
        started = time.monotonic()
        try:
            response = await self.client.request(
                method, url, timeout=timeout, follow_redirects=False, **kwargs
            )
        except httpx.HTTPError as exc:  # transport failures, and a body that does not decode
            status = "timeout" if isinstance(exc, httpx.TimeoutException) else "error"
            self._record(method, url, status, started, 0)
            if isinstance(exc, httpx.TimeoutException):
                what = self.timeouts(exc, timeout)
            else:
                what = transport_error(exc)
            if armed("unsure_is_sent") and not isinstance(exc, NOT_SENT):  # failpoints.py
                return httpx.Response(200, request=exc.request)  # "it left, so it arrived"
            text = f"{label or self.where}: {what}"
            if unsure and not isinstance(exc, NOT_SENT):
                text += f" ({unsure})"
            raise self.failure(self.scrub(text)) from None
        self._record(method, url, response.status_code, started, len(response.content))
        return response

    async def send(
        self,
        method: str,
        url: str | httpx.URL,
        classify: Callable[[httpx.Response], T],
        *,
        timeout: float,
        **kwargs: Any,
    ) -> T:
        """`request`, then the caller's `classify(response)`: the outcome in its vocabulary."""
        return classify(await self.request(method, url, timeout=timeout, **kwargs))

    def _record(
        self, method: str, url: str | httpx.URL, status: int | str, started: float, size: int
    ) -> None:
        log_exchange(
            self.where, method, url if self.log_path else None, status, started, size, self.scrub
        )
        if self.observe is not None:
            self.observe(status)
