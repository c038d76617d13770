"""The queries the daily and weekly reports read (pollerd.alerts.reports), one per figure.

A report covers one local period (a day, a week) of a few stores, so every query takes the
store names and the period as epoch seconds, start inclusive, end exclusive. Orders are read
from `order_fact` by creation time (index `order_fact_created`), what happened to them from
the `event` table, which keeps every event, by type and time (index `event_type_time`,
migration 5), and disputes from `dispute_fact` (`opened_at`, `closed_at`, migration 5).

Money is summed here in Python as `Decimal` from the exact text of each total: SQL's `sum`
over text is a float, and a report must add up to the cent.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import and_, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from pollerd.store.engine import Database
from pollerd.store.tables import DISPUTE_FACT, EVENT, ORDER_FACT

__all__ = ["DisputeTally", "OpenDispute", "OrderTally", "ReportFacts"]


@dataclass
class OrderTally:
    """A store's orders created in a period: how many, and the revenue per currency (the
    totals of those not cancelled)."""

    orders: int = 0
    cancelled: int = 0
    revenue: dict[str, Decimal] = field(default_factory=dict)


@dataclass
class DisputeTally:
    """A store's disputes opened in a period, and those decided in it, won or lost."""

    opened: int = 0
    won: int = 0
    lost: int = 0


@dataclass(frozen=True)
class OpenDispute:
    """A dispute still awaiting the seller's evidence, as the daily digest lists it."""

    store: str
    dispute_id: str
    order_id: str
    amount: str
    currency: str
    reason: str | None
    evidence_due_by: datetime | None


class ReportFacts(Database):
    """The `Store` facade's report queries (module docstring)."""

    def orders_created(
        self, stores: Sequence[str], start: float, end: float
    ) -> dict[str, OrderTally]:
        """Per store (every one of `stores`, zero when none): the orders created in
        [start, end) and the exact revenue per currency of those not cancelled."""
        query = select(
            ORDER_FACT.c.store, ORDER_FACT.c.total, ORDER_FACT.c.currency, ORDER_FACT.c.cancelled
        ).where(
            ORDER_FACT.c.store.in_(list(stores)),
            ORDER_FACT.c.created_at >= start,
            ORDER_FACT.c.created_at < end,
        )
        found = {name: OrderTally() for name in stores}
        with self.engine.connect() as conn:
            for store, total, currency, cancelled in conn.execute(query):
                tally = found[store]
                tally.orders += 1
                if cancelled:
                    tally.cancelled += 1
                    continue
                tally.revenue[currency] = tally.revenue.get(currency, Decimal(0)) + Decimal(total)
        return found

    def events_between(
        self,
        stores: Sequence[str],
        start: float,
        end: float,
        types: Sequence[str],
        prefixes: Sequence[str] = (),
    ) -> dict[str, Counter[str]]:
        """Per store: how many events of each of `types` (or whose type starts with one of
        `prefixes`, e.g. "alert.") occurred in [start, end)."""
        kinds: list[ColumnElement[bool]] = [EVENT.c.type.in_(list(types))] if types else []
        # A range per prefix ("alert." <= type < "alert/"), which the index serves; LIKE may not.
        kinds += [and_(EVENT.c.type >= p, EVENT.c.type < p[:-1] + chr(ord(p[-1]) + 1))
                  for p in prefixes]  # fmt: skip
        query = (
            select(EVENT.c.store, EVENT.c.type, func.count())
            .where(
                or_(*kinds),
                EVENT.c.occurred_at >= start,
                EVENT.c.occurred_at < end,
                EVENT.c.store.in_(list(stores)),
            )
            .group_by(EVENT.c.store, EVENT.c.type)
        )
        found: dict[str, Counter[str]] = {name: Counter() for name in stores}
        if not kinds:
            return found
        with self.engine.connect() as conn:
            for store, kind, count in conn.execute(query):
                found[store][kind] = int(count)
        return found

    def cancel_reasons(
        self, stores: Sequence[str], start: float, end: float
    ) -> dict[str, Counter[str]]:
        """Per store: the `reason` of each `order.cancelled` event in [start, end), counted
        ("" when the platform gave none). The reason is in the event's JSON."""
        query = select(EVENT.c.store, EVENT.c.payload).where(
            EVENT.c.type == "order.cancelled",
            EVENT.c.occurred_at >= start,
            EVENT.c.occurred_at < end,
            EVENT.c.store.in_(list(stores)),
        )
        found: dict[str, Counter[str]] = {name: Counter() for name in stores}
        with self.engine.connect() as conn:
            for store, payload in conn.execute(query):
                reason = json.loads(payload).get("reason") or ""
                found[store][str(reason)] += 1
        return found

    def disputes_between(
        self, stores: Sequence[str], start: float, end: float, won: str = "won"
    ) -> dict[str, DisputeTally]:
        """Per store: disputes opened in [start, end) (`opened_at`), and those closed in it
        (`closed_at`): `won` when their status is `won`, else lost (lost, accepted, refunded)."""
        found = {name: DisputeTally() for name in stores}
        opened = (
            select(DISPUTE_FACT.c.store, func.count())
            .where(
                DISPUTE_FACT.c.store.in_(list(stores)),
                DISPUTE_FACT.c.opened_at >= start,
                DISPUTE_FACT.c.opened_at < end,
            )
            .group_by(DISPUTE_FACT.c.store)
        )
        status = func.lower(DISPUTE_FACT.c.status)
        closed = (
            select(DISPUTE_FACT.c.store, status == won, func.count())
            .where(
                DISPUTE_FACT.c.store.in_(list(stores)),
                DISPUTE_FACT.c.closed_at >= start,
                DISPUTE_FACT.c.closed_at < end,
            )
            .group_by(DISPUTE_FACT.c.store, status == won)
        )
        with self.engine.connect() as conn:
            for store, count in conn.execute(opened):
                found[store].opened = int(count)
            for store, was_won, count in conn.execute(closed):
                if was_won:
                    found[store].won += int(count)
                else:
                    found[store].lost += int(count)
        return found

    def open_disputes(self, stores: Sequence[str]) -> list[OpenDispute]:
        """Every dispute of `stores` awaiting evidence, the soonest deadline first (none last)."""
        query = (
            select(DISPUTE_FACT)
            .where(DISPUTE_FACT.c.store.in_(list(stores)), DISPUTE_FACT.c.awaiting.is_(True))
            .order_by(
                DISPUTE_FACT.c.evidence_due_by.is_(None),
                DISPUTE_FACT.c.evidence_due_by,
                DISPUTE_FACT.c.store,
                DISPUTE_FACT.c.dispute_id,
            )
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            OpenDispute(
                store=r["store"],
                dispute_id=r["dispute_id"],
                order_id=r["order_id"],
                amount=r["amount"],
                currency=r["currency"],
                reason=r["reason"],
                evidence_due_by=None
                if r["evidence_due_by"] is None
                else datetime.fromtimestamp(r["evidence_due_by"], UTC),
            )
            for r in rows
        ]
