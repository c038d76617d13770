"""The words of an alert: a one-line `summary` and a few `detail` lines, in English or Chinese.

Every human-facing channel (console, email subject and body, later the chat robots) starts from
these two, so an order reads the same everywhere: store, order number, what happened, amount,
masked customer, and the time *in the channel's zone* (a 23:30 UTC order is next morning in
Shanghai, and the shop owner thinks in local days). Output is plain text: each channel escapes it
for its own format (HTML for email), and every order-derived value is squeezed onto one line
here first, so a newline in a customer's name cannot forge a header or a second alert line.

Deliberately small plain Python: per-event × locale × flavour Jinja2 templates are a later
issue, and they can replace this module without touching the channels' callers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from pollerd.model import parse_utc

LOCALES = ("en", "zh-CN")
MAX_ITEMS = 10  # more line items than this become "… and N more": an alert is not an invoice
_MAX_VALUE = 200  # characters of one order-derived value (a pasted essay as a name stays short)

_TITLES: dict[str, dict[str, str]] = {
    "en": {
        "order.created": "New order {number}",
        "order.paid": "Order {number} paid",
        "order.fulfilled": "Order {number} fulfilled",
        "order.partially_refunded": "Order {number} partially refunded",
        "order.refunded": "Order {number} refunded",
        "order.cancelled": "Order {number} cancelled",
        "order.deleted": "Order {number} deleted",
        "dispute.opened": "Dispute opened on order {number}",
        "dispute.updated": "Dispute on order {number}: {status}",
        "order": "Order {number}: {type}",  # an order event this table does not know yet
        "alert": "Alert: {name}",
    },
    "zh-CN": {
        "order.created": "新订单 {number}",
        "order.paid": "订单 {number} 已付款",
        "order.fulfilled": "订单 {number} 已完成",
        "order.partially_refunded": "订单 {number} 部分退款",
        "order.refunded": "订单 {number} 已退款",
        "order.cancelled": "订单 {number} 已取消",
        "order.deleted": "订单 {number} 已删除",
        "dispute.opened": "订单 {number} 收到争议（拒付）",
        "dispute.updated": "订单 {number} 的争议：{status}",
        "order": "订单 {number}：{type}",
        "alert": "告警：{name}",
    },
}
# Shopify "fulfilled" means shipped; WooCommerce's counterpart is the `completed` status.
_SHOPIFY_FULFILLED = {"en": "Order {number} fulfilled", "zh-CN": "订单 {number} 已发货"}

_ALERTS: dict[str, dict[str, str]] = {
    "en": {
        "alert.channel_failing": "Alert: channel failing",
        "alert.store_failing": "Alert: store polling failing",
    },
    "zh-CN": {
        "alert.channel_failing": "告警：通知渠道发送失败",
        "alert.store_failing": "告警：店铺轮询失败",
    },
}

_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "store": "[{store}] ",
        "test": "[TEST] ",
        "refund": "refunded {refunded} of {total} {currency}",
        "total": "Total: {value}",
        "refunded": "Refunded: {value}",
        "payment": "Payment: {value}",
        "customer": "Customer: {value}",
        "item": "{quantity} × {name}",
        "more": "… and {count} more",
        "reason": "Reason: {value}",
        "link": "Open: {value}",
        "disputed": "Disputed: {value}",
        "evidence": "Evidence due by: {value}",
    },
    "zh-CN": {
        "store": "【{store}】",
        "test": "【测试】",
        "refund": "已退 {refunded} / {total} {currency}",
        "total": "金额：{value}",
        "refunded": "已退款：{value}",
        "payment": "支付方式：{value}",
        "customer": "顾客：{value}",
        "item": "{quantity} × {name}",
        "more": "……另有 {count} 项",
        "reason": "原因：{value}",
        "link": "后台：{value}",
        "disputed": "争议金额：{value}",
        "evidence": "举证截止：{value}",
    },
}

# zoneinfo abbreviates China Standard Time as "CST", which readers also take for US Central.
_ZH_ZONE_NAMES = {
    "Asia/Shanghai": "北京时间",
    "Asia/Chongqing": "北京时间",
    "Asia/Chungking": "北京时间",
    "Asia/Harbin": "北京时间",
    "PRC": "北京时间",
    "Asia/Hong_Kong": "香港时间",
    "Hongkong": "香港时间",
    "Asia/Macau": "澳门时间",
    "Asia/Taipei": "台北时间",
}

# Whitespace of every kind (newlines, U+2028, ...), C0/C1 controls and bidi overrides: none of
# them may reach a one-line summary, a mail header or a chat message from an order field.
_UNSAFE = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u200b\u202a-\u202e\u2066-\u2069]+")


def summary(event: dict[str, Any], *, locale: str = "en", timezone: str = "UTC") -> str:
    """One line: `[acme] Order #1001 paid · 25.00 USD · j***@example.com · 2026-11-22 17:32 CST`.

    `event` is `Event.to_json()`; a test order is prefixed `[TEST]`/`【测试】` so nobody ships
    it; the time is `occurred_at` shown in `timezone`.
    """
    lang = _locale(locale)
    words = _WORDS[lang]
    order = _order(event)
    head = words["test"] if event.get("test") else ""
    store = clean(event.get("store"))
    if store:
        head += words["store"].format(store=store)
    parts = [head + _title(event, lang)]
    if str(event.get("type", "")).startswith("alert."):
        parts.append(clean(event.get("reason")))
    else:
        parts.append(_money(event, order, lang))
        parts.append(_customer_short(order))
    parts.append(local_time(event.get("occurred_at"), timezone=timezone, locale=lang))
    return " · ".join(part for part in parts if part)


def detail(
    event: dict[str, Any], *, locale: str = "en", timezone: str = "UTC", link: bool = True
) -> list[str]:
    """Lines under the summary: total, refunds, payment method, customer (masked as the event
    carries it), up to `MAX_ITEMS` line items `2 × Name`, the reason, the admin link.

    `link=False` leaves the admin link out for channels that render it themselves (an HTML
    anchor); `admin_link` gives them the same, validated URL and its label.
    """
    del timezone  # the summary carries the time; kept so every flavour has one signature
    lang = _locale(locale)
    words = _WORDS[lang]
    order = _order(event)
    lines: list[str] = []
    is_order = not str(event.get("type", "")).startswith("alert.")
    currency = clean(order.get("currency"))
    total = clean(order.get("total"))
    if is_order and total:
        lines.append(words["total"].format(value=f"{total} {currency}".strip()))
    refunded = _amount(order.get("refunded_total"))
    if is_order and refunded:
        lines.append(words["refunded"].format(value=f"{refunded} {currency}".strip()))
    payment = clean(order.get("payment_method_title")) or clean(order.get("payment_method"))
    if payment:
        lines.append(words["payment"].format(value=payment))
    customer = _customer_full(order)
    if customer:
        lines.append(words["customer"].format(value=customer))
    items = order.get("line_items") or []
    if isinstance(items, list):
        for item in items[:MAX_ITEMS]:
            if isinstance(item, dict):
                name = clean(item.get("name")) or "?"
                lines.append(words["item"].format(quantity=item.get("quantity", 1), name=name))
        if len(items) > MAX_ITEMS:
            lines.append(words["more"].format(count=len(items) - MAX_ITEMS))
    dispute = _dispute(event)
    if dispute:
        amount = f"{clean(dispute.get('amount'))} {clean(dispute.get('currency'))}".strip()
        lines.append(words["disputed"].format(value=amount))
        due = clean(dispute.get("evidence_due_by"))
        if due:
            lines.append(words["evidence"].format(value=due))
    reason = clean(event.get("reason"))
    if reason:
        lines.append(words["reason"].format(value=reason))
    found = admin_link(event, locale=lang)
    if link and found is not None:
        lines.append(found[0].format(value=found[1]))
    return lines


def admin_link(event: dict[str, Any], *, locale: str = "en") -> tuple[str, str] | None:
    """(label with a `{value}` slot, URL) of the order's admin page, or None. Only http(s) URLs
    pass: a `javascript:` URL must never become a clickable link in someone's mailbox."""
    url = clean(_order(event).get("admin_url"), limit=2000)
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return _WORDS[_locale(locale)]["link"], url


