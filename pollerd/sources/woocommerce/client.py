"""WooCommerce REST API v3 (`/wp-json/wc/v3/orders`) as a pollerd `Source`.

Every choice below is a measured quirk of a real WooCommerce 10.0.2 (research/woocommerce.md):

- `modified_after` goes out as naive UTC (`2026-11-22T09:32:37`, no `Z`) with
  `dates_are_gmt=true`. With a `Z`, WordPress converts the value to the *site* time zone and
  compares it with the GMT column, moving the window by the site's UTC offset: on a site east
  of UTC orders are silently skipped (§1.5). `after` (created) has the same trap.
- Pages are walked with `orderby=id`: `orderby=modified` has no tie-break, so orders sharing a
  second are duplicated and skipped across pages (10 of 509, §1.11).
- The listing asks only for `id,date_modified_gmt,status` (`_fields`: ~15 KB instead of ~200 KB
  per 100 orders); full orders are fetched by `include=` only for what changed. A backfill,
  where nearly everything listed is new, lists full pages instead and `fetch` serves them from
  that page: one request per 100 orders instead of two. On a real WooCommerce 10.0.2 the second
  request made a backfill of 3,109 orders take 1.5x plain paging, each request costing PHP
  0.4-0.6 s (`bench/backfill.py`'s floor is that plain paging).
- `modified_after` exists since WooCommerce 5.8 and older versions *ignore* it silently, so the
  route's `OPTIONS` schema is checked once before the first listing (the version gate).
- Auth (§1.6): Basic only works when the site detects HTTPS (`is_ssl()`); over plain HTTP, or
  behind a proxy that hides TLS, only OAuth 1.0a one-legged works, signed against the site's own
  URL with the scheme WordPress believes in. Query-string keys exist for hosts that strip
  `Authorization`; the response `Link` header then echoes the secret, so URLs and `Link` are
  never logged or put in an error here.
- The probe asks whether any order in any status the route's schema lists (trash included,
  which `status=any` leaves out) was modified after what the last walk saw: one request of
  `per_page=1&_fields=id`, whose idle answer is `[]`, so the window and the trash are walked
  only when something moved or once a minute (`sync`).
- Nothing in front of the store is trusted to say "no orders": 429, 5xx, WAF 403 pages, timeouts
  and bodies that are not the expected JSON all raise `RetryableSourceError`; auth, version and
  URL problems raise `PermanentSourceError` with the fix. Pacing lives in `ratelimit`.

Errors are typed at the edge, from status *and* body: `responses.WordPressAnswers` says what a
refusal means (the client's `classify`). Requests go out through the store's
`sources.connection` (`pollerd.http.Edge`); messages never contain the consumer key or secret
(they are scrubbed there as a last line of defence too).
"""

from __future__ import annotations

import base64
import secrets
import time
import urllib.parse
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Literal, Unpack

import httpx
from loguru import logger

from pollerd import metrics
from pollerd.errors import PermanentSourceError, RetryableSourceError, SourceError
from pollerd.failpoints import armed
from pollerd.model import Order
from pollerd.sources.base import Listed, ListPage, Malformed, PageToken, clamped
from pollerd.sources.connection import StoreClient, Wiring
from pollerd.sources.payload import (
    OrderPayloadError,
    loads,
    payload_date,
)
from pollerd.sources.ratelimit import RequestPacer
from pollerd.sources.woocommerce.auth import oauth_params, resolve_auth, rfc3986
from pollerd.sources.woocommerce.normalize import admin_url, normalize, order_id
from pollerd.sources.woocommerce.options import WooCommerceStore
from pollerd.sources.woocommerce.responses import (
    ORDERS_PATH,
    WordPressAnswers,
    content_type,
    every_status,
    get_args,
    int_header,
    is_bad_signature,
    wp_error,
)

