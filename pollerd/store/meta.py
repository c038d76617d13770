"""Small durable facts outside the tables' meaning, kept as `meta` rows (key → text).

What lives here, by key: `schema_version` (migrate.py), `budget:<store>` (the rate budget in use
at the last pass, for `pollerd status` in another process), `daemon.sealing_key`, and the rows
other modules own by prefix: `failing:` (store failure episodes), `backfill:` (resume points),
the suppression list (unsubscribe.py), quarantined orders, a running bulk operation id.
"""

from __future__ import annotations

from sqlalchemy import Connection, bindparam, delete, select

from pollerd.store.engine import Database
from pollerd.store.tables import META

SEALING_KEY = "daemon.sealing_key"  # meta: the key id the running daemon seals with
_VALUE = select(META.c.value).where(META.c.key == bindparam("key"))
"""Built once: the seller rules read a few meta rows every pass (bench/rules.py)."""


def put_meta(conn: Connection, key: str, value: str | None) -> None:
    """Set (or, with None, remove) one meta row inside the caller's transaction."""
    conn.execute(delete(META).where(META.c.key == key))
    if value is not None:
        conn.execute(META.insert().values(key=key, value=value))


class Meta(Database):
    """The `Store` facade's meta rows."""

    def meta(self, key: str) -> str | None:
        with self.read() as conn:
            return conn.execute(_VALUE, {"key": key}).scalar()

    def metas(self, prefix: str) -> dict[str, str]:
        """Every meta entry whose key starts with `prefix` (e.g. the suppression list)."""
        matching = META.c.key.startswith(prefix, autoescape=True)
        query = select(META.c.key, META.c.value).where(matching)
        with self.engine.connect() as conn:
            return {str(key): str(value) for key, value in conn.execute(query)}

    def set_meta(self, key: str, value: str | None) -> None:
        """Small durable facts outside the tables' meaning, e.g. a running bulk operation id."""
        with self.tx() as conn:
            put_meta(conn, key, value)

    def budget_used(self, store: str) -> float | None:
        """The rate budget share in use at the store's last recorded pass, if known."""
        value = self.meta(budget_key(store))
        return float(value) if value is not None else None

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


def budget_key(store: str) -> str:
    return f"budget:{store}"
