"""What a template sees: an event's JSON turned into cleaned, one-line, masked variables
(`context`), and the variables of a digest of many events (`digest_context`).

The README lists these variables; they are a contract with user templates. Customer data is
masked here as well as in the event (masking again is a no-op), so a template cannot show
more than the event carries.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from pollerd.model import CJK, PERMANENT_DELETION, mask_email, mask_phone
from pollerd.templates.format import (
    admin_url,
    clean,
    labels,
    local_day,
    local_time,
    money,
    say,
    trusted,
)
from pollerd.templates.reports import REPORT_EVENTS, report_context
from pollerd.templates.seller import SELLER_EVENTS, seller_context

if TYPE_CHECKING:
    from pollerd.templates.loader import Templates

# Event variables a digest has no value for (see digest_context).
_EVENT_ONLY = (
    "id",
    "platform",
    "occurred_at",
    "order_id",
    "status",
    "total",
    "currency",
    "refunded",
    "payment",
)


def _nonzero(value: Any) -> bool:
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return False
    return amount.is_finite() and amount != 0


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def mask_name(value: Any) -> str:
    """A name as events carry it is already short ("Jane D.", "王*"); keep only its first word
    and an initial if a template is handed a full one; a Chinese, Japanese or Korean name
    keeps its family name (written first) and masks the rest ("王芳" → "王*"), as
    `pollerd.model.short_name` does."""
    text = clean(value)
    if CJK.match(text):
        name = "".join(text.split())
        return name[:1] + "*" * max(1, len(name) - 1)
    parts = text.split()
    if len(parts) < 2:
        return text
    return f"{parts[0]} {parts[-1][:1]}." if not parts[-1].endswith(".") else text


def context(data: dict[str, Any], *, locale: str, timezone: str) -> dict[str, Any]:
    """The variables every template sees (the README lists them): cleaned, one-line values;
    customer data masked (events only carry masked data; masking again is a no-op). `tail`
    (the summary after the headline), `before` and `after` (label, value) detail lines
    around the `items` are prepared here so every flavour's layout says the same."""
    words = labels(locale)
    order = _dict(data.get("order"))
    found = _dict(order.get("customer"))
    dispute = _dict(data.get("dispute"))
    kind = clean(data.get("type"))
    number = clean(order.get("number")) or clean(order.get("id")) or clean(data.get("id"))
    raw_items = order.get("line_items")
    items = [
        {
            "name": clean(item.get("name")) or "?",
            "quantity": clean(item.get("quantity", 1)) or "1",
            "total": clean(item.get("total")),
        }
        for item in (raw_items if isinstance(raw_items, list) else [])
        if isinstance(item, dict)
    ]
    currency = clean(order.get("currency"), limit=10)
    total = clean(order.get("total"))
    refunded = clean(order.get("refunded_total")) if _nonzero(order.get("refunded_total")) else ""
    customer = {
        "name": clean(found.get("name")),
        "email": clean(mask_email(clean(found.get("email")) or None)),
        "phone": clean(mask_phone(clean(found.get("phone")) or None)),
    }
    payment = clean(order.get("payment_method_title")) or clean(order.get("payment_method"))
    reason = clean(data.get("reason"))
    if kind == "order.cancelled" or kind.startswith("dispute."):
        reason = say(reason, locale)  # a platform code ("customer", "FRAUDULENT"), in words
    when = local_time(data.get("occurred_at"), timezone=timezone, locale=locale)
    is_alert = kind.startswith("alert.")

    def cash(amount: str) -> str:
        return money(amount, currency, locale=locale)

    tail: list[str] = []
    before: list[tuple[str, str]] = []
    after: list[tuple[str, str]] = []
    if is_alert:
        tail.append(reason)
    else:
        if refunded and kind in ("order.refunded", "order.partially_refunded"):
            if total and _nonzero(total) and Decimal(refunded) >= Decimal(total):
                tail.append(cash(refunded))  # "Order #1001 refunded · $25.00": all of it
            else:
                tail.append(words["refund"].format(refunded=cash(refunded), total=cash(total)))
        elif total:
            tail.append(cash(total))
        tail.append(customer["email"] or customer["name"] or customer["phone"])
        if total:
            before.append((words["total"], cash(total)))
        if refunded:
            before.append((words["refunded"], cash(refunded)))
    tail.append(when)
    if payment:
        before.append((words["payment"], payment))
    shown = " · ".join(value for value in customer.values() if value)
    if shown:
        before.append((words["customer"], shown))
    due = dispute.get("evidence_due_by")
    facts = {  # in the reader's words: "under review" / "审核中", "Dec 7, 2026 07:59 CST"
        "status": say(dispute.get("status"), locale),
        "type": say(dispute.get("type"), locale),
        "amount": clean(dispute.get("amount")),
        "currency": clean(dispute.get("currency"), limit=10),
        "reason": say(dispute.get("reason"), locale),
        "evidence_due_by": local_day(due, timezone=timezone, locale=locale) if due else "",
    }
    if dispute:
        after.append((words["disputed"], money(facts["amount"], facts["currency"], locale=locale)))
        if facts["evidence_due_by"]:
            after.append((words["evidence"], facts["evidence_due_by"]))
    # An alert's reason is already its summary; a deletion's is the platform's "Order #1001
    # was deleted.", which only repeats the headline (in English, even in a Chinese alert),
    # unless pollerd found the order deleted for good: that the reader must know, in words.
    if reason and not is_alert and kind != "order.deleted":
        after.append((words["reason"], reason))
    elif kind == "order.deleted" and data.get("reason") == PERMANENT_DELETION:
        after.append((words["reason"], words["permanent"]))
    alert: dict[str, Any] = {}
    if kind in SELLER_EVENTS:  # worded from the rule's figures, never naming the buyer
        alert, tail, before, after = seller_context(data, locale=locale, timezone=timezone)
        if kind in ("alert.order_burst", "alert.cancellation_rate"):
            items = []  # about many orders: the first one's items would mislead
        if kind == "alert.cancellation_rate":  # about the store: no order's link
            order = {key: value for key, value in order.items() if key != "admin_url"}
    report: dict[str, Any] = {}
    store = clean(data.get("store"))
    if kind in REPORT_EVENTS:  # about a period of one or more stores, from its figures
        report, tail, before, lines, after = report_context(data, locale=locale, timezone=timezone)
        items = [{"name": line, "quantity": "", "total": ""} for line in lines]
        order, reason, customer = {}, "", dict.fromkeys(customer, "")
        store = "" if store == "*" else store  # several stores: each has its line
    return {
        "id": clean(data.get("id")),
        "type": kind,
        "store": store,
        "platform": clean(data.get("platform")),
        "test": bool(data.get("test")),
        "occurred_at": clean(data.get("occurred_at")),
        "when": when,
        "number": number if number.startswith("#") else f"#{number}",
        "order_id": clean(order.get("id")),
        "status": clean(order.get("status")),
        "total": total,
        "currency": currency,
        "refunded": refunded,
        "payment": payment,
        "customer": customer,
        "items": items,
        "dispute": facts if dispute else {},
        "alert": alert,
        "report": report,
        "reason": reason,
        "admin_url": admin_url(order.get("admin_url")),
        "tail": [part for part in tail if part],
        "before": before,
        "after": after,
        "hidden": 0,
        "brief": False,
    }


