"""Platform-neutral values that flow from sources through the diff to the outbox.

Sources turn API payloads into `Order`; the diff turns (`Snapshot`, `Order`) into a new
`Snapshot` and `Event`s; the store persists both; channels render `Event.to_json()`.
All datetimes are timezone-aware UTC.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson

EVENT_TYPES = (
    "order.created",
    "order.paid",
    "order.fulfilled",
    "order.partially_refunded",
    "order.refunded",
    "order.cancelled",
    "order.deleted",
    "dispute.opened",
    "dispute.updated",
)
"""Canonical order: when one observation implies several events, they are emitted (and
delivered) in this order, which is the order they can happen in."""


def utc_iso(value: datetime | None, *, millis: bool = False) -> str | None:
    """RFC 3339 with a `Z`, the one date format that leaves pollerd."""
    if value is None:
        return None
    value = value.astimezone(UTC)
    if value.year < 1000:  # strftime's %Y does not pad: keep its spelling of such a year
        text = value.strftime("%Y-%m-%dT%H:%M:%S")
    else:  # the same text, without strftime's cost (a backfill formats millions of dates)
        text = (
            f"{value.year}-{value.month:02d}-{value.day:02d}"
            f"T{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
        )
    if millis:
        return f"{text}.{value.microsecond // 1000:03d}Z"
    return text + "Z"


def parse_utc(text: str | None) -> datetime | None:
    """Parse an API date as UTC; naive text (an API's `*_gmt` fields) is UTC by contract."""
    if not text:
        return None
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def normal_ip(text: object) -> str | None:
    """An IP address as one spelling (`::ffff:203.0.113.9` → `203.0.113.9`, IPv6 compressed,
    lower case); None for an empty or malformed value (a platform's "" or "unknown") and for a
    placeholder that names no buyer: `0.0.0.0` (Shopify's own sample orders carry it) or a
    loopback address (a proxy that hides the buyer); either would join every order it is on
    into one "burst"."""
    if not isinstance(text, str) or not text.strip():
        return None
    if _DOTTED_QUAD.fullmatch(text):  # the common case, spelled as `ipaddress` would spell it
        return None if text == "0.0.0.0" or text.startswith("127.") else text
    try:
        address = ipaddress.ip_address(text.strip().split("%", 1)[0])
    except ValueError:
        return None
    address = getattr(address, "ipv4_mapped", None) or address
    return None if address.is_unspecified or address.is_loopback else str(address)


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_DOTTED_QUAD = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}", re.ASCII)
"""An IPv4 address exactly as `str(ipaddress.ip_address(...))` writes it (no leading zeros)."""


def mask_email(email: str | None) -> str | None:
    """`jane@example.com` → `j***@example.com`: enough to recognise, not enough to harvest."""
    if not email or "@" not in email:
        return None if not email else "***"
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


def mask_phone(phone: str | None) -> str | None:
    """`13812345678` → `138****5678` (keeps the prefix and last four, like Chinese apps do)."""
    if not phone:
        return None
    digits = [c for c in phone if c.isdigit()]
    if len(digits) < 7:
        return "***"
    return "".join(digits[:3]) + "****" + "".join(digits[-4:])


def short_name(first: object, last: object) -> str | None:
    """Enough to recognise a customer in an alert, not a full name: first name and last
    initial ("Ada L."), or for a Chinese, Japanese or Korean name the family name first, as it
    is written, with the given name masked ("王*" for 王芳, as Chinese apps show it)."""
    first = first.strip() if isinstance(first, str) else ""
    last = last.strip() if isinstance(last, str) else ""
    if last and CJK.match(last):
        return last + "*" * max(1, len(first))
    name = f"{first} {last[:1]}." if last else first
    return name.strip() or None


# Kana, CJK ideographs and Hangul: names written family name first.
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")


def full_name(first: object, last: object) -> str | None:
    """The whole name as the customer wrote it, for the sealed contact only: "Ada Lovelace",
    or family name first with no space for a CJK name ("王芳")."""
    first = first.strip() if isinstance(first, str) else ""
    last = last.strip() if isinstance(last, str) else ""
    if last and CJK.match(last):
        return (last + first) or None
    return f"{first} {last}".strip() or None


