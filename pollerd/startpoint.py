"""A store's start point: what alerts and what stays silent, and how an operator moves it.

The start point is stored with the cursor when a store is first polled (`start_from`, "now" by
default) and never re-read from the config: a restart must not move it. That makes a later
edit of `start_from` a no-op, which is why a mismatch is said loudly (at start, reload and
`check`), and why `pollerd cursor set` exists. A start point in the future hides every alert
while everything looks fine (issue 11), so the config refuses one and `status` flags a stored one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from loguru import logger

from pollerd.config import Settings, StoreConfig
from pollerd.errors import EXIT_USAGE, LockHeld, PollerdError
from pollerd.localtime import describe
from pollerd.store import StateLock, open_store
from pollerd.store.db import Cursor

SAME = timedelta(seconds=1)  # order times have one-second precision


class UsageError(PollerdError):
    exit_code = EXIT_USAGE


def mismatch(cfg: StoreConfig, cursor: Cursor) -> str | None:
    """Why the configured start_from has no effect, or None. "now" always matches: it means
    the first run's moment, which the stored start point is."""
    wanted = cfg.start_from
    if wanted == "now" or abs(wanted - cursor.start_at) < SAME:
        return None
    return (
        f"store {cfg.name}: start_from = {_utc(wanted)} in the config, but its cursor started "
        f"at {_utc(cursor.start_at)} and continues from there (start_from only applies to a "
        f"new cursor). To move the start point, stop pollerd and run: pollerd cursor set "
        f"--store {cfg.name} --start-from {_utc(wanted)}"
    )


def warn_mismatch(cfg: StoreConfig, cursor: Cursor) -> None:
    problem = mismatch(cfg, cursor)
    if problem:
        logger.warning("{}", problem)


def in_future(cursor: Cursor, now: datetime) -> bool:
    return cursor.start_at > now


def show(settings: Settings, only: str | None) -> list[dict[str, object]]:
    """Each configured store's start point, bookmark and start_from (for `cursor show`)."""
    cfgs = [_store(settings, only)] if only else list(settings.stores)
    store = open_store(settings.pollerd.database)
    try:
        rows: list[dict[str, object]] = []
        for cfg in cfgs:
            cursor = store.cursor(cfg.name)
            rows.append(
                {
                    "store": cfg.name,
                    "start_from": cfg.start_from
                    if cfg.start_from == "now"
                    else _utc(cfg.start_from),
                    "start_point": _utc(cursor.start_at) if cursor else None,
                    "bookmark": _utc(cursor.updated_at) if cursor else None,
                    "bookmark_order": cursor.order_id if cursor else None,
                    "note": (mismatch(cfg, cursor) if cursor else None)
                    or (
                        "the start point is in the future: nothing alerts until then"
                        if cursor and in_future(cursor, datetime.now(UTC))
                        else None
                    ),
                }
            )
        return rows
    finally:
        store.close()


@dataclass(frozen=True)
class Moved:
    store: str
    old: Cursor | None
    new: Cursor


def move(settings: Settings, name: str, when: datetime) -> Moved:
    """Set a store's start point and bookmark to `when`, holding the state directory's lock
    (a running daemon writes the cursor after every pass and would undo it)."""
    _store(settings, name)
    if when > datetime.now(UTC):
        raise UsageError(
            f"--start-from: {_utc(when)} is in the future: no change before it would ever alert "
            '(use a past time, or "now")'
        )
    lock = StateLock.of(settings)
    try:
        lock.acquire()
    except LockHeld:
        pid = lock.holder() or "?"
        raise LockHeld(
            f"a running pollerd (pid {pid}) owns {settings.state_dir} and rewrites the cursor "
            "after every pass: stop it first (systemctl stop pollerd), run `pollerd cursor set` "
            "again, then start it"
        ) from None
    try:
        store = open_store(settings.pollerd.database)
        try:
            old = store.cursor(name)
            return Moved(name, old, store.set_start(name, when))
        finally:
            store.close()
    finally:
        lock.release()


def explain(moved: Moved, cfg: StoreConfig, zone: str) -> list[str]:
    """What the move means, in the words an operator needs: what alerts now, what never
    will, and how to fill a gap."""
    name, new = moved.store, moved.new.start_at
    to = describe(new, zone)
    if moved.old is None:
        lines = [f"{name}: no cursor yet; it starts at {to}"]
    else:
        lines = [f"{name}: start point {describe(moved.old.start_at, zone)} → {to}"]
        bookmark = moved.old.updated_at
        if new > bookmark:
            lines.append(
                f"  changes made between {describe(bookmark, zone)} and {to} will never alert; "
                f"to alert them anyway: pollerd backfill --store {name} --since {_utc(bookmark)} "
                f"--until {_utc(new)} --notify"
            )
            return [*lines, *_config_hint(cfg, new)]
    lines.append(
        f"  the next pass (pollerd run or once) reads every order modified since {to} and "
        "alerts each change made since then that was not announced yet (nothing is announced "
        "twice); orders created before it are not announced as new"
    )
    lines.append(
        f"  for a long gap, `pollerd backfill --store {name} --since {_utc(new)} --notify` "
        "fills it first in bigger pages (Shopify: one bulk export beyond 7 days)"
    )
    return [*lines, *_config_hint(cfg, new)]


def _config_hint(cfg: StoreConfig, new: datetime) -> list[str]:
    if cfg.start_from == "now" or abs(cfg.start_from - new) < SAME:
        return []
    return [
        f'  set start_from = "{_utc(new)}" (or "now") in the config too, or pollerd warns '
        "at every start that they differ"
    ]


def _store(settings: Settings, name: str | None) -> StoreConfig:
    found = settings.stores_by_name.get(name or "")
    if found is None:
        known = ", ".join(settings.stores_by_name) or "none"
        raise UsageError(f"--store: no store named {name!r} in the config (known: {known})")
    return found


def _utc(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
