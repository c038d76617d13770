"""Opening the database: the file, the engine, the write transaction, the schema.

SQLite is the default and the one with the sharp edges handled here: the file is created
private, checked for damage before anything touches it, opened in WAL with full sync, and
every write transaction is BEGIN IMMEDIATE. PostgreSQL needs only its driver. Either way the
migrations run before the first query, and a database with no cursor yet says so loudly.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from loguru import logger
from sqlalchemy import Connection, Engine, Table, create_engine, event, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError

from pollerd import failpoints
from pollerd.config import sqlite_file
from pollerd.crypto import KeyRing
from pollerd.errors import ConfigError, StoreError
from pollerd.failpoints import armed
from pollerd.store.damage import quick_check, translate
from pollerd.store.fault import classify
from pollerd.store.lock import require_folder
from pollerd.store.migrate import migrate
from pollerd.store.tables import CURSOR

_PINNED: ContextVar[tuple[Database, Connection] | None] = ContextVar("pinned", default=None)
"""The connection `Database.reading` holds for its run of reads, with the database it is of."""


class Database:
    """An open, migrated database: the engine and the write transaction every part of the
    `Store` facade (pages, outbox, contacts, meta) writes through."""

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
    def reading(self) -> Iterator[None]:
        """One connection and one read transaction for a run of small reads (a pass of the
        seller rules): each read otherwise checks out a pooled connection and begins and ends
        a transaction of its own, which costs more than an indexed query (bench/rules.py).
        On SQLite the reads inside see one snapshot (PostgreSQL: each its latest commits).
        Writes still go through `tx`, on a connection of their own; a read after a write
        inside may not see it. SQLite must be in WAL mode (it is: `_sqlite_pragmas`), where
        the read transaction never blocks that writer."""
        pinned = _PINNED.get()
        if pinned is not None and pinned[0] is self:
            yield
            return
        with self.engine.connect() as conn:
            token = _PINNED.set((self, conn))
            try:
                yield
            finally:
                _PINNED.reset(token)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection to read with: the one `reading` holds, else a new one."""
        pinned = _PINNED.get()
        if pinned is not None and pinned[0] is self:
            yield pinned[1]
            return
        with self.engine.connect() as conn:
            yield conn

    def analyze(self) -> None:
        """Refresh the query planner's statistics (`ANALYZE`). PostgreSQL's autovacuum does it
        a while after a bulk load; until then it plans the rules' queries for the tables as
        they were (bench/rules.py calls this after its fill, as a live database would be)."""
        with self.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        """A write transaction (BEGIN IMMEDIATE on SQLite). The mark is taken off again: it
        lives in the pooled connection's `info`, and a read left with it would take the write
        lock too, for as long as it lasts (`reading` would hold it for a whole pass)."""
        with self.engine.connect() as conn:
            conn.info["immediate"] = True
            try:
                with conn.begin():
                    yield conn
            finally:
                conn.info.pop("immediate", None)


_COMPILED: dict[tuple[str, str, tuple[str, ...]], Any] = {}


def execute_rows(conn: Connection, name: str, stmt: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """`conn.execute(stmt, rows)` (executemany) without SQLAlchemy's per-row parameter work:
    the statement is compiled once per dialect and column set (cached under `name`, which
    must always name the same statement) and the driver binds the rows' plain values. That
    per-row work was half the cost of a backfill's row writes (12 µs a row against 5 µs).
    Only for values both drivers take as they are: str, int, float, bool, bytes, None."""
    if not rows:
        return
    columns = tuple(rows[0])
    key = (name, conn.dialect.name, columns)
    compiled = _COMPILED.get(key)
    if compiled is None:
        compiled = _COMPILED[key] = stmt.compile(dialect=conn.dialect, column_keys=list(columns))
    order = compiled.positiontup  # qmark (SQLite): tuples in order; pyformat: the dicts
    params = [tuple(row[k] for k in order) for row in rows] if order else list(rows)
    conn.exec_driver_sql(compiled.string, params)


def upsert(conn: Connection, table: Table) -> Any:
    """INSERT with ON CONFLICT, in the connection's dialect (both spell it the same way)."""
    return (sqlite_insert if conn.dialect.name == "sqlite" else pg_insert)(table)


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
    # `busy_timeout:n` (test-only, failpoints.py): give up on a held lock after n s, not 30
    cur.execute(f"PRAGMA busy_timeout={failpoints.value('busy_timeout') * 1000 or 30000}")
    cur.execute("PRAGMA foreign_keys=ON")
    # Pruned bodies and deleted sealed rows are overwritten with zeros instead of lingering in
    # the file's free space (Debian builds SQLite with this on already; python.org ones do not).
    cur.execute("PRAGMA secure_delete=ON")
    if armed("disk_full"):  # test-only (failpoints.py): the file may hardly grow, SQLITE_FULL
        pages = int(cur.execute("PRAGMA page_count").fetchone()[0]) + failpoints.value("disk_full")
        cur.execute(f"PRAGMA max_page_count = {pages}")
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
