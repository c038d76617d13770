"""Pure: (last Snapshot or None, Order now) → (new Snapshot, Events). Where "paid" is decided.

The diff does not compare two observations field by field. It asks which events the order's
*current* state implies have happened (a refunded order was created and paid), and emits those
not yet in the snapshot's `fired` set, in canonical order. That one rule gives:

- each event at most once per order and type, even with sticky fields (WooCommerce keeps
  `date_paid` after cancel/refund, so a naive "date_paid is set" rule would re-fire);
- skipped states are filled in (first seen `completed` ⇒ created + paid + fulfilled);
- `updated_at` moving with nothing changed produces nothing (HPOS bumps it when an admin merely
  opens an order, woocommerce#41226).

The store's start point splits history: what happened after it alerts, what happened before it
does not, however old the order (DESIGN §6). An order first seen that was created after the start
point announces everything its state implies (a trashed paid order: created, paid, deleted). One
created before it never announces its creation; each other implied event is dated by the order's
own evidence (`date_paid`, `date_completed`, `cancelledAt`, refund and fulfillment times) and
alerts only when that date is at or after the start point (the trash is dated too, by
`_wp_trash_meta_time`). An event with no date of its own (a WooCommerce cancellation) cannot be
dated: pollerd's first-run baseline (`pollerd.baseline`) snapshots the orders that can still
change so such a change is diffed against a known state; for an order outside it the order's
`updated_at` decides, since a false alert is cheaper than a lost one.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from pollerd.model import EVENT_TYPES, Deletion, Dispute, Event, Order, Snapshot, utc_iso

WC_DRAFT = frozenset({"checkout-draft", "auto-draft"})
WC_PAID_STATUSES = frozenset({"processing", "completed"})


@dataclass(frozen=True)
class WooRules:
    """Per-store knobs of the WooCommerce rules."""

    # Cash on delivery gets `date_paid` at `processing` although no money moved (research
    # woocommerce.md §1.4); such methods count as paid only once the order is `completed`.
    pay_on_delivery_methods: frozenset[str] = frozenset({"cod"})


def woo_implied(order: Order, rules: WooRules, known: bool) -> set[str]:
    """The events WooCommerce's current state proves happened."""
    status = order.status
    if status in WC_DRAFT:
        return set()  # a cart in progress (Blocks checkout), never an order yet (woo#37958)
    if status == "trash":
        # A trashed order keeps its dates and says what it was (`_wp_trash_meta_status`), so its
        # first sight can fill in what happened before the trash (created, paid, ...). A draft
        # trashed before anyone saw it, or one pollerd never knew, is noise.
        before = woo_implied(replace(order, status=_before_trash(order)), rules, known)
        return before | {"order.deleted"} if before or known else set()
    implied = {"order.created"}
    on_delivery = order.payment_method in rules.pay_on_delivery_methods
    completed = status == "completed" or (status == "refunded" and order.completed_at is not None)
    if order.paid_at is not None:
        if on_delivery:
            paid = completed
        else:
            # date_paid is only ever set on reaching processing/completed, so it proves a payment
            # even when the order has since been cancelled or refunded; on-hold never sets it.
            paid = status in WC_PAID_STATUSES or status in ("cancelled", "refunded")
        if paid:
            implied.add("order.paid")
    elif status == "refunded" and not on_delivery:
        implied.add("order.paid")  # money came back, so money came in (admin orders lack date_paid)
    elif status == "completed" and not on_delivery:
        implied.add("order.paid")  # a completed order without date_paid: admin-created (docs #723)
    if completed:
        implied.add("order.fulfilled")
    if status == "cancelled":
        implied.add("order.cancelled")
    if status == "refunded":
        implied.add("order.refunded")
    elif order.refunded_total > 0:
        implied.add("order.partially_refunded")
    return implied


def _before_trash(order: Order) -> str:
    """The status a trashed order had; guessed from its dates when the trash meta is missing
    (with no dates either it may have been a draft, which is never announced)."""
    if order.trashed_from and order.trashed_from != "trash":
        return order.trashed_from
    if order.completed_at is not None:
        return "completed"
    return "processing" if order.paid_at is not None else "auto-draft"


