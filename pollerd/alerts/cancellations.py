"""`alert.cancellation_rate`: a store's cancellations running above their usual level.

The rate is the share of the orders created in the rolling `window` (ending now) that are
cancelled. It is compared with the mean rate of the previous windows that had orders (relative:
rate > mean x (1 + above_mean)) and, over `max_rate_window`, with the absolute `max_rate`
(15 %: PayPal marks an account as high risk above it). Both need `min_orders` orders in their
span, so a shop with three orders a week is not paged.

One alert per upward crossing: the crossing (its subject, the window start, UTC, to the
minute, and its figures) is kept in meta (`rule:alert.cancellation_rate:<store>`) while the
rate stays above, and cleared when it falls back, which re-arms the rule. A crossing is written
before its alert is recorded; a crash between the two raises it on the next pass, once.

The rate is measured once every `MEASURE_EVERY` per store (the time of the last measurement is
in meta too), not every pass: over 90 days of a busy shop the two counts cost ~30 ms, and a
7-day rate moves slowly; a crossing is seen within the hour.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, ClassVar

from pollerd.alerts.base import Alert, Facts, register
from pollerd.config.alerts import CancellationRateAlert
from pollerd.config.types import short

MEASURE_EVERY = 3600.0  # seconds


def state_key(store: str) -> str:
    return f"rule:alert.cancellation_rate:{store}"


def rate_and_mean(rows: Iterable[tuple[int, int, int]]) -> tuple[tuple[int, int], float | None]:
    """From `Store.orders_by_window` rows (window number, orders, cancelled; 0 the latest):
    the latest window's (orders, cancelled), and the mean rate of the earlier windows that had
    orders (None when none had). The weekly report measures its weeks with this too."""
    rows = list(rows)
    current = next(((n, k) for w, n, k in rows if w == 0), (0, 0))
    rates = [k / n for w, n, k in rows if w > 0 and n > 0]
    return current, (sum(rates) / len(rates) if rates else None)


@register
class CancellationRate:
    type: ClassVar[str] = "alert.cancellation_rate"
    table: ClassVar[str] = "cancellation_rate"

    def __init__(self, config: CancellationRateAlert) -> None:
        self.config = config

    @property
    def windows(self) -> int:
        """How many earlier windows the mean is taken over: those `max_rate_window` spans."""
        c = self.config
        return max(1, math.ceil(c.max_rate_window.total_seconds() / c.window.total_seconds()))

    def figures(self, facts: Facts[Any]) -> dict[str, Any]:
        """The rule's measurements now (also what `pollerd alerts test` shows)."""
        c = self.config
        window = c.window.total_seconds()
        rows = facts.store.orders_by_window(facts.name, facts.now, window, self.windows + 1)
        current, mean = rate_and_mean(rows)
        span = c.max_rate_window.total_seconds()
        long = facts.store.orders_by_window(facts.name, facts.now, span, 1)
        long_orders, long_cancelled = (long[0][1], long[0][2]) if long else (0, 0)
        orders, cancelled = current
        rate = cancelled / orders if orders else 0.0
        long_rate = long_cancelled / long_orders if long_orders else 0.0
        over_mean = orders >= c.min_orders and mean is not None and rate > mean * (1 + c.above_mean)
        over_max = long_orders >= c.min_orders and long_rate > c.max_rate
        return {
            "rule": "cancellation_rate",
            "severity": c.severity,
            "window_seconds": window,
            "max_rate_window_seconds": span,
            "rate": round(rate, 4),
            "mean": None if mean is None else round(mean, 4),
            "orders": orders,
            "cancelled": cancelled,
            "above_mean": c.above_mean,
            "max_rate": c.max_rate,
            "max_rate_window_rate": round(long_rate, 4),
            "max_rate_window_orders": long_orders,
            "max_rate_window_cancelled": long_cancelled,
            "over_mean": over_mean,
            "over_max_rate": over_max,
        }

    def evaluate(self, facts: Facts[Any]) -> list[Alert]:
        key = state_key(facts.name)
        stored = facts.store.meta(key)
        crossing = json.loads(stored) if stored else None
        measured = facts.store.meta(key + ":at")
        if measured is not None and 0 <= facts.now - float(measured) < MEASURE_EVERY:
            return [self.alert(facts, crossing)] if crossing else []  # filtered once recorded
        figures = self.figures(facts)
        facts.store.set_rule_state(key + ":at", repr(facts.now))
        if not (figures["over_mean"] or figures["over_max_rate"]):
            if crossing is not None:
                facts.store.set_rule_state(key, None)  # fell back: re-armed
            return []
        if crossing is None:
            start = datetime.fromtimestamp(facts.now - self.config.window.total_seconds(), UTC)
            crossing = {"since": start.strftime("%Y-%m-%dT%H:%MZ"), "figures": figures}
            facts.store.set_rule_state(key, json.dumps(crossing))
        return [self.alert(facts, crossing)]

    def alert(self, facts: Facts[Any], crossing: dict[str, Any]) -> Alert:
        figures, since = crossing["figures"], crossing["since"]
        c = self.config
        if figures["over_mean"]:
            reason = (
                f"cancellation rate {figures['rate']:.1%} ({figures['cancelled']} of "
                f"{figures['orders']} orders) in the last {short(c.window)} above its mean "
                f"{figures['mean']:.1%} ({short(c.window)} windows)"
            )
        else:
            reason = (
                f"cancellation rate {figures['max_rate_window_rate']:.1%} over "
                f"{short(c.max_rate_window)} above max_rate {c.max_rate:.1%}"
            )
        return Alert(
            type=self.type,
            store=facts.name,
            platform=facts.platform,
            subject=since,
            reason=reason,
            occurred_at=datetime.fromtimestamp(facts.now, UTC),
            group=f"cancellation_rate:{since}",
            figures={**figures, "since": since},
        )
