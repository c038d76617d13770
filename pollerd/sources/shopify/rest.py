"""Shopify's REST Admin API (`/admin/api/{version}/orders.json`) as a pollerd `Source`.

The legacy fallback (`api = "rest"`) for stores where GraphQL is not an option. Every choice
below answers a failure seen in peers (research/shopify.md §2, §3):

- `status=any` on every order request: the default `open` silently skips closed and cancelled
  orders (frappe/ecommerce_integrations PR #410), and a cancellation is an alert.
- `updated_at_min` is inclusive and pages ascend by `order=updated_at asc` (ties by id): the
  sync's overlap re-reads the boundary and dedupes, instead of dropping rows that share the
  bookmark's second (Matatika's `post_process`, Hotglue's strict `>`).
- Pages are followed through the `Link` header's `page_info`, which freezes the filters: with it
  only `limit` and `fields` may be sent (anything else is a 400), so the first page's filters
  hold for the whole walk and `after` is ignored once a token is given.
- Pacing: REST is a leaky bucket of requests (`X-Shopify-Shop-Api-Call-Limit: used/size`, 2/s
  leak on standard plans). Other apps share it, so requests wait while the estimated level would
  pass `max_budget × size`; the size is read from the header (Plus buckets are bigger). A 429's
  `Retry-After` is slept through when short, else the call ends retryable with that wait.
- 5xx, timeouts and resets back off (`ratelimit.Backoff`) and end the call retryable: nothing in
  front of Shopify is trusted to say "no orders". 401/402/403/404/423 are fatal with the fix.
- Shopify answers a retired or unknown `api_version` with the oldest supported one instead of an
  error; `X-Shopify-API-Version` says which, and a difference is warned about once.

Errors are typed here, at the edge; messages never contain the access token.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Literal, Unpack

import httpx
from loguru import logger

from pollerd import metrics
from pollerd.errors import PermanentSourceError, RetryableSourceError
from pollerd.failpoints import armed
from pollerd.http import retry_after
from pollerd.model import Order
from pollerd.sources.base import (
    Deletion,
    Dispute,
    FeedUnavailable,
    Listed,
    ListPage,
    Malformed,
    PageToken,
    clamped,
)
from pollerd.sources.connection import StoreClient, Wiring
from pollerd.sources.ratelimit import RequestPacer, backfill_keep
from pollerd.sources.shopify import ShopifyStore
from pollerd.sources.shopify.auth import token_provider
from pollerd.sources.shopify.normalize import admin_url
from pollerd.sources.shopify.rest_normalize import (
    LIST_FIELDS,
    ORDER_FIELDS,
    OrderPayloadError,
    deletion,
    listed_row,
    normalize,
    rest_captured_at,
)
from pollerd.sources.shopify.rules import SHOPIFY_PAID
from pollerd.sources.shopify.version import ServedVersion

PAGE_LIMIT = 250  # Shopify's maximum (251 → 400)
INLINE_WAIT = 10.0
"""Retry-After pauses up to this are slept through; longer ones end the call (retryable)."""
THROTTLE_TRIES = 4
"""429s answered in a row before the call gives up (retryable): another app is draining the
bucket faster than it leaks, and the next poll pass will try again."""
DEFAULT_RETRY_AFTER = 2.0  # what Shopify sends (MONEI/Shopify-api-node#135)
STANDARD_LEAK = 2.0
"""Requests per second the bucket leaks on standard plans. The header carries only the size;
Shopify's documented pairs (40 → 2/s, 80 → 4/s, 400 → 20/s) are size / 20, never below 2."""
MAX_PER_MINUTE = 600.0
"""The pacer's floor spacing (0.1 s): the bucket is the real limit, this only gives the
back-off something to stretch after 5xx and timeouts."""
APP_SETTINGS = "Shopify admin → Settings → Apps and sales channels → Develop apps → your app"


