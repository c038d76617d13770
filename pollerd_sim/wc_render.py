"""Order records → the exact JSON WooCommerce 10.0.2 returns (fixture `order_processing_paid_13`).

Shape facts pinned here (research/woocommerce.md §1.2, §1.3):
- money is a string with `dp` decimals, but line-item `price` is a JSON number (`12.5`, `90`);
- `date_*` are site-local wall time and `date_*_gmt` naive UTC, both without an offset;
- `refunds[].total` is negative; `_links` and `payment_url` are built from the site's own URL;
- `_fields` keeps the response's key order, not the requested order (fixture
  `list_orders_fields_subset.json`), and supports WordPress's nested `billing.email` form;
- the body is `wp_json_encode` output: compact, `\\uXXXX` for non-ASCII and `\\/` for slashes.

The full JSON of an order is cached on its record until the order changes, so listing 50,000
orders page by page serialises each order once (bytes only: caching the dicts too cost ~8 KB an
order); `_fields` listings of plain keys are read straight off the records.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from pollerd_sim.wc_orders import OrderRecord

CURRENCY_SYMBOLS = {
    "USD": "$",
    "EUR": "€",
    "GBP": "£",
    "CNY": "¥",
    "JPY": "¥",
    "CAD": "$",
    "AUD": "$",
    "CHF": "CHF",
    "INR": "₹",
    "BRL": "R$",
}
ORDER_KEYS = (
    "id",
    "parent_id",
    "status",
    "currency",
    "version",
    "prices_include_tax",
    "date_created",
    "date_modified",
    "discount_total",
    "discount_tax",
    "shipping_total",
    "shipping_tax",
    "cart_tax",
    "total",
    "total_tax",
    "customer_id",
    "order_key",
    "billing",
    "shipping",
    "payment_method",
    "payment_method_title",
    "transaction_id",
    "customer_ip_address",
    "customer_user_agent",
    "created_via",
    "customer_note",
    "date_completed",
    "date_paid",
    "cart_hash",
    "number",
    "meta_data",
    "line_items",
    "tax_lines",
    "shipping_lines",
    "fee_lines",
    "coupon_lines",
    "refunds",
    "payment_url",
    "is_editable",
    "needs_payment",
    "needs_processing",
    "date_created_gmt",
    "date_modified_gmt",
    "date_completed_gmt",
    "date_paid_gmt",
    "currency_symbol",
    "_links",
)
"""Key order of a real 10.0.2 order response; `_fields` projections follow it."""

_EMPTY_SHIPPING = {
    k: ""
    for k in (
        "first_name",
        "last_name",
        "company",
        "address_1",
        "address_2",
        "city",
        "state",
        "postcode",
        "country",
        "phone",
    )
}
_WP_DATE = "%Y-%m-%dT%H:%M:%S"


def wp_json(data: Any) -> bytes:
    """`wp_json_encode` with WordPress's default flags: ASCII-only and escaped slashes."""
    return json.dumps(data, separators=(",", ":")).replace("/", "\\/").encode()


