"""Golden files: every event × locale × flavour, rendered from a fixed, realistic sample, compared
with `tests/golden/{locale}/{event}.{flavour}.txt`.

These files are what our users read, so they are reviewed by eye like code: a change to a
template, an escaper or a label shows up here as a diff. After an intended change run
`POLLERD_GOLDEN=update .venv/bin/python -m pytest -q tests/unit/test_golden.py` and read the diff
of `tests/golden/` before committing it.

The samples happen at 23:30 UTC and render in Asia/Shanghai, so every file shows the NEXT day
(Nov 23, 07:30; 北京时间 in zh-CN): a time printed in UTC, or in the server's zone, would show
up here at once.
"""

from __future__ import annotations

import difflib
import os
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from pollerd.model import Event, LineItem, Order
from pollerd.templates import EVENTS, FLAVOURS, LOCALES, Message, templates_for
from pollerd.templates.reports import sample_report
from pollerd.templates.seller import sample_figures

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
ZONE = "Asia/Shanghai"
AT = datetime(2026, 11, 22, 23, 30, tzinfo=UTC)  # 07:30 on Nov 23 in Beijing
DETECTED = datetime(2026, 11, 22, 23, 30, 41, tzinfo=UTC)


def woocommerce_order(**changes: Any) -> Order:
    """A WooCommerce order as `sources/woocommerce.py` normalises it: number without "#",
    masked customer data, the HPOS admin screen, three line items."""
    fields: dict[str, Any] = {
        "store": "tea-house",
        "platform": "woocommerce",
        "id": "4711",
        "number": "4711",
        "status": "processing",
        "created_at": AT,
        "updated_at": AT,
        "paid_at": AT,
        "total": "64.90",
        "currency": "USD",
        "payment_method": "stripe",
        "payment_method_title": "Credit Card (Stripe)",
        "customer_email": "j***@example.com",
        "customer_phone": "555****0142",
        "customer_name": "Jane D.",
        "admin_url": "https://shop.example.com/wp-admin/admin.php?page=wc-orders&action=edit&id=4711",
        "line_items": (
            LineItem("Ceramic Mug - Blue", 2, "36.00"),
            LineItem("Earl Grey Tea, 100 g", 1, "12.90"),
            LineItem("Gift wrap", 1, "4.00"),
        ),
    }
    return Order(**{**fields, **changes})


def shopify_order(**changes: Any) -> Order:
    """A Shopify order as `sources/shopify_normalize.py` makes it: "#1002", CNY, a Chinese
    customer shown family name first ("王*"), the admin.shopify.com link."""
    fields: dict[str, Any] = {
        "store": "acme",
        "platform": "shopify",
        "id": "5273485869312",
        "number": "#1002",
        "status": "PAID",
        "created_at": AT,
        "updated_at": AT,
        "paid_at": AT,
        "total": "1288.00",
        "currency": "CNY",
        "payment_method": "shopify_payments",
        "payment_method_title": "Shopify Payments",
        "financial_status": "PAID",
        "customer_email": "w***@example.cn",
        "customer_phone": "139****8888",
        "customer_name": "王*",
        "admin_url": "https://admin.shopify.com/store/acme/orders/5273485869312",
        "line_items": (
            LineItem("真丝围巾 Silk Scarf", 1, "688.00"),
            LineItem("Cashmere Beanie", 2, "500.00"),
            LineItem("Gift card", 1, "100.00"),
        ),
    }
    return Order(**{**fields, **changes})


def event(
    kind: str, order: Order, *, reason: str | None = None, dispute: dict[str, Any] | None = None
) -> dict[str, Any]:
    return Event(
        type=kind,
        store=order.store,
        platform=order.platform,
        order_id=order.id,
        occurred_at=AT,
        detected_at=DETECTED,
        test=False,
        order=order.to_json(),
        reason=reason,
        dispute=dispute,
    ).to_json()


def alert(kind: str, store: str, order: dict[str, Any], reason: str) -> dict[str, Any]:
    """pollerd's own alerts: no order, the problem as the reason."""
    return Event(
        type=kind,
        store=store,
        platform="pollerd" if store == "pollerd" else "woocommerce",
        order_id=str(order.get("id", "-")),
        occurred_at=AT,
        detected_at=AT,
        test=False,
        order=order,
        reason=reason,
    ).to_json()


