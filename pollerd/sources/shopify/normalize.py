"""Shopify GraphQL `Order` nodes → pollerd `Order` / `Listed` (shared by the GraphQL source and
the bulk export, whose JSONL lines carry the same fields).

Why the rules below (contract: brief shopify-source.md; facts: research/shopify.md):

- `status` is `"cancelled"` when `cancelledAt` is set, else `displayFinancialStatus` lowercased.
  The cheap listing row computes it with the very same function from the very same fields, so
  `Listed.status == Order.status` for one version of an order and the sync never fetches an
  order that did not change (nor skips one that did).
- Shopify sends money as `"25.0"`; pollerd shows `"25.00"` everywhere, REST and GraphQL alike.
- The id is `legacyResourceId` (the number the admin URL and REST use). Shopify's documentation
  examples omit it, so the numeric tail of the GID `id` is accepted as the same value.
- A payload that breaks the contract (no id, no `updatedAt`, a date that does not parse) raises
  `OrderPayloadError` naming the order and the field: never a silently wrong snapshot.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from pollerd.model import (
    Contact,
    LineItem,
    Order,
    full_name,
    mask_email,
    mask_phone,
    normal_ip,
    short_name,
)
from pollerd.sources.base import Listed
from pollerd.sources.payload import (
    MAX_DIGITS,
    OrderPayloadError,
    payload_date,
    payload_quantity,
)

__all__ = [
    "LINE_ITEMS",
    "LIST_FIELDS",
    "ORDER_COST",
    "ORDER_FIELDS",
    "OrderPayloadError",
    "admin_url",
    "captured_at",
    "legacy_id",
    "listed",
    "money",
    "normalize_order",
    "order_gid",
    "order_status",
    "shop_handle",
]

LINE_ITEMS = 10
"""Line items kept per order: enough for an alert; each one costs 3 points per fetched order."""

EVIDENCE = 20
"""Transactions, refunds and fulfillments read per order to date its changes (oldest first)."""

LIST_FIELDS = "legacyResourceId updatedAt cancelledAt displayFinancialStatus"
"""Scalars only: a connection of N rows costs 2 + N points (one per Order object)."""

_MONEY = "shopMoney { amount currencyCode }"

ORDER_FIELDS = (
    "id legacyResourceId name createdAt updatedAt cancelledAt cancelReason "
    "displayFinancialStatus displayFulfillmentStatus test email phone clientIp "
    "paymentGatewayNames "
    f"totalPriceSet {{ {_MONEY} }} totalRefundedSet {{ {_MONEY} }} "
    "customer { firstName lastName email phone } "
    f"lineItems(first: {LINE_ITEMS}) "
    f"{{ nodes {{ name quantity originalTotalSet {{ {_MONEY} }} }} }} "
    f"transactions(first: {EVIDENCE}) {{ kind status processedAt }} "
    f"refunds(first: {EVIDENCE}) {{ createdAt }} "
    f"fulfillments(first: {EVIDENCE}) {{ createdAt status }}"
)
"""Full order selection. Requested cost per order: 1 (Order) + 2 + 2 (money bags) + 1 (customer)
+ 2 + 10 × 3 (line items) + 3 (three lists of objects, one point each) = 41 points, refunded
down to what really came back. The lists date each change (capture, refund, fulfillment), so an
order placed before pollerd's first run alerts only what happened after the start point."""

ORDER_COST = 1 + 2 + 2 + 1 + 2 + LINE_ITEMS * 3 + 3
"""What one `... on Order { ORDER_FIELDS }` is charged up front (for sizing `nodes(ids:)`)."""

_CENT = Decimal("0.01")
_GID_PREFIX = "gid://shopify/Order/"


def money(amount: Any) -> str:
    """`"25.0"` → `"25.00"`. Raises ValueError on anything that is not an amount."""
    if isinstance(amount, bool) or not isinstance(amount, str | int | float | Decimal):
        raise ValueError(f"not an amount: {str(amount)[:40]!r}")
    try:
        value = Decimal(str(amount)) if str(amount).isascii() else Decimal("NaN")
    except InvalidOperation:
        raise ValueError(f"not an amount: {str(amount)[:40]!r}") from None
    if not value.is_finite():
        raise ValueError(f"not an amount: {str(amount)[:40]!r}")
    if value and value.adjusted() >= MAX_DIGITS:  # quantize() raised InvalidOperation past 1e26
        raise ValueError(f"out of range: {str(amount)[:40]!r}")
    return str(value.quantize(_CENT, rounding=ROUND_HALF_EVEN))


