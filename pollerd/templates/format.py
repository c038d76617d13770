"""How values read in an alert: one safe line per value (`clean`), money, dates and zones in
the reader's locale, platform codes in words (`say`), and pollerd's own labels (`labels`).

Everything here is pure and order-agnostic: `context` decides which values an event shows,
these functions decide how each one is written.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_skeleton
from babel.numbers import UnknownCurrencyError, format_currency, format_decimal, is_currency
from markupsafe import Markup

from pollerd.model import parse_utc

LOCALES = ("en", "zh-CN")

MAX_VALUE = 200  # characters of one order-derived value (a pasted essay as a name stays short)
UNSAFE = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u200b\u202a-\u202e\u2066-\u2069]+")

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

# Labels the layouts use (`t.total`); event wording lives in the templates themselves.
WORDS: dict[str, dict[str, str]] = {
    "en": {
        "store_open": "[",
        "store_close": "] ",
        "test": "[TEST] ",
        "urgent": "URGENT: ",
        "total": "Total: ",
        "refunded": "Refunded: ",
        "refund": "refunded {refunded} of {total}",
        "payment": "Payment: ",
        "customer": "Customer: ",
        "more": "… (+{count} items)",
        "more_one": "… (+1 item)",
        "reason": "Reason: ",
        "permanent": "deleted permanently (not in the trash)",
        "link": "Open: ",
        "disputed": "Disputed: ",
        "evidence": "Evidence due by: ",
        "digest_total": "Total of {orders} orders: ",
        "digest_total_one": "Total of 1 order: ",
        "digest_more": "… and {count} more",
        "unsubscribe": "Unsubscribe: ",
    },
    "zh-CN": {
        "store_open": "【",
        "store_close": "】",
        "test": "【测试】",
        "urgent": "【紧急】",
        "total": "金额：",
        "refunded": "已退款：",
        "refund": "已退 {refunded} / {total}",
        "payment": "支付方式：",
        "customer": "顾客：",
        "more": "…（另有 {count} 项）",
        "reason": "原因：",
        "permanent": "已永久删除（不在回收站）",
        "link": "后台：",
        "disputed": "争议金额：",
        "evidence": "举证截止：",
        "digest_total": "{orders} 个订单合计：",
        "digest_total_one": "1 个订单合计：",
        "digest_more": "…（另有 {count} 条）",
        "unsubscribe": "退订：",
    },
}

# Platform codes shown to people (Shopify dispute status/type/reason, cancel reasons), in words.
# A code not listed here reads as lower-case words ("PRODUCT_NOT_RECEIVED" → "product not
# received"); a Chinese reader must not be left with "FRAUDULENT".
CODES: dict[str, dict[str, str]] = {
    "en": {
        "CUSTOMER": "customer request",
        "DECLINED": "payment declined",
        "FRAUD": "suspected fraud",
        "INVENTORY": "out of stock",
        "STAFF": "staff error",
    },
    "zh-CN": {
        "NEEDS_RESPONSE": "待回应",
        "UNDER_REVIEW": "审核中",
        "CHARGE_REFUNDED": "已退款",
        "ACCEPTED": "已接受",
        "WON": "已胜诉",
        "LOST": "已败诉",
        "CHARGEBACK": "拒付",
        "INQUIRY": "询问",
        "BANK_CANNOT_PROCESS": "银行无法处理",
        "CREDIT_NOT_PROCESSED": "退款未处理",
        "CUSTOMER_INITIATED": "顾客发起",
        "DEBIT_NOT_AUTHORIZED": "扣款未授权",
        "DUPLICATE": "重复扣款",
        "FRAUDULENT": "欺诈交易",
        "GENERAL": "一般争议",
        "INCORRECT_ACCOUNT_DETAILS": "账户信息有误",
        "INSUFFICIENT_FUNDS": "余额不足",
        "PRODUCT_NOT_RECEIVED": "未收到商品",
        "PRODUCT_UNACCEPTABLE": "商品与描述不符",
        "SUBSCRIPTION_CANCELLED": "订阅已取消",
        "UNRECOGNIZED": "无法识别的扣款",
        "CUSTOMER": "顾客要求取消",
        "DECLINED": "付款被拒",
        "FRAUD": "疑似欺诈",
        "INVENTORY": "库存不足",
        "STAFF": "员工操作失误",
        "OTHER": "其他",
    },
}
_CODE = re.compile(r"[A-Za-z]+(?:_[A-Za-z]+)*")


def clean(value: Any, *, limit: int = MAX_VALUE) -> str:
    """An order-derived value as one safe line: no newlines or control characters, at most
    `limit` characters. None and missing values become ""."""
    if value is None:
        return ""
    text = UNSAFE.sub(" ", str(value)).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def lang(locale: str) -> str:
    """Known locales as is; any other Chinese variant reads zh-CN, everything else English."""
    if locale in LOCALES:
        return locale
    return "zh-CN" if locale.lower().startswith("zh") else "en"


def admin_url(value: Any) -> str:
    """The admin link if it is an http(s) URL, else "": a `javascript:` URL must never become
    a clickable link in someone's mailbox."""
    url = clean(value, limit=2000)
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    return url if parts.scheme in ("http", "https") and parts.netloc else ""


