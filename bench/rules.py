"""Seller rule evaluation per pass: the five rules over a store with 100,000 stored orders
(200 days of history, 500 a day) of which 1,000 are open and unpaid, plus 50 disputes.

    python bench/rules.py [--orders 100000] [--unpaid 1000] [--passes 200] [--busy 50]
                          [--postgres URL]

Facts are written through `commit_page` (500 a page, as a sync would) into a real SQLite file
(or PostgreSQL with `--postgres`, then ANALYZEd as autovacuum would soon after such a load).
Then `pollerd.alerts.evaluate` runs once to raise what the history holds (recorded through
`raise_alerts`, then settled). Then `--passes` steady passes, a pass every 10 s so the odd
unpaid order comes due, each timed twice on the same state: the rules alone (`evaluate`) and
the wired pass (what `Runtime.judge` does after each sync pass: the cursor's start point, then
`judge`: evaluate, raise and record, settle). Passes that raised an alert are reported apart
(they commit it). Then `--busy` passes with a page of 5 new orders written before each
(untimed): a store taking orders every pass, where nothing can be skipped. Prints one JSON
object: milliseconds per pass (median, p95, max), what was raised, and one measurement of the
cancellation rate (done hourly per store, not each pass).
Goal: under 5 ms per pass per store.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from pollerd.alerts import evaluate, judge, raise_alerts, settle
from pollerd.alerts.base import Alert, Facts
from pollerd.alerts.cancellations import CancellationRate
from pollerd.alerts.facts import blind, dispute_fact
from pollerd.config import RouteConfig
from pollerd.config.alerts import (
    CancellationRateAlert,
    DisputeDeadlineAlert,
    HighValueAlert,
    OrderBurstAlert,
    UnpaidTimeoutAlert,
)
from pollerd.model import Dispute
from pollerd.store import OrderFact, Store, open_store

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
CONFIGS = [
    HighValueAlert(thresholds={"CNY": Decimal(5000), "USD": Decimal(700)}),
    UnpaidTimeoutAlert(),
    OrderBurstAlert(),
    CancellationRateAlert(),
    DisputeDeadlineAlert(),
]


def fill(url: str, orders: int, unpaid: int) -> None:
    rng = random.Random(14)
    key = b"bench" * 6 + b"!!"
    store = open_store(url)
    span = timedelta(days=200).total_seconds()
    page: list[OrderFact] = []
    for n in range(1, orders + 1):
        created = NOW - timedelta(seconds=span * (orders - n) / orders)
        buyer = rng.randrange(orders // 2)  # most buyers order once or twice
        digests = {
            "email": blind(key, "email", f"buyer{buyer}@example.test"),
            "phone": blind(key, "phone", f"1555{buyer:07d}"),
            "ip": blind(key, "ip", f"10.{buyer % 250}.{buyer // 250 % 250}.{n % 7}"),
        }
        total = Decimal(rng.choice(("25.00", "99.90", "310.00", "1200.00", "5600.00")))
        page.append(
            OrderFact(
                order_id=str(n),
                created_at=created,
                total=total,
                currency=rng.choice(("USD", "CNY")),
                unpaid=n > orders - unpaid,  # the newest are still open and unpaid
                cancelled=rng.random() < 0.05,
                digests=digests,
            )
        )
        if len(page) == 500:
            store.commit_page("bench", [], [], facts=page)
            page = []
    disputes = [
        dispute_fact(
            Dispute(
                f"d{i}",
                str(i),
                f"#{i}",
                "NEEDS_RESPONSE",
                "CHARGEBACK",
                "80.00",
                "USD",
                "fraudulent",
                NOW - timedelta(days=3),
                NOW + timedelta(hours=i * 5),
            )
        )
        for i in range(1, 51)
    ]
    store.commit_page("bench", [], [], facts=page, disputes=disputes)
    store.close()


def figures(times: list[float]) -> dict[str, float | int]:
    """Median, p95 and max of per-pass milliseconds (and how many passes)."""
    if not times:
        return {"passes": 0}
    times = sorted(times)
    return {
        "passes": len(times),
        "median": round(statistics.median(times), 2),
        "p95": round(times[max(0, math.ceil(len(times) * 0.95) - 1)], 2),
        "max": round(times[-1], 2),
    }


def busy_page(store: Store, n: int, at: float) -> None:
    """A page of 5 orders placed and written at `at` (the bench's clock, which runs ahead of
    the real one that `commit_page` stamps with): one big, one unpaid, and two from a buyer
    who ordered twice on the page before, so every other page completes a burst."""
    key = b"bench" * 6 + b"!!"
    facts, digests = [], []
    for k in range(5):
        order_id, buyer = f"busy-{n}-{k}", f"busy{n // 2}" if k < 2 else f"busy{n}-{k}"
        total = "5600.00" if k == 2 else "99.90"
        facts.append(
            {"store": "bench", "order_id": order_id, "created_at": at, "total": total,
             "amount": float(total), "currency": "CNY", "unpaid": k == 3, "cancelled": False,
             "written_at": at, "number": f"#B{n}-{k}"}
        )  # fmt: skip
        digest = blind(key, "email", f"{buyer}@example.test")
        digests.append(
            {"store": "bench", "order_id": order_id, "kind": "email", "digest": digest,
             "created_at": at, "seen_at": at}
        )  # fmt: skip
    store.put_fact_rows("order_fact", facts)
    store.put_fact_rows("blind_index", digests)


def wired_pass(store: Store, routes: list[RouteConfig], now: float) -> list[Alert]:
    """What `Runtime.judge` does after a store's pass: its start point from the cursor, then
    `judge` (evaluate, raise and record, settle)."""
    cursor = store.cursor("bench")
    start = cursor.start_at.timestamp() if cursor is not None else None
    return judge(store, CONFIGS, routes, "bench", "woocommerce", now, start=start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--unpaid", type=int, default=1_000)
    parser.add_argument("--passes", type=int, default=200)
    parser.add_argument("--busy", type=int, default=50)
    parser.add_argument("--postgres", default=None, help="a postgresql+psycopg:// URL")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.postgres or f"sqlite:///{Path(tmp) / 'rules.db'}"
        started = time.perf_counter()
        fill(url, args.orders, args.unpaid)
        filled = time.perf_counter() - started
        store = open_store(url)
        if args.postgres:  # as autovacuum would soon after a bulk load
            store.analyze()
        routes = [RouteConfig(events=["alert.*", "dispute.*"], channels=["ops"])]
        now = NOW.timestamp()
        t = time.perf_counter()
        first = evaluate(store, CONFIGS, "bench", "woocommerce", now)
        first_ms = (time.perf_counter() - t) * 1000
        raise_alerts(store, first, routes, now=now)
        settle(store, "bench", now)
        rules: list[float] = []
        wired: list[float] = []
        raising: list[float] = []
        later = Counter[str]()
        for i in range(args.passes):  # a pass every 10 s: the odd unpaid order comes due
            at = now + 10 * (i + 1)
            t = time.perf_counter()
            evaluate(store, CONFIGS, "bench", "woocommerce", at)
            rules.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            again = wired_pass(store, routes, at)
            (raising if again else wired).append((time.perf_counter() - t) * 1000)
            later.update(a.type for a in again)
        busy: list[float] = []
        busy_raised = Counter[str]()
        for i in range(args.busy):  # orders arrive between passes
            at = now + 10 * (args.passes + i + 1)
            busy_page(store, i, at - 5)
            t = time.perf_counter()
            again = wired_pass(store, routes, at)
            busy.append((time.perf_counter() - t) * 1000)
            busy_raised.update(a.type for a in again)
        rate = CancellationRate(CONFIGS[3])  # measured hourly, not each pass: timed apart
        t = time.perf_counter()
        rate.figures(Facts(store, "bench", "woocommerce", None, now))
        rate_ms = (time.perf_counter() - t) * 1000
        store.close()
    print(
        json.dumps(
            {
                "backend": "postgresql" if args.postgres else "sqlite",
                "orders": args.orders,
                "open_unpaid": args.unpaid,
                "fill_seconds": round(filled, 1),
                "first_pass_ms": round(first_ms, 2),
                "first_pass_alerts": dict(Counter(a.type for a in first)),
                "steady_rules_ms": figures(rules),
                "steady_pass_ms": figures(wired),
                "raising_pass_ms": figures(raising),
                "steady_pass_alerts": dict(later),
                "busy_pass_ms": figures(busy),
                "busy_pass_alerts": dict(busy_raised),
                "cancellation_rate_measure_ms": round(rate_ms, 2),
                "goal_ms": 5,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