def shop_handle(shop: str) -> str:
    """`acme.myshopify.com` → `acme` (the admin.shopify.com/store/{handle} path segment)."""
    shop = shop.strip().lower().removeprefix("https://").removeprefix("http://").rstrip("/")
    return shop.removesuffix(".myshopify.com")


def admin_url(shop: str, order_id: str) -> str:
    return f"https://admin.shopify.com/store/{shop_handle(shop)}/orders/{order_id}"


def order_gid(order_id: str | int) -> str:
    return f"{_GID_PREFIX}{order_id}"


def legacy_id(node: dict[str, Any], *, store: str) -> str:
    """`legacyResourceId`, else the numeric tail of the GID; `OrderPayloadError` without either."""
    raw = node.get("legacyResourceId")
    if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0:
        return str(raw)
    # isascii(): "²".isdigit() is true and int("²") raised ValueError; "١٢" made an id of it
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and int(raw) > 0:
        return raw
    gid = node.get("id")
    if isinstance(gid, str) and gid.startswith(_GID_PREFIX):
        tail = gid[len(_GID_PREFIX) :].split("?", 1)[0]
        if tail.isascii() and tail.isdigit() and int(tail) > 0:
            return tail
    shown = raw if raw is not None else gid
    raise OrderPayloadError(store, "?", "legacyResourceId", f"missing or not an id: {shown!r}")


def order_status(node: dict[str, Any], *, store: str, oid: str) -> str:
    """The one status rule, used by both `listed` and `normalize_order`."""
    if payload_date(node, "cancelledAt", store, oid) is not None:
        return "cancelled"
    return _financial(node, store, oid)


def listed(node: dict[str, Any], *, store: str) -> Listed:
    """A listing row (`LIST_FIELDS`) → `Listed`, with the status `normalize_order` would give."""
    oid = legacy_id(node, store=store)
    updated = payload_date(node, "updatedAt", store, oid, required=True)
    assert updated is not None
    return Listed(id=oid, updated_at=updated, status=order_status(node, store=store, oid=oid))


# Shopify's gateway names are ids for its own gateways and the merchant's wording for manual
# ones ("Cash on Delivery (COD)"); the ids read badly in an alert.
_GATEWAYS = {
    "shopify_payments": "Shopify Payments",
    "shopify_installments": "Shop Pay Installments",
    "paypal": "PayPal",
    "manual": "Manual payment",
    "gift_card": "Gift card",
    "bogus": "Bogus Gateway (test)",
    "cash": "Cash",
}


def gateway_title(name: str) -> str:
    """`shopify_payments` → `Shopify Payments`; an unknown id `some_gateway` → `Some gateway`;
    a name the merchant wrote is kept as written."""
    if name in _GATEWAYS:
        return _GATEWAYS[name]
    if name and name == name.lower() and " " not in name and "_" in name:
        return name.replace("_", " ").capitalize()
    return name


def normalize_order(node: dict[str, Any], *, store: str, shop: str) -> Order:
    """A GraphQL Order node (`ORDER_FIELDS`, or a bulk JSONL order line with its line items
    attached as `lineItems.nodes`) → `Order`."""
    oid = legacy_id(node, store=store)
    updated = payload_date(node, "updatedAt", store, oid, required=True)
    created = payload_date(node, "createdAt", store, oid) or updated
    assert updated is not None and created is not None
    total, currency = _money_bag(node, "totalPriceSet", store, oid, required=True)
    refunded, _ = _money_bag(node, "totalRefundedSet", store, oid)
    if Decimal(refunded) < 0:  # a refund of -1.00 would read as money coming back in
        field = "totalRefundedSet.shopMoney.amount"
        raise OrderPayloadError(store, oid, field, f"negative: {refunded}")
    customer = table(node, "customer")
    gateways = node.get("paymentGatewayNames")
    gateway = gateways[0] if isinstance(gateways, list) and gateways else ""
    gateway = gateway if isinstance(gateway, str) else ""
    reason = node.get("cancelReason")
    fulfillment = node.get("displayFulfillmentStatus")
    name = node.get("name")
    email = _text(node.get("email")) or _text(customer.get("email"))
    phone = _text(node.get("phone")) or _text(customer.get("phone"))
    first, last = customer.get("firstName"), customer.get("lastName")
    return Order(
        store=store,
        platform="shopify",
        id=oid,
        number=name if isinstance(name, str) and name else f"#{oid}",
        status=order_status(node, store=store, oid=oid),
        created_at=created,
        updated_at=updated,
        total=total,
        currency=currency or _text(node.get("currencyCode")) or "",
        cancelled_at=payload_date(node, "cancelledAt", store, oid),
        cancel_reason=reason.lower() if isinstance(reason, str) and reason else None,
        payment_method=gateway,
        payment_method_title=gateway_title(gateway),
        refunded_total=Decimal(refunded),
        financial_status=_financial(node, store, oid),
        fulfillment_status=fulfillment.lower() if isinstance(fulfillment, str) else None,
        test=node.get("test") is True,
        customer_email=mask_email(email),
        customer_phone=mask_phone(phone),
        customer_name=short_name(first, last),
        contact=Contact.of(full_name(first, last), email, phone),
        customer_ip=normal_ip(node.get("clientIp")),
        admin_url=admin_url(shop, oid),
        line_items=tuple(_line_items(node.get("lineItems"), store, oid)),
        paid_at=captured_at(node.get("transactions"), store, oid),
        completed_at=max(_dates(node.get("fulfillments"), "createdAt", store, oid), default=None),
        refunds_at=tuple(sorted(_dates(node.get("refunds"), "createdAt", store, oid))),
    )