class CallLimit:
    """pollerd's estimate of the shop's REST bucket, from the last `used/size` header.

    The level leaks at `size / 20` per second from when the header was read; a request is held
    back while level + 1 would pass the share (`max_budget × size`). Without a header yet, the
    first request goes out blind and its answer says where the bucket stands.
    """

    def __init__(self, budget: float, clock: Callable[[], float]) -> None:
        self.budget = budget
        self.clock = clock
        self.size: int | None = None
        self._used = 0.0
        self._at = 0.0

    @property
    def leak(self) -> float:
        return max(STANDARD_LEAK, (self.size or 0) / 20)

    @property
    def share(self) -> float:
        return max(1.0, self.budget * (self.size or 0))

    def level(self) -> float:
        return max(0.0, self._used - self.leak * (self.clock() - self._at))

    def used_ratio(self) -> float | None:
        """How full the shop's call bucket is (0-1), None before the first answer."""
        return None if not self.size else min(1.0, self.level() / self.size)

    def delay(self) -> float:
        """Seconds to wait before the next request keeps the level within the share (none with
        the test-only failpoint `ignore_throttle`, the bug fault row 6 catches)."""
        if self.size is None or armed("ignore_throttle"):
            return 0.0
        return max(0.0, (self.level() + 1 - self.share) / self.leak)

    def observe(self, header: str | None) -> None:
        used, _, size = (header or "").partition("/")
        try:
            level, capacity = float(used), int(size)
        except ValueError:
            return
        if capacity > 0:
            self.size, self._used, self._at = capacity, level, self.clock()

    def full(self) -> None:
        """A 429: whatever the estimate said, the bucket is full right now."""
        if self.size is not None:
            self._used, self._at = float(self.size), self.clock()


