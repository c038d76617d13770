"""Backfill: record the state of past orders in [since, until] without touching live state.

A backfill never moves the live bookmark; it walks its own window through the same page path
as the live pass (`pollerd.walk`), and without `notify` records what it finds as history with
no deliveries, so the live daemon will not announce it later either. Two things make a long
backfill resumable: offset-paged sources save a resume point per page (`pollerd.resume`), and a
source with a bulk export (`Bulk`) reads windows longer than `BULK_FROM` as one export whose
operation id is saved the moment the platform accepts it.

A backfill has a request budget of its own (`Backfilling`: WooCommerce
`backfill_requests_per_minute`, Shopify `backfill_max_budget`), switched on before its first
request: it may use more of the store than the live pass does, but a daemon running beside it
keeps its share (the WooCommerce budgets add up; Shopify's backfill leaves the live pass's part
of the cost bucket free). Pages are prefetched: the next page is read (listing, then the full
orders that changed) while this page commits (`WindowWalk.walk(prefetch=True)`), one request at
a time still, one page ahead at most, and the resume point moves only after a commit.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from loguru import logger

from pollerd.failpoints import kill_point
from pollerd.resume import resume_key
from pollerd.sources.base import Backfilling, Bulk
from pollerd.walk import PassReport, floor_second

if TYPE_CHECKING:
    from pollerd.sync import StoreSync

BULK_FROM = timedelta(days=7)
"""Backfills reaching further back than this use one bulk export instead of pages (`Bulk`)."""


async def fill(
    sync: StoreSync,
    since: datetime,
    until: datetime | None,
    *,
    notify: bool,
    progress: Callable[[int, int | None], None] | None = None,
) -> PassReport:
    """Fill snapshots (and events) for orders modified in [since, until]; never touches the
    live bookmark. Without `notify` the events are recorded as history with no deliveries,
    so the live daemon will not announce them later either."""
    report = PassReport(sync.name)
    sync.ensure_cursor()
    if isinstance(sync.source, Backfilling):
        budget = sync.source.use_backfill_budget()
        logger.info("store {}: backfill budget {}", sync.name, budget)
    if isinstance(sync.source, Bulk) and sync.clock() - since > BULK_FROM:
        await _bulk(
            sync, sync.source, since, until, notify=notify, report=report, progress=progress
        )
        return report
    after = floor_second(since) - timedelta(seconds=1)  # modified_after is a strict >
    # Offset pages (keyset "id") resume where an interrupted run of this window stopped;
    # cursor pages have their bulk export (`Bulk`) for long windows instead.
    key = resume_key(sync.name, since, until) if sync.source.keyset == "id" else None
    await sync.walk(
        lambda page: sync.source.list_modified(after, page),
        report,
        start_at=since,
        status="any",
        notify=notify,
        until=until,
        progress=progress,
        backfill=True,
        resume_at=key,
        prefetch=True,
    )
    if key is not None and not report.stopped:
        sync.store.set_meta(key, None)
    return report


async def _bulk(
    sync: StoreSync,
    source: Bulk,
    since: datetime,
    until: datetime | None,
    *,
    notify: bool,
    report: PassReport,
    progress: Callable[[int, int | None], None] | None,
) -> None:
    """One bulk export instead of thousands of pages. The operation id is saved the moment
    the platform accepts the job, so a backfill killed mid-way resumes the same export
    instead of paying for a new one; batches commit like pages (replays are no-ops)."""
    key = f"bulk:{sync.name}"
    batches = source.bulk_orders(
        since,
        until,
        resume=sync.store.meta(key),
        on_started=lambda op: sync.store.set_meta(key, op),
        on_progress=(lambda n: progress(n, None)) if progress else None,
    )
    async for orders in batches:
        report.listed += len(orders)
        report.fetched += len(orders)
        await sync.apply_orders(orders, report, start_at=since, notify=notify, backfill=True)
        kill_point("mid_bulk_import")  # test-only (failpoints.py): a batch in, more to come
        if progress is not None:
            progress(report.listed, None)
        if sync.stopping():
            report.stopped = True
            return
    sync.store.set_meta(key, None)
