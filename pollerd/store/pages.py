"""What the sync writes and reads back: cursors (bookmarks), snapshots, events, and the page.

The promise rests on `commit_page`: it writes snapshots, events (unique `store:order_id:type`),
their delivery rows (unique `(event, channel)`) and the cursor in ONE transaction, so a crash
replays a page but never loses or doubles one. It returns what it wrote, by id, so the caller
counts exactly the events this commit recorded (not ones a replay or another process did).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from itertools import groupby
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, update

from pollerd.failpoints import armed, kill_point
from pollerd.model import Contact, Event, Snapshot, Target
from pollerd.store.contacts import seal_contacts
from pollerd.store.engine import Database, execute_rows, upsert
from pollerd.store.facts import DisputeFact, OrderFact, write_facts
from pollerd.store.meta import budget_key, put_meta
from pollerd.store.tables import CURSOR, DELIVERY, EVENT, SNAPSHOT, dt, ts

SNAPSHOT_CHUNK = 500  # ids per IN (...) read: far below SQLite's bound-parameter limit
_LAST = (
    select(EVENT.c.payload)
    .where(EVENT.c.store == bindparam("store"), EVENT.c.order_id == bindparam("order_id"))
    .order_by(EVENT.c.seq.desc())
    .limit(1)
)
"""`last_order`'s query, built once."""


@dataclass(frozen=True)
class Cursor:
    store: str
    updated_at: datetime
    order_id: str
    start_at: datetime
    last_hourly_sweep: datetime | None = None
    last_daily_sweep: datetime | None = None
    last_success: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None


@dataclass(frozen=True)
class PageResult:
    """What one `commit_page` wrote: the ids of the events it recorded (a replayed event is
    not among them) and of the deliveries it queued for them."""

    event_ids: tuple[str, ...] = ()
    delivery_ids: tuple[int, ...] = ()

    @property
    def new_events(self) -> int:
        return len(self.event_ids)

    @property
    def new_deliveries(self) -> int:
        return len(self.delivery_ids)


