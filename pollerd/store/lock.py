"""One writer per database.

`run` and `once` both take an exclusive `flock` on `<database file>.lock` (beside the SQLite
file); the loser exits 75 (EX_TEMPFAIL) without touching anything, so a systemd timer firing
while the service runs is harmless. The kernel drops the lock when the process dies, even on
SIGKILL. The lock is per database, not per folder: two configs whose databases share a folder
are two independent pollerds (issue 12). A non-SQLite database has no file to sit beside, so
its lock is `pollerd.lock` beside the config file.

The state directory is never created here: it exists already where pollerd is installed
(systemd's `StateDirectory=`), so a missing one is a misspelt `[pollerd] database`, and creating
it would start an empty database that silently misses every change made until then (issue 11).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import TYPE_CHECKING

from pollerd.config import sqlite_file
from pollerd.errors import ConfigError, LockHeld, StoreError
from pollerd.failpoints import armed

if TYPE_CHECKING:
    from pollerd.config import Settings


def require_folder(folder: Path) -> None:
    """The folder of the database (and the lock) must exist; ConfigError (exit 78) if not."""
    if folder.is_dir():
        return
    what = "is not a folder" if folder.exists() else "does not exist"
    raise ConfigError(
        "pollerd.database",
        f"the folder {folder} {what}; pollerd does not create it, because a misspelt path "
        "would start an empty database and never alert the changes made meanwhile",
        "correct [pollerd] database, or create the folder writable by the user pollerd runs as "
        "(under systemd: StateDirectory=pollerd)",
    )


class StateLock:
    def __init__(self, state_dir: Path, name: str = "pollerd.lock") -> None:
        self.path = state_dir / name
        self._fd: int | None = None

    @classmethod
    def of(cls, settings: Settings) -> StateLock:
        """The lock of the database `settings` writes to: `pollerd.db.lock` for `pollerd.db`."""
        file = sqlite_file(settings.pollerd.database)
        if file is None:
            return cls(settings.state_dir)
        path = settings.base_dir / file
        return cls(path.parent, f"{path.name}.lock")

    def acquire(self) -> None:
        require_folder(self.path.parent)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(
                f"cannot open lock file {self.path}: {exc.strerror} "
                "(make the state directory writable by pollerd)"
            ) from None
        try:
            if armed("pidfile_lock") and os.pread(fd, 32, 0).strip():  # test-only (failpoints)
                raise BlockingIOError  # a pid file, not a lock: kill -9 leaves it behind
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise LockHeld(
                f"another pollerd (pid {holder}) holds {self.path}; nothing to do"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def holder(self) -> int | None:
        """The pid of the pollerd that holds this lock now, else None (for commands
        that only read, e.g. `rekey` asking whether a daemon still seals with an old key). The
        probe takes the lock for an instant when it is free: a `run`/`once` starting in that
        very instant exits 75 as if another pollerd ran, which systemd's timer retries."""
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._fd is not None:
            if armed("pidfile_lock"):
                os.ftruncate(self._fd, 0)  # a clean exit removes its pid file
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
