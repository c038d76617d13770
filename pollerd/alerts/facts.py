"""What the seller rules need of an order or dispute, built from it for `commit_page` to store.

The burst rule compares buyers by email, phone and IP address, but pollerd must not keep
those values: it keeps a blind index, a keyed HMAC-SHA256 of each normalised value. Equal
values give equal digests under one key; without the key a digest says nothing, not even
which of a few million addresses it was.

The key: derived from `[pollerd] pii_key` when it is set (HKDF-SHA256 over the ring's current
key, with an info label of its own, so it is never the sealing key itself), else a random key
made for this database and kept in its `meta` table. Rotating `pii_key` (a new first entry)
changes the blind key: old digests stop matching new ones, so a burst that spans a rotation is
not joined; nothing else is affected.
"""

from __future__ import annotations

import hmac
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation

from pollerd.crypto import derive
from pollerd.model import Dispute, Order
from pollerd.secrets import Secret
from pollerd.sources.plugin import Rules, unpaid
from pollerd.store import DisputeFact, OrderFact, Store

BLIND_INFO = b"pollerd blind index v1"
"""HKDF's info label: the blind key differs from the sealing key it is derived from."""

AWAITING = frozenset({"needs_response"})
"""Dispute statuses (`model.Dispute`, lower case) still awaiting the seller's evidence; every
other one was answered (under_review) or is closed (won, lost, accepted, charge_refunded)."""

CLOSED = frozenset({"won", "lost", "accepted", "charge_refunded"})
"""Dispute statuses that are decided: won, or lost (lost, accepted by the seller, or the charge
refunded to the buyer); the weekly report counts them in the week they closed."""


def blind_key(store: Store, pii_key: Secret | str | None) -> bytes:
    """The blind index key: from `pii_key`'s current key, else the database's own."""
    if pii_key is None:
        return store.blind_seed()
    return derive(pii_key.get() if isinstance(pii_key, Secret) else pii_key, BLIND_INFO)


def normal_email(value: str | None) -> str | None:
    value = (value or "").strip().lower()
    return value if "@" in value else None


def normal_phone(value: str | None) -> str | None:
    """Digits only (`+1 (555) 010-0` and `15550100` match); fewer than 7 is no number."""
    digits = "".join(c for c in value or "" if c.isdigit())
    return digits if len(digits) >= 7 else None


def blind(key: bytes, kind: str, value: str) -> bytes:
    """The digest of one normalised value; `kind` is in the message, so an email and a phone
    that happen to be the same text never match."""
    return hmac.digest(key, f"{kind}\0{value}".encode(), "sha256")  # C, no HMAC object


def order_fact(order: Order, rules: Rules, key: bytes) -> OrderFact:
    """The facts of `order` under its platform's `rules` (unpaid, cancelled), with the blind
    indexes of its buyer's email, phone and IP (whichever the order has)."""
    contact = order.contact
    values = {
        "email": normal_email(contact.email if contact else None),
        "phone": normal_phone(contact.phone if contact else None),
        "ip": order.customer_ip,
    }
    return OrderFact(
        order_id=order.id,
        created_at=order.created_at,
        total=_amount(order.total),
        currency=order.currency.upper(),
        unpaid=unpaid(rules, order),
        cancelled="order.cancelled" in rules.implied(order, known=True),
        digests={kind: blind(key, kind, v) for kind, v in values.items() if v},
        number=order.number or None,
    )


def dispute_fact(dispute: Dispute) -> DisputeFact:
    """The deadline rule's view of a dispute. A deadline given as a day is read as the start
    of that day (UTC): a reminder early rather than one after the deadline."""
    due = _day(dispute.evidence_due_by)
    return DisputeFact(
        dispute_id=dispute.id,
        order_id=dispute.order_id or f"dispute-{dispute.id}",
        status=dispute.status,
        awaiting=dispute.status.lower() in AWAITING,
        amount=_amount(dispute.amount),
        currency=dispute.currency.upper(),
        reason=dispute.reason.lower() if dispute.reason else None,
        evidence_due_by=due,
        opened_at=dispute.initiated_at,
        closed_at=_day(dispute.finalized_on),
        closed=dispute.status.lower() in CLOSED,
    )


def _day(value: date | datetime | None) -> datetime | None:
    """A date as the start of that day (UTC); a time as it is."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.combine(value, time(0), UTC)


def _amount(text: str) -> Decimal:
    """A normalised amount (sources refuse malformed ones); 0 rather than a crash mid-page."""
    try:
        return Decimal(text)
    except InvalidOperation:
        return Decimal(0)
