"""`pollerd.templates`: where a template comes from, what keeps a user template from
losing an alert or breaking out of its sandbox, what keeps a customer's text inert in every
flavour, money and times per locale, fitting a channel's size limit, and the footer rule.

The exact wording of every built-in template is in the golden files (`test_golden.py`); these
tests pin the behaviour that must hold whatever the wording is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from pollerd.model import PERMANENT_DELETION, Event, LineItem, Order
from pollerd.status import template_samples
from pollerd.templates import (
    FLAVOURS,
    LOCALES,
    MAX_ITEMS,
    Footer,
    Message,
    Templates,
    context,
    local_time,
    money,
    templates_for,
)
from pollerd.templates.loader import locale_chain
from pollerd.templates.seller import SELLER_EVENTS

PAID_AT = datetime(2026, 11, 22, 9, 32, 36, tzinfo=UTC)
LATE = datetime(2026, 11, 22, 23, 30, tzinfo=UTC)  # 07:30 on Nov 23 in Beijing
ADMIN = "https://admin.shopify.com/store/acme/orders/5273485869312"
BUILTIN = Templates(None)


def order_event(
    kind: str = "order.paid",
    *,
    occurred: datetime = PAID_AT,
    test: bool = False,
    platform: str = "shopify",
    reason: str | None = None,
    dispute: dict[str, Any] | None = None,
    **order: Any,
) -> dict[str, Any]:
    """An event JSON as the daemon hands it to the templates (a Shopify order by default)."""
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
        "admin_url": ADMIN,
        "line_items": (LineItem("Blue mug", 2, "20.00"), LineItem("Tea", 1, "5.00")),
        **order,
    }
    o = Order(**fields)
    return Event(
        kind, "acme", platform, o.id, occurred, occurred, test, o.to_json(), reason, dispute
    ).to_json()


def user_templates(folder: Path, files: dict[str, str]) -> Templates:
    """A user templates folder (`[pollerd] templates`) holding `files`."""
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return Templates(folder)


def byte_limit(limit: int) -> Callable[[Message], bool]:
    """A channel's `fits`: the body, footer included, in at most `limit` UTF-8 bytes."""
    return lambda message: len(message.body.encode()) <= limit


# Where a template comes from -------------------------------------------------------------


def test_lookup_order_is_flavour_then_event_family_then_locale() -> None:
    names = BUILTIN.candidates("order.paid", "zh-CN", "wecom")
    assert names[:8] == [
        "zh-CN/order.paid.wecom.j2",
        "zh-CN/order.paid.markdown.j2",
        "zh-CN/order.paid.text.j2",
        "zh-CN/order.paid.j2",
        "zh-CN/order.wecom.j2",
        "zh-CN/order.markdown.j2",
        "zh-CN/order.text.j2",
        "zh-CN/order.j2",
    ]
    assert [name.split("/")[0] for name in names[::8]] == ["zh-CN", "zh", "en"]
    assert locale_chain("zh-CN") == ("zh-CN", "zh", "en")
    assert locale_chain("zh-TW") == ("zh-TW", "zh", "zh-CN", "en")
    assert locale_chain("de") == ("de", "en")


def test_builtin_templates_are_flavour_neutral() -> None:
    assert BUILTIN.find("order.paid", "zh-CN", "wecom").name == "zh-CN/order.paid.j2"
    assert BUILTIN.find("order.paid", "en", "email_html").name == "en/order.paid.j2"


def test_a_permanent_deletion_says_so_in_the_readers_words() -> None:
    """The reason pollerd gives a deletion it inferred (the order is in no listing, not even
    the trash) reaches people, in their language; a platform's own deletion note does not."""
    gone = order_event("order.deleted", platform="woocommerce", reason=PERMANENT_DELETION)
    assert "deleted permanently (not in the trash)" in BUILTIN.render(gone, flavour="text").body
    zh = BUILTIN.render(gone, flavour="wecom", locale="zh-CN").body
    assert "已永久删除（不在回收站）" in zh and "not even" not in zh
    noted = order_event("order.deleted", reason="Order #1001 was deleted.")
    assert "was deleted." not in BUILTIN.render(noted, flavour="text").body


def test_zh_variants_fall_back_to_zh_then_built_in_zh_cn(tmp_path: Path) -> None:
    templates = user_templates(tmp_path, {"zh/order.paid.j2": "ZH {{ number }}"})
    taiwan = templates.render(order_event(), flavour="text", locale="zh-TW")
    assert taiwan.body == "ZH #1001"
    # zh-CN has its own built-in file, which comes before zh/ in its chain.
    assert "已付款" in templates.render(order_event(), flavour="text", locale="zh-CN").title
    assert "已付款" in BUILTIN.render(order_event(), flavour="text", locale="zh-HK").title


@pytest.mark.parametrize(
    ("locale", "start"), [("de", "[acme] Order #1001 paid"), ("zh-TW", "【acme】订单 #1001 已付款")]
)
def test_unknown_locale_falls_back(locale: str, start: str) -> None:
    title = BUILTIN.render(order_event(), flavour="text", locale=locale).title
    assert title.startswith(start)


def test_a_markdown_override_serves_every_markdown_chat_only(tmp_path: Path) -> None:
    templates = user_templates(
        tmp_path,
        {"en/order.paid.markdown.j2": "{% set headline %}MD{% endset %}{% extends layout %}"},
    )
    for flavour in FLAVOURS:
        used = templates.user_file(templates.find("order.paid", "en", flavour))
        assert used == (flavour in ("markdown", "wecom", "dingtalk", "feishu", "discord")), flavour
    assert templates.render(order_event(), flavour="wecom").body.startswith("**[acme] MD · ")


