"""The two seller rules about one order at a time: a total to review, a payment that is late.

Both read `order_fact` through one `Store` query each that already leaves out orders alerted
before (the alert's id is the bookkeeping), so a pass returns only what is new.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

from pollerd.alerts.base import Alert, Facts, register
from pollerd.config.alerts import HighValueAlert, UnpaidTimeoutAlert
from pollerd.model import utc_iso
from pollerd.store import Store


def order_alert(
    facts: Facts[Any],
    kind: str,
    order_id: str,
    reason: str,
    figures: dict[str, Any],
    subject: str | None = None,
) -> Alert:
    """An alert about one order (a burst's first, a disputed one): grouped with the order's
    events, its `order` the order as pollerd last announced it (just the id for one never
    announced); its subject is the order id unless given."""
    announced = facts.store.last_order(facts.name, order_id) or {}
    return Alert(
        type=kind,
        store=facts.name,
        platform=facts.platform,
        subject=order_id if subject is None else subject,
        reason=reason,
        occurred_at=datetime.fromtimestamp(facts.now, UTC),
        group=order_id,
        order={k: v for k, v in announced.items() if k != "id"},
        figures=figures,
    )


@register
class HighValue:
    """`alert.high_value`: total >= the threshold for its currency (exactly the threshold
    fires), once per order; later payment or capture adds nothing. A pass judges the orders
    written since the last settled one (an edited total is judged again)."""

    type: ClassVar[str] = "alert.high_value"
    table: ClassVar[str] = "high_value"  # its `[[alerts]]` type

    def __init__(self, config: HighValueAlert) -> None:
        self.config = config

    def evaluate(self, facts: Facts[Any]) -> list[Alert]:
        if not facts.changed:
            return []  # nothing written since the last settled pass: nothing to judge again
        alerts = []
        store: Store = facts.store
        for currency in sorted(self.config.currencies):
            lowest = self.config.lowest(currency)
            if lowest is None:
                continue
            found = store.valued_at_least(facts.name, currency, lowest, self.type, facts.since)
            for order in found:
                if not facts.current(order.created_at):
                    continue
                reaches, limit = self.config.reaches(order.total, order.currency)
                if not reaches:
                    continue
                figures = {
                    "rule": "high_value",
                    "severity": self.config.severity,
                    "total": str(order.total),
                    "currency": order.currency,
                    "threshold": str(limit),
                }
                reason = f"total {order.total} {order.currency} >= {limit}: needs review"
                alerts.append(order_alert(facts, self.type, order.order_id, reason, figures))
        return alerts


@register
class UnpaidTimeout:
    """`alert.unpaid_timeout`: still unpaid `after` its creation (as the store records it),
    once per order; nothing if it was paid or cancelled first (then it is no longer unpaid)."""

    type: ClassVar[str] = "alert.unpaid_timeout"
    table: ClassVar[str] = "unpaid_timeout"

    def __init__(self, config: UnpaidTimeoutAlert) -> None:
        self.config = config

    def evaluate(self, facts: Facts[Any]) -> list[Alert]:
        after = self.config.after.total_seconds()
        since = None if facts.since is None else (facts.since - after, facts.since)
        late = facts.store.unpaid_before(
            facts.name, facts.now - after, self.type, since, written=facts.changed
        )
        alerts = []
        for order in late:
            if not facts.current(order.created_at):
                continue
            created = datetime.fromtimestamp(order.created_at, UTC)
            figures = {
                "rule": "unpaid_timeout",
                "severity": self.config.severity,
                "after_seconds": after,
                "created_at": utc_iso(created),
                "total": str(order.total),
                "currency": order.currency,
            }
            minutes = Decimal(after / 60).quantize(Decimal(1))
            reason = f"unpaid {minutes} minutes after it was placed"
            alerts.append(order_alert(facts, self.type, order.order_id, reason, figures))
        return alerts
