"""The cursor store: the few queries the rest of pollerd calls.

The promise rests on two of them. `commit_page` writes snapshots, events (unique
`store:order_id:type`), their delivery rows (unique `(event, channel)`) and the cursor in ONE
transaction, so a crash replays a page but never loses or doubles one. `due` hands the delivery
loop only rows whose earlier events for the same order and channel are done, so per order the
messages go out in the order things happened.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

from loguru import logger
from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError

from pollerd.config import sqlite_file
from pollerd.crypto import CryptoError, KeyRing
from pollerd.errors import ConfigError, StoreError
from pollerd.model import Contact, Event, Snapshot
from pollerd.secrets import Secret
from pollerd.store.damage import quick_check, translate
from pollerd.store.fault import classify
from pollerd.store.lock import require_folder
from pollerd.store.migrate import migrate
from pollerd.store.tables import (
    ChannelStateRow,
    ContactRow,
    CursorRow,
    DeliveryRow,
    EventRow,
    MetaRow,
    SnapshotRow,
)

CURSOR = CursorRow.__table__  # type: ignore[attr-defined]
SNAPSHOT = SnapshotRow.__table__  # type: ignore[attr-defined]
EVENT = EventRow.__table__  # type: ignore[attr-defined]
DELIVERY = DeliveryRow.__table__  # type: ignore[attr-defined]
CHANNEL_STATE = ChannelStateRow.__table__  # type: ignore[attr-defined]
META = MetaRow.__table__  # type: ignore[attr-defined]
CONTACT = ContactRow.__table__  # type: ignore[attr-defined]
CONTACT_FIELDS = ("name", "email", "phone")
PRUNE_BATCH = 1000
REKEY_BATCH = 500
SEALING_KEY = "daemon.sealing_key"  # meta: the key id the running daemon seals with


def ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


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
class Due:
    """A delivery the loop may send now."""

    id: int
    event_id: str
    channel: str
    attempts: int
    created_at: float
    body: str | None
    payload: dict[str, Any]
    store: str = ""
    order_id: str = ""


@dataclass(frozen=True)
class PageResult:
    new_events: int
    new_deliveries: int


class Pruned(NamedTuple):
    """What one `Store.prune` removed: rendered message bodies and sealed contacts."""

    bodies: int
    contacts: int


@dataclass
class Rekeyed:
    """Progress of `Store.rekey`: rows re-sealed so far, rows that did not open (named by
    place, never by content), and rows still sealed under each old key id."""

    resealed: int = 0
    failed: list[str] = field(default_factory=list)
    left: dict[int, int] = field(default_factory=dict)


class Store:
    def __init__(self, url: str, *, pii: KeyRing | None = None) -> None:
        self.url = url
        self.pii = pii
        """Seals customer contacts; None: contacts are dropped, no PII is written at all."""
        self.is_sqlite = url.startswith("sqlite")
        file = sqlite_file(url)
        if file is not None:  # SQLite would create the file, but never a missing folder
            require_folder(file.parent)
            _create_private(file)
            check_file(file)
        try:
            if self.is_sqlite:
                self.engine: Engine = create_engine(
                    url, connect_args={"timeout": 30, "check_same_thread": False}
                )
                event.listen(self.engine, "connect", _sqlite_pragmas)
                event.listen(self.engine, "handle_error", translate(self._where()))
                # Our own BEGIN IMMEDIATE: pysqlite's implicit BEGIN is deferred, which turns a
                # read-then-write page into a "database is locked" race between processes.
                event.listen(self.engine, "begin", _sqlite_begin)
            else:
                self.engine = _server_engine(url)
            migrate(self.engine.connect, self._where())
            with self.engine.connect() as conn:
                new = conn.execute(select(func.count()).select_from(CURSOR)).scalar() == 0
        except OperationalError as exc:
            raise classify(exc, self._where()) or StoreError(
                f"{self._where()}: cannot open database: {exc.orig}"
            ) from None
        if new:
            # Said loudly: a new database means a new baseline, and the changes made since the
            # old one (if there was one, at another path) will never alert. "New" is "no store
            # has a cursor yet", not "the file was just created": a `pollerd status` run first
            # creates the file, and the daemon after it must still say so.
            logger.warning(
                'new database {}: every store starts at its start point (start_from, "now" '
                "by default) and nothing that happened before it will alert; if you expected an "
                "existing database, stop pollerd and check [pollerd] database",
                self._where(),
            )

    def _where(self) -> str:
        return (
            self.url.split("///", 1)[-1] if self.is_sqlite else self.engine.url.render_as_string()
        )

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        """A write transaction (BEGIN IMMEDIATE on SQLite)."""
        with self.engine.connect() as conn:
            conn.info["immediate"] = True
            with conn.begin():
                yield conn

    def _insert_ignore(self, table: Any) -> Any:
        return (sqlite_insert if self.is_sqlite else pg_insert)(table)

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
                self._insert_ignore(CURSOR)
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
                key = f"budget:{store}"
                conn.execute(delete(META).where(META.c.key == key))
                conn.execute(META.insert().values(key=key, value=f"{budget:.4f}"))

    def due_count(self, now: float) -> int:
        """Deliveries waiting to go out now (index `delivery_due`: cheap enough for every tick)."""
        query = (
            select(func.count())
            .select_from(DELIVERY)
            .where(DELIVERY.c.state == "pending", DELIVERY.c.next_at <= now)
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def budget_used(self, store: str) -> float | None:
        """The rate budget share in use at the store's last recorded pass, if known."""
        value = self.meta(f"budget:{store}")
        return float(value) if value is not None else None

    # ---- snapshots and pages -------------------------------------------------------------

    def snapshots(self, store: str, order_ids: Iterable[str]) -> dict[str, Snapshot]:
        ids = list(order_ids)
        found: dict[str, Snapshot] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
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

    def commit_page(
        self,
        store: str,
        snapshots: list[Snapshot],
        events: list[tuple[Event, list[str]]],
        *,
        cursor: tuple[datetime, str] | None = None,
        late: bool = False,
        backfill: bool = False,
        contacts: Mapping[str, Contact | None] | None = None,
    ) -> PageResult:
        """One page, one transaction: snapshots + events + deliveries (+ the cursor), and the
        page's customer contacts (order id → contact) sealed when `pii_key` is set.

        An event id that already exists (a replayed page after a crash) inserts nothing and
        creates no deliveries: its rows were committed with it the first time. Without a key
        ring the contacts are dropped here, so no code path can write them in clear.
        """
        now = time.time()
        new_events = new_deliveries = 0
        with self.tx() as conn:
            if contacts and self.pii is not None:
                self._seal_contacts(conn, self.pii, store, contacts, now)
            for snap in snapshots:
                values = {
                    "store": store,
                    "order_id": snap.order_id,
                    "status": snap.status,
                    "updated_at": ts(snap.updated_at),
                    "refunded_total": str(snap.refunded_total),
                    "fired": ",".join(sorted(snap.fired)),
                    "seen_at": now,
                }
                stmt = self._insert_ignore(SNAPSHOT).values(**values)
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["store", "order_id"],
                        set_={
                            k: stmt.excluded[k] for k in values if k not in ("store", "order_id")
                        },
                    )
                )
            for ev, channels in events:
                seq = conn.execute(
                    self._insert_ignore(EVENT)
                    .values(
                        id=ev.id,
                        type=ev.type,
                        store=ev.store,
                        order_id=ev.order_id,
                        occurred_at=ts(ev.occurred_at),
                        detected_at=ts(ev.detected_at),
                        payload=ev.body(),
                        late=late,
                        backfill=backfill,
                    )
                    .on_conflict_do_nothing()
                    .returning(EVENT.c.seq)
                ).scalar()
                if seq is None:
                    continue
                new_events += 1
                for channel in channels:
                    conn.execute(
                        insert(DELIVERY).values(
                            event_seq=seq,
                            event_id=ev.id,
                            channel=channel,
                            store=ev.store,
                            order_id=ev.order_id,
                            state="pending",
                            attempts=0,
                            next_at=now,
                            created_at=now,
                        )
                    )
                    new_deliveries += 1
            if cursor is not None:
                when, order_id = cursor
                # Never backwards: a replayed page or a sweep must not rewind the bookmark.
                conn.execute(
                    update(CURSOR)
                    .where(CURSOR.c.store == store, CURSOR.c.updated_at <= ts(when))
                    .values(updated_at=ts(when), order_id=order_id)
                )
        return PageResult(new_events, new_deliveries)

    # ---- sealed contacts, retention, rotation ---------------------------------------------

    def _seal_contacts(
        self,
        conn: Connection,
        ring: KeyRing,
        store: str,
        contacts: Mapping[str, Contact | None],
        now: float,
    ) -> None:
        """Upsert each order's sealed contact (sealed_at = now restarts its retention); an
        order that no longer carries one (the platform redacted the customer) loses ours."""
        rows = [
            _sealed_row(ring, store, order_id, contact, now)
            for order_id, contact in contacts.items()
            if contact is not None
        ]
        gone = [order_id for order_id, contact in contacts.items() if contact is None]
        if rows:
            stmt = self._insert_ignore(CONTACT)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["store", "order_id"],
                    set_={k: stmt.excluded[k] for k in ("key_id", *CONTACT_FIELDS, "sealed_at")},
                ),
                rows,
            )
        if gone:
            conn.execute(
                delete(CONTACT).where(CONTACT.c.store == store, CONTACT.c.order_id.in_(gone))
            )

    def contact(self, store: str, order_id: str) -> Contact | None:
        """The order's full contact, opened; None when none is kept (no key when it was seen,
        or pruned). CryptoError when it does not open (key missing, or the row was altered)."""
        if self.pii is None:
            raise CryptoError("pii_key is not set: sealed contacts cannot be opened")
        query = select(CONTACT).where(CONTACT.c.store == store, CONTACT.c.order_id == order_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            return None
        place = f"{store}:{order_id}"
        opened = {
            col: None
            if row[col] is None
            else self.pii.open(bytes(row[col]), table="contact", column=col, row=place)
            for col in CONTACT_FIELDS
        }
        return Contact(**opened)

    def sealed_by_key(self) -> dict[int, int]:
        """key id → sealed contact rows (what `rekey` and `pollerd status` report)."""
        query = select(CONTACT.c.key_id, func.count()).group_by(CONTACT.c.key_id)
        with self.engine.connect() as conn:
            return {int(k): int(n) for k, n in conn.execute(query)}

    def prune(
        self, now: datetime | float, retention: timedelta, *, batch: int = PRUNE_BATCH
    ) -> Pruned:
        """Forget what retention allows no longer: the rendered body of every delivery sent
        (or dead) more than `retention` ago, and every sealed contact last received more than
        `retention` ago. Event rows, their masked payloads and the delivery rows themselves
        (state, attempts, times) stay. Batches of `batch` rows, one short transaction each, so
        a running daemon's page commits are never held up; cheap to call every few minutes
        (a partial index keeps the body scan to rows that still have one)."""
        cutoff = (now.timestamp() if isinstance(now, datetime) else now) - (
            retention.total_seconds()
        )
        bodies = self._in_batches(
            """
            UPDATE delivery SET body = NULL WHERE id IN (
              SELECT id FROM delivery
              WHERE body IS NOT NULL AND state IN ('sent', 'dead')
                AND COALESCE(sent_at, next_at) < :cutoff
              LIMIT :batch)
            """,
            cutoff,
            batch,
        )
        contacts = self._in_batches(
            """
            DELETE FROM contact WHERE id IN (
              SELECT id FROM contact WHERE sealed_at < :cutoff LIMIT :batch)
            """,
            cutoff,
            batch,
        )
        return Pruned(bodies, contacts)

    def _in_batches(self, sql: str, cutoff: float, batch: int) -> int:
        total = 0
        while True:
            with self.tx() as conn:
                count = int(conn.execute(text(sql), {"cutoff": cutoff, "batch": batch}).rowcount)
            total += count
            if count < batch:
                return total

    def rekey(
        self,
        ring: KeyRing,
        *,
        batch: int = REKEY_BATCH,
        on_batch: Callable[[Rekeyed], None] | None = None,
    ) -> Rekeyed:
        """Re-seal every contact not sealed with `ring`'s current key, `batch` rows per
        transaction. Resumable: a stopped run leaves committed batches done, and the next run
        picks up what is still under old ids. A row that does not open is skipped and named in
        `failed` (the rest still rotate). A row the daemon re-seals meanwhile (new sealed_at) is
        left alone: its fresh value must not be overwritten with the old one."""
        report = Rekeyed(left=self._left(ring))
        after = 0
        while True:
            with self.tx() as conn:
                page = {"after": after, "current": ring.current, "batch": batch}
                rows = conn.execute(_REKEY_BATCH, page).all()
                resealed: list[dict[str, Any]] = []
                for row in rows:
                    after = row.id
                    place = f"{row.store}:{row.order_id}"
                    try:
                        values = {
                            col: _reseal(ring, getattr(row, col), col, place)
                            for col in CONTACT_FIELDS
                        }
                    except CryptoError as exc:
                        report.failed.append(str(exc))
                        continue
                    guard = {"id": row.id, "old_key": row.key_id, "sealed_at": row.sealed_at}
                    resealed.append({**values, **guard, "key": ring.current})
                if resealed:
                    done = conn.execute(_REKEY_UPDATE, resealed).rowcount
                    report.resealed += int(done or 0)
            if not rows:
                return report
            report.left = self._left(ring)
            if on_batch is not None:
                on_batch(report)

    def _left(self, ring: KeyRing) -> dict[int, int]:
        return {k: n for k, n in self.sealed_by_key().items() if k != ring.current}

    # ---- deliveries ----------------------------------------------------------------------

    def due(self, now: float, limit: int, channels: Iterable[str]) -> list[Due]:
        """Pending rows of `channels` whose time has come, oldest first, skipping held channels
        and any row whose order still has an earlier pending event for the same channel, or an
        earlier dead letter: its later events are held behind it (never overtaking it) until
        `retry` releases them, in order."""
        names = sorted(channels)
        if not names:
            return []
        sql = text(
            """
            SELECT d.id, d.event_id, d.channel, d.attempts, d.created_at, d.body, e.payload,
                   d.store, d.order_id
            FROM delivery d JOIN event e ON e.seq = d.event_seq
            WHERE d.state = 'pending' AND d.next_at <= :now AND d.channel IN :names
              AND d.channel NOT IN (SELECT channel FROM channel_state WHERE broken)
              AND NOT EXISTS (
                SELECT 1 FROM delivery p
                WHERE p.channel = d.channel AND p.store = d.store AND p.order_id = d.order_id
                  AND p.state IN ('pending', 'dead') AND p.event_seq < d.event_seq)
            ORDER BY d.next_at, d.event_seq
            LIMIT :limit
            """
        ).bindparams(bindparam("names", expanding=True))
        with self.engine.connect() as conn:
            rows = conn.execute(sql, {"now": now, "limit": limit, "names": names}).all()
        return [_due(r) for r in rows]

    def backlog(
        self, channel: str, now: float, limit: int, *, skip: Iterable[int] = ()
    ) -> list[Due]:
        """The due rows of `channel` that may go out together in ONE message (a digest), in
        event order: a row is in only when every earlier pending row of its order on this
        channel is in too, so a digest never overtakes an event still backing off, a dead
        letter, nor one in `skip`. Its first row per order is exactly what `due` would hand
        out alone."""
        sql = text(
            """
            SELECT d.id, d.event_id, d.channel, d.attempts, d.created_at, d.body, e.payload,
                   d.store, d.order_id
            FROM delivery d JOIN event e ON e.seq = d.event_seq
            WHERE d.state = 'pending' AND d.next_at <= :now AND d.channel = :channel
              AND d.channel NOT IN (SELECT channel FROM channel_state WHERE broken)
              AND NOT EXISTS (
                SELECT 1 FROM delivery p
                WHERE p.channel = d.channel AND p.store = d.store AND p.order_id = d.order_id
                  AND p.event_seq < d.event_seq
                  AND (p.state = 'dead' OR (p.state = 'pending' AND p.next_at > :now)))
            ORDER BY d.event_seq
            LIMIT :limit
            """
        )
        with self.engine.connect() as conn:
            rows = conn.execute(sql, {"now": now, "limit": limit, "channel": channel}).all()
        skipped, blocked, out = set(skip), set(), []
        for row in rows:
            due = _due(row)
            order = (due.store, due.order_id)
            if order in blocked or due.id in skipped:
                blocked.add(order)
                continue
            out.append(due)
        return out

    def next_due_at(self, channels: Iterable[str]) -> float | None:
        """When the next row `due` would hand out becomes due (a row queued behind an earlier
        one of its order does not count: it waits for that one, not for the clock)."""
        names = sorted(channels)
        if not names:
            return None
        sql = text(
            """
            SELECT MIN(d.next_at) FROM delivery d
            WHERE d.state = 'pending' AND d.channel IN :names
              AND d.channel NOT IN (SELECT channel FROM channel_state WHERE broken)
              AND NOT EXISTS (
                SELECT 1 FROM delivery p
                WHERE p.channel = d.channel AND p.store = d.store AND p.order_id = d.order_id
                  AND p.state IN ('pending', 'dead') AND p.event_seq < d.event_seq)
            """
        ).bindparams(bindparam("names", expanding=True))
        with self.engine.connect() as conn:
            return conn.execute(sql, {"names": names}).scalar()

    def mark(
        self,
        delivery_id: int,
        *,
        state: str,
        attempts: int,
        body: str | None,
        next_at: float | None = None,
        error: str | None = None,
    ) -> None:
        values: dict[str, Any] = {"state": state, "attempts": attempts, "body": body}
        if state == "sent":
            values["sent_at"] = time.time()
            values["last_error"] = None
        if next_at is not None:
            values["next_at"] = next_at
        if error is not None:
            values["last_error"] = error[:1000]
        with self.tx() as conn:
            conn.execute(update(DELIVERY).where(DELIVERY.c.id == delivery_id).values(values))

    def mark_digest(self, delivery_ids: list[int], digest: str) -> int:
        """Every row a digest stood for is sent, in ONE transaction (all or none), with the
        digest's id; returns how many rows were still pending (and are now sent)."""
        if not delivery_ids:
            return 0
        values = {
            "state": "sent",
            "attempts": DELIVERY.c.attempts + 1,
            "sent_at": time.time(),
            "last_error": None,
            "digest": digest,
        }
        with self.tx() as conn:
            count = conn.execute(
                update(DELIVERY)
                .where(DELIVERY.c.id.in_(delivery_ids), DELIVERY.c.state == "pending")
                .values(values)
            ).rowcount
        return int(count or 0)

    def set_channel_broken(self, channel: str, reason: str | None) -> None:
        """Hold (reason given) or release (None) every delivery of a channel."""
        stmt = self._insert_ignore(CHANNEL_STATE).values(
            channel=channel, broken=reason is not None, reason=reason, since=time.time()
        )
        with self.tx() as conn:
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["channel"],
                    set_={
                        "broken": stmt.excluded.broken,
                        "reason": stmt.excluded.reason,
                        "since": stmt.excluded.since,
                    },
                )
            )

    def broken_channels(self) -> dict[str, str]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(CHANNEL_STATE.c.channel, CHANNEL_STATE.c.reason).where(
                    CHANNEL_STATE.c.broken
                )
            ).all()
        return {r[0]: r[1] or "" for r in rows}

    def expire(self, cutoff: float, why: str) -> list[Due]:
        """Dead-letter every pending row created before `cutoff` (its expiry has passed) that
        is not waiting for anything: not behind an earlier pending row or dead letter of its
        order (a held row does not expire while held), not in a held (broken) channel. Covers
        rows an older pollerd left due in years (`Retry-After: 99999999`). Returns them."""
        sql = text(
            """
            SELECT d.id, d.event_id, d.channel, d.attempts, d.created_at, d.body, e.payload,
                   d.store, d.order_id
            FROM delivery d JOIN event e ON e.seq = d.event_seq
            WHERE d.state = 'pending' AND d.created_at <= :cutoff
              AND d.channel NOT IN (SELECT channel FROM channel_state WHERE broken)
              AND NOT EXISTS (
                SELECT 1 FROM delivery p
                WHERE p.channel = d.channel AND p.store = d.store AND p.order_id = d.order_id
                  AND p.state IN ('pending', 'dead') AND p.event_seq < d.event_seq)
            """
        )
        # Read first, write only when something expired: this runs every few seconds and
        # must not take the write lock from the pages being committed for nothing.
        with self.engine.connect() as conn:
            rows = [_due(r) for r in conn.execute(sql, {"cutoff": cutoff}).all()]
        if not rows:
            return []
        with self.tx() as conn:
            conn.execute(
                update(DELIVERY)
                .where(DELIVERY.c.id.in_([r.id for r in rows]), DELIVERY.c.state == "pending")
                .values(state="dead", last_error=why[:1000])
            )
        return rows

    def deliveries(
        self, *, state: str | None = None, channel: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The outbox, newest first. `held_behind` is the id of the dead letter a pending row
        waits behind (its order's earlier event on this channel), else None."""
        dead = DELIVERY.alias("dead")
        held_behind = (
            select(func.min(dead.c.id))
            .where(
                dead.c.channel == DELIVERY.c.channel,
                dead.c.store == DELIVERY.c.store,
                dead.c.order_id == DELIVERY.c.order_id,
                dead.c.state == "dead",
                dead.c.event_seq < DELIVERY.c.event_seq,
                DELIVERY.c.state == "pending",
            )
            .scalar_subquery()
            .label("held_behind")
        )
        query = (
            select(
                DELIVERY.c.id,
                DELIVERY.c.event_id,
                DELIVERY.c.channel,
                DELIVERY.c.state,
                DELIVERY.c.attempts,
                DELIVERY.c.next_at,
                DELIVERY.c.created_at,
                DELIVERY.c.sent_at,
                DELIVERY.c.last_error,
                DELIVERY.c.digest,
                held_behind,
            )
            .order_by(DELIVERY.c.id.desc())
            .limit(limit)
        )
        if state:
            query = query.where(DELIVERY.c.state == state)
        if channel:
            query = query.where(DELIVERY.c.channel == channel)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def retry(self, *, ids: list[int] | None = None, channel: str | None = None) -> int:
        """Give dead (and held) deliveries a fresh set of attempts, due now. The events held
        behind a retried dead letter are released with it: they go out after it, in order
        (`due` hands out one row per order at a time), and their expiry clock restarts."""
        where = [DELIVERY.c.state.in_(["dead", "pending"])]
        if ids:
            where.append(DELIVERY.c.id.in_(ids))
        if channel:
            where.append(DELIVERY.c.channel == channel)
        if not ids and not channel:
            where.append(DELIVERY.c.state == "dead")
        now = time.time()
        release = text(
            """
            UPDATE delivery SET created_at = :now
            WHERE state = 'pending' AND EXISTS (
              SELECT 1 FROM delivery r
              WHERE r.id IN :ids AND r.channel = delivery.channel AND r.store = delivery.store
                AND r.order_id = delivery.order_id AND r.event_seq < delivery.event_seq)
            """
        ).bindparams(bindparam("ids", expanding=True))
        with self.tx() as conn:
            retried = [int(i) for i in conn.execute(select(DELIVERY.c.id).where(*where)).scalars()]
            count = conn.execute(
                update(DELIVERY)
                .where(*where)
                .values(state="pending", attempts=0, next_at=now, created_at=now)
            ).rowcount
            if retried:
                conn.execute(release, {"now": now, "ids": retried})
        if channel:
            self.set_channel_broken(channel, None)
        return int(count or 0)

    def counts(self) -> dict[str, dict[str, int]]:
        """channel → {pending, retrying, sent, dead} for `pollerd status`."""
        sql = text(
            "SELECT channel, state, attempts > 0, COUNT(*) FROM delivery "
            "GROUP BY channel, state, attempts > 0"
        )
        out: dict[str, dict[str, int]] = {}
        with self.engine.connect() as conn:
            for channel, state, retried, count in conn.execute(sql):
                key = "retrying" if state == "pending" and retried else state
                bucket = out.setdefault(
                    channel, {"pending": 0, "retrying": 0, "sent": 0, "dead": 0}
                )
                bucket[key] = bucket.get(key, 0) + int(count)
        return out

    def last_order(self, store: str, order_id: str) -> dict[str, Any] | None:
        """The order as pollerd last announced it (for events about orders the platform no
        longer has, e.g. deletions)."""
        query = (
            select(EVENT.c.payload)
            .where(EVENT.c.store == store, EVENT.c.order_id == order_id)
            .order_by(EVENT.c.seq.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            payload = conn.execute(query).scalar()
        return json.loads(payload)["order"] if payload else None

    def recent_sends(self, channel: str, since: float) -> list[float]:
        """When this channel's messages went out since `since` (wall clock): one entry per
        message, so the rows merged into one digest count once."""
        query = select(DELIVERY.c.sent_at, DELIVERY.c.digest).where(
            DELIVERY.c.channel == channel,
            DELIVERY.c.state == "sent",
            DELIVERY.c.sent_at >= since,
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        singles = [at for at, digest in rows if digest is None]
        digests = {digest: at for at, digest in rows if digest is not None}
        return sorted([*singles, *digests.values()])

    def late_events(self, store: str) -> int:
        """Events a sweep found that the fast path missed (the search index lagged)."""
        query = select(func.count()).where(EVENT.c.store == store, EVENT.c.late.is_(True))
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def meta(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(META.c.value).where(META.c.key == key)).scalar()

    def metas(self, prefix: str) -> dict[str, str]:
        """Every meta entry whose key starts with `prefix` (e.g. the suppression list)."""
        matching = META.c.key.startswith(prefix, autoescape=True)
        query = select(META.c.key, META.c.value).where(matching)
        with self.engine.connect() as conn:
            return {str(key): str(value) for key, value in conn.execute(query)}

    def set_meta(self, key: str, value: str | None) -> None:
        """Small durable facts outside the tables' meaning, e.g. a running bulk operation id."""
        with self.tx() as conn:
            conn.execute(delete(META).where(META.c.key == key))
            if value is not None:
                conn.execute(META.insert().values(key=key, value=value))

    def set_sealing(self, running: bool) -> None:
        """Record (`pollerd run`/`once` at start) or clear (at a clean stop) the key id this
        process seals new contacts with: a reload keeps the key ring, so only the process knows
        which key it uses, and `rekey` must not call that key droppable (issue 11)."""
        value = (str(self.pii.current) if self.pii else "none") if running else None
        self.set_meta(SEALING_KEY, value)

    def sealing_key(self) -> int | str | None:
        """The key id the process holding the state directory recorded: an int, None when it
        seals nothing (no pii_key), "unknown" when nothing was recorded (a crash leaves the
        record behind, so ask `StateLock.holder` first whether that process still runs)."""
        value = self.meta(SEALING_KEY)
        if value is None:
            return "unknown"
        return None if value == "none" else int(value)

    def events(self, store: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        query = select(EVENT).order_by(EVENT.c.seq).limit(limit)
        if store:
            query = query.where(EVENT.c.store == store)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]


def _due(row: Any) -> Due:
    return Due(row[0], row[1], row[2], row[3], row[4], row[5], json.loads(row[6]), row[7], row[8])


def _server_engine(url: str) -> Engine:
    """PostgreSQL's engine. Its driver is an extra (`pollerd[postgres]`): without it SQLAlchemy
    fails on first use with an ImportError deep in its dialect, which would read as a crash."""
    try:
        return create_engine(url, pool_pre_ping=True)
    except ImportError as exc:
        driver = exc.name or "psycopg"
        raise ConfigError(
            "pollerd.database",
            f"this URL needs the {driver} driver, which is not installed",
            "pip install 'pollerd[postgres]' (psycopg 3) and write the URL as "
            "postgresql+psycopg://USER@HOST/DATABASE",
        ) from None


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL + synchronous=FULL: committed pages and "sent" marks survive power loss too
    # (measured 0.19 ms a commit, research B.5); busy_timeout rides out a concurrent `status`.
    dbapi_conn.isolation_level = None  # we issue BEGIN IMMEDIATE ourselves
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    # Pruned bodies and deleted sealed rows are overwritten with zeros instead of lingering in
    # the file's free space (Debian builds SQLite with this on already; python.org ones do not).
    cur.execute("PRAGMA secure_delete=ON")
    cur.close()


def check_file(file: Path) -> None:
    """`PRAGMA quick_check` before anything else reads or writes the file (damage.py says
    why). Its own plain connection: the engine's connect hook already writes (journal_mode)."""
    try:
        conn = sqlite3.connect(file, timeout=30)
    except sqlite3.Error:
        return  # cannot open at all (permissions, say): the engine's open says why
    try:
        quick_check(conn, file)
    except sqlite3.OperationalError:
        pass  # locked or unreadable rather than damaged: the engine's open says why
    finally:
        conn.close()


def _create_private(file: Path) -> None:
    """Create a missing database file 0600 before SQLite does (it would make it 0644 under the
    usual umask): it holds masked customer data and rendered bodies. SQLite gives `-wal` and
    `-shm` the database file's mode, so they follow. An existing file keeps its mode: its
    owner may have widened it on purpose (a backup group, say). An empty file is an empty
    database to SQLite."""
    with suppress(OSError):  # e.g. a read-only folder: SQLite's own open says so, in its words
        os.close(os.open(file, os.O_RDWR | os.O_CREAT, 0o600))


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("immediate") else "BEGIN")


_REKEY_BATCH = text(
    "SELECT id, store, order_id, key_id, name, email, phone, sealed_at FROM contact "
    "WHERE id > :after AND key_id != :current ORDER BY id LIMIT :batch"
)
# Guarded on key id and sealed_at: a row the daemon re-sealed since it was read keeps its value.
_REKEY_UPDATE = text(
    "UPDATE contact SET key_id = :key, name = :name, email = :email, phone = :phone "
    "WHERE id = :id AND key_id = :old_key AND sealed_at = :sealed_at"
)


def _reseal(ring: KeyRing, blob: bytes | None, column: str, place: str) -> bytes | None:
    if blob is None:
        return None
    plain = ring.open(bytes(blob), table="contact", column=column, row=place)
    return ring.seal(plain, table="contact", column=column, row=place)


def _sealed_row(
    ring: KeyRing, store: str, order_id: str, contact: Contact, now: float
) -> dict[str, Any]:
    """The `contact` row of one order: each field sealed to its column and to `store:order_id`,
    so a blob copied to another order or column does not open."""
    place = f"{store}:{order_id}"
    row: dict[str, Any] = {
        "store": store,
        "order_id": order_id,
        "key_id": ring.current,
        "sealed_at": now,
    }
    for col in CONTACT_FIELDS:
        value = getattr(contact, col)
        row[col] = (
            None if value is None else ring.seal(value, table="contact", column=col, row=place)
        )
    return row


def open_store(url: str, *, pii_key: Secret | str | None = None) -> Store:
    """The store at `url`; with `pii_key` (the `[pollerd] pii_key` secret) customer contacts
    are kept sealed, without it they are not kept at all."""
    if pii_key is None:
        return Store(url)
    text_key = pii_key.get() if isinstance(pii_key, Secret) else pii_key
    try:
        ring = KeyRing.parse(text_key)
    except CryptoError as exc:  # config validation refuses these first; never restart-loop
        problem = str(exc).removeprefix("pii_key").lstrip(": ")
        raise ConfigError("pollerd.pii_key", problem) from None
    return Store(url, pii=ring)
