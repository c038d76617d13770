"""Fault matrix row 8 (research §B.6): ties and page drift. Every order of a burst shares one
`date_modified` second (500 in CI, 5,000 nightly: five times the 100-order page, so the overlap
window holds far more than the 3× page size at which §B.4's livelock froze the cursor), and
orders are inserted and updated while pollerd pages through them (WooCommerce has no snapshot:
offset pages are read from the live table, research woocommerce.md §1.11).

What must hold, through real `pollerd once` runs and the checker: the first pass finishes (exit
0) and its bookmark reaches the newest change it listed, a second pass picks up what changed
behind the walk, and then every event the sim's history implies arrived exactly once (lost 0,
duplicates 0), per order in order.

The same burst with the overlap re-applied on every page (`overlap_per_page`) reads the same
first page on every pass: the bookmark stops moving and the checker reports the rest lost."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pollerd_sim import WebhookSink, WooSim
from pollerd_sim.harness import KEY, SECRET, pollerd, pollerd_env, write_config
from pollerd_sim.testing.faults import Report
from pollerd_sim.wc_rest import Reply
from tests.fault.rig import intact, sized, verdict

pytestmark = pytest.mark.fault
PAGE = 100  # pollerd's per_page for WooCommerce (the API's maximum)


class DriftingSim(WooSim):
    """A WooSim that runs `during[page]` just before it answers that page of the fast path's
    window listing (the `_fields` listing of `status=any`, the first time that page is asked
    for): orders change *while* pollerd pages, at the exact moment a real store would change
    them under a walk, with no timing in the test."""

    def __init__(self, during: dict[int, Callable[[], None]]) -> None:
        super().__init__(consumer_key=KEY, consumer_secret=SECRET)
        self.during = dict(during)
        self.listed_pages: list[int] = []

    def handle(
        self, method: str, path: str, query_string: str, headers: dict[str, str], body: bytes
    ) -> Reply:
        query = urllib.parse.parse_qs(query_string)
        if (
            path.endswith("/wc/v3/orders")
            and "date_modified_gmt" in query.get("_fields", [""])[0]
            and query.get("status") == ["any"]
        ):
            page = int(query.get("page", ["1"])[0])
            self.listed_pages.append(page)
            change = self.during.pop(page, None)
            if change is not None:
                change()
        return super().handle(method, path, query_string, headers, body)


@dataclass
class Ties:
    codes: list[int]
    cursors: list[float]  # the bookmark after each run (epoch seconds)
    report: Report
    second: float  # the burst's shared second
    newest: float  # the newest change's second, when the last run started
    pages: list[int]  # window pages asked for, in order, over all runs
    took: list[float]


def ties(tmp: Path, *, burst: int, runs: int = 2, failpoint: str = "") -> Ties:
    sim: DriftingSim
    ids: list[int] = []

    def insert(n: int) -> None:
        for _ in range(n):
            ids.append(sim.create_order(payment_method="stripe", set_paid=True))

    def update(chosen: list[int], status: str) -> None:
        for oid in chosen:
            sim.set_status(oid, status)

    def behind_page_one() -> None:  # page 1 walked, page 2 about to be answered
        insert(burst // 10)  # new ids: they join the end of the window
        update(ids[: burst // 10], "completed")  # behind the walk: the next pass's
        update(ids[burst - burst // 25 : burst], "cancelled")  # ahead of it: this pass's

    def behind_page_three() -> None:
        insert(burst // 10)
        update(ids[PAGE : PAGE + burst // 10], "completed")  # on page 2, walked already

    sim = DriftingSim({2: behind_page_one, 4: behind_page_three})
    with sim, WebhookSink() as sink:
        for i in range(burst):  # half paid, half waiting for payment
            ids.append(sim.create_order(payment_method="stripe", set_paid=i % 2 == 0))
        shared = datetime.now(UTC).replace(microsecond=0)
        sim.set_modified(ids, shared)  # the precondition of orderby=modified drift
        config = write_config(tmp, sim.url, sink.url, store={"start_from": "2020-01-01T00:00:00Z"})
        env = pollerd_env(**({"POLLERD_FAILPOINT": failpoint} if failpoint else {}))
        codes: list[int] = []
        cursors: list[float] = []
        took: list[float] = []
        last: list[tuple[str, float]] | None = None
        newest = shared
        for _ in range(runs):
            newest = max(t.time for t in sim.history())
            began = time.monotonic()
            result = pollerd("once", "--config", str(config), env=env, timeout=120)
            took.append(time.monotonic() - began)
            codes.append(result.returncode)
            assert result.returncode in (0, 1), result.stderr[-2000:]
            last = intact(tmp / "pollerd.db", last)
            cursors.append(last[0][1] if last else 0.0)
        report = verdict(sim, sink)
    return Ties(
        codes,
        cursors,
        report,
        shared.timestamp(),
        newest.replace(microsecond=0).timestamp(),
        sim.listed_pages,
        took,
    )


def test_500_orders_in_one_second_changing_while_paged(tmp_path: Path) -> None:
    burst = sized(500)
    run = ties(tmp_path, burst=burst)
    assert run.codes == [0, 0], run
    # The first pass walked the whole window (inserts included) and met both changes.
    assert run.pages[: burst // PAGE + 2] == list(range(1, burst // PAGE + 3)), run.pages
    # No livelock: the bookmark left the start point for the burst's second or later, and
    # the second pass's reached the newest change there was.
    assert run.cursors[0] >= run.second, run.cursors
    assert run.cursors[1] >= run.newest >= run.cursors[0], (run.cursors, run.newest)
    report = run.report
    assert report.ok and not report.duplicated, report.summary()
    assert report.received == report.expected > 2 * burst, report.summary()
    print(f"row 8: {burst} tied orders, {report.expected} events, runs took {run.took}")


def test_the_ties_test_catches_the_overlap_applied_per_page(tmp_path: Path) -> None:
    burst = 3 * PAGE  # the smallest burst §B.4's livelock froze on
    run = ties(tmp_path, burst=burst, failpoint="overlap_per_page")
    # Every pass reads the same first page: after its first move the bookmark freezes...
    assert run.cursors[0] == run.cursors[1], run.cursors
    assert set(run.pages) == {1}, run.pages
    # ...and what lies beyond that page is never seen: the assertions above would fail.
    assert len(run.report.lost) >= burst - PAGE, run.report.summary()
