"""The cursor store: the one facade the rest of pollerd calls, and the only door to SQL.

The promise rests on two of its queries. `commit_page` (pages.py) writes snapshots, events
(unique `store:order_id:type`), their delivery rows (unique `(event, channel)`) and the cursor
in ONE transaction, so a crash replays a page but never loses or doubles one. `due` (outbox.py)
hands the delivery loop only rows whose earlier events for the same order and channel are done,
so per order the messages go out in the order things happened.

`Store` is assembled from one part per seam, each a module of its own over the shared
`Database` (engine.py: the file, engine, BEGIN IMMEDIATE, migrations):

- `Pages`     cursors, snapshots, events, `commit_page`            (pages.py)
- `Outbox`    due/backlog/expire, mark, held channels, dead letters (outbox.py)
- `Contacts`  sealed customer contacts, `rekey`, `prune`            (contacts.py)
- `Meta`      small durable facts by key                            (meta.py)
- `RuleFacts` what the seller alert rules read, one query per rule  (facts.py)
- `ReportFacts` what the daily and weekly reports read              (reports.py)

The schema itself is described once, in tables.py, and migrate.py builds it.
"""

from __future__ import annotations

from pollerd.crypto import CryptoError, KeyRing
from pollerd.errors import ConfigError
from pollerd.secrets import Secret
from pollerd.store.contacts import Contacts, Pruned, Rekeyed, _sealed_row
from pollerd.store.engine import Database, check_file
from pollerd.store.facts import BuyerOrder, DisputeFact, OrderFact, RuleFacts, StoredOrder
from pollerd.store.meta import Meta
from pollerd.store.outbox import Due, Outbox
from pollerd.store.pages import Cursor, PageResult, Pages
from pollerd.store.reports import ReportFacts
from pollerd.store.tables import (
    CHANNEL_STATE,
    CONTACT,
    CURSOR,
    DELIVERY,
    EVENT,
    META,
    SNAPSHOT,
    dt,
    ts,
)


class Store(Pages, Outbox, Contacts, Meta, RuleFacts, ReportFacts):
    """Durable state of one pollerd database (SQLite or PostgreSQL); see the module docstring
    for which part holds what. `Store(url)` opens, checks and migrates it."""


def open_store(url: str, *, pii_key: Secret | str | None = None) -> Store:
    """The store at `url`; with `pii_key` (the `[pollerd] pii_key` secret) customer contacts
    are kept sealed, without it they are not kept at all."""
    if pii_key is None:
        return Store(url)
    text_key = pii_key.get() if isinstance(pii_key, Secret) else pii_key
    try:
        ring = KeyRing.parse(text_key)
    except CryptoError as exc:  # config validation refuses these first; never restart-loop
        problem = str(exc).removeprefix("pii_key").lstrip(": ")
        raise ConfigError("pollerd.pii_key", problem) from None
    return Store(url, pii=ring)


__all__ = [
    "CHANNEL_STATE",
    "CONTACT",
    "CURSOR",
    "DELIVERY",
    "EVENT",
    "META",
    "SNAPSHOT",
    "BuyerOrder",
    "Cursor",
    "Database",
    "DisputeFact",
    "Due",
    "OrderFact",
    "PageResult",
    "Pruned",
    "Rekeyed",
    "Store",
    "StoredOrder",
    "_sealed_row",
    "check_file",
    "dt",
    "open_store",
    "ts",
]
