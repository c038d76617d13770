"""REST Admin API order payloads (`orders.json`, snake_case) → pollerd's `Order` and `Listed`.

The GraphQL source is the reference: for one version of an order both sources must produce the
same `Order`, field by field (the diff compares snapshots, and a store may switch `api`). So a
REST payload is not normalised by a second set of rules that could drift: it is *translated* into
the GraphQL `Order` node it stands for and handed to `shopify_normalize`, the one place that
decides status, money formatting, masking and URLs. Only the translation lives here:

- `financial_status` is GraphQL's `displayFinancialStatus` lowercased; `fulfillment_status` says
  null/"partial" where GraphQL says UNFULFILLED/PARTIALLY_FULFILLED.
- Money comes from the `*_set.shop_money` bag when present (GraphQL reads `shopMoney`), else the
  plain field, which is shop currency too.
- A line's `originalTotalSet` is unit `price` × `quantity` (GraphQL: "the original unit price
  multiplied by the quantity", before discounts); REST has no per-line total.
- `totalRefundedSet` is the sum of the successful `refund` transactions in `refunds[]`: REST has
  no order-level refunded total, and those transactions are the money that went back.

Contract errors name the REST field (`updated_at`, not `updatedAt`): that is what a person
debugging a REST store sees on the wire.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any

from pollerd.errors import SourceError
from pollerd.model import Order, parse_utc
from pollerd.sources.base import Deletion, Listed
from pollerd.sources.payload import (
    EARLIEST_YEAR,
    LATEST_YEAR,
    payload_amount,
    payload_quantity,
)
from pollerd.sources.shopify.normalize import (
    LINE_ITEMS,
    OrderPayloadError,
    captured_at,
    listed,
    normalize_order,
)

__all__ = [
    "LIST_FIELDS",
    "ORDER_FIELDS",
    "OrderPayloadError",
    "deletion",
    "listed_row",
    "normalize",
]

LIST_FIELDS = "id,updated_at,cancelled_at,financial_status"
"""Exactly what `Listed` needs: the status rule reads `cancelled_at` and `financial_status`."""

ORDER_FIELDS = (
    "id,name,created_at,updated_at,cancelled_at,cancel_reason,financial_status,"
    "fulfillment_status,test,email,phone,currency,total_price,total_price_set,"
    "browser_ip,client_details,payment_gateway_names,customer,line_items,refunds,fulfillments"
)
"""Everything `normalize` reads and nothing more: full REST orders are large (addresses,
tax lines, client details), most of it never used here. Refunds and fulfillments carry their
dates; captures are dated by `orders/<id>/transactions.json`, read only when needed."""

FULFILLMENT = {None: "UNFULFILLED", "partial": "PARTIALLY_FULFILLED"}
"""REST `fulfillment_status` words that differ from GraphQL's `displayFulfillmentStatus`;
the others ("fulfilled", "restocked") are the same word."""

REST_FIELD = {
    "legacyResourceId": "id",
    "createdAt": "created_at",
    "updatedAt": "updated_at",
    "cancelledAt": "cancelled_at",
    "displayFinancialStatus": "financial_status",
    "totalPriceSet": "total_price",
    "totalRefundedSet": "refunds",
    "lineItems": "line_items",
}


def listed_row(payload: Any, *, store: str) -> Listed:
    """A row fetched with `fields=LIST_FIELDS` → `Listed`, by GraphQL's own status rule."""
    if not isinstance(payload, dict):
        raise OrderPayloadError(store, "?", "orders[]", f"not an object: {type(payload).__name__}")
    node = {
        "legacyResourceId": _order_id(payload, store),
        "updatedAt": payload.get("updated_at"),
        "cancelledAt": payload.get("cancelled_at"),
        "displayFinancialStatus": _upper(payload.get("financial_status")),
    }
    with _rest_names(store):
        return listed(node, store=store)


