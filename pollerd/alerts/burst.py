"""`alert.order_burst`: `count` orders or more within `window` from one buyer (the same email,
phone or IP address, compared by their blind indexes, never the values).

A burst is the orders within `window` of its first order; later orders inside that window join
it without a second alert. Its subject is its first order, so the same burst found by IP and
by email is one alert. Bursts are cut from the buyer's whole stored history, oldest first, so
every pass (and every process) cuts them the same way. A pass looks only at buyers with a
digest written since the last settled pass (`seller.settle`; `blind_index_seen`): the order
that completes a burst is among them. With no settled pass yet it looks back one `window`.
One caveat: an order created earlier than a burst's first one but seen after the burst fired
starts a new cut, so that burst may alert a second time under its new first order.
The alert lists its orders by the number the seller knows them by (`orders`; the ids, for
webhooks, in `order_ids`); an order stored before pollerd kept numbers, by its id.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

from pollerd.alerts.base import Alert, Facts, register
from pollerd.alerts.orders import order_alert
from pollerd.config.alerts import OrderBurstAlert
from pollerd.config.types import short
from pollerd.model import utc_iso
from pollerd.store import BuyerOrder

Dated = TypeVar("Dated", bound=tuple[Any, ...])  # (order id, created at, ...)


def bursts(orders: Sequence[Dated], window: float, count: int) -> list[list[Dated]]:
    """The bursts among `orders` (oldest first, each `(order id, created_at, ...)`): from each
    order not already in a burst, the orders created within `window` of it, kept when there
    are at least `count`."""
    found = []
    i = 0
    while i < len(orders):
        first = orders[i][1]
        j = i
        while j < len(orders) and orders[j][1] - first <= window:
            j += 1
        if j - i >= count:
            found.append(list(orders[i:j]))
            i = j
        else:
            i += 1
    return found


@register
class OrderBurst:
    type: ClassVar[str] = "alert.order_burst"
    table: ClassVar[str] = "order_burst"

    def __init__(self, config: OrderBurstAlert) -> None:
        self.config = config

    def evaluate(self, facts: Facts[Any]) -> list[Alert]:
        if not facts.changed:
            return []  # no order written since the last settled pass: no buyer to look at
        window = self.config.window.total_seconds()
        since = facts.now - window if facts.since is None else min(facts.since, facts.now)
        buyers = facts.store.buyers_seen_since(facts.name, self.config.by, since, self.config.count)
        by_first: dict[str, tuple[list[BuyerOrder], set[str]]] = {}
        for (kind, _digest), orders in buyers.items():
            for burst in bursts(orders, window, self.config.count):
                if not facts.current(burst[-1][1]):
                    continue  # history: over before the start point
                first = burst[0][0]
                known, kinds = by_first.get(first, (burst, set()))
                by_first[first] = (known if len(known) >= len(burst) else burst, kinds | {kind})
        alerts = []
        for first, (burst, kinds) in sorted(by_first.items()):
            ids = [order.order_id for order in burst]
            numbers = [order.number or order.order_id for order in burst]
            figures = {
                "rule": "order_burst",
                "severity": self.config.severity,
                "by": sorted(kinds),
                "count": len(burst),
                "min_count": self.config.count,
                "window_seconds": window,
                "first_at": utc_iso(datetime.fromtimestamp(burst[0][1], UTC)),
                "orders": numbers,
                "order_ids": ids,
            }
            reason = (
                f"{len(burst)} orders from the same {' / '.join(sorted(kinds))} "
                f"within {short(self.config.window)}: {', '.join(numbers)}"
            )
            alerts.append(order_alert(facts, self.type, first, reason, figures))
        return alerts
