"""One pass of one store: list what moved, fetch what changed, diff, commit page by page.

The rules (DESIGN §5, each one a measured way other tools lost orders):

- The bookmark is `(updated_at, id)` of data the API returned, never pollerd's clock, and it
  never moves on an empty pass.
- A pass reads `updated_at > bookmark − overlap` ONCE, then walks that open window by page
  (`orderby=id`: stable, unlike `orderby=modified` which duplicates and skips among orders sharing
  a second). Re-applying the overlap on every page freezes the cursor when more orders change
  inside the overlap than fit on a page (a measured livelock).
- Each page is one transaction (snapshots + events + deliveries); the bookmark is written only
  when the whole window was walked, so a crash mid-pass re-walks it and the diff skips what is
  already recorded.
- If the window's total shrinks while walking (an order was trashed mid-walk and later pages
  shifted by one), the walk starts again: offset paging is not a snapshot.
- Deletions are read through `status=trash` (WooCommerce's `any` excludes trash); hourly and
  daily sweeps re-read recent orders by *created* date, a second access path, and count what they
  find that the fast path missed.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from loguru import logger

from pollerd.config import RouteConfig, WooCommerceStore
from pollerd.diff import diff, pay_rules, unchanged
from pollerd.errors import RetryableSourceError
from pollerd.model import Event, Snapshot
from pollerd.rules import channels_for
from pollerd.sources.base import Listed, ListPage, PageToken, Source
from pollerd.store import Store
from pollerd.store.db import Cursor

MAX_REWALKS = 3
# Test-only switch that re-creates a classic bug, so the fault tests can prove they would catch
# it (a fault test that cannot fail proves nothing). Never set in production.
MUTANT = os.environ.get("POLLERD_MUTANT", "")
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

Lister = Callable[[PageToken], Awaitable[ListPage]]


@dataclass
class PassReport:
    store: str
    listed: int = 0
    fetched: int = 0
    events: int = 0
    deliveries: int = 0
    late_events: int = 0
    pages: int = 0
    cursor: datetime | None = None
    stopped: bool = False
    event_ids: list[str] = field(default_factory=list)


def utcnow() -> datetime:
    return datetime.now(UTC)


class StoreSync:
    def __init__(
        self,
        cfg: WooCommerceStore,
        source: Source,
        store: Store,
        routes: Sequence[RouteConfig],
        *,
        clock: Callable[[], datetime] = utcnow,
        on_commit: Callable[[int], None] | None = None,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.source = source
        self.store = store
        self.routes = routes
        self.clock = clock
        self.on_commit = on_commit or (lambda n: None)
        self.stopping = stopping
        self.rules = pay_rules(cfg.pay_on_delivery_methods)

    def start_point(self) -> datetime:
        """Where a new cursor starts. "now" is floored to the second: order times have
        one-second precision, so an order placed in the same second as the start is news."""
        if self.cfg.start_from == "now":
            return _floor(self.clock())
        start = self.cfg.start_from
        return start if start.tzinfo else start.replace(tzinfo=UTC)

    def ensure_cursor(self) -> Cursor:
        """The saved cursor, or a new one at the start point (the daemon calls this before it
        says READY, so "now" means the moment it was ready, not its first poll)."""
        return self.store.cursor(self.name) or self.store.init_cursor(self.name, self.start_point())

    async def poll(self) -> PassReport:
        """The fast path, the trash check and any sweep that is due."""
        report = PassReport(self.name)
        cursor = self.ensure_cursor()
        overlap = timedelta(0) if MUTANT == "no_overlap" else self.cfg.overlap
        after = _floor(cursor.updated_at - overlap)
        newest = await self._walk(
            lambda page: self.source.list_modified(after, page),
            report,
            start_at=cursor.start_at,
            status="any",
        )
        if report.stopped:
            return report
        if newest is not None and newest > (cursor.updated_at, cursor.order_id):
            self.store.commit_page(self.name, [], [], cursor=newest)
            report.cursor = newest[0]
        await self._walk(
            lambda page: self.source.list_modified(after, page, status="trash"),
            report,
            start_at=cursor.start_at,
            status="trash",
        )
        now = self.clock()
        for kind, every, window, last in (
            ("daily", DAY, self.cfg.sweep_daily, cursor.last_daily_sweep),
            ("hourly", HOUR, self.cfg.sweep_hourly, cursor.last_hourly_sweep),
        ):
            if report.stopped:
                break
            if last is None:
                self.store.set_sweep(self.name, kind, now)  # first sweep one period from now
            elif now - last >= every:
                await self.sweep(window, report, start_at=cursor.start_at, anchor=cursor.updated_at)
                self.store.set_sweep(self.name, kind, now)
                if kind == "daily":  # the daily window contains the hourly one
                    self.store.set_sweep(self.name, "hourly", now)
                    break
        self.store.record_poll(self.name, error=None, when=now)
        return report

    async def sweep(
        self, window: timedelta, report: PassReport, *, start_at: datetime, anchor: datetime
    ) -> None:
        """Re-read orders created in `window` before the bookmark (data time, not our clock)."""
        after = _floor(anchor - window)
        await self._walk(
            lambda page: self.source.list_created(after, page),
            report,
            start_at=start_at,
            status="any",
            late=True,
        )

    async def backfill(
        self,
        since: datetime,
        until: datetime | None,
        *,
        notify: bool,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> PassReport:
        """Fill snapshots (and events) for orders modified in [since, until]; never touches the
        live bookmark. Without `notify` the events are recorded as history with no deliveries,
        so the live daemon will not announce them later either."""
        report = PassReport(self.name)
        self.ensure_cursor()
        after = _floor(since) - timedelta(seconds=1)  # modified_after is a strict >
        await self._walk(
            lambda page: self.source.list_modified(after, page),
            report,
            start_at=since,
            status="any",
            notify=notify,
            until=until,
            progress=progress,
            backfill=True,
        )
        return report

    async def _walk(
        self,
        lister: Lister,
        report: PassReport,
        *,
        start_at: datetime,
        status: str,
        late: bool = False,
        notify: bool = True,
        until: datetime | None = None,
        progress: Callable[[int, int | None], None] | None = None,
        backfill: bool = False,
    ) -> tuple[datetime, str] | None:
        """Walk one window page by page; returns the newest `(updated_at, id)` seen."""
        for _attempt in range(MAX_REWALKS + 1):
            newest: tuple[datetime, str] | None = None
            first_total: int | None = None
            last: tuple[object, ...] | None = None
            page: PageToken = None
            number = 0
            rewalk = False
            while True:
                number += 1
                listing = await lister(page)
                report.pages += 1
                rows = listing.rows
                if not rows:
                    break
                if first_total is None:
                    first_total = listing.total
                elif listing.total is not None and first_total and listing.total < first_total:
                    logger.info(
                        "store {}: window shrank from {} to {} orders while paging; re-walking",
                        self.name,
                        first_total,
                        listing.total,
                    )
                    rewalk = True
                    break
                keys = [self._key(r) for r in rows]
                if keys != sorted(keys) or (last is not None and keys[0] <= last):
                    raise RetryableSourceError(
                        self.name, f"page {number} went backwards ({keys[0]} after {last})"
                    )
                last = keys[-1]
                report.listed += len(rows)
                for row in rows:
                    key = (row.updated_at, row.id)
                    if newest is None or key > newest:
                        newest = key
                if until is not None:
                    rows = [r for r in rows if r.updated_at <= until]
                await self._apply_page(
                    rows,
                    report,
                    start_at=start_at,
                    status=status,
                    late=late,
                    notify=notify,
                    backfill=backfill,
                )
                if progress is not None:
                    progress(report.listed, first_total)
                if self.stopping():
                    report.stopped = True
                    return None
                if listing.next is None:
                    break
                page = listing.next
            if not rewalk:
                return newest
        raise RetryableSourceError(self.name, "orders kept leaving the window while paging")

    def _key(self, row: Listed) -> tuple[object, ...]:
        """The order a page must ascend in (`Source.keyset`); ids compare as numbers."""
        if self.source.keyset == "id":
            return (int(row.id),)
        return (row.updated_at, int(row.id))

    async def _apply_page(
        self,
        rows: Sequence[object],
        report: PassReport,
        *,
        start_at: datetime,
        status: str,
        late: bool,
        notify: bool,
        backfill: bool,
    ) -> None:
        listed = {r.id: r for r in rows}  # type: ignore[attr-defined]
        snaps = self.store.snapshots(self.name, listed)
        changed = [
            i
            for i, r in listed.items()
            if not unchanged(snaps.get(i), r.updated_at, r.status)  # type: ignore[attr-defined]
        ]
        if not changed:
            return
        orders = await self.source.fetch(changed, status=status)
        report.fetched += len(orders)
        detected = self.clock()
        new_snaps: list[Snapshot] = []
        events: list[tuple[Event, list[str]]] = []
        for order in orders:
            snap, found = diff(
                snaps.get(order.id),
                order,
                detected_at=detected,
                start_at=start_at,
                rules=self.rules,
            )
            new_snaps.append(snap)
            for ev in found:
                events.append((ev, channels_for(ev, self.routes) if notify else []))
        result = self.store.commit_page(self.name, new_snaps, events, late=late, backfill=backfill)
        report.events += result.new_events
        report.deliveries += result.new_deliveries
        report.event_ids.extend(ev.id for ev, _ in events)
        if late:
            report.late_events += result.new_events
            if result.new_events:
                logger.warning(
                    "store {}: sweep found {} event(s) the fast path missed",
                    self.name,
                    result.new_events,
                )
        if result.new_deliveries:
            self.on_commit(result.new_deliveries)


def _floor(value: datetime) -> datetime:
    """WooCommerce compares at one-second precision; sub-seconds would only confuse logs."""
    return value.replace(microsecond=0)