def normalize(payload: dict[str, Any], *, store: str, shop: str) -> Order:
    """A full REST order (`fields=ORDER_FIELDS`) → the `Order` GraphQL gives for it."""
    with _rest_names(store):
        return normalize_order(as_node(payload, store=store), store=store, shop=shop)


def _client_ip(payload: dict[str, Any]) -> Any:
    """REST's `browser_ip`, or `client_details.browser_ip`: GraphQL's `clientIp`."""
    details = payload.get("client_details")
    nested = details.get("browser_ip") if isinstance(details, dict) else None
    return payload.get("browser_ip") or nested


def as_node(payload: dict[str, Any], *, store: str) -> dict[str, Any]:
    """The GraphQL `Order` node (`shopify_normalize.ORDER_FIELDS`) a REST order stands for."""
    oid = _order_id(payload, store)
    customer = payload.get("customer")
    fulfillment = payload.get("fulfillment_status")
    total = _shop_money(payload, "total_price_set") or {
        "amount": payload.get("total_price"),
        "currencyCode": payload.get("currency"),
    }
    return {
        "legacyResourceId": oid,
        "name": payload.get("name"),
        "createdAt": payload.get("created_at"),
        "updatedAt": payload.get("updated_at"),
        "cancelledAt": payload.get("cancelled_at"),
        "cancelReason": _upper(payload.get("cancel_reason")),
        "displayFinancialStatus": _upper(payload.get("financial_status")),
        "displayFulfillmentStatus": _fulfillment(fulfillment),
        "test": payload.get("test"),
        "email": payload.get("email"),
        "phone": payload.get("phone"),
        "clientIp": _client_ip(payload),
        "currencyCode": payload.get("currency"),
        "paymentGatewayNames": payload.get("payment_gateway_names") or [],
        "totalPriceSet": {"shopMoney": total} if total.get("amount") is not None else None,
        "totalRefundedSet": {"shopMoney": {"amount": _refunded(payload, store, oid)}},
        "customer": {
            "firstName": customer.get("first_name"),
            "lastName": customer.get("last_name"),
            "email": customer.get("email"),
            "phone": customer.get("phone"),
        }
        if isinstance(customer, dict)
        else None,
        "lineItems": {"nodes": _line_items(payload, store, oid)},
        "fulfillments": [
            {"createdAt": f.get("created_at"), "status": _upper(f.get("status"))}
            for f in _list(payload.get("fulfillments"))
            if isinstance(f, dict)
        ],
        "refunds": [
            {"createdAt": r.get("created_at")}
            for r in _list(payload.get("refunds"))
            if isinstance(r, dict)
        ],
    }


def deletion(event: Any, *, store: str) -> tuple[datetime, int, Deletion] | None:
    """An `events.json` row → (when, event id, `Deletion`) for sorting; None for any event that
    is not an order's destruction (a server that ignored `filter`/`verb` must not turn every
    order event into a deletion)."""
    if not isinstance(event, dict):
        raise SourceError(store, "events.json: an event is not a JSON object")
    if event.get("subject_type") != "Order" or event.get("verb") != "destroy":
        return None
    event_id, subject, raw = event.get("id"), event.get("subject_id"), event.get("created_at")
    try:
        when = parse_utc(raw) if isinstance(raw, str) else None
    except (ValueError, OverflowError):  # OverflowError: year 1 with an offset east of UTC
        when = None
    if when is not None and not EARLIEST_YEAR <= when.year <= LATEST_YEAR:
        when = None  # year 9999 would move the deletions feed's cursor past every real event
    if isinstance(subject, bool) or not isinstance(subject, int) or when is None:
        raise SourceError(
            store,
            f"events.json: event {event_id!r}: subject_id {subject!r} and created_at "
            f"{str(raw)[:40]!r} are not an order id and a date",
        )
    found = Deletion(str(subject), when, str(event.get("message") or ""))
    return when, event_id if isinstance(event_id, int) else 0, found


# --- fields -------------------------------------------------------------------------------------


