"""Shopify's events (DESIGN §4): which events an order's current state proves happened.
Shopify dates every change (transactions, refunds, fulfillments, `cancelledAt`), so the common
`evidence` dates them all."""

from __future__ import annotations

from datetime import datetime

from pollerd.model import Order
from pollerd.sources.plugin import evidence

__all__ = ["SHOPIFY_PAID", "SHOPIFY_UNPAID", "ShopifyRules", "shopify_implied"]

SHOPIFY_PAID = frozenset({"paid", "partially_refunded", "refunded"})
"""Financial statuses that prove money was captured. AUTHORIZED is a hold on the card, not a
payment; PENDING, PARTIALLY_PAID, EXPIRED and VOIDED are not paid either (DESIGN §4). A refund
proves an earlier capture, so an order first seen REFUNDED is also paid."""


SHOPIFY_UNPAID = frozenset({"pending", "authorized"})


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


class ShopifyRules:
    """Shopify's rules have no per-store knobs."""

    def implied(self, order: Order, *, known: bool) -> set[str]:
        return shopify_implied(order)

    def unpaid(self, order: Order) -> bool:
        """Awaiting payment: PENDING, or AUTHORIZED (a hold on the card, not captured); a
        cancelled order is not awaiting anything."""
        return order.cancelled_at is None and order.financial_status in SHOPIFY_UNPAID

    def evidence(self, order: Order, kind: str) -> datetime | None:
        return evidence(order, kind)
