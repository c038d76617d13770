"""REST Admin API order payloads (`orders.json`, snake_case) → pollerd's `Order` and `Listed`.

The GraphQL source is the reference: for one version of an order both sources must produce the
same `Order`, field by field (the diff compares snapshots, and a store may switch `api`). So every
rule here is written as "the REST field that means the same as the GraphQL one":

- `status` is "cancelled" when `cancelled_at` is set, else `financial_status` (REST already sends
  GraphQL's `displayFinancialStatus` lowercased). The cheap listing asks for exactly the two
  fields this needs, so `Listed.status == Order.status`.
- `fulfillment_status`: REST says null/"partial" where GraphQL says UNFULFILLED/PARTIALLY_FULFILLED.
- Money comes from the `*_set.shop_money` bag when present (GraphQL reads `shopMoney`), else the
  plain field (which is shop currency too); "25.0" becomes "25.00".
- A line's total is unit `price` × `quantity`: GraphQL's `originalTotalSet` is the same product
  (before discounts), while REST has no per-line total.
- `refunded_total` sums the successful `refund` transactions of `refunds[]`: REST has no
  `totalRefundedSet`, and those transactions are the money that went back.

Only masked customer data survives. Pure functions; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pollerd.errors import SourceError
from pollerd.model import LineItem, Order, mask_email, mask_phone, parse_utc, short_name

MAX_LINE_ITEMS = 10
"""The GraphQL source reads `lineItems(first: 10)`; alerts show a few lines, not a manifest."""

FULFILLMENT = {None: "unfulfilled", "partial": "partially_fulfilled"}
"""REST `fulfillment_status` values that differ from GraphQL's `displayFulfillmentStatus`;
everything else ("fulfilled", "restocked") is the same word."""

CENT = Decimal("0.01")


class OrderPayloadError(SourceError):
    """An order (or listing row) that breaks the API's contract: names the order and field.

    Neither retryable (the same order comes back the same way) nor a store-wide fatal problem;
    the daemon logs it as an unexpected error of the pass.
    """

    def __init__(self, store: str, order_id: object, field: str, problem: str) -> None:
        self.order_id = order_id
        self.field = field
        super().__init__(store, f"order {order_id}: field {field}: {problem}")


def shop_handle(shop: str) -> str:
    """`acme.myshopify.com` → `acme`, the path segment of admin.shopify.com URLs."""
    return shop.removesuffix(".myshopify.com")


def order_status(payload: dict[str, Any], store: str, oid: str) -> str:
    """"cancelled" once cancelled, else the financial status: one rule for rows and orders."""
    if payload.get("cancelled_at"):
        return "cancelled"
    financial = payload.get("financial_status")
    if financial is None:
        return ""  # Shopify leaves it null on some imported/draft-converted orders
    if not isinstance(financial, str):
        raise OrderPayloadError(store, oid, "financial_status", f"not a string: {financial!r}")
    return financial.lower()


def listed_row(payload: Any, store: str) -> tuple[str, datetime, str]:
    """(id, updated_at, status) of a listing row fetched with
    `fields=id,updated_at,cancelled_at,financial_status`."""
    if not isinstance(payload, dict):
        raise OrderPayloadError(store, "?", "orders[]", f"not an object: {type(payload).__name__}")
    oid = order_id(payload, store)
    updated = _date(payload, "updated_at", store, oid, required=True)
    assert updated is not None
    return oid, updated, order_status(payload, store, oid)


def normalize(payload: dict[str, Any], *, store: str, shop: str) -> Order:
    """A full REST order → `Order`, equal to what the GraphQL source makes of the same order."""
    oid = order_id(payload, store)
    created = _date(payload, "created_at", store, oid, required=True)
    updated = _date(payload, "updated_at", store, oid, required=True)
    assert created is not None and updated is not None
    financial = payload.get("financial_status")
    fulfillment = payload.get("fulfillment_status")
    customer = payload.get("customer") if isinstance(payload.get("customer"), dict) else {}
    total, currency = _total(payload, store, oid)
    gateways = payload.get("payment_gateway_names")
    gateway = str(gateways[0]) if isinstance(gateways, list) and gateways else ""
    reason = payload.get("cancel_reason")
    return Order(
        store=store,
        platform="shopify",
        id=oid,
        number=str(payload.get("name") or oid),
        status=order_status(payload, store, oid),
        created_at=created,
        updated_at=updated,
        total=total,
        currency=currency,
        paid_at=None,
        completed_at=None,
        cancelled_at=_date(payload, "cancelled_at", store, oid),
        cancel_reason=reason.lower() if isinstance(reason, str) and reason else None,
        payment_method=gateway,
        payment_method_title=gateway,
        refunded_total=_refunded(payload.get("refunds"), store, oid),
        financial_status=financial.lower() if isinstance(financial, str) else None,
        fulfillment_status=FULFILLMENT.get(fulfillment, str(fulfillment).lower()),
        test=payload.get("test") is True,
        customer_email=mask_email(_text(payload.get("email")) or _text(customer.get("email"))),
        customer_phone=mask_phone(_text(payload.get("phone")) or _text(customer.get("phone"))),
        customer_name=short_name(customer.get("first_name"), customer.get("last_name")),
        admin_url=f"https://admin.shopify.com/store/{shop_handle(shop)}/orders/{oid}",
        line_items=tuple(_line_items(payload.get("line_items"), store, oid)),
    )


def order_id(payload: dict[str, Any], store: str) -> str:
    oid = payload.get("id")
    if isinstance(oid, bool) or not isinstance(oid, int) or oid <= 0:
        raise OrderPayloadError(store, "?", "id", f"missing or not a positive integer: {oid!r}")
    return str(oid)


def money(raw: object) -> str:
    """Shopify's "25.0" → "25.00" (at least two decimals; a three-decimal currency keeps its
    third, rounding money away would be worse than a longer string)."""
    value = Decimal(str(raw))
    if not value.is_finite():
        raise InvalidOperation
    return str(value.quantize(CENT)) if value.as_tuple().exponent >= -2 else str(value)  # type: ignore[operator]


def _date(
    payload: dict[str, Any], field: str, store: str, oid: str, *, required: bool = False
) -> datetime | None:
    raw = payload.get(field)
    if raw is None or raw == "":
        if required:
            raise OrderPayloadError(store, oid, field, "missing")
        return None
    if not isinstance(raw, str):
        raise OrderPayloadError(store, oid, field, f"not a date string: {raw!r}")
    try:
        return parse_utc(raw)
    except ValueError:
        raise OrderPayloadError(store, oid, field, f"not an ISO 8601 date: {raw[:40]!r}") from None


def _shop_money(payload: dict[str, Any], bag: str) -> dict[str, Any] | None:
    value = payload.get(bag)
    shop = value.get("shop_money") if isinstance(value, dict) else None
    return shop if isinstance(shop, dict) and shop.get("amount") is not None else None


def _total(payload: dict[str, Any], store: str, oid: str) -> tuple[str, str]:
    bag = _shop_money(payload, "total_price_set")
    raw = bag["amount"] if bag else payload.get("total_price")
    currency = (bag or {}).get("currency_code") or payload.get("currency") or ""
    field = "total_price_set.shop_money.amount" if bag else "total_price"
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise OrderPayloadError(store, oid, field, f"missing or not an amount: {raw!r}")
    try:
        return money(raw), str(currency)
    except InvalidOperation:
        raise OrderPayloadError(store, oid, field, f"not an amount: {raw!r}") from None


def _refunded(refunds: Any, store: str, oid: str) -> Decimal:
    """Sum of successful refund transactions (shop money when the bag is there)."""
    if refunds is None:
        return Decimal("0")
    if not isinstance(refunds, list):
        raise OrderPayloadError(store, oid, "refunds", "not a list")
    total = Decimal("0")
    for i, refund in enumerate(refunds):
        transactions = refund.get("transactions") if isinstance(refund, dict) else None
        for j, tx in enumerate(transactions if isinstance(transactions, list) else []):
            if not isinstance(tx, dict) or tx.get("kind", "refund") != "refund":
                continue
            if tx.get("status", "success") != "success":
                continue
            bag = _shop_money(tx, "amount_set")
            raw = bag["amount"] if bag else tx.get("amount")
            try:
                total += abs(Decimal(str(raw)))
            except InvalidOperation:
                field = f"refunds[{i}].transactions[{j}].amount"
                raise OrderPayloadError(store, oid, field, f"not an amount: {raw!r}") from None
    return total


def _line_items(items: Any, store: str, oid: str) -> Iterable[LineItem]:
    if items is None:
        return
    if not isinstance(items, list):
        raise OrderPayloadError(store, oid, "line_items", "not a list")
    for i, item in enumerate(items[:MAX_LINE_ITEMS]):
        if not isinstance(item, dict):
            raise OrderPayloadError(store, oid, f"line_items[{i}]", "not an object")
        quantity = item.get("quantity")
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            raise OrderPayloadError(
                store, oid, f"line_items[{i}].quantity", f"not an integer: {quantity!r}"
            )
        bag = _shop_money(item, "price_set")
        raw = bag["amount"] if bag else item.get("price", "0")
        try:
            total = money(Decimal(str(raw)) * quantity)
        except InvalidOperation:
            field = f"line_items[{i}].price"
            raise OrderPayloadError(store, oid, field, f"not an amount: {raw!r}") from None
        yield LineItem(name=str(item.get("name") or ""), quantity=quantity, total=total)


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None