def test_a_text_override_serves_every_flavour_but_html(tmp_path: Path) -> None:
    templates = user_templates(
        tmp_path,
        {"en/order.paid.text.j2": "{% set headline %}TXT{% endset %}{% extends layout %}"},
    )
    for flavour in FLAVOURS:
        used = templates.user_file(templates.find("order.paid", "en", flavour))
        assert used == (flavour != "email_html"), flavour
    # The headline is the user's, the layout still the flavour's own (bold, escaping, link).
    assert templates.render(order_event(), flavour="telegram").body.startswith("<b>[acme] TXT")
    assert "Order #1001 paid" in templates.render(order_event(), flavour="email_html").body


@pytest.mark.parametrize(
    ("kind", "en", "zh"),
    [
        ("order.on_hold", "Order #1001: on hold", "订单 #1001：on hold"),
        ("dispute.won", "Dispute on order #1001: won", "订单 #1001 的争议：won"),
        ("alert.disk_full", "Alert: disk full", "告警：disk full"),
    ],
)
def test_an_unknown_event_renders_through_its_family(kind: str, en: str, zh: str) -> None:
    assert BUILTIN.find(kind, "en", "text").name == f"en/{kind.split('.')[0]}.j2"
    assert en in BUILTIN.render(order_event(kind), flavour="text").title
    assert zh in BUILTIN.render(order_event(kind), flavour="wecom", locale="zh-CN").title


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
    ],
)
def test_every_order_event_has_a_headline(kind: str, en: str, zh: str) -> None:
    assert BUILTIN.render(order_event(kind), flavour="text").title.startswith(f"[acme] {en} · ")
    zh_title = BUILTIN.render(order_event(kind), flavour="text", locale="zh-CN").title
    assert zh_title.startswith(f"【acme】{zh} · ")


def test_woocommerce_fulfilled_reads_completed_in_chinese() -> None:
    woo = order_event("order.fulfilled", platform="woocommerce")
    assert "订单 #1001 已完成" in BUILTIN.render(woo, flavour="text", locale="zh-CN").title


def test_number_gets_a_hash_and_test_orders_are_marked() -> None:
    assert BUILTIN.render(order_event(number="1001"), flavour="text").title.startswith(
        "[acme] Order #1001 paid"
    )
    test = order_event(test=True)
    assert BUILTIN.render(test, flavour="text").title.startswith("[TEST] [acme] Order #1001")
    zh = BUILTIN.render(test, flavour="text", locale="zh-CN").title
    assert zh.startswith("【测试】【acme】订单 #1001")


# User templates: errors, fallback, sandbox ---------------------------------------------------


def test_a_misspelt_variable_is_a_problem_but_never_a_lost_alert(
    tmp_path: Path, errors: list[str]
) -> None:
    templates = user_templates(
        tmp_path,
        {"en/order.paid.text.j2": "{% set headline %}Paid: {{ totl }}{% endset %}\n"},
    )
    problems = templates.problems(template_samples())
    assert problems == [
        f"{tmp_path / 'en/order.paid.text.j2'}:1: UndefinedError: 'totl' is undefined"
    ]
    message = templates.render(order_event(), flavour="text")
    assert message.title.startswith("[acme] Order #1001 paid · $25.00")  # the built-in words
    assert len(errors) == 1
    assert "en/order.paid.text.j2:1 failed (UndefinedError" in errors[0]
    assert "the built-in template was used instead" in errors[0]


def test_a_broken_user_layout_is_found_and_falls_back_too(
    tmp_path: Path, errors: list[str]
) -> None:
    """The event template is built-in, the layout it extends is the user's."""
    templates = user_templates(tmp_path, {"layout/slack.j2": "{{ customer.nme }}\n"})
    problems = templates.problems(template_samples())
    where = tmp_path / "layout/slack.j2"
    assert problems == [f"{where}:1: UndefinedError: 'dict object' has no attribute 'nme'"]
    body = templates.render(order_event(), flavour="slack").body
    assert body.startswith("*[acme] Order #1001 paid")
    assert errors and "layout/slack.j2:1" in errors[0]


def test_a_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    templates = user_templates(tmp_path, {"zh-CN/order.paid.j2": "ok\n{{ number }\n"})
    [problem] = templates.syntax_problems()
    assert problem.startswith(f"{tmp_path / 'zh-CN/order.paid.j2'}:2: ")
    assert templates.problems(template_samples()) == [problem]


def test_every_type_and_the_digest_are_checked(tmp_path: Path) -> None:
    good = user_templates(
        tmp_path / "good",
        {
            "en/digest.j2": "{{ count }} alerts, {{ orders }} orders: {{ totals|join(', ') }}",
            "zh-CN/dispute.updated.wecom.j2": "{{ b(dispute.status) }} {{ dispute.reason }}",
            "en/alert.j2": "{{ reason }} {{ when }}",
        },
    )
    assert good.problems(template_samples()) == []
    bad = user_templates(tmp_path / "bad", {"en/digest.j2": "{{ count }} {{ number.total }}"})
    [problem] = bad.problems(template_samples())
    assert "digest.j2:1: UndefinedError" in problem
    assert Templates(None).problems(template_samples()) == []


@pytest.mark.parametrize(
    "code",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ items.append(1) }}",
        "{{ customer.update({'name': 'x'}) }}",
        "{{ range(10**8)|length }}",
    ],
)
def test_the_sandbox_refuses_unsafe_templates(tmp_path: Path, code: str, errors: list[str]) -> None:
    templates = user_templates(tmp_path, {"en/order.paid.j2": code})
    [problem] = templates.problems(template_samples())
    assert problem.startswith(f"{tmp_path / 'en/order.paid.j2'}:1: ")
    assert "SecurityError" in problem or "OverflowError" in problem
    assert templates.render(order_event(), flavour="text").title.startswith("[acme] Order #1001")
    assert errors