def seller(
    kind: str, order: dict[str, Any], figures: dict[str, Any], reason: str, subject: str
) -> dict[str, Any]:
    """A seller rule's alert as pollerd.alerts.base.Alert.event makes it: the order as last
    announced, the rule's figures as `alert`, its English reason for logs."""
    store = "acme" if order.get("currency") == "CNY" else "tea-house"
    kind_id = order["id"] if kind != "alert.cancellation_rate" else f"cancellation_rate:{subject}"
    return Event(
        type=kind,
        store=store,
        platform="shopify" if store == "acme" else "woocommerce",
        order_id=kind_id,
        occurred_at=AT,
        detected_at=DETECTED,
        test=False,
        order={**order, "id": kind_id},
        reason=reason,
        alert_id=f"{store}:{kind}:{subject}",
        alert=figures,
    ).to_json()


def seller_samples() -> dict[str, dict[str, Any]]:
    """The five seller rules, with the figures each puts in `alert` (pollerd/alerts/*.py): the
    samples `pollerd check` renders (pollerd.templates.seller.sample_figures), on these orders."""
    big = shopify_order(total="6800.00").to_json()
    pending = woocommerce_order(status="pending", paid_at=None).to_json()
    first = shopify_order(  # a Shopify burst: its numbers are not its ids
        id="5273485803776",
        number="#1000",
        admin_url="https://admin.shopify.com/store/acme/orders/5273485803776",
    ).to_json()
    paid = shopify_order().to_json()
    cny = sample_figures(big["id"], "6800.00", "CNY")
    usd = sample_figures("4709", "64.90", "USD")
    return {
        "alert.high_value": seller(
            "alert.high_value",
            big,
            {**cny["alert.high_value"], "threshold": "5000"},
            "total 6800.00 CNY >= 5000: needs review",
            big["id"],
        ),
        "alert.unpaid_timeout": seller(
            "alert.unpaid_timeout",
            pending,
            usd["alert.unpaid_timeout"],
            "unpaid 30 minutes after it was placed",
            "4711",
        ),
        "alert.order_burst": seller(
            "alert.order_burst",
            first,
            {
                **cny["alert.order_burst"],
                "by": ["ip"],
                "orders": ["#1000", "#1001", "#1002"],
                "order_ids": ["5273485803776", "5273485836544", "5273485869312"],
            },
            "3 orders from the same ip within 1d: #1000, #1001, #1002",
            "5273485803776",
        ),
        "alert.cancellation_rate": seller(
            "alert.cancellation_rate",
            {},
            {
                **usd["alert.cancellation_rate"],
                "max_rate_window_rate": 0.1312,  # under max_rate: the mean alone crossed
                "max_rate_window_orders": 1280,
                "max_rate_window_cancelled": 168,
                "over_max_rate": False,
            },
            "cancellation rate 23.0% (23 of 100 orders) in the last 7d above its mean 15.0% "
            "(7d windows)",
            "2026-11-15T23:30Z",
        ),
        "dispute.deadline": seller(
            "dispute.deadline",
            paid,
            {
                **sample_figures(paid["id"], "1288.00", "CNY")["dispute.deadline"],
                "severity": "warning",
                "dispute": "98765",
                "deadline": "2026-11-23T20:00:00Z",  # 20 h ahead: urgent
            },
            "dispute evidence due in 20 h (2026-11-23T20:00:00Z)",
            "98765:24h",
        ),
    }


def report(kind: str, store: str = "*") -> dict[str, Any]:
    """A report as pollerd.alerts.reports.event makes it: no order, only its outbox group;
    the figures as `report` (two stores: a line each under the totals)."""
    group = f"{kind}:2026-11-22"
    return Event(
        type=kind,
        store=store,
        platform="pollerd",
        order_id=group,
        occurred_at=AT,
        detected_at=DETECTED,
        test=False,
        order={"id": group},
        reason="2026-11-22: 12 orders, 8800.00 CNY, 120.00 USD",
        alert_id=f"{store}:{kind}:2026-11-22@wecom-ops",
        report=sample_report(kind),
    ).to_json()


def dispute(status: str) -> dict[str, Any]:
    """A Shopify Payments chargeback as `diff.dispute_events` carries it."""
    return {
        "id": "98765",
        "status": status,
        "type": "CHARGEBACK",
        "amount": "1288.00",
        "currency": "CNY",
        "reason": "FRAUDULENT",
        "initiated_at": "2026-11-22T23:30:00Z",
        "evidence_due_by": "2026-12-06T23:59:59Z",
        "finalized_on": None,
    }


