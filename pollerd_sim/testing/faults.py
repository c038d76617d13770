"""The fault suite's one checker (research §B.6, §B.7): what should have arrived against what
did, as a pure function, so every fault test asserts the same four things the same way and a
plugin's own fault tests can reuse it.

- `truth`: the event ids the store's history implies, in the order they happened. `woo_truth`
  derives them from a `WooSim`'s change history (`WooSim.history()`), `shop_truth` from a
  `ShopSim`'s (`ShopSim.history()`), so a test never keeps its own list of what it did beside
  the simulator's (two accounts of one history drift apart).
- `receipts`: what the receiver accepted, in arrival order (`receipts_of(sink.receipts)`).
- `dead`: ids pollerd dead-lettered: listed and retryable, so not lost.

`check` reports `lost` (expected, neither received nor dead), `duplicated` (received more than
once; whether each copy repeats bytes already delivered, which receiver-side dedupe on the
`webhook-id` makes harmless, or carries different ones, which it would silently drop),
`unexpected` (received, never implied by the history) and `order_violations` (two events of one
order received in the opposite order to the one they happened in, DESIGN §6 per-order order).

Nothing here starts a process or reads a clock: `tests/unit/test_fault_checker.py` makes each
field fail on a hand-written history.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from pollerd.model import EVENT_TYPES

# WooCommerce statuses → the events each proves (the simple, non-cash-on-delivery case the
# fault tests drive; pollerd.sources.woocommerce.rules is the full table).
_WOO_EVENTS: Mapping[str, tuple[str, ...]] = {
    "pending": ("order.created",),
    "on-hold": ("order.created",),
    "processing": ("order.created", "order.paid"),
    "completed": ("order.created", "order.paid", "order.fulfilled"),
    "cancelled": ("order.created", "order.cancelled"),
    "refunded": ("order.created", "order.paid", "order.refunded"),
}


class Got(NamedTuple):
    """One accepted delivery: its idempotency key and a digest of the bytes that carried it."""

    id: str
    body: str = ""


class _Transition(Protocol):
    @property
    def time(self) -> datetime: ...
    @property
    def order_id(self) -> int: ...
    @property
    def status(self) -> str: ...


class _ShopChange(Protocol):
    @property
    def time(self) -> datetime: ...
    @property
    def order_id(self) -> int: ...
    @property
    def action(self) -> str: ...
    @property
    def financial(self) -> str: ...


class _Receipt(Protocol):
    @property
    def webhook_id(self) -> str | None: ...
    @property
    def body(self) -> bytes: ...


@dataclass(frozen=True)
class Duplicate:
    id: str
    copies: int  # receipts beyond the first
    same_body: bool  # every copy repeats the first one's bytes (receiver dedupe drops it)


@dataclass(frozen=True)
class Report:
    expected: int
    received: int
    lost: tuple[str, ...] = ()
    duplicated: tuple[Duplicate, ...] = ()
    unexpected: tuple[str, ...] = ()
    order_violations: tuple[tuple[str, str], ...] = ()  # (happened first, arrived first)
    dead: tuple[str, ...] = field(default=())

    @property
    def extra_copies(self) -> int:
        return sum(d.copies for d in self.duplicated)

    @property
    def ok(self) -> bool:
        """Nothing lost or unexpected, order kept, and any duplicate harmless after dedupe."""
        return (
            not self.lost
            and not self.unexpected
            and not self.order_violations
            and all(d.same_body for d in self.duplicated)
        )

    def summary(self) -> str:
        """One line for an assertion message (the first few of each list)."""
        return (
            f"expected {self.expected}, received {self.received}, lost {len(self.lost)} "
            f"{list(self.lost[:5])}, duplicated {len(self.duplicated)} (+{self.extra_copies}) "
            f"{[d.id for d in self.duplicated[:5]]}, unexpected {len(self.unexpected)} "
            f"{list(self.unexpected[:5])}, out of order {list(self.order_violations[:5])}, "
            f"dead {len(self.dead)}"
        )


def _order_of(event_id: str) -> str:
    """`store:order:type` → `store:order`."""
    return event_id.rsplit(":", 1)[0]


def check(truth: Sequence[str], receipts: Iterable[Got], *, dead: Iterable[str] = ()) -> Report:
    """Compare `truth` (ids in the order they happened) with `receipts` (arrival order)."""
    expected = list(dict.fromkeys(truth))
    gone = set(dead)
    first: dict[str, Got] = {}
    arrival: dict[str, int] = {}
    copies: dict[str, int] = {}
    same: dict[str, bool] = {}
    count = 0
    for got in receipts:
        count += 1
        if got.id in first:
            copies[got.id] = copies.get(got.id, 0) + 1
            same[got.id] = same.get(got.id, True) and got.body == first[got.id].body
        else:
            first[got.id] = got
            arrival[got.id] = len(arrival)
    known = set(expected)
    violations: list[tuple[str, str]] = []
    by_order: dict[str, list[str]] = {}
    for event_id in expected:
        if event_id in arrival:
            by_order.setdefault(_order_of(event_id), []).append(event_id)
    for events in by_order.values():
        for i, earlier in enumerate(events):
            for later in events[i + 1 :]:
                if arrival[later] < arrival[earlier]:
                    violations.append((earlier, later))
    return Report(
        expected=len(expected),
        received=count,
        lost=tuple(e for e in expected if e not in first and e not in gone),
        duplicated=tuple(Duplicate(i, n, same[i]) for i, n in copies.items()),
        unexpected=tuple(i for i in first if i not in known),
        order_violations=tuple(violations),
        dead=tuple(e for e in expected if e in gone),
    )


def woo_truth(
    history: Iterable[_Transition], *, store: str = "shop", since: datetime | None = None
) -> list[str]:
    """The event ids a WooCommerce history implies, in the order they happened: each status an
    order reaches proves the events of `_WOO_EVENTS` (a refund proves the payment), each once.
    Orders created before `since` (pollerd's start point) announce nothing: their later
    changes would need the order's own dates to judge (`pollerd.diff`), which the fault tests
    avoid by starting pollerd before the first order."""
    seen: dict[int, set[str]] = {}
    skipped: set[int] = set()
    out: list[str] = []
    for change in history:
        oid = change.order_id
        if oid not in seen and oid not in skipped and since is not None and change.time < since:
            skipped.add(oid)
        if oid in skipped:
            continue
        fired = seen.setdefault(oid, set())
        for kind in _WOO_EVENTS.get(change.status, ("order.created",)):
            if kind not in fired:
                fired.add(kind)
                out.append(f"{store}:{oid}:{kind}")
    return out


# Shopify's financial statuses that prove a capture (pollerd.sources.shopify.rules.SHOPIFY_PAID,
# upper-case as the simulator records them), and the canonical order of one observation's events
# (pollerd.model: created, paid, fulfilled, partially_refunded, refunded, cancelled, deleted).
_SHOP_PAID = frozenset({"PAID", "PARTIALLY_REFUNDED", "REFUNDED"})
_CANONICAL = tuple(kind for kind in EVENT_TYPES if kind.startswith("order."))


def shop_truth(
    history: Iterable[_ShopChange], *, store: str = "shop", since: datetime | None = None
) -> list[str]:
    """The event ids a Shopify history (`ShopSim.history()`: time, order, action, financial
    status after it) implies, in the order they happened, each once: Shopify's rules
    (`pollerd.sources.shopify.rules`) judge the order's state, so the state after each change
    is rebuilt (financial status, cancelled, fulfilled, refunded at all) and whatever it newly
    proves is appended, in pollerd's canonical order when one change proves several.

    What a poller can legitimately never see is the tests' to avoid, not this function's to
    guess: a partial refund followed by a full one between two passes (only the full one is
    visible, so `order.partially_refunded` is never announced), a deletion of an order pollerd
    never saw, changes in the same pass in an order other than the canonical one. `since` skips
    orders created before pollerd's start point, as `woo_truth` does."""
    state: dict[int, dict[str, Any]] = {}
    skipped: set[int] = set()
    out: list[str] = []
    for change in history:
        oid = change.order_id
        if oid not in state and oid not in skipped and since is not None and change.time < since:
            skipped.add(oid)
        if oid in skipped:
            continue
        now = state.setdefault(
            oid, {"fired": set(), "cancelled": False, "fulfilled": False, "refunded": False}
        )
        action = change.action
        now["cancelled"] = now["cancelled"] or action == "cancel"
        now["fulfilled"] = now["fulfilled"] or action == "fulfill"
        now["refunded"] = now["refunded"] or action == "refund"
        implied = {"order.created"}
        if change.financial in _SHOP_PAID:
            implied.add("order.paid")
        if now["fulfilled"]:
            implied.add("order.fulfilled")
        if change.financial == "REFUNDED":
            implied.add("order.refunded")
        elif change.financial == "PARTIALLY_REFUNDED" or now["refunded"]:
            implied.add("order.partially_refunded")
        if now["cancelled"]:
            implied.add("order.cancelled")
        if action == "delete":
            implied.add("order.deleted")
        fired: set[str] = now["fired"]
        for kind in _CANONICAL:
            if kind in implied and kind not in fired:
                fired.add(kind)
                out.append(f"{store}:{oid}:{kind}")
    return out


def receipts_of(receipts: Iterable[_Receipt]) -> list[Got]:
    """A `WebhookSink`'s 2xx receipts as the checker's input (a receipt without a
    `webhook-id` keeps an empty id: unexpected, never matched)."""
    return [Got(r.webhook_id or "", hashlib.sha256(r.body).hexdigest()) for r in receipts]


def as_dict(report: Report) -> dict[str, Any]:
    """The report as plain data (a benchmark's JSON, a nightly run's log)."""
    return {
        "expected": report.expected,
        "received": report.received,
        "lost": list(report.lost),
        "duplicated": [asdict(d) for d in report.duplicated],
        "unexpected": list(report.unexpected),
        "order_violations": [list(v) for v in report.order_violations],
        "dead": list(report.dead),
    }