@dataclass(frozen=True)
class Contact:
    """An order's full customer contact. It never leaves the process in clear: the store keeps
    it only sealed (AES-256-GCM, `pii_key`) and drops it when no key is configured; `repr`
    shows nothing, so a logged `Order` or a traceback cannot leak it."""

    name: str | None = None
    email: str | None = None
    phone: str | None = None

    @classmethod
    def of(cls, name: str | None, email: str | None, phone: str | None) -> Contact | None:
        """None when the order carries no contact at all (nothing to seal)."""
        return cls(name, email, phone) if (name or email or phone) else None

    def __repr__(self) -> str:
        return "Contact(<not shown>)"

    __str__ = __repr__


@dataclass(frozen=True)
class LineItem:
    name: str
    quantity: int
    total: str


@dataclass(frozen=True)
class Order:
    """One order as the API showed it, normalised. Events get only the masked customer fields;
    `contact` holds the full one for the store to seal (or drop without `pii_key`)."""

    store: str
    platform: str  # the `pollerd.sources` plugin name
    id: str
    number: str
    status: str  # the platform's own status string
    created_at: datetime
    updated_at: datetime
    total: str
    currency: str
    # Evidence: when each change happened by the order's own record, where it keeps one. The
    # diff uses these to tell a change after the store's start point from one before it on an
    # order it has never seen (DESIGN §6: however old the order). `completed_at` is when it was
    # completed or last fulfilled.
    paid_at: datetime | None = None
    completed_at: datetime | None = None
    cancelled_at: datetime | None = None
    refunds_at: tuple[datetime, ...] = ()  # each refund's creation, oldest first
    payment_method: str = ""
    payment_method_title: str = ""
    refunded_total: Decimal = Decimal("0")  # positive sum of refunds
    financial_status: str | None = None
    fulfillment_status: str | None = None
    test: bool = False
    customer_email: str | None = None  # masked
    customer_phone: str | None = None  # masked
    customer_name: str | None = None  # first name + initial
    admin_url: str = ""
    line_items: tuple[LineItem, ...] = ()
    cancel_reason: str | None = None
    hidden_from: str | None = None  # moved to a `Hidden` status (a trash): the status before
    hidden_at: datetime | None = None  # moved to a `Hidden` status: when, by its own record
    # Where the order was placed from (WooCommerce `customer_ip_address`, Shopify `clientIp` /
    # `browserIp`), normalised by `ipaddress`; for the burst rule's blind index only, never in
    # an event (it is personal data).
    customer_ip: str | None = field(default=None, repr=False)
    # The full contact, for the sealed store only (never in events, repr or comparisons).
    contact: Contact | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """The `order` object of the event JSON (DESIGN §7)."""
        return {
            "id": self.id,
            "number": self.number,
            "status": self.status,
            "total": self.total,
            "currency": self.currency,
            "created_at": utc_iso(self.created_at),
            "updated_at": utc_iso(self.updated_at),
            "paid_at": utc_iso(self.paid_at),
            "cancelled_at": utc_iso(self.cancelled_at),
            "financial_status": self.financial_status,
            "fulfillment_status": self.fulfillment_status,
            "refunded_total": str(self.refunded_total),
            "payment_method": self.payment_method,
            "payment_method_title": self.payment_method_title,
            "customer": {
                "email": self.customer_email,
                "phone": self.customer_phone,
                "name": self.customer_name,
            },
            "line_items": [
                {"name": i.name, "quantity": i.quantity, "total": i.total} for i in self.line_items
            ],
            "admin_url": self.admin_url,
        }


PERMANENT_DELETION = (
    "deleted permanently: the store no longer has this order, not even in the trash"
)
"""The `reason` of an `order.deleted` pollerd inferred from a known order's absence (a permanent
delete may leave no trace in any listing); templates say it in the reader's words."""


@dataclass(frozen=True)
class Deletion:
    """An order the platform says was destroyed (it no longer appears in any listing)."""

    order_id: str
    deleted_at: datetime
    message: str = ""  # the platform's own wording, e.g. "Order #1001 was deleted."