class ShopifyRestSource(StoreClient):
    """One Shopify store over REST (see the module docstring); headers are applied per request,
    so a shared HTTP client works too (`StoreClient`). One request in flight per store."""

    platform = "shopify"
    keyset: Literal["id", "updated_at"] = "updated_at"

    cfg: ShopifyStore
    asker = "Shopify"

    def __init__(self, cfg: ShopifyStore, **wiring: Unpack[Wiring]) -> None:
        super().__init__(cfg, **wiring)
        self.shop = cfg.shop
        self.site = (cfg.base_url or f"https://{cfg.shop}").rstrip("/")
        self.api = f"/admin/api/{cfg.api_version}"
        self._auth = token_provider(cfg, self.site, clock=self.clock)
        self._token = ""  # the last one sent, scrubbed from every message
        self._pacer = RequestPacer(MAX_PER_MINUTE, self.clock, self.sleep, max_wait=INLINE_WAIT)
        self._bucket = CallLimit(cfg.max_budget, self.clock)
        metrics.watch_budget(self.name, self._bucket.used_ratio)
        self.version = ServedVersion(cfg.name, cfg.api_version)

    # --- Source --------------------------------------------------------------------------------

    async def check(self) -> str:
        """Auth, the version Shopify serves, and the order count (when count.json answers)."""
        await self.probe()
        response = await self._request("orders/count.json", {"status": "any"})
        count = "order count not available"  # ShopSim has no count.json; Shopify does
        if response.status_code != 404:
            self._settle(response)
            value = self._decode(response)
            raw = value.get("count") if isinstance(value, dict) else None
            count = f"{raw} orders" if isinstance(raw, int) else count
        served = self.version.served or "an unreported version"
        return (
            f"Shopify {self.shop} over the REST Admin API {served} (pinned "
            f"{self.cfg.api_version}), {self._auth.kind}, {count}"
        )

    async def probe(self) -> Listed | None:
        """The most recently updated order, one row: one request from the bucket."""
        params = {"limit": "1", "status": "any", "order": "updated_at desc", "fields": LIST_FIELDS}
        data, _ = await self._get_json("orders.json", params)
        rows = self._orders(data)
        return listed_row(rows[0], store=self.name) if rows else None

    async def list_modified(
        self, after: datetime, page: PageToken, *, status: str = "any"
    ) -> ListPage:
        """Orders updated at or after `after`, by ascending (updated_at, id). With a `page`
        token the filters of the walk's first page apply and `after` is ignored."""
        window = {"status": status, "updated_at_min": rfc3339(after), "order": "updated_at asc"}
        return await self._list(window, page)

    async def list_created(self, after: datetime, page: PageToken) -> ListPage:
        """Orders created at or after `after`: the sweeps' second path (a filter that does not
        depend on updated_at). Still *sorted* by (updated_at, id): the sync refuses any page of
        this source that does not ascend by `keyset`, and by creation an order updated after a
        newer one was placed would read as "went backwards" (sync._walk), failing every sweep."""
        window = {"status": "any", "created_at_min": rfc3339(after), "order": "updated_at asc"}
        return await self._list(window, page)

    async def fetch(self, ids: list[str], *, status: str = "any") -> list[Order | Malformed]:
        """Full orders by id, `ids=` in chunks of 250. Deleted orders are simply absent; one
        that does not read is set aside (`Malformed`)."""
        wanted = list(dict.fromkeys(str(i) for i in ids))
        orders: list[Order | Malformed] = []
        for start in range(0, len(wanted), PAGE_LIMIT):
            chunk = wanted[start : start + PAGE_LIMIT]
            params = {"ids": ",".join(chunk), "status": status, "fields": ORDER_FIELDS}
            async for data in self._pages("orders.json", params):
                for payload in self._orders(data):
                    if str(payload.get("id")) in chunk:  # a server ignoring ids= must not leak in
                        try:
                            orders.append(normalize(payload, store=self.name, shop=self.shop))
                        except OrderPayloadError as exc:  # set aside; the others go on
                            url = admin_url(self.shop, str(payload.get("id")))
                            orders.append(Malformed.of(exc, payload, url))
        return orders

    async def dated(self, order: Order) -> Order:
        """The capture date REST orders lack (GraphQL reads it with the order): one
        `orders/<id>/transactions.json`, only for an order whose state says it was paid."""
        if order.paid_at is not None or order.financial_status not in SHOPIFY_PAID:
            return order
        data, _ = await self._get_json(f"orders/{int(order.id)}/transactions.json", {})
        found = data.get("transactions") if isinstance(data, dict) else None
        paid = rest_captured_at(found, store=self.name, oid=order.id)
        return replace(order, paid_at=paid) if paid is not None else order

    def budget_used(self) -> float | None:
        return clamped(self._bucket.used_ratio())

    def use_backfill_budget(self) -> str:
        """`Backfilling`: keep the call bucket at most half the live share full, so a daemon
        polling the same shop always has room (the calls leak at the shop's own rate, which
        the backfill then uses whole); `backfill_max_budget` caps it further."""
        share = min(self.cfg.backfill_max_budget, 1.0 - backfill_keep(self.cfg.max_budget))
        self._bucket = CallLimit(share, self.clock)
        metrics.watch_budget(self.name, self._bucket.used_ratio)
        return f"the call bucket up to {share:.0%} full (half of max_budget)"

    def secrets(self) -> tuple[str]:
        return (self._token,)

    # --- Feeds ---------------------------------------------------------------------------------

    async def deletions(self, after: datetime) -> list[Deletion]:
        """Orders destroyed at or after `after` (the events feed keeps them; listings cannot),
        oldest first."""
        params = {"filter": "Order", "verb": "destroy", "created_at_min": rfc3339(after)}
        found: list[tuple[datetime, int, Deletion]] = []
        async for data in self._pages("events.json", params, feed="deletions"):
            events = data.get("events") if isinstance(data, dict) else None
            if not isinstance(events, list):
                raise self._retryable('expected a JSON object {"events": [...]}')
            found += [d for d in (deletion(e, store=self.name) for e in events) if d is not None]
        found.sort(key=lambda item: item[:2])
        return [d for _, _, d in found]

    async def disputes(self, since: datetime) -> list[Dispute]:
        """Not read over REST: `shopify_payments/disputes.json` needs its own scope and shape."""
        raise FeedUnavailable(
            self.name,
            "disputes",
            'disputes are read only by api = "graphql" (scope read_shopify_payments_disputes); '
            "set disputes = false for this store, or switch it to GraphQL",
        )

    # --- listing -------------------------------------------------------------------------------

    async def _list(self, window: dict[str, str], page: PageToken) -> ListPage:
        params = {"limit": str(PAGE_LIMIT), "fields": LIST_FIELDS}
        if page is None:
            params.update(window)
        elif isinstance(page, str) and page:
            params["page_info"] = page
        else:
            raise TypeError(f"a Shopify REST page token is a page_info string, not {page!r}")
        data, response = await self._get_json("orders.json", params)
        rows = [listed_row(row, store=self.name) for row in self._orders(data)]
        return ListPage(rows=rows, next=next_page(response))

    async def _pages(
        self, path: str, params: dict[str, str], *, feed: str | None = None
    ) -> AsyncIterator[Any]:
        """Every page of a `Link`-paged listing. The filters are frozen into `page_info`, so
        after the first page only `limit`, `fields` and the token go out."""
        query = {**params, "limit": str(PAGE_LIMIT)}
        while True:
            data, response = await self._get_json(path, query, feed=feed)
            yield data
            token = next_page(response)
            if token is None:
                return
            query = {k: v for k, v in query.items() if k in ("limit", "fields")}
            query["page_info"] = token

    def _orders(self, data: Any) -> list[dict[str, Any]]:
        """The `orders` list of a 200, or retryable: anything else is an intermediary's page or
        an error hidden in a 200, never "no orders"."""
        orders = data.get("orders") if isinstance(data, dict) else None
        if not isinstance(orders, list) or not all(isinstance(o, dict) for o in orders):
            raise self._retryable('expected a JSON object {"orders": [...]} of order objects')
        return orders

    # --- HTTP ----------------------------------------------------------------------------------

    async def _get_json(
        self, path: str, params: dict[str, str], *, feed: str | None = None
    ) -> tuple[Any, httpx.Response]:
        response = await self._request(path, params)
        self._settle(response, feed=feed)
        return self._decode(response), response

    async def _request(self, path: str, params: dict[str, str]) -> httpx.Response:
        """One GET, after the bucket allows it; short 429 pauses are waited out and retried, and
        a client-credentials token refused with 401 is replaced once (revoked or expired early)."""
        wait = DEFAULT_RETRY_AFTER
        refreshed = False
        for _ in range(THROTTLE_TRIES):
            response = await self._send(path, params)
            if response.status_code == 401 and self._auth.can_refresh and not refreshed:
                refreshed = True
                self._auth.invalidate()
                response = await self._send(path, params)
            if response.status_code != 429:
                return response
            wait = retry_after(response) or DEFAULT_RETRY_AFTER
            if "X-Shopify-Shop-Api-Call-Limit" not in response.headers:
                self._bucket.full()
            self._pacer.failure(wait)
            logger.debug("store {}: HTTP 429 on {}; waiting {:g} s", self.name, path, wait)
        raise self._retryable(
            f"GET {path}: HTTP 429 {THROTTLE_TRIES} times in a row (another app shares the "
            "API bucket and is draining it); lower max_budget or the other app's rate",
            wait,
        )

    async def _send(self, path: str, params: dict[str, str]) -> httpx.Response:
        """Send one GET in the store's slot, once the call bucket has room; transport failures
        become retryable."""

        async def ready() -> dict[str, str]:
            self._token = await self._auth.token(self.connection)
            pause = self._bucket.delay()
            if pause > 0:
                await self.sleep(pause)
            return {
                "X-Shopify-Access-Token": self._token,
                "User-Agent": self.cfg.user_agent,
                "Accept": "application/json",
            }

        # The query in the URL itself, so the DEBUG line shows it (names of credentials left out).
        url = httpx.URL(f"{self.site}{self.api}/{path}", params=params)
        response = await self.connection.paced(
            self._pacer, "GET", url, label=f"GET {path}", headers=ready
        )
        self._bucket.observe(response.headers.get("X-Shopify-Shop-Api-Call-Limit"))
        return response

    def _decode(self, response: httpx.Response) -> Any:
        try:
            return json.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            self._pacer.failure()
            kind = response.headers.get("Content-Type", "no content type").split(";")[0]
            raise self._retryable(
                f"HTTP {response.status_code} with a body that is not JSON ({kind}, "
                f"{len(response.content)} bytes: cut off, or a proxy's page)"
            ) from None

    def _settle(self, response: httpx.Response, *, feed: str | None = None) -> None:
        """Type a non-2xx answer (status and body) as retryable or fatal; feed the pacer."""
        status = response.status_code
        if 200 <= status < 300:
            self._pacer.success()
            self.version.note(response)
            return
        said = _shopify_errors(response)
        what = f"GET {response.url.path}"
        if status >= 500 or status == 408:
            wait = retry_after(response)
            self._pacer.failure(wait)
            raise self._retryable(f"{what}: HTTP {status} server error ({said})", wait)
        if feed is not None and status in (403, 404):
            raise FeedUnavailable(
                self.name,
                feed,
                self._scrub(
                    f"{what}: HTTP {status} ({said}); the {feed} feed is skipped (set {feed} = "
                    "false for this store to silence this)"
                ),
            )
        if status == 401 and self._auth.can_refresh:
            raise self._fatal(
                f"Shopify rejected a freshly issued client-credentials token (HTTP 401: {said}): "
                "the app was uninstalled from this shop or lost its access; reinstall it from the "
                "Dev Dashboard"
            )
        if status == 401:
            raise self._fatal(
                f"Shopify rejected the access token (HTTP 401: {said}): it is wrong, was "
                f"revoked, or the app was uninstalled; copy the Admin API access token again from "
                f"{APP_SETTINGS} and set access_token"
            )
        if status == 403:
            raise self._fatal(
                f"the access token may not read orders (HTTP 403: {said}): give the app the "
                f"read_orders scope (and read_all_orders for orders older than 60 days) in "
                f"{APP_SETTINGS}, reinstall it, and set the new access_token"
            )
        if status == 404:
            raise self._fatal(
                f"no REST Admin API at {self.site}{self.api}/ (HTTP 404: {said}): check shop "
                f'(the permanent "name.myshopify.com" domain, not a custom domain) and api_version'
            )
        if status in (402, 423):  # Payment Required: frozen for an unpaid bill; Locked
            why = "frozen for an unpaid bill" if status == 402 else "locked by Shopify"
            raise self._fatal(f"the shop is {why} (HTTP {status}: {said}): its owner must act")
        if 300 <= status < 400:
            target = urllib.parse.urlsplit(response.headers.get("Location", "")).netloc
            raise self._fatal(
                f"HTTP {status} redirect to {target or 'another address'}: set shop to the "
                "permanent myshopify.com domain (pollerd does not follow redirects)"
            )
        raise self._fatal(
            f"{what}: unexpected HTTP {status} ({said}); this is likely a pollerd bug, report it"
        )

    # --- errors --------------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        return self.connection.scrub(text)

    def _fatal(self, message: str) -> PermanentSourceError:
        return PermanentSourceError(self.name, self._scrub(message))

    def _retryable(self, message: str, retry_after: float | None = None) -> RetryableSourceError:
        return RetryableSourceError(self.name, self._scrub(message), retry_after=retry_after)


# --- pure helpers ------------------------------------------------------------------------------


def rfc3339(value: datetime) -> str:
    """UTC with a `Z`, floored to the second (Shopify's precision; flooring widens the window).
    Naive input is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def next_page(response: httpx.Response) -> str | None:
    """The `page_info` of the `Link` header's rel="next", None on the last page. Only the token
    is taken, not the URL: it may name the shop's host rather than the configured base_url."""
    url = response.links.get("next", {}).get("url")
    if not url:
        return None
    tokens = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).get("page_info")
    return tokens[0] if tokens else None


def _shopify_errors(response: httpx.Response) -> str:
    """Shopify's own words from `{"errors": ...}` (a string, list or field map), cut short."""
    try:
        errors = json.loads(response.content).get("errors")
    except (ValueError, UnicodeDecodeError, AttributeError):
        kind = response.headers.get("Content-Type", "no content type").split(";")[0]
        return f"a {kind} body, not Shopify's JSON"
    if isinstance(errors, dict):
        errors = "; ".join(f"{k}: {v}" for k, v in errors.items())
    elif isinstance(errors, list):
        errors = "; ".join(str(e) for e in errors)
    return f'Shopify said "{str(errors)[:200]}"' if errors else "no error message"
