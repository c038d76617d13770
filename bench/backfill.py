"""Backfill throughput: `pollerd backfill` over a simulated WooCommerce store of 50,000 orders.

    python bench/backfill.py [--orders 50000] [--notify]

The store is the loopback simulator (real HTTP, `_fields` listing + `include=` fetches, 100 a
page); the backfill is a real `pollerd` subprocess writing a real SQLite file. Prints one JSON
object: wall seconds, orders/s, the subprocess's peak RSS, and the snapshot count it stored
(which must equal the order count).
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pollerd.sim import WebhookSink, WooSim
from pollerd.sim.harness import KEY, ROOT, SECRET, pollerd_env, write_config

STATUSES = ("pending", "processing", "completed", "on-hold", "cancelled", "refunded")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=50_000)
    parser.add_argument("--notify", action="store_true", help="also queue deliveries")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="pollerd-bench-") as tmp,
        WooSim(consumer_key=KEY, consumer_secret=SECRET) as sim,
        WebhookSink() as sink,
    ):
        started = time.perf_counter()
        for n in range(args.orders):
            status = STATUSES[n % len(STATUSES)]
            sim.create_order(status=status, payment_method="stripe", set_paid=status != "pending")
        seeded = time.perf_counter() - started
        config = write_config(Path(tmp), sim.url, sink.url, store={"start_from": "now"})
        command = [
            sys.executable,
            "-m",
            "pollerd",
            "backfill",
            "--config",
            str(config),
            "--store",
            "shop",
            "--since",
            "2020-01-01T00:00:00Z",
            *(["--notify"] if args.notify else []),
        ]
        started = time.perf_counter()
        done = subprocess.run(
            command, env=pollerd_env(), cwd=ROOT, capture_output=True, text=True, check=False
        )
        wall = time.perf_counter() - started
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        with sqlite3.connect(Path(tmp) / "pollerd.db") as db:
            (snapshots,) = db.execute("SELECT count(*) FROM snapshot").fetchone()
            (events,) = db.execute("SELECT count(*) FROM event").fetchone()
        requests = len(sim.request_log)
    report = {
        "benchmark": "backfill",
        "orders": args.orders,
        "seed_s": round(seeded, 2),
        "wall_s": round(wall, 2),
        "orders_per_s": round(args.orders / wall, 1),
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "snapshots": snapshots,
        "events": events,
        "http_requests": requests,
        "exit": done.returncode,
    }
    print(json.dumps(report))
    if done.returncode != 0:
        print(done.stderr[-2000:], file=sys.stderr)
    return 0 if done.returncode == 0 and snapshots == args.orders else 1


if __name__ == "__main__":
    sys.exit(main())