def local_time(value: Any, *, timezone: str = "UTC", locale: str = "en") -> str:
    """`2026-11-22T09:32:36Z` → `2026-11-22 17:32 CST` (en) / `… 北京时间` (zh-CN); "" if absent."""
    try:
        when = parse_utc(value) if isinstance(value, str) else None
    except ValueError:
        return ""
    if when is None:
        return ""
    local = when.astimezone(ZoneInfo(timezone))
    label = _ZH_ZONE_NAMES.get(timezone) if _locale(locale) == "zh-CN" else None
    if label is None:
        label = local.strftime("%Z")
        if label[:1] in "+-":  # zones without an abbreviation: "+08" reads better as "UTC+08"
            label = f"UTC{label}"
    return f"{local:%Y-%m-%d %H:%M} {label}"


def clean(value: Any, *, limit: int = _MAX_VALUE) -> str:
    """An order-derived value as one safe line: no newlines or control characters, at most
    `limit` characters. None and missing values become ""."""
    if value is None:
        return ""
    text = _UNSAFE.sub(" ", str(value)).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _locale(locale: str) -> str:
    """Known locales as is; any other Chinese variant reads zh-CN, everything else English."""
    if locale in LOCALES:
        return locale
    return "zh-CN" if locale.lower().startswith("zh") else "en"