STATUS_PATH = "/wp-json/wc/v3/system_status"
PER_PAGE = 100  # WooCommerce's maximum (101 → 400 rest_invalid_param)
LIST_FIELDS = "id,date_modified_gmt,status"
INLINE_WAIT = 10.0
"""Retry-After pauses up to this are slept through; longer ones end the call (retryable)."""


class WooCommerceSource(StoreClient):
    """One WooCommerce store (see the module docstring); the User-Agent is applied per request,
    so a shared HTTP client works too (`StoreClient`)."""

    platform = "woocommerce"
    keyset: Literal["id", "updated_at"] = (
        "id"  # pages by `orderby=id`: `orderby=modified` has no tie-break (research §1.3)
    )
    hidden: tuple[str, ...] = (
        "trash",
    )  # `status=any` excludes trash: deletions are a listing of their own

    cfg: WooCommerceStore

    def __init__(self, cfg: WooCommerceStore, **wiring: Unpack[Wiring]) -> None:
        super().__init__(cfg, **wiring)
        self.site = cfg.url.rstrip("/")
        self.scheme = urllib.parse.urlsplit(self.site).scheme
        self.baseline_horizon = cfg.baseline_horizon  # `Undated`: how far the baseline reaches
        self.auth = resolve_auth(cfg.auth, self.scheme)
        self._answers = WordPressAnswers(
            cfg.name, self.site, self.scheme, self.auth, self.connection.scrub
        )
        self._pacer = RequestPacer(
            cfg.max_requests_per_minute, self.clock, self.sleep, max_wait=INLINE_WAIT
        )
        metrics.watch_budget(self.name, self._pacer.used_ratio)
        # WordPress checks OAuth signatures against its home URL with the scheme `is_ssl()`
        # reports; behind a proxy that hides TLS that is http:// although we call https://.
        self._oauth_scheme = self.scheme
        self._oauth_scheme_probed = False
        self._gate_passed = False
        self._every_status: tuple[str, ...] | None = None  # the probe's, from OPTIONS
        self._full_pages = False  # a backfill: listings carry whole orders (`use_backfill_budget`)
        self._page_orders: tuple[str, dict[str, Order | Malformed]] = ("", {})  # (status, by id)
        if self.auth != "oauth" and self.scheme == "http":
            logger.warning(
                "store {}: auth {} over plain http:// sends the consumer secret unencrypted, and "
                'WooCommerce ignores it unless the site believes it is HTTPS; prefer auth = "auto"',
                self.name,
                self.auth,
            )

    # --- Source --------------------------------------------------------------------------------

    async def check(self) -> str:
        """Gate, WooCommerce version (when this key may read system status), auth, order count."""
        await self._version_gate()
        version = await self._wc_version()
        data, headers = await self._get_json(
            ORDERS_PATH, {"per_page": "1", "page": "1", "status": "any", "_fields": "id"}
        )
        rows = self._rows(data)
        total = int_header(headers, "X-WP-Total")
        count = total if total is not None else len(rows)
        found = f"WooCommerce {version}" if version else "WooCommerce (version not readable)"
        return f"{found} at {self.site}, auth {self.describe_auth()}, {count} orders"

    async def probe(self) -> Listed | None:
        """The most recently modified order in any status, trash included (`_every`): one
        row. Ties in the newest second come back in any order (no id tie-break, research
        §1.11). None (walk every pass) when the route's schema did not list the statuses."""
        found = await self._every({"orderby": "modified", "order": "desc", "_fields": LIST_FIELDS})
        if not found or not found[0]:
            return None
        try:
            return self._listed(found[0][0])
        except OrderPayloadError:
            return None  # a row that does not read: the walk sets it aside, so walk

    async def moved_since(self, after: datetime) -> bool | None:
        """Whether any order in any status was modified strictly after `after` (`_every`
        with `modified_after` as naive UTC and `dates_are_gmt`, like the listing): the idle
        answer is `[]` without a `Link` header, and the filter compares GMT columns, where
        `orderby=modified` sorts by the site-local one on posts storage (wrong for the hour
        after a DST fall-back). None when the statuses are unknown."""
        window = {"modified_after": naive_utc(after), "dates_are_gmt": "true", "_fields": "id"}
        found = await self._every({**window, "orderby": "id", "order": "desc"})
        return None if found is None else bool(found[0]) or found[1] > 0

    async def _every(self, params: dict[str, str]) -> tuple[list[dict[str, Any]], int] | None:
        """One row (and X-WP-Total) of the orders in every status the route's schema lists:
        trash and plugins' own statuses included, where `status=any` leaves the trash out and
        `any,trash` means `any`. None when the schema did not list them (no probe then)."""
        await self._version_gate()
        if self._every_status is None:
            return None
        query = {"status": ",".join(self._every_status), "per_page": "1", "page": "1", **params}
        data, headers = await self._get_json(ORDERS_PATH, query)
        return self._rows(data), int_header(headers, "X-WP-Total") or 0

    async def list_modified(
        self, after: datetime, page: PageToken, *, status: str = "any"
    ) -> ListPage:
        """Orders modified strictly after `after` (one-second precision), by ascending id."""
        await self._version_gate()
        return await self._list({"modified_after": naive_utc(after)}, page, status)

    async def list_between(self, after: datetime, before: datetime, page: PageToken) -> ListPage:
        """Orders modified in the open interval (after, before): the first-run baseline, which
        must not read past the start point (what changed after it is the fast path's)."""
        await self._version_gate()
        window = {"modified_after": naive_utc(after), "modified_before": naive_utc(before)}
        return await self._list(window, page, "any")

    async def list_created(self, after: datetime, page: PageToken) -> ListPage:
        """Orders created strictly after `after`: the sweeps' second access path."""
        await self._version_gate()
        return await self._list({"after": naive_utc(after)}, page, "any")

    async def fetch(self, ids: list[str], *, status: str = "any") -> list[Order | Malformed]:
        """Full orders by id, `include=` in chunks of 100. Ids the API does not return (trashed
        under `any`, deleted) are simply absent; `status=trash` fetches trashed ones; an order
        that does not read is set aside (`Malformed`), the others go on."""
        wanted = list(dict.fromkeys(str(i) for i in ids))
        orders: list[Order | Malformed] = []
        listed_status, listed = self._page_orders
        if listed and listed_status == status:  # read whole by the last listing (a backfill)
            orders = [listed[i] for i in wanted if i in listed]
            wanted = [i for i in wanted if i not in listed]
        for start in range(0, len(wanted), PER_PAGE):
            chunk = wanted[start : start + PER_PAGE]
            params = {
                "include": ",".join(chunk),
                "per_page": str(PER_PAGE),
                "page": "1",
                "status": status,
                "orderby": "id",
                "order": "asc",
            }
            data, _ = await self._get_json(ORDERS_PATH, params)
            asked = set(chunk)
            for payload in self._rows(data):
                if str(payload.get("id")) in asked:  # a plugin ignoring include= must not leak in
                    orders.append(self._read(payload))
        return orders

    def _read(self, payload: dict[str, Any]) -> Order | Malformed:
        try:
            return normalize(payload, store=self.name, site_url=self.site)
        except OrderPayloadError as exc:
            return Malformed.of(exc, payload, admin_url=admin_url(self.site, payload.get("id")))

    async def dated(self, order: Order) -> Order:
        """Refund dates: the order's `refunds[]` has none, `GET orders/<id>/refunds` does
        (`_fields` keeps it to a few bytes). One request, only for an order with refunds."""
        if order.refunded_total <= 0 or order.refunds_at:
            return order
        return replace(order, refunds_at=await self._refund_dates(order.id))

    async def _refund_dates(self, order_id: str) -> tuple[datetime, ...]:
        """When each refund of an order was made, oldest first (an order deleted in between
        has none to give)."""
        path = f"{ORDERS_PATH}/{int(order_id)}/refunds"
        params = {"per_page": str(PER_PAGE), "page": "1", "_fields": "id,date_created_gmt"}
        response = await self._exchange("GET", path, params)
        if response.status_code == 404 and wp_error(response)[0]:
            return ()
        self._settle(response)
        dates = [
            payload_date(row, "date_created_gmt", self.name, order_id, required=True)
            for row in self._rows(self._decode(response))
        ]
        return tuple(sorted(d for d in dates if d is not None))

    async def present(self, ids: list[str]) -> dict[str, str]:
        """Which of these orders still exist: `include=` with only `id,status`, once under
        `any` and once under `trash` for the rest (`any` excludes trash, and `any,trash` means
        `any`, research §1.2). Absent from both: deleted permanently."""
        found: dict[str, str] = {}
        wanted = list(dict.fromkeys(str(i) for i in ids))[:PER_PAGE]
        for status in ("any", "trash"):
            left = [i for i in wanted if i not in found]
            if not left:
                break
            params = {
                "include": ",".join(left),
                "per_page": str(PER_PAGE),
                "page": "1",
                "status": status,
                "_fields": "id,status",
            }
            data, _ = await self._get_json(ORDERS_PATH, params)
            for row in self._rows(data):
                oid = str(row.get("id"))
                if oid in left and isinstance(row.get("status"), str):
                    found[oid] = row["status"]
        return found

    def budget_used(self) -> float | None:
        return clamped(self._pacer.used_ratio())

    def use_backfill_budget(self) -> str:
        """`Backfilling`: the backfill's own pacer at `backfill_requests_per_minute`, on top of
        the live pass's (WooCommerce has no limit of its own to share, research §1.7: the two
        add up at the host). 429, Retry-After and the back-off apply to it as to the live pass."""
        rate = self.cfg.backfill_requests_per_minute
        self._pacer = RequestPacer(rate, self.clock, self.sleep, max_wait=INLINE_WAIT)
        self._full_pages = True
        metrics.watch_budget(self.name, self._pacer.used_ratio)
        return f"{rate} requests a minute (backfill_requests_per_minute)"

    def secrets(self) -> tuple[str, str]:
        return self.cfg.consumer_secret.get(), self.cfg.consumer_key.get()

    def describe_auth(self) -> str:
        how = {
            "basic": "HTTP Basic",
            "oauth": "OAuth 1.0a HMAC-SHA256",
            "query": "keys in the query string",
        }[self.auth]
        chosen = f"auto, {self.scheme}:// site" if self.cfg.auth == "auto" else "configured"
        return f"{self.auth} ({how}; {chosen})"

    # --- listing -------------------------------------------------------------------------------

    async def _list(self, window: dict[str, str], token: PageToken, status: str) -> ListPage:
        page = int(token or 1)
        params = {
            **window,
            "dates_are_gmt": "true",
            "orderby": "id",
            "order": "asc",
            "per_page": str(PER_PAGE),
            "page": str(page),
            "status": status,
            **({} if self._full_pages else {"_fields": LIST_FIELDS}),
        }
        data, headers = await self._get_json(ORDERS_PATH, params)
        raw = self._rows(data)
        rows: list[Listed] = []
        aside: list[Malformed] = []
        whole: dict[str, Order | Malformed] = {}
        for row in raw:
            try:
                rows.append(self._listed(row))
                if self._full_pages:
                    whole[rows[-1].id] = self._read(row)
            except OrderPayloadError as exc:
                # Set aside by id; without one (or a page of nothing else, which would end the
                # walk early) the pass fails as before and re-reads it.
                if exc.order_id == "?":
                    raise
                aside.append(Malformed.of(exc, row, admin_url(self.site, exc.order_id)))
        if aside and not rows:
            raise OrderPayloadError(self.name, aside[0].order_id, aside[0].field, aside[0].problem)
        self._page_orders = (status, whole)  # this page only: one page of orders in memory
        total = int_header(headers, "X-WP-Total")
        pages = int_header(headers, "X-WP-TotalPages")
        more = (pages is not None and page < pages) or len(raw) == PER_PAGE
        return ListPage(rows=rows, next=page + 1 if more else None, total=total, set_aside=aside)

    def _rows(self, data: Any) -> list[dict[str, Any]]:
        """A list of orders, or retryable: a 200 with anything else is an intermediary's page or
        an error hidden in a 200, never "no orders"."""
        if not isinstance(data, list):
            shape = type(data).__name__
            raise self._retryable(f"expected a JSON list of orders, got a JSON {shape}")
        for row in data:
            if not isinstance(row, dict):
                raise self._retryable("expected a JSON list of orders, got a list of non-objects")
        return data

    def _listed(self, row: dict[str, Any]) -> Listed:
        oid = order_id(row, self.name)
        updated = payload_date(row, "date_modified_gmt", self.name, oid, required=True)
        status = row.get("status")
        if not isinstance(status, str) or not status:
            raise OrderPayloadError(
                self.name, oid, "status", f"missing or not a string: {status!r}"
            )
        assert updated is not None
        return Listed(id=oid, updated_at=updated, status=status)

    # --- version gate --------------------------------------------------------------------------

    async def _version_gate(self) -> None:
        """`modified_after` needs WooCommerce ≥ 5.8; older stores ignore it and would return
        every order on every poll, so refuse them with a clear message. Checked once, through
        the route's own schema (`OPTIONS`), which works for any key."""
        if self._gate_passed:
            return
        response = await self._exchange("OPTIONS", ORDERS_PATH, {})
        if response.status_code in (405, 501):
            logger.warning(
                "store {}: the host refuses OPTIONS (HTTP {}); cannot confirm WooCommerce ≥ 5.8",
                self.name,
                response.status_code,
            )
            self._gate_passed = True
            return
        self._settle(response)
        schema = self._decode(response)
        args = get_args(schema)
        self._every_status = every_status(schema)
        if args is None:
            logger.warning(
                "store {}: OPTIONS {} has no readable schema; cannot confirm WooCommerce ≥ 5.8",
                self.name,
                ORDERS_PATH,
            )
        elif "modified_after" not in args:
            raise self._permanent(
                "this store runs WooCommerce older than 5.8: its orders API has no "
                "modified_after (added in 5.8.0, 2021-10), so changes to existing orders cannot "
                "be polled; upgrade WooCommerce to 5.8 or later"
            )
        self._gate_passed = True

    async def _wc_version(self) -> str | None:
        """The running WooCommerce version from system status; None when this key's user may
        not read it (it needs `manage_woocommerce`), which is not an error for polling."""
        try:
            data, _ = await self._get_json(STATUS_PATH, {"_fields": "environment"})
        except PermanentSourceError:
            return None
        env = data.get("environment") if isinstance(data, dict) else None
        version = env.get("version") if isinstance(env, dict) else None
        return version if isinstance(version, str) and version else None

    # --- HTTP ----------------------------------------------------------------------------------

    async def _get_json(self, path: str, params: dict[str, str]) -> tuple[Any, httpx.Headers]:
        response = await self._exchange("GET", path, params)
        self._settle(response)
        return self._decode(response), response.headers

    async def _exchange(self, method: str, path: str, params: dict[str, str]) -> httpx.Response:
        """One request, raw. An OAuth signature rejected on an https:// site is re-signed once
        with http://, the scheme WordPress signs with when a proxy hides TLS from it (`is_ssl()`
        false); if that works it is kept for the life of this source."""
        response = await self._send(method, path, params)
        if not self._should_resign(response):
            return response
        self._oauth_scheme_probed = True
        self._oauth_scheme = "http"
        try:
            retry = await self._send(method, path, params)
        except SourceError:
            self._oauth_scheme, self._oauth_scheme_probed = self.scheme, False
            raise
        if is_bad_signature(retry):
            self._oauth_scheme = self.scheme
            return response
        logger.warning(
            "store {}: WordPress does not detect HTTPS (a proxy not forwarding X-Forwarded-Proto?);"
            " signing OAuth with http:// as it expects",
            self.name,
        )
        return retry

    async def _send(self, method: str, path: str, params: dict[str, str]) -> httpx.Response:
        """Send one request in the store's pacing slot; transport failures become retryable."""
        url, headers = self._prepare(method, path, params)

        async def ready() -> dict[str, str]:
            return headers

        return await self.connection.paced(
            self._pacer, method, url, label=f"{method} {path}", headers=ready
        )

    def _should_resign(self, response: httpx.Response) -> bool:
        return (
            self.auth == "oauth"
            and self.scheme == "https"
            and self._oauth_scheme == "https"
            and not self._oauth_scheme_probed
            and is_bad_signature(response)
        )

    def _prepare(
        self, method: str, path: str, params: dict[str, str]
    ) -> tuple[str, dict[str, str]]:
        """The URL (query encoded by hand, RFC 3986, so what is signed is what is sent) and
        headers for one request in the configured auth mode."""
        query = dict(params)
        headers = {"User-Agent": self.cfg.user_agent, "Accept": "application/json"}
        key, secret = self.cfg.consumer_key.get(), self.cfg.consumer_secret.get()
        if self.auth == "basic":
            token = base64.b64encode(f"{key}:{secret}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        elif self.auth == "query":
            query.update(consumer_key=key, consumer_secret=secret)
        else:
            signed_site = self._oauth_scheme + self.site[len(self.scheme) :]
            query.update(
                oauth_params(
                    method,
                    signed_site + path,
                    query,
                    consumer_key=key,
                    consumer_secret=secret,
                    timestamp=int(time.time()),
                    nonce=secrets.token_hex(16),
                )
            )
        encoded = "&".join(f"{rfc3986(k)}={rfc3986(v)}" for k, v in query.items())
        return self.site + path + (f"?{encoded}" if encoded else ""), headers

    def _decode(self, response: httpx.Response) -> Any:
        try:
            return loads(response.content)
        except (ValueError, UnicodeDecodeError):
            if armed("lenient_json"):  # test-only (failpoints.py): the bug row 13 must catch
                return []
            self._pacer.failure()
            raise self._retryable(
                f"HTTP {response.status_code} with a body that is not JSON "
                f"({content_type(response)}, {len(response.content)} bytes: cut off by a proxy, "
                "or a cache/maintenance page; if it persists check that permalinks are not "
                '"Plain" and that no plugin intercepts /wp-json/)'
            ) from None

    def _settle(self, response: httpx.Response) -> None:
        """Type a non-2xx answer (`WordPressAnswers.refusal`) and feed the pacer: a retryable
        answer slows it down (honouring its wait), except a refused OAuth nonce, which says
        nothing about the store's load."""
        error = self._answers.refusal(response)
        if error is None:
            self._pacer.success()
            return
        if isinstance(error, RetryableSourceError) and response.status_code != 401:
            # `ignore_retry_after`: test-only (failpoints.py), the bug row 5 must catch.
            self._pacer.failure(None if armed("ignore_retry_after") else error.retry_after)
        raise error

    # --- errors --------------------------------------------------------------------------------

    def _permanent(self, message: str) -> PermanentSourceError:
        return self._answers.fatal(message)

    def _retryable(self, message: str, retry_after: float | None = None) -> RetryableSourceError:
        return self._answers.retryable(message, retry_after)


# --- pure helpers ------------------------------------------------------------------------------


def naive_utc(value: datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SS` in UTC with no `Z`: the only form WordPress compares correctly
    with `dates_are_gmt=true`. Naive input is taken as UTC; sub-seconds are dropped (the filter
    has one-second precision, so flooring only widens the window)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
