"""Numbered schema migrations, run at start inside one transaction each.

`meta.schema_version` records the last applied number. A database newer than this code is
refused (downgrades would silently drop columns the newer version relies on).

Several processes may open a new database at once (`pollerd run` starting while `status`
runs; two hosts on one PostgreSQL). Every migration transaction first takes the database's
lock and re-reads the version, so each migration is applied once and the others find it done.
Without it they failed with `relation "cursor" already exists` (PostgreSQL: 6 of 12 processes,
3 opening each new database at once) or `table cursor already exists` (SQLite: 4 of 30).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, text

from pollerd.errors import DamagedDatabase, StoreError
from pollerd.failpoints import kill_point


def _m1_initial(conn: Connection) -> None:
    serial = (
        "INTEGER PRIMARY KEY AUTOINCREMENT"
        if conn.dialect.name == "sqlite"
        else "BIGSERIAL PRIMARY KEY"
    )
    ddl = f"""
    CREATE TABLE cursor (
        store TEXT PRIMARY KEY, updated_at DOUBLE PRECISION NOT NULL,
        order_id TEXT NOT NULL DEFAULT '', start_at DOUBLE PRECISION NOT NULL,
        last_hourly_sweep DOUBLE PRECISION, last_daily_sweep DOUBLE PRECISION,
        last_success DOUBLE PRECISION, last_error TEXT, last_error_at DOUBLE PRECISION);
    CREATE TABLE snapshot (
        store TEXT NOT NULL, order_id TEXT NOT NULL, status TEXT NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL, refunded_total TEXT NOT NULL DEFAULT '0',
        fired TEXT NOT NULL DEFAULT '', seen_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (store, order_id));
    CREATE TABLE event (
        seq {serial}, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL, store TEXT NOT NULL,
        order_id TEXT NOT NULL, occurred_at DOUBLE PRECISION NOT NULL,
        detected_at DOUBLE PRECISION NOT NULL, payload TEXT NOT NULL,
        late BOOLEAN NOT NULL DEFAULT FALSE, backfill BOOLEAN NOT NULL DEFAULT FALSE);
    CREATE INDEX event_store_order ON event (store, order_id);
    CREATE TABLE delivery (
        id {serial}, event_seq BIGINT NOT NULL REFERENCES event (seq),
        event_id TEXT NOT NULL, channel TEXT NOT NULL, store TEXT NOT NULL,
        order_id TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0, next_at DOUBLE PRECISION NOT NULL,
        created_at DOUBLE PRECISION NOT NULL, sent_at DOUBLE PRECISION, last_error TEXT,
        body TEXT, UNIQUE (event_id, channel));
    CREATE INDEX delivery_due ON delivery (state, next_at);
    CREATE INDEX delivery_order ON delivery (channel, store, order_id, state, event_seq);
    CREATE TABLE channel_state (
        channel TEXT PRIMARY KEY, broken BOOLEAN NOT NULL DEFAULT FALSE, reason TEXT,
        since DOUBLE PRECISION);
    """
    for statement in ddl.split(";"):
        if statement.strip():
            conn.execute(text(statement))


def _m2_delivery_digest(conn: Connection) -> None:
    # The digest a delivery went out in (NULL: sent on its own, or not sent yet). Nullable with
    # no default, so on SQLite and PostgreSQL alike the ALTER rewrites no existing row.
    conn.execute(text("ALTER TABLE delivery ADD COLUMN digest TEXT"))
    conn.execute(text("CREATE INDEX delivery_digest ON delivery (digest)"))


def _m3_sealed_contact(conn: Connection) -> None:
    # The full customer contact of an order, sealed (AES-256-GCM, crypto.py) and only when
    # pii_key is set. key_id repeats the blobs' key id so `rekey` and `status` count rows per key
    # without opening anything; sealed_at is the retention clock. The partial index keeps
    # `prune` to the few deliveries that still hold a rendered body (sent rows within retention
    # and pending ones), however long the outbox history grows.
    sqlite = conn.dialect.name == "sqlite"
    serial = "INTEGER PRIMARY KEY AUTOINCREMENT" if sqlite else "BIGSERIAL PRIMARY KEY"
    blob = "BLOB" if sqlite else "BYTEA"
    for statement in (
        f"""CREATE TABLE contact (
            id {serial}, store TEXT NOT NULL, order_id TEXT NOT NULL,
            key_id INTEGER NOT NULL, name {blob}, email {blob}, phone {blob},
            sealed_at DOUBLE PRECISION NOT NULL, UNIQUE (store, order_id))""",
        "CREATE INDEX contact_key ON contact (key_id)",
        "CREATE INDEX contact_sealed ON contact (sealed_at)",
        "CREATE INDEX delivery_body_kept ON delivery (state, sent_at) WHERE body IS NOT NULL",
    ):
        conn.execute(text(statement))


def _m4_rule_facts(conn: Connection) -> None:
    # What the seller alert rules read (pollerd.alerts): per order its age, total, whether the
    # platform reads it as unpaid or cancelled, the blind indexes of its buyer, and per dispute
    # its evidence deadline. The partial indexes hold only the rows a pass looks at (open
    # unpaid orders, disputes awaiting evidence), so a pass costs the same with a year of
    # history. New tables only: no existing row is rewritten.
    sqlite = conn.dialect.name == "sqlite"
    blob = "BLOB" if sqlite else "BYTEA"
    for statement in (
        """CREATE TABLE order_fact (
            store TEXT NOT NULL, order_id TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL,
            total TEXT NOT NULL, amount DOUBLE PRECISION NOT NULL, currency TEXT NOT NULL,
            unpaid BOOLEAN NOT NULL, cancelled BOOLEAN NOT NULL,
            written_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (store, order_id))""",
        "CREATE INDEX order_fact_created ON order_fact (store, created_at, cancelled)",
        "CREATE INDEX order_fact_written ON order_fact (store, written_at)",
        "CREATE INDEX order_fact_unpaid ON order_fact (store, created_at) WHERE unpaid",
        f"""CREATE TABLE blind_index (
            store TEXT NOT NULL, order_id TEXT NOT NULL, kind TEXT NOT NULL,
            digest {blob} NOT NULL, created_at DOUBLE PRECISION NOT NULL,
            seen_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (store, order_id, kind))""",
        "CREATE INDEX blind_index_digest ON blind_index (store, kind, digest, created_at)",
        "CREATE INDEX blind_index_seen ON blind_index (store, seen_at)",
        """CREATE TABLE dispute_fact (
            store TEXT NOT NULL, dispute_id TEXT NOT NULL, order_id TEXT NOT NULL,
            status TEXT NOT NULL, awaiting BOOLEAN NOT NULL, amount TEXT NOT NULL,
            currency TEXT NOT NULL, reason TEXT, evidence_due_by DOUBLE PRECISION,
            seen_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (store, dispute_id))""",
        "CREATE INDEX dispute_fact_due ON dispute_fact (store, evidence_due_by) WHERE awaiting",
    ):
        conn.execute(text(statement))


def _m5_numbers_quiet_reports(conn: Connection) -> None:
    # Issue 14's second half. order_fact.number: the number a seller knows an order by (a burst
    # lists numbers, not ids). dispute_fact.opened_at/closed_at: the weekly report's chargebacks
    # opened, won and lost. delivery.quiet_until: a delivery held by a route's quiet hours until
    # then (NULL: never held); held rows go out together as a digest. event_type_time: the
    # reports count events of a type in a day or a week without reading the whole history.
    # Nullable columns with no default: on SQLite and PostgreSQL alike no existing row is
    # rewritten.
    for statement in (
        "ALTER TABLE order_fact ADD COLUMN number TEXT",
        "ALTER TABLE dispute_fact ADD COLUMN opened_at DOUBLE PRECISION",
        "ALTER TABLE dispute_fact ADD COLUMN closed_at DOUBLE PRECISION",
        "ALTER TABLE delivery ADD COLUMN quiet_until DOUBLE PRECISION",
        "CREATE INDEX event_type_time ON event (type, occurred_at)",
    ):
        conn.execute(text(statement))


MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "initial schema", _m1_initial),
    (2, "delivery.digest", _m2_delivery_digest),
    (3, "sealed contact, retention index", _m3_sealed_contact),
    (4, "seller rule facts: order_fact, blind_index, dispute_fact", _m4_rule_facts),
    (5, "order numbers, dispute dates, quiet hours, event index", _m5_numbers_quiet_reports),
]
LATEST = MIGRATIONS[-1][0]


def current_version(conn: Connection) -> int:
    conn.execute(
        text("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    )
    row = conn.execute(text("SELECT value FROM meta WHERE key = 'schema_version'")).first()
    return int(row[0]) if row else 0


MIGRATE_LOCK = 0x706F6C6C657264  # "pollerd": PostgreSQL's advisory lock key for migrations


@contextmanager
def _transaction(
    engine_connect: Callable[[], Connection], *, write: bool = True
) -> Iterator[Connection]:
    """One migration transaction, holding the database's migration lock until it ends:
    PostgreSQL's advisory lock; on SQLite the write lock (BEGIN IMMEDIATE, which waits out
    another writer; a deferred one that read first fails at once with "database is locked").
    `write=False` (reading the version) takes no SQLite lock: a read-only file still opens."""
    with engine_connect() as conn:
        if write and conn.dialect.name == "sqlite":
            conn.info["immediate"] = True  # read by the store's "begin" listener
        try:
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATE_LOCK})
                yield conn
        finally:
            conn.info.pop("immediate", None)


def migrate(engine_connect: Callable[[], Connection], where: str) -> int:
    """Apply every missing migration; returns the resulting version."""
    with _transaction(engine_connect, write=False) as conn:
        version = current_version(conn)
    if version > LATEST:
        raise StoreError(
            f"{where}: schema version {version} is newer than this pollerd ({LATEST}); "
            "upgrade pollerd or point database at another file"
        )
    for number, title, apply in MIGRATIONS:
        if number <= version:
            continue
        try:
            with _transaction(engine_connect) as conn:
                version = current_version(conn)  # another process may have applied it since
                if number <= version:
                    continue
                apply(conn)
                kill_point("mid_migration")  # test-only (failpoints.py): applied, not committed
                conn.execute(
                    text(
                        "INSERT INTO meta (key, value) VALUES ('schema_version', :v) "
                        "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
                    ),
                    {"v": str(number)},
                )
        except DamagedDatabase:
            raise  # its own line says how to restore; "migration failed" would mislead
        except Exception as exc:
            raise StoreError(f"{where}: migration {number} ({title}) failed: {exc}") from exc
        version = number
    return version
