"""Truth vs what a tool captured: the pure part of the peers bench.

A syncer that emits order *state* (every peer here) only ever sees the status an order has at the
moment of each of its reads, so the fair truth is not the store's full history but the changes
visible at the sync moments: for each sync k, every order whose status at k differs from its
status at k-1 (no status before the first sight). A status that came and went between two syncs
(an order placed `pending` and paid a millisecond later) is in no one's truth.

A truth change is captured when the tool emitted that order with that status at any of its syncs;
for pollerd, whose output is events, the status is the one the event's order carried.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Change:
    """One status change visible at sync `sync` (1-based); `before` None = the order's first
    sight. `kind` labels the scripted step that made it (e.g. "T1 status change")."""

    order_id: int
    before: str | None
    after: str
    sync: int
    kind: str


def visible_changes(
    history: Sequence[tuple[int, str, str]], boundaries: Sequence[int]
) -> list[Change]:
    """The truth: `history` is the store's (order_id, status, step) writes in order, `step`
    naming the scripted step that made the write; `boundaries[k]` is how many writes had
    happened when sync k+1 read the store. A change is labelled with the step of the order's
    last write before that read."""
    if list(boundaries) != sorted(boundaries):
        raise ValueError(f"sync boundaries must not go backwards: {list(boundaries)}")
    changes: list[Change] = []
    status: dict[int, str] = {}
    step: dict[int, str] = {}
    previous: dict[int, str] = {}
    start = 0
    for sync, end in enumerate(boundaries, start=1):
        for order_id, value, label in history[start:end]:
            status[order_id] = value
            step[order_id] = label
        start = end
        for order_id, value in status.items():
            if previous.get(order_id) != value:
                changes.append(
                    Change(order_id, previous.get(order_id), value, sync, step[order_id])
                )
        previous = dict(status)
    return changes


def score(truth: Iterable[Change], observed: Iterable[tuple[int, str]]) -> dict[str, Any]:
    """Orders and status changes captured, and the missed ones counted by scripted step.

    A "status change" is a change of an order already seen (`before` set); first sights count
    under orders. Returns plain JSON-ready values."""
    truth = list(truth)
    pairs = set(observed)
    seen_orders = {order_id for order_id, _ in pairs}
    all_orders = {c.order_id for c in truth}
    status_changes = [c for c in truth if c.before is not None]
    missed = [c for c in truth if (c.order_id, c.after) not in pairs]
    by_kind: dict[str, int] = {}
    for change in missed:
        label = change.kind or "unlabelled"
        by_kind[label] = by_kind.get(label, 0) + 1
    return {
        "orders_truth": len(all_orders),
        "orders_captured": len(all_orders & seen_orders),
        "changes_truth": len(status_changes),
        "changes_captured": sum((c.order_id, c.after) in pairs for c in status_changes),
        "missed": len(missed),
        "missed_by_step": dict(sorted(by_kind.items())),
        "unrelated": len(seen_orders - all_orders),
    }
