"""`pollerd alerts test`: the stored facts of the last days replayed through the configured
rules, to tune thresholds before anyone is paged. Nothing is recorded or sent.

The replay runs the very rules of a pass (`seller.evaluate`, `settle`), not a second
implementation of them, on a scratch database of its own: the store's facts are copied into
it as time advances, each as if written when its order was created, and a pass is judged at
each moment something could fire (an order placed, an unpaid order coming due, a dispute
reminder's hour, and every hour for the cancellation rate, which measures hourly). The real
database is only read: no alert, no delivery, no rule state (the cancellation rate keeps its
crossing in meta) is written to it, so it runs beside `pollerd run` without its lock.

What it cannot know: facts hold each order's *latest* state. An order that was unpaid past
`after` and paid since is not replayed as late (it would have been alerted live), and an order
cancelled since counts as cancelled from its creation. A dispute holds no time it was opened,
so its reminders are replayed as if it had been known all along. Orders created before the replayed
days are history: they count in rates and bursts but never fire themselves (`Facts.start`).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pollerd.alerts.base import Alert
from pollerd.alerts.seller import applies, evaluate, settle
from pollerd.config.alerts import AlertConfig, DisputeDeadlineAlert, UnpaidTimeoutAlert
from pollerd.store import Store
from pollerd.store.alerts import record_alert

HOUR = 3600.0
TICK = 60.0
"""Moments are rounded up to the minute: orders placed in one minute are judged in one pass
(a live pass is at most this often for most stores), which keeps a busy week to a few
thousand passes."""


@dataclass(frozen=True)
class Fired:
    """An alert the rules would have raised, and the pass (epoch seconds) that raised it."""

    at: float
    alert: Alert


def replay(
    source: Store,
    alerts: Sequence[AlertConfig],
    store_name: str,
    platform: str,
    *,
    since: float,
    until: float,
) -> list[Fired]:
    """What `alerts` would have raised for `store_name` between `since` and `until`, in the
    order they would have fired. `source` is only read."""
    if not any(applies(config, store_name) for config in alerts):
        return []
    rows = source.fact_rows(store_name, until)
    orders, digests, disputes = rows["order_fact"], rows["blind_index"], rows["dispute_fact"]
    moments = _moments(alerts, store_name, orders, disputes, since, until)
    fired: list[Fired] = []
    with tempfile.TemporaryDirectory(prefix="pollerd-replay-") as tmp:
        scratch = Store(f"sqlite:///{Path(tmp) / 'replay.db'}")
        try:
            _copy(scratch, "dispute_fact", disputes, since)
            copied = 0
            digests_copied = 0
            for now in moments:
                new = [r for r in orders[copied:] if r["created_at"] <= now]
                copied += len(new)
                _copy(scratch, "order_fact", new, since)
                new_digests = [r for r in digests[digests_copied:] if r["created_at"] <= now]
                digests_copied += len(new_digests)
                _copy(scratch, "blind_index", new_digests, since)
                for alert in evaluate(scratch, alerts, store_name, platform, now, since):
                    record_alert(scratch, alert.event(now), [])  # no channel: nothing to send
                    fired.append(Fired(now, alert))
                settle(scratch, store_name, now)
        finally:
            scratch.close()
    return fired


def per_day(fired: Iterable[Fired], day_of: Any) -> dict[str, dict[str, int]]:
    """How many alerts each rule would have raised per day (`day_of(epoch) -> "YYYY-MM-DD"`)."""
    table: dict[str, dict[str, int]] = {}
    for f in fired:
        row = table.setdefault(day_of(f.at), {})
        row[f.alert.type] = row.get(f.alert.type, 0) + 1
    return table


def _copy(scratch: Store, table: str, rows: list[dict[str, Any]], since: float) -> None:
    """Rows written as if when their order was created (history: at the replay's start), so
    the rules' "written since the last pass" reads see them at that pass."""
    if not rows:
        return
    stamped = []
    for row in rows:
        when = max(float(row.get("created_at") or since), since)
        column = "written_at" if "written_at" in row else "seen_at"
        stamped.append({**row, column: when})
    scratch.put_fact_rows(table, stamped)


def _moments(
    alerts: Sequence[AlertConfig],
    store_name: str,
    orders: list[dict[str, Any]],
    disputes: list[dict[str, Any]],
    since: float,
    until: float,
) -> list[float]:
    """Every pass the replay judges: each minute an order was placed or an unpaid one came
    due, each dispute reminder, every hour, and the end."""
    configs = [c for c in alerts if applies(c, store_name)]
    times = {since + HOUR * i for i in range(math.ceil((until - since) / HOUR))}
    times.add(until)
    afters = [c.after.total_seconds() for c in configs if isinstance(c, UnpaidTimeoutAlert)]
    for row in orders:
        created = float(row["created_at"])
        times.add(created)
        if row["unpaid"]:
            times.update(created + after for after in afters)
    befores = [
        b.total_seconds() for c in configs if isinstance(c, DisputeDeadlineAlert) for b in c.before
    ]
    for row in disputes:
        if row["evidence_due_by"] is not None:
            times.update(float(row["evidence_due_by"]) - before for before in befores)
    ticks = {
        min(until, since + math.ceil((t - since) / TICK) * TICK)
        for t in times
        if since <= t <= until
    }
    return sorted(ticks)
