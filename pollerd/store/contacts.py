"""Customer data the store keeps, and how it stops keeping it: sealed contacts, their
rotation to a new key (`rekey`), and retention (`prune`: sealed contacts and rendered bodies).

A contact is written only when `pii_key` is set, each field sealed to its column and to its
`store:order_id`, so a blob copied to another order or column does not open.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection, delete, func, select, text

from pollerd.crypto import CryptoError, KeyRing
from pollerd.failpoints import kill_point
from pollerd.model import Contact
from pollerd.store.engine import Database, upsert
from pollerd.store.tables import CONTACT, CONTACT_FIELDS

PRUNE_BATCH = 1000
REKEY_BATCH = 500


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


_REKEY_BATCH = text(
    "SELECT id, store, order_id, key_id, name, email, phone, sealed_at FROM contact "
    "WHERE id > :after AND key_id != :current ORDER BY id LIMIT :batch"
)
# Guarded on key id and sealed_at: a row the daemon re-sealed since it was read keeps its value.
_REKEY_UPDATE = text(
    "UPDATE contact SET key_id = :key, name = :name, email = :email, phone = :phone "
    "WHERE id = :id AND key_id = :old_key AND sealed_at = :sealed_at"
)
_PRUNE_BODIES = """
    UPDATE delivery SET body = NULL WHERE id IN (
      SELECT id FROM delivery
      WHERE body IS NOT NULL AND state IN ('sent', 'dead')
        AND COALESCE(sent_at, next_at) < :cutoff
      LIMIT :batch)
    """
_PRUNE_CONTACTS = """
    DELETE FROM contact WHERE id IN (
      SELECT id FROM contact WHERE sealed_at < :cutoff LIMIT :batch)
    """


def seal_contacts(
    conn: Connection,
    ring: KeyRing,
    store: str,
    contacts: Mapping[str, Contact | None],
    now: float,
) -> None:
    """Upsert each order's sealed contact (sealed_at = now restarts its retention), inside the
    page's transaction; an order that no longer carries one (the platform redacted the
    customer) loses ours."""
    rows = [
        _sealed_row(ring, store, order_id, contact, now)
        for order_id, contact in contacts.items()
        if contact is not None
    ]
    gone = [order_id for order_id, contact in contacts.items() if contact is None]
    if rows:
        stmt = upsert(conn, CONTACT)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["store", "order_id"],
                set_={k: stmt.excluded[k] for k in ("key_id", *CONTACT_FIELDS, "sealed_at")},
            ),
            rows,
        )
    if gone:
        conn.execute(delete(CONTACT).where(CONTACT.c.store == store, CONTACT.c.order_id.in_(gone)))


class Contacts(Database):
    """The `Store` facade's customer data: reading, rotating and forgetting it."""

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
        bodies = self._in_batches(_PRUNE_BODIES, cutoff, batch)
        contacts = self._in_batches(_PRUNE_CONTACTS, cutoff, batch)
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
                kill_point("mid_rekey")  # test-only (failpoints.py): re-sealed, not committed
            if not rows:
                return report
            report.left = self._left(ring)
            if on_batch is not None:
                on_batch(report)

    def _left(self, ring: KeyRing) -> dict[int, int]:
        return {k: n for k, n in self.sealed_by_key().items() if k != ring.current}


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
