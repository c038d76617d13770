"""Fault matrix row 10 (research §B.6): the receiver is down past the dead-letter horizon
(`dead_after`, 3 s here). Each order's first event becomes a dead letter and holds the order's
later ones behind it (none lost: the checker counts both apart), and `pollerd deliveries
retry`, run beside the daemon once the receiver is back, sends each exactly once, per order in
order.

The same run with a give-up that marks the row sent (`dead_is_sent`) empties the dead-letter
list: the checker reports every event lost."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from pollerd_sim import WebhookSink, WooSim
from pollerd_sim.harness import KEY, SECRET, pollerd, write_config
from pollerd_sim.testing.faults import Report, check, receipts_of, woo_truth
from tests.fault.rig import intact, sized, verdict

pytestmark = pytest.mark.fault


def settled(db: Path, orders: int) -> bool:
    """Every order's first event has given up (dead, or whatever a broken variant made it)."""
    with sqlite3.connect(db) as conn:
        query = (
            "SELECT COUNT(*) FROM delivery WHERE event_id LIKE '%:order.created' "
            "AND state != 'pending'"
        )
        return int(conn.execute(query).fetchone()[0]) == orders


def held(db: Path) -> list[str]:
    """Pending rows: an order's later events, held behind its dead letter until the retry."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT event_id FROM delivery WHERE state = 'pending'").fetchall()
    return [str(r[0]) for r in rows]


def outage(tmp: Path, factory: Any, *, failpoint: str = "") -> tuple[Report, Report | None]:
    """The checker's report once the outage is over (dead letters apart), and after the retry
    (None when there was nothing to retry)."""
    with WooSim(consumer_key=KEY, consumer_secret=SECRET) as sim, WebhookSink() as sink:
        config = write_config(
            tmp, sim.url, sink.url, store={"start_from": "now"}, delivery={"dead_after": "3s"}
        )
        db = tmp / "pollerd.db"
        daemon = factory(config, **({"POLLERD_FAILPOINT": failpoint} if failpoint else {}))
        sink.set_mode("down")
        daemon.start()
        orders = sized(50)
        for _ in range(orders):
            sim.create_order(payment_method="stripe", set_paid=True)
        truth = woo_truth(sim.history())
        deadline = time.monotonic() + 60
        while not settled(db, orders):  # polling the outbox itself until the horizon passed
            assert time.monotonic() < deadline, "deliveries never gave up"
            time.sleep(0.1)
        listed = pollerd("deliveries", "list", "--dead", "--json", "--config", str(config))
        dead = [row["event_id"] for row in json.loads(listed.stdout)]
        parked = held(db)
        assert all(e.endswith(":order.paid") for e in parked), parked
        during = check(truth, receipts_of(sink.receipts), dead=dead + parked)
        sink.set_mode("ok")
        after = None
        if dead:
            retried = pollerd("deliveries", "retry", "--config", str(config))
            assert retried.returncode == 0, retried.stderr
            # A broken variant may never send some of them: the checker says which.
            sink.wait_for_ids(set(truth), timeout=10 if failpoint else 60)
            after = verdict(sim, sink)
        assert daemon.stop() == 0
        intact(db)
        return during, after


def test_long_outage_dead_letters_then_retry_sends_each_once(
    tmp_path: Path, daemon_factory: Any
) -> None:
    during, after = outage(tmp_path, daemon_factory)
    assert not during.lost and during.received == 0, during.summary()
    assert len(during.dead) == during.expected == 2 * sized(50), during.summary()
    assert after is not None, "nothing was dead-lettered"
    assert after.ok and not after.duplicated, after.summary()


def test_the_outage_test_catches_a_give_up_marked_sent(tmp_path: Path, daemon_factory: Any) -> None:
    during, after = outage(tmp_path, daemon_factory, failpoint="dead_is_sent")
    assert len(during.lost) >= sized(50), during.summary()
    # What gave up later (a paid event dead-lettered behind no dead letter) may be retried;
    # the first events marked sent never are.
    assert after is None or len(after.lost) >= sized(50), after.summary()
