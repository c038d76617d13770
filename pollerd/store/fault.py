"""Machine-level faults of the database: a full disk, a file pollerd may not write.

Both surface deep inside any write, as SQLite's "database or disk is full" / "attempt to write
a readonly database" (or an OSError from the lock file), and each write site used to log its
own traceback: a full disk made the delivery loop retry the same due row at once, thousands of
tracebacks a second (issue 12). `classify` turns them into `StoreFull` / `StoreReadOnly`
carrying what a person needs (path, free space, uid, owner, mode, the fix); `Trouble` is the
daemon's memory of one episode: callers pause while it lasts, one WARNING a minute says so,
and one line says when writing works again.
"""

from __future__ import annotations

import errno
import os
import pwd
import sqlite3
import stat
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from loguru import logger

from pollerd.errors import StoreError, StoreFull, StoreReadOnly

if TYPE_CHECKING:
    from pollerd.store.db import Store

WARN_EVERY = 60.0  # seconds between two WARNINGs of one episode
RETRY_FIRST = 1.0  # first pause after a failed write, doubled per failure up to RETRY_MAX
RETRY_MAX = 15.0  # recovery is noticed within this long after space returns
PROBE_KEY = "database.write_probe"  # meta: the time of the last probing write
MIN_FREE = 8 * 1024 * 1024  # `status`: less free space than this is "disk almost full"