def test_a_builtin_template_bug_is_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a user folder there is nothing to fall back to: the error surfaces (and the
    delivery is retried) instead of a silently empty alert."""
    from jinja2 import UndefinedError

    templates = Templates(None)
    broken = templates.env("text").from_string("{{ nope }}")
    monkeypatch.setattr(templates, "find", lambda *args, **kwargs: broken)
    with pytest.raises(UndefinedError):
        templates.render(order_event(), flavour="text")
    with pytest.raises(ValueError, match="unknown flavour 'mms'"):
        BUILTIN.render(order_event(), flavour="mms")


# Escaping: customer text is inert in every flavour -------------------------------------------

HOSTILE_NAME = '<s>**x** @everyone @all <at user_id="all">[x](http://evil)\nBcc: a\u2028b\u202egnp'


def hostile_event() -> dict[str, Any]:
    return order_event(
        customer_name=HOSTILE_NAME,
        customer_email="eve@example.com",
        payment_method_title="*pay* @here",
        admin_url="javascript:alert(1)//https://admin.shopify.com",
        line_items=(LineItem("*big* <b>", 1, "1.00"), LineItem("[x](http://evil) @all", 1, "1")),
    )


def lines(body: str) -> int:
    """Lines with text (DingTalk puts a blank line between lines)."""
    return len([line for line in body.splitlines() if line.strip()])


FORBIDDEN: dict[str, list[str]] = {
    "text": ["<", "@everyone", "@all", "@here"],
    "markdown": ["<", "**x**", "*big*", "[x](", "@everyone", "@all", "@here"],
    "slack": ["<s>", "<b>", "<at", "*big*", "*pay*", "@everyone", "@here"],
    "telegram": ["<s>", "<at", "@everyone", "@all", "@here"],
    "email_html": ["<s>", "<at", "<b>"],
    "discord": [],  # backslash-escaped: checked line by line below
}
FORBIDDEN["sms"] = FORBIDDEN["email_text"] = FORBIDDEN["text"]
FORBIDDEN["wecom"] = FORBIDDEN["dingtalk"] = FORBIDDEN["feishu"] = FORBIDDEN["markdown"]
_OUR_HTML = re.compile(
    r"</?(?:!DOCTYPE html|html|head|meta|title|body|p|strong|ul|li|hr|small|b|a)(?:[ >])"
)


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_hostile_customer_text_is_inert(flavour: str, locale: str) -> None:
    message = BUILTIN.render(hostile_event(), flavour=flavour, locale=locale)
    shown = f"{message.title}\n{message.body}"
    for bad in [*FORBIDDEN[flavour], "http://evil", "javascript", "\u2028", "\u202e", "\r"]:
        assert bad not in shown, (flavour, bad, shown)
    # A newline in a name cannot forge a line (a second alert line, a mail header).
    benign = BUILTIN.render(order_event(), flavour=flavour, locale=locale)
    assert lines(message.body) == lines(benign.body) - (1 if "admin.shopify" in benign.body else 0)
    assert "\n" not in message.title
    if flavour == "discord":
        for line in shown.splitlines():
            if "evil" in line or "big" in line or "pay" in line:
                assert not re.search(r"(?<!\\)[*_<>\[\]@`|~]", line), line
    if flavour in ("telegram", "email_html"):
        tags = re.findall(r"<[^>]*>", message.body)
        assert all(_OUR_HTML.match(tag + " ") for tag in tags), tags
        assert message.body.count("<b>") == (1 if flavour == "telegram" else 0)


def test_hostile_text_reads_as_text() -> None:
    """Inert, yet still legible: the lookalikes read like the original."""
    wecom = BUILTIN.render(hostile_event(), flavour="wecom").body
    assert '＜s＞∗∗x∗∗ ＠everyone ＠all ＜at user＿id="all"＞［x］(http：//evil) Bcc: a b' in wecom
    assert "1 × ∗big∗ ＜b＞" in wecom
    slack = BUILTIN.render(hostile_event(), flavour="slack").body
    assert "&lt;s&gt;∗∗x∗∗ @\u2060everyone" in slack


def test_the_store_name_is_escaped_but_our_brackets_are_not() -> None:
    message = BUILTIN.render(order_event(), flavour="wecom")
    assert message.body.startswith("**[acme] Order #1001 paid")
    evil = {**order_event(), "store": "x](http://evil) **y"}
    assert BUILTIN.render(evil, flavour="wecom").body.startswith(
        "**[x］(http：//evil) ∗∗y] Order #1001 paid"
    )


def test_unsafe_admin_links_are_dropped_in_every_flavour() -> None:
    for url in ("javascript:alert(1)", "data:text/html,x", "ftp://x.example/", "//evil.example"):
        for flavour in FLAVOURS:
            body = BUILTIN.render(order_event(admin_url=url), flavour=flavour).body
            assert url not in body and "Open:" not in body, (flavour, url)


def test_values_are_squeezed_onto_one_line_and_capped() -> None:
    from pollerd.templates import clean

    assert clean("Eve\r\nBcc: all@example.com\u2028x") == "Eve Bcc: all@example.com x"
    assert clean("\u202egnp.exe") == "gnp.exe"
    assert clean("a" * 500).endswith("…") and len(clean("a" * 500)) == 200
    assert clean(None) == ""


# Money and time ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "en", "zh"),
    [
        ("25", "USD", "$25.00", "US$25.00"),
        ("1288.5", "usd", "$1,288.50", "US$1,288.50"),
        ("25.00", "EUR", "€25.00", "€25.00"),
        ("1288", "CNY", "CN¥1,288.00", "¥1,288.00"),
        ("1288", "JPY", "¥1,288", "JP¥1,288"),
        ("-5", "USD", "-$5.00", "-US$5.00"),
        ("25.00", "XBT", "25.00 XBT", "25.00 XBT"),  # unknown code: after the number
        ("25.5", "", "25.50", "25.50"),
        ("", "USD", "", ""),
        (None, "USD", "", ""),
        ("n/a", "USD", "n/a USD", "n/a USD"),
        ("NaN", "EUR", "NaN EUR", "NaN EUR"),
        (Decimal("19.99"), "GBP", "£19.99", "£19.99"),
    ],
)
def test_money_per_locale_and_currency(amount: Any, currency: str, en: str, zh: str) -> None:
    assert money(amount, currency, locale="en") == en
    assert money(amount, currency, locale="zh-CN") == zh


def test_summary_money_follows_the_locale() -> None:
    cny = order_event(total="1288.00", currency="CNY")
    assert " · CN¥1,288.00 · " in BUILTIN.render(cny, flavour="text").title
    assert " · ¥1,288.00 · " in BUILTIN.render(cny, flavour="text", locale="zh-CN").title


@pytest.mark.parametrize(
    ("locale", "shown"),
    [("en", "Nov 23, 2026 07:30 CST"), ("zh-CN", "2026年11月23日 07:30 北京时间")],
)
def test_a_late_order_is_next_day_in_beijing(locale: str, shown: str) -> None:
    late = order_event(occurred=LATE)
    for flavour in ("text", "wecom", "sms"):
        title = BUILTIN.render(late, flavour=flavour, locale=locale, timezone="Asia/Shanghai").title
        assert title.endswith(shown), (flavour, title)


@pytest.mark.parametrize(
    ("zone", "locale", "shown"),
    [
        ("UTC", "en", "Nov 22, 2026 23:30 UTC"),
        ("America/New_York", "en", "Nov 22, 2026 18:30 EST"),
        ("Europe/Berlin", "en", "Nov 23, 2026 00:30 CET"),
        ("Asia/Singapore", "en", "Nov 23, 2026 07:30 UTC+08"),
        ("Asia/Shanghai", "en", "Nov 23, 2026 07:30 CST"),
        ("Asia/Hong_Kong", "zh-CN", "2026年11月23日 07:30 香港时间"),
        ("UTC", "zh-CN", "2026年11月22日 23:30 UTC"),
    ],
)
def test_local_time(zone: str, locale: str, shown: str) -> None:
    assert local_time("2026-11-22T23:30:00Z", timezone=zone, locale=locale) == shown


def test_local_time_edge_cases() -> None:
    assert local_time(None) == "" and local_time("not a time") == ""
    assert local_time(LATE, timezone="Asia/Shanghai") == "Nov 23, 2026 07:30 CST"


def test_refunds_disputes_and_reasons_read_in_words() -> None:
    partial = order_event("order.partially_refunded", refunded_total=Decimal("5.00"))
    assert " · refunded $5.00 of $25.00 · " in BUILTIN.render(partial, flavour="text").title
    zh = BUILTIN.render(partial, flavour="text", locale="zh-CN")
    assert " · 已退 US$5.00 / US$25.00 · " in zh.title and "已退款：US$5.00" in zh.body
    full = order_event("order.refunded", refunded_total=Decimal("25.00"))
    assert BUILTIN.render(full, flavour="text").title.startswith(
        "[acme] Order #1001 refunded · $25"
    )
    cancelled = order_event("order.cancelled", reason="inventory")
    assert "Reason: out of stock" in BUILTIN.render(cancelled, flavour="text").body
    assert "原因：库存不足" in BUILTIN.render(cancelled, flavour="text", locale="zh-CN").body
    dispute = order_event(
        "dispute.updated",
        reason="PRODUCT_NOT_RECEIVED",
        dispute={
            "id": "77",
            "status": "UNDER_REVIEW",
            "type": "CHARGEBACK",
            "amount": "25.00",
            "currency": "USD",
            "evidence_due_by": "2026-12-01",
        },
    )
    en = BUILTIN.render(dispute, flavour="text", timezone="Asia/Shanghai")
    assert en.title.startswith("[acme] Dispute on order #1001: under review · ")
    assert "Evidence due by: Dec 1, 2026\n" in en.body  # a date is a day: no zone shift
    assert "Reason: product not received" in en.body
    zh = BUILTIN.render(dispute, flavour="text", locale="zh-CN")
    assert zh.title.startswith("【acme】订单 #1001 的争议：审核中 · ")
    assert "争议金额：US$25.00" in zh.body and "举证截止：2026年12月1日" in zh.body
    assert "原因：未收到商品" in zh.body


def test_an_alert_says_its_reason_once() -> None:
    alert = {
        "id": "acme:-:alert.store_failing",
        "type": "alert.store_failing",
        "store": "acme",
        "occurred_at": "2026-11-22T23:30:00Z",
        "test": False,
        "order": {},
        "reason": "HTTP 401 from the store",
    }
    message = BUILTIN.render(alert, flavour="text", timezone="Asia/Shanghai")
    assert message.body == (
        "[acme] Alert: store polling failing · HTTP 401 from the store · Nov 23, 2026 07:30 CST"
    )


# Fitting a size limit ----------------------------------------------------------------------


def big_order(count: int = 300) -> dict[str, Any]:
    items = tuple(LineItem(f"Item {i}", 1, "1.00") for i in range(count))
    return order_event(line_items=items, total="300.00")


def test_at_most_max_items_are_listed() -> None:
    body = BUILTIN.render(big_order(13), flavour="text").body
    assert f"1 × Item {MAX_ITEMS - 1}" in body and f"1 × Item {MAX_ITEMS}" not in body
    assert "… (+3 items)" in body
    assert "…（另有 3 项）" in BUILTIN.render(big_order(13), flavour="text", locale="zh-CN").body
    assert "… (+1 item)" in BUILTIN.render(big_order(11), flavour="text").body


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_300_item_order_fits_in_one_message_with_its_link(flavour: str) -> None:
    limit = 900
    message = BUILTIN.render(big_order(), flavour=flavour, fits=byte_limit(limit))
    assert len(message.body.encode()) <= limit
    hidden = re.search(r"\(\+(\d+) items\)", message.body)
    if flavour != "sms":  # an SMS is the summary and the link only
        assert hidden and int(hidden.group(1)) >= 300 - MAX_ITEMS
    assert "orders/5273485869312" in message.body
    assert "1001 paid" in message.title  # the summary survives whole


def test_fitting_steps_fewer_items_then_brief_then_shorter_summary_then_cut() -> None:
    event = big_order()
    full = BUILTIN.render(event, flavour="text")
    sizes: list[int] = []

    def fits_below(limit: int) -> Callable[[Message], bool]:
        def fits(message: Message) -> bool:
            sizes.append(len(message.body.encode()))
            return len(message.body.encode()) <= limit

        return fits

    fewer = BUILTIN.render(event, flavour="text", fits=fits_below(len(full.body.encode()) - 1))
    assert "1 × Item 8" in fewer.body and "1 × Item 9" not in fewer.body
    assert "… (+291 items)" in fewer.body and "Total: $300.00" in fewer.body

    brief = BUILTIN.render(event, flavour="text", fits=fits_below(200))
    assert brief.body == f"{full.title}\n… (+300 items)\nOpen: {ADMIN}"
    assert "Total:" not in brief.body and "Item" not in brief.body

    shorter = BUILTIN.render(event, flavour="text", fits=fits_below(150))
    assert shorter.body.endswith(f"Open: {ADMIN}")
    assert shorter.title == "[acme] Order #1001 paid · $300.00 · j***@example.com"
    assert shorter.body.startswith(shorter.title + "\n")

    keep_link = BUILTIN.render(event, flavour="text", fits=fits_below(100))
    assert keep_link.body == f"[acme] Order #1001 paid\nOpen: {ADMIN}"  # "… (+N)" went first

    cut = BUILTIN.render(event, flavour="text", fits=fits_below(20))
    assert cut.body.endswith("…") and len(cut.body.encode()) <= 20
    assert cut.body.startswith("[acme] Order")
    assert "\n" not in cut.title


def test_fitting_in_chinese_counts_bytes() -> None:
    message = BUILTIN.render(big_order(), flavour="wecom", locale="zh-CN", fits=byte_limit(700))
    assert len(message.body.encode()) <= 700
    assert re.search(r"…（另有 \d+ 项）", message.body)
    assert f"后台：[{ADMIN}]({ADMIN})" in message.body


# The footer --------------------------------------------------------------------------------

FOOTER = Footer("Unsubscribe: ", "https://pollerd.example/u/abc?t=1&x=2", " (one click)")


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_the_footer_is_always_appended(flavour: str) -> None:
    body = BUILTIN.render(order_event(), flavour=flavour, footer=FOOTER).body
    tail = {
        "text": "\n\n-- \nUnsubscribe: https://pollerd.example/u/abc?t=1&x=2 (one click)",
        "email_html": '<hr><p><small>Unsubscribe: <a href="https://pollerd.example/u/abc?t=1&amp;'
        'x=2">https://pollerd.example/u/abc?t=1&amp;x=2</a> (one click)</small></p></body></html>',
        "wecom": "\n\nUnsubscribe: [https://pollerd.example/u/abc?t=1&x=2]"
        "(https://pollerd.example/u/abc?t=1&x=2) (one click)",
    }
    if flavour in tail:
        assert body.endswith(tail[flavour]), body
    assert "pollerd.example/u/abc" in body.rsplit("\n", 1)[-1]


def test_a_user_template_cannot_drop_the_footer(tmp_path: Path) -> None:
    templates = user_templates(
        tmp_path, {"en/order.paid.j2": "{% set headline %}x{% endset %}only {{ number }}"}
    )
    for flavour in ("text", "wecom", "email_text"):
        body = templates.render(order_event(), flavour=flavour, footer=FOOTER).body
        assert body.startswith("only #1001\n\n")
        assert "pollerd.example/u/abc" in body


def test_fits_counts_the_footer() -> None:
    seen: list[Message] = []

    def fits(message: Message) -> bool:
        seen.append(message)
        return len(message.body.encode()) <= 260

    message = BUILTIN.render(big_order(), flavour="text", fits=fits, footer=FOOTER)
    assert all("pollerd.example/u/abc" in m.body for m in seen)
    assert len(message.body.encode()) <= 260 and message.body.endswith("(one click)")
    assert f"Open: {ADMIN}" in message.body


# link(), b(), |raw, |money, mask filters ---------------------------------------------------


def render_snippet(tmp_path: Path, snippet: str, flavour: str, **event: Any) -> str:
    templates = user_templates(tmp_path, {"en/order.paid.j2": snippet})
    return templates.render(order_event(**event), flavour=flavour).body


@pytest.mark.parametrize(
    ("flavour", "shown"),
    [
        ("text", "Open ＜now＞ https://x.example/o?a=1&b=2"),
        ("wecom", "[Open ＜now＞](https://x.example/o?a=1&b=2)"),
        ("slack", "<https://x.example/o?a=1&amp;b=2|Open &lt;now&gt;>"),
        ("telegram", '<a href="https://x.example/o?a=1&amp;b=2">Open &lt;now&gt;</a>'),
        ("discord", "[Open \\<now\\>](<https://x.example/o?a=1&b=2>)"),
    ],
)
def test_link_escapes_its_label(tmp_path: Path, flavour: str, shown: str) -> None:
    body = render_snippet(
        tmp_path, "{{ link('https://x.example/o?a=1&b=2', 'Open <now>') }}", flavour
    )
    assert body == shown


def test_link_refuses_anything_but_http(tmp_path: Path) -> None:
    snippet = "{{ link(payment, 'label') }}|{{ link(payment) }}"
    for flavour in FLAVOURS:
        body = render_snippet(
            tmp_path / flavour, snippet, flavour, payment_method_title="javascript:x"
        )
        assert body == "label|", flavour
    assert render_snippet(tmp_path, "{{ link(admin_url) }}", "wecom") == f"[{ADMIN}]({ADMIN})"


def test_b_bolds_escaped_text(tmp_path: Path) -> None:
    snippet = "{{ b(customer.name) }}|{{ b(t.total) }}"
    name = "*Eve* <x>"
    assert render_snippet(tmp_path / "a", snippet, "wecom", customer_name=name) == (
        "**∗Eve∗ ＜x＞**|**Total: **"
    )
    assert render_snippet(tmp_path / "b", snippet, "telegram", customer_name=name) == (
        "<b>*Eve* &lt;x&gt;</b>|<b>Total: </b>"
    )
    assert render_snippet(tmp_path / "c", snippet, "text", customer_name=name) == (
        "*Eve* ＜x＞|Total: "
    )


def test_raw_passes_trusted_text_untouched(tmp_path: Path) -> None:
    """`|raw` is for the template author's own markup; on a customer's value it is a hole,
    which is exactly why the README says "trusted text only"."""
    snippet = "{{ '<i>ours</i>'|raw }} {{ customer.name }} {{ customer.name|raw }}"
    body = render_snippet(tmp_path, snippet, "telegram", customer_name="<s>Eve</s>")
    assert body == "<i>ours</i> &lt;s&gt;Eve&lt;/s&gt; <s>Eve</s>"


def test_money_filter_uses_the_order_currency_and_locale(tmp_path: Path) -> None:
    snippet = "{{ total|money }} {{ '10'|money('EUR') }} {{ refunded|money }}"
    templates = user_templates(
        tmp_path, {"en/order.paid.j2": snippet, "zh-CN/order.paid.j2": snippet}
    )
    event = order_event(refunded_total=Decimal("5"))
    assert templates.render(event, flavour="text").body == "$25.00 €10.00 $5.00"
    assert templates.render(event, flavour="text", locale="zh-CN").body == "US$25.00 €10.00 US$5.00"


def test_mask_filters(tmp_path: Path) -> None:
    snippet = "{{ payment|mask_email }}|{{ payment|mask_phone }}|{{ customer.name|mask_name }}"
    cases = [
        ("jane@example.com", "Jane Doe", "j***@example.com|***|Jane D."),
        ("+86 138 1234 5678", "王芳", "***|861****5678|王*"),
        ("j***@example.com", "Jane D.", "j***@example.com|***|Jane D."),  # masking is idempotent
    ]
    for i, (payment, name, shown) in enumerate(cases):
        body = render_snippet(
            tmp_path / str(i), snippet, "text", payment_method_title=payment, customer_name=name
        )
        assert body == shown, payment
    email = {"payment_method_title": "jane@example.com"}
    wecom = render_snippet(tmp_path / "w", "{{ payment|mask_email }}", "wecom", **email)
    assert wecom == "j∗∗∗@example.com"  # a filter's output is escaped like any value


def test_context_keys_are_the_documented_ones() -> None:
    """The README's "Templates" section lists these; a new key must be documented there."""
    keys = set(context(order_event(), locale="en", timezone="UTC"))
    assert keys == {
        "id", "type", "store", "platform", "test", "occurred_at", "when", "number", "order_id",
        "status", "total", "currency", "refunded", "payment", "customer", "items", "dispute",
        "alert", "report", "reason", "admin_url", "tail", "before", "after", "hidden", "brief",
    }  # fmt: skip