_CAPTURES = frozenset({"SALE", "CAPTURE"})


def captured_at(transactions: Any, store: str, oid: str) -> datetime | None:
    """When money first came in: the oldest successful sale or capture. An authorization is a
    hold, not a payment (DESIGN §4)."""
    if not isinstance(transactions, list):
        return None
    paid = [
        t
        for t in transactions
        if isinstance(t, dict) and t.get("kind") in _CAPTURES and t.get("status") == "SUCCESS"
    ]
    return min(_dates(paid, "processedAt", store, oid), default=None)


def _dates(items: Any, key: str, store: str, oid: str) -> list[datetime]:
    """The `key` dates of a list of objects (absent list: none; a bad date: the order's error)."""
    if not isinstance(items, list):
        return []
    found = []
    for item in items:
        if isinstance(item, dict):
            when = payload_date(item, key, store, oid)
            if when is not None:
                found.append(when)
    return found


# --- fields -------------------------------------------------------------------------------------


def _financial(node: dict[str, Any], store: str, oid: str) -> str:
    if "displayFinancialStatus" not in node:
        raise OrderPayloadError(store, oid, "displayFinancialStatus", "missing")
    raw = node["displayFinancialStatus"]
    if raw is None:
        # Shopify documents the field as nullable (orders with nothing to pay, e.g. some drafts).
        return "none"
    if not isinstance(raw, str) or not raw:
        raise OrderPayloadError(store, oid, "displayFinancialStatus", f"not a status: {raw!r}")
    return raw.lower()


def _money_bag(
    node: dict[str, Any], field: str, store: str, oid: str, *, required: bool = False
) -> tuple[str, str | None]:
    bag = node.get(field)
    shop_money = bag.get("shopMoney") if isinstance(bag, dict) else None
    if not isinstance(shop_money, dict):
        if required:
            raise OrderPayloadError(store, oid, f"{field}.shopMoney", "missing")
        return "0.00", None
    try:
        amount = money(shop_money.get("amount"))
    except ValueError as exc:
        raise OrderPayloadError(store, oid, f"{field}.shopMoney.amount", str(exc)) from None
    return amount, _text(shop_money.get("currencyCode"))


def _line_items(connection: Any, store: str, oid: str) -> list[LineItem]:
    """`lineItems { nodes }` or `lineItems { edges { node } }` (the docs examples use edges)."""
    if connection is None:
        return []
    if not isinstance(connection, dict):
        raise OrderPayloadError(store, oid, "lineItems", "not a connection")
    nodes = connection.get("nodes")
    if nodes is None:
        edges = connection.get("edges") or []
        if not isinstance(edges, list):  # `true` here raised TypeError
            raise OrderPayloadError(store, oid, "lineItems.edges", "not a list")
        nodes = [e.get("node") for e in edges if isinstance(e, dict)]
    if not isinstance(nodes, list):
        raise OrderPayloadError(store, oid, "lineItems.nodes", "not a list")
    items: list[LineItem] = []
    for i, item in enumerate(nodes[:LINE_ITEMS]):
        if not isinstance(item, dict):
            raise OrderPayloadError(store, oid, f"lineItems[{i}]", "not an object")
        quantity = item.get("quantity")
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            raise OrderPayloadError(
                store, oid, f"lineItems[{i}].quantity", f"not an integer: {quantity!r}"
            )
        payload_quantity(quantity, f"lineItems[{i}].quantity", store, oid)  # bounded
        total, _ = _money_bag(item, "originalTotalSet", store, oid)
        items.append(LineItem(name=str(item.get("name") or ""), quantity=quantity, total=total))
    return items


def table(node: dict[str, Any], key: str) -> dict[str, Any]:
    """`node[key]` when it is an object, else an empty one (absent, null, or broken)."""
    value = node.get(key)
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None