SHOPIFY_PAID = frozenset({"paid", "partially_refunded", "refunded"})
"""Financial statuses that prove money was captured. AUTHORIZED is a hold on the card, not a
payment; PENDING, PARTIALLY_PAID, EXPIRED and VOIDED are not paid either (DESIGN §4). A refund
proves an earlier capture, so an order first seen REFUNDED is also paid."""


def shopify_implied(order: Order) -> set[str]:
    """The events Shopify's current state proves happened."""
    implied = {"order.created"}
    financial = order.financial_status
    if financial in SHOPIFY_PAID:
        implied.add("order.paid")
    if order.cancelled_at is not None:
        implied.add("order.cancelled")
    if financial == "refunded":
        implied.add("order.refunded")
    elif financial == "partially_refunded" or order.refunded_total > 0:
        implied.add("order.partially_refunded")
    if order.fulfillment_status == "fulfilled":
        implied.add("order.fulfilled")
    return implied


def evidence(order: Order, kind: str, rules: WooRules | None = None) -> datetime | None:
    """When the change happened by the order's own record; None when it keeps no date for it
    (a WooCommerce cancellation, or a refund: its `refunds` carry no dates; the trash is dated
    by `_wp_trash_meta_time`)."""
    if kind == "order.created":
        return order.created_at
    if kind == "order.paid":
        on_delivery = (
            order.platform == "woocommerce"
            and order.payment_method in (rules or WooRules()).pay_on_delivery_methods
        )
        # Cash on delivery counts as paid at `completed`, whatever `date_paid` says.
        return order.completed_at if on_delivery else order.paid_at
    if kind == "order.fulfilled":
        return order.completed_at
    if kind == "order.cancelled":
        return order.cancelled_at
    if kind == "order.deleted":
        return order.trashed_at
    if kind == "order.partially_refunded" and order.refunds_at:
        return order.refunds_at[0]
    if kind == "order.refunded" and order.refunds_at:
        return order.refunds_at[-1]
    return None


def _occurred(order: Order, kind: str, rules: WooRules | None) -> datetime:
    """When the change happened, from the order's own fields where it has one."""
    return evidence(order, kind, rules) or order.updated_at


def _after_start(order: Order, kind: str, start_at: datetime, rules: WooRules | None) -> bool:
    """Did this event of an order pollerd has never seen, created before the start point,
    happen after the start point? Its creation never did. Without a date of its own the event
    is undecidable from this one observation; `updated_at` decides (the order did change after
    the start point), because a false alert is cheaper than a lost one."""
    if kind == "order.created":
        return False
    return _occurred(order, kind, rules) >= start_at


def diff(
    snapshot: Snapshot | None,
    order: Order,
    *,
    detected_at: datetime,
    start_at: datetime,
    rules: WooRules | None = None,
) -> tuple[Snapshot, list[Event]]:
    if order.platform == "woocommerce":
        known = snapshot is not None and bool(snapshot.fired)
        implied = woo_implied(order, rules or WooRules(), known=known)
    elif order.platform == "shopify":
        implied = shopify_implied(order)
    else:
        raise ValueError(f"no diff rules for platform {order.platform!r}")
    fired = snapshot.fired if snapshot is not None else frozenset()
    new = [t for t in EVENT_TYPES if t in implied and t not in fired]
    if snapshot is None and order.created_at < start_at:
        new = [t for t in new if _after_start(order, t, start_at, rules)]
    snap = Snapshot(
        store=order.store,
        order_id=order.id,
        status=order.status,
        updated_at=order.updated_at,
        refunded_total=order.refunded_total,
        fired=frozenset(fired | implied),
    )
    order_json = order.to_json()
    events = [
        Event(
            type=kind,
            store=order.store,
            platform=order.platform,
            order_id=order.id,
            occurred_at=_occurred(order, kind, rules),
            detected_at=detected_at,
            test=order.test,
            order=order_json,
            reason=order.cancel_reason if kind == "order.cancelled" else None,
        )
        for kind in new
    ]
    return snap, events


