"""Idle API budget: what a real `pollerd run` spends on a Shopify store where nothing happens.

    python bench/shopify_budget.py [--seconds 60] [--interval 2s]

The shop has 200 orders, none changed in the last hour. The fast path probes the newest
`updatedAt` every interval and walks the overlap window only when something moved (or once a
minute); deletion and dispute feeds run on slower clocks. Measured after a 5 s warm-up (the
first pass records the baseline). Prints one
JSON object: cost points spent, as a fraction of the Standard plan's 100 points/s restore rate
(goal <= 5 %), plus requests and THROTTLED answers. Loopback only (the Shopify simulator).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pollerd_sim import ShopSim, WebhookSink
from pollerd_sim.harness import SHOPIFY_TOKEN, Daemon, write_config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--interval", default="2s")
    parser.add_argument("--orders", type=int, default=200, help="existing orders (baseline)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="pollerd-bench-") as tmp,
        ShopSim(access_token=SHOPIFY_TOKEN, bucket=2000, restore=100) as sim,
        WebhookSink() as sink,
    ):
        ids = [sim.create_order(financial="PAID") for _ in range(args.orders)]
        # An idle shop: its orders exist, but none changed in the last hour.
        sim.set_updated(ids, datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1))
        config = write_config(
            Path(tmp),
            sim.url,
            sink.url,
            store={"interval": args.interval, "start_from": "now"},
            platform="shopify",
        )
        daemon = Daemon(config, Path(tmp))
        daemon.start()
        time.sleep(args.warmup)  # the first pass records the baseline; measure what follows
        before = sim.stats()
        first_entry = len(sim.request_log)
        started = time.monotonic()
        time.sleep(args.seconds)  # the measurement window itself, not a synchronisation
        elapsed = time.monotonic() - started
        after = sim.stats()
        by_query: dict[str, int] = {}
        for entry in sim.request_log[first_entry:]:
            name = "+".join(entry.get("fields") or [entry.get("query_kind", "?")])
            by_query[name] = by_query.get(name, 0) + int(entry.get("actual") or 0)
        code = daemon.stop()
    spent = (after.get("points_spent") or 0) - (before.get("points_spent") or 0)
    requests = (after.get("requests") or 0) - (before.get("requests") or 0)
    report = {
        "benchmark": "shopify_idle_budget",
        "interval": args.interval,
        "seconds": round(elapsed, 1),
        "points_spent": spent,
        "points_per_s": round(spent / elapsed, 3),
        "share_of_100_per_s": round(spent / elapsed / 100, 4),
        "requests": requests,
        "throttled": (after.get("throttled") or 0) - (before.get("throttled") or 0),
        "points_by_query": by_query,
        "alerts": len(sink.receipts),
        "daemon_exit": code,
    }
    print(json.dumps(report))
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
