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
- If the window's total shrinks while walking (an order was deleted mid-walk and later pages
  shifted by one), the walk starts again: offset paging is not a snapshot.
- Deletions come from the source's capabilities: a deletions feed (`Feeds`), or a listing of
  each status the default listing leaves out (`Hidden`); hourly and daily sweeps re-read recent
  orders by *created* date, a second access path, and count what they find that the fast path
  missed (only changes from before the fast path's last read: one made during a long sweep was
  not missed). For a source with `Presence` the daily sweep also asks the store whether the
  open orders pollerd knows still exist: an order deleted permanently may appear in no listing.
- A new cursor plans the first-run baseline (`pollerd.baseline`), which then runs a few pages per
  pass after the fast path.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from loguru import logger

from pollerd import baseline, metrics
from pollerd.config import RouteConfig, StoreConfig
from pollerd.diff import deleted, diff, dispute_diff, dispute_key, unchanged
from pollerd.errors import RetryableSourceError
from pollerd.failpoints import armed
from pollerd.model import (
    PERMANENT_DELETION,
    Contact,
    Deletion,
    Dispute,
    Event,
    Order,
    Snapshot,
)
from pollerd.quarantine import Quarantine
from pollerd.resume import ResumePoint, dump, parse, resume_key
from pollerd.routing import channels_for
from pollerd.sources import platform
from pollerd.sources.base import (
    Bulk,
    Dating,
    Feeds,
    FeedUnavailable,
    Hidden,
    ListPage,
    PageToken,
    Presence,
    Source,
    Undated,
)
from pollerd.startpoint import warn_mismatch
from pollerd.store import Store
from pollerd.store.db import Cursor

MAX_REWALKS = 3
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
WALK_EVERY = 60.0
"""With a probe, a pass that sees nothing newer than the bookmark skips the window walk, except
once a minute: an order the search index shows late but inside the overlap is then still found
by the fast path (not counted late); beyond the overlap the sweeps find it."""
PROBE_SEAM = timedelta(seconds=2)
DELETIONS_EVERY = 30.0  # the events feed lags "seconds, rarely a few minutes" (research §1.6)
DISPUTES_EVERY = 300.0  # chargebacks move in days; evidence is due in a week or more
DELETIONS_WINDOW = DAY  # re-read a day of destroy events: cheap, and snapshots dedupe
DISPUTES_WINDOW = timedelta(days=7)
OPEN_CHECK_BATCH = 100  # ids per existence check (`include=` takes at most per_page = 100)
FUTURE_SLACK = DAY
"""An order modified more than this ahead of pollerd's clock (a store clock set a year ahead for
a moment, a plugin writing a bad date) is diffed like any order but does not move the bookmark:
the bookmark would jump past every later change, which no listing would then show. The clock
only bounds the bookmark here; it never sets it."""
BULK_FROM = timedelta(days=7)
"""Backfills reaching further back than this use one bulk export instead of pages (`Bulk`)."""

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


def utcnow() -> datetime:
    return datetime.now(UTC)


