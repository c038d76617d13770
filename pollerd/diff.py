"""Pure: (last Snapshot or None, Order now) → (new Snapshot, Events). Where "paid" is decided.

The diff does not compare two observations field by field. It asks which events the order's
*current* state implies have happened (a refunded order was created and paid), and emits those
not yet in the snapshot's `fired` set, in canonical order. Which events a state implies, and
when each happened by the order's own record, is the platform's `Rules` (its plugin's
`rules.py`); this module applies them the same way for every platform. That one rule gives:

- each event at most once per order and type, even with sticky fields (a payment date kept
  after a cancellation or refund would re-fire a naive "paid date is set" rule);
- skipped states are filled in (first seen completed ⇒ created + paid + fulfilled);
- `updated_at` moving with nothing changed produces nothing (a store may bump it when an admin
  merely opens an order).

The store's start point splits history: what happened after it alerts, what happened before it
does not, however old the order (DESIGN §6). An order first seen that was created after the start
point announces everything its state implies (a deleted paid order: created, paid, deleted). One
created before it never announces its creation; each other implied event is dated by the order's
own evidence (`Rules.evidence`: payment, completion, cancellation, refund, fulfillment and
deletion times) and alerts only when that date is at or after the start point. An event with no
date of its own cannot be dated: for platforms that leave changes undated the sync keeps a
first-run baseline (`pollerd.baseline`) of the orders that can still change, so such a change is
diffed against a known state; for an order outside it the order's `updated_at` decides, since a
false alert is cheaper than a lost one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pollerd.model import EVENT_TYPES, Deletion, Dispute, Event, Order, Snapshot, utc_iso
from pollerd.sources.plugin import Rules


def rules_for(platform: str) -> Rules:
    """A platform's default rules, for a caller that has no store config at hand."""
    from pollerd.sources import platform as plugin  # late: the registry imports plugins lazily

    try:
        return plugin(platform).rules(None)
    except KeyError:
        raise ValueError(f"no diff rules for platform {platform!r}") from None


def _occurred(order: Order, kind: str, rules: Rules) -> datetime:
    """When the change happened, from the order's own fields where it has one."""
    return rules.evidence(order, kind) or order.updated_at


def _after_start(order: Order, kind: str, start_at: datetime, rules: Rules) -> bool:
    """Did this event of an order pollerd has never seen, created before the start point,
    happen after the start point? Its creation never did. Without a date of its own the event
    is undecidable from this one observation; `updated_at` decides (the order did change after
    the start point), because a false alert is cheaper than a lost one."""
    if kind == "order.created":
        return False
    return _occurred(order, kind, rules) >= start_at


def diff(
    snapshot: Snapshot | None,
    order: Order,
    *,
    detected_at: datetime,
    start_at: datetime,
    rules: Rules | None = None,
) -> tuple[Snapshot, list[Event]]:
    """`rules`: the store's platform rules (`Platform.rules(cfg)`); None: the defaults of the
    order's platform."""
    rules = rules or rules_for(order.platform)
    implied = rules.implied(order, known=snapshot is not None and bool(snapshot.fired))
    fired = snapshot.fired if snapshot is not None else frozenset()
    new = [t for t in EVENT_TYPES if t in implied and t not in fired]
    if snapshot is None and order.created_at < start_at:
        new = [t for t in new if _after_start(order, t, start_at, rules)]
    snap = Snapshot(
        store=order.store,
        order_id=order.id,
        status=order.status,
        updated_at=order.updated_at,
        refunded_total=order.refunded_total,
        fired=frozenset(fired | implied),
    )
    order_json = order.to_json()
    events = [
        Event(
            type=kind,
            store=order.store,
            platform=order.platform,
            order_id=order.id,
            occurred_at=_occurred(order, kind, rules),
            detected_at=detected_at,
            test=order.test,
            order=order_json,
            reason=order.cancel_reason if kind == "order.cancelled" else None,
        )
        for kind in new
    ]
    return snap, events


