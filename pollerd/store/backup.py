"""`pollerd backup PATH`: a consistent copy of the SQLite database, safe while pollerd runs.

`cp` of a live WAL database can copy the main file and its -wal from different moments, which
is exactly the damage `quick_check` then refuses. SQLite's online backup API copies every page
inside one read transaction instead, so the copy is the database as of one instant, and the
daemon keeps writing meanwhile (WAL readers do not block the writer).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pollerd.config import sqlite_file
from pollerd.errors import PollerdError, StoreError
from pollerd.store.damage import quick_check


class NotSQLite(PollerdError):
    """`backup` on a PostgreSQL URL: usage, exit 2 (its own tools do it better)."""

    exit_code = 2


@dataclass(frozen=True)
class BackedUp:
    source: Path
    target: Path
    size: int


def backup(url: str, target: Path) -> BackedUp:
    """Copy the database at `url` to `target` (a new file, or a folder to put a dated one in).
    The copy is created 0600 (it holds what the database holds), checked with quick_check, and
    appears under its name only when complete: a half-written backup never looks like one."""
    file = sqlite_file(url)
    if file is None:
        raise NotSQLite(
            "backup copies SQLite databases; for PostgreSQL use its own tool, e.g. "
            "`pg_dump --format=custom --file=pollerd.dump DBNAME` (restore: pg_restore)"
        )
    if not file.is_file():
        raise StoreError(f"no database at {file}: nothing to back up (check [pollerd] database)")
    if target.is_dir():
        target = target / f"{file.stem}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}{file.suffix}"
    if target.exists():
        raise StoreError(f"{target} exists; pick a new name or a folder (backup never overwrites)")
    partial = target.with_name(f".{target.name}.partial")
    try:
        _copy(file, partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(target)
    return BackedUp(file, target, target.stat().st_size)


def _copy(file: Path, partial: Path, target: Path) -> None:
    source = sqlite3.connect(file, timeout=30)
    try:
        quick_check(source, file)  # a copy of a damaged file would be damaged too
        try:
            os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
            copy = sqlite3.connect(partial)
        except OSError as exc:
            raise StoreError(f"cannot write {target}: {exc.strerror}") from None
        try:
            source.backup(copy)  # all pages in one step: one consistent instant
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal
            quick_check(copy, target)
        except sqlite3.Error as exc:
            raise StoreError(f"backup of {file} to {target} failed: {exc}") from None
        finally:
            copy.close()
    finally:
        source.close()
    with open(partial, "rb") as done:
        os.fsync(done.fileno())