# Digests -----------------------------------------------------------------------------------


def test_digest_counts_totals_and_lines() -> None:
    events = [
        order_event("order.created"),
        order_event("order.paid"),  # the same order: counted once in the totals
        order_event("order.paid", id="2", number="#1002", total="100", currency="CNY"),
    ]
    message = BUILTIN.render_digest(events, flavour="text")
    lines = message.body.split("\n")
    assert lines[0] == message.title == "Digest: 3 order alerts"
    assert lines[1] == "Total of 2 orders: $25.00 · CN¥100.00"
    assert lines[2].startswith("[acme] New order #1001 · $25.00 · ")
    assert len(lines) == 5
    zh = BUILTIN.render_digest(events[:1], flavour="text", locale="zh-CN").body
    assert zh.startswith("汇总：1 条订单通知\n1 个订单合计：US$25.00\n【acme】新订单 #1001")
    one = BUILTIN.render_digest(events[:1], flavour="text").body
    assert one.startswith("Digest: 1 order alert\nTotal of 1 order: $25.00\n")


def test_digest_shows_ten_lines_and_the_rest_as_more() -> None:
    events = [order_event(id=str(i), number=f"#{i}") for i in range(14)]
    body = BUILTIN.render_digest(events, flavour="text").body
    assert body.count("[acme] Order #") == MAX_ITEMS and body.endswith("… and 4 more")
    zh = BUILTIN.render_digest(events, flavour="text", locale="zh-CN").body
    assert zh.endswith("…（另有 4 条）")
    small = BUILTIN.render_digest(events, flavour="text", fits=byte_limit(300)).body
    assert len(small.encode()) <= 300 and re.search(r"… and \d+ more$", small)


