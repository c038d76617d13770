"""Property: any order payload, however broken, normalises to a correct `Order` or raises
`OrderPayloadError` naming the field (issue 12, item 12). Never another exception (the pass
would fail on every poll and the order would block its store), never a silently wrong value
(a quantity of 1.5 shown as 1, a currency of `['EUR']`, a date off by an offset).

Inputs: the real fixtures (tests/fixtures) with fields broken by `mutate.mutated`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pollerd.errors import SourceError
from pollerd.model import Order, parse_utc
from pollerd.sources.payload import OrderPayloadError
from pollerd.sources.shopify import normalize as gql
from pollerd.sources.shopify import rest_normalize as rest
from pollerd.sources.shopify.bulk import BulkFileError, regroup_lines
from pollerd.sources.shopify.feeds import ShopifyFeeds
from pollerd.sources.woocommerce import normalize as woocommerce
from pollerd.templates import money

from .mutate import FIXTURES, load, mutated

pytestmark = pytest.mark.fault  # `-m fault` with POLLERD_FAULT_SCALE=nightly: 20x

STORE = "shop-a"
WOO_DIR = "woocommerce/live-wc10.0.2/"
WOO_SEEDS = [
    load(WOO_DIR + name)
    for name in (
        "create_order_set_paid.json",
        "order_cancelled_15.json",
        "order_checkout_draft_20.json",
        "order_completed_14.json",
        "order_on_hold_12.json",
        "order_pending_11.json",
        "order_processing_paid_13.json",
        "order_refunded_17.json",
        "order_trash_19.json",
    )
]
REST_SEEDS = [
    load("shopify/rest_order_single.json")["order"],
    *load("shopify/rest_orders_list.json")["orders"],
]
# The documentation examples lack updatedAt; the REST orders' GraphQL twins are full nodes.
GQL_SEEDS = [
    {**edge["node"], "updatedAt": edge["node"].get("createdAt")}
    for edge in load("shopify/graphql_orders_details_docs.json")["orders"]["edges"]
] + [rest.as_node(order, store=STORE) for order in REST_SEEDS]
EVENT_SEEDS = load("shopify/rest_events_order.json")["events"]
SPAN = timedelta(days=3660)
"""The cursor arithmetic a date meets: overlaps, sweeps and retention, ten years at most."""


def _with(seed: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """`seed` with `path` ("line_items.0.quantity") set: the bugs the properties found, kept
    as fixed examples so they are tried on every run."""
    tree = json.loads(json.dumps(seed))
    *parents, last = [int(k) if k.isdigit() else k for k in path.split(".")]
    node = tree
    for key in parents:
        node = node[key]
    node[last] = value
    return tree


WOO = WOO_SEEDS[0]
TRASH = WOO_SEEDS[-1]
GQL = GQL_SEEDS[-1]
REST = REST_SEEDS[0]


def _field_named(exc: OrderPayloadError) -> None:
    assert exc.field and exc.problem, exc
    assert f"field {exc.field}" in str(exc)


def _same_date(value: datetime | None, raw: Any) -> None:
    assert value is None or value.utcoffset() is not None
    if isinstance(raw, str) and raw:
        assert value == parse_utc(raw)


def _sane(order: Order) -> None:
    """What every normalised order must be, whatever the platform."""
    assert isinstance(order.id, str) and order.id.isascii() and order.id.isdigit()
    assert int(order.id) > 0
    assert Decimal(order.total).is_finite()
    assert order.refunded_total.is_finite() and order.refunded_total >= 0
    for text in (order.number, order.status, order.currency, order.payment_method):
        assert isinstance(text, str)
    for item in order.line_items:
        assert isinstance(item.quantity, int) and isinstance(item.name, str)
        assert Decimal(item.total).is_finite()
    dates = (order.created_at, order.updated_at, order.paid_at, order.completed_at)
    for when in (*dates, order.hidden_at, *order.refunds_at):
        assert when is None or when.utcoffset() is not None
        assert when is None or when - SPAN < when + SPAN  # no OverflowError in the sync's sums
    json.dumps(order.to_json(), allow_nan=False)
    # What the alert shows must format (a total of "1e50" passed here and crashed rendering).
    money(order.total, order.currency)
    money(str(order.refunded_total), order.currency)
    for item in order.line_items:
        money(item.total, order.currency)


def _text_or_error(value: Any, shown: str) -> None:
    """A text field: the payload's string, or "" when absent; anything else is an error."""
    if not value and not isinstance(value, float):  # None, "", False, 0, [] and {} read as absent
        return
    assert isinstance(value, str), f"{value!r} was shown as {shown!r}"
    assert shown == value


