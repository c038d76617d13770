"""The simulated Shopify store's state: orders, disputes, deletion events, and the ground truth.

Semantics follow research/shopify.md and the brief (/tmp/brief/shopsim.md):
- ids: `legacyResourceId` counts up from 5273485869312, names from "#1001";
- every change bumps `updatedAt` to the clock's current second (Shopify emits seconds, `Z`);
- `touch` moves `updatedAt` and nothing else (subreme/shopify-monitor#8: "updated_at changing
  randomly with no visible edits"), `set_updated` stamps a cluster with one `updatedAt`
  (the docs' `updated_at` example returns ten orders sharing one value);
- the search index lags: each change is also appended to the order's `index` with the moment it
  happened and its own lag, and `updated_at` searches read the newest entry that old (Estuary's
  omitted-records finding, ShopifySharp#854 "stale search results"). `index_lag` is one lag for
  every change, or a `(low, high)` range each change draws from uniformly (seeded), and
  `lagging(seconds)` gives the changes made inside it a lag of their own (the fault suite's
  "1 % beyond the overlap"); every `Change` in the history records the lag it got;
- a deleted order disappears from every query and leaves only a `destroy` event (§1.6), which is
  listed after `event_lag` ("events might not be created until a few seconds after the action").

"Old enough" is measured on both clocks: a change is old once `lag` seconds passed on the sim's
wall clock (an injected clock that a test ticks) *or* on the monotonic clock (real waiting), so
tests may use either style.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

Clock = Callable[[], datetime]
Monotonic = Callable[[], float]

FIRST_ORDER_ID = 5273485869312
FINANCIAL_STATUSES = (
    "AUTHORIZED",
    "EXPIRED",
    "PAID",
    "PARTIALLY_PAID",
    "PARTIALLY_REFUNDED",
    "PENDING",
    "REFUNDED",
    "VOIDED",
)
CANCEL_REASONS = ("CUSTOMER", "DECLINED", "FRAUD", "INVENTORY", "OTHER", "STAFF")
DISPUTE_STATUSES = ("ACCEPTED", "CHARGE_REFUNDED", "LOST", "NEEDS_RESPONSE", "UNDER_REVIEW", "WON")
DISPUTE_FINAL = frozenset({"ACCEPTED", "CHARGE_REFUNDED", "LOST", "WON"})
VISIBLE_DAYS = 60
"""Without `read_all_orders` only the last 60 days of orders are readable (Order object note)."""


class UnknownOrder(KeyError):
    """No such order (never created, or deleted)."""


class Stamp(NamedTuple):
    """When something happened, on the sim's wall clock and on the monotonic clock."""

    wall: datetime
    mono: float


@dataclass(frozen=True, slots=True)
class Facets:
    """What the search index knows about an order: the fields `query:` can filter on."""

    updated_at: datetime
    created_at: datetime
    processed_at: datetime
    financial: str
    fulfillment: str
    cancelled: bool
    closed: bool
    test: bool
    name: str
    email: str


@dataclass(slots=True)
class LineRec:
    id: int
    name: str
    quantity: int
    sku: str
    price: Decimal


@dataclass(slots=True)
class RefundRec:
    id: int
    created_at: datetime
    amount: Decimal


@dataclass(slots=True)
class TxnRec:
    """An order transaction: its kind (SALE, AUTHORIZATION, CAPTURE, REFUND, VOID) and when the
    gateway processed it; pollerd dates a payment by it."""

    id: int
    kind: str
    processed_at: datetime
    status: str = "SUCCESS"


@dataclass(slots=True)
class OrderRec:
    id: int
    number: int
    created_at: datetime
    updated_at: datetime
    financial: str
    total: Decimal
    currency: str
    email: str
    phone: str
    first_name: str
    last_name: str
    customer_id: int
    gateway: str
    test: bool
    token: str
    items: list[LineRec]
    fulfillment: str = "UNFULFILLED"
    ip: str = ""  # the buyer's address (GraphQL `clientIp`, REST `browser_ip`)
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None
    closed_at: datetime | None = None
    refunds: list[RefundRec] = field(default_factory=list)
    transactions: list[TxnRec] = field(default_factory=list)
    fulfilled: list[datetime] = field(default_factory=list)  # each fulfillment's createdAt
    index: list[tuple[Stamp, Facets, float]] = field(default_factory=list)  # (when, what, lag)

    @property
    def name(self) -> str:
        return f"#{self.number}"

    @property
    def refunded(self) -> Decimal:
        return sum((r.amount for r in self.refunds), Decimal("0.00"))

    def facets(self) -> Facets:
        return Facets(
            updated_at=self.updated_at,
            created_at=self.created_at,
            processed_at=self.created_at,
            financial=self.financial,
            fulfillment=self.fulfillment,
            cancelled=self.cancelled_at is not None,
            closed=self.closed_at is not None,
            test=self.test,
            name=self.name,
            email=self.email,
        )


