"""Orders set aside because they do not read: one broken order must not stop a whole store.

Before, an order a plugin had broken (a `total` of "garbage", a date that does not parse) failed
every pass of its store until someone fixed it: no alert for any other order. Now the source
hands it back as `Malformed`, and this module:

- keeps it in the `meta` table (`quarantine:<store>:<order id>` → reason, first and last seen),
  so `pollerd status` and `pollerd quarantine list` show it, across restarts;
- sends `alert.order_quarantined` once per order (id `store:order:alert.order_quarantined`, routed
  by `[[routes]]` like any event), so a person knows to fix it;
- lets the pass go on: the bookmark moves past it, because it is retried from here, not from the
  listing window (`retry`, each pass, at most every `RETRY_EVERY` seconds);
- releases it the first time it reads: the order is then diffed like any other, so what changed
  while it was set aside is announced (nothing lost).

An order that the API no longer returns at all (trashed, deleted) stays listed until it reads
again or an operator drops it (`pollerd quarantine drop`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from loguru import logger

from pollerd.config import RouteConfig
from pollerd.model import Event, Order, utc_iso
from pollerd.routing import targets_for
from pollerd.sources.base import Malformed, Source
from pollerd.store import Store

PREFIX = "quarantine:"
RETRY_EVERY = 60.0
"""Seconds between two retries of a store's set-aside orders: every pass of `pollerd once`, and
at most once a minute for a daemon polling every 2 s (each retry costs a request)."""
RETRY_MAX = 100  # ids retried at once: one WooCommerce `include=` page
EVENT_TYPE = "alert.order_quarantined"


def _key(store: str, order_id: str) -> str:
    return f"{PREFIX}{store}:{order_id}"


def held(store: Store, name: str | None = None) -> list[dict[str, Any]]:
    """Every set-aside order (of one store, or all), oldest first, as plain data."""
    prefix = PREFIX if name is None else f"{PREFIX}{name}:"
    found = []
    for key, value in store.metas(prefix).items():
        entry = json.loads(value)
        owner, _, order_id = key.removeprefix(PREFIX).partition(":")
        found.append({"store": owner, "order_id": order_id, **entry})
    return sorted(found, key=lambda e: (e["first_seen"], e["store"], e["order_id"]))


def drop(store: Store, name: str, order_id: str) -> bool:
    """Forget a set-aside order (an operator's decision, e.g. it was deleted in the shop)."""
    key = _key(name, order_id)
    if store.meta(key) is None:
        return False
    store.set_meta(key, None)
    return True


class Quarantine:
    """One store's set-aside orders (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        name: str,
        platform: str,
        routes: Callable[[], Sequence[RouteConfig]],
        *,
        on_commit: Callable[[int], None] = lambda n: None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.name = name
        self.platform = platform
        self.routes = routes
        self.on_commit = on_commit
        self.monotonic = monotonic
        self._retried = float("-inf")

    def sort(
        self, found: Iterable[Order | Malformed], *, status: str = "any", notify: bool = True
    ) -> list[Order]:
        """The orders that read, to diff; the others set aside (and alerted once). An order
        that reads again leaves the quarantine here, whichever path fetched it."""
        items = list(found)
        bad = [i for i in items if isinstance(i, Malformed)]
        good = [i for i in items if isinstance(i, Order)]
        entries = self._entries() if bad or good else {}
        for item in bad:
            self._hold(item, entries.get(item.order_id), status, notify=notify)
        for order in good:
            if order.id in entries:
                self.store.set_meta(_key(self.name, order.id), None)
                logger.info(
                    "store {}: order {} reads correctly again; released from quarantine",
                    self.name,
                    order.number,
                )
        return good

    async def retry(self, source: Source) -> list[Order]:
        """Fetch the set-aside orders again (each pass, at most every `RETRY_EVERY` seconds);
        returns those that read now, released, for the caller to diff."""
        now = self.monotonic()
        if now - self._retried < RETRY_EVERY:
            return []
        self._retried = now
        entries = self._entries()
        if not entries:
            return []
        by_status: dict[str, list[str]] = {}
        for order_id, entry in list(entries.items())[:RETRY_MAX]:
            by_status.setdefault(entry.get("status", "any"), []).append(order_id)
        orders: list[Order] = []
        for status, ids in by_status.items():
            orders += self.sort(await source.fetch(ids, status=status), status=status)
        return orders

    def _entries(self) -> dict[str, dict[str, Any]]:
        prefix = f"{PREFIX}{self.name}:"
        return {
            key.removeprefix(prefix): json.loads(value)
            for key, value in self.store.metas(prefix).items()
        }

    def _hold(
        self, item: Malformed, entry: dict[str, Any] | None, status: str, *, notify: bool
    ) -> None:
        now = datetime.now(UTC)
        reason = f"field {item.field}: {item.problem}"[:300]
        first = entry is None
        entry = {
            "number": item.number or (entry or {}).get("number") or item.order_id,
            "field": item.field,
            "problem": item.problem[:200],
            "status": status,
            "first_seen": (entry or {}).get("first_seen") or utc_iso(now),
            "last_seen": utc_iso(now),
            "admin_url": item.admin_url,
        }
        self.store.set_meta(_key(self.name, item.order_id), json.dumps(entry))
        if not first:
            return
        logger.error(
            "store {}: order {} set aside, it does not read ({}); the other orders go on, and "
            "it is retried every pass until it does (fix the order in the shop, or the plugin "
            "that wrote it); `pollerd quarantine list` shows it",
            self.name,
            entry["number"],
            reason,
        )
        event = Event(
            type=EVENT_TYPE,
            store=self.name,
            platform=self.platform,
            order_id=item.order_id,
            occurred_at=item.updated_at or now,
            detected_at=now,
            test=False,
            order={"id": item.order_id, "number": entry["number"], "admin_url": item.admin_url},
            reason=f"order {entry['number']}: {reason}; the other orders go on; fix this one "
            "in the shop (or the plugin that wrote it)",
        )
        channels = targets_for(event, self.routes()) if notify else []
        if notify and not channels:
            logger.warning("no route sends {} of store {} anywhere", EVENT_TYPE, self.name)
        result = self.store.commit_page(self.name, [], [(event, channels)])
        if result.new_deliveries:
            self.on_commit(result.new_deliveries)