def digest_context(
    templates: Templates,
    events: Sequence[dict[str, Any]],
    *,
    locale: str,
    timezone: str,
    flavour: str = "text",
) -> dict[str, Any]:
    """Variables of the digest template: `count`, `totals` (formatted per currency, each order
    once as its latest event shows it), `items` (one summary line per event, as `name`: the
    event's own title in `flavour`, already escaped, so pollerd's "[store]" stays ours and a
    customer's "[x](…)" stays inert). The event keys a digest lacks are "", so a layout
    shared with events renders it under StrictUndefined."""
    orders: dict[tuple[str, str], dict[str, Any]] = {}
    for event in events:
        order = event.get("order")
        kind = str(event.get("type", ""))
        # An alert (a dispute deadline reminder too) is about an order, not a sale of it.
        if (
            not kind.startswith(("alert.", "report."))
            and kind not in SELLER_EVENTS
            and isinstance(order, dict)
        ):
            orders[(str(event.get("store")), str(order.get("id")))] = order
    sums: dict[str, Decimal] = {}
    for order in orders.values():
        try:
            amount = Decimal(str(order.get("total")))
        except (InvalidOperation, ValueError):
            continue
        if amount.is_finite():
            code = clean(order.get("currency"), limit=10)
            sums[code] = sums.get(code, Decimal(0)) + amount
    lines = [
        trusted(templates.render(e, flavour=flavour, locale=locale, timezone=timezone).title)
        for e in events
    ]
    totals = [money(value, code, locale=locale) for code, value in sums.items()]
    label = "digest_total_one" if len(orders) == 1 else "digest_total"
    return {
        **dict.fromkeys(_EVENT_ONLY, ""),
        "type": "digest",
        "count": len(events),
        "orders": len(orders),
        "totals": totals,
        "number": "",
        "when": "",
        "reason": "",
        "customer": {},
        "dispute": {},
        "alert": {},
        "report": {},
        "items": [{"name": line, "quantity": "", "total": ""} for line in lines],
        "hidden": 0,
        "tail": [],
        "before": [
            (
                labels(locale)[label].format(orders=len(orders)),
                (" - " if flavour == "sms" else " · ").join(totals),  # as `sep` is
            ),
        ]
        if sums
        else [],
        "after": [],
        "brief": False,
        "test": False,
        "store": "",
        "admin_url": "",
    }
