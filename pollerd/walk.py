"""The one path every order takes: walk a window of the listing page by page, fetch what
changed, diff it, and commit each page in one transaction.

The live pass (`pollerd.sync`), the sweeps and feeds (`pollerd.reconcile`) and a backfill
(`pollerd.backfill`) all go through here; they differ only in which listing they walk and how
what they find is committed (late, as history, with or without alerts). The rules it keeps
(DESIGN §5, each one a measured way other tools lost orders):

- A window is walked by page (`orderby=id`: stable, unlike `orderby=modified` which duplicates
  and skips among orders sharing a second); offset pages by id must ascend, or the walk is
  refused.
- Each page is one transaction (snapshots + events + deliveries); the caller writes the
  bookmark only when the whole window was walked, so a crash mid-pass re-walks it and the diff
  skips what is already recorded.
- If the window's total shrinks while walking (an order was deleted mid-walk and later pages
  shifted by one), the walk starts again: offset paging is not a snapshot.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from loguru import logger

from pollerd import metrics
from pollerd.alerts.facts import blind_key, order_fact
from pollerd.config import RouteConfig, StoreConfig
from pollerd.diff import diff, unchanged
from pollerd.errors import RetryableSourceError
from pollerd.model import Contact, Event, Order, Snapshot, Target
from pollerd.prefetch import Lister, Prefetch
from pollerd.quarantine import Quarantine
from pollerd.resume import ResumePoint, dump, parse
from pollerd.routing import targets_for
from pollerd.sources import platform
from pollerd.sources.base import Dating, ListPage, Malformed, PageToken, Source
from pollerd.store import DisputeFact, PageResult, Store

MAX_REWALKS = 3
FUTURE_SLACK = timedelta(days=1)
"""An order modified more than this ahead of pollerd's clock (a store clock set a year ahead for
a moment, a plugin writing a bad date) is diffed like any order but does not move the bookmark:
the bookmark would jump past every later change, which no listing would then show. The clock
only bounds the bookmark here; it never sets it."""


@dataclass
class Gathered:
    """A page's snapshots, the ids that changed since them, and their full orders."""

    snaps: dict[str, Snapshot]
    changed: list[str]
    fetched: list[Order | Malformed]


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
    """The wall clock as `time.time` reads it (a test's `clock_skew` failpoint moves both)."""
    return datetime.fromtimestamp(time.time(), UTC)