class OrderRenderer:
    """Renders records for one site (its URL, time zone and WooCommerce version)."""

    def __init__(self, *, tz: ZoneInfo, version: str) -> None:
        self.tz = tz
        self.version = version
        local, gmt = self._local, self._gmt
        self._fast: dict[str, Callable[[OrderRecord, int], Any]] = {
            "id": lambda r, dp: r.id,
            "parent_id": lambda r, dp: 0,
            "status": lambda r, dp: r.status,
            "currency": lambda r, dp: r.currency,
            "version": lambda r, dp: self.version,
            "date_created": lambda r, dp: local(r.created),
            "date_modified": lambda r, dp: local(r.modified),
            "total": lambda r, dp: f"{r.total:.{dp}f}",
            "customer_id": lambda r, dp: 0,
            "order_key": lambda r, dp: r.order_key,
            "payment_method": lambda r, dp: r.payment_method,
            "payment_method_title": lambda r, dp: r.payment_method_title,
            "transaction_id": lambda r, dp: r.transaction_id,
            "created_via": lambda r, dp: r.created_via,
            "date_completed": lambda r, dp: local(r.completed),
            "date_paid": lambda r, dp: local(r.paid),
            "number": lambda r, dp: str(r.id),
            "date_created_gmt": lambda r, dp: gmt(r.created),
            "date_modified_gmt": lambda r, dp: gmt(r.modified),
            "date_completed_gmt": lambda r, dp: gmt(r.completed),
            "date_paid_gmt": lambda r, dp: gmt(r.paid),
        }

    def _local(self, value: datetime | None) -> str | None:
        return None if value is None else value.astimezone(self.tz).strftime(_WP_DATE)

    @staticmethod
    def _gmt(value: datetime | None) -> str | None:
        return None if value is None else value.strftime(_WP_DATE)

    def render_json(self, rec: OrderRecord, base: str) -> bytes:
        """The full order as JSON (dp=2), serialised once per change of the order."""
        if rec.cache_json is None or rec.cache_base != base:
            rec.cache_json, rec.cache_base = wp_json(self.render(rec, base)), base
        return rec.cache_json

    def project(
        self, rec: OrderRecord, fields: FieldsFilter, base: str, dp: int = 2
    ) -> dict[str, Any]:
        """`_fields` output. Plain top-level keys (the usual cheap listing, e.g.
        `id,date_modified_gmt,status`) are read straight off the record, as WordPress skips
        computing fields that were not asked for; anything else projects the full order."""
        if fields.nested or not all(k in self._fast for k in fields.keys):
            return fields.apply(self.render(rec, base, dp))
        return {k: rec.overrides.get(k, self._fast[k](rec, dp)) for k in fields.keys}

    def render(self, rec: OrderRecord, base: str, dp: int = 2) -> dict[str, Any]:
        """The order as `GET /wc/v3/orders/<id>` returns it (a fresh dict)."""

        def fmt(value: Decimal) -> str:
            return f"{value:.{dp}f}"

        zero = fmt(Decimal(0))
        status = rec.status
        order_url = f"{base}/wp-json/wc/v3/orders/{rec.id}"
        rendered = {
            "id": rec.id,
            "parent_id": 0,
            "status": status,
            "currency": rec.currency,
            "version": self.version,
            "prices_include_tax": False,
            "date_created": self._local(rec.created),
            "date_modified": self._local(rec.modified),
            "discount_total": zero,
            "discount_tax": zero,
            "shipping_total": zero,
            "shipping_tax": zero,
            "cart_tax": zero,
            "total": fmt(rec.total),
            "total_tax": zero,
            "customer_id": 0,
            "order_key": rec.order_key,
            "billing": dict(rec.billing),
            "shipping": dict(_EMPTY_SHIPPING),
            "payment_method": rec.payment_method,
            "payment_method_title": rec.payment_method_title,
            "transaction_id": rec.transaction_id,
            "customer_ip_address": rec.ip,
            "customer_user_agent": "",
            "created_via": rec.created_via,
            "customer_note": "",
            "date_completed": self._local(rec.completed),
            "date_paid": self._local(rec.paid),
            "cart_hash": "",
            "number": str(rec.id),
            "meta_data": [dict(m) for m in rec.meta],
            "line_items": [self._line(line, fmt, zero) for line in rec.items],
            "tax_lines": [],
            "shipping_lines": [],
            "fee_lines": [],
            "coupon_lines": [],
            "refunds": [
                {"id": r.id, "reason": r.reason, "total": "-" + fmt(r.amount)} for r in rec.refunds
            ],
            "payment_url": (
                f"{base}/checkout/order-pay/{rec.id}/?pay_for_order=true&key={rec.order_key}"
            ),
            # WC_Order::is_editable(): pending, on-hold, auto-draft (checkout drafts are not).
            "is_editable": status in ("pending", "on-hold", "auto-draft"),
            # needs_payment(): unpaid statuses (+ checkout-draft from Blocks) and a positive total.
            "needs_payment": status in ("pending", "failed", "checkout-draft") and rec.total > 0,
            "needs_processing": True,  # physical goods
            "date_created_gmt": self._gmt(rec.created),
            "date_modified_gmt": self._gmt(rec.modified),
            "date_completed_gmt": self._gmt(rec.completed),
            "date_paid_gmt": self._gmt(rec.paid),
            "currency_symbol": CURRENCY_SYMBOLS.get(rec.currency, rec.currency),
            "_links": {
                "self": [
                    {
                        "href": order_url,
                        "targetHints": {"allow": ["GET", "POST", "PUT", "PATCH", "DELETE"]},
                    }
                ],
                "collection": [{"href": f"{base}/wp-json/wc/v3/orders"}],
                "email_templates": [
                    {"embeddable": True, "href": f"{order_url}/actions/email_templates"}
                ],
            },
        }
        return {**rendered, **rec.overrides} if rec.overrides else rendered

    @staticmethod
    def _line(line: Any, fmt: Any, zero: str) -> dict[str, Any]:
        price = line.total / max(1, line.quantity)
        return {
            "id": line.id,
            "name": line.name,
            "product_id": line.product_id,
            "variation_id": 0,
            "quantity": line.quantity,
            "tax_class": "",
            "subtotal": fmt(line.total),
            "subtotal_tax": zero,
            "total": fmt(line.total),
            "total_tax": zero,
            "taxes": [],
            "meta_data": [dict(m) for m in line.meta],
            "sku": line.sku,
            # A JSON number, not a money string: 12.5, or 90 when whole.
            "price": int(price) if price == price.to_integral_value() else float(price),
            "image": {"id": "", "src": ""},
            "parent_name": None,
        }


class FieldsFilter:
    """WordPress's `_fields`: top-level keys and dotted paths, kept in the response's key order."""

    def __init__(self, fields: list[str]) -> None:
        wanted: dict[str, list[str] | None] = {}
        for item in fields:
            top, _, rest = item.partition(".")
            if not rest:
                wanted[top] = None
            elif top not in wanted or wanted[top] is not None:
                paths = wanted.setdefault(top, [])
                assert paths is not None
                paths.append(rest)
        self.keys = [k for k in ORDER_KEYS if k in wanted]
        self.nested = {k: v for k, v in wanted.items() if v is not None}

    def apply(self, data: dict[str, Any]) -> dict[str, Any]:
        out = {k: data[k] for k in self.keys if k in data}
        for key, paths in self.nested.items():
            value = out.get(key)
            if isinstance(value, dict):
                out[key] = FieldsFilter._project(value, paths)
        return out

    @staticmethod
    def _project(value: dict[str, Any], paths: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for path in paths:
            head, _, rest = path.partition(".")
            if head not in value:
                continue
            if rest and isinstance(value[head], dict):
                out[head] = {**out.get(head, {}), **FieldsFilter._project(value[head], [rest])}
            else:
                out[head] = value[head]
        return out