def test_digest_lines_are_escaped_for_the_flavour_not_twice() -> None:
    events = [order_event(customer_email=None, customer_name="[x](http://evil)")] * 2
    wecom = BUILTIN.render_digest(events, flavour="wecom").body
    assert "\n[acme] Order #1001 paid · $25.00 · ［x］(http：//evil) · " in wecom  # ours: "["
    discord = BUILTIN.render_digest(events, flavour="discord").body
    assert "\n[acme] Order \\#1001 paid" in discord and "\\\\" not in discord
    sms = BUILTIN.render_digest(events, flavour="sms").body
    assert sms == "Digest: 2 order alerts\nTotal of 1 order: $25.00"  # no "·": GSM-7


BOMBS = [
    "{{ 'x' * 10**9 }}",
    "{{ 'x' * 10**10 }}",
    "{{ 10**10 * 'x' }}",
    "{{ ['x'] * 10**9 }}",
    "{{ 9**(9**9) }}",
    "{{ 'x'|center(10**9) }}",
    "{{ 'x'.ljust(10**9) }}",
    "{{ '%1000000000s' % 'x' }}",
    "{{ '%*s' % (10**9, 'x') }}",
    "{{ '{:>1000000000}'.format('x') }}",
    "{{ ('x' * 1000)|replace('x', 'x' * 100000) }}",
    "{{ ('x' * 1000)|indent(10**6, true) }}",
    "{% set ns = namespace(s='x' * 1000) %}{% for i in range(40) %}"
    "{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|length }}",
    "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
    "{% for i in range(100000) %}{{ 'y' * 100 }}{% endfor %}",
    "{% set big %}{% for i in range(100000) %}{{ 'y' * 100 }}{% endfor %}{% endset %}ok",
]


