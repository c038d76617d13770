"""Whether an event is urgent on its own: the one answer the templates (the URGENT marker in a
title) and routing (what quiet hours never hold) both read, so a message that says URGENT is
never the one left waiting until morning.

Urgent on its own:
- an alert whose rule is configured `severity = "critical"` (the event's `alert.severity`);
- `alert.order_burst` (likely fraud: someone should look before the goods ship);
- `dispute.deadline` with under `URGENT_HOURS` left before the evidence is due, counted from
  the alert's `occurred_at` (the moment the reminder was raised).

A route may add types of its own with `urgent = [...]` (`pollerd.routing`); that is the
route's business, not the event's, so it is not here.

This module lives at the top of the package, beside `model`, rather than in `pollerd.alerts`:
importing anything from `pollerd.alerts` loads its rules, the store and the routing (which
`alerts.base` imports), and both the templates (loaded by every channel) and `routing`
(imported by `alerts.base`) must stay below all of that.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pollerd.model import parse_utc

__all__ = ["URGENT_HOURS", "hours_left", "urgent"]

URGENT_HOURS = 24
"""A dispute deadline closer than this is urgent (a 24 h reminder raised on time is not yet:
the 4 h one is)."""

ALWAYS_URGENT = frozenset({"alert.order_burst"})


def hours_left(figures: Mapping[str, Any], occurred_at: datetime | str | None) -> float | None:
    """Hours from `occurred_at` to the figures' `deadline`, or None when either is missing or
    does not read."""
    deadline = figures.get("deadline")
    try:
        due = parse_utc(deadline) if isinstance(deadline, str) and deadline else None
        now = parse_utc(occurred_at) if isinstance(occurred_at, str) else occurred_at
    except ValueError:
        return None
    if due is None or now is None:
        return None
    return (due - now).total_seconds() / 3600


def urgent(
    kind: str, figures: Mapping[str, Any] | None, occurred_at: datetime | str | None
) -> bool:
    """Whether an event of type `kind` with the rule's `figures` (the event's `alert` object,
    None for order events) raised at `occurred_at` is urgent on its own (module docstring)."""
    facts = figures if isinstance(figures, Mapping) else {}
    if facts.get("severity") == "critical" or kind in ALWAYS_URGENT:
        return True
    if kind == "dispute.deadline":
        left = hours_left(facts, occurred_at)
        return left is not None and 0 < left < URGENT_HOURS
    return False