def local_time(value: Any, *, timezone: str = "UTC", locale: str = "en") -> str:
    """`2026-11-22T09:32:36Z` → `Nov 22, 2026 17:32 CST` (en) / `2026年11月22日 17:32 北京时间`."""
    if isinstance(value, datetime):
        when: datetime | None = value
    else:
        try:
            when = parse_utc(value) if isinstance(value, str) else None
        except ValueError:
            return ""
    if when is None:
        return ""
    local = when.astimezone(ZoneInfo(timezone))
    code = _babel(locale)
    label = _ZH_ZONE_NAMES.get(timezone) if lang(locale) == "zh-CN" else None
    if label is None:
        label = local.strftime("%Z")
        if label[:1] in "+-":  # zones without an abbreviation: "+08" reads better as "UTC+08"
            label = f"UTC{label}"
    day = format_skeleton("yMMMd", local, locale=code)
    return f"{day} {format_skeleton('Hm', local, locale=code)} {label}"


@cache
def _babel(locale: str) -> Locale:
    """Babel's locale object, parsed once (parsing it per call costs more than formatting)."""
    return Locale.parse(lang(locale).replace("-", "_"))


def local_day(value: Any, *, timezone: str = "UTC", locale: str = "en") -> str:
    """A deadline as the platform gives it: a bare date (`2026-12-01`) is that calendar day
    (`Dec 1, 2026` / `2026年12月1日`, no zone shift), a time is a `local_time`; anything else
    is shown as it came."""
    text = clean(value)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        try:
            return format_skeleton("yMMMd", date.fromisoformat(text), locale=_babel(locale))
        except ValueError:
            return text
    return local_time(text, timezone=timezone, locale=locale) or text


def say(code: Any, locale: str = "en") -> str:
    """A platform code in the reader's words: `UNDER_REVIEW` → `under review` / `审核中`,
    Shopify's cancel reason `customer` → `customer request` / `顾客要求取消`. Free text (a
    deletion message) is returned as it is."""
    text = clean(code)
    if not _CODE.fullmatch(text):
        return text
    return CODES[lang(locale)].get(text.upper(), text.lower().replace("_", " "))


def money(amount: Any, currency: Any = "", *, locale: str = "en") -> str:
    """`25.00`, `USD` → `$25.00` (en) / `US$25.00` (zh-CN); a code Babel does not know is
    written after the number (`25.00 XBT`, not Babel's `XBT25.00`); the raw text when not a
    number, "" when there is no amount."""
    code = clean(currency, limit=10).upper()
    if not clean(amount):
        return ""
    try:
        value = Decimal(str(amount))
    except (InvalidOperation, ValueError):
        return f"{clean(amount)} {code}".strip()
    if not value.is_finite():
        return f"{clean(amount)} {code}".strip()
    babel_locale = _babel(locale)
    number = format_decimal(value, format="#,##0.00##", locale=babel_locale)
    if not code:
        return number
    if not is_currency(code):
        return f"{number} {code}"
    try:
        return format_currency(value, code, locale=babel_locale)
    except (UnknownCurrencyError, ValueError):
        return f"{number} {code}"


def trusted(text: str) -> Markup:
    """`text` as markup that no escaping touches: only for pollerd's own words and markup,
    and for values the flavour's escaper has already made inert."""
    return Markup(text)  # noqa: S704 - the one place trusted text is declared


@cache
def labels(locale: str) -> dict[str, Markup]:
    """The locale's labels as trusted markup: pollerd's own words are not escaped (a "[" of
    ours is not a customer's "["), the values next to them are."""
    return {key: trusted(value) for key, value in WORDS[lang(locale)].items()}