@pytest.mark.parametrize("code", BOMBS)
def test_a_template_bomb_is_a_bounded_template_error(
    tmp_path: Path, code: str, errors: list[str]
) -> None:
    """Issue 12 item 6: `{{ 'x' * 10**9 }}` passed `check` after 121 s and 4.9 GB (folded at
    compile time, so at every load too) and `10**10` got pollerd killed by the kernel. Now it
    is refused before anything large is built: `file:line` in check, the built-in template at
    send time."""
    templates = user_templates(tmp_path, {"en/order.paid.text.j2": f"ok\n{code}\n"})
    assert templates.syntax_problems() == []  # loading never evaluates a template
    problems = templates.problems(template_samples())
    assert problems, code
    where = f"{tmp_path / 'en/order.paid.text.j2'}:2: TooLarge: "
    assert all(problem.startswith(where) for problem in problems), problems
    message = templates.render(order_event(), flavour="text")
    assert message.title.startswith("[acme] Order #1001 paid")  # the built-in words
    assert errors and "en/order.paid.text.j2:2 failed (TooLarge" in errors[0]


def test_the_bounds_leave_room_for_real_templates(tmp_path: Path) -> None:
    """Large but sane work still renders: loops, repetition and formatting well below the
    bounds, and a digest of many events through the built-in templates."""
    code = (
        "{% set headline %}{{ '=' * 40 }} {{ '%-10s|' % number }} {{ '{:>8}'.format(total) }}"
        "{% for i in range(20000) %}{% if i == 19999 %} {{ i }}{% endif %}{% endfor %}"
        "{% endset %}{% extends layout %}"
    )
    templates = user_templates(tmp_path, {"en/order.paid.text.j2": code})
    assert templates.problems(template_samples()) == []
    title = templates.render(order_event(), flavour="text").title
    assert "=" * 40 in title and "19999" in title
    events = [order_event(number=str(1000 + i)) for i in range(500)]
    assert Templates(None).render_digest(events, flavour="text").body


