"""Durable state: cursors, snapshots, events and the delivery outbox (SQLite or PostgreSQL)."""

from pollerd.store.db import Cursor, Due, PageResult, Store, open_store
from pollerd.store.lock import StateLock

__all__ = ["Cursor", "Due", "PageResult", "StateLock", "Store", "open_store"]
