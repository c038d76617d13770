"""One store's way out: its HTTP client, its `pollerd.http.Edge`, and the paced send.

Every source client sends through a `StoreConnection`, so what is the same for every store API
is written once: the client it owns (or shares), the timeout applied per request, transport
failures as `RetryableSourceError` naming the request and host:port, the store's credentials
scrubbed from messages and from the DEBUG request line, `pollerd_api_requests_total` counted
per answer. A client keeps only what differs: URLs, parameters, auth signing, and its
`classify(response)` (WAF pages, OAuth re-signing, GraphQL errors in a 200).

`paced` adds the `RequestPacer` slot the REST clients share: one request in flight, spacing,
back-off after a transport failure, and a pending `Retry-After` longer than one call may sleep
ending the call (retryable, nothing sent) instead of hanging the pass.

`StoreClient` is how every store client is built: `Client(cfg, http=..., clock=..., sleep=...)`,
the transport, clock and sleep being what a test replaces (a `MockTransport`, fake time) and
the daemon injects (`Waits.sleep`, so a stop cuts a pacing wait short).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypedDict

import httpx

from pollerd import metrics
from pollerd.errors import RetryableSourceError
from pollerd.http import Edge
from pollerd.sources.ratelimit import RequestPacer, TooSoon

if TYPE_CHECKING:
    from pollerd.config.models import StoreConfig

__all__ = ["StoreClient", "StoreConnection", "Wiring", "no_answer"]


def no_answer(exc: httpx.TimeoutException, seconds: float) -> str:
    """A store timeout in the sources' words (connect or read alike: every store request is a
    read or a token grant, safe to repeat whether or not it arrived)."""
    return f"no answer within {seconds:g} s (timeout)"


class StoreConnection:
    """The HTTP side of one store (see the module docstring). Owns its client unless given one;
    the timeout is applied per request, so a shared client works too. `failure` builds the
    error of a transport failure (a client that retries some of them inline raises its own
    `RetryableSourceError` subclass).

    `throttled` counts the store's "slow down"s: in `paced`, 429 answers and pending
    `Retry-After` pauses that kept a request from going out; a client that reads the signal
    from the body (Shopify's THROTTLED) adds its own. The sync reads it from the source
    (metrics are written, never read back)."""

    def __init__(
        self,
        store: str,
        timeout: timedelta,
        http: httpx.AsyncClient | None,
        *,
        secrets: Callable[[], Iterable[str]],
        failure: Callable[[str], RetryableSourceError] | None = None,
        asker: str = "the store",
    ) -> None:
        self.store = store
        self.seconds = timeout.total_seconds()
        self.asker = asker  # who "asked for a pause" in the TooSoon message
        self.throttled = 0
        self._owns_http = http is None
        self.http = http or httpx.AsyncClient(
            timeout=httpx.Timeout(self.seconds), follow_redirects=False
        )
        self.edge = Edge(
            self.http,
            f"store {store}",
            secrets=secrets,
            failure=failure or (lambda text: RetryableSourceError(store, text)),
            observe=lambda code: metrics.api_request(store, code),
            log_path=True,
            timeouts=no_answer,
        )

    def scrub(self, text: str) -> str:
        """`text` without the store's credentials: the last line of defence for messages."""
        return self.edge.scrub(text)

    async def request(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        label: str,
        failure: Callable[[str], RetryableSourceError] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """One request through the edge; a transport failure raises the connection's
        `failure` (or this call's) with "`label`: what failed, host:port". Redirects are never
        followed."""
        edge = self.edge if failure is None else replace(self.edge, failure=failure)
        return await edge.request(method, url, timeout=self.seconds, label=label, **kwargs)

    async def paced(
        self,
        pacer: RequestPacer,
        method: str,
        url: str | httpx.URL,
        *,
        label: str,
        headers: Callable[[], Awaitable[dict[str, str]]],
        **kwargs: Any,
    ) -> httpx.Response:
        """`request` in the store's pacing slot. `headers()` is awaited inside the slot, just
        before the send (a token fetched or a call bucket waited for there is not raced by a
        second request). A transport failure also slows the pacer down."""
        try:
            async with pacer.slot():
                sent = await headers()
                try:
                    response = await self.request(method, url, label=label, headers=sent, **kwargs)
                except RetryableSourceError:
                    pacer.failure()
                    raise
                self.throttled += response.status_code == 429
                return response
        except TooSoon as exc:
            self.throttled += 1
            raise RetryableSourceError(
                self.store,
                f"{self.asker} asked for a pause (Retry-After): {exc.wait:.0f} s left, so no "
                "request was sent",
                retry_after=exc.wait,
            ) from None

    async def aclose(self) -> None:
        if self._owns_http:
            await self.http.aclose()


class Wiring(TypedDict, total=False):
    """What a store client takes besides its config (`StoreClient`)."""

    http: httpx.AsyncClient | None
    clock: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]]


class StoreClient:
    """The base of every client of one store's API: its config and name, its injected clock
    and sleep, and its `connection`. A subclass says what differs: `secrets()` (the values
    never to show), `transport_failure` (the error a failed exchange raises) and `asker` (who
    asks for a pause, in words)."""

    cfg: StoreConfig
    asker = "the store"

    def __init__(
        self,
        cfg: StoreConfig,
        *,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.clock = clock
        self.sleep = sleep
        self.connection = StoreConnection(
            cfg.name,
            cfg.timeout,
            http,
            secrets=self.secrets,
            failure=self.transport_failure,
            asker=self.asker,
        )

    def secrets(self) -> Iterable[str]:
        """The credentials scrubbed from every message and request line (read at each use: a
        token may be replaced)."""
        return ()

    def transport_failure(self, text: str) -> RetryableSourceError:
        return RetryableSourceError(self.name, text)

    @property
    def http(self) -> httpx.AsyncClient:
        return self.connection.http

    @property
    def throttled(self) -> int:
        """The store's "slow down"s so far (`StoreConnection.throttled`): the sync compares it
        across a pass to tell "throttled" from "error"."""
        return self.connection.throttled

    async def aclose(self) -> None:
        await self.connection.aclose()
