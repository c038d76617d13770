"""The first-run baseline: what the store looked like at the start point, recorded silently.

Why: an order placed before pollerd's first run has no snapshot, and WooCommerce dates only
some of its changes (`date_paid`, `date_completed`), not a cancellation, a trashing or a refund.
When such an order is next seen the diff cannot tell whether it was cancelled after the start
point (alert) or long before (history). So when a store's cursor is created, the orders modified
within `baseline_horizon` before the start point are read and recorded as snapshots with their
implied events in `fired`, and no events or deliveries: a later change is then diffed against a
known state, like any order pollerd has seen.

How it runs beside live polling: the cursor (and READY) does not wait for it. Each poll pass,
after the fast path, walks at most `PAGES_PER_PASS` listing pages of the window, fetching full
orders only for rows with no snapshot, within the store's request ceiling like every request.
Progress (the next page) is kept in `Store.meta`, so a crash resumes it. Until an order is
recorded, the diff's evidence rules decide (DESIGN §6). The window ends strictly before the start
point: what changed after it is the fast path's, and an order that moved between listing and
fetch is left to it too; a snapshot the fast path already wrote is never overwritten.

Shopify needs no baseline: every change there carries its own date (transactions, refunds,
fulfillments, `cancelledAt`), so sources that do not implement `Undated` skip all this.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from loguru import logger

from pollerd.diff import diff
from pollerd.model import Order, Snapshot, parse_utc, utc_iso
from pollerd.sources.base import ListPage, Malformed, Undated
from pollerd.sources.payload import OrderPayloadError
from pollerd.sources.plugin import Rules
from pollerd.store import Store

PAGES_PER_PASS = 5
"""Listing pages (≤ 100 orders, plus at most one fetch of the new ones each) per poll pass: a
90-day window of a shop with ~30 orders a day is done within a pass or two, a big one within
minutes, while the fast path keeps its interval."""


def key(store: str) -> str:
    return f"baseline:{store}"


def schedule(store: Store, name: str, start_at: datetime, horizon: timedelta) -> None:
    """Plan the baseline of a new cursor: orders modified in [start_at − horizon, start_at)."""
    if horizon <= timedelta(0):
        return
    state = {
        "after": utc_iso(start_at - horizon - timedelta(seconds=1)),  # modified_after is a strict >
        "before": utc_iso(start_at),
        "page": 1,
        "recorded": 0,
        "done": False,
    }
    store.set_meta(key(name), json.dumps(state))
    logger.info(
        "store {}: new cursor at {}; recording a baseline of the orders modified in the {} "
        "before it, in the background",
        name,
        utc_iso(start_at),
        f"{horizon.days} days" if horizon == timedelta(days=horizon.days) else horizon,
    )


def progress(store: Store, name: str) -> dict[str, object] | None:
    """The baseline's state (None when this store never had one planned)."""
    raw = store.meta(key(name))
    return json.loads(raw) if raw else None


async def step(
    store: Store,
    name: str,
    source: Undated,
    *,
    rules: Rules,
    clock: Callable[[], datetime],
    pages: int = PAGES_PER_PASS,
    stopping: Callable[[], bool] = lambda: False,
) -> bool:
    """Walk up to `pages` pages of the baseline; True once it is finished (or none is planned).
    Each page commits its snapshots before its progress, so a crash repeats at most one page,
    and a repeated page fetches nothing (its orders have snapshots)."""
    state = progress(store, name)
    if state is None or state["done"]:
        return True
    after = parse_utc(str(state["after"]))
    before = parse_utc(str(state["before"]))
    assert after is not None and before is not None
    page = int(state["page"])  # type: ignore[call-overload]
    for _ in range(pages):
        try:
            listing = await source.list_between(after, before, page)
        except OrderPayloadError as exc:  # a malformed row: the page is skipped, not retried
            logger.warning("store {}: baseline skips page {}: {}", name, page, exc)
            listing = ListPage(rows=[], next=page + 1)
        rows = [r for r in listing.rows if r.updated_at < before]
        known = store.snapshots(name, [r.id for r in rows])
        todo = [r.id for r in rows if r.id not in known]
        snaps: list[Snapshot] = []
        if todo:
            detected = clock()
            for order in await _fetch(source, todo, name):
                if order.updated_at >= before:
                    continue  # it moved after the start point: the fast path diffs it
                snap, _ = diff(None, order, detected_at=detected, start_at=before, rules=rules)
                snaps.append(snap)
            store.commit_page(name, snaps, [])
        state["recorded"] = int(state["recorded"]) + len(snaps)  # type: ignore[call-overload]
        if listing.next is None:
            state["done"] = True
            store.set_meta(key(name), json.dumps(state))
            logger.info(
                "store {}: baseline done, {} order(s) recorded as they were at the start point",
                name,
                state["recorded"],
            )
            return True
        page = int(listing.next)
        state["page"] = page
        store.set_meta(key(name), json.dumps(state))
        if stopping():
            break
    return False


async def _fetch(source: Any, ids: list[str], name: str) -> list[Order]:
    """Full orders; one the store sends malformed is left out (warned here), not allowed to
    stop the baseline: without a snapshot it is dated by its evidence like any order, and the
    fast path sets it aside (quarantine) if it is still malformed when it changes."""
    orders: list[Order] = []
    for item in await source.fetch(ids):
        if isinstance(item, Malformed):
            logger.warning(
                "store {}: baseline skips malformed order {}: {}: {}",
                name,
                item.order_id,
                item.field,
                item.problem,
            )
        else:
            orders.append(item)
    return orders