def samples() -> dict[str, dict[str, Any]]:
    """One event JSON per type, as the daemon would hand it to the templates."""
    paid = shopify_order()
    return {
        "order.created": event(
            "order.created",
            woocommerce_order(
                status="pending",
                paid_at=None,
                payment_method="bacs",
                payment_method_title="Direct bank transfer",
            ),
        ),
        "order.paid": event("order.paid", paid),
        "order.fulfilled": event("order.fulfilled", woocommerce_order(status="completed")),
        "order.partially_refunded": event(
            "order.partially_refunded",
            shopify_order(financial_status="PARTIALLY_REFUNDED", refunded_total=Decimal("100.00")),
        ),
        "order.refunded": event(
            "order.refunded", woocommerce_order(status="refunded", refunded_total=Decimal("64.90"))
        ),
        "order.cancelled": event(
            "order.cancelled", shopify_order(status="CANCELLED", cancelled_at=AT), reason="customer"
        ),
        "order.deleted": event(
            "order.deleted", shopify_order(status="deleted"), reason="Order #1002 was deleted."
        ),
        "dispute.opened": event(
            "dispute.opened", paid, reason="FRAUDULENT", dispute=dispute("NEEDS_RESPONSE")
        ),
        "dispute.updated": event(
            "dispute.updated", paid, reason="FRAUDULENT", dispute=dispute("UNDER_REVIEW")
        ),
        # As delivery.Delivery._alert_channel_failing raises it.
        "alert.channel_failing": alert(
            "alert.channel_failing",
            "pollerd",
            {"id": "wecom-ops", "number": "wecom-ops"},
            "channel wecom-ops: errcode 93000 (invalid webhook url); fix it, then "
            "`pollerd deliveries retry --channel wecom-ops`",
        ),
        # As pollerd.alerts.store raises them, once per failure episode.
        "alert.store_failing": alert(
            "alert.store_failing",
            "tea-house",
            {"id": "-@1795476600"},
            "HTTP 401 from the store: check consumer_key and consumer_secret",
        ),
        "alert.store_recovered": alert(
            "alert.store_recovered",
            "tea-house",
            {"id": "-@1795476600"},
            "polling works again after 42 min (17 failed passes)",
        ),
        # As pollerd.quarantine raises it: the order as far as it reads, and its admin link.
        "alert.order_quarantined": alert(
            "alert.order_quarantined",
            "tea-house",
            {
                "id": "4711",
                "number": "4711",
                "admin_url": "https://shop.example.com/wp-admin/admin.php?page=wc-orders"
                "&action=edit&id=4711",
            },
            "order 4711: field total: not an amount: 'garbage'; the other orders go on; fix "
            "this one in the shop (or the plugin that wrote it)",
        ),
        **seller_samples(),
        "report.daily": report("report.daily"),
        "report.weekly": report("report.weekly"),
    }


def digest_events() -> list[dict[str, Any]]:
    """A flash-sale burst: two stores, two currencies, three alerts about two orders."""
    every = samples()
    return [every["order.created"], every["order.paid"], every["order.refunded"]]


def render(kind: str, locale: str, flavour: str) -> Message:
    templates = templates_for(None)
    if kind == "digest":
        return templates.render_digest(
            digest_events(), flavour=flavour, locale=locale, timezone=ZONE
        )
    return templates.render(samples()[kind], flavour=flavour, locale=locale, timezone=ZONE)


def golden_text(message: Message) -> str:
    """The file: the title, a `---` line, the body as sent."""
    return f"{message.title}\n---\n{message.body}\n"


def test_every_event_has_a_sample() -> None:
    assert set(samples()) | {"digest"} == set(EVENTS)


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("kind", EVENTS)
def test_golden(kind: str, locale: str, flavour: str) -> None:
    path = GOLDEN / locale / f"{kind}.{flavour}.txt"
    got = golden_text(render(kind, locale, flavour))
    if os.environ.get("POLLERD_GOLDEN") == "update":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(got, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"{path} is missing: run POLLERD_GOLDEN=update and review it", False)
    want = path.read_text(encoding="utf-8")
    if got != want:
        diff = difflib.unified_diff(
            want.splitlines(keepends=True),
            got.splitlines(keepends=True),
            f"{path.relative_to(GOLDEN.parent)} (golden)",
            "rendered now",
        )
        pytest.fail(
            "".join(diff) + "\nIf this change is intended: POLLERD_GOLDEN=update, then review "
            "the diff of tests/golden/.",
            False,
        )


def test_no_stray_golden_files() -> None:
    """A renamed event or flavour must not leave a file nobody compares any more."""
    expected = {
        GOLDEN / locale / f"{kind}.{flavour}.txt"
        for kind in EVENTS
        for locale in LOCALES
        for flavour in FLAVOURS
    }
    assert set(GOLDEN.rglob("*.txt")) <= expected


@pytest.mark.parametrize("locale", LOCALES)
def test_golden_samples_show_the_next_day_in_beijing(locale: str) -> None:
    """23:30 UTC on Nov 22 is 07:30 on Nov 23 in Shanghai: every event title says so."""
    shown = "Nov 23, 2026 07:30 CST" if locale == "en" else "2026年11月23日 07:30 北京时间"
    for kind in EVENTS:
        if kind != "digest":
            assert shown in render(kind, locale, "text").title, kind
