"""Durable state: cursors, snapshots, events and the delivery outbox (SQLite or PostgreSQL).

`Store` (db.py) is the facade; nothing outside this package speaks SQL.
"""

from pollerd.store.db import (
    BuyerOrder,
    Cursor,
    DisputeFact,
    Due,
    OrderFact,
    PageResult,
    Store,
    StoredOrder,
    open_store,
)
from pollerd.store.lock import StateLock

__all__ = [
    "BuyerOrder",
    "Cursor",
    "DisputeFact",
    "Due",
    "OrderFact",
    "PageResult",
    "StateLock",
    "Store",
    "StoredOrder",
    "open_store",
]