_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_READONLY_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM}
_FULL_TEXT = ("database or disk is full", "no space left on device", "disk quota exceeded")
_READONLY_TEXT = ("readonly database", "read-only file system", "read-only transaction")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, what it wraps (SQLAlchemy's `.orig`) and its causes, each once."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        orig = getattr(item, "orig", None)
        todo += [orig if isinstance(orig, BaseException) else None]
        todo += [item.__cause__, item.__context__]


def free_bytes(path: str | Path) -> int | None:
    """Bytes an unprivileged writer may still use on the file system holding `path` (its
    nearest existing folder); None when unknown (not a local file)."""
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        info = os.statvfs(folder)
    except OSError:
        return None
    return info.f_bavail * info.f_frsize


def for_humans(size: int | None) -> str:
    if size is None:
        return "unknown"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _user(uid: int) -> str:
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def _is_file(path: str) -> bool:
    return path not in ("", ":memory:") and "://" not in path


def full(path: str) -> StoreFull:
    free = free_bytes(path) if _is_file(path) else None
    where = f" ({for_humans(free)} free in {Path(path).parent})" if free is not None else ""
    return StoreFull(path, free, f"database {path}: the disk is full{where}; free some space")


def read_only(path: str) -> StoreReadOnly:
    """Which of the database, its `-wal`/`-shm` files and its folder pollerd may not write,
    who pollerd runs as, the owner and mode found, and the fix."""
    uid = os.geteuid()
    me = _user(uid)
    if not _is_file(path):
        text = f"database {path}: pollerd ({me}) may not write it; grant it write access"
        return StoreReadOnly(path, text)
    file = Path(path)
    folder = file.parent
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            text = (
                f"database {path}: the file system holding {folder} is mounted read-only "
                f"(pollerd runs as {me}); remount it read-write or move [pollerd] database"
            )
            return StoreReadOnly(path, text)
    except OSError:
        pass
    culprit = _unwritable(path) or (file if file.exists() else folder)
    try:
        info = culprit.stat()
        found = f"{_user(info.st_uid)}, mode {stat.S_IMODE(info.st_mode):04o}"
    except OSError as exc:
        found = exc.strerror or "cannot stat"
    name = me.split("(")[-1].rstrip(")") if "(" in me else str(uid)
    text = (
        f"database {path}: pollerd runs as {me} and may not write {culprit} (owner {found}); "
        f"fix: chown {name} {folder} {path}* (or run pollerd as the owner; under systemd "
        "StateDirectory=pollerd sets this up)"
    )
    return StoreReadOnly(path, text)


def _unwritable(path: str) -> Path | None:
    """The first of the database, its `-wal`/`-shm` and its folder that pollerd (this uid)
    may not read and write, if any."""
    file = Path(path)
    suspects = [(file, os.R_OK | os.W_OK)]
    suspects += [(Path(f"{path}-{end}"), os.R_OK | os.W_OK) for end in ("wal", "shm")]
    suspects += [(file.parent, os.W_OK | os.X_OK)]
    return next((p for p, mode in suspects if p.exists() and not os.access(p, mode)), None)


def classify(exc: BaseException, path: str) -> StoreError | None:
    """`StoreFull` / `StoreReadOnly` for `path` when `exc` is (or wraps) a full disk or a
    database pollerd may not write; None for anything else."""
    for item in _chain(exc):
        if isinstance(item, StoreFull | StoreReadOnly):
            return item
        text = str(item).lower()
        if isinstance(item, OSError) and item.errno in _FULL_ERRNOS:
            return full(path)
        if isinstance(item, OSError) and item.errno in _READONLY_ERRNOS:
            return read_only(path)
        code = getattr(item, "sqlite_errorcode", None)
        primary = None if code is None else code & 0xFF
        if primary == sqlite3.SQLITE_FULL or any(t in text for t in _FULL_TEXT):
            return full(path)
        if primary == sqlite3.SQLITE_READONLY or any(t in text for t in _READONLY_TEXT):
            return read_only(path)
        # "unable to open database file": often a file of another user (mode 0600).
        cannot_open = primary == sqlite3.SQLITE_CANTOPEN or "unable to open database" in text
        if cannot_open and _is_file(path) and _unwritable(path) is not None:
            return read_only(path)
        # SQLite reports a WAL or -shm file it cannot grow as an I/O error.
        if primary == sqlite3.SQLITE_IOERR and _is_file(path) and free_bytes(path) == 0:
            return full(path)
    return None


def database_name(url: str) -> str:
    """`[pollerd] database` as messages name it: the file, or the URL without its password."""
    from sqlalchemy.engine import make_url

    from pollerd.config import sqlite_file

    file = sqlite_file(url)
    if file is not None:
        return str(file)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL SQLAlchemy cannot parse is named by its scheme
        return url.partition("://")[0] + "://…"


def busy(exc: BaseException, path: str) -> StoreError | None:
    """SQLite's "database is locked" once busy_timeout (30 s) ran out: another program held
    the write lock all that time. A one-shot command says so in one line (it was a raw
    traceback); the next timer run tries again."""
    for item in _chain(exc):
        code = getattr(item, "sqlite_errorcode", None)
        if (code is not None and code & 0xFF == sqlite3.SQLITE_BUSY) or (
            "database is locked" in str(item).lower()
        ):
            return StoreError(
                f"database {path}: another program held its write lock past busy_timeout "
                "(30 s); stop it (a backup, an sqlite3 shell, a pollerd with another lock "
                "file) or run again when it is done"
            )
    return None


@contextmanager
def typed(url: str) -> Iterator[None]:
    """For one-shot commands: a full disk, a read-only database or one another program keeps
    locked, escaping from anywhere (the lock file, a page commit, an outcome), leaves as its
    one-line typed error."""
    try:
        yield
    except StoreError:
        raise
    except Exception as exc:
        name = database_name(url)
        error = classify(exc, name) or busy(exc, name)
        if error is None:
            raise
        raise error from None


def where(store: Store) -> str:
    """The database as the messages name it: the file, or the URL without its password."""
    return store._where()


class Trouble:
    """One episode of a database that cannot be written, shared by every writer in a process:
    `failed` starts or continues it (a WARNING at most every `WARN_EVERY` seconds, never a
    traceback) and says how long to pause; `ok` ends it with one line."""

    def __init__(self, path: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.clock = clock
        self.since: float | None = None
        self.failures = 0
        self.delay = 0.0
        self.until = 0.0
        self.error: StoreError | None = None
        self._warned: float | None = None
        self.one_shot = False  # `once`/`backfill`: the run ends with the error instead

    @property
    def active(self) -> bool:
        return self.since is not None

    def problem(self) -> str | None:
        """What `/healthz` shows while an episode lasts (plain reads: any thread may ask)."""
        error, since = self.error, self.since
        if error is None or since is None:
            return None
        return f"{error} (for {self.clock() - since:.0f}s)"

    def waiting(self) -> float:
        """Seconds writers should still pause (0: try again)."""
        return max(0.0, self.until - self.clock()) if self.active else 0.0

    def failed(self, error: StoreError) -> float:
        now = self.clock()
        changed = self.error is None or type(error) is not type(self.error)
        if self.since is None:
            self.since, self.delay = now, RETRY_FIRST
        elif now >= self.until:  # a fresh failure after the pause, not a second writer's
            self.delay = min(RETRY_MAX, self.delay * 2)
        self.failures += 1
        self.error = error
        self.until = max(self.until, now + self.delay)
        if changed or self._warned is None or now - self._warned >= WARN_EVERY:
            self._warned = now
            # A full disk passes by itself (WARNING); a file pollerd may not write needs a
            # person (ERROR). Either way one line a minute, never a traceback.
            level = "ERROR" if isinstance(error, StoreReadOnly) else "WARNING"
            if self.one_shot:
                logger.log(level, "{}; this run stops (the next run retries)", error)
                return self.until - now
            logger.log(
                level,
                "{}; polls and sends wait (retried every {:g}s at most; failing for {:.0f}s, "
                "{} write(s) failed) and carry on by themselves once it can be written",
                error,
                RETRY_MAX,
                now - self.since,
                self.failures,
            )
        return self.until - now

    def ok(self) -> None:
        if self.since is None:
            return
        logger.warning(
            "database {}: writable again after {:.0f}s ({} write(s) failed); polls and sends "
            "carry on, nothing was lost",
            self.path,
            self.clock() - self.since,
            self.failures,
        )
        self.since, self.failures, self.error, self._warned = None, 0, None, None
        self.delay = self.until = 0.0

    def probe(self, store: Store) -> bool:
        """While an episode lasts: one small committed write, so nothing is sent that could
        not be recorded as sent (a send whose outcome is lost goes out again and again)."""
        if not self.active:
            return True
        try:
            store.set_meta(PROBE_KEY, f"{time.time():.3f}")
        except Exception as exc:
            error = classify(exc, self.path)
            if error is None:
                raise
            self.failed(error)
            return False
        self.ok()
        return True


_TROUBLES: weakref.WeakKeyDictionary[Store, Trouble] = weakref.WeakKeyDictionary()


def trouble(store: Store) -> Trouble:
    """The episode record of `store` (one per Store object: the daemon's writers share it)."""
    found = _TROUBLES.get(store)
    if found is None:
        found = _TROUBLES[store] = Trouble(where(store))
    return found


def handled(store: Store, exc: BaseException) -> float | None:
    """When `exc` is a full disk or a read-only database: record it (`Trouble.failed`) and
    return the seconds to pause; None otherwise (the caller logs it as before)."""
    error = classify(exc, where(store))
    return None if error is None else trouble(store).failed(error)
