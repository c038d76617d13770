"""`pollerd.templates`: the summary line and detail lines every human-facing channel shows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from pollerd.model import Event, LineItem, Order
from pollerd.templates import admin_link, clean, detail, local_time, summary

PAID_AT = datetime(2026, 11, 22, 9, 32, 36, tzinfo=UTC)


def event(
    kind: str = "order.paid",
    *,
    occurred: datetime = PAID_AT,
    test: bool = False,
    platform: str = "shopify",
    reason: str | None = None,
    **order: Any,
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "store": "acme",
        "platform": platform,
        "id": "5273485869312",
        "number": "#1001",
        "status": "paid",
        "created_at": occurred,
        "updated_at": occurred,
        "total": "25.00",
        "currency": "USD",
        "payment_method_title": "Credit card",
        "customer_email": "j***@example.com",
        "customer_name": "Jane D.",
        "admin_url": "https://admin.shopify.com/store/acme/orders/5273485869312",
        "line_items": (LineItem("Blue mug", 2, "20.00"), LineItem("Tea", 1, "5.00")),
        **order,
    }
    o = Order(**fields)
    return Event(
        kind, "acme", platform, o.id, occurred, occurred, test, o.to_json(), reason
    ).to_json()


def test_summary_en_matches_the_documented_line() -> None:
    line = summary(event(), locale="en", timezone="America/Chicago")
    assert line == "[acme] Order #1001 paid · 25.00 USD · j***@example.com · 2026-11-22 03:32 CST"


def test_summary_en_in_shanghai() -> None:
    line = summary(event(), timezone="Asia/Shanghai")
    assert line == "[acme] Order #1001 paid · 25.00 USD · j***@example.com · 2026-11-22 17:32 CST"


def test_summary_zh_cn_names_beijing_time() -> None:
    line = summary(event(), locale="zh-CN", timezone="Asia/Shanghai")
    assert (
        line
        == "【acme】订单 #1001 已付款 · 25.00 USD · j***@example.com · 2026-11-22 17:32 北京时间"
    )


def test_summary_zh_cn_other_zones_use_the_abbreviation() -> None:
    assert summary(event(), locale="zh-CN", timezone="UTC").endswith("2026-11-22 09:32 UTC")
    assert summary(event(), locale="zh-CN", timezone="Asia/Singapore").endswith("17:32 UTC+08")


@pytest.mark.parametrize(
    ("zone", "locale", "shown"),
    [
        ("Asia/Shanghai", "en", "2026-11-23 07:30 CST"),  # next day in China
        ("Asia/Shanghai", "zh-CN", "2026-11-23 07:30 北京时间"),
        ("UTC", "en", "2026-11-22 23:30 UTC"),
        ("America/New_York", "en", "2026-11-22 18:30 EST"),
        ("Europe/Berlin", "en", "2026-11-23 00:30 CET"),
    ],
)
def test_time_is_shown_in_the_channel_zone(zone: str, locale: str, shown: str) -> None:
    late = event(occurred=datetime(2026, 11, 22, 23, 30, tzinfo=UTC))
    assert summary(late, locale=locale, timezone=zone).endswith(shown)


def test_daylight_saving_abbreviation() -> None:
    summer = event(occurred=datetime(2026, 7, 1, 12, 0, tzinfo=UTC))
    assert summary(summer, timezone="Europe/Berlin").endswith("2026-07-01 14:00 CEST")


@pytest.mark.parametrize(
    ("kind", "en", "zh"),
    [
        ("order.created", "New order #1001", "新订单 #1001"),
        ("order.paid", "Order #1001 paid", "订单 #1001 已付款"),
        ("order.fulfilled", "Order #1001 fulfilled", "订单 #1001 已发货"),
        ("order.cancelled", "Order #1001 cancelled", "订单 #1001 已取消"),
        ("order.deleted", "Order #1001 deleted", "订单 #1001 已删除"),
        ("order.refunded", "Order #1001 refunded", "订单 #1001 已退款"),
        ("order.partially_refunded", "Order #1001 partially refunded", "订单 #1001 部分退款"),
        ("order.on_hold", "Order #1001: order.on_hold", "订单 #1001：order.on_hold"),
    ],
)
def test_every_event_has_a_title(kind: str, en: str, zh: str) -> None:
    assert summary(event(kind)).startswith(f"[acme] {en} · ")
    assert summary(event(kind), locale="zh-CN").startswith(f"【acme】{zh} · ")


def test_woocommerce_fulfilled_reads_completed_in_chinese() -> None:
    woo = event("order.fulfilled", platform="woocommerce")
    assert summary(woo, locale="zh-CN").startswith("【acme】订单 #1001 已完成 · ")


def test_number_without_hash_gets_one() -> None:
    assert summary(event(number="1001")).startswith("[acme] Order #1001 paid")


def test_test_orders_are_marked() -> None:
    assert summary(event(test=True)).startswith("[TEST] [acme] Order #1001 paid")
    assert summary(event(test=True), locale="zh-CN").startswith("【测试】【acme】订单 #1001")


def test_refund_shows_the_refunded_amount() -> None:
    from decimal import Decimal

    partial = event("order.partially_refunded", refunded_total=Decimal("5.00"))
    assert " · refunded 5.00 of 25.00 USD · " in summary(partial)
    assert " · 已退 5.00 / 25.00 USD · " in summary(partial, locale="zh-CN")
    assert "Refunded: 5.00 USD" in detail(partial)


def test_customer_falls_back_to_name_then_nothing() -> None:
    assert " · Jane D. · " in summary(event(customer_email=None))
    line = summary(event(customer_email=None, customer_name=None))
    assert line == "[acme] Order #1001 paid · 25.00 USD · 2026-11-22 09:32 UTC"


def test_detail_lines_en() -> None:
    lines = detail(event("order.cancelled", reason="customer changed mind"))
    assert lines == [
        "Total: 25.00 USD",
        "Payment: Credit card",
        "Customer: Jane D. · j***@example.com",
        "2 × Blue mug",
        "1 × Tea",
        "Reason: customer changed mind",
        "Open: https://admin.shopify.com/store/acme/orders/5273485869312",
    ]


def test_detail_lines_zh_cn() -> None:
    lines = detail(event("order.cancelled", reason="缺货"), locale="zh-CN")
    assert lines == [
        "金额：25.00 USD",
        "支付方式：Credit card",
        "顾客：Jane D. · j***@example.com",
        "2 × Blue mug",
        "1 × Tea",
        "原因：缺货",
        "后台：https://admin.shopify.com/store/acme/orders/5273485869312",
    ]


def test_many_line_items_are_cut() -> None:
    items = tuple(LineItem(f"item {i}", 1, "1.00") for i in range(13))
    lines = detail(event(line_items=items))
    assert "1 × item 9" in lines and "1 × item 10" not in lines
    assert "… and 3 more" in lines
    assert "……另有 3 项" in detail(event(line_items=items), locale="zh-CN")


def test_detail_without_link_and_unsafe_links() -> None:
    assert not any(line.startswith("Open:") for line in detail(event(), link=False))
    hostile = event(admin_url="javascript:alert(1)")
    assert admin_link(hostile) is None
    assert not any("javascript" in line for line in detail(hostile))
    assert admin_link(event(), locale="zh-CN") == (
        "后台：{value}",
        "https://admin.shopify.com/store/acme/orders/5273485869312",
    )


def test_order_values_cannot_break_the_line() -> None:
    hostile = event(customer_email=None, customer_name="Eve\r\nBcc: all@example.com\u2028x")
    line = summary(hostile)
    assert "\n" not in line and "\r" not in line and "\u2028" not in line
    assert "Eve Bcc: all@example.com x" in line
    assert clean("a" * 500).endswith("…") and len(clean("a" * 500)) == 200
    assert clean("\u202egnp.exe") == "gnp.exe"


def test_alert_events_are_generic() -> None:
    alert = {
        "id": "acme:-:alert.store_failing",
        "type": "alert.store_failing",
        "store": "acme",
        "occurred_at": "2026-11-22T23:30:00Z",
        "test": False,
        "order": {},
        "reason": "HTTP 401 from the store",
    }
    assert summary(alert, timezone="Asia/Shanghai") == (
        "[acme] Alert: store polling failing · HTTP 401 from the store · 2026-11-23 07:30 CST"
    )
    assert summary(alert, locale="zh-CN", timezone="Asia/Shanghai") == (
        "【acme】告警：店铺轮询失败 · HTTP 401 from the store · 2026-11-23 07:30 北京时间"
    )
    assert detail(alert) == ["Reason: HTTP 401 from the store"]
    other = {**alert, "type": "alert.disk_full", "store": "", "reason": None}
    assert summary(other) == "Alert: disk full · 2026-11-22 23:30 UTC"
    assert summary(other, locale="zh-CN") == "告警：disk full · 2026-11-22 23:30 UTC"


def test_unknown_locale_falls_back() -> None:
    assert summary(event(), locale="zh-TW").startswith("【acme】订单")
    assert summary(event(), locale="de").startswith("[acme] Order")


def test_local_time_edge_cases() -> None:
    assert local_time(None) == ""
    assert local_time("not a time") == ""
    assert local_time("2026-11-22T09:32:36Z", timezone="Asia/Shanghai", locale="zh-CN") == (
        "2026-11-22 17:32 北京时间"
    )


def test_dispute_events_read_in_both_languages() -> None:
    from pollerd.templates import detail, summary

    event = {
        "id": "s:1001:dispute.updated:77:under_review",
        "type": "dispute.updated",
        "store": "acme",
        "platform": "shopify",
        "occurred_at": "2026-11-22T23:30:00Z",
        "test": False,
        "order": {"id": "1001", "number": "#1001"},
        "reason": "FRAUDULENT",
        "dispute": {
            "id": "77",
            "status": "UNDER_REVIEW",
            "amount": "25.00",
            "currency": "USD",
            "evidence_due_by": "2026-12-01",
        },
    }
    assert summary(event).startswith("[acme] Dispute on order #1001: under review")
    zh = detail(event, locale="zh-CN")
    assert "争议金额：25.00 USD" in zh and "举证截止：2026-12-01" in zh
    assert summary({**event, "type": "dispute.opened"}, locale="zh-CN").startswith(
        "【acme】订单 #1001 收到争议（拒付）"
    )


@pytest.mark.parametrize(
    ("first", "last", "shown"),
    [
        ("Ada", "Lovelace", "Ada L."),
        ("Amélie", "Dubois", "Amélie D."),
        ("芳", "王", "王*"),  # family name first, given name masked, as Chinese apps show it
        ("小明", "李", "李**"),
        ("", "王", "王*"),
        ("Ada", "", "Ada"),
        ("", "", None),
    ],
)
def test_short_customer_names(first: str, last: str, shown: str | None) -> None:
    from pollerd.model import short_name

    assert short_name(first, last) == shown
