"""The legacy REST Admin API: `orders.json`, `orders/{id}.json`, `events.json`.

From research/shopify.md §2 and the fixtures `rest_orders_list.json`/`rest_order_single.json`:
- `status` defaults to `open`, which silently skips closed and cancelled orders
  (frappe/ecommerce_integrations PR #410): pollers must send `status=any`;
- `limit` ≤ 250 (default 50); `order=updated_at asc` (used by Airbyte, dlt, Matatika); without
  `order` the list is `created_at desc`, and `since_id` sorts by id (changelog 2017-09-18);
- paging is by `Link: <…page_info=…>; rel="next"` (and "previous"); the filters are frozen in
  `page_info` and only `limit`/`fields` may accompany it ("page_info can't be modified");
- a leaky bucket per app (`X-Shopify-Shop-Api-Call-Limit: used/40`); over it, 429 with
  `Retry-After: 2.0` and the body quoted in craftcms/shopify#136;
- REST reads the database, not the search index, so `updated_at_min` is current (no index lag).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from pollerd.model import parse_utc, utc_iso
from pollerd_sim.loopback import JSON_TYPE
from pollerd_sim.shop_bucket import CallBucket
from pollerd_sim.shop_orders import OrderRec, ShopBook
from pollerd_sim.shop_schema import SHOP_ID

_ORDER = re.compile(r"^orders/(\d+)\.json$")
_TRANSACTIONS = re.compile(r"^orders/(\d+)/transactions\.json$")
REST_MAX = 250
THROTTLED_BODY = {
    "errors": "Exceeded 2 calls per second for api client. Reduce request rates to resume "
    "uninterrupted service."
}
_FROZEN_OK = frozenset({"limit", "fields", "page_info"})
_SORTABLE = frozenset({"created_at", "updated_at", "processed_at", "id"})


@dataclass
class Reply:
    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = JSON_TYPE
    reset: bool = False


def json_reply(status: int, data: Any, headers: list[tuple[str, str]] | None = None) -> Reply:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return Reply(status, body, headers or [])


def rest_amount(value: Decimal) -> str:
    return f"{value:.2f}"


def render_rest_order(rec: OrderRec, shop: str) -> dict[str, Any]:
    """An order as `orders.json` shapes it (snake_case, lowercase enums, string money)."""
    cur = rec.currency
    refunded = rec.refunded

    def money_set(value: Decimal) -> dict[str, Any]:
        money = {"amount": rest_amount(value), "currency_code": cur}
        return {"shop_money": money, "presentment_money": dict(money)}

    fulfillment = {"FULFILLED": "fulfilled", "PARTIALLY_FULFILLED": "partial"}.get(rec.fulfillment)
    return {
        "id": rec.id,
        "admin_graphql_api_id": f"gid://shopify/Order/{rec.id}",
        "name": rec.name,
        "number": rec.number - 1000,
        "order_number": rec.number,
        "email": rec.email,
        "contact_email": rec.email,
        "phone": rec.phone,
        "created_at": utc_iso(rec.created_at),
        "updated_at": utc_iso(rec.updated_at),
        "processed_at": utc_iso(rec.created_at),
        "closed_at": utc_iso(rec.closed_at),
        "cancelled_at": utc_iso(rec.cancelled_at),
        "cancel_reason": rec.cancel_reason.lower() if rec.cancel_reason else None,
        "confirmed": True,
        "financial_status": rec.financial.lower(),
        "fulfillment_status": fulfillment,
        "test": rec.test,
        "currency": cur,
        "presentment_currency": cur,
        "total_price": rest_amount(rec.total),
        "subtotal_price": rest_amount(rec.total),
        "current_total_price": rest_amount(rec.total - refunded),
        "total_price_set": money_set(rec.total),
        "current_total_price_set": money_set(rec.total - refunded),
        "total_tax": "0.00",
        "total_discounts": "0.00",
        "tags": "",
        "token": rec.token,
        "payment_gateway_names": [rec.gateway],
        "browser_ip": rec.ip or None,
        "client_details": {"browser_ip": rec.ip or None, "user_agent": None},
        "order_status_url": (
            f"https://{shop}/{SHOP_ID}/orders/{rec.token}/authenticate?key={rec.token[::-1]}"
        ),
        "customer": {
            "id": rec.customer_id,
            "email": rec.email,
            "first_name": rec.first_name,
            "last_name": rec.last_name,
            "phone": rec.phone,
        },
        "line_items": [
            {
                "id": li.id,
                "admin_graphql_api_id": f"gid://shopify/LineItem/{li.id}",
                "name": li.name,
                "title": li.name,
                "quantity": li.quantity,
                "price": rest_amount(li.price),
                "sku": li.sku or None,
                "fulfillment_status": fulfillment,
            }
            for li in rec.items
        ],
        "fulfillments": [
            {
                "id": rec.id * 100 + i,
                "order_id": rec.id,
                "status": "success",
                "created_at": utc_iso(when),
            }
            for i, when in enumerate(rec.fulfilled)
        ],
        "refunds": [
            {
                "id": r.id,
                "order_id": rec.id,
                "created_at": utc_iso(r.created_at),
                "processed_at": utc_iso(r.created_at),
                "transactions": [
                    {
                        "amount": rest_amount(r.amount),
                        "kind": "refund",
                        "status": "success",
                        "currency": cur,
                        "gateway": rec.gateway,
                    }
                ],
            }
            for r in rec.refunds
        ],
    }


def render_transactions(rec: OrderRec) -> list[dict[str, Any]]:
    """`GET orders/<id>/transactions.json`: kinds and statuses lower-case, as REST writes them."""
    return [
        {
            "id": t.id,
            "order_id": rec.id,
            "kind": t.kind.lower(),
            "status": t.status.lower(),
            "created_at": utc_iso(t.processed_at),
            "processed_at": utc_iso(t.processed_at),
            "gateway": rec.gateway,
            "currency": rec.currency,
        }
        for t in rec.transactions
    ]


class RestApi:
    """Answers `/admin/api/{version}/...` REST requests (auth is checked by the caller)."""

    def __init__(
        self,
        *,
        book: ShopBook,
        bucket: CallBucket,
        shop: str,
        base_url: Callable[[], str],
        max_ok_page: int | None = None,
    ) -> None:
        self.book = book
        self.bucket = bucket
        self.shop = shop
        self.base_url = base_url
        self.max_ok_page = max_ok_page

    def respond(self, method: str, resource: str, query: str, version: str) -> Reply:
        allowed, used = self.bucket.take()
        limit_header = ("X-Shopify-Shop-Api-Call-Limit", f"{used}/{self.bucket.size}")
        if not allowed:
            return json_reply(429, THROTTLED_BODY, [limit_header, ("Retry-After", "2.0")])
        params = {k: v[-1] for k, v in urllib.parse.parse_qs(query, keep_blank_values=True).items()}
        if method not in ("GET", "HEAD"):
            reply = json_reply(404, {"errors": "Not Found"})
        elif resource == "orders.json":
            reply = self._orders(params, version)
        elif resource == "events.json":
            reply = self._events(params)
        elif (match := _TRANSACTIONS.match(resource)) is not None:
            rec = self.book.orders.get(int(match.group(1)))
            if rec is None or not self.book.visible(rec):
                reply = json_reply(404, {"errors": "Not Found"})
            else:
                reply = json_reply(200, {"transactions": render_transactions(rec)})
        elif (match := _ORDER.match(resource)) is not None:
            rec = self.book.orders.get(int(match.group(1)))
            if rec is None or not self.book.visible(rec):
                reply = json_reply(404, {"errors": "Not Found"})
            else:
                reply = json_reply(200, {"order": render_rest_order(rec, self.shop)})
        else:
            reply = json_reply(404, {"errors": "Not Found"})
        reply.headers.append(limit_header)
        return reply

    # --- paging ------------------------------------------------------------------------------

    def _frozen(
        self, params: dict[str, str]
    ) -> tuple[dict[str, str], tuple[Any, int] | None, str] | Reply:
        """(filters, position, direction) from `page_info`, or the 400 Shopify answers."""
        if "page_info" not in params:
            filters = {k: v for k, v in params.items() if k not in ("limit", "fields")}
            return filters, None, "next"
        if set(params) - _FROZEN_OK:
            return json_reply(400, {"errors": {"page_info": "Invalid value."}})
        try:
            raw = params["page_info"]
            state = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
            key = state["last"][0]
            if isinstance(key, str) and not key.isdigit():
                key = parse_utc(key)
            position = (key, int(state["last"][1]))
            return dict(state["filters"]), position, str(state["direction"])
        except (binascii.Error, ValueError, KeyError, TypeError, IndexError):
            return json_reply(400, {"errors": {"page_info": "Invalid value."}})

    def _page_link(
        self,
        version: str,
        resource: str,
        limit: int,
        fields: str | None,
        filters: dict[str, str],
        last: tuple[Any, int],
        direction: str,
        rel: str,
    ) -> str:
        key = last[0]
        state = {
            "filters": filters,
            "last": [utc_iso(key) if isinstance(key, datetime) else key, last[1]],
            "direction": direction,
        }
        token = base64.urlsafe_b64encode(json.dumps(state).encode()).decode().rstrip("=")
        query = {"limit": str(limit), "page_info": token}
        if fields:
            query["fields"] = fields
        url = f"{self.base_url()}/admin/api/{version}/{resource}?{urllib.parse.urlencode(query)}"
        return f'<{url}>; rel="{rel}"'

    def _window(
        self,
        rows: list[tuple[Any, int, Any]],
        params: dict[str, str],
        version: str,
        resource: str,
        filters: dict[str, str],
        position: tuple[Any, int] | None,
        direction: str,
        limit: int,
        descending: bool,
    ) -> tuple[list[Any], list[str]]:
        rows.sort(key=lambda r: (r[0], r[1]), reverse=descending)
        if position is not None:

            def after(r: tuple[Any, int, Any]) -> bool:
                pair = (r[0], r[1])
                return pair < position if descending else pair > position

            if direction == "next":
                rows = [r for r in rows if after(r)]
                page = rows[:limit]
                has_more, has_before = len(rows) > limit, True
            else:
                rows = [r for r in rows if not after(r) and (r[0], r[1]) != position]
                page = rows[-limit:]
                has_more, has_before = True, len(rows) > limit
        else:
            page = rows[:limit]
            has_more, has_before = len(rows) > limit, False
        links = []
        fields = params.get("fields")
        if page and has_before:
            first = page[0]
            links.append(
                self._page_link(
                    version,
                    resource,
                    limit,
                    fields,
                    filters,
                    (first[0], first[1]),
                    "prev",
                    "previous",
                )
            )
        if page and has_more:
            last = page[-1]
            links.append(
                self._page_link(
                    version, resource, limit, fields, filters, (last[0], last[1]), "next", "next"
                )
            )
        return [r[2] for r in page], links

    # --- resources ---------------------------------------------------------------------------

    def _limit(self, params: dict[str, str]) -> int | Reply:
        raw = params.get("limit", "50")
        if not raw.isdigit() or not 1 <= int(raw) <= REST_MAX:
            return json_reply(400, {"errors": {"limit": "Invalid value."}})
        return int(raw)

    def _orders(self, params: dict[str, str], version: str) -> Reply:
        frozen = self._frozen(params)
        if isinstance(frozen, Reply):
            return frozen
        filters, position, direction = frozen
        limit = self._limit(params)
        if isinstance(limit, Reply):
            return limit
        if self.max_ok_page is not None and limit > self.max_ok_page:
            return json_reply(500, {"errors": "Internal Server Error"})
        order = filters.get("order", "").replace("+", " ").split()
        sort_field = order[0] if order and order[0] in _SORTABLE else "created_at"
        descending = not order or (len(order) > 1 and order[1].lower() == "desc")
        if "since_id" in filters and not order:
            sort_field, descending = "id", False
        rows = []
        for rec in self.book.orders.values():
            if self.book.visible(rec) and _rest_matches(rec, filters):
                value = (
                    rec.id
                    if sort_field == "id"
                    else getattr(rec, "created_at" if sort_field == "processed_at" else sort_field)
                )
                rows.append((value, rec.id, rec))
        recs, links = self._window(
            rows, params, version, "orders.json", filters, position, direction, limit, descending
        )
        fields = [f for f in params.get("fields", "").split(",") if f]
        orders = [render_rest_order(r, self.shop) for r in recs]
        if fields:
            orders = [{k: o[k] for k in fields if k in o} for o in orders]
        headers = [("Link", ", ".join(links))] if links else []
        return json_reply(200, {"orders": orders}, headers)

    def _events(self, params: dict[str, str]) -> Reply:
        frozen = self._frozen(params)
        if isinstance(frozen, Reply):
            return frozen
        filters, position, direction = frozen
        limit = self._limit(params)
        if isinstance(limit, Reply):
            return limit
        since = _bound(filters.get("created_at_min"))
        rows = []
        for event in self.book.listed_events():
            if filters.get("filter", "Order").lower() != event.subject_type.lower():
                continue
            if filters.get("verb") and filters["verb"] != event.action:
                continue
            if since is not None and event.created_at < since:
                continue
            rows.append((event.id, event.id, event))
        events, links = self._window(
            rows, params, "", "events.json", filters, position, direction, limit, False
        )
        body = [
            {
                "id": e.id,
                "subject_id": e.subject_id,
                "subject_type": "Order",
                "verb": e.action,
                "arguments": [],
                "body": None,
                "message": e.message,
                "created_at": utc_iso(e.created_at),
                "author": "Shopify",
                "description": e.message,
                "path": f"/admin/orders/{e.subject_id}",
            }
            for e in events
        ]
        return json_reply(200, {"events": body}, [("Link", ", ".join(links))] if links else [])


def _rest_matches(rec: OrderRec, filters: dict[str, str]) -> bool:
    status = filters.get("status", "open")
    closed = rec.closed_at is not None
    if status == "open" and closed:
        return False
    if status == "closed" and not closed:
        return False
    if status == "cancelled" and rec.cancelled_at is None:
        return False
    for name, attr, is_min in (
        ("updated_at_min", "updated_at", True),
        ("updated_at_max", "updated_at", False),
        ("created_at_min", "created_at", True),
        ("created_at_max", "created_at", False),
        ("processed_at_min", "created_at", True),
        ("processed_at_max", "created_at", False),
    ):
        bound = _bound(filters.get(name))
        value = getattr(rec, attr)
        if bound is not None and (value < bound if is_min else value > bound):
            return False
    if "ids" in filters:
        ids = {int(i) for i in filters["ids"].split(",") if i.strip().isdigit()}
        if rec.id not in ids:
            return False
    if filters.get("since_id", "").isdigit() and rec.id <= int(filters["since_id"]):
        return False
    fin = filters.get("financial_status", "any")
    return fin in ("any", rec.financial.lower())


def _bound(text: str | None) -> datetime | None:
    """A date parameter; one that does not parse filters nothing (no 500 from the sim)."""
    try:
        return parse_utc(text) if text else None
    except ValueError:
        return None
