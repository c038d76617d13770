"""One shop's GraphQL Admin API endpoint: auth, cost budget, and errors typed at the edge.

Why each behaviour (research/shopify.md §1.1, §1.4; DESIGN §5):

- The version is pinned in the URL. Shopify never rejects a retired or unknown version: it
  silently "falls forward" to the oldest supported one and says so only in the response header
  `X-Shopify-API-Version`. A mismatch is warned about once, loudly, because fields may behave
  differently from what pollerd was tested against.
- Every answer (THROTTLED ones too) carries `extensions.cost.throttleStatus`; it feeds a
  `CostBudget`, which makes each request wait until it fits pollerd's share of the bucket. A
  merchant's other apps share that bucket; polling must never starve them.
- THROTTLED (a 200 body or an HTTP 429, Shopify documents neither definitively) means "wait for
  the refill and ask again": never a failure, never "no orders".
- 5xx, resets and timeouts are retried a few times inline with full-jitter back-off, then raised
  as retryable. Callers paging big result sets ask for `shrinkable=True`: the first 5xx/timeout
  then raises `ShopifyServerError` at once so they can halve the page (huge orders make Shopify
  time out on big pages; Airbyte PR #60797) instead of retrying the same page.
- `MAX_COST_EXCEEDED` raises `CostTooHigh` carrying the cost Shopify computed, so the caller can
  resize; `ACCESS_DENIED` raises `ShopifyAccessDenied` naming the missing scope (a disputes feed
  without `read_shopify_payments_disputes` is optional; orders without `read_orders` is fatal).
- A 401 with client credentials fetches a new token once and retries; otherwise it is fatal with
  the fix. Messages never contain the token.

One request in flight per shop (`asyncio.Lock`), so the budget model only moves by our answers.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from dataclasses import dataclass
from typing import Any, Unpack

import httpx
from loguru import logger

from pollerd import metrics
from pollerd.errors import PermanentSourceError, RetryableSourceError, SourceError
from pollerd.http import retry_after
from pollerd.sources.connection import StoreClient, Wiring
from pollerd.sources.ratelimit import CostBudget
from pollerd.sources.shopify import ShopifyStore
from pollerd.sources.shopify.auth import TokenProvider, token_provider
from pollerd.sources.shopify.version import ServedVersion

MAX_QUERY_COST = 1000
"""Shopify refuses a single query whose requested cost exceeds this (MAX_COST_EXCEEDED)."""
DEFAULT_ESTIMATE = 50
"""Reservation for a query whose cost nobody estimated and we have not seen answered yet."""
TRANSIENT_TRIES = 3
BACKOFF_BASE = 1.0
BACKOFF_CAP = 16.0
THROTTLE_MIN_WAIT = 1.0
"""A THROTTLED answer although our model said the query fits means the model is wrong (someone
else spent, or Shopify lowered the limits): never re-ask sooner than this."""
THROTTLE_MAX_WAIT = 300.0
"""Waiting out THROTTLED inline stops after this long in one call: the pass then ends with a
retryable error instead of hanging (the next pass starts where this one stopped)."""
TRANSIENT_CODES = frozenset({"INTERNAL_SERVER_ERROR", "TIMEOUT", "SERVICE_UNAVAILABLE"})
_SCOPE = re.compile(r"`([a-z_]+)`")
_STATUS_FIX = {
    301: "redirected away from {endpoint}: shop must be the shop's *.myshopify.com domain (a "
    "custom storefront domain redirects)",
    402: "the shop is frozen (unpaid plan); polling works again once the merchant pays",
    403: "the app may not use the Admin API on this shop (a missing scope, protected customer "
    "data not approved, or access revoked): check the app's scopes and that it is installed",
    404: "no Admin API at {endpoint}: shop must be the *.myshopify.com domain (not the "
    'storefront domain), api_version a YYYY-MM version such as "2026-10"',
    423: "Shopify locked this shop; there is nothing to poll until it is unlocked",
}


class CostTooHigh(SourceError):
    """The query's requested cost exceeds Shopify's per-query limit: build a smaller one."""

    def __init__(self, store: str, cost: int, limit: int = MAX_QUERY_COST) -> None:
        self.cost = cost
        self.limit = limit
        super().__init__(store, f"query cost {cost} exceeds Shopify's per-query limit {limit}")


class ShopifyAccessDenied(PermanentSourceError):
    """The token lacks an access scope (`access_scope`, e.g. `read_shopify_payments_disputes`).
    `scope` is the error tree's: "store", as for every permanent source failure."""

    def __init__(self, store: str, message: str, access_scope: str | None) -> None:
        self.access_scope = access_scope
        self.detail = message
        fix = (
            f"grant the app the {access_scope} access scope (app → Configuration → Admin API "
            "access scopes), then reinstall or approve it on the shop"
            if access_scope
            else "check the app's Admin API access scopes"
        )
        super().__init__(store, f'Shopify denied access ("{message}"): {fix}')