def _order(event: dict[str, Any]) -> dict[str, Any]:
    order = event.get("order")
    return order if isinstance(order, dict) else {}


def _title(event: dict[str, Any], lang: str) -> str:
    kind = clean(event.get("type"))
    if kind.startswith("alert."):
        known = _ALERTS[lang].get(kind)
        return known or _TITLES[lang]["alert"].format(name=kind[6:].replace("_", " "))
    order = _order(event)
    number = clean(order.get("number")) or clean(order.get("id")) or clean(event.get("id"))
    number = number if number.startswith("#") else f"#{number}"
    if kind == "order.fulfilled" and event.get("platform") == "shopify":
        return _SHOPIFY_FULFILLED[lang].format(number=number)
    template = _TITLES[lang].get(kind, _TITLES[lang]["order"])
    status = clean(_dispute(event).get("status")).lower().replace("_", " ")
    return template.format(number=number, type=kind, status=status)


def _dispute(event: dict[str, Any]) -> dict[str, Any]:
    dispute = event.get("dispute")
    return dispute if isinstance(dispute, dict) else {}


def _money(event: dict[str, Any], order: dict[str, Any], lang: str) -> str:
    total, currency = clean(order.get("total")), clean(order.get("currency"))
    refunded = _amount(order.get("refunded_total"))
    if refunded and event.get("type") in ("order.refunded", "order.partially_refunded"):
        return _WORDS[lang]["refund"].format(refunded=refunded, total=total, currency=currency)
    return f"{total} {currency}".strip() if total else ""


def _amount(value: Any) -> str:
    """A non-zero decimal amount as text, else "" (refunded_total is "0" on most orders)."""
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return ""
    return clean(value) if amount.is_finite() and amount != 0 else ""


def _customer(order: dict[str, Any]) -> dict[str, Any]:
    customer = order.get("customer")
    return customer if isinstance(customer, dict) else {}


def _customer_short(order: dict[str, Any]) -> str:
    customer = _customer(order)
    for key in ("email", "name", "phone"):
        value = clean(customer.get(key))
        if value:
            return value
    return ""


def _customer_full(order: dict[str, Any]) -> str:
    customer = _customer(order)
    values = (clean(customer.get(key)) for key in ("name", "email", "phone"))
    return " · ".join(value for value in values if value)


def fit_items(
    event: dict[str, Any],
    *,
    locale: str,
    timezone: str,
    head: list[str],
    fits: Callable[[list[str]], bool],
) -> list[str]:
    """`head` + the detail lines (without the link) with as many line items as `fits`; the ones
    left out become one "… (+N items)" line, so an alert is shortened, never split. With no item
    left it returns the shortest version, fitting or not (the caller cuts as a last resort)."""
    before, items, after, total = _split_items(event, locale, timezone)
    shown_items = items[:-1] if total > MAX_ITEMS else items
    lines: list[str] = []
    for shown in range(len(shown_items), -1, -1):
        kept = (
            items
            if shown == len(shown_items)
            else [*shown_items[:shown], more_items(total - shown, locale)]
        )
        lines = [*head, *before, *kept, *after]
        if fits(lines):
            break
    return lines


def more_items(count: int, locale: str) -> str:
    return f"…（另有 {count} 项）" if locale.lower().startswith("zh") else f"… (+{count} items)"


def _split_items(
    event: dict[str, Any], locale: str, timezone: str
) -> tuple[list[str], list[str], list[str], int]:
    """`detail` cut into (lines before the items, item lines, lines after, item count)."""
    lines = detail(event, locale=locale, timezone=timezone, link=False)
    order = event.get("order")
    items = order.get("line_items") if isinstance(order, dict) else None
    if not isinstance(order, dict) or not isinstance(items, list) or not items:
        return lines, [], [], 0
    bare = detail({**event, "order": {**order, "line_items": []}}, locale=locale, link=False)
    pairs = zip(lines, bare, strict=False)
    start = next((i for i, (a, b) in enumerate(pairs) if a != b), len(bare))
    end = start + len(lines) - len(bare)
    return lines[:start], lines[start:end], lines[end:], len(items)


def cut_lines(lines: list[str], fits: Callable[[list[str]], bool]) -> list[str]:
    """The last resort for absurd input: drop whole lines from the end, then shorten the last
    kept one (binary search on its length, "…" appended) until `fits` says the result fits."""
    kept = list(lines)
    while len(kept) > 1 and not fits(kept):
        kept.pop()
    last, low, high = kept[-1], 0, len(kept[-1])
    while low < high:  # the longest prefix of the last line that still fits
        middle = (low + high + 1) // 2
        if fits([*kept[:-1], last[:middle] + "…"]):
            low = middle
        else:
            high = middle - 1
    kept[-1] = last[:low] + "…"
    return kept
