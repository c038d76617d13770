"""A full wc/v3 order payload → `Order`: pure, and strict about the contract (a field that
breaks it raises `OrderPayloadError`, which the source turns into a `Malformed` row)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
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
from pollerd.sources.payload import (
    OrderPayloadError,
    payload_amount,
    payload_date,
    payload_quantity,
)


def normalize(payload: dict[str, Any], *, store: str, site_url: str) -> Order:
    """A full wc/v3 order → `Order`. Pure. Events see only masked customer data; the full
    contact rides in `Order.contact` for the store to seal (or drop without `pii_key`).

    Dates come from the `*_gmt` fields (naive UTC by contract; the others are site-local wall
    time). `paid_at` is `date_paid_gmt` as WooCommerce reports it, sticky after cancel/refund
    and set at `processing` for cash on delivery: the diff's pay rules decide what counts as
    paid. `admin_url` uses the HPOS order screen (`admin.php?page=wc-orders`), the default since
    WooCommerce 8.2; on posts storage WooCommerce redirects it to `post.php` itself
    (COTRedirectionController), while the reverse does not hold.
    """
    oid = order_id(payload, store)
    status = payload.get("status")
    if not isinstance(status, str) or not status:
        raise OrderPayloadError(store, oid, "status", f"missing or not a string: {status!r}")
    created = payload_date(payload, "date_created_gmt", store, oid, required=True)
    updated = payload_date(payload, "date_modified_gmt", store, oid, required=True)
    assert created is not None and updated is not None
    billing = _section(payload, "billing")
    shipping = _section(payload, "shipping")
    email = _text(billing.get("email"))
    phone = _text(billing.get("phone")) or _text(shipping.get("phone"))
    return Order(
        store=store,
        platform="woocommerce",
        id=oid,
        number=_string(payload, "number", store, oid, numbers=True) or oid,
        status=status,
        created_at=created,
        updated_at=updated,
        total=_money(payload, "total", store, oid),
        currency=_string(payload, "currency", store, oid),
        paid_at=payload_date(payload, "date_paid_gmt", store, oid),
        completed_at=payload_date(payload, "date_completed_gmt", store, oid),
        cancelled_at=None,  # WooCommerce keeps no cancellation date; the diff uses updated_at
        payment_method=_string(payload, "payment_method", store, oid),
        payment_method_title=_string(payload, "payment_method_title", store, oid),
        refunded_total=_refunded(payload.get("refunds"), store, oid),
        customer_email=mask_email(email),
        customer_phone=mask_phone(phone),
        customer_name=_short_name(billing) or _short_name(shipping),
        contact=Contact.of(_full_name(billing) or _full_name(shipping), email, phone),
        admin_url=admin_url(site_url, oid),
        line_items=tuple(_line_items(payload.get("line_items"), store, oid)),
        hidden_from=_trashed_from(payload) if status == "trash" else None,
        hidden_at=_trashed_at(payload) if status == "trash" else None,
        customer_ip=normal_ip(payload.get("customer_ip_address")),
    )


def admin_url(site_url: str, oid: object) -> str:
    return f"{site_url.rstrip('/')}/wp-admin/admin.php?page=wc-orders&action=edit&id={oid}"


def _trash_meta(payload: dict[str, Any], key: str) -> str | None:
    """What WordPress noted when the order went to the trash: `_wp_trash_meta_status` (the
    status it had, `wc-processing`) and `_wp_trash_meta_time` (Unix seconds), both shown in the
    REST `meta_data` (fixture order_trash_19; a real 10.0.2 with HPOS, sync off, too)."""
    meta = payload.get("meta_data")
    for entry in meta if isinstance(meta, list) else ():
        if isinstance(entry, dict) and entry.get("key") == key:
            value = entry.get("value")
            return str(value) if isinstance(value, str | int) and value != "" else None
    return None


def _trashed_from(payload: dict[str, Any]) -> str | None:
    value = _trash_meta(payload, "_wp_trash_meta_status")
    return value.removeprefix("wc-") if value else None


def _trashed_at(payload: dict[str, Any]) -> datetime | None:
    """When the order was trashed: the trash's own date, so an old order trashed before the
    start point and merely edited after it is history, not news (seen on a real store)."""
    value = _trash_meta(payload, "_wp_trash_meta_time")
    if value is None or not value.isascii() or not value.isdigit() or len(value) > 11:
        return None  # unreadable: undated, like a cancellation (never a reason to refuse it)
    return datetime.fromtimestamp(int(value), UTC)  # 11 digits: year 5138 at most


def order_id(payload: dict[str, Any], store: str) -> str:
    oid = payload.get("id")
    if isinstance(oid, bool) or not isinstance(oid, int) or oid <= 0:
        raise OrderPayloadError(store, "?", "id", f"missing or not a positive integer: {oid!r}")
    return str(oid)


def _money(payload: dict[str, Any], field: str, store: str, oid: str) -> str:
    """The amount as WooCommerce wrote it (its own decimals), once it reads as a finite number:
    `"garbage"` must set the order aside, never reach a message as "Total: garbage EUR"."""
    raw = payload.get(field)
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise OrderPayloadError(store, oid, field, f"missing or not an amount: {raw!r}")
    _amount(raw, field, store, oid)
    return str(raw).strip()


def _amount(raw: Any, field: str, store: str, oid: str) -> Decimal:
    return payload_amount(raw, field, store, oid)


def _string(
    payload: dict[str, Any],
    key: str,
    store: str,
    oid: str,
    *,
    numbers: bool = False,
    field: str = "",
) -> str:
    """A text field as sent ("" when absent); `True` or a list must not reach an alert as
    "True" or "['EUR']" (issue 12). `numbers`: a plain integer is its text (order numbers)."""
    raw = payload.get(key)
    if raw is None or isinstance(raw, str):
        return raw or ""
    if numbers and isinstance(raw, int) and not isinstance(raw, bool):
        return str(raw)
    raise OrderPayloadError(store, oid, field or key, f"not a string: {str(raw)[:40]!r}")


def _refunded(refunds: Any, store: str, oid: str) -> Decimal:
    """Positive sum of `refunds[].total`, which WooCommerce reports as negative strings."""
    if refunds is None:
        return Decimal("0")
    if not isinstance(refunds, list):
        raise OrderPayloadError(store, oid, "refunds", "not a list")
    total = Decimal("0")
    for i, refund in enumerate(refunds):
        raw = refund.get("total") if isinstance(refund, dict) else None
        total += abs(_amount(raw, f"refunds[{i}].total", store, oid))
    return total


def _line_items(items: Any, store: str, oid: str) -> Iterable[LineItem]:
    if items is None:
        return
    if not isinstance(items, list):
        raise OrderPayloadError(store, oid, "line_items", "not a list")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise OrderPayloadError(store, oid, f"line_items[{i}]", "not an object")
        count = payload_quantity(item.get("quantity"), f"line_items[{i}].quantity", store, oid)
        total = item.get("total") or "0"
        _amount(total, f"line_items[{i}].total", store, oid)
        name = _string(item, "name", store, oid, field=f"line_items[{i}].name")
        yield LineItem(name=name, quantity=count, total=str(total))


def _section(payload: dict[str, Any], name: str) -> dict[str, Any]:
    value = payload.get(name)
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _short_name(address: dict[str, Any]) -> str | None:
    return short_name(address.get("first_name"), address.get("last_name"))


def _full_name(address: dict[str, Any]) -> str | None:
    return full_name(address.get("first_name"), address.get("last_name"))
