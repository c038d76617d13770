"""The error tree and exit codes.

Every failure is typed once, at the edge that sees it (HTTP status *and* body), so the rest of
the code only asks "retry or give up, and how long to wait":

    PollerdError
    ├── ConfigError(field, problem, fix)        exit 78 (EX_CONFIG): systemd must not restart-loop
    │   └── SecretError                         missing env var / file / systemd credential
    ├── StoreError                              database unusable, migration failed   → exit 1
    │   ├── StoreFull                           disk full: passes by itself           → exit 1
    │   ├── StoreReadOnly                       owner/mode/read-only mount: setup     → exit 78
    │   └── DamagedDatabase                     quick_check failed: restore a backup  → exit 65
    ├── LockHeld                                another pollerd owns the state dir    → exit 75
    ├── SourceError(store)
    │   ├── RetryableSourceError(retry_after)   429, 5xx, WAF 403 pages, timeouts, bad JSON
    │   │   └── BlockedSourceError              a WAF's 403 page: backs off like an auth error
    │   └── FatalSourceError                    auth, unsupported version, 404 site, bad request
    └── ChannelError(channel)                   raised only by `check`/`notify-test`; the delivery
                                                loop works with `SendResult` values instead
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_DAMAGED = 65  # EX_DATAERR: in RestartPreventExitStatus, a restart cannot repair a file
EXIT_LOCKED = 75  # EX_TEMPFAIL
EXIT_CONFIG = 78  # EX_CONFIG


class PollerdError(Exception):
    exit_code = EXIT_FAILED


class ConfigError(PollerdError):
    """A config problem a person must fix; the message names the key, the problem and the fix."""

    exit_code = EXIT_CONFIG

    def __init__(self, field: str, problem: str, fix: str = "") -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        text = f"config: {field}: {problem}" if field else f"config: {problem}"
        if fix:
            text += f" ({fix})"
        super().__init__(text)


class SecretError(ConfigError):
    pass


class StoreError(PollerdError):
    pass


class StoreFull(StoreError):
    """The database cannot grow: its disk (or quota) is full. Temporary: the daemon waits it
    out; a one-shot command fails (exit 1) and the next timer run retries."""

    def __init__(self, path: str, free: int | None, message: str) -> None:
        self.path = path
        self.free = free
        super().__init__(message)


class StoreReadOnly(StoreError):
    """pollerd may not write its database (owner, mode, read-only mount): a setup error a
    person must fix, so exit 78 and systemd does not restart-loop on it."""

    exit_code = EXIT_CONFIG

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(message)


class DamagedDatabase(StoreError):
    """The SQLite file fails `PRAGMA quick_check` (or is no database at all). Nothing pollerd
    does can repair it, and working on would lose or repeat alerts: stop, say how to restore."""

    exit_code = EXIT_DAMAGED


class LockHeld(PollerdError):
    exit_code = EXIT_LOCKED


class SourceError(PollerdError):
    def __init__(self, store: str, message: str) -> None:
        self.store = store
        super().__init__(f"store {store}: {message}")


class RetryableSourceError(SourceError):
    """The store (or something in front of it) said "not now"; never read this as "no orders"."""

    def __init__(self, store: str, message: str, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(store, message)


class BlockedSourceError(RetryableSourceError):
    """A firewall in front of the store refused us (a 403 HTML page). Retrying at the poll rate
    is what gets the server's IP blocked for good: the daemon backs off as for auth errors."""


class FatalSourceError(SourceError):
    """Retrying will not help until a person changes something (keys, permissions, version)."""


class ChannelError(PollerdError):
    def __init__(self, channel: str, message: str) -> None:
        self.channel = channel
        super().__init__(f"channel {channel}: {message}")