@dataclass(slots=True)
class DisputeRec:
    id: int
    order_id: int
    amount: Decimal
    currency: str
    reason: str
    status: str
    type: str
    initiated_at: datetime
    evidence_due_by: datetime | None
    evidence_sent_on: datetime | None = None
    finalized_on: datetime | None = None


@dataclass(slots=True)
class EventRec:
    id: int
    action: str
    subject_type: str
    subject_id: int
    message: str
    created_at: datetime
    stamp: Stamp


class Change(NamedTuple):
    """One ground-truth change: what the store really did, when, and how many seconds the
    `updated_at` search index took to show it (`lag`)."""

    time: datetime
    order_id: int
    action: str
    financial: str
    lag: float = 0.0


def money(value: str | int | float | Decimal) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


def second(value: datetime) -> datetime:
    """Shopify timestamps have one-second precision."""
    return value.astimezone(UTC).replace(microsecond=0)


class ShopBook:
    """Thread-safe in-memory Shopify orders, disputes and events (one `RLock` for all)."""

    def __init__(
        self,
        *,
        clock: Clock,
        monotonic: Monotonic,
        index_lag: float | tuple[float, float] = 0.0,
        event_lag: float = 0.0,
        read_all_orders: bool = False,
        seed: int = 0,
    ) -> None:
        self.clock = clock
        self.monotonic = monotonic
        self.index_lag = index_lag
        self.event_lag = event_lag
        self.read_all_orders = read_all_orders
        self.lock = threading.RLock()
        self.orders: dict[int, OrderRec] = {}
        self.disputes: dict[int, DisputeRec] = {}
        self.events: list[EventRec] = []
        self.history: list[Change] = []
        self._rng = random.Random(seed)
        self._lag_rng = random.Random(seed + 1)  # apart, so lags never shift the orders' data
        self._lag_override: float | None = None
        self._next_id = FIRST_ORDER_ID
        self._next_number = 1001
        self._next_line = 13590000000001
        self._next_refund = 915000000001
        self._next_txn = 7350000000001
        self._next_customer = 7110000000001
        self._next_dispute = 10500000001
        self._next_event = 98800000000001

    # --- time --------------------------------------------------------------------------------

    def now(self) -> datetime:
        return second(self.clock())

    def stamp(self) -> Stamp:
        return Stamp(self.clock().astimezone(UTC), self.monotonic())

    def aged(self, stamp: Stamp, lag: float) -> bool:
        """True once `lag` seconds passed on either clock (see the module docstring)."""
        if lag <= 0:
            return True
        now = self.stamp()
        return (now.wall - stamp.wall).total_seconds() >= lag or now.mono - stamp.mono >= lag

    # --- lookup ------------------------------------------------------------------------------

    def visible(self, rec: OrderRec) -> bool:
        """Readable with the granted scopes: absent (not an error) when older than 60 days."""
        if self.read_all_orders:
            return True
        return rec.created_at >= self.now() - timedelta(days=VISIBLE_DAYS)

    def get(self, order_id: int) -> OrderRec:
        rec = self.orders.get(int(order_id))
        if rec is None:
            raise UnknownOrder(f"no order {order_id}")
        return rec

    def indexed(self, rec: OrderRec) -> Facets | None:
        """The order as the search index sees it now: its newest change old enough to be
        indexed (with drawn lags an older change may still be waiting when a newer one shows);
        None while no change of a new order is."""
        for stamp, facets, lag in reversed(rec.index):
            if self.aged(stamp, lag):
                return facets
        return None

    def draw_lag(self) -> float:
        """The index lag of the next change (see the module docstring)."""
        if self._lag_override is not None:
            return self._lag_override
        if isinstance(self.index_lag, tuple):
            low, high = self.index_lag
            return self._lag_rng.uniform(low, high)
        return float(self.index_lag)

    @contextlib.contextmanager
    def lagging(self, seconds: float) -> Iterator[None]:
        """Changes made inside get an index lag of `seconds` (under the book's lock, so no
        other thread's change gets it)."""
        with self.lock:
            self._lag_override = float(seconds)
            try:
                yield
            finally:
                self._lag_override = None

    def listed_events(self) -> list[EventRec]:
        """Events old enough to be listed (`event_lag`)."""
        return [e for e in self.events if self.aged(e.stamp, self.event_lag)]

    # --- changes -----------------------------------------------------------------------------

    def _changed(self, rec: OrderRec, action: str, when: datetime | None = None) -> None:
        rec.updated_at = when if when is not None else self.now()
        lag = self.draw_lag()
        rec.index.append((self.stamp(), rec.facets(), lag))
        self.history.append(Change(self.now(), rec.id, action, rec.financial, lag))

    def create(
        self,
        *,
        financial: str = "PENDING",
        total: str | Decimal = "25.00",
        currency: str = "USD",
        email: str = "ada@example.test",
        phone: str = "+15550100",
        first_name: str = "Ada",
        last_name: str = "Lovelace",
        items: Iterable[dict[str, Any]] | None = None,
        test: bool = False,
        gateway: str = "shopify_payments",
        created_at: datetime | None = None,
        ip: str | None = None,
    ) -> int:
        financial = financial.upper()
        if financial not in FINANCIAL_STATUSES:
            known = ", ".join(FINANCIAL_STATUSES)
            raise ValueError(f"unknown financial status {financial!r}; known: {known}")
        with self.lock:
            when = second(created_at) if created_at is not None else self.now()
            rec = OrderRec(
                id=self._next_id,
                number=self._next_number,
                created_at=when,
                updated_at=when,
                financial=financial,
                total=money(total),
                currency=currency.upper(),
                email=email,
                phone=phone,
                first_name=first_name,
                last_name=last_name,
                customer_id=self._next_customer,
                gateway=gateway,
                test=bool(test),
                token=f"{self._rng.getrandbits(128):032x}",
                items=self._lines(items, money(total)),
                # One documentation-range address per customer (RFC 5737) unless given: a
                # burst from one address is something a script says.
                ip=ip if ip is not None else f"198.51.100.{self._next_customer % 254 + 1}",
            )
            self._next_id += 1
            self._next_number += 1
            self._next_customer += 1
            self.orders[rec.id] = rec
            if financial in ("AUTHORIZED", "PAID", "PARTIALLY_PAID"):
                self._transact(rec, "AUTHORIZATION" if financial == "AUTHORIZED" else "SALE", when)
            self._changed(rec, "create", when)
            return rec.id

    def _transact(self, rec: OrderRec, kind: str, when: datetime) -> None:
        rec.transactions.append(TxnRec(self._next_txn, kind, when))
        self._next_txn += 1

    def _lines(self, items: Iterable[dict[str, Any]] | None, total: Decimal) -> list[LineRec]:
        specs: list[dict[str, Any]] = (
            list(items) if items is not None else [{"name": "Test Mug", "price": total}]
        )
        lines = []
        for spec in specs:
            lines.append(
                LineRec(
                    id=self._next_line,
                    name=str(spec.get("name", "Item")),
                    quantity=int(str(spec.get("quantity", 1))),
                    sku=str(spec.get("sku", "")),
                    price=money(str(spec.get("price", "0.00"))),
                )
            )
            self._next_line += 1
        return lines

    def set_financial(self, order_id: int, financial: str, *, requires: str | None = None) -> None:
        with self.lock:
            rec = self.get(order_id)
            if requires is not None and rec.financial != requires:
                raise ValueError(
                    f"order {rec.name} is {rec.financial}; only {requires} orders can become "
                    f"{financial}"
                )
            kind = {"AUTHORIZED": "AUTHORIZATION", "VOIDED": "VOID", "PARTIALLY_PAID": "SALE"}
            if financial == "PAID":
                held = any(t.kind == "AUTHORIZATION" for t in rec.transactions)
                kind["PAID"] = "CAPTURE" if held else "SALE"
            if financial in kind:
                self._transact(rec, kind[financial], self.now())
            rec.financial = financial
            self._changed(rec, financial.lower())

    def cancel(self, order_id: int, reason: str = "CUSTOMER") -> None:
        reason = reason.upper()
        if reason not in CANCEL_REASONS:
            raise ValueError(
                f"unknown cancel reason {reason!r}; known: {', '.join(CANCEL_REASONS)}"
            )
        with self.lock:
            rec = self.get(order_id)
            if rec.cancelled_at is not None:
                raise ValueError(f"order {rec.name} is already cancelled")
            now = self.now()
            rec.cancelled_at = now
            rec.cancel_reason = reason
            rec.closed_at = rec.closed_at or now
            self._changed(rec, "cancel")

    def refund(self, order_id: int, amount: str | Decimal) -> int:
        value = money(amount)
        with self.lock:
            rec = self.get(order_id)
            remaining = rec.total - rec.refunded
            if value <= 0 or value > remaining:
                raise ValueError(
                    f"refund {value} on order {rec.name}: must be > 0 and ≤ {remaining} "
                    "(what was not refunded yet)"
                )
            refund = RefundRec(self._next_refund, self.now(), value)
            self._next_refund += 1
            rec.refunds.append(refund)
            self._transact(rec, "REFUND", refund.created_at)
            rec.financial = "REFUNDED" if rec.refunded >= rec.total else "PARTIALLY_REFUNDED"
            self._changed(rec, "refund")
            return refund.id

    def fulfill(self, order_id: int) -> None:
        with self.lock:
            rec = self.get(order_id)
            rec.fulfillment = "FULFILLED"
            rec.fulfilled.append(self.now())
            self._changed(rec, "fulfill")

    def touch(self, order_id: int) -> None:
        with self.lock:
            self._changed(self.get(order_id), "touch")

    def set_updated(self, order_ids: Iterable[int], when: datetime) -> None:
        with self.lock:
            recs = [self.get(i) for i in order_ids]
            for rec in recs:
                self._changed(rec, "set_updated", second(when))

    def delete(self, order_id: int) -> None:
        with self.lock:
            rec = self.orders.pop(int(order_id), None)
            if rec is None:
                raise UnknownOrder(f"no order {order_id}")
            now = self.now()
            self.events.append(
                EventRec(
                    id=self._next_event,
                    action="destroy",
                    subject_type="ORDER",
                    subject_id=rec.id,
                    message=f"Order {rec.name} was deleted.",
                    created_at=now,
                    stamp=self.stamp(),
                )
            )
            self._next_event += 1
            self.history.append(Change(now, rec.id, "delete", rec.financial))

    # --- disputes ----------------------------------------------------------------------------

    def add_dispute(
        self,
        order_id: int,
        amount: str | Decimal,
        *,
        reason: str = "FRAUDULENT",
        status: str = "NEEDS_RESPONSE",
        type: str = "CHARGEBACK",
        evidence_due_by: datetime | None = None,
    ) -> int:
        status = status.upper()
        if status not in DISPUTE_STATUSES:
            raise ValueError(f"unknown dispute status {status!r}; known: {DISPUTE_STATUSES}")
        with self.lock:
            rec = self.get(order_id)
            now = self.now()
            dispute = DisputeRec(
                id=self._next_dispute,
                order_id=rec.id,
                amount=money(amount),
                currency=rec.currency,
                reason=reason.upper(),
                status=status,
                type=type.upper(),
                initiated_at=now,
                evidence_due_by=second(evidence_due_by or now + timedelta(days=7)),
            )
            self._next_dispute += 1
            self._apply_dispute_status(dispute, status)
            self.disputes[dispute.id] = dispute
            return dispute.id

    def set_dispute_status(self, dispute_id: int, status: str) -> None:
        status = status.upper()
        if status not in DISPUTE_STATUSES:
            raise ValueError(f"unknown dispute status {status!r}; known: {DISPUTE_STATUSES}")
        with self.lock:
            dispute = self.disputes.get(int(dispute_id))
            if dispute is None:
                raise LookupError(f"no dispute {dispute_id}")
            self._apply_dispute_status(dispute, status)

    def _apply_dispute_status(self, dispute: DisputeRec, status: str) -> None:
        """Evidence goes out when a dispute is under review; final states set `finalizedOn`."""
        dispute.status = status
        now = self.now()
        if status == "UNDER_REVIEW" and dispute.evidence_sent_on is None:
            dispute.evidence_sent_on = now
        if status in DISPUTE_FINAL and dispute.finalized_on is None:
            dispute.finalized_on = now

    def snapshot(self, rec: OrderRec) -> OrderRec:
        """A copy safe to read outside the lock (lists copied)."""
        return replace(
            rec,
            items=list(rec.items),
            refunds=list(rec.refunds),
            transactions=list(rec.transactions),
            fulfilled=list(rec.fulfilled),
            index=[],
        )