def unchanged(snapshot: Snapshot | None, updated_at: datetime, status: str) -> bool:
    """True when a cheap listing row shows nothing new, so the full order need not be fetched."""
    return snapshot is not None and snapshot.updated_at == updated_at and snapshot.status == status


def deleted(
    snapshot: Snapshot | None,
    deletion: Deletion,
    *,
    store: str,
    platform: str,
    detected_at: datetime,
    last_order: dict[str, Any] | None,
    start_at: datetime | None = None,
) -> tuple[Snapshot | None, list[Event]]:
    """A destroyed order (a deletions feed, or an order gone from every listing): announced
    once. An order pollerd knew, or (given `start_at`) one it never saw that was destroyed at
    or after the start point, however old (the deletion is dated); a draft it saw, or an
    unknown order destroyed before the start point, is noise. The order as last announced is
    carried along, since the platform no longer has it."""
    if snapshot is None:
        if start_at is None or deletion.deleted_at < start_at:
            return None, []
        snapshot = Snapshot(
            store=store,
            order_id=deletion.order_id,
            status="unknown",
            updated_at=deletion.deleted_at,
            fired=frozenset({"order.created"}),
        )
    if not snapshot.fired or "order.deleted" in snapshot.fired:
        return snapshot, []
    snap = Snapshot(
        store=store,
        order_id=snapshot.order_id,
        status="deleted",
        updated_at=deletion.deleted_at,
        refunded_total=snapshot.refunded_total,
        fired=snapshot.fired | {"order.deleted"},
    )
    order = dict(last_order or {"id": snapshot.order_id})
    order["status"] = "deleted"
    event = Event(
        type="order.deleted",
        store=store,
        platform=platform,
        order_id=snapshot.order_id,
        occurred_at=deletion.deleted_at,
        detected_at=detected_at,
        test=False,
        order=order,
        reason=deletion.message or None,
    )
    return snap, [event]


def dispute_key(dispute_id: str) -> str:
    """Disputes share the snapshot table with orders under this key."""
    return f"dispute:{dispute_id}"


def dispute_diff(
    snapshot: Snapshot | None,
    dispute: Dispute,
    *,
    store: str,
    platform: str,
    detected_at: datetime,
    start_at: datetime,
    order: dict[str, Any] | None,
) -> tuple[Snapshot, list[Event]]:
    """`dispute.opened` at first sight (unless it predates the start point: a silent baseline),
    `dispute.updated` on every later status change, each (dispute, status) once."""
    snap = Snapshot(
        store=store,
        order_id=dispute_key(dispute.id),
        status=dispute.status,
        updated_at=detected_at,
        fired=(snapshot.fired if snapshot else frozenset()) | {dispute.status},
    )
    if snapshot is None:
        kind = None if dispute.initiated_at < start_at else "dispute.opened"
    elif dispute.status in snapshot.fired or dispute.status == snapshot.status:
        kind = None
    else:
        kind = "dispute.updated"
    if kind is None:
        return snap, []
    body = {
        "id": dispute.id,
        "status": dispute.status,
        "type": dispute.type,
        "amount": dispute.amount,
        "currency": dispute.currency,
        "reason": dispute.reason,
        "initiated_at": utc_iso(dispute.initiated_at),
        "evidence_due_by": _day_or_time(dispute.evidence_due_by),
        "finalized_on": _day_or_time(dispute.finalized_on),
    }
    order_id = dispute.order_id or f"dispute-{dispute.id}"
    event = Event(
        type=kind,
        store=store,
        platform=platform,
        order_id=order_id,
        occurred_at=dispute.initiated_at if kind == "dispute.opened" else detected_at,
        detected_at=detected_at,
        test=False,
        order=order or {"id": order_id, "number": dispute.order_number},
        reason=dispute.reason,
        dispute=body,
    )
    return snap, [event]


def _day_or_time(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return utc_iso(value)
    return str(value)  # a date: ISO YYYY-MM-DD