def unchanged(snapshot: Snapshot | None, updated_at: datetime, status: str) -> bool:
    """True when a cheap listing row shows nothing new, so the full order need not be fetched."""
    return snapshot is not None and snapshot.updated_at == updated_at and snapshot.status == status


def pay_rules(methods: Collection[str]) -> WooRules:
    return WooRules(pay_on_delivery_methods=frozenset(methods))


def deleted(
    snapshot: Snapshot | None,
    deletion: Deletion,
    *,
    store: str,
    platform: str,
    detected_at: datetime,
    last_order: dict[str, Any] | None,
    start_at: datetime | None = None,
) -> tuple[Snapshot | None, list[Event]]:
    """A destroyed order (Shopify's events feed, a WooCommerce order gone for good): announced
    once. An order pollerd knew, or (given `start_at`) one it never saw that was destroyed at
    or after the start point, however old (the deletion is dated); a draft it saw, or an
    unknown order destroyed before the start point, is noise. The order as last announced is
    carried along, since the platform no longer has it."""
    if snapshot is None:
        if start_at is None or deletion.deleted_at < start_at:
            return None, []
        snapshot = Snapshot(
            store=store,
            order_id=deletion.order_id,
            status="unknown",
            updated_at=deletion.deleted_at,
            fired=frozenset({"order.created"}),
        )
    if not snapshot.fired or "order.deleted" in snapshot.fired:
        return snapshot, []
    snap = Snapshot(
        store=store,
        order_id=snapshot.order_id,
        status="deleted",
        updated_at=deletion.deleted_at,
        refunded_total=snapshot.refunded_total,
        fired=snapshot.fired | {"order.deleted"},
    )
    order = dict(last_order or {"id": snapshot.order_id})
    order["status"] = "deleted"
    event = Event(
        type="order.deleted",
        store=store,
        platform=platform,
        order_id=snapshot.order_id,
        occurred_at=deletion.deleted_at,
        detected_at=detected_at,
        test=False,
        order=order,
        reason=deletion.message or None,
    )
    return snap, [event]


def dispute_key(dispute_id: str) -> str:
    """Disputes share the snapshot table with orders under this key."""
    return f"dispute:{dispute_id}"


def dispute_diff(
    snapshot: Snapshot | None,
    dispute: Dispute,
    *,
    store: str,
    platform: str,
    detected_at: datetime,
    start_at: datetime,
    order: dict[str, Any] | None,
) -> tuple[Snapshot, list[Event]]:
    """`dispute.opened` at first sight (unless it predates the start point: a silent baseline),
    `dispute.updated` on every later status change, each (dispute, status) once."""
    snap = Snapshot(
        store=store,
        order_id=dispute_key(dispute.id),
        status=dispute.status,
        updated_at=detected_at,
        fired=(snapshot.fired if snapshot else frozenset()) | {dispute.status},
    )
    if snapshot is None:
        kind = None if dispute.initiated_at < start_at else "dispute.opened"
    elif dispute.status in snapshot.fired or dispute.status == snapshot.status:
        kind = None
    else:
        kind = "dispute.updated"
    if kind is None:
        return snap, []
    body = {
        "id": dispute.id,
        "status": dispute.status,
        "type": dispute.type,
        "amount": dispute.amount,
        "currency": dispute.currency,
        "reason": dispute.reason,
        "initiated_at": utc_iso(dispute.initiated_at),
        "evidence_due_by": _day_or_time(dispute.evidence_due_by),
        "finalized_on": _day_or_time(dispute.finalized_on),
    }
    order_id = dispute.order_id or f"dispute-{dispute.id}"
    event = Event(
        type=kind,
        store=store,
        platform=platform,
        order_id=order_id,
        occurred_at=dispute.initiated_at if kind == "dispute.opened" else detected_at,
        detected_at=detected_at,
        test=False,
        order=order or {"id": order_id, "number": dispute.order_number},
        reason=dispute.reason,
        dispute=body,
    )
    return snap, [event]


def _day_or_time(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return utc_iso(value)
    return str(value)  # a date: ISO YYYY-MM-DD
