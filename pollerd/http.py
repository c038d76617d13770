"""HTTP facts shared by the sources (store APIs) and the channels (receivers).

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
from email.utils import parsedate_to_datetime

import httpx
from loguru import logger

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
    who: str, method: str, url: httpx.URL | str, status: int | str, started: float, size: int
) -> None:
    """One DEBUG line per store request: method, path, the query without credentials, status,
    duration, bytes. Never a header (Authorization, the access token, a `Link` that echoes
    query-string keys) and never a parameter whose name suggests a credential."""
    parsed = httpx.URL(str(url))
    params = [(k, v) for k, v in parsed.params.multi_items() if not _SECRET_PARAM.search(k)]
    query = "&".join(f"{k}={v}" for k, v in params)
    logger.debug(
        "{}: {} {}{} -> {} in {:.0f} ms, {} bytes",
        who,
        method,
        parsed.path,
        f"?{query}" if query else "",
        status,
        (time.monotonic() - started) * 1000,
        size,
    )
