"""The scripted WooCommerce history every tool faces, on a store of its own.

Each tool gets a fresh `WooSim` (UTC+8 site, HPOS, Basic auth over the TLS proxy) and the same
steps, in production order: the tool's initial sync, changes, its incremental syncs.

    T0     40 orders: 10 pending, 10 processing (paid by card), 10 on-hold (bank transfer),
           10 completed                                        → sync 1 (initial)
    T1     20 changes to T0 orders (5 pending→processing, 5 processing→cancelled,
           5 processing→refunded, 5 on-hold→processing) and 10 new orders (5 pending cheque,
           5 cash-on-delivery processing)                      → sync 2
    BURST  250 new orders in one second: 125 are written when the tool's first list request
           of sync 3 arrives, the tool's sync 3 runs to its end, the other 125 are written, all
           in that same second (the store's clock is held for the burst)
                                                               → sync 3 (lands mid-burst)
                                                               → sync 4
Same as research/peers-measured.md's T0/T1 (which ran on a real WooCommerce 10.0.2 at UTC+8),
plus the burst of its probe P3 ("a read lands inside a second still being written") made
deterministic: the read lands mid-second by construction instead of by chance.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pollerd_sim import WooSim
from pollerd_sim.wc_rest import ORDERS_PREFIX, Reply

BURST = 250
SITE_TIMEZONE = "Asia/Shanghai"


@dataclass
class Steps:
    """What was written, for the truth: (order_id, status, step) per write, and where each sync
    read the store (index into `writes`)."""

    writes: list[tuple[int, str, str]] = field(default_factory=list)
    boundaries: list[int] = field(default_factory=list)


class HistorySim(WooSim):
    """A `WooSim` whose clock can be held inside one second, and which can run the burst around
    the first orders-list request it answers once armed."""

    def __init__(self, **kwargs: Any) -> None:
        self._held: datetime | None = None
        self._armed: Burst | None = None
        self._arm_lock = threading.Lock()
        super().__init__(clock=self._now, **kwargs)

    def _now(self) -> datetime:
        return self._held or datetime.now(UTC)

    def arm(self, burst: Burst) -> None:
        with self._arm_lock:
            self._armed = burst

    def disarm(self) -> Burst | None:
        """The burst if no request fired it (the caller then writes it whole)."""
        with self._arm_lock:
            burst, self._armed = self._armed, None
        return burst

    def handle(
        self, method: str, path: str, query_string: str, headers: dict[str, str], body: bytes
    ) -> Reply:
        if method == "GET" and path == ORDERS_PREFIX and (burst := self.disarm()) is not None:
            self._held = datetime.now(UTC)
            burst.write(self, BURST // 2, "burst, before the read")
            burst.read_at = len(burst.steps.writes)
        return super().handle(method, path, query_string, headers, body)

    def finish(self, burst: Burst) -> None:
        """After the sync the burst's first half met: the other half, in the same held second,
        then the clock runs again."""
        try:
            burst.write(self, BURST - BURST // 2, "burst, after the read")
        finally:
            self._held = None


class Burst:
    """250 cash-on-delivery orders (new, `processing`), written in two halves."""

    def __init__(self, steps: Steps) -> None:
        self.steps = steps
        self.read_at: int | None = None

    def write(self, sim: WooSim, count: int, step: str) -> None:
        for _ in range(count):
            oid = sim.create_order(payment_method="cod")
            sim.checkout(oid)
            self.steps.writes.append((oid, "processing", step))


def next_second() -> None:
    """Start a step on a fresh second, so no step shares a `date_modified` second with the
    previous sync's cursor (the history is a script, not a race)."""
    time.sleep(1.0 - (time.time() % 1.0) + 0.02)


def t0(sim: WooSim, steps: Steps) -> dict[str, list[int]]:
    """40 orders in four statuses; returns their ids by status."""
    next_second()
    made: dict[str, list[int]] = {"pending": [], "processing": [], "on-hold": [], "completed": []}
    for _ in range(10):
        oid = sim.create_order(payment_method="stripe")
        made["pending"].append(oid)
        steps.writes.append((oid, "pending", "T0 new order"))
    for _ in range(10):
        oid = sim.create_order(payment_method="stripe")
        sim.checkout(oid)
        made["processing"].append(oid)
        steps.writes.append((oid, "processing", "T0 new order"))
    for _ in range(10):
        oid = sim.create_order(payment_method="bacs")
        sim.checkout(oid)
        made["on-hold"].append(oid)
        steps.writes.append((oid, "on-hold", "T0 new order"))
    for _ in range(10):
        oid = sim.create_order(payment_method="stripe")
        sim.checkout(oid)
        sim.set_status(oid, "completed")
        made["completed"].append(oid)
        steps.writes.append((oid, "completed", "T0 new order"))
    return made


def t1(sim: WooSim, steps: Steps, made: dict[str, list[int]]) -> None:
    """20 changes to T0 orders and 10 new orders, as in the measured T1."""
    next_second()
    for oid in made["pending"][:5]:
        sim.checkout(oid)
        steps.writes.append((oid, "processing", "T1 status change"))
    for oid in made["processing"][:5]:
        sim.set_status(oid, "cancelled")
        steps.writes.append((oid, "cancelled", "T1 status change"))
    for oid in made["processing"][5:]:
        sim.refund(oid, sim.order(oid)["total"])
        steps.writes.append((oid, "refunded", "T1 status change"))
    for oid in made["on-hold"][:5]:
        sim.set_status(oid, "processing")
        steps.writes.append((oid, "processing", "T1 status change"))
    for _ in range(5):
        oid = sim.create_order(payment_method="cheque")
        steps.writes.append((oid, "pending", "T1 new order"))
    for _ in range(5):
        oid = sim.create_order(payment_method="cod")
        sim.checkout(oid)
        steps.writes.append((oid, "processing", "T1 new order"))


def check_truth(sim: WooSim, steps: Steps) -> list[str]:
    """Where the store disagrees with the script (must be empty: the script's labels are the
    truth only if every write did what it says)."""
    last: dict[int, str] = {}
    for oid, status, _ in steps.writes:
        last[oid] = status
    snapshot = sim.orders_snapshot()
    return [
        f"order {oid}: script says {want}, store has {snapshot[oid]['status']}"
        for oid, want in last.items()
        if snapshot[oid]["status"] != want
    ]