@given(mutated(WOO_SEEDS))
@example(_with(WOO, "line_items.0.quantity", 0.5))  # was shown as 0
@example(_with(WOO, "line_items.0.quantity", "Infinity"))  # OverflowError
@example(_with(WOO, "line_items.0.quantity", "1e999999999"))  # a 10**999999999 int
@example(_with(WOO, "payment_method", True))  # was shown as "True"
@example(_with(WOO, "currency", ["EUR"]))  # was shown as "['EUR']"
@example(_with(WOO, "total", "1e50"))  # InvalidOperation when rendered
@example(_with(WOO, "date_modified_gmt", "0001-01-01T00:00:00+01:00"))  # OverflowError
@example(_with(WOO, "date_modified_gmt", "0001-01-01T00:00:00"))  # OverflowError in the sync
@example(_with(TRASH, "meta_data.2.value", "²"))  # ValueError (isdigit, then int)
@example(_with(TRASH, "meta_data.2.value", "99999999999999"))  # ValueError: year out of range
def test_woocommerce_order(payload: dict[str, Any]) -> None:
    try:
        order = woocommerce.normalize(payload, store=STORE, site_url="https://shop.example")
    except OrderPayloadError as exc:
        _field_named(exc)
        return
    _sane(order)
    assert order.id == str(payload["id"])
    assert Decimal(order.total) == Decimal(str(payload["total"]).strip())
    _same_date(order.created_at, payload.get("date_created_gmt"))
    _same_date(order.updated_at, payload.get("date_modified_gmt"))
    _same_date(order.paid_at, payload.get("date_paid_gmt"))
    _text_or_error(payload.get("currency"), order.currency)
    _text_or_error(payload.get("payment_method"), order.payment_method)
    _text_or_error(payload.get("payment_method_title"), order.payment_method_title)
    number = payload.get("number")
    if number not in (None, "", 0):  # absent: the order id stands in
        assert isinstance(number, str | int) and not isinstance(number, bool), number
        assert order.number == str(number)
    items = payload.get("line_items") or []
    for item, line in zip(items, order.line_items, strict=True):
        assert Decimal(str(item["quantity"])) == line.quantity, (item["quantity"], line)
        _text_or_error(item.get("name"), line.name)


@given(mutated(GQL_SEEDS))
@example(_with(GQL, "totalPriceSet.shopMoney.amount", "1e50"))  # InvalidOperation
@example(_with(GQL, "totalRefundedSet.shopMoney.amount", "-1.00"))  # money in, not out
@example(_with(GQL, "lineItems", {"edges": True}))  # TypeError
@example(_with(GQL, "legacyResourceId", "²"))  # ValueError
@example(_with(GQL, "updatedAt", "9999-12-31T23:59:59-05:00"))  # OverflowError
def test_shopify_graphql_order(node: dict[str, Any]) -> None:
    try:
        order = gql.normalize_order(node, store=STORE, shop="acme.myshopify.com")
    except OrderPayloadError as exc:
        _field_named(exc)
        return
    _sane(order)
    assert order.status == gql.listed(node, store=STORE).status
    _same_date(order.updated_at, node.get("updatedAt"))
    amount = node["totalPriceSet"]["shopMoney"]["amount"]
    assert Decimal(order.total) == Decimal(str(amount)).quantize(Decimal("0.01"))
    items = node.get("lineItems") or {}
    raw = items.get("nodes")
    if raw is None:
        raw = [edge.get("node") for edge in items.get("edges") or [] if isinstance(edge, dict)]
    for item, line in zip(raw, order.line_items, strict=False):
        assert item["quantity"] == line.quantity


@given(mutated(GQL_SEEDS))
def test_shopify_graphql_listing_row(node: dict[str, Any]) -> None:
    try:
        row = gql.listed(node, store=STORE)
    except OrderPayloadError as exc:
        _field_named(exc)
        return
    assert row.id.isascii() and row.id.isdigit() and int(row.id) > 0
    _same_date(row.updated_at, node.get("updatedAt"))


@given(mutated(REST_SEEDS))
@example(_with(REST, "fulfillment_status", ["fulfilled"]))  # TypeError: unhashable
@example(_with(REST, "fulfillments", 5))  # TypeError
@example(_with(_with(REST, "line_items.0.price", "1e999999"), "line_items.0.price_set", None))
def test_shopify_rest_order(payload: dict[str, Any]) -> None:
    try:
        order = rest.normalize(payload, store=STORE, shop="acme.myshopify.com")
    except OrderPayloadError as exc:
        _field_named(exc)
        return
    _sane(order)
    assert order.id == str(payload["id"])
    assert order.status == rest.listed_row(payload, store=STORE).status
    _same_date(order.updated_at, payload.get("updated_at"))
    for item, line in zip(payload.get("line_items") or [], order.line_items, strict=False):
        assert item["quantity"] == line.quantity


@given(st.one_of(mutated(REST_SEEDS), mutated([{"orders": REST_SEEDS}])))
def test_shopify_rest_listing_row(payload: Any) -> None:
    try:
        row = rest.listed_row(payload, store=STORE)
    except OrderPayloadError as exc:
        _field_named(exc)
        return
    assert row.id == str(payload["id"])