def _order_id(payload: dict[str, Any], store: str) -> int:
    oid = payload.get("id")
    if isinstance(oid, bool) or not isinstance(oid, int) or oid <= 0:
        raise OrderPayloadError(store, "?", "id", f"missing or not a positive integer: {oid!r}")
    return oid


def _list(value: Any) -> list[Any]:
    """Evidence lists: anything but a list dates nothing (`5` here raised TypeError)."""
    return value if isinstance(value, list) else []


def _fulfillment(value: Any) -> Any:
    """A list or object here raised TypeError (unhashable); it passes on to be ignored like
    any other fulfillment status that is not a word."""
    if value is None or isinstance(value, str):
        return FULFILLMENT.get(value, _upper(value))
    return None


def _upper(value: Any) -> Any:
    """REST's lowercase enum words → GraphQL's; anything else passes through to be judged."""
    return value.upper() if isinstance(value, str) else value


def _shop_money(payload: dict[str, Any], bag: str) -> dict[str, Any] | None:
    value = payload.get(bag)
    money = value.get("shop_money") if isinstance(value, dict) else None
    if not isinstance(money, dict) or money.get("amount") is None:
        return None
    return {"amount": money["amount"], "currencyCode": money.get("currency_code")}


def _amount(raw: Any, store: str, oid: int, field: str) -> Decimal:
    return payload_amount(raw, field, store, oid)


def _refunded(payload: dict[str, Any], store: str, oid: int) -> str:
    """Sum of successful refund transactions (shop money when the bag is there)."""
    refunds = payload.get("refunds")
    if refunds is None:
        return "0"
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
            field = f"refunds[{i}].transactions[{j}].amount"
            total += abs(_amount(raw, store, oid, field))
    return str(total)


def _line_items(payload: dict[str, Any], store: str, oid: int) -> list[dict[str, Any]]:
    items = payload.get("line_items")
    if items is None:
        return []
    if not isinstance(items, list):
        raise OrderPayloadError(store, oid, "line_items", "not a list")
    nodes: list[dict[str, Any]] = []
    for i, item in enumerate(items[:LINE_ITEMS]):
        if not isinstance(item, dict):
            raise OrderPayloadError(store, oid, f"line_items[{i}]", "not an object")
        quantity = item.get("quantity")
        field = f"line_items[{i}].quantity"
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            raise OrderPayloadError(store, oid, field, f"not an integer: {quantity!r}")
        payload_quantity(quantity, field, store, oid)  # bounded: price × 10**999 overflowed
        bag = _shop_money(item, "price_set")
        price = _amount(
            bag["amount"] if bag else item.get("price"), store, oid, f"line_items[{i}].price"
        )
        nodes.append(
            {
                "name": item.get("name"),
                "quantity": quantity,
                "originalTotalSet": {"shopMoney": {"amount": str(price * quantity)}},
            }
        )
    return nodes


@contextmanager
def _rest_names(store: str) -> Iterator[None]:
    """Re-raise the GraphQL normaliser's `OrderPayloadError` under the REST field's name."""
    try:
        yield
    except OrderPayloadError as exc:
        head = exc.field.split(".")[0].split("[")[0]
        if head not in REST_FIELD:
            raise
        problem = str(exc).split(f"field {exc.field}: ", 1)[-1]
        raise OrderPayloadError(store, exc.order_id, REST_FIELD[head], problem) from None


def rest_captured_at(transactions: Any, *, store: str, oid: str) -> datetime | None:
    """When money first came in, from `orders/<id>/transactions.json` (GraphQL's rule)."""
    if not isinstance(transactions, list):
        return None
    nodes = [
        {
            "kind": _upper(t.get("kind")),
            "status": _upper(t.get("status")),
            "processedAt": t.get("processed_at"),
        }
        for t in transactions
        if isinstance(t, dict)
    ]
    with _rest_names(store):
        return captured_at(nodes, store, oid)
