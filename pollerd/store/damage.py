"""A damaged SQLite file: found at start, named in one line, never worked around.

A torn write, a bad disk or a copy taken mid-write leaves pages SQLite cannot read. Left alone,
such a file fails at random later (a traceback per query), or worse reads short: a listing
silently misses rows, a poll misses snapshots and alerts again what it already sent. So every
command that opens the database runs `PRAGMA quick_check` first (linear in the file, about
0.1 s per 100 MB here: see README "Backups") and stops with `DamagedDatabase`, exit 65,
which the systemd unit's RestartPreventExitStatus covers: a restart cannot repair a file.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy.engine import ExceptionContext

from pollerd.errors import DamagedDatabase

# Primary result codes (the low byte of an extended code): the file's content is wrong, or it
# is not a SQLite file at all (e.g. garbage over its header).
SQLITE_CORRUPT = 11
SQLITE_NOTADB = 26
MAX_PROBLEMS = 3


def is_damage(exc: BaseException) -> bool:
    """Whether a sqlite3 error says the file is damaged (not locked, full or read-only)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return (
        isinstance(exc, sqlite3.DatabaseError)
        and code is not None
        and code & 0xFF
        in (
            SQLITE_CORRUPT,
            SQLITE_NOTADB,
        )
    )


def damaged(file: Path | str, detail: str) -> DamagedDatabase:
    """The one line: what, why it stops, how to restore, how to salvage without a backup."""
    detail = " / ".join(line.strip() for line in detail.splitlines() if line.strip())
    detail = detail.removeprefix("*** in database main *** / ")
    name = Path(file).name
    return DamagedDatabase(
        f"database {file} is damaged ({detail}); pollerd stops rather than lose or repeat "
        f"alerts. Restore a backup: stop pollerd, copy the backup over this file, delete "
        f"{name}-wal and {name}-shm beside it, start pollerd (README: Backups); without one, "
        f"`sqlite3 {name} .recover | sqlite3 recovered.db` saves what is readable"
    )


def quick_check(conn: sqlite3.Connection, file: Path | str) -> None:
    """Raise `DamagedDatabase` unless `PRAGMA quick_check` finds the file sound."""
    try:
        rows = conn.execute(f"PRAGMA quick_check({MAX_PROBLEMS})").fetchall()
    except sqlite3.DatabaseError as exc:
        if is_damage(exc):
            raise damaged(file, str(exc)) from None
        raise
    problems = [str(row[0]) for row in rows if row[0] != "ok"]
    if problems:
        raise damaged(file, "; ".join(problems))


def translate(file: str) -> Any:
    """A `handle_error` listener: damage met after the start check (a disk failing while
    pollerd runs) surfaces as `DamagedDatabase` with the same line, not a raw DatabaseError."""

    def listener(context: ExceptionContext) -> BaseException | None:
        error = context.original_exception
        return damaged(file, str(error)) if is_damage(error) else None

    return listener
