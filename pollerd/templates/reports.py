"""The daily and weekly reports (`report.daily`, `report.weekly`) as template variables.

A report's figures are in the event's `report` object (`pollerd.alerts.reports`): counts,
exact amounts per currency, rates as fractions, the period as UTC instants and the local dates
it covers. Here they are worded for the channel's locale and zone: money in the locale's
format, the period's days as the reader names them ("Dec 5" / "12月5日"), deadlines in the
channel's zone, rates as percentages, platform codes (cancel and dispute reasons) in words.

A report about several stores has one line per store (`items`) below the totals; a report
about one store has only the totals. The SMS flavour shows the title alone: one line.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from babel import Locale
from babel.dates import format_skeleton

from pollerd.templates.format import clean, lang, local_time, money, say
from pollerd.templates.seller import percent

REPORT_EVENTS = ("report.daily", "report.weekly")

WORDS: dict[str, dict[str, str]] = {
    "en": {
        "orders": "Orders: ",
        "revenue": "Revenue: ",
        "counts": "Paid / cancelled / refunded: ",
        "alerts": "Alerts fired: ",
        "disputes": "Open disputes: ",
        "due": "Evidence due {deadline}: ",
        "no_due": "No evidence deadline: ",
        "order": "order {order}",
        "rate": "Cancellation rate: ",
        "of_orders": "{rate} ({cancelled} of {orders} orders)",
        "usual": "Usual (mean of earlier weeks): ",
        "chargebacks": "Chargebacks: ",
        "chargeback_line": "opened {opened} · won {won} · lost {lost} · win rate {win_rate}",
        "reasons": "Top cancellation reasons: ",
        "no_reason": "none given",
        "none": "none",
        "n/a": "n/a",
        "list": ", ",
        "count": "{what} {n}",
        "store_daily": "{store}: {orders} orders · {revenue} · paid {paid} · cancelled "
        "{cancelled} · refunded {refunded}",
        "store_weekly": "{store}: cancellation rate {rate} (usual {mean}) · chargebacks won "
        "{won} of {decided}",
        "more": "… and {n} more",
        "n_orders": "{n}",
        "n_disputes": "{n}",
        "why": " ({reason})",
    },
    "zh-CN": {
        "orders": "订单：",
        "revenue": "营收：",
        "counts": "付款 / 取消 / 退款：",
        "alerts": "触发提醒：",
        "disputes": "待处理争议：",
        "due": "举证截止 {deadline}：",
        "no_due": "无举证截止时间：",
        "order": "订单 {order}",
        "rate": "取消率：",
        "of_orders": "{rate}（{orders} 单中取消 {cancelled} 单）",
        "usual": "往期均值：",
        "chargebacks": "拒付：",
        "chargeback_line": "新增 {opened} · 胜诉 {won} · 败诉 {lost} · 胜诉率 {win_rate}",
        "reasons": "主要取消原因：",
        "no_reason": "未说明",
        "none": "无",
        "n/a": "无",
        "list": "、",
        "count": "{what} {n} 条",
        "store_daily": "{store}：订单 {orders} 笔 · {revenue} · 付款 {paid} · 取消 {cancelled} · "
        "退款 {refunded}",
        "store_weekly": "{store}：取消率 {rate}（往期均值 {mean}）· 拒付胜诉 {won} / {decided}",
        "more": "…（另有 {n} 起）",
        "n_orders": "{n} 笔",
        "n_disputes": "{n} 起",
        "why": "（{reason}）",
    },
}

ALERT_NAMES: dict[str, dict[str, str]] = {
    "zh-CN": {
        "alert.high_value": "大额订单",
        "alert.unpaid_timeout": "超时未付款",
        "alert.order_burst": "集中下单",
        "alert.cancellation_rate": "取消率异常",
        "alert.store_failing": "店铺轮询失败",
        "alert.store_recovered": "店铺恢复",
        "alert.order_quarantined": "订单无法读取",
        "alert.channel_failing": "通知渠道失败",
        "dispute.deadline": "争议举证提醒",
    },
}


def _words(locale: str) -> dict[str, str]:
    return WORDS[lang(locale)]


def alert_name(kind: str, locale: str) -> str:
    """`alert.high_value` → "high value" / "大额订单"."""
    named = ALERT_NAMES.get(lang(locale), {}).get(kind)
    if named:
        return named
    return kind.removeprefix("alert.").replace("_", " ").replace(".", " ")


def day(value: Any, locale: str) -> str:
    """A local date (`2026-12-05`) as the reader names it: "Dec 5" / "12月5日"."""
    try:
        when = date.fromisoformat(clean(value))
    except ValueError:
        return clean(value)
    return format_skeleton("MMMd", when, locale=Locale.parse(lang(locale).replace("-", "_")))


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _revenue(amounts: Any, locale: str) -> str:
    """{"CNY": "8800.00", "USD": "120.00"} → "¥8,800.00 / US$120.00"."""
    if not isinstance(amounts, dict):
        return ""
    return " / ".join(money(v, k, locale=locale) for k, v in sorted(amounts.items()))


def _rate(value: Any, locale: str) -> str:
    return _words(locale)["n/a"] if value is None else percent(value, locale)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def report_context(
    data: dict[str, Any], *, locale: str, timezone: str
) -> tuple[dict[str, Any], list[str], list[tuple[str, str]], list[str], list[tuple[str, str]]]:
    """(`report` as the templates see it, `tail`, `before`, the per-store lines, `after`) for
    a report event. Every value is a cleaned string or number, ready for the flavour's
    escaping."""
    figures = _dict(data.get("report"))
    total = _dict(figures.get("total"))
    stores = [_dict(s) for s in _list(figures.get("stores"))]
    words = _words(locale)
    facts: dict[str, Any] = {
        "kind": clean(figures.get("kind")),
        "day": day(figures.get("day"), locale),
        "last_day": day(figures.get("last_day"), locale),
        "stores": len(stores),
    }
    before: list[tuple[str, str]] = []
    after: list[tuple[str, str]] = []
    lines: list[str] = []
    if clean(data.get("type")) == "report.daily":
        alerts = _dict(total.get("alerts"))
        facts.update(
            orders=_int(total.get("orders")),
            revenue=_revenue(total.get("revenue"), locale),
            paid=_int(total.get("paid")),
            cancelled=_int(total.get("cancelled")),
            refunded=_int(total.get("refunded")),
            alerts=sum(_int(n) for n in alerts.values()),
            open_disputes=_int(figures.get("open_disputes")),
        )
        fired = words["list"].join(
            words["count"].format(what=alert_name(clean(k), locale), n=_int(n))
            for k, n in alerts.items()
        )
        before += [
            (words["orders"], words["n_orders"].format(n=facts["orders"])),
            (words["revenue"], facts["revenue"] or words["none"]),
            (words["counts"], f"{facts['paid']} / {facts['cancelled']} / {facts['refunded']}"),
            (words["alerts"], fired or words["none"]),
            (words["disputes"], words["n_disputes"].format(n=facts["open_disputes"])),
        ]
        for s in stores if len(stores) > 1 else []:
            revenue = _revenue(s.get("revenue"), locale) or words["none"]
            counts = {k: _int(s.get(k)) for k in ("orders", "paid", "cancelled", "refunded")}
            lines.append(
                words["store_daily"].format(store=clean(s.get("store")), revenue=revenue, **counts)
            )
        listed = [_dict(d) for d in _list(figures.get("disputes"))]
        for d in listed:
            deadline = local_time(d.get("deadline"), timezone=timezone, locale=locale)
            label = words["due"].format(deadline=deadline) if deadline else words["no_due"]
            parts = [
                money(d.get("amount"), d.get("currency"), locale=locale),
                words["order"].format(order=clean(d.get("order"))),
            ]
            if len(stores) > 1:
                parts.insert(0, clean(d.get("store")))
            reason = say(d.get("reason"), locale)
            after.append(
                (
                    label,
                    " · ".join(p for p in parts if p)
                    + (words["why"].format(reason=reason) if reason else ""),
                )
            )
        if facts["open_disputes"] > len(listed):
            after.append((words["more"].format(n=facts["open_disputes"] - len(listed)), ""))
    else:
        decided = _int(total.get("won")) + _int(total.get("lost"))
        facts.update(
            rate=_rate(total.get("rate"), locale),
            mean=_rate(total.get("mean"), locale),
            orders=_int(total.get("orders")),
            cancelled=_int(total.get("cancelled")),
            opened=_int(total.get("opened")),
            won=_int(total.get("won")),
            lost=_int(total.get("lost")),
            decided=decided,
            win_rate=_rate(total.get("win_rate"), locale),
        )
        reasons = words["list"].join(
            f"{say(r, locale) or words['no_reason']} {_int(n)}"
            for r, n in (pair for pair in _list(total.get("reasons")) if len(_list(pair)) == 2)
        )
        before += [
            (
                words["rate"],
                words["of_orders"].format(
                    rate=facts["rate"], orders=facts["orders"], cancelled=facts["cancelled"]
                ),
            ),
            (words["usual"], facts["mean"]),
            (words["chargebacks"], words["chargeback_line"].format(**facts)),
            (words["reasons"], reasons or words["none"]),
        ]
        for s in stores if len(stores) > 1 else []:
            lines.append(
                words["store_weekly"].format(
                    store=clean(s.get("store")),
                    rate=_rate(s.get("rate"), locale),
                    mean=_rate(s.get("mean"), locale),
                    won=_int(s.get("won")),
                    decided=_int(s.get("won")) + _int(s.get("lost")),
                )
            )
    when = local_time(data.get("occurred_at"), timezone=timezone, locale=locale)
    return facts, [when] if when else [], before, lines, after


def sample_report(kind: str) -> dict[str, Any]:
    """A report's `report` object as `pollerd.alerts.reports` writes it, for two stores: what
    `pollerd check` renders user templates against and the golden files show."""
    daily = kind == "report.daily"
    frame = {  # the day before the samples' Nov 23 in Beijing; the week before it
        "day": "2026-11-22" if daily else "2026-11-16",
        "last_day": "2026-11-22",
        "start": "2026-11-21T16:00:00Z" if daily else "2026-11-15T16:00:00Z",
        "end": "2026-11-22T16:00:00Z",
        "timezone": "Asia/Shanghai",
    }
    if daily:
        acme = {
            "store": "acme",
            "orders": 9,
            "revenue": {"CNY": "8800.00"},
            "paid": 8,
            "cancelled": 1,
            "refunded": 0,
            "alerts": {"alert.high_value": 1},
        }
        tea = {
            "store": "tea-house",
            "orders": 3,
            "revenue": {"USD": "120.00"},
            "paid": 2,
            "cancelled": 0,
            "refunded": 1,
            "alerts": {"alert.unpaid_timeout": 2},
        }
        return {
            "kind": "daily",
            **frame,
            "stores": [acme, tea],
            "total": {
                "orders": 12,
                "revenue": {"CNY": "8800.00", "USD": "120.00"},
                "paid": 10,
                "cancelled": 1,
                "refunded": 1,
                "alerts": {"alert.high_value": 1, "alert.unpaid_timeout": 2},
            },
            "open_disputes": 1,
            "disputes": [
                {
                    "store": "acme",
                    "dispute": "98765",
                    "order": "5273485869312",
                    "amount": "1288.00",
                    "currency": "CNY",
                    "reason": "FRAUDULENT",
                    "deadline": "2026-11-23T20:00:00Z",
                },
            ],
        }
    week = {"orders": 60, "cancelled": 3, "rate": 0.05, "mean": 0.042}
    return {
        "kind": "weekly",
        **frame,
        "stores": [
            {
                "store": "acme",
                **week,
                "opened": 2,
                "won": 1,
                "lost": 1,
                "win_rate": 0.5,
                "reasons": [["CUSTOMER", 2], ["INVENTORY", 1]],
            },
            {
                "store": "tea-house",
                "orders": 0,
                "cancelled": 0,
                "rate": None,
                "mean": None,
                "opened": 0,
                "won": 0,
                "lost": 0,
                "win_rate": None,
                "reasons": [],
            },
        ],
        "total": {
            **week,
            "opened": 2,
            "won": 1,
            "lost": 1,
            "win_rate": 0.5,
            "reasons": [["CUSTOMER", 2], ["INVENTORY", 1]],
        },
    }
