"""Fault matrix row 9 (research §B.6): a channel outage shorter than the dead-letter horizon.
The receiver first refuses connections (nothing listens on its port), then answers 500, then
recovers, while a real `pollerd run` keeps retrying on a short schedule (`backoff_base`
0.5 s, `backoff_max` 2 s: B.6's 10 + 2 minutes of sim clock in a few seconds).

What must hold: every failure is retried, none dead-lettered early (`dead_after` is 10
minutes); once the receiver is back every event arrives, exactly once, per order in order
(each order's paid alert waits behind its created one); and the attempts follow the
schedule, full jitter (`Deliverer.backoff`): once a row's ceiling has reached `backoff_max`,
each gap between two attempts of one event is drawn from [0, backoff_max], so no gap is
(much) longer and the gaps average about half of it.

The same outage with no back-off (`no_backoff`: a failed row is due again at once) hammers
the receiver in lock-step: the gaps average next to nothing, which the schedule assertion
catches."""

from __future__ import annotations

import itertools
import re
import sqlite3
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pollerd_sim import WebhookSink, WooSim
from pollerd_sim.harness import KEY, SECRET, write_config
from pollerd_sim.testing.faults import Report, check, receipts_of, woo_truth
from pollerd_sim.testing.ports import free_port
from tests.fault.rig import intact, sized

pytestmark = pytest.mark.fault
BASE, CAP = 0.5, 2.0  # backoff_base, backoff_max (seconds)
HEADS_AT_CAP = 3  # after this many failures a row's ceiling is CAP: 0.5 · 2² = 2
LATE = 3.0  # how late a due row may go out on a loaded 2-core machine (the loop's tick, a round)


def until(ready: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll a condition of the outbox or the sink (no event to wait on across processes)."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)


def heads(db: Path) -> list[tuple[int, str, str | None]]:
    """(attempts, state, last error) of every order's first event."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT attempts, state, last_error FROM delivery WHERE event_id LIKE '%:order.created'"
        ).fetchall()
    return [(int(a), str(s), e) for a, s, e in rows]


@dataclass(frozen=True)
class Retry:
    """One failed attempt as the daemon logged it: when, which event, the how-manieth
    attempt, and the back-off it drew (`Deliverer._deliver_one`'s "retry N in X.Xs")."""

    at: float  # the log line's time, seconds
    event_id: str
    attempts: int
    delay: float


RETRY_LINE = re.compile(
    r"^(\S+ \S+) \| INFO +\| delivery (\S+) to hook failed .*; retry (\d+) in ([\d.]+)s"
)


def retries(log: str) -> list[Retry]:
    found = []
    for line in log.splitlines():
        if m := RETRY_LINE.match(line):
            # The daemon's local time; only differences are used (no DST change in a test).
            stamp = datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
            when = stamp.timestamp()
            found.append(Retry(when, m[2], int(m[3]), float(m[4])))
    return found


def ceiling(attempts: int) -> float:
    """`Deliverer.backoff`'s full-jitter ceiling after `attempts` failures."""
    return min(CAP, BASE * 2 ** (attempts - 1))


@dataclass
class Outage:
    report: Report
    retries: list[Retry]
    refused_errors: set[str]
    dead: list[str]


def outage(tmp: Path, daemon_factory: Any, *, orders: int, failpoint: str = "") -> Outage:
    port = free_port()  # nothing listens there yet: connections are refused
    hook = f"http://127.0.0.1:{port}/hook"
    with WooSim(consumer_key=KEY, consumer_secret=SECRET) as sim:
        config = write_config(
            tmp,
            sim.url,
            hook,
            delivery={"backoff_base": f"{BASE}s", "backoff_max": f"{CAP}s", "dead_after": "10m"},
        )
        db = tmp / "pollerd.db"
        for _ in range(orders):
            sim.create_order(payment_method="stripe", set_paid=True)
        truth = woo_truth(sim.history())
        daemon = daemon_factory(config, **({"POLLERD_FAILPOINT": failpoint} if failpoint else {}))
        daemon.start()

        def refused_long_enough() -> bool:
            rows = heads(db)
            return len(rows) == orders and all(a >= HEADS_AT_CAP for a, _, _ in rows)

        until(refused_long_enough, f"every first event refused {HEADS_AT_CAP} times")
        refused = {str(e) for _, _, e in heads(db)}
        with WebhookSink(mode="500", port=port) as sink:
            created = {e for e in truth if e.endswith(":order.created")}

            def failed_thrice() -> bool:
                tries: dict[str | None, int] = {}
                for a in list(sink.attempts):
                    tries[a.webhook_id] = tries.get(a.webhook_id, 0) + 1
                return all(tries.get(e, 0) >= 3 for e in created)

            until(failed_thrice, "every first event answered 500 three times")
            sink.set_mode("ok")
            assert sink.wait_for_ids(set(truth), timeout=60), daemon.output()[-3000:]
            assert daemon.stop() == 0
            receipts = receipts_of(sink.receipts)
        intact(db)
        with sqlite3.connect(db) as conn:
            query = "SELECT event_id FROM delivery WHERE state = 'dead'"
            dead = [str(r[0]) for r in conn.execute(query)]
    return Outage(check(truth, receipts, dead=dead), retries(daemon.output()), refused, dead)


def test_channel_outage_then_recovery_delivers_all_on_schedule(
    tmp_path: Path, daemon_factory: Any
) -> None:
    run = outage(tmp_path, daemon_factory, orders=sized(100))
    report = run.report
    assert not run.dead and not report.dead, run.dead[:5]  # none dead-lettered early
    assert report.ok and not report.duplicated, report.summary()
    assert report.received == report.expected == 2 * sized(100), report.summary()
    # A refused connection is a retryable failure that names where and why.
    assert all("connection refused" in e for e in run.refused_errors), run.refused_errors
    # The schedule, each back-off drawn under its ceiling (0.5, 1, 2, 2... s)...
    assert len(run.retries) >= (HEADS_AT_CAP + 3) * sized(100), len(run.retries)
    over = [r for r in run.retries if r.delay > ceiling(r.attempts) + 0.05]  # logged to 0.1 s
    assert not over, over[:5]
    # ...spread over [0, ceiling] (full jitter: the mean of delay / ceiling is 1/2)...
    spread = statistics.fmean(r.delay / ceiling(r.attempts) for r in run.retries)
    assert 0.4 <= spread <= 0.6, spread
    # ...and each next attempt made when it was due: never before, a little late at most.
    lateness = late(run.retries)
    assert min(lateness) >= -0.15 and max(lateness) <= LATE, (min(lateness), max(lateness))
    print(
        f"row 9: {len(run.retries)} retries, delay/ceiling {spread:.2f}, "
        f"late by {statistics.fmean(lateness):.2f}s on average, {max(lateness):.2f}s at most"
    )


def late(found: list[Retry]) -> list[float]:
    """How long after it was due each logged retry was made (its next failure's log line)."""
    by_event: dict[str, list[Retry]] = {}
    for r in found:
        by_event.setdefault(r.event_id, []).append(r)
    return [
        after.at - (before.at + before.delay)
        for seq in by_event.values()
        for before, after in itertools.pairwise(seq)
    ]


def test_the_outage_test_catches_retries_without_backoff(
    tmp_path: Path, daemon_factory: Any
) -> None:
    run = outage(tmp_path, daemon_factory, orders=20, failpoint="no_backoff")
    # Every retry is due at once: the spread assertion above would fail.
    assert max(r.delay for r in run.retries) == 0.0, run.retries[:5]
    assert len(run.retries) >= (HEADS_AT_CAP + 3) * 20