@dataclass(frozen=True)
class Dispute:
    """A payment dispute (chargeback or inquiry) as the platform shows it now."""

    id: str
    order_id: str | None
    order_number: str | None
    status: str  # NEEDS_RESPONSE, UNDER_REVIEW, CHARGE_REFUNDED, ACCEPTED, WON, LOST
    type: str  # CHARGEBACK | INQUIRY
    amount: str
    currency: str
    reason: str | None
    initiated_at: datetime
    evidence_due_by: date | datetime | None
    finalized_on: date | None = None


@dataclass(frozen=True)
class Snapshot:
    """What pollerd remembers of an order: enough to diff the next observation.

    `fired` is the set of event types already emitted, which is what makes every event fire at
    most once per order even when the API shows sticky fields (a payment date kept after a refund).
    """

    store: str
    order_id: str
    status: str
    updated_at: datetime
    refunded_total: Decimal = Decimal("0")
    fired: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Target:
    """One channel an event goes to (`pollerd.routing.targets_for`), and when: `quiet_until`
    (epoch seconds) holds the delivery for a route's quiet hours; None sends it at once."""

    channel: str
    quiet_until: float | None = None


@dataclass(frozen=True)
class Event:
    type: str
    store: str
    platform: str
    order_id: str
    occurred_at: datetime
    detected_at: datetime
    test: bool
    order: dict[str, Any]
    reason: str | None = None  # e.g. cancel reason
    dispute: dict[str, Any] | None = None  # dispute.* events: the dispute as it is now
    # An alert whose subject is not an order (a failing store or channel) carries its own id,
    # `<store>:<type>:<subject>` (pollerd.alerts); kept through the JSON by `from_json`.
    alert_id: str | None = field(default=None, compare=False)
    # An alert's figures (`pollerd.alerts`): the rule and what it measured (threshold, count,
    # rate, deadline, orders); in the JSON only when set, so order events are unchanged.
    alert: dict[str, Any] | None = None
    # A report's figures (`pollerd.alerts.reports`: the period, orders, revenue, rates); in the
    # JSON only when set. A report's `order` is only its outbox group (`{"id": ...}`).
    report: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        """The idempotency key `store:order_id:type`, identical on every retry and restart.
        An order can have several disputes, and a dispute several updates, so dispute events
        append the dispute id (and for updates the new status) to stay once-only per change."""
        if self.alert_id is not None:
            return self.alert_id
        key = f"{self.store}:{self.order_id}:{self.type}"
        if self.dispute is None:
            return key
        if self.type == "dispute.opened":
            return f"{key}:{self.dispute['id']}"
        return f"{key}:{self.dispute['id']}:{str(self.dispute['status']).lower()}"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "store": self.store,
            "platform": self.platform,
            "occurred_at": utc_iso(self.occurred_at),
            "detected_at": utc_iso(self.detected_at, millis=True),
            "test": self.test,
            "order": self.order,
        }
        if self.reason:
            data["reason"] = self.reason
        if self.dispute is not None:
            data["dispute"] = self.dispute
        if self.alert is not None:
            data["alert"] = self.alert
        if self.report is not None:
            data["report"] = self.report
        return data

    def body(self) -> str:
        """The exact bytes the webhook channel posts and the outbox stores.

        orjson writes an order event's JSON ten times faster than `json` (a backfill writes
        one per event) and, for what such an event holds (strings, integers, booleans, null),
        the very same text (tests/unit/test_event_body.py). Alerts and reports carry floats,
        which the two spell differently (`1e-05` and `1e-5`): those keep `json`, as does
        anything orjson refuses (an integer past 64 bits, a lone surrogate)."""
        data = self.to_json()
        if self.alert is None and self.report is None:
            try:
                return orjson.dumps(data).decode()
            except TypeError:  # orjson.JSONEncodeError
                pass
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        occurred = parse_utc(data["occurred_at"])
        detected = parse_utc(data["detected_at"])
        assert occurred is not None and detected is not None
        return cls(
            type=data["type"],
            store=data["store"],
            platform=data["platform"],
            order_id=data["order"]["id"],
            occurred_at=occurred,
            detected_at=detected,
            test=bool(data.get("test")),
            order=data["order"],
            reason=data.get("reason"),
            dispute=data.get("dispute"),
            alert=data.get("alert"),
            report=data.get("report"),
            alert_id=(
                data.get("id")
                if str(data["type"]).startswith("alert.")
                or data.get("alert") is not None
                or data.get("report") is not None
                else None
            ),
        )