def test_one_templates_per_folder_is_shared(tmp_path: Path) -> None:
    """Environments and found templates are cached on the instance: every channel and every
    fallback must reach the same one, or each render would compile the templates again."""
    assert templates_for(None) is templates_for(None)
    assert templates_for(tmp_path) is templates_for(tmp_path / ".")
    assert templates_for(tmp_path) is not templates_for(None)


# Seller alerts (pollerd/templates/seller.py) ---------------------------------------------


def seller_event(kind: str, figures: dict[str, Any], **order: Any) -> dict[str, Any]:
    """A seller rule's alert: an order event's JSON with the rule's `alert` figures."""
    event = order_event(kind, **order)
    return {**event, "id": f"acme:{kind}:1", "reason": "English text for logs", "alert": figures}


def deadline_figures(deadline: str) -> dict[str, Any]:
    return {
        "rule": "dispute_deadline",
        "severity": "warning",
        "dispute": "d77",
        "reminder": "24h",
        "deadline": deadline,
        "amount": "25.00",
        "currency": "USD",
        "reason": "FRAUDULENT",
        "status": "NEEDS_RESPONSE",
    }


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("locale", LOCALES)
def test_seller_alerts_never_name_the_buyer(locale: str, flavour: str) -> None:
    """A burst is found from email, phone or IP; none of them, masked or not, is shown on any
    seller alert, and the rule's English reason does not leak into a Chinese alert."""
    for event in template_samples("acme"):
        if event["type"] not in SELLER_EVENTS:
            continue
        event["order"]["customer"] = {
            "email": "j***@example.com",
            "phone": "138****5678",
            "name": "Jane D.",
        }
        event["reason"] = "203.0.113.7 jane@example.com"
        message = templates_for(None).render(
            event, flavour=flavour, locale=locale, timezone="Asia/Shanghai"
        )
        for shown in (message.title, message.body):
            for value in ("j***@", "jane@", "****5678", "Jane", "203.0.113"):
                assert value not in shown, (event["type"], value)