@given(mutated(EVENT_SEEDS, rounds=2))
@example(_with(EVENT_SEEDS[0], "created_at", "0001-01-01T00:00:00+01:00"))  # OverflowError
def test_shopify_rest_deletion_event(event: Any) -> None:
    destroyed = {**event, "verb": "destroy", "subject_type": "Order"}
    for candidate in (event, destroyed):
        try:
            found = rest.deletion(candidate, store=STORE)
        except SourceError as exc:
            assert "events.json" in str(exc)
            continue
        if found is not None:
            when, _, deletion = found
            assert when.utcoffset() is not None
            assert int(deletion.order_id) == candidate["subject_id"]


# --- Shopify GraphQL feeds: deletion events and disputes ----------------------------------------

FEEDS = ShopifyFeeds(client=None, store=STORE)  # type: ignore[arg-type]  # rows only, no calls
FLOOR = datetime(2026, 1, 1, tzinfo=UTC)
DELETION = {
    "id": "gid://shopify/BasicEvent/1001",
    "action": "destroy",
    "createdAt": "2026-11-22T09:32:37Z",
    "message": "Order #1001 was deleted.",
    "subjectId": "gid://shopify/Order/450789469",
    "subjectType": "ORDER",
}
DISPUTE = {  # the fields of DISPUTES_QUERY, values as Shopify's documentation shows them
    "id": "gid://shopify/ShopifyPaymentsDispute/598735659",
    "legacyResourceId": "598735659",
    "status": "NEEDS_RESPONSE",
    "type": "CHARGEBACK",
    "initiatedAt": "2026-11-20T10:00:00Z",
    "evidenceDueBy": "2026-11-30",
    "finalizedOn": None,
    "amount": {"amount": "100.0", "currencyCode": "USD"},
    "reasonDetails": {"reason": "FRAUDULENT"},
    "order": {
        "id": "gid://shopify/Order/450789469",
        "legacyResourceId": "450789469",
        "name": "#1001",
    },
}


@given(mutated([DELETION], rounds=2))
@example({**DELETION, "createdAt": "0001-01-01T00:00:00+01:00"})  # OverflowError
def test_shopify_deletion_event(event: dict[str, Any]) -> None:
    found = FEEDS._deletion(event, FLOOR)
    if found is not None:
        assert found.order_id.isascii() and found.order_id.isdigit()
        assert found.deleted_at >= FLOOR and found.deleted_at - SPAN < found.deleted_at


@given(mutated([DISPUTE]))
@example({**DISPUTE, "initiatedAt": "9999-12-31T23:59:59-05:00"})  # OverflowError
@example({**DISPUTE, "amount": {"amount": "1e999999999"}})  # formats a billion digits
@example({**DISPUTE, "amount": {"amount": "NaN"}})  # "NaN" shown as the amount
@example({**DISPUTE, "amount": {"amount": ["100.0"]}})  # "['100.0']" shown as the amount
def test_shopify_dispute(node: dict[str, Any]) -> None:
    try:
        dispute = FEEDS._dispute(node)
    except SourceError as exc:
        assert "dispute" in str(exc)
        return
    assert dispute.initiated_at.utcoffset() is not None
    assert dispute.initiated_at - SPAN < dispute.initiated_at
    assert dispute.amount == "" or Decimal(dispute.amount).is_finite(), dispute.amount
    money(dispute.amount, dispute.currency)


# --- Shopify bulk export: JSONL lines regrouped into orders -------------------------------------


LINE_GID = "gid://shopify/LineItem/"


def _bulk_rows(node: dict[str, Any]) -> list[dict[str, Any]]:
    """An order as a bulk export writes it: the order line, then one line per line item."""
    order = {k: v for k, v in node.items() if k != "lineItems"}
    order["id"] = f"gid://shopify/Order/{node.get('legacyResourceId') or 1}"
    items = (node.get("lineItems") or {}).get("nodes") or []
    return [order] + [
        {
            **item,
            "__typename": "LineItem",
            "id": f"gid://shopify/LineItem/{i + 1}",
            "__parentId": order["id"],
        }
        for i, item in enumerate(items)
    ]


BULK_SEEDS = [
    [row for node in GQL_SEEDS[-2:] for row in _bulk_rows(node)],
    [json.loads(line) for line in (FIXTURES / "shopify/bulk_orders_transactions.jsonl").open()],
]


@given(mutated(BULK_SEEDS))
def test_shopify_bulk_lines(rows: list[Any]) -> None:
    lines = [json.dumps(row) for row in rows]
    try:
        for root in regroup_lines(STORE, iter(lines)):
            try:
                _sane(gql.normalize_order(root, store=STORE, shop="acme.myshopify.com"))
            except OrderPayloadError as exc:
                _field_named(exc)
    except BulkFileError as exc:
        assert "line" in str(exc)
