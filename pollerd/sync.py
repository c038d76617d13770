"""One pass of one store: probe, walk what moved, move the bookmark, then the feeds, the
baseline and any sweep that is due.

The rules (DESIGN §5, each one a measured way other tools lost orders):

- The bookmark is `(updated_at, id)` of data the API returned, never pollerd's clock, and it
  never moves on an empty pass.
- A pass reads `updated_at > bookmark − overlap` ONCE, then walks that open window by page
  (`pollerd.walk`). Re-applying the overlap on every page freezes the cursor when more orders
  change inside the overlap than fit on a page (a measured livelock).
- The bookmark is written only when the whole window was walked, so a crash mid-pass re-walks
  it and the diff skips what is already recorded.
- Deletions, disputes, sweeps by created date and the existence check of known open orders are
  `pollerd.reconcile`'s; this module decides when each runs.
- A new cursor plans the first-run baseline (`pollerd.baseline`), which then runs a few pages per
  pass after the fast path.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from pollerd import baseline, metrics
from pollerd.config import RouteConfig
from pollerd.errors import RetryableSourceError
from pollerd.failpoints import armed
from pollerd.reconcile import Reconcile
from pollerd.sources.base import Bounded, Feeds, Hidden, ListPage, PageToken, Presence, Undated
from pollerd.startpoint import warn_mismatch
from pollerd.store.db import Cursor
from pollerd.walk import Lister, PassReport, floor_second

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
WALK_EVERY = 60.0
"""With a probe, a pass that sees nothing newer than the bookmark skips the window walk, except
once a minute: an order the probe cannot show as new but that is inside the overlap is then
still found by the fast path (not counted late): one a search index shows late, one a plugin or
a disagreeing clock dated before the bookmark. Beyond the overlap the sweeps find it."""
PROBE_SEAM = timedelta(seconds=2)


class StoreSync(Reconcile):
    """One store's passes: when to walk the window, move the bookmark, read the feeds, run the
    baseline and the sweeps. The page path is `WindowWalk`'s, the feeds and sweeps
    `Reconcile`'s; a backfill (`pollerd.backfill.fill`) goes through the same page path."""

    _last_walk = float("-inf")  # when the window was last walked (monotonic seconds)
    _walk_started = datetime.min.replace(tzinfo=UTC)  # ...and when that walk read (our clock)
    _seen: tuple[datetime, int] | None = None  # the newest key any walk listed (`_saw`)
    _baseline_done = False
    _start_checked = False  # start_from checked against the saved cursor (once per sync)

    def _saw(self, newest: tuple[datetime, str] | None) -> None:
        """The newest change a walk listed, in any listing: the trash's too, which the bookmark
        (the window's) never reaches. The probe sees every status, so a trashing newer than
        the bookmark must not look new again on every pass once it has been walked."""
        if newest is not None:
            key = _key(*newest)
            self._seen = key if self._seen is None else max(self._seen, key)

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
            return floor_second(self.clock())
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
        after = floor_second(cursor.updated_at - overlap)
        read_at = floor_second(self.clock())
        moved = await self._moved(cursor)
        if moved:
            self._last_walk = time.monotonic()
            self._walk_started = read_at
            lister: Lister = functools.partial(self.source.list_modified, after)
            if armed("overlap_per_page"):  # test-only (failpoints.py): the B.4 livelock
                lister = _page_per_pass(lister)
            newest = await self.walk(
                lister,
                report,
                start_at=cursor.start_at,
                status="any",
            )
            if report.stopped:
                return report
            self._saw(newest)
            if armed("local_cursor") and newest is not None:  # test-only: row 16's mutant
                newest = (read_at, newest[1])
            if newest is not None and newest > (cursor.updated_at, cursor.order_id):
                self.store.commit_page(self.name, [], [], cursor=newest)
                report.cursor = newest[0]
                metrics.cursor(self.name, newest[0])
        # Orders set aside for not reading are retried here, not from the window.
        if not report.stopped and (released := await self.quarantine.retry(self.source)):
            await self.apply_orders(released, report, start_at=cursor.start_at, notify=True)
        if isinstance(self.source, Feeds):
            await self._feeds(self.source, cursor.start_at, report)
        # Statuses the default listing leaves out: a listing each, walked with the window (the
        # probe sees them too: an idle pass reads neither).
        for hidden in self.source.hidden if moved and isinstance(self.source, Hidden) else ():
            self._saw(
                await self.walk(
                    functools.partial(self.source.list_modified, after, status=hidden),
                    report,
                    start_at=cursor.start_at,
                    status=hidden,
                )
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
        """The fast path: walk the window (and the hidden statuses' listings) only when the
        probe saw something newer than the bookmark and than anything a walk listed (or the
        periodic walk is due). Sources without a probe always walk; a `Bounded` one is asked
        whether anything moved after that newest known change instead (one request whose
        idle answer is empty).

        "Newer" compares keys, `(updated_at, id)` with ids as numbers, not seconds: an order
        sharing the bookmark's second with a higher id (one the search index showed late) is
        news, and must not wait for the periodic walk."""
        if time.monotonic() - self._last_walk >= WALK_EVERY:
            return True
        bookmark = _key(cursor.updated_at, cursor.order_id)
        known = max(bookmark, self._seen or bookmark)
        seam = self._walk_started - PROBE_SEAM
        if isinstance(self.source, Bounded):
            # Asked about the seconds after the newest known change only: one in that second
            # with a higher id is invisible to it, so that second is walked while it is the
            # walk's own (the seam below), and later by the periodic walk.
            if known[0] >= seam:
                return True
            return await self.source.moved_since(floor_second(known[0])) is not False
        newest = await self.source.probe()
        if newest is None or _key(newest.updated_at, newest.id) > known:
            return True
        # An order changed in the same second as the last walk, after it, can sort below the
        # bookmark's id and hide behind it in the probe. pollerd's clock only decides *whether*
        # to walk here (never where the cursor goes); a clock far off only delays such an
        # order to the next periodic walk, it cannot lose it.
        return newest.updated_at >= seam


def _key(updated_at: datetime, order_id: str) -> tuple[datetime, int]:
    """A bookmark as a comparable key: ids compare as numbers ("10" after "9"); the empty id of
    a new cursor sorts first."""
    return updated_at, int(order_id) if order_id.isdigit() else -1


def _page_per_pass(lister: Lister) -> Lister:
    """The `overlap_per_page` mutant (test-only, failpoints.py): research §B.4's livelock. Each
    pass reads ONE page from `bookmark − overlap` and the bookmark follows that page, which is
    the overlap applied again on every page: once more orders changed inside the overlap than
    fit on a page, every pass reads the same first page and the rest is never seen."""

    async def first_page(page: PageToken) -> ListPage:
        return replace(await lister(page), next=None)

    return first_page
