"""Shopify GraphQL Admin API as a pollerd `Source` (DESIGN §5, research/shopify.md §1).

Every choice below is a documented Shopify quirk or a peer's measured failure:

- Listings say `sortKey: UPDATED_AT` (the default is PROCESSED_AT) and filter with an inclusive
  `updated_at:>='2026-11-22T09:32:36Z'`: the date *quoted* ("Date values must be a string
  surrounded by quotes"; unquoted, Shopify's search splits the value at its colons and the
  filter silently matches nothing useful). Pages are walked with the opaque `endCursor`, which
  encodes (updatedAt, id): orders sharing one second are neither skipped nor repeated.
- The listing asks for four scalars (`LIST_FIELDS`): a page of N rows costs N + 3 points; full
  orders (38 points each, 10 line items) are fetched with `nodes(ids:)` only for what changed.
- Pages are ≤ 250 rows and every query's requested cost ≤ 1000 and ≤ pollerd's share of the
  bucket. After an HTTP 5xx or a timeout on a big page the page is halved (floor 10) and grows
  back slowly: orders with huge line-item lists make Shopify fail big pages (Airbyte PR #60797).
  `MAX_COST_EXCEEDED` resizes from the cost Shopify computed.
- `list_created` (sortKey CREATED_AT, `created_at:>=`) is the sweeps' second access path: the
  `updated_at` search index lags, the created_at one is a different index.
- Without `read_all_orders` only the last 60 days of orders exist for the API; `check()` says
  so, because "absent" must never be read as "no orders".
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any, Literal, Unpack

from pollerd import metrics
from pollerd.errors import PermanentSourceError, RetryableSourceError
from pollerd.model import Order, utc_iso
from pollerd.sources.base import Deletion, Dispute, Listed, ListPage, Malformed, PageToken, clamped
from pollerd.sources.connection import Wiring
from pollerd.sources.ratelimit import CostBudget, backfill_keep
from pollerd.sources.shopify import ShopifyStore
from pollerd.sources.shopify.bulk import bulk_orders
from pollerd.sources.shopify.client import CostTooHigh, ShopifyClient, ShopifyServerError
from pollerd.sources.shopify.feeds import ShopifyFeeds
from pollerd.sources.shopify.normalize import (
    LIST_FIELDS,
    ORDER_COST,
    ORDER_FIELDS,
    OrderPayloadError,
    admin_url,
    legacy_id,
    listed,
    normalize_order,
    order_gid,
    table,
)

MAX_PAGE = 250  # Shopify's connection maximum
NODE_COST_FLOOR = 0.05  # requested points per fetched order, the least ever assumed
MIN_PAGE = 10
LIST_OVERHEAD = 3  # connection 2 + pageInfo 1; each row adds 1 (the Order object)
NODES_MAX = 250  # `nodes(ids:)` accepts at most 250 ids
RECOVER_AFTER = 10
"""Successful pages at a shrunken size before it doubles again: one bad order must not make
every page small forever, nor should the next page hit the same wall at once."""

_PAGE = "pageInfo { hasNextPage endCursor }"
_LIST = (
    "query pollerdOrders($first: Int!, $after: String, $query: String!) { "
    "orders(first: $first, after: $after, sortKey: %s, query: $query) "
    f"{{ nodes {{ {LIST_FIELDS} }} {_PAGE} }} }}"
)
LIST_UPDATED = _LIST % "UPDATED_AT"
LIST_CREATED = _LIST % "CREATED_AT"
PROBE = (
    "query pollerdProbe { orders(first: 1, sortKey: UPDATED_AT, reverse: true) "
    f"{{ nodes {{ {LIST_FIELDS} }} }} }}"
)
FETCH = (
    "query pollerdFetch($ids: [ID!]!) "
    f"{{ nodes(ids: $ids) {{ ... on Order {{ {ORDER_FIELDS} }} }} }}"
)
CHECK = (
    "query pollerdCheck { shop { name myshopifyDomain ianaTimezone currencyCode } "
    "currentAppInstallation { accessScopes { handle } } }"
)


class PageSize:
    """Halve on failure down to `floor`, double back after `RECOVER_AFTER` successes."""

    def __init__(self, ceiling: int, floor: int) -> None:
        self.ceiling = ceiling
        self.floor = floor
        self.value = ceiling
        self._streak = 0

    def shrink(self, to: int | None = None) -> None:
        target = self.value // 2 if to is None else to
        self.value = max(self.floor, min(self.value, target))
        self._streak = 0

    def success(self) -> None:
        if self.value >= self.ceiling:
            return
        self._streak += 1
        if self._streak >= RECOVER_AFTER:
            self.value = min(self.ceiling, self.value * 2)
            self._streak = 0


class ShopifyGraphQLSource:
    """One Shopify store through the GraphQL Admin API (see the module docstring)."""

    platform = "shopify"
    keyset: Literal["id", "updated_at"] = "updated_at"

    def __init__(self, cfg: ShopifyStore, **wiring: Unpack[Wiring]) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.client = ShopifyClient(cfg, **wiring)
        self.page = PageSize(MAX_PAGE, MIN_PAGE)
        self.chunk = PageSize(NODES_MAX, 1)
        self._node_cost = float(ORDER_COST)  # requested points per fetched order, learned
        self._feeds = ShopifyFeeds(self.client, cfg.name)

    # --- Source --------------------------------------------------------------------------------

    async def check(self) -> str:
        """Shop, API version served, auth, scopes (and what a missing one hides), budget."""
        data = await self.client.query(CHECK, estimate=3)
        shop = table(data, "shop")
        install = data.get("currentAppInstallation")
        scopes = sorted(
            s["handle"]
            for s in (install or {}).get("accessScopes") or []
            if isinstance(s, dict) and isinstance(s.get("handle"), str)
        )
        if not {"read_orders", "write_orders"} & set(scopes):
            has = ", ".join(scopes) or "none"
            raise PermanentSourceError(
                self.name,
                f"the app lacks the read_orders access scope (it has: {has}): add read_orders "
                "to the app's Admin API access scopes and reinstall it",
            )
        newest = await self.probe()
        client = self.client
        served = client.version.served or "?"
        version = f"API {served}"
        if served != self.cfg.api_version:
            version += f" (pinned {self.cfg.api_version}: Shopify fell forward)"
        if "read_all_orders" in scopes:
            reach = "all orders visible (read_all_orders)"
        else:
            reach = (
                "no read_all_orders: orders created more than 60 days ago are invisible to the "
                "API (absent, not deleted)"
            )
        budget = client.budget
        latest = (
            f"newest change: order {newest.id} at {utc_iso(newest.updated_at)}"
            if newest
            else "no orders visible"
        )
        return (
            f"Shopify {shop.get('name') or '?'} ({shop.get('myshopifyDomain') or self.cfg.shop}), "
            f"{version}, auth {client.auth.kind}, scopes {', '.join(scopes)}; {reach}; budget "
            f"{budget.maximum:g} points at {budget.restore:g}/s, pollerd uses at most "
            f"{budget.share:.0%}; {latest}"
        )

    async def probe(self) -> Listed | None:
        """The most recently updated order (3 points)."""
        data = await self.client.query(PROBE, estimate=LIST_OVERHEAD + 1)
        nodes = self._nodes(data, "orders")
        return listed(nodes[0], store=self.name) if nodes else None

    async def list_modified(
        self, after: datetime, page: PageToken, *, status: str = "any"
    ) -> ListPage:
        """Orders with updatedAt ≥ `after` (seconds precision, inclusive), by (updatedAt, id).
        `status` is ignored: GraphQL lists every status, closed and cancelled included."""
        return await self._list(LIST_UPDATED, "updated_at", after, page)

    async def list_created(self, after: datetime, page: PageToken) -> ListPage:
        """Orders with createdAt ≥ `after`, by (createdAt, id): the sweeps' second path."""
        return await self._list(LIST_CREATED, "created_at", after, page)

    async def fetch(self, ids: list[str], *, status: str = "any") -> list[Order | Malformed]:
        """Full orders by id through `nodes(ids:)`, in chunks that fit the cost limits. Ids
        Shopify does not return (deleted, older than 60 days without read_all_orders) are
        simply absent."""
        wanted = list(dict.fromkeys(str(i) for i in ids))
        for oid in wanted:
            if not oid.isdigit():
                raise OrderPayloadError(self.name, oid, "id", "not a Shopify order id")
        orders: list[Order | Malformed] = []
        start = 0
        while start < len(wanted):
            chunk = wanted[start : start + self._chunk_size()]
            estimate = int(len(chunk) * self._node_cost) + 1
            try:
                data = await self.client.query(
                    FETCH,
                    {"ids": [order_gid(i) for i in chunk]},
                    estimate=estimate,
                    shrinkable=len(chunk) > 1,
                )
            except CostTooHigh as exc:
                if len(chunk) == 1:
                    raise
                self._node_cost = max(self._node_cost, exc.cost / len(chunk))
                self.chunk.shrink(max(1, len(chunk) // 2))
                continue
            except ShopifyServerError:
                self.chunk.shrink(max(1, len(chunk) // 2))
                continue
            self.chunk.success()
            requested = self.client.last_cost.requested
            if requested:
                # What Shopify asked per order, however small: `nodes(ids:)` is a list, not a
                # connection, and its requested cost need not grow with the ids (the simulator,
                # `shop_bucket`, prices a list like one object: 41 points for 250 orders), so a
                # floor of 1 point an order made a paged backfill wait for 6× the points it
                # needed (bench/backfill.py). Too low an estimate only costs a THROTTLED retry
                # or a MAX_COST_EXCEEDED resize (`CostTooHigh`), never an order.
                self._node_cost = max(NODE_COST_FLOOR, requested / len(chunk))
            orders.extend(self._orders(data, set(chunk)))
            start += len(chunk)
        return orders

    @property
    def throttled(self) -> int:
        """THROTTLED answers and 429s the client (shared by feeds and bulk) has waited out."""
        return self.client.throttled

    def budget_used(self) -> float | None:
        return clamped(self.client.budget.used_ratio())

    def use_backfill_budget(self) -> str:
        """`Backfilling`: spend up to `backfill_max_budget` of the restore rate, but never
        below the live pass's part of the bucket (`backfill_keep`), read from every answer's
        `throttleStatus` like the live budget: a daemon polling the same shop keeps its share.
        The bucket the client learned so far carries over."""
        cfg, old = self.cfg, self.client.budget
        budget = CostBudget(
            cfg.backfill_max_budget,
            old.clock,
            old.sleep,
            maximum=old.maximum,
            restore=old.restore,
            max_query_cost=old.max_query_cost,
            keep=backfill_keep(cfg.max_budget),
        )
        budget.known = old.known
        self.client.budget = budget
        metrics.watch_budget(self.name, budget.used_ratio)
        return (
            f"{cfg.backfill_max_budget:.0%} of the restore rate (backfill_max_budget), keeping "
            f"{budget.keep:.0%} of the bucket free for the live pass and other apps"
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    # --- Feeds and Bulk (one client, so one budget, for everything this store reads) ----------

    async def deletions(self, after: datetime) -> list[Deletion]:
        return await self._feeds.deletions(after)

    async def disputes(self, since: datetime) -> list[Dispute]:
        return await self._feeds.disputes(since)

    def bulk_orders(
        self,
        since: datetime,
        until: datetime | None,
        *,
        resume: str | None,
        on_started: Callable[[str], None],
        on_progress: Callable[[int], None] | None = None,
    ) -> AsyncIterator[list[Order]]:
        return bulk_orders(
            self.client,
            store=self.name,
            shop=self.cfg.shop,
            since=since,
            until=until,
            resume=resume,
            on_started=on_started,
            on_progress=on_progress,
        )

    # --- internals -----------------------------------------------------------------------------

    async def _list(self, query: str, field: str, after: datetime, page: PageToken) -> ListPage:
        if page is not None and not isinstance(page, str):
            raise TypeError(f"Shopify pages are cursor strings, got {page!r}")
        search = f"{field}:>='{utc_iso(after)}'"
        while True:
            first = max(1, min(self.page.value, self.client.budget.max_cost() - LIST_OVERHEAD))
            variables = {"first": first, "after": page, "query": search}
            try:
                data = await self.client.query(
                    query,
                    variables,
                    estimate=first + LIST_OVERHEAD,
                    shrinkable=first > self.page.floor,
                )
            except ShopifyServerError:
                if first <= self.page.floor:
                    raise  # the client already retried the smallest page: give the pass up
                self.page.shrink()
                continue
            except CostTooHigh as exc:
                if first <= 1:
                    raise
                self.page.shrink(max(1, first * exc.limit // exc.cost - LIST_OVERHEAD))
                continue
            self.page.success()
            rows = [listed(node, store=self.name) for node in self._nodes(data, "orders")]
            info = data["orders"].get("pageInfo")
            more = isinstance(info, dict) and info.get("hasNextPage") is True
            cursor = info.get("endCursor") if isinstance(info, dict) else None
            if more and not (isinstance(cursor, str) and cursor):
                raise RetryableSourceError(
                    self.name, "orders page says hasNextPage but carries no endCursor"
                )
            return ListPage(rows=rows, next=cursor if more else None)

    def _chunk_size(self) -> int:
        limit = self.client.budget.max_cost() - 1
        by_cost = max(1, int(limit // self._node_cost))
        return max(1, min(self.chunk.value, NODES_MAX, by_cost))

    def _nodes(self, data: dict[str, Any], root: str) -> list[dict[str, Any]]:
        """`data[root].nodes` as a list of objects, or retryable: a 200 without them is never
        read as "no orders"."""
        connection = data.get(root)
        nodes = connection.get("nodes") if isinstance(connection, dict) else None
        if not isinstance(nodes, list) or not all(isinstance(n, dict) for n in nodes):
            raise RetryableSourceError(self.name, f"answer without a readable {root}.nodes list")
        return nodes

    def _orders(self, data: dict[str, Any], asked: set[str]) -> list[Order | Malformed]:
        nodes = data.get("nodes")
        if not isinstance(nodes, list):
            raise RetryableSourceError(self.name, "nodes(ids:) answer without a nodes list")
        found: list[Order | Malformed] = []
        for node in nodes:
            if not isinstance(node, dict) or not node:  # deleted or invisible: null
                continue
            oid = legacy_id(node, store=self.name)
            if oid in asked:
                try:
                    found.append(normalize_order(node, store=self.name, shop=self.cfg.shop))
                except OrderPayloadError as exc:  # set aside; the other orders go on
                    found.append(Malformed.of(exc, node, admin_url(self.cfg.shop, oid)))
        return found
