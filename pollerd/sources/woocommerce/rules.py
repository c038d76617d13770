"""WooCommerce's events (DESIGN §4): which events an order's current state proves happened,
and when. Sticky fields are why the diff works on implied events and not a field comparison:
WooCommerce keeps `date_paid` after cancel/refund, and HPOS bumps `updated_at` when an admin
merely opens an order (woocommerce#41226). A cancellation keeps no date of its own; the trash
is dated by `_wp_trash_meta_time`."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import datetime

from pollerd.model import Order
from pollerd.sources.plugin import evidence

__all__ = ["WC_DRAFT", "WC_PAID_STATUSES", "WC_UNPAID", "WooRules", "pay_rules", "woo_implied"]

WC_DRAFT = frozenset({"checkout-draft", "auto-draft"})
WC_PAID_STATUSES = frozenset({"processing", "completed"})
WC_UNPAID = frozenset({"pending", "on-hold"})


@dataclass(frozen=True)
class WooRules:
    """Per-store knobs of the WooCommerce rules."""

    # Cash on delivery gets `date_paid` at `processing` although no money moved (research
    # woocommerce.md §1.4); such methods count as paid only once the order is `completed`.
    pay_on_delivery_methods: frozenset[str] = frozenset({"cod"})

    def implied(self, order: Order, *, known: bool) -> set[str]:
        return woo_implied(order, self, known)

    def unpaid(self, order: Order) -> bool:
        """Awaiting payment: `pending` (not paid yet) or `on-hold` (awaiting a transfer)."""
        return order.status in WC_UNPAID

    def evidence(self, order: Order, kind: str) -> datetime | None:
        """Cash on delivery counts as paid at `completed`, whatever `date_paid` says."""
        if kind == "order.paid" and order.payment_method in self.pay_on_delivery_methods:
            return order.completed_at
        return evidence(order, kind)


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
    if order.hidden_from and order.hidden_from != "trash":
        return order.hidden_from
    if order.completed_at is not None:
        return "completed"
    return "processing" if order.paid_at is not None else "auto-draft"


def pay_rules(methods: Collection[str]) -> WooRules:
    return WooRules(pay_on_delivery_methods=frozenset(methods))
