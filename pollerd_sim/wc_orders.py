"""The simulated store's order book: WooCommerce order state, its transitions and ground truth.

Transitions follow WooCommerce 10.0.2 (research/woocommerce.md §1.4, §1.9, §1.10):
- `date_paid` is set when an order first reaches `processing`, or `completed` if it never got one
  (`WC_Order::maybe_set_date_paid`), and it is sticky: it survives `cancelled` and `refunded`;
- BACS and cheque orders wait in `on-hold` without `date_paid`; cash on delivery goes straight to
  `processing`, so `date_paid` is set although nothing was collected;
- refunds take ids from the order id sequence and a refund reaching the order total makes the
  order `refunded`; setting `refunded` by hand creates the refund for what remains;
- every change bumps `date_modified` to the current second, and `touch` bumps it with no change at
  all (HPOS issue #41226).
Every transition is also appended to `history`, the ground truth pollerd's events are checked
against. Rendering to REST JSON lives in `wc_render`.
"""

from __future__ import annotations

import calendar
import random
import string
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

Clock = Callable[[], datetime]

ORDER_STATUSES = (
    "pending",
    "processing",
    "on-hold",
    "completed",
    "cancelled",
    "refunded",
    "failed",
    "checkout-draft",
)
"""`wc_get_order_statuses()` plus the Blocks checkout draft; `trash` is reached via `trash()`."""

GATEWAY_TITLES = {
    "bacs": "Direct bank transfer",
    "cheque": "Check payments",
    "cod": "Cash on delivery",
    "stripe": "Credit Card (Stripe)",
    "ppcp-gateway": "PayPal",
    "paypal": "PayPal",
}
OFFLINE_ON_HOLD = frozenset({"bacs", "cheque"})
STOCK_REDUCED_AT = frozenset({"processing", "completed", "on-hold"})
STOCK_RESTORED_AT = frozenset({"cancelled", "pending"})
# `woocommerce_valid_order_statuses_for_payment_complete` (+ the Blocks draft it checks out).
PAYMENT_COMPLETE_FROM = frozenset({"on-hold", "pending", "failed", "cancelled", "checkout-draft"})
FULL_REFUND_REASON = (
    "Order status set to refunded. To return funds to the customer you will need to issue a "
    "refund through your payment gateway."
)
_KEY_ALPHABET = string.ascii_letters + string.digits


class UnknownOrder(KeyError):
    """No such order (never created, or force-deleted)."""


class Transition(NamedTuple):
    """One ground-truth change: what the store really did, and when."""

    time: datetime
    order_id: int
    status: str
    refunded_total: Decimal


@dataclass(slots=True)
class LineRecord:
    id: int
    name: str
    product_id: int
    quantity: int
    sku: str
    total: Decimal
    meta: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class RefundRecord:
    id: int
    amount: Decimal
    reason: str
    created: datetime


@dataclass(slots=True)
class OrderRecord:
    """One order. `*_ts` are epoch seconds of the GMT columns and of the site-local columns read
    as if they were UTC: the list filters compare integers, which keeps 50,000-order scans cheap."""

    id: int
    status: str
    currency: str
    total: Decimal
    created: datetime
    modified: datetime
    payment_method: str
    payment_method_title: str
    created_via: str
    billing: dict[str, str]
    order_key: str
    items: list[LineRecord]
    transaction_id: str = ""
    ip: str = ""  # `customer_ip_address`: the buyer's at checkout, "" for an admin-made order
    paid: datetime | None = None
    completed: datetime | None = None
    refunds: list[RefundRecord] = field(default_factory=list)  # newest first, like get_refunds()
    meta: list[dict[str, Any]] = field(default_factory=list)
    created_ts: int = 0
    created_local_ts: int = 0
    modified_ts: int = 0
    modified_local_ts: int = 0
    cache_json: bytes | None = None
    cache_base: str = ""
    # Raw values served instead of the rendered ones (`WooSim.corrupt`): a plugin writing
    # `"total": "garbage"` into an order, for the quarantine tests.
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def refunded_total(self) -> Decimal:
        return sum((r.amount for r in self.refunds), Decimal("0"))


def money(value: str | int | float | Decimal) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


