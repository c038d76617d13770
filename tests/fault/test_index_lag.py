"""Fault matrix row 7 (research §B.6): Shopify's `updated_at` search index lags. Every change
reaches the index after a lag drawn uniformly from 0 to half the overlap (`ShopSim(index_lag=
(low, high))`), and about 1 % of them only after three overlaps (`ShopSim.lagging`): new orders
never changed again, and payments of orders pollerd announced long before.

What must hold: the fast path alone delivers every event except exactly those the
beyond-overlap changes prove (the overlap absorbs every lag shorter than itself); the sweep
(`pollerd once --sweep`, created_at: a second access path) then finds those, so nothing is
lost and nothing repeated; and the late events the store records (`event.late`: what
`pollerd status` reports as `late_events` and `pollerd_late_events_total` counts in the process
that swept) are exactly the beyond-overlap changes' events, one each.

The same load without the overlap (`no_overlap`: the fast path reads from the bookmark), with
no change beyond the overlap and lags up to 2 s, misses changes the index showed a second or
two late, which the sweep then counts late (7–12 a run where the count must be 0), which
proves the exact count can fail. The index is the largest bucket seen (20,000 points at
1,000/s): the budget must not slow the fast path here, that is row 6."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pollerd_sim import ShopSim, WebhookSink
from pollerd_sim.harness import SHOPIFY_TOKEN, write_config
from pollerd_sim.testing.faults import Report, check, receipts_of, shop_truth
from tests.fault.rig import clean, intact, sized

pytestmark = pytest.mark.fault
OVERLAP = 2.0  # seconds (the smallest pollerd accepts)
PACE = 0.05  # seconds between new orders: 20 a second
EVERY = 50  # one beyond-overlap change in this many orders
AGE = 80  # a beyond-overlap payment is of the order created this many orders earlier (4 s)


@dataclass
class Run:
    report: Report
    beyond: list[str]  # the events the beyond-overlap changes prove
    missed: set[str]  # events the fast path had not delivered before the sweep
    late: set[str]  # events the store marks late (a sweep's finds the fast path missed)


def lagged(
    tmp: Path, factory: Any, *, failpoint: str = "", overlap: float = OVERLAP, beyond: bool = True
) -> Run:
    """The run; `beyond=False` makes no beyond-overlap change (the self-test's)."""
    with (
        # The largest bucket seen (20,000 at 1,000/s): the budget must not slow the fast path
        # here (row 6's subject), or its bookmark would trail and catch late changes.
        ShopSim(
            access_token=SHOPIFY_TOKEN,
            index_lag=(0.0, overlap / 2),
            bucket=20000,
            restore=1000,
            seed=7,
        ) as sim,
        WebhookSink() as sink,
    ):
        store = {"overlap": f"{overlap:g}s", "interval": "1s", "start_from": "now"}
        config = write_config(tmp, sim.url, sink.url, platform="shopify", store=store)
        daemon = factory(config, **({"POLLERD_FAILPOINT": failpoint} if failpoint else {}))
        daemon.start()
        ids: list[int] = []
        last_beyond = time.monotonic()
        for i in range(sized(2 * EVERY)):
            if beyond and i % EVERY == EVERY // 2 - 5:  # indexed only after 3 overlaps
                with sim.lagging(3 * overlap):
                    ids.append(sim.create_order(financial="PENDING"))
                last_beyond = time.monotonic()
            else:
                ids.append(sim.create_order(financial="PENDING"))
            # Orders 1, 4, 7... are paid (not a lagged new one).
            if i % 3 == 2 and not (beyond and (i - 1) % EVERY == EVERY // 2 - 5):
                sim.pay(ids[i - 1])
            if beyond and i % (2 * EVERY) == AGE:
                # A payment of an old order (never paid, never lagged) whose creation pollerd
                # announced: only its payment is late.
                old = ids[(i - AGE) - (i - AGE) % 3]
                assert sink.wait_for_ids({f"shop:{old}:order.created"}, timeout=30)
                with sim.lagging(3 * overlap):
                    sim.pay(old)
                last_beyond = time.monotonic()
            time.sleep(PACE)  # the load's pace, not a synchronisation
        # Keep changing orders until the beyond-overlap changes are indexed and the bookmark
        # has moved past them by more than the overlap.
        while beyond and time.monotonic() < last_beyond + 5 * overlap:
            last = sim.create_order(financial="PAID")
            time.sleep(0.25)  # the load's pace
        last = sim.create_order(financial="PAID")
        history = sim.history()
        truth = shop_truth(history)
        beyond = [  # what each beyond-overlap change newly proved, in the whole history
            e
            for k, change in enumerate(history)
            if change.lag > overlap
            for e in shop_truth(history[: k + 1])
            if e not in shop_truth(history[:k])
        ]
        on_time = set(truth) - set(beyond)
        # The newest order's events say the fast path has read to the end (an order that
        # sorts last is found with or without an overlap); by then the rest are in.
        assert sink.wait_for_ids({f"shop:{last}:order.created"}, timeout=60)
        sink.wait_for_ids(on_time, timeout=0 if failpoint else 10)
        missed = set(truth) - {r.webhook_id for r in sink.receipts}
        assert daemon.stop() == 0
        intact(tmp / "pollerd.db")
        clean("once", "--sweep", "--config", str(config))
        assert sink.wait_for_ids(set(truth), timeout=30)
        with sqlite3.connect(tmp / "pollerd.db") as db:
            # What `Store.late_events` counts (`pollerd status`'s late_events).
            late = {str(row[0]) for row in db.execute("SELECT id FROM event WHERE late")}
        return Run(check(truth, receipts_of(sink.receipts)), beyond, missed, late)


def test_index_lag_fast_path_and_sweep_lose_nothing(tmp_path: Path, daemon_factory: Any) -> None:
    run = lagged(tmp_path, daemon_factory)
    assert run.report.ok and not run.report.duplicated, run.report.summary()
    # Each beyond-overlap change proves one event: 2 new orders and 1 payment (CI size).
    assert len(run.beyond) == sized(3), run.beyond
    assert run.missed == set(run.beyond), f"fast path missed {sorted(run.missed)[:5]}"
    assert run.late == set(run.beyond)


def test_the_lag_test_catches_a_missing_overlap(tmp_path: Path, daemon_factory: Any) -> None:
    # No change beyond the overlap, and lags up to 2 s (so more of them cross a second).
    run = lagged(tmp_path, daemon_factory, failpoint="no_overlap", overlap=4.0, beyond=False)
    assert not run.report.lost, run.report.summary()  # the sweep still finds them
    # Changes the index showed within the overlap are counted late: the equality above fails.
    assert not run.beyond and run.late, sorted(run.late)
