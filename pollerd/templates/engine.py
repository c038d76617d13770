"""Alerts rendered from Jinja2 templates: one per event × locale × flavour, with fallbacks.

Where a template comes from: `{locale}/{event}.{flavour}.j2`, then the same for each fallback
flavour (`wecom → markdown → text`), then the flavour-neutral `{locale}/{event}.j2`; the event
falls back to its family (`order.on_hold` → `order`) and the locale to its parents
(`zh-CN → zh → en`). The user's folder (`[pollerd] templates`) is searched before the built-in
one at every step, so a user overrides exactly one file and inherits the rest. The built-in
event templates only say what happened (`{% block headline %}`); `layout/{flavour}.j2` lays the
order out for each flavour.

Safety is the framework's, not the template author's:
- the environment is sandboxed (templates come from a config folder, not from pollerd's code)
  and `StrictUndefined`: a misspelt variable is an error that `pollerd check` reports, not a
  silently empty alert;
- every `{{ value }}` is escaped for the flavour by a `finalize` hook (customer names are
  attacker-controlled); pollerd's own markup (`link()`, `b()`, macros) is `Markup`, which passes;
  `|raw` marks a trusted string. Values are also squeezed onto one line before that, so a
  newline in a name cannot forge a second alert line or a mail header;
- the unsubscribe/mute footer is appended after rendering, so no template can drop it;
- a message too long for the channel is shortened by showing fewer line items ("… (+N items)"),
  then the brief form, then cut, and is never split into several messages.
A user template that fails at send time falls back to the built-in one (logged), so a template
bug never loses an alert.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_skeleton
from babel.numbers import UnknownCurrencyError, format_currency, format_decimal, is_currency
from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    FileSystemLoader,
    PackageLoader,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateSyntaxError,
    pass_context,
)
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from loguru import logger
from markupsafe import Markup

from pollerd.errors import ControlFlow
from pollerd.model import CJK, EVENT_TYPES, PERMANENT_DELETION, mask_email, mask_phone, parse_utc
from pollerd.templates.escape import ESCAPERS, bold, link
from pollerd.templates.sandbox import BoundedSandbox, bounded, join_bounded, wrote

FLAVOURS = tuple(ESCAPERS)
LOCALES = ("en", "zh-CN")
EVENTS = (
    *EVENT_TYPES,
    "alert.channel_failing",
    "alert.store_failing",
    "alert.store_recovered",
    "alert.order_quarantined",
    "digest",
)
# A flavour's fallbacks, for user templates: a `markdown` override serves every markdown chat.
FALLBACK: dict[str, tuple[str, ...]] = {
    "text": ("text",),
    "sms": ("sms", "text"),
    "email_text": ("email_text", "text"),
    "email_html": ("email_html",),
    "markdown": ("markdown", "text"),
    "wecom": ("wecom", "markdown", "text"),
    "dingtalk": ("dingtalk", "markdown", "text"),
    "feishu": ("feishu", "markdown", "text"),
    "discord": ("discord", "markdown", "text"),
    "slack": ("slack", "text"),
    "telegram": ("telegram", "text"),
}
MAX_ITEMS = 10  # more line items than this become "… (+N items)": an alert is not an invoice
DIGEST_LINES = 10  # alerts a preview digest shows one by one; the rest are "… and M more"
_COMPLETE: ContextVar[bool] = ContextVar("pollerd_complete_digests", default=False)


class DigestTooLong(ControlFlow):
    """A digest cannot name every alert it stands for within the channel's limit (raised only
    under `complete_digests`): the sender names fewer and leaves the rest for the next one."""


@contextmanager
def complete_digests() -> Iterator[None]:
    """Digests rendered inside name EVERY alert or raise `DigestTooLong`: a digest marks its
    rows sent, so a row it does not name would never be named anywhere (issue 11: a flash
    sale's digest of 40 named 10 and said "… and 30 more"). The delivery loop renders in this
    mode; previews (`pollerd check`, goldens) keep the "… and M more" form."""
    token = _COMPLETE.set(True)
    try:
        yield
    finally:
        _COMPLETE.reset(token)


_MAX_VALUE = 200  # characters of one order-derived value (a pasted essay as a name stays short)
_UNSAFE = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u200b\u202a-\u202e\u2066-\u2069]+")

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


@dataclass(frozen=True)
class Message:
    """A rendered alert: `title` is one line (mail subject, DingTalk/Feishu title, the digest
    line of this event); `body` is the whole message in the flavour, footer included."""

    title: str
    body: str


@dataclass(frozen=True)
class Footer:
    """What the framework appends to every message of a channel, whatever the template says:
    `before` + link to `url` + `after` (e.g. the one-click unsubscribe link of an email)."""

    before: str
    url: str
    after: str = ""


def clean(value: Any, *, limit: int = _MAX_VALUE) -> str:
    """An order-derived value as one safe line: no newlines or control characters, at most
    `limit` characters. None and missing values become ""."""
    if value is None:
        return ""
    text = _UNSAFE.sub(" ", str(value)).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def lang(locale: str) -> str:
    """Known locales as is; any other Chinese variant reads zh-CN, everything else English."""
    if locale in LOCALES:
        return locale
    return "zh-CN" if locale.lower().startswith("zh") else "en"


def locale_chain(locale: str) -> tuple[str, ...]:
    """`zh-CN` → (zh-CN, zh, en): the folders searched, most specific first."""
    chain: list[str] = []
    parts = locale.replace("_", "-").split("-")
    for end in range(len(parts), 0, -1):
        chain.append("-".join(parts[:end]))
    if lang(locale) not in chain:
        chain.append(lang(locale))
    if "en" not in chain:
        chain.append("en")
    return tuple(chain)


def event_chain(kind: str) -> tuple[str, ...]:
    """`order.on_hold` → (order.on_hold, order): an event type the templates do not know yet
    still renders, through its family's generic template."""
    family = kind.split(".", 1)[0]
    return (kind, family) if family != kind else (kind,)


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
def _labels(locale: str) -> dict[str, Markup]:
    """The locale's labels as trusted markup: pollerd's own words are not escaped (a "[" of
    ours is not a customer's "["), the values next to them are."""
    return {key: trusted(value) for key, value in WORDS[lang(locale)].items()}


def _nonzero(value: Any) -> bool:
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return False
    return amount.is_finite() and amount != 0


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _mask_name(value: Any) -> str:
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
    words = _labels(locale)
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
    return {
        "id": clean(data.get("id")),
        "type": kind,
        "store": clean(data.get("store")),
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
        "reason": reason,
        "admin_url": admin_url(order.get("admin_url")),
        "tail": [part for part in tail if part],
        "before": before,
        "after": after,
        "hidden": 0,
        "brief": False,
    }


def _finalize(flavour: str) -> Callable[[Any], Markup]:
    escape = ESCAPERS[flavour]

    def finalize(value: Any) -> Markup:
        if isinstance(value, Markup):
            wrote(value)
            return value
        if value is None:
            return trusted("")
        return trusted(wrote(escape(_UNSAFE.sub(" ", str(value)))))

    return finalize


def _environment(folder: Path | None, flavour: str) -> ImmutableSandboxedEnvironment:
    loaders: list[BaseLoader] = []
    if folder is not None:
        loaders.append(FileSystemLoader(str(folder)))
    loaders.append(PackageLoader("pollerd", "templates"))
    env = BoundedSandbox(
        loader=ChoiceLoader(loaders),
        undefined=StrictUndefined,
        autoescape=True,  # so macros and blocks are Markup; `finalize` does the real escaping
        finalize=_finalize(flavour),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        auto_reload=False,
    )
    env.globals["flavour"] = flavour
    # "·" is not in GSM-7: one in an SMS makes it UCS-2, at 70 characters a segment.
    env.globals["sep"] = trusted(" - " if flavour == "sms" else " · ")
    env.globals["link"] = _linker(flavour)
    env.globals["b"] = lambda text: trusted(bold(flavour, _escaped(flavour, text)))
    env.filters["raw"] = lambda value: trusted(str(value))
    env.filters["money"] = _money_filter
    env.filters["mask_email"] = lambda value: mask_email(clean(value) or None) or ""
    env.filters["mask_phone"] = lambda value: mask_phone(clean(value) or None) or ""
    env.filters["mask_name"] = _mask_name
    return env


def _linker(flavour: str) -> Callable[..., Markup]:
    """`link(url, label=None)` for templates: only an http(s) URL becomes a link (a template
    may hand it an order-derived value, and `javascript:` must never be clickable); otherwise
    the label alone is shown, escaped."""

    def make(url: Any, label: Any = None) -> Markup:
        target = admin_url(url)
        text = None if label is None else _UNSAFE.sub(" ", str(label)).strip()
        if not target:
            return trusted(_escaped(flavour, text) if text else "")
        return trusted(link(flavour, target, text))

    return make


@pass_context
def _money_filter(ctx: Context, amount: Any, currency: Any = None) -> str:
    """`{{ total|money }}` in the order's currency, `{{ x|money("EUR") }}` in another one;
    formatted for the template's locale."""
    code = ctx.get("currency", "") if currency is None else currency
    return money(amount, code, locale=ctx.get("locale", "en"))


def _escaped(flavour: str, value: Any) -> str:
    if isinstance(value, Markup):
        return str(value)
    return ESCAPERS[flavour](_UNSAFE.sub(" ", str(value)))


class Templates:
    """The templates of one configuration (built-in + an optional user folder): finds,
    renders, fits. One instance per folder is shared (`templates_for`)."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder
        self._envs: dict[str, ImmutableSandboxedEnvironment] = {}
        self._found: dict[tuple[str, str, str, bool], Template] = {}

    def env(self, flavour: str) -> ImmutableSandboxedEnvironment:
        if flavour not in ESCAPERS:
            raise ValueError(f"unknown flavour {flavour!r} (one of {', '.join(FLAVOURS)})")
        if flavour not in self._envs:
            self._envs[flavour] = _environment(self.folder, flavour)
        return self._envs[flavour]

    def candidates(self, kind: str, locale: str, flavour: str) -> list[str]:
        """Template names tried for (event, locale, flavour), in order."""
        names: list[str] = []
        for loc in locale_chain(locale):
            for name in event_chain(kind):
                names += [f"{loc}/{name}.{fl}.j2" for fl in FALLBACK[flavour]]
                names.append(f"{loc}/{name}.j2")
        return names

    def find(self, kind: str, locale: str, flavour: str, *, builtin: bool = False) -> Template:
        key = (kind, locale, flavour, builtin)
        found = self._found.get(key)
        if found is None:
            env = (_builtin() if builtin else self).env(flavour)
            found = env.select_template(self.candidates(kind, locale, flavour))
            self._found[key] = found
        return found

    def user_file(self, template: Template) -> bool:
        """Whether `template` (or nothing else) came from the user's folder."""
        if self.folder is None or template.filename is None:
            return False
        return Path(template.filename).resolve().is_relative_to(self.folder.resolve())

    # rendering -----------------------------------------------------------------------------
    def render(
        self,
        event: dict[str, Any],
        *,
        flavour: str,
        locale: str = "en",
        timezone: str = "UTC",
        fits: Callable[[Message], bool] | None = None,
        footer: Footer | None = None,
    ) -> Message:
        """`event` (the event JSON) as one message in `flavour`, shortened until `fits`."""
        values = context(event, locale=locale, timezone=timezone)
        return self._fit(
            str(event.get("type", "")), values, flavour, locale, timezone, fits, footer
        )

    def render_digest(
        self,
        events: Sequence[dict[str, Any]],
        *,
        flavour: str,
        locale: str = "en",
        timezone: str = "UTC",
        fits: Callable[[Message], bool] | None = None,
        footer: Footer | None = None,
    ) -> Message:
        """Many alerts as ONE message (a flash sale through a 20-a-minute robot): the count,
        the total per currency, one summary line per event (each the event's own title in
        `flavour`), as many as fit, "… and M more" for the rest."""
        values = digest_context(self, events, locale=locale, timezone=timezone, flavour=flavour)
        return self._fit("digest", values, flavour, locale, timezone, fits, footer)

    def title(self, event: dict[str, Any], *, locale: str = "en", timezone: str = "UTC") -> str:
        """The one-line summary of an event, as plain text (digest lines, logs, subjects)."""
        return self.render(event, flavour="text", locale=locale, timezone=timezone).title

    def _fit(
        self,
        kind: str,
        values: dict[str, Any],
        flavour: str,
        locale: str,
        timezone: str,
        fits: Callable[[Message], bool] | None,
        footer: Footer | None,
    ) -> Message:
        template = self.find(kind, locale, flavour)
        try:
            return _shrink(template, values, flavour, locale, fits, footer)
        except (TemplateError, ArithmeticError, TypeError, ValueError, LookupError) as exc:
            # The failing file may be the user's even when `template` is built-in (a user
            # `layout/wecom.j2` under the built-in `en/order.paid.j2`): any user folder
            # earns the fallback; without one the bug is pollerd's and must surface.
            if self.folder is None:
                raise
            logger.error(
                "template {} failed ({}: {}); the built-in template was used instead",
                _where(exc, template.filename or template.name),
                type(exc).__name__,
                exc,
            )
            builtin = self.find(kind, locale, flavour, builtin=True)
            return _shrink(builtin, values, flavour, locale, fits, footer)

    # checking ------------------------------------------------------------------------------
    def syntax_problems(self) -> list[str]:
        """`file:line: error` for every user template that does not compile."""
        if self.folder is None:
            return []
        found: list[str] = []
        env = self.env("text")
        for path in sorted(self.folder.rglob("*.j2")):
            name = path.relative_to(self.folder).as_posix()
            try:
                env.get_template(name)
            except TemplateError as exc:
                line = getattr(exc, "lineno", None)
                found.append(f"{path}" + (f":{line}" if line else "") + f": {exc}")
        return found

    def problems(self, samples: Iterable[dict[str, Any]]) -> list[str]:
        """Every user template that does not compile, or fails to render one of `samples`
        (one event JSON per type; the digest is built from them) in any locale and flavour,
        as `file:line: Error: message`: `pollerd check` prints these."""
        found = self.syntax_problems()
        if found or self.folder is None:
            return found
        events = [s for s in samples if s.get("type") != "digest"]
        # Every combination, not only those whose event template is the user's: a user
        # layout or include fails under a built-in event template too. The digest is the
        # samples' digest.
        for kind in [*dict.fromkeys(str(s.get("type")) for s in events), "digest"]:
            sample = next((s for s in events if s.get("type") == kind), None)
            for flavour in FLAVOURS:
                for locale in LOCALES:
                    try:
                        template = self.find(kind, locale, flavour)
                        if sample is None:  # lines from the built-in titles: each event's
                            # own template is checked (and reported) on its own
                            values = digest_context(
                                _builtin(), events, locale=locale, timezone="UTC", flavour=flavour
                            )
                        else:
                            values = context(sample, locale=locale, timezone="UTC")
                        _shrink(template, values, flavour, locale, None, None)
                    except (
                        TemplateError,
                        ArithmeticError,
                        TypeError,
                        ValueError,
                        LookupError,
                    ) as exc:  # what `_fit` falls back from at send time
                        problem = f"{_where(exc, kind)}: {type(exc).__name__}: {exc}"
                        if problem not in found:
                            found.append(problem)
        return found


def _where(exc: BaseException, default: str) -> str:
    """`file:line` of the template line that raised `exc` (the innermost template frame: an
    include or a layout, not only the event template), else `default`."""
    if isinstance(exc, TemplateSyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}"
    where = default
    tb = exc.__traceback__
    while tb is not None:
        template = tb.tb_frame.f_globals.get("__jinja_template__")  # how Jinja's debug finds it
        if isinstance(template, Template) and template.filename:
            where = f"{template.filename}:{template.get_corresponding_lineno(tb.tb_lineno)}"
        tb = tb.tb_next
    return where


def _render(template: Template, values: dict[str, Any], flavour: str, locale: str) -> Message:
    """Body and title of `template`: the title is its `title` block (inherited blocks count),
    else the first line of the body."""
    words = _labels(locale)
    hidden = values.get("hidden", 0)
    key = "digest_more" if values.get("type") == "digest" else "more"
    more = words[f"{key}_one" if hidden == 1 and f"{key}_one" in words else key]
    variables = {
        **values,
        "t": words,
        "locale": lang(locale),
        "layout": f"layout/{flavour}.j2",
        "more": more.format(count=hidden) if hidden else "",
    }
    with bounded():  # one template cannot take the daemon's memory or time (sandbox.py)
        ctx = template.new_context(variables)
        body = join_bounded(template.root_render_func(ctx)).strip("\n")
        blocks = ctx.blocks.get("title")
        title = join_bounded(blocks[0](ctx)).strip() if blocks else body.split("\n", 1)[0]
    return Message(title=" ".join(title.split()), body=body)


def footer_markup(flavour: str, footer: Footer, locale: str) -> str:
    """The footer in the flavour; plain-text flavours get the "-- " signature separator."""
    escape = ESCAPERS[flavour]
    line = escape(footer.before) + link(flavour, footer.url) + escape(footer.after)
    if flavour == "email_html":
        return f"<hr><p><small>{line}</small></p>"
    if flavour in ("text", "email_text", "sms"):
        return f"-- \n{line}"
    return line


def _with_footer(message: Message, flavour: str, footer: Footer | None, locale: str) -> Message:
    if footer is None:
        return message
    mark = footer_markup(flavour, footer, locale)
    body = message.body
    if flavour == "email_html" and "</body>" in body:
        head, _, tail = body.rpartition("</body>")
        return Message(message.title, f"{head}{mark}</body>{tail}")
    return Message(message.title, f"{body}\n\n{mark}")


def _shrink(
    template: Template,
    values: dict[str, Any],
    flavour: str,
    locale: str,
    fits: Callable[[Message], bool] | None,
    footer: Footer | None,
) -> Message:
    """The fullest rendering that `fits`: all items (at most MAX_ITEMS), then fewer; then the
    brief form (summary, "… (+N items)", link); then the summary loses its time, customer, …
    from the end; as a last resort the body is cut at a line and then within it ("…")."""

    def attempt(changes: dict[str, Any]) -> Message:
        rendered = _render(template, {**values, **changes}, flavour, locale)
        return _with_footer(rendered, flavour, footer, locale)

    items = values["items"]
    if values.get("type") == "digest" and _COMPLETE.get():
        message = attempt({"items": items, "hidden": 0})
        if fits is None or fits(message):
            return message
        raise DigestTooLong(f"{len(items)} alerts do not fit in one {flavour} message")
    for shown in range(min(len(items), MAX_ITEMS), -1, -1):
        message = attempt({"items": items[:shown], "hidden": len(items) - shown})
        if fits is None or fits(message):
            return message
    tail = values.get("tail", [])
    brief = {"items": [], "hidden": len(items), "before": [], "after": [], "brief": True}
    for keep in range(len(tail), -1, -1):
        message = attempt({**brief, "tail": tail[:keep]})
        if fits(message):
            return message
    bare = _render(template, {**values, **brief, "tail": []}, flavour, locale)
    return _cut(bare, flavour, footer, locale, fits)


def _cut(
    message: Message,
    flavour: str,
    footer: Footer | None,
    locale: str,
    fits: Callable[[Message], bool],
) -> Message:
    """Absurd input only (each value is capped, so this needs a tiny limit): drop whole lines
    between the summary and the last line (the order link), then from the end, then shorten
    the last one; the footer is always kept."""

    def ok(lines: list[str], title: str = message.title) -> bool:
        body = Message(title, "\n".join(lines))
        return fits(_with_footer(body, flavour, footer, locale))

    lines = message.body.split("\n")
    title = message.title
    while len(lines) > 2 and not ok(lines):
        lines.pop(-2)
    while len(lines) > 1 and not ok(lines):
        lines.pop()
    last, low, high = lines[-1], 0, len(lines[-1])
    while low < high:
        middle = (low + high + 1) // 2
        if ok([*lines[:-1], last[:middle] + "…"]):
            low = middle
        else:
            high = middle - 1
    lines[-1] = last[:low] + "…" if low < len(last) else last
    if not ok(lines) and title:
        title = title[: max(1, len(title) // 2)] + "…"
    return _with_footer(Message(title, "\n".join(lines)), flavour, footer, locale)


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
        if not str(event.get("type", "")).startswith("alert.") and isinstance(order, dict):
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
        "items": [{"name": line, "quantity": "", "total": ""} for line in lines],
        "hidden": 0,
        "tail": [],
        "before": [
            (
                _labels(locale)[label].format(orders=len(orders)),
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


@cache
def _builtin() -> Templates:
    return Templates(None)


@cache
def _for_folder(folder: Path) -> Templates:
    return Templates(folder)


def templates_for(folder: Path | None = None) -> Templates:
    """The shared Templates of a user folder (None: built-in only)."""
    return _builtin() if folder is None else _for_folder(folder.resolve())


def escape_for(flavour: str, text: str) -> str:
    """`text` escaped for `flavour` (for the few strings channels add outside templates)."""
    return ESCAPERS[flavour](text)