class Pages(Database):
    """The `Store` facade's sync side: cursors, snapshots, events, the page commit."""

    # ---- cursors -------------------------------------------------------------------------

    def cursor(self, store: str) -> Cursor | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(CURSOR).where(CURSOR.c.store == store)).mappings().first()
        if row is None:
            return None
        return Cursor(
            store=row["store"],
            updated_at=dt(row["updated_at"]),  # type: ignore[arg-type]
            order_id=row["order_id"],
            start_at=dt(row["start_at"]),  # type: ignore[arg-type]
            last_hourly_sweep=dt(row["last_hourly_sweep"]),
            last_daily_sweep=dt(row["last_daily_sweep"]),
            last_success=dt(row["last_success"]),
            last_error=row["last_error"],
            last_error_at=dt(row["last_error_at"]),
        )

    def init_cursor(self, store: str, start_at: datetime) -> Cursor:
        """First run: the bookmark starts at the store's start point (no flood of old orders)."""
        with self.tx() as conn:
            conn.execute(
                upsert(conn, CURSOR)
                .values(store=store, updated_at=ts(start_at), order_id="", start_at=ts(start_at))
                .on_conflict_do_nothing()
            )
        cursor = self.cursor(store)
        assert cursor is not None
        return cursor

    def set_start(self, store: str, start_at: datetime) -> Cursor:
        """Move a store's start point and bookmark to `start_at` (`pollerd cursor set`, with
        no daemon running): the next pass reads from there; sweeps, errors and snapshots stay,
        so nothing already announced is announced again."""
        with self.tx() as conn:
            moved = conn.execute(
                update(CURSOR)
                .where(CURSOR.c.store == store)
                .values(updated_at=ts(start_at), order_id="", start_at=ts(start_at))
            ).rowcount
        return self.cursor(store) if moved else self.init_cursor(store, start_at)  # type: ignore[return-value]

    def set_sweep(self, store: str, kind: str, when: datetime) -> None:
        column = {"hourly": "last_hourly_sweep", "daily": "last_daily_sweep"}[kind]
        with self.tx() as conn:
            conn.execute(update(CURSOR).where(CURSOR.c.store == store).values({column: ts(when)}))

    def record_poll(
        self, store: str, *, error: str | None, when: datetime, budget: float | None = None
    ) -> None:
        """The pass's outcome on the cursor and, when known, how much of the store's API rate
        budget was in use (0-1) for `pollerd status`, which runs in another process."""
        values: dict[str, Any] = (
            {"last_success": ts(when), "last_error": None}
            if error is None
            else {"last_error": error[:500], "last_error_at": ts(when)}
        )
        with self.tx() as conn:
            conn.execute(update(CURSOR).where(CURSOR.c.store == store).values(values))
            if budget is not None:
                put_meta(conn, budget_key(store), f"{budget:.4f}")

    # ---- snapshots and pages -------------------------------------------------------------

    def snapshots(self, store: str, order_ids: Iterable[str]) -> dict[str, Snapshot]:
        ids = list(order_ids)
        found: dict[str, Snapshot] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), SNAPSHOT_CHUNK):
                chunk = ids[start : start + SNAPSHOT_CHUNK]
                rows = conn.execute(
                    select(SNAPSHOT).where(
                        SNAPSHOT.c.store == store, SNAPSHOT.c.order_id.in_(chunk)
                    )
                ).mappings()
                for row in rows:
                    found[row["order_id"]] = Snapshot(
                        store=store,
                        order_id=row["order_id"],
                        status=row["status"],
                        updated_at=dt(row["updated_at"]),  # type: ignore[arg-type]
                        refunded_total=Decimal(row["refunded_total"]),
                        fired=frozenset(t for t in row["fired"].split(",") if t),
                    )
        return found

    def open_orders(self, store: str, *, finished: Iterable[str]) -> list[str]:
        """Ids of the orders pollerd knows as still open (announced, in no `finished` status),
        ascending as numbers. Dispute rows (`dispute:<id>`) are not orders."""
        query = select(SNAPSHOT.c.order_id).where(
            SNAPSHOT.c.store == store,
            SNAPSHOT.c.status.not_in(list(finished)),
            SNAPSHOT.c.fired != "",
            SNAPSHOT.c.order_id.not_like("dispute:%"),
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).scalars()
            return sorted(rows, key=lambda i: (len(i), i))

    def commit_page(
        self,
        store: str,
        snapshots: list[Snapshot],
        events: Sequence[tuple[Event, Sequence[str | Target]]],
        *,
        cursor: tuple[datetime, str] | None = None,
        late: bool = False,
        backfill: bool = False,
        contacts: Mapping[str, Contact | None] | None = None,
        facts: Sequence[OrderFact] = (),
        disputes: Sequence[DisputeFact] = (),
    ) -> PageResult:
        """One page, one transaction: snapshots + events + deliveries (+ the cursor), and the
        page's customer contacts (order id → contact) sealed when `pii_key` is set.

        An event id that already exists (a replayed page after a crash) inserts nothing and
        creates no deliveries: its rows were committed with it the first time. Without a key
        ring the contacts are dropped here, so no code path can write them in clear.
        `facts` and `disputes` are what the seller alert rules read of the page's orders and
        disputes (store/facts.py), written with their snapshots. A channel given as a `Target`
        with `quiet_until` is held by quiet hours: due then, not now (pollerd.routing).
        """
        if armed("commit_per_order") and len(snapshots) > 1:  # test-only: row 15's mutant
            for snap in snapshots:
                self.commit_page(
                    store, [snap], [(e, c) for e, c in events if e.order_id == snap.order_id]
                )
            snapshots, events = [], []
        now = time.time()
        # Replays and repeats inside one page (a bulk file may list an order twice) are decided
        # here as one row at a time would: the last snapshot of an order wins, the first event
        # of an id is the one recorded.
        snaps = {snap.order_id: snap for snap in snapshots}
        firsts: dict[str, tuple[Event, Sequence[str | Target]]] = {}
        for ev, channels in events:
            firsts.setdefault(ev.id, (ev, channels))
        with self.tx() as conn:
            if contacts and self.pii is not None:
                seal_contacts(conn, self.pii, store, contacts, now)
            if facts or disputes:
                write_facts(conn, store, facts, disputes, now)
            if snaps:
                rows = [_snapshot_row(store, s, now) for s in snaps.values()]
                execute_rows(conn, "snapshot", _snapshot_upsert(conn), rows)
            seqs: dict[str, int] = {}
            if firsts:
                rows = [_event_row(ev, late=late, backfill=backfill) for ev, _ in firsts.values()]
                seqs = {i: seq for i, seq in conn.execute(_event_insert(conn), rows)}
            event_ids = [i for i in firsts if i in seqs]
            deliveries = [
                _delivery_row(ev, seqs[ev.id], to, now)
                for ev, channels in (firsts[i] for i in event_ids)
                for to in channels
            ]
            delivery_ids: list[int] = []
            # One statement per run of rows with the same columns (a held row has one more),
            # so ids keep the order of the page as one insert per row gave them.
            for _, run in groupby(deliveries, key=len):
                found = conn.execute(_DELIVERY_INSERT, list(run)).scalars()
                delivery_ids.extend(sorted(int(i) for i in found))
            if cursor is not None:
                when, order_id = cursor
                # Never backwards: a replayed page or a sweep must not rewind the bookmark.
                conn.execute(
                    update(CURSOR)
                    .where(CURSOR.c.store == store, CURSOR.c.updated_at <= ts(when))
                    .values(updated_at=ts(when), order_id=order_id)
                )
            kill_point("before_page_commit")  # test-only (failpoints.py): every row, no commit
        kill_point("after_page_commit")
        return PageResult(tuple(event_ids), tuple(delivery_ids))

    # ---- events --------------------------------------------------------------------------

    def last_order(self, store: str, order_id: str) -> dict[str, Any] | None:
        """The order as pollerd last announced it (for events about orders the platform no
        longer has, e.g. deletions)."""
        with self.read() as conn:  # in a rules pass, on its connection (every alert asks)
            payload = conn.execute(_LAST, {"store": store, "order_id": order_id}).scalar()
        return json.loads(payload)["order"] if payload else None

    def late_events(self, store: str) -> int:
        """Events a sweep found that the fast path missed (the search index lagged)."""
        query = select(func.count()).where(EVENT.c.store == store, EVENT.c.late.is_(True))
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def events(self, store: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        query = select(EVENT).order_by(EVENT.c.seq).limit(limit)
        if store:
            query = query.where(EVENT.c.store == store)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]