class WindowWalk:
    """One store's page path: what a `StoreSync` shares with its sweeps, feeds and backfills."""

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
        blind: bytes | None = None,
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
        self._fast_read: datetime | None = None
        """When the fast path last read the store (pollerd's clock, floored): a sweep counts as
        late only changes from before it (a metric; it never moves the cursor)."""
        self._warned_ahead: set[str] = set()  # orders dated past FUTURE_SLACK, warned once
        self._blind = blind
        """The blind index key of the buyers' email/phone/IP (`alerts.facts.blind_key`): the
        runtime derives it once from `pii_key`; without one, the database's own key."""
        self.quarantine = Quarantine(
            store, self.name, source.platform, lambda: self.routes, on_commit=self.on_commit
        )

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

    @property
    def blind(self) -> bytes:
        if self._blind is None:
            self._blind = blind_key(self.store, None)
        return self._blind

    def commit(
        self,
        snaps: list[Snapshot],
        events: list[tuple[Event, list[Target]]],
        report: PassReport,
        *,
        late: bool = False,
        backfill: bool = False,
        contacts: dict[str, Contact | None] | None = None,
        orders: Sequence[Order] = (),
        disputes: Sequence[DisputeFact] = (),
    ) -> None:
        """One page in one transaction, with the seller rules' facts of its `orders` and
        `disputes` (a backfill's too: facts are facts; the rules judge only orders created
        after the start point, `alerts.seller`)."""
        if not snaps and not events and not orders and not disputes:
            return
        write = self._writer(snaps, events, late, backfill, contacts, orders, disputes)
        self._recorded(write(), events, report, late=late)

    async def commit_aside(
        self,
        snaps: list[Snapshot],
        events: list[tuple[Event, list[Target]]],
        report: PassReport,
        *,
        backfill: bool,
        contacts: dict[str, Contact | None] | None,
        orders: Sequence[Order],
    ) -> None:
        """`commit` with the transaction in a worker thread, so the event loop sends the
        prefetched page's request and reads its answer meanwhile (`pollerd.prefetch`). Only a
        prefetching walk uses it, and it awaits the thread: nothing else uses the store then.
        What follows the write (metrics, waking the outbox) runs back on the loop."""
        if not snaps and not events and not orders:
            return
        write = self._writer(snaps, events, False, backfill, contacts, orders, ())
        self._recorded(await asyncio.to_thread(write), events, report, late=False)

    def _writer(
        self,
        snaps: list[Snapshot],
        events: list[tuple[Event, list[Target]]],
        late: bool,
        backfill: bool,
        contacts: dict[str, Contact | None] | None,
        orders: Sequence[Order],
        disputes: Sequence[DisputeFact],
    ) -> Callable[[], PageResult]:
        def write() -> PageResult:
            facts = [order_fact(o, self.rules, self.blind) for o in orders]
            return self.store.commit_page(
                self.name,
                snaps,
                events,
                late=late,
                backfill=backfill,
                contacts=contacts,
                facts=facts,
                disputes=disputes,
            )

        return write

    def _recorded(
        self,
        result: PageResult,
        events: list[tuple[Event, list[Target]]],
        report: PassReport,
        *,
        late: bool,
    ) -> None:
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

    async def walk(
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
        prefetch: bool = False,
    ) -> tuple[datetime, str] | None:
        """Walk one window page by page; returns the newest `(updated_at, id)` seen.

        Offset pages by id (keyset "id") must ascend, or the walk is refused: a page that goes
        backwards means the offsets shifted under us. Cursor-paged APIs are not
        checked: their sort uses the search index's values while the rows carry the order's
        current ones, so a lagging index legitimately shows them out of order.

        With `prefetch` the next page is listed, and what changed on it fetched, while this one
        commits (`pollerd.prefetch`)."""
        ahead = Prefetch(
            lister,
            enabled=prefetch,
            prepare=functools.partial(self._gather_ahead, status=status, until=until),
        )
        try:
            return await self._walk(
                ahead,
                report,
                start_at=start_at,
                status=status,
                late=late,
                notify=notify,
                until=until,
                progress=progress,
                backfill=backfill,
                resume_at=resume_at,
            )
        finally:
            await ahead.close()

    async def _walk(
        self,
        ahead: Prefetch[Gathered],
        report: PassReport,
        *,
        start_at: datetime,
        status: str,
        late: bool,
        notify: bool,
        until: datetime | None,
        progress: Callable[[int, int | None], None] | None,
        backfill: bool,
        resume_at: str | None,
    ) -> tuple[datetime, str] | None:
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
                listing, gathered = await ahead.page(page)
                report.pages += 1
                rows = listing.rows
                if listing.set_aside:  # rows that do not read: quarantined, the rest goes on
                    self.quarantine.sort(listing.set_aside, status=status, notify=notify)
                if point is not None and number == point.page:  # the re-read page
                    # Orders left: offsets moved back (an empty page too: the ones after the
                    # point moved onto earlier pages).
                    if not rows or int(rows[0].id) > point.last_id:
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
                    ready=functools.partial(ahead.ahead, listing.next) if ahead.enabled else None,
                    gathered=gathered,
                )
                ahead.ahead(listing.next)  # a page with nothing to commit asked nothing more
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
        ready: Callable[[], None] | None = None,
        gathered: Gathered | None = None,
    ) -> None:
        """Fetch what changed on the page (unless read ahead: `gathered`), diff, commit."""
        got = gathered if gathered is not None else await self._gather(rows, status)
        if not got.changed:
            return
        snaps, fetched = got.snaps, got.fetched
        orders = self.quarantine.sort(fetched, status=status, notify=notify)  # malformed: aside
        report.fetched += len(orders)
        await self.apply_orders(
            orders,
            report,
            start_at=start_at,
            notify=notify,
            late=late,
            backfill=backfill,
            snaps=snaps,
            ready=ready,
        )

    async def _gather(self, rows: Sequence[object], status: str) -> Gathered:
        """The page's snapshots, and the full orders of the rows that changed since them."""
        listed = {r.id: r for r in rows}  # type: ignore[attr-defined]
        snaps = self.store.snapshots(self.name, listed)
        changed = [
            i
            for i, r in listed.items()
            if not unchanged(snaps.get(i), r.updated_at, r.status)  # type: ignore[attr-defined]
        ]
        fetched = await self.source.fetch(changed, status=status) if changed else []
        return Gathered(snaps, changed, fetched)

    async def _gather_ahead(
        self, listing: ListPage, *, status: str, until: datetime | None
    ) -> Gathered:
        """`_gather` of a page read ahead, while the page before it commits in a worker thread
        (the snapshots are read on another connection: SQLite's WAL lets a reader in beside
        the writer). Pages hold distinct orders, so what the commit writes is not what is read
        here; when offsets shift and an order shows on both, it is fetched and diffed again,
        and the event ids make the repeat a no-op."""
        rows = listing.rows
        if until is not None:
            rows = [r for r in rows if r.updated_at <= until]
        return await self._gather(rows, status)

    async def apply_orders(
        self,
        orders: Sequence[Order],
        report: PassReport,
        *,
        start_at: datetime,
        notify: bool,
        late: bool = False,
        backfill: bool = False,
        snaps: dict[str, Snapshot] | None = None,
        ready: Callable[[], None] | None = None,
    ) -> None:
        """Diff `orders` and commit them as one page. `ready` is called once the page's last
        request is done, before the commit (a prefetch starts there)."""
        if snaps is None:
            snaps = self.store.snapshots(self.name, [o.id for o in orders])
        orders = await self._dated(orders, snaps, start_at)
        if ready is not None:
            ready()
        detected = self.clock()
        new_snaps: list[Snapshot] = []
        events: list[tuple[Event, list[Target]]] = []
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
                events.append((ev, targets_for(ev, self.routes) if notify else []))
        contacts = {o.id: o.contact for o in orders}  # sealed by the store, or dropped (no key)
        if late:
            # A sweep's finds are late only if they changed before the fast path last read the
            # store; a change made while a long sweep ran was not missed by anyone. Those go in
            # first, without the snapshots: a crash between the two commits replays the page,
            # and event ids make the replay a no-op for what was already recorded.
            read = self._fast_read
            missed = {o.id for o in orders if read is not None and o.updated_at < read}
            on_time = [(ev, ch) for ev, ch in events if ev.order_id not in missed]
            self.commit([], on_time, report, backfill=backfill)
            events = [(ev, ch) for ev, ch in events if ev.order_id in missed]
        if ready is not None and not late:  # prefetching: the page is written aside
            await self.commit_aside(
                new_snaps, events, report, backfill=backfill, contacts=contacts, orders=orders
            )
            return
        self.commit(
            new_snaps,
            events,
            report,
            late=late,
            backfill=backfill,
            contacts=contacts,
            orders=orders,
        )

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


def floor_second(value: datetime) -> datetime:
    """Order APIs compare at one-second precision; sub-seconds would only confuse logs."""
    return value.replace(microsecond=0)