def test_seller_alerts_word_their_figures_in_the_locale() -> None:
    burst = seller_event(
        "alert.order_burst",
        {
            "rule": "order_burst",
            "by": ["ip"],
            "count": 3,
            "window_seconds": 86400.0,
            "orders": ["1001", "1002", "1003"],
        },
    )
    en = templates_for(None).render(burst, flavour="text", locale="en").title
    zh = templates_for(None).render(burst, flavour="text", locale="zh-CN").title
    assert en.startswith("[acme] URGENT: 3 orders from one IP in 24 h (#1001, #1002, #1003)")
    assert "【紧急】同一IP 24 小时内下单 3 笔：#1001、#1002、#1003，疑似欺诈" in zh
    high = seller_event(
        "alert.high_value",
        {"rule": "high_value", "total": "5000.00", "currency": "CNY", "threshold": "5000"},
        total="5000.00",
        currency="CNY",
    )
    zh = templates_for(None).render(high, flavour="wecom", locale="zh-CN").title
    assert "订单 #1001 金额 ¥5,000.00（审核阈值 ¥5,000.00），发货前需人工审核" in zh
    assert "URGENT" not in templates_for(None).render(high, flavour="text").title


def test_cancellation_rate_over_the_long_run_without_a_mean() -> None:
    """A store too new for a mean crosses `max_rate` only: the alert says that, not "vs usual"."""
    event = seller_event(
        "alert.cancellation_rate",
        {
            "rule": "cancellation_rate",
            "rate": 0.3,
            "mean": None,
            "orders": 40,
            "cancelled": 12,
            "max_rate": 0.15,
            "max_rate_window_rate": 0.18,
            "max_rate_window_orders": 200,
            "max_rate_window_cancelled": 36,
            "over_mean": False,
            "over_max_rate": True,
            "since": "2026-11-15T09:32Z",
        },
    )
    message = templates_for(None).render(event, flavour="text", locale="en")
    assert "Cancellations 18 % over the long run, above 15 %" in message.title
    assert "Long run: 18 % (36 of 200 orders); limit 15 %" in message.body
    assert "Usual" not in message.body
    zh = templates_for(None).render(event, flavour="text", locale="zh-CN").title
    assert "长期取消率 18%，超过 15%" in zh


def rate_figures(**changes: Any) -> dict[str, Any]:
    return {
        "rule": "cancellation_rate",
        "window_seconds": 7 * 86400.0,
        "max_rate_window_seconds": 90 * 86400.0,
        "rate": 0.3,
        "mean": 0.12,
        "orders": 40,
        "cancelled": 12,
        "max_rate": 0.15,
        "max_rate_window_rate": 0.16,
        "max_rate_window_orders": 500,
        "max_rate_window_cancelled": 80,
        "over_mean": True,
        "over_max_rate": True,
        "since": "2026-11-15T09:32Z",
        **changes,
    }


@pytest.mark.parametrize(
    ("figures", "en", "zh"),
    [
        (
            rate_figures(),
            "Cancellations 30 % in the last 7 days vs 12 % usual (7-day windows)",
            "近7天取消率 30%，往期均值 12%（每期7天）",
        ),
        (
            rate_figures(over_mean=False, mean=None),
            "Cancellations 16 % over 90 days, above 15 %",
            "近90天取消率 16%，超过 15%",
        ),
        (
            rate_figures(window_seconds=36 * 3600.0, max_rate_window_seconds=30 * 86400.0),
            "Cancellations 30 % in the last 36 h vs 12 % usual (36-hour windows)",
            "近36小时取消率 30%，往期均值 12%（每期36小时）",
        ),
    ],
)
def test_cancellation_rate_names_its_windows(figures: dict[str, Any], en: str, zh: str) -> None:
    """The rate and its mean are over windows the seller configured: the alert says which."""
    event = seller_event("alert.cancellation_rate", figures)
    message = templates_for(None).render(event, flavour="text", locale="en")
    assert en in message.title
    long_days = round(figures["max_rate_window_seconds"] / 86400)
    assert f"Last {long_days} days: 16 % (80 of 500 orders); limit 15 %" in message.body
    assert zh in templates_for(None).render(event, flavour="text", locale="zh-CN").title


def test_burst_lists_order_numbers_or_ids_for_older_facts() -> None:
    """`orders` holds numbers (the ids stay in `order_ids` for webhooks); an order stored
    before its number was is listed by its id."""
    burst = seller_event(
        "alert.order_burst",
        {
            "rule": "order_burst",
            "by": ["email"],
            "count": 3,
            "window_seconds": 3600.0,
            "orders": ["#1001", "#1002", "5273485869312"],
            "order_ids": ["5273485803776", "5273485836544", "5273485869312"],
        },
    )
    en = templates_for(None).render(burst, flavour="text", locale="en").title
    assert "3 orders from one email in 1 h (#1001, #1002, #5273485869312)" in en
    assert "5273485803776" not in en


@pytest.mark.parametrize(
    ("deadline", "urgent", "left"),
    [
        ("2026-11-22T12:32:36Z", True, "3 h"),  # PAID_AT + 3 h
        ("2026-11-23T09:32:36Z", False, "24 h"),  # exactly 24 h ahead: the 24 h reminder
        ("2026-11-25T09:32:36Z", False, "3 days"),
    ],
)
def test_dispute_deadline_is_urgent_under_24_hours(deadline: str, urgent: bool, left: str) -> None:
    event = seller_event("dispute.deadline", deadline_figures(deadline))
    title = templates_for(None).render(event, flavour="text", locale="en").title
    assert ("URGENT: " in title) is urgent
    assert f"evidence due in {left} (" in title


def test_seller_alerts_in_a_digest() -> None:
    """Alerts in a digest: one title line each, and no alert's order counted in the totals."""
    events = [e for e in template_samples("acme") if e["type"] in SELLER_EVENTS]
    message = templates_for(None).render_digest(events, flavour="text", locale="zh-CN")
    assert "需人工审核" in message.body and "疑似欺诈" in message.body
    assert "合计" not in message.body