def second(value: datetime) -> datetime:
    """WooCommerce stores dates at one-second precision (MySQL DATETIME)."""
    return value.astimezone(UTC).replace(microsecond=0)


class OrderBook:
    """Thread-safe in-memory orders with WooCommerce transition semantics."""

    def __init__(self, *, clock: Clock, tz: ZoneInfo, seed: int = 0) -> None:
        self.clock = clock
        self.tz = tz
        self.lock = threading.RLock()
        self.orders: dict[int, OrderRecord] = {}
        self.history: list[Transition] = []
        self._rng = random.Random(seed)
        self._next_id = 100
        self._next_item_id = 1
        self._next_meta_id = 1
        self.version = 0
        """Bumped by every change: list selections cached for one version stay valid."""

    # --- ids, time -------------------------------------------------------------------------

    def _take_id(self) -> int:
        """Orders and refunds share one sequence, as in WooCommerce (refund of order 17 was 18)."""
        value, self._next_id = self._next_id, self._next_id + 1
        return value

    def _take_meta_id(self) -> int:
        value, self._next_meta_id = self._next_meta_id, self._next_meta_id + 1
        return value

    def now(self) -> datetime:
        return second(self.clock())

    def local_ts(self, value: datetime) -> int:
        return calendar.timegm(value.astimezone(self.tz).timetuple())

    def _set_created(self, rec: OrderRecord, when: datetime) -> None:
        rec.created = when
        rec.created_ts = calendar.timegm(when.timetuple())
        rec.created_local_ts = self.local_ts(when)

    def _set_modified(self, rec: OrderRecord, when: datetime) -> None:
        rec.modified = when
        rec.modified_ts = calendar.timegm(when.timetuple())
        rec.modified_local_ts = self.local_ts(when)
        rec.cache_json = None
        self.version += 1

    def _record(self, rec: OrderRecord, when: datetime, status: str | None = None) -> None:
        self.history.append(Transition(when, rec.id, status or rec.status, rec.refunded_total))

    def get(self, order_id: int) -> OrderRecord:
        rec = self.orders.get(int(order_id))
        if rec is None:
            raise UnknownOrder(f"no order {order_id}")
        return rec

    # --- creation ----------------------------------------------------------------------------

    def create(
        self,
        *,
        status: str = "pending",
        payment_method: str = "bacs",
        total: str | Decimal | None = None,
        currency: str = "USD",
        email: str = "ada@example.test",
        phone: str = "+15550100",
        first_name: str = "Ada",
        last_name: str = "Lovelace",
        items: Iterable[dict[str, Any]] | None = None,
        set_paid: bool = False,
        created_via: str = "checkout",
        transaction_id: str = "",
        created_at: datetime | None = None,
        ip: str | None = None,
    ) -> int:
        """`created_at` backdates the order (and its paid/completed dates when its status sets
        them): a shop's history from before pollerd's first run, untouched since."""
        if status not in ORDER_STATUSES:
            raise ValueError(f"unknown order status {status!r}; known: {', '.join(ORDER_STATUSES)}")
        with self.lock:
            now = second(created_at) if created_at is not None else self.now()
            lines = self._lines(items, None if total is None else money(total))
            order_total = (
                money(total)
                if total is not None
                else sum((line.total for line in lines), Decimal("0.00"))
            )
            rec = OrderRecord(
                id=self._take_id(),
                status=status,
                currency=currency.upper(),
                total=order_total,
                created=now,
                modified=now,
                payment_method=payment_method,
                payment_method_title=GATEWAY_TITLES.get(payment_method, payment_method.title()),
                created_via=created_via,
                billing=_billing(first_name, last_name, email, phone),
                order_key="wc_order_" + "".join(self._rng.choices(_KEY_ALPHABET, k=13)),
                items=lines,
                transaction_id=transaction_id,
            )
            # A checkout records the buyer's address: one per order from the documentation range
            # (RFC 5737) unless a script gives one (a burst from one address).
            default_ip = f"203.0.113.{rec.id % 254 + 1}" if created_via == "checkout" else ""
            rec.ip = ip if ip is not None else default_ip
            self._set_created(rec, now)
            self._set_modified(rec, now)
            if status in STOCK_REDUCED_AT:
                self._reduce_stock(rec)
            self._maybe_set_dates(rec, now)
            self.orders[rec.id] = rec
            self._record(rec, now)
            if set_paid:
                # REST `set_paid` calls payment_complete() right after the insert.
                self._payment_complete(rec, transaction_id, now)
            return rec.id

    def _lines(
        self, items: Iterable[dict[str, Any]] | None, total: Decimal | None
    ) -> list[LineRecord]:
        if items is None:
            items = [
                {
                    "name": "Test Mug",
                    "sku": "MUG-1",
                    "product_id": 10,
                    "quantity": 1,
                    "total": total if total is not None else Decimal("25.00"),
                }
            ]
        lines = []
        for item in items:
            quantity = int(item.get("quantity", 1))
            if "total" in item:
                line_total = money(item["total"])
            else:
                line_total = money(Decimal(str(item.get("price", "12.50"))) * quantity)
            lines.append(
                LineRecord(
                    id=self._next_item_id,
                    name=str(item.get("name", "Test Mug")),
                    product_id=int(item.get("product_id", 10)),
                    quantity=quantity,
                    sku=str(item.get("sku", "")),
                    total=line_total,
                )
            )
            self._next_item_id += 1
        return lines

    # --- transitions -------------------------------------------------------------------------

    def _reduce_stock(self, rec: OrderRecord) -> None:
        for line in rec.items:
            if not line.meta:
                qty = str(line.quantity)
                line.meta.append(
                    {
                        "id": self._take_meta_id(),
                        "key": "_reduced_stock",
                        "value": qty,
                        "display_key": "_reduced_stock",
                        "display_value": qty,
                    }
                )

    def _maybe_set_dates(self, rec: OrderRecord, now: datetime) -> None:
        """`maybe_set_date_paid` + `maybe_set_date_completed` of WC_Order::set_status."""
        if rec.paid is None and rec.status in ("processing", "completed"):
            rec.paid = now
        if rec.status == "completed":
            rec.completed = now

    def _change_status(self, rec: OrderRecord, status: str, now: datetime) -> bool:
        if status == rec.status:
            return False
        rec.status = status
        if status in STOCK_REDUCED_AT:
            self._reduce_stock(rec)
        elif status in STOCK_RESTORED_AT:
            for line in rec.items:
                line.meta = [m for m in line.meta if m.get("key") != "_reduced_stock"]
        self._maybe_set_dates(rec, now)
        self._set_modified(rec, now)
        self._record(rec, now)
        return True

    def _payment_complete(
        self, rec: OrderRecord, transaction_id: str = "", when: datetime | None = None
    ) -> None:
        """`WC_Order::payment_complete`: from an unpaid status to `processing` with date_paid."""
        if rec.status not in PAYMENT_COMPLETE_FROM:
            return
        now = when or self.now()
        if transaction_id:
            rec.transaction_id = transaction_id
        if rec.paid is None:
            rec.paid = now
        self._change_status(rec, "processing", now)

    def set_status(self, order_id: int, status: str) -> None:
        if status == "trash":
            self.trash(order_id)
            return
        if status not in ORDER_STATUSES:
            raise ValueError(f"unknown order status {status!r}; known: {', '.join(ORDER_STATUSES)}")
        with self.lock:
            rec = self.get(order_id)
            if status == "refunded" and rec.refunded_total < rec.total:
                # wc_order_fully_refunded(): the status change creates a refund for the rest.
                self.refund(order_id, rec.total - rec.refunded_total, FULL_REFUND_REASON)
                return
            self._change_status(rec, status, self.now())

    def checkout(self, order_id: int, transaction_id: str = "") -> str:
        """What the order's gateway does in `process_payment()`; returns the new status."""
        with self.lock:
            rec = self.get(order_id)
            if rec.status not in ("pending", "failed", "checkout-draft"):
                raise ValueError(f"order {order_id} is {rec.status}; only unpaid orders check out")
            if rec.payment_method in OFFLINE_ON_HOLD:
                self._change_status(rec, "on-hold", self.now())
            elif rec.payment_method == "cod":
                # The quirk: COD orders go `processing` and get date_paid with no money collected.
                self._change_status(rec, "processing", self.now())
            else:
                txn = transaction_id or "pi_" + "".join(self._rng.choices(_KEY_ALPHABET, k=24))
                self._payment_complete(rec, txn)
            return rec.status

    def refund(self, order_id: int, amount: str | Decimal, reason: str = "") -> int:
        """`wc_create_refund`: a negative total in `refunds`, its id from the order sequence."""
        with self.lock:
            rec = self.get(order_id)
            value = money(amount)
            remaining = rec.total - rec.refunded_total
            if value <= 0 or value > remaining:
                raise ValueError(f"Invalid refund amount. (order {order_id} has {remaining} left)")
            now = self.now()
            refund = RefundRecord(id=self._take_id(), amount=value, reason=reason, created=now)
            rec.refunds.insert(0, refund)
            if value == remaining:
                if not self._change_status(rec, "refunded", now):
                    self._set_modified(rec, now)
                    self._record(rec, now)
            else:
                self._set_modified(rec, now)
                self._record(rec, now)
            return refund.id

    def trash(self, order_id: int, when: datetime | None = None) -> None:
        with self.lock:
            rec = self.get(order_id)
            if rec.status == "trash":
                return
            now = self.now() if when is None else second(when)
            local = now.astimezone(self.tz)
            rec.meta = [m for m in rec.meta if not str(m.get("key", "")).startswith("_wp_")]
            rec.meta += [
                {
                    "id": self._take_meta_id(),
                    "key": "_wp_trash_meta_status",
                    "value": "wc-" + rec.status,
                },
                {
                    "id": self._take_meta_id(),
                    "key": "_wp_trash_meta_time",
                    "value": str(calendar.timegm(now.timetuple())),
                },
                {
                    "key": "_wp_desired_post_slug",
                    "value": "order-" + local.strftime("%B-%d-%Y-%I%M-%p").lower(),
                    "id": self._take_meta_id(),
                },
            ]
            rec.status = "trash"
            self._set_modified(rec, now)
            self._record(rec, now)

    def restore(self, order_id: int, status: str | None = None) -> None:
        """Untrash: to `status`, or to the status it had when trashed."""
        with self.lock:
            rec = self.get(order_id)
            if rec.status != "trash":
                raise ValueError(f"order {order_id} is not in the trash")
            previous = next(
                (str(m["value"])[3:] for m in rec.meta if m.get("key") == "_wp_trash_meta_status"),
                "pending",
            )
            rec.meta = [m for m in rec.meta if not str(m.get("key", "")).startswith("_wp_")]
            target = status or previous
            if target not in ORDER_STATUSES:
                raise ValueError(f"unknown order status {target!r}")
            self._change_status(rec, target, self.now())

    def delete(self, order_id: int) -> None:
        """Force delete: the order is gone; the REST API answers 404 from now on."""
        with self.lock:
            rec = self.get(order_id)
            del self.orders[rec.id]
            self.version += 1
            self._record(rec, self.now(), "deleted")

    def touch(self, order_id: int) -> None:
        """Bump date_modified with no other change (HPOS issue #41226: opening the edit screen)."""
        with self.lock:
            self._set_modified(self.get(order_id), self.now())

    def corrupt(self, order_id: int, fields: dict[str, Any]) -> None:
        """Serve `fields` as they are (None: render normally again); modified bumped, as the
        plugin that wrote them would."""
        with self.lock:
            rec = self.get(order_id)
            for key, value in fields.items():
                if value is None:
                    rec.overrides.pop(key, None)
                else:
                    rec.overrides[key] = value
            self._set_modified(rec, self.now())

    def set_modified(self, order_ids: Iterable[int], when: datetime) -> None:
        """Force orders into one second, the precondition of the orderby=modified page drift."""
        with self.lock:
            moment = second(when)
            for order_id in order_ids:
                self._set_modified(self.get(order_id), moment)


def _billing(first: str, last: str, email: str, phone: str) -> dict[str, str]:
    return {
        "first_name": first,
        "last_name": last,
        "company": "",
        "address_1": "1 Loop St",
        "address_2": "",
        "city": "Springfield",
        "state": "NY",
        "postcode": "12345",
        "country": "US",
        "email": email,
        "phone": phone,
    }