class StoreSync:
    def __init__(
        self,
        cfg: StoreConfig,
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
        self.platform = platform(cfg.platform)
        self.rules = self.platform.rules(cfg)
        self._last_walk = float("-inf")
        self._walk_started = datetime.min.replace(tzinfo=UTC)
        self._fast_read: datetime | None = None
        """When the fast path last read the store (pollerd's clock, floored): a sweep counts as
        late only changes from before it (a metric; it never moves the cursor)."""
        self._baseline_done = False
        self._warned_ahead: set[str] = set()  # orders dated past FUTURE_SLACK, warned once
        self._feeds_due = {"deletions": 0.0, "disputes": 0.0}
        self._feeds_off: set[str] = set()
        self._start_checked = False
        self.quarantine = Quarantine(
            store, self.name, source.platform, lambda: self.routes, on_commit=self.on_commit
        )

    def reroute(self, routes: Sequence[RouteConfig]) -> None:
        """A reload's `[[routes]]`: the next page committed routes by them."""
        self.routes = routes

    def retire(self) -> None:
        """A reload removed or changed this store: stop after the page in flight."""
        self.stopping = lambda: True

    def start_point(self) -> datetime:
        """Where a new cursor starts. "now" is floored to the second: order times have
        one-second precision, so an order placed in the same second as the start is news."""
        if self.cfg.start_from == "now":
            return _floor(self.clock())
        start = self.cfg.start_from
        return start if start.tzinfo else start.replace(tzinfo=UTC)

    def ensure_cursor(self) -> Cursor:
        """The saved cursor, or a new one at the start point (the daemon calls this before it
        says READY, so "now" means the moment it was ready, not its first poll). The metrics
        learn the bookmark and the recorded last success here, so a restarted daemon does not
        look like one that never polled."""
        cursor = self.store.cursor(self.name)
        if cursor is None:
            start = self.start_point()
            if isinstance(self.source, Undated):  # planned first: a crash before init re-plans
                horizon = self.source.baseline_horizon
                baseline.schedule(self.store, self.name, start, horizon)
            cursor = self.store.init_cursor(self.name, start)
        if not self._start_checked:  # once per sync: at start and at a reload that changed it
            self._start_checked = True
            warn_mismatch(self.cfg, cursor)
        metrics.cursor(self.name, cursor.updated_at)
        metrics.seen_success(self.name, cursor.last_success)
        metrics.interval(self.name, self.cfg.interval.total_seconds())
        return cursor

    async def poll(self, *, sweep: bool = False) -> PassReport:
        """The fast path, deletions (a feed or `Hidden` listings) and any sweep that is due
        (`sweep=True`: the daily one now, e.g. `pollerd once --sweep` after an incident).

        Counted here, where a pass begins and ends (`pollerd_polls_total`, its duration, the
        last success): ok; throttled when it failed after the store's API asked pollerd to
        slow down during it (429, THROTTLED, a pending Retry-After); error otherwise. A pass
        cut short by shutdown is not counted."""
        started = time.monotonic()
        throttles = self.source.throttled
        try:
            report = await self._poll(sweep=sweep)
        except Exception as exc:
            throttled = isinstance(exc, RetryableSourceError) and (
                self.source.throttled > throttles
            )
            metrics.poll(
                self.name, "throttled" if throttled else "error", time.monotonic() - started
            )
            raise
        if not report.stopped:
            metrics.poll(self.name, "ok", time.monotonic() - started)
        return report

    async def _poll(self, *, sweep: bool) -> PassReport:
        report = PassReport(self.name)
        cursor = self.ensure_cursor()
        overlap = timedelta(0) if armed("no_overlap") else self.cfg.overlap  # failpoints.py
        after = _floor(cursor.updated_at - overlap)
        read_at = _floor(self.clock())
        if await self._moved(cursor):
            self._last_walk = time.monotonic()
            self._walk_started = read_at
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
                metrics.cursor(self.name, newest[0])
        # Orders set aside for not reading are retried here, not from the window.
        if not report.stopped and (released := await self.quarantine.retry(self.source)):
            await self._apply_orders(released, report, start_at=cursor.start_at, notify=True)
        if isinstance(self.source, Feeds):
            await self._feeds(self.source, cursor.start_at, report)
        for hidden in self.source.hidden if isinstance(self.source, Hidden) else ():
            await self._walk(  # statuses the default listing leaves out: a listing each
                functools.partial(self.source.list_modified, after, status=hidden),
                report,
                start_at=cursor.start_at,
                status=hidden,
            )
        self._fast_read = read_at
        if isinstance(self.source, Undated) and not self._baseline_done and not report.stopped:
            self._baseline_done = await baseline.step(
                self.store,
                self.name,
                self.source,
                rules=self.rules,
                clock=self.clock,
                stopping=self.stopping,
            )
        now = self.clock()
        for kind, every, window, last in (
            ("daily", DAY, self.cfg.sweep_daily, cursor.last_daily_sweep),
            ("hourly", HOUR, self.cfg.sweep_hourly, cursor.last_hourly_sweep),
        ):
            if report.stopped:
                break
            if sweep and kind == "daily":
                last = now - every  # due now
            if last is None:
                self.store.set_sweep(self.name, kind, now)  # first sweep one period from now
            elif now - last >= every:
                await self.sweep(window, report, start_at=cursor.start_at, anchor=cursor.updated_at)
                if kind == "daily" and isinstance(self.source, Presence) and not report.stopped:
                    await self._vanished(self.source, report, start_at=cursor.start_at)
                self.store.set_sweep(self.name, kind, now)
                if kind == "daily":  # the daily window contains the hourly one
                    self.store.set_sweep(self.name, "hourly", now)
                    break
        self.store.record_poll(self.name, error=None, when=now, budget=self.source.budget_used())
        return report

    async def _moved(self, cursor: Cursor) -> bool:
        """The fast path: walk the window only when the probe saw something newer than the
        bookmark (or the periodic walk is due). Sources without a probe always walk.

        "Newer" compares keys, `(updated_at, id)` with ids as numbers, not seconds: an order
        sharing the bookmark's second with a higher id (one the search index showed late) is
        news, and must not wait for the periodic walk."""
        if time.monotonic() - self._last_walk >= WALK_EVERY:
            return True
        newest = await self.source.probe()
        if newest is None or _key(newest.updated_at, newest.id) > _key(
            cursor.updated_at, cursor.order_id
        ):
            return True
        # An order changed in the same second as the last walk, after it, can sort below the
        # bookmark's id and hide behind it in the probe. pollerd's clock only decides *whether*
        # to walk here (never where the cursor goes); a clock far off only delays such an
        # order to the next periodic walk, it cannot lose it.
        seam = self._walk_started - PROBE_SEAM
        return newest.updated_at >= seam

    async def _vanished(self, source: Presence, report: PassReport, *, start_at: datetime) -> None:
        """Known open orders the store no longer has at all: deleted permanently (an API
        delete, a cleanup plugin), which no listing shows. One cheap existence check per 100
        known open orders a day; one found in a `Hidden` status is diffed like any such order."""
        ids = self.store.open_orders(self.name, finished=self.platform.terminal)
        for start in range(0, len(ids), OPEN_CHECK_BATCH):
            chunk = ids[start : start + OPEN_CHECK_BATCH]
            present = await source.present(chunk)
            for hidden in self.source.hidden if isinstance(self.source, Hidden) else ():
                found = [i for i, status in present.items() if status == hidden]
                if found:
                    orders = self.quarantine.sort(
                        await self.source.fetch(found, status=hidden), status=hidden
                    )
                    await self._apply_orders(orders, report, start_at=start_at, notify=True)
            detected = self.clock()
            gone = [Deletion(i, detected, PERMANENT_DELETION) for i in chunk if i not in present]
            if gone:
                logger.warning(
                    "store {}: {} known open order(s) deleted permanently", self.name, len(gone)
                )
                self._apply_deletions(gone, detected, report)
            if self.stopping():
                report.stopped = True
                return

    def _far_ahead(self, order_id: str, updated_at: datetime) -> None:
        if order_id in self._warned_ahead:
            return
        self._warned_ahead.add(order_id)
        logger.warning(
            "store {}: order {} says it was modified at {}, more than {} ahead of this machine's "
            "clock; it is diffed, but the bookmark does not follow it (check the store's clock "
            "and this one's)",
            self.name,
            order_id,
            updated_at.isoformat(),
            FUTURE_SLACK,
        )

    async def _feeds(self, source: Feeds, start_at: datetime, report: PassReport) -> None:
        """Deletions and disputes, each on its own slower clock; a feed the credentials cannot
        read is switched off with one warning instead of failing every pass."""
        now = time.monotonic()
        detected = self.clock()
        for feed in ("deletions", "disputes"):
            if feed in self._feeds_off or not getattr(self.cfg, feed, False):
                continue
            if now < self._feeds_due[feed] or report.stopped:
                continue
            try:
                if feed == "deletions":
                    gone = await source.deletions(_floor(self.clock() - DELETIONS_WINDOW))
                    self._apply_deletions(gone, detected, report, start_at=start_at)
                else:
                    found = await source.disputes(_floor(self.clock() - DISPUTES_WINDOW))
                    self._apply_disputes(found, detected, start_at, report)
            except FeedUnavailable as exc:
                logger.warning("{} ({} feed switched off until restart)", exc, feed)
                self._feeds_off.add(feed)
                continue
            every = DELETIONS_EVERY if feed == "deletions" else DISPUTES_EVERY
            self._feeds_due[feed] = now + every

    def _apply_deletions(
        self,
        gone: Sequence[Deletion],
        detected: datetime,
        report: PassReport,
        *,
        start_at: datetime | None = None,
    ) -> None:
        snaps = self.store.snapshots(self.name, [g.order_id for g in gone])
        new_snaps: list[Snapshot] = []
        events: list[tuple[Event, list[str]]] = []
        for deletion in gone:
            snap, found = deleted(
                snaps.get(deletion.order_id),
                deletion,
                store=self.name,
                platform=self.source.platform,
                detected_at=detected,
                last_order=self.store.last_order(self.name, deletion.order_id),
                start_at=start_at,
            )
            if found and snap is not None:
                new_snaps.append(snap)
                events.extend((ev, channels_for(ev, self.routes)) for ev in found)
        self._commit(new_snaps, events, report)

    def _apply_disputes(
        self, found: Sequence[Dispute], detected: datetime, start_at: datetime, report: PassReport
    ) -> None:
        snaps = self.store.snapshots(self.name, [dispute_key(d.id) for d in found])
        new_snaps: list[Snapshot] = []
        events: list[tuple[Event, list[str]]] = []
        for dispute in found:
            old = snaps.get(dispute_key(dispute.id))
            order_id = dispute.order_id
            snap, new = dispute_diff(
                old,
                dispute,
                store=self.name,
                platform=self.source.platform,
                detected_at=detected,
                start_at=start_at,
                order=self.store.last_order(self.name, order_id) if order_id else None,
            )
            if old is None or old.status != snap.status:
                new_snaps.append(snap)
            events.extend((ev, channels_for(ev, self.routes)) for ev in new)
        self._commit(new_snaps, events, report)

    def _commit(
        self,
        snaps: list[Snapshot],
        events: list[tuple[Event, list[str]]],
        report: PassReport,
        *,
        late: bool = False,
        backfill: bool = False,
        contacts: dict[str, Contact | None] | None = None,
    ) -> None:
        if not snaps and not events:
            return
        result = self.store.commit_page(
            self.name, snaps, events, late=late, backfill=backfill, contacts=contacts
        )
        report.events += result.new_events
        report.deliveries += result.new_deliveries
        # Only the events this commit recorded count in `pollerd_events_total` by type: not a
        # replayed page's, a feed re-read's, nor those `pollerd backfill` (running beside the
        # daemon without its lock) recorded first.
        recorded = set(result.event_ids)
        fresh = {ev.id: ev.type for ev, _ in events if ev.id in recorded}
        metrics.new_events(
            self.name, Counter(fresh.values()), late=result.new_events if late else 0
        )
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
        if isinstance(self.source, Bulk) and self.clock() - since > BULK_FROM:
            await self._bulk(
                self.source, since, until, notify=notify, report=report, progress=progress
            )
            return report
        after = _floor(since) - timedelta(seconds=1)  # modified_after is a strict >
        # Offset pages (keyset "id") resume where an interrupted run of this window stopped;
        # cursor pages have their bulk export (`Bulk`) for long windows instead.
        key = resume_key(self.name, since, until) if self.source.keyset == "id" else None
        await self._walk(
            lambda page: self.source.list_modified(after, page),
            report,
            start_at=since,
            status="any",
            notify=notify,
            until=until,
            progress=progress,
            backfill=True,
            resume_at=key,
        )
        if key is not None and not report.stopped:
            self.store.set_meta(key, None)
        return report

    async def _bulk(
        self,
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
        key = f"bulk:{self.name}"
        batches = source.bulk_orders(
            since,
            until,
            resume=self.store.meta(key),
            on_started=lambda op: self.store.set_meta(key, op),
            on_progress=(lambda n: progress(n, None)) if progress else None,
        )
        async for orders in batches:
            report.listed += len(orders)
            report.fetched += len(orders)
            await self._apply_orders(orders, report, start_at=since, notify=notify, backfill=True)
            if progress is not None:
                progress(report.listed, None)
            if self.stopping():
                report.stopped = True
                return
        self.store.set_meta(key, None)

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
        resume_at: str | None = None,
    ) -> tuple[datetime, str] | None:
        """Walk one window page by page; returns the newest `(updated_at, id)` seen.

        Offset pages by id (keyset "id") must ascend, or the walk is refused: a page that goes
        backwards means the offsets shifted under us. Cursor-paged APIs are not
        checked: their sort uses the search index's values while the rows carry the order's
        current ones, so a lagging index legitimately shows them out of order."""
        ordered = self.source.keyset == "id"
        point = parse(self.store.meta(resume_at)) if resume_at else None
        if point is not None:
            logger.info(
                "store {}: resuming an interrupted backfill of this window after {} orders "
                "(page {})",
                self.name,
                point.listed,
                point.page,
            )
        for _attempt in range(MAX_REWALKS + 1):
            newest: tuple[datetime, str] | None = None
            first_total: int | None = None
            last: int | None = point.last_id if point else None
            page: PageToken = point.page if point else None
            number = point.page - 1 if point else 0
            before = point.listed if point else 0  # listed by the interrupted run(s)
            rewalk = False
            while True:
                number += 1
                listing = await lister(page)
                report.pages += 1
                rows = listing.rows
                if listing.set_aside:  # rows that do not read: quarantined, the rest goes on
                    self.quarantine.sort(listing.set_aside, status=status, notify=notify)
                if not rows:
                    break
                if point is not None and number == point.page:  # the re-read page
                    if int(rows[0].id) > point.last_id:  # orders left: offsets moved back
                        logger.info(
                            "store {}: orders left the window since the backfill stopped; "
                            "starting it again from page 1",
                            self.name,
                        )
                        point, rewalk = None, True
                        break
                    rows = [r for r in rows if int(r.id) > point.last_id]  # done already
                    if not rows:
                        if listing.next is None:
                            break
                        page = listing.next
                        continue
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
                keys = [int(r.id) for r in rows]
                if ordered and (keys != sorted(keys) or (last is not None and keys[0] <= last)):
                    raise RetryableSourceError(
                        self.name, f"page {number} went backwards ({keys[0]} after {last})"
                    )
                last = keys[-1]
                report.listed += len(rows)
                ceiling = self.clock() + FUTURE_SLACK
                for row in rows:
                    key = (row.updated_at, row.id)
                    if row.updated_at > ceiling:
                        self._far_ahead(row.id, row.updated_at)
                    elif newest is None or key > newest:
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
                done = before + report.listed
                if resume_at is not None and ordered:
                    self.store.set_meta(resume_at, dump(ResumePoint(number, last, done)))
                if progress is not None:
                    # The latest total: orders placed while paging join the window's end.
                    progress(done, max(done, listing.total or first_total or 0) or None)
                if self.stopping():
                    report.stopped = True
                    return None
                if listing.next is None:
                    break
                page = listing.next
            if not rewalk:
                if progress is not None and report.pages:
                    done = before + report.listed
                    progress(done, done)  # finished: everything in the window was listed
                return newest
        raise RetryableSourceError(self.name, "orders kept leaving the window while paging")

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
        fetched = await self.source.fetch(changed, status=status)
        orders = self.quarantine.sort(fetched, status=status, notify=notify)  # malformed: aside
        report.fetched += len(orders)
        await self._apply_orders(
            orders,
            report,
            start_at=start_at,
            notify=notify,
            late=late,
            backfill=backfill,
            snaps=snaps,
        )

    async def _apply_orders(
        self,
        orders: Sequence[Order],
        report: PassReport,
        *,
        start_at: datetime,
        notify: bool,
        late: bool = False,
        backfill: bool = False,
        snaps: dict[str, Snapshot] | None = None,
    ) -> None:
        if snaps is None:
            snaps = self.store.snapshots(self.name, [o.id for o in orders])
        orders = await self._dated(orders, snaps, start_at)
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
        contacts = {o.id: o.contact for o in orders}  # sealed by the store, or dropped (no key)
        if late:
            # A sweep's finds are late only if they changed before the fast path last read the
            # store; a change made while a long sweep ran was not missed by anyone. Those go in
            # first, without the snapshots: a crash between the two commits replays the page,
            # and event ids make the replay a no-op for what was already recorded.
            read = self._fast_read
            missed = {o.id for o in orders if read is not None and o.updated_at < read}
            on_time = [(ev, ch) for ev, ch in events if ev.order_id not in missed]
            self._commit([], on_time, report, backfill=backfill)
            events = [(ev, ch) for ev, ch in events if ev.order_id in missed]
        self._commit(new_snaps, events, report, late=late, backfill=backfill, contacts=contacts)

    async def _dated(
        self, orders: Sequence[Order], snaps: dict[str, Snapshot], start_at: datetime
    ) -> Sequence[Order]:
        """Orders pollerd never saw, placed before the start point, get the dates their payload
        lacks from the source (`Dating`: refunds or captures dated by another route), so a
        change made long before the start point is not announced when the order is merely
        touched. Few orders need it (the baseline knows the recent ones) and a source asks only
        when a date is missing."""
        if not isinstance(self.source, Dating):
            return orders
        return [
            await self.source.dated(o) if o.id not in snaps and o.created_at < start_at else o
            for o in orders
        ]


def _key(updated_at: datetime, order_id: str) -> tuple[datetime, int]:
    """A bookmark as a comparable key: ids compare as numbers ("10" after "9"); the empty id of
    a new cursor sorts first."""
    return updated_at, int(order_id) if order_id.isdigit() else -1


def _floor(value: datetime) -> datetime:
    """Order APIs compare at one-second precision; sub-seconds would only confuse logs."""
    return value.replace(microsecond=0)
