"""The seller rules' alerts (`alert.high_value`, `alert.unpaid_timeout`, `alert.order_burst`,
`alert.cancellation_rate`, `dispute.deadline`) as template variables.

A rule puts its figures in the event's `alert` object (`pollerd.alerts`); its `reason` is an
English sentence for logs. A Chinese seller must read the figures in Chinese, so the templates
word them from `alert` (here made readable: money in the locale's format, times in the
channel's zone, rates as percentages), never from `reason`.

What an alert shows is what the seller acts on: the order (number, total, items, admin link),
never the buyer. A burst is found from the buyer's email, phone or IP, so it names the kind
of match ("from one IP") and the order numbers (`alert.orders`; an order stored before its
number was, by its id), and no customer line appears on any of these alerts: the order's admin
page is where a person looks the buyer up. A cancellation rate names the spans it compares
("in the last 7 days ... (7-day windows)", "over 90 days").
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pollerd.model import parse_utc
from pollerd.templates.format import clean, labels, local_time, money, say
from pollerd.urgency import urgent

SELLER_EVENTS_ORDER = (  # as the README lists the rules
    "alert.high_value",
    "alert.unpaid_timeout",
    "alert.order_burst",
    "alert.cancellation_rate",
    "dispute.deadline",
)
SELLER_EVENTS = frozenset(SELLER_EVENTS_ORDER)

# The seller's words for the rules' figures; labels of detail lines end in their colon.
SELLER_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "ip": "IP",
        "email": "email",
        "phone": "phone",
        "or": " or ",
        "list": ", ",
        "hours": "{n} h",
        "minutes": "{n} min",
        "days": "{n} days",
        "last": "in the last {span}",
        "over": "over {span}",
        "long_run": "over the long run",
        "each_days": "{n}-day",
        "each_hours": "{n}-hour",
        "each_minutes": "{n}-minute",
        "unpaid_since": "Placed: ",
        "orders": "Orders: ",
        "window_rate": "This window: ",
        "span_rate": "Last {span}: ",
        "of_orders": "{rate} ({cancelled} of {orders} orders)",
        "usual": "Usual (mean of earlier windows): ",
        "long_rate": "Long run: ",
        "limit": "; limit {limit}",
    },
    "zh-CN": {
        "ip": "IP",
        "email": "邮箱",
        "phone": "手机号",
        "or": "或",
        "list": "、",
        "hours": "{n} 小时",
        "minutes": "{n} 分钟",
        "days": "{n} 天",
        "last": "近{span}",
        "over": "近{span}",
        "long_run": "长期",
        "each_days": "每期{n}天",
        "each_hours": "每期{n}小时",
        "each_minutes": "每期{n}分钟",
        "unpaid_since": "下单时间：",
        "orders": "订单：",
        "window_rate": "本期：",
        "span_rate": "近{span}：",
        "of_orders": "{rate}（{orders} 单中取消 {cancelled} 单）",
        "usual": "往期均值：",
        "long_rate": "长期：",
        "limit": "；上限 {limit}",
    },
}


def _words(locale: str) -> dict[str, str]:
    return SELLER_WORDS["zh-CN" if locale.replace("_", "-").startswith("zh") else "en"]


def percent(value: Any, locale: str) -> str:
    """0.2345 → "23.5 %" (en, with the SI space) / "23.5%" (zh-CN); whole numbers lose ".0"."""
    try:
        number = float(value) * 100
    except (TypeError, ValueError):
        return ""
    shown = f"{number:.1f}".removesuffix(".0")
    return f"{shown}%" if locale.startswith("zh") else f"{shown} %"


def span(seconds: float, locale: str) -> str:
    """A span as sellers say it: "30 min", "24 h", "7 days" (whole units, rounded)."""
    words = _words(locale)
    if seconds >= 2 * 86400 and seconds % 86400 == 0:
        return words["days"].format(n=int(seconds // 86400))
    if seconds >= 3600:
        return words["hours"].format(n=round(seconds / 3600))
    return words["minutes"].format(n=max(1, round(seconds / 60)))


def window_span(seconds: float, locale: str) -> tuple[str, str]:
    """A rate's window as a span ("7 days", "7天") and as a window's length ("7-day",
    "每期7天"): whole days from 2 days, else whole hours, else minutes. Chinese writes the number
    against its unit here, as in 近7天."""
    words = _words(locale)
    if seconds >= 2 * 86400 and seconds % 86400 == 0:
        unit, size = "days", 86400
    elif seconds >= 3600 and seconds % 3600 == 0:
        unit, size = "hours", 3600
    else:
        unit, size = "minutes", 60
    n = max(1, round(seconds / size))
    spoken = words[unit].format(n=n)
    if locale.replace("_", "-").startswith("zh"):
        spoken = spoken.replace(" ", "")
    return spoken, words[f"each_{unit}"].format(n=n)


def _seconds(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _when(value: Any) -> datetime | None:
    try:
        return parse_utc(value) if isinstance(value, str) and value else None
    except ValueError:
        return None


def seller_context(
    data: dict[str, Any], *, locale: str, timezone: str
) -> tuple[dict[str, Any], list[str], list[tuple[str, str]], list[tuple[str, str]]]:
    """(`alert` as the templates see it, `tail`, `before`, `after`) for a seller alert.
    Every value is a cleaned string, ready for the flavour's escaping."""
    kind = clean(data.get("type"))
    raw = data.get("alert")
    figures: dict[str, Any] = raw if isinstance(raw, dict) else {}
    order = data.get("order") if isinstance(data.get("order"), dict) else {}
    assert isinstance(order, dict)
    words = _words(locale)
    label = labels(locale)
    when = local_time(data.get("occurred_at"), timezone=timezone, locale=locale)
    currency = clean(figures.get("currency") or order.get("currency"), limit=10)
    facts: dict[str, Any] = {
        "rule": clean(figures.get("rule")),
        "severity": clean(figures.get("severity")),
        # Its title starts with the locale's marker, the one thing every flavour can show; the
        # same test lets it through quiet hours (pollerd.urgency).
        "urgent": urgent(kind, figures, data.get("occurred_at")),
    }
    tail: list[str] = []
    before: list[tuple[str, str]] = []
    after: list[tuple[str, str]] = []
    total = money(figures.get("total") or order.get("total"), currency, locale=locale)
    if kind == "alert.high_value":
        facts["total"] = total
        facts["threshold"] = money(figures.get("threshold"), currency, locale=locale)
        payment = clean(order.get("payment_method_title")) or clean(order.get("payment_method"))
        if payment:  # a reviewer weighs a bank transfer and a card differently
            before.append((label["payment"], payment))
    elif kind == "alert.unpaid_timeout":
        facts["total"] = total
        facts["after"] = span(_seconds(figures.get("after_seconds")), locale)
        placed = local_time(figures.get("created_at"), timezone=timezone, locale=locale)
        tail.append(total)
        if placed:
            before.append((words["unpaid_since"], placed))
    elif kind == "alert.order_burst":
        ids = [clean(i) for i in figures.get("orders") or [] if clean(i)]
        numbers = [i if i.startswith("#") else f"#{i}" for i in ids]
        by = [words.get(clean(b), clean(b)) for b in figures.get("by") or []]
        facts["count"] = clean(figures.get("count")) or str(len(ids))
        facts["by"] = words["or"].join(by)
        facts["window"] = span(_seconds(figures.get("window_seconds")), locale)
        facts["orders"] = words["list"].join(numbers)
    elif kind == "alert.cancellation_rate":
        window = _seconds(figures.get("window_seconds"))
        if not window:  # an alert raised before the figures carried it: from its crossing
            start, now = _when(figures.get("since")), _when(data.get("occurred_at"))
            window = round((now - start).total_seconds() / 86400) * 86400 if start and now else 0
        spoken, each = window_span(window, locale) if window else ("", "")
        long_window = _seconds(figures.get("max_rate_window_seconds"))
        long_spoken = window_span(long_window, locale)[0] if long_window else ""
        facts["window"] = spoken
        facts["windows"] = each  # "7-day" / "每期7天"; empty when unknown
        facts["period"] = words["last"].format(span=spoken) if spoken else ""
        facts["long_period"] = (
            words["over"].format(span=long_spoken) if long_spoken else words["long_run"]
        )
        facts["rate"] = percent(figures.get("rate"), locale)
        facts["mean"] = "" if figures.get("mean") is None else percent(figures["mean"], locale)
        facts["max_rate"] = percent(figures.get("max_rate"), locale)
        facts["long_rate"] = percent(figures.get("max_rate_window_rate"), locale)
        facts["over_mean"] = bool(figures.get("over_mean")) and bool(facts["mean"])
        before.append(
            (
                words["span_rate"].format(span=spoken) if spoken else words["window_rate"],
                words["of_orders"].format(
                    rate=facts["rate"],
                    cancelled=clean(figures.get("cancelled")) or "0",
                    orders=clean(figures.get("orders")) or "0",
                ),
            )
        )
        if facts["mean"]:
            before.append((words["usual"], facts["mean"]))
        long_line = words["of_orders"].format(
            rate=facts["long_rate"],
            cancelled=clean(figures.get("max_rate_window_cancelled")) or "0",
            orders=clean(figures.get("max_rate_window_orders")) or "0",
        )
        limit = words["limit"].format(limit=facts["max_rate"])
        long_label = words["span_rate"].format(span=long_spoken) if long_spoken else None
        before.append((long_label or words["long_rate"], long_line + limit))
    elif kind == "dispute.deadline":
        deadline, now = _when(figures.get("deadline")), _when(data.get("occurred_at"))
        left = (deadline - now).total_seconds() if deadline and now else 0.0
        facts["deadline"] = local_time(deadline, timezone=timezone, locale=locale)
        facts["left"] = span(max(left, 60.0), locale)
        amount = money(figures.get("amount"), figures.get("currency"), locale=locale)
        facts["amount"] = amount
        tail.append(amount)
        if amount:
            after.append((label["disputed"], amount))
        reason = say(figures.get("reason"), locale)
        if reason:
            after.append((label["reason"], reason))
    tail.append(when)
    return facts, [part for part in tail if part], before, after


