"""Reconciling a store by other routes than the modified-since listing, for what that listing
cannot show or may have missed.

- Deletions come from the source's capabilities: a deletions feed (`Feeds`), or a listing of
  each status the default listing leaves out (`Hidden`, walked by the pass in `pollerd.sync`).
- Disputes (chargebacks) come from the same feeds, on their own slower clock.
- Hourly and daily sweeps re-read recent orders by *created* date, a second access path, and
  count what they find that the fast path missed (only changes from before the fast path's last
  read: one made during a long sweep was not missed).
- For a source with `Presence` the daily sweep also asks the store whether the open orders
  pollerd knows still exist: an order deleted permanently may appear in no listing.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from datetime import datetime, timedelta

from loguru import logger

from pollerd.alerts.facts import dispute_fact
from pollerd.diff import deleted, dispute_diff, dispute_key
from pollerd.model import PERMANENT_DELETION, Deletion, Dispute, Event, Snapshot, Target
from pollerd.routing import targets_for
from pollerd.sources.base import Feeds, FeedUnavailable, Hidden, Presence
from pollerd.walk import PassReport, WindowWalk, floor_second

DELETIONS_EVERY = 30.0  # the events feed lags "seconds, rarely a few minutes" (research §1.6)
DISPUTES_EVERY = 300.0  # chargebacks move in days; evidence is due in a week or more
DELETIONS_WINDOW = timedelta(days=1)  # re-read a day of destroy events: cheap, and snapshots dedupe
DISPUTES_WINDOW = timedelta(days=7)
OPEN_CHECK_BATCH = 100  # ids per existence check (`include=` takes at most per_page = 100)


class Reconcile(WindowWalk):
    """The feeds, sweeps and existence checks of one store; `StoreSync` decides when each runs."""

    @functools.cached_property
    def _feeds_due(self) -> dict[str, float]:
        """When each feed is next read (monotonic seconds): each runs on its own clock."""
        return {"deletions": 0.0, "disputes": 0.0}

    @functools.cached_property
    def _feeds_off(self) -> set[str]:
        """Feeds the credentials cannot read: off until restart, warned once."""
        return set()

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
                    await self.apply_orders(orders, report, start_at=start_at, notify=True)
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
                    gone = await source.deletions(floor_second(self.clock() - DELETIONS_WINDOW))
                    self._apply_deletions(gone, detected, report, start_at=start_at)
                else:
                    found = await source.disputes(floor_second(self.clock() - DISPUTES_WINDOW))
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
        events: list[tuple[Event, list[Target]]] = []
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
                events.extend((ev, targets_for(ev, self.routes)) for ev in found)
        self.commit(new_snaps, events, report)

    def _apply_disputes(
        self, found: Sequence[Dispute], detected: datetime, start_at: datetime, report: PassReport
    ) -> None:
        snaps = self.store.snapshots(self.name, [dispute_key(d.id) for d in found])
        new_snaps: list[Snapshot] = []
        events: list[tuple[Event, list[Target]]] = []
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
            events.extend((ev, targets_for(ev, self.routes)) for ev in new)
        # Every dispute read is written as a fact (its deadline or status may have moved
        # without a status change the snapshot would notice).
        self.commit(new_snaps, events, report, disputes=[dispute_fact(d) for d in found])

    async def sweep(
        self, window: timedelta, report: PassReport, *, start_at: datetime, anchor: datetime
    ) -> None:
        """Re-read orders created in `window` before the bookmark (data time, not our clock)."""
        after = floor_second(anchor - window)
        await self.walk(
            lambda page: self.source.list_created(after, page),
            report,
            start_at=start_at,
            status="any",
            late=True,
        )