# ---- the page's statements ----------------------------------------------------------------
# Built once per dialect and run with a list of rows (executemany): SQLAlchemy compiles a
# statement once and binds each row, where a statement built per row cost 10 times the insert.

_SNAPSHOT_SET = ("status", "updated_at", "refunded_total", "fired", "seen_at")
_DELIVERY_INSERT = insert(DELIVERY).returning(DELIVERY.c.id)
_BUILT: dict[tuple[str, str], Any] = {}


def _snapshot_upsert(conn: Connection) -> Any:
    key = ("snapshot", conn.dialect.name)
    if key not in _BUILT:
        stmt = upsert(conn, SNAPSHOT)
        _BUILT[key] = stmt.on_conflict_do_update(
            index_elements=["store", "order_id"],
            set_={name: stmt.excluded[name] for name in _SNAPSHOT_SET},
        )
    return _BUILT[key]


def _event_insert(conn: Connection) -> Any:
    """Rows of ids already recorded (a replayed page) insert nothing and return nothing: the
    ids returned are the events this commit recorded, with their sequence numbers."""
    key = ("event", conn.dialect.name)
    if key not in _BUILT:
        _BUILT[key] = (
            upsert(conn, EVENT).on_conflict_do_nothing().returning(EVENT.c.id, EVENT.c.seq)
        )
    return _BUILT[key]


def _snapshot_row(store: str, snap: Snapshot, now: float) -> dict[str, Any]:
    return {
        "store": store,
        "order_id": snap.order_id,
        "status": snap.status,
        "updated_at": ts(snap.updated_at),
        "refunded_total": str(snap.refunded_total),
        "fired": ",".join(sorted(snap.fired)),
        "seen_at": now,
    }


def _event_row(ev: Event, *, late: bool, backfill: bool) -> dict[str, Any]:
    return {
        "id": ev.id,
        "type": ev.type,
        "store": ev.store,
        "order_id": ev.order_id,
        "occurred_at": ts(ev.occurred_at),
        "detected_at": ts(ev.detected_at),
        "payload": ev.body(),
        "late": late,
        "backfill": backfill,
    }


def _delivery_row(ev: Event, seq: int, to: str | Target, now: float) -> dict[str, Any]:
    """Held by quiet hours: due at their end, and marked so; otherwise due now, and the
    column left out (a database before migration 5 has none)."""
    target = Target(to) if isinstance(to, str) else to
    row = {
        "event_seq": seq,
        "event_id": ev.id,
        "channel": target.channel,
        "store": ev.store,
        "order_id": ev.order_id,
        "state": "pending",
        "attempts": 0,
        "next_at": now,
        "created_at": now,
    }
    if target.quiet_until is not None:
        row.update(next_at=target.quiet_until, quiet_until=target.quiet_until)
    return row