def sample_figures(
    order_id: str, total: str, currency: str, number: str | None = None
) -> dict[str, dict[str, Any]]:
    """Each seller rule's `alert` object for one sample order (`number`: its number, else its
    id), as the rules write it: what `pollerd check` and `pollerd render` render user templates
    against. The times fit the samples' 2026-11-22 23:30 UTC."""
    number = number or order_id
    return {
        "alert.high_value": {
            "rule": "high_value",
            "severity": "warning",
            "total": total,
            "currency": currency,
            "threshold": "50",
        },
        "alert.unpaid_timeout": {
            "rule": "unpaid_timeout",
            "severity": "warning",
            "after_seconds": 1800.0,
            "created_at": "2026-11-22T23:00:00Z",
            "total": total,
            "currency": currency,
        },
        "alert.order_burst": {
            "rule": "order_burst",
            "severity": "warning",
            "by": ["ip", "email"],
            "count": 3,
            "min_count": 3,
            "window_seconds": 86400.0,
            "first_at": "2026-11-22T20:00:00Z",
            "orders": [number, "1002", "1003"],
            "order_ids": [order_id, "1002", "1003"],
        },
        "alert.cancellation_rate": {
            "rule": "cancellation_rate",
            "severity": "warning",
            "window_seconds": 604800.0,
            "max_rate_window_seconds": 7776000.0,
            "rate": 0.23,
            "mean": 0.15,
            "orders": 100,
            "cancelled": 23,
            "above_mean": 0.2,
            "max_rate": 0.15,
            "max_rate_window_rate": 0.16,
            "max_rate_window_orders": 1200,
            "max_rate_window_cancelled": 192,
            "over_mean": True,
            "over_max_rate": True,
            "since": "2026-11-15T23:30Z",
        },
        "dispute.deadline": {
            "rule": "dispute_deadline",
            "severity": "critical",
            "dispute": "77",
            "reminder": "24h",
            "deadline": "2026-11-23T23:00:00Z",
            "amount": total,
            "currency": currency,
            "reason": "FRAUDULENT",
            "status": "NEEDS_RESPONSE",
        },
    }