class ShopifyServerError(RetryableSourceError):
    """HTTP 5xx or a timeout; with `shrinkable=True` raised on the first one (see module doc)."""

    def __init__(self, store: str, message: str, status: int | None) -> None:
        self.status = status
        super().__init__(store, message)


@dataclass
class QueryCost:
    """What the last `query()` cost, for metrics and benchmarks."""

    requested: int | None = None
    actual: int | None = None
    throttled: int = 0  # THROTTLED answers waited out during the call
    waited: float = 0.0  # seconds slept for the budget and for THROTTLED
    available: float | None = None  # throttleStatus.currentlyAvailable after the call


class ShopifyClient(StoreClient):
    """GraphQL Admin API client for one shop (see the module docstring)."""

    cfg: ShopifyStore

    def __init__(self, cfg: ShopifyStore, **wiring: Unpack[Wiring]) -> None:
        super().__init__(cfg, **wiring)
        self.base_url = (cfg.base_url or f"https://{cfg.shop}").rstrip("/")
        self.endpoint = f"{self.base_url}/admin/api/{cfg.api_version}/graphql.json"
        self._token = ""  # the last one sent, scrubbed from every message
        self._label = f"POST {httpx.URL(self.endpoint).path}"
        self.auth: TokenProvider = token_provider(cfg, self.base_url, clock=self.clock)
        self.budget = CostBudget(
            cfg.max_budget, self.clock, self.sleep, max_query_cost=MAX_QUERY_COST
        )
        metrics.watch_budget(self.name, self.budget.used_ratio)
        self.version = ServedVersion(cfg.name, cfg.api_version)
        self.last_cost = QueryCost()
        self.requests = 0
        self._seen_costs: dict[str, int] = {}
        self._lock = asyncio.Lock()
        self._random = random.Random()

    @property
    def points_spent(self) -> float:
        return self.budget.spent

    async def query(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        estimate: int | None = None,
        shrinkable: bool = False,
    ) -> dict[str, Any]:
        """Run one query and return its `data`, waiting for budget and THROTTLED refills.
        `estimate` is the expected requested cost (defaults to what this query cost last time)."""
        cost = estimate or self._seen_costs.get(query, DEFAULT_ESTIMATE)
        report = QueryCost()
        self.last_cost = report
        async with self._lock:
            transient = 0
            refreshed = False
            while True:
                report.waited += await self.budget.reserve(cost)
                try:
                    response = await self._post(query, variables)
                except ShopifyServerError as exc:
                    self.budget.settle(cost, cost)
                    transient = await self._transient(exc, transient, shrinkable)
                    continue
                status = response.status_code
                if status == 401 and self.auth.can_refresh and not refreshed:
                    self.budget.settle(cost, 0)
                    self.auth.invalidate()
                    refreshed = True
                    continue
                body = self._settle(response, cost, report)
                codes = _codes(body)
                if status == 429 or "THROTTLED" in codes:
                    cost = _requested(body) or cost
                    await self._throttled(response, cost, report)
                    continue
                if status >= 500 or body is None or codes & TRANSIENT_CODES:
                    error = self._server_error(response, body)
                    transient = await self._transient(error, transient, shrinkable)
                    continue
                return self._data(response, body, query)

    def secrets(self) -> tuple[str]:
        return (self._token,)

    def transport_failure(self, text: str) -> ShopifyServerError:
        """A failed exchange is a `ShopifyServerError`: `query` retries it, or a caller that
        pages halves the page (see the module docstring)."""
        return ShopifyServerError(self.name, text, None)

    # --- one exchange ------------------------------------------------------------------------

    async def _post(self, query: str, variables: dict[str, Any] | None) -> httpx.Response:
        self._token = await self.auth.token(self.connection)
        headers = {
            "X-Shopify-Access-Token": self._token,
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": self.cfg.user_agent,
        }
        payload = {"query": query, "variables": variables or {}}
        self.requests += 1
        return await self.connection.request(
            "POST", self.endpoint, label=self._label, json=payload, headers=headers
        )

    def _settle(
        self, response: httpx.Response, reserved: int, report: QueryCost
    ) -> dict[str, Any] | None:
        """Decode the body (None when it is not a JSON object), feed the budget from
        `extensions.cost`, and type the statuses that are never retried."""
        try:
            body = json.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            body = None
        self.version.note(response)
        cost = _cost(body)
        self.budget.observe(cost.get("throttleStatus"))
        actual = cost.get("actualQueryCost")
        spent = actual if isinstance(actual, int | float) and response.status_code == 200 else 0
        if response.status_code >= 500 and not cost:
            spent = reserved  # unknown whether Shopify charged it: assume it did
        self.budget.settle(reserved, float(spent))
        report.requested = _requested(body) or report.requested
        report.actual = int(actual) if isinstance(actual, int | float) else report.actual
        report.available = self.budget.available() if self.budget.known else None
        self._raise_for_status(response, body)
        return body

    def _raise_for_status(self, response: httpx.Response, body: dict[str, Any] | None) -> None:
        status = response.status_code
        if status in (200, 429) or status >= 500:
            return
        said = _said(body)
        if status == 401:
            how = (
                "a new client-credentials token was refused too: check client_id/client_secret "
                "and that the app is still installed"
                if self.auth.can_refresh
                else "the access_token is wrong, or was revoked (app uninstalled, token rotated)."
                " Copy the Admin API access token (shpat_…) from the custom app's API "
                "credentials page into access_token"
                + (f" ({ref})" if (ref := getattr(self.cfg.access_token, "ref", "")) else "")
            )
            raise PermanentSourceError(
                self.name, f"Shopify refused the credentials (HTTP 401{said}): {how}"
            )
        if status in _STATUS_FIX or 300 <= status < 400:
            fix = _STATUS_FIX.get(status, _STATUS_FIX[301]).format(endpoint=self.endpoint)
            raise PermanentSourceError(self.name, f"HTTP {status}{said}: {fix}")
        raise PermanentSourceError(
            self.name, f"unexpected HTTP {status}{said} from {self.endpoint}"
        )

    def _data(self, response: httpx.Response, body: dict[str, Any], query: str) -> dict[str, Any]:
        requested = _requested(body)
        if requested:
            self._seen_costs[query] = requested
        errors = body.get("errors")
        if errors:
            self._raise_graphql(errors, response)
        data = body.get("data")
        if not isinstance(data, dict):
            raise RetryableSourceError(self.name, "HTTP 200 without data or errors from Shopify")
        return data

    def _raise_graphql(self, errors: Any, response: httpx.Response) -> None:
        """Type `errors[]` (research §1.4): never read an error as an empty result."""
        items = errors if isinstance(errors, list) else [{"message": str(errors)}]
        for item in items:
            ext = item.get("extensions") if isinstance(item, dict) else None
            ext = ext if isinstance(ext, dict) else {}
            code = ext.get("code")
            message = str(item.get("message", "")) if isinstance(item, dict) else str(item)
            if code == "MAX_COST_EXCEEDED":
                cost = ext.get("cost")
                limit = ext.get("maxCost")
                raise CostTooHigh(
                    self.name,
                    int(cost) if isinstance(cost, int | float) else MAX_QUERY_COST + 1,
                    int(limit) if isinstance(limit, int | float) else MAX_QUERY_COST,
                )
            if code == "ACCESS_DENIED":
                match = _SCOPE.search(message)
                raise ShopifyAccessDenied(self.name, message[:300], match and match.group(1))
        first = items[0] if items else {}
        message = str(first.get("message", first) if isinstance(first, dict) else first)
        code = _codes({"errors": items}) or {"no code"}
        served = response.headers.get("X-Shopify-API-Version") or "?"
        raise PermanentSourceError(
            self.name,
            f"Shopify refused the query ({', '.join(sorted(code))}: {message[:300]}; API version "
            f"served {served}, pinned {self.cfg.api_version}). If the shop is inactive, wait for "
            "the merchant; if a field is unknown the pinned version may be retired or too new: "
            "set api_version to a supported version",
        )

    # --- waiting -----------------------------------------------------------------------------

    async def _throttled(self, response: httpx.Response, cost: int, report: QueryCost) -> None:
        """Sleep until the refill Shopify asked for; `reserve` then adds pollerd's headroom."""
        report.throttled += 1
        self.connection.throttled += 1
        if report.waited >= THROTTLE_MAX_WAIT:
            raise RetryableSourceError(
                self.name,
                f"Shopify kept answering THROTTLED for {report.waited:.0f} s (another app is "
                "using the API budget); resuming on the next pass",
                THROTTLE_MIN_WAIT * 10,
            )
        shortfall = cost - self.budget.available() if self.budget.known else 0.0
        wait = max(THROTTLE_MIN_WAIT, shortfall / self.budget.restore)
        asked = retry_after(response)
        if asked is not None:
            wait = max(wait, asked)
        logger.debug("store {}: THROTTLED (cost {}), waiting {:.1f} s", self.name, cost, wait)
        await self.sleep(wait)
        report.waited += wait

    async def _transient(self, exc: ShopifyServerError, tries: int, shrinkable: bool) -> int:
        """Back off with full jitter and return the new count, or raise when out of tries."""
        tries += 1
        if shrinkable or tries >= TRANSIENT_TRIES:
            raise exc
        wait = self._random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**tries))
        logger.debug("store {}: {}; retrying in {:.1f} s", self.name, exc, wait)
        await self.sleep(wait)
        return tries

    def _server_error(self, response: httpx.Response, body: dict | None) -> ShopifyServerError:
        status, codes = response.status_code, sorted(_codes(body) & TRANSIENT_CODES)
        kind = response.headers.get("Content-Type", "?").split(";")[0]
        what = f"HTTP {status} from Shopify ({kind})"
        if codes:
            what = f"Shopify GraphQL error {', '.join(codes)} (HTTP {status})"
        elif status == 200:
            what = f"HTTP 200 with a body that is not a JSON object ({kind})"
        return ShopifyServerError(self.name, what, status)


def _codes(body: dict[str, Any] | None) -> set[str]:
    errors = body.get("errors") if body else None
    if not isinstance(errors, list):
        return set()
    exts = [e.get("extensions") for e in errors if isinstance(e, dict)]
    return {str(x["code"]) for x in exts if isinstance(x, dict) and x.get("code")}


def _cost(body: dict[str, Any] | None) -> dict[str, Any]:
    extensions = body.get("extensions") if body else None
    cost = extensions.get("cost") if isinstance(extensions, dict) else None
    return cost if isinstance(cost, dict) else {}


def _requested(body: dict[str, Any] | None) -> int | None:
    value = _cost(body).get("requestedQueryCost")
    return int(value) if isinstance(value, int | float) and value > 0 else None


def _said(body: dict[str, Any] | None) -> str:
    """Shopify's own words from an error body, short (it never echoes the token)."""
    errors = body.get("errors") if body else None
    if isinstance(errors, str) and errors:
        return f', Shopify said "{errors[:200]}"'
    return ""
