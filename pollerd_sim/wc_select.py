"""Which orders a `GET /wc/v3/orders` page holds: filters, order, page cut and totals.

Measured behaviour reproduced here (research/woocommerce.md §1.1, §1.2, §1.5, §1.11):
- `status=any` is every status but `trash` and `auto-draft` (so it includes `checkout-draft`);
- date filters are strict (`>`/`<`) at one-second precision against the column `dates_are_gmt`
  selects (the values were already shifted by `DateBound.parse`, bug included);
- `orderby=date` is `date ID` (stable); `orderby=modified` has no tie-break and MySQL orders ties
  differently from one LIMIT/OFFSET page to the next, emulated by a seeded per-page permutation;
- past the last page: `[]`, with totals 0 under HPOS.
"""

from __future__ import annotations

import math
import random
import threading
from collections import OrderedDict
from typing import Any

from pollerd_sim.wc_orders import OrderRecord
from pollerd_sim.wc_query import ListArgs

ANY_EXCLUDES = frozenset({"trash", "auto-draft"})


def select(
    orders: list[OrderRecord],
    args: ListArgs,
    *,
    seed: int,
    hpos: bool,
    cache: SelectionCache | None = None,
    version: int = 0,
) -> tuple[list[OrderRecord], int, int]:
    """Filter, sort and cut one page. Returns (page rows, X-WP-Total, X-WP-TotalPages).
    With a `cache`, a walk over pages of one query filters and sorts once per book `version`."""
    key = args.selection_key()
    rows = cache.get(key, version) if cache is not None else None
    if rows is None:
        rows = _matching(orders, args)
        if args.orderby != "modified":
            rows = _sort(rows, args, seed)
        if cache is not None:
            cache.put(key, version, rows)
    if args.orderby == "modified":
        rows = _sort(rows, args, seed)  # the tie order differs per page: never cached
    total = len(rows)
    pages = math.ceil(total / args.per_page)
    start = args.start
    page_rows = rows[start : start + args.per_page]
    # Past the end: HPOS counts nothing (totals 0); posts storage re-counts, but only when
    # `page` > 1 (WC_REST_CRUD_Controller::get_objects), research §1.2.
    if not page_rows and start > 0 and (hpos or args.page <= 1):
        total, pages = 0, 0
    return page_rows, total, pages


class SelectionCache:
    """The last few sorted selections, valid while the order book's version is unchanged.

    A client walking 500 pages repeats one query with only `page` changing; re-filtering 50,000
    orders for each page would make the simulator, not pollerd, the benchmark's bottleneck."""

    def __init__(self, size: int = 8) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[Any, ...], tuple[int, list[OrderRecord]]] = OrderedDict()

    def get(self, key: tuple[Any, ...], version: int) -> list[OrderRecord] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] != version:
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: tuple[Any, ...], version: int, rows: list[OrderRecord]) -> None:
        with self._lock:
            self._entries[key] = (version, rows)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


def _matching(orders: list[OrderRecord], args: ListArgs) -> list[OrderRecord]:
    rows = orders
    gmt = args.dates_are_gmt
    # Date bounds first (the usual polling window is the most selective filter); explicit
    # attributes rather than getattr, because this loop runs over every order.
    if args.modified_after is not None:
        ts = args.modified_after.ts
        rows = (
            [r for r in rows if r.modified_ts > ts]
            if gmt
            else [r for r in rows if r.modified_local_ts > ts]
        )
    if args.modified_before is not None:
        ts = args.modified_before.ts
        rows = (
            [r for r in rows if r.modified_ts < ts]
            if gmt
            else [r for r in rows if r.modified_local_ts < ts]
        )
    if args.after is not None:
        ts = args.after.ts
        rows = (
            [r for r in rows if r.created_ts > ts]
            if gmt
            else [r for r in rows if r.created_local_ts > ts]
        )
    if args.before is not None:
        ts = args.before.ts
        rows = (
            [r for r in rows if r.created_ts < ts]
            if gmt
            else [r for r in rows if r.created_local_ts < ts]
        )
    if args.statuses is None:
        rows = [r for r in rows if r.status not in ANY_EXCLUDES]
    else:
        statuses = args.statuses
        rows = [r for r in rows if r.status in statuses]
    if args.include:
        wanted = set(args.include)
        rows = [r for r in rows if r.id in wanted]
    if args.exclude:
        unwanted = set(args.exclude)
        rows = [r for r in rows if r.id not in unwanted]
    if (args.parent is not None and 0 not in args.parent) or 0 in args.parent_exclude:
        rows = []  # every simulated order is top-level (parent_id 0)
    if args.customer not in (None, 0):
        rows = []  # all simulated orders are guest orders
    if args.product is not None:
        rows = [r for r in rows if any(line.product_id == args.product for line in r.items)]
    if args.created_via is not None:
        via = set(args.created_via)
        rows = [r for r in rows if r.created_via in via]
    if args.search:
        rows = [r for r in rows if _matches(r, args.search.lower())]
    return rows


def _matches(rec: OrderRecord, needle: str) -> bool:
    if needle == str(rec.id):
        return True
    billing = rec.billing
    return any(needle in billing[k].lower() for k in ("first_name", "last_name", "email", "phone"))


def _sort(rows: list[OrderRecord], args: ListArgs, seed: int) -> list[OrderRecord]:
    desc = args.order == "desc"
    orderby = args.orderby
    if orderby == "include" and args.include:
        position = {order_id: i for i, order_id in enumerate(args.include)}
        return sorted(rows, key=lambda r: position[r.id])
    if orderby == "id":
        # The book is a dict in id order (ids only grow), so this is already sorted.
        return rows[::-1] if desc else list(rows)
    if orderby == "modified":
        # No tie-break: equal seconds come back in a different order on every page.
        salt = random.Random(f"{seed}:{args.start}:{args.per_page}").getrandbits(32)
        return sorted(
            rows,
            key=lambda r: (r.modified_ts, ((r.id ^ salt) * 0x9E3779B1) & 0xFFFFFFFF),
            reverse=desc,
        )
    # `date` is rewritten to `date ID` (stable); title/slug sort like the creation date.
    return sorted(rows, key=lambda r: (r.created_ts, r.id), reverse=desc)
