"""Backfill throughput: `pollerd backfill` over a simulated store (WooCommerce: 50,000 orders;
Shopify: 100,000, through one bulk export or through pages).

    python bench/backfill.py [--orders 50000] [--notify]
    python bench/backfill.py --platform shopify --mode bulk|pages [--orders 100000]
    python bench/backfill.py ... --profile profile.txt   # where the time goes (pyinstrument)
    python bench/backfill.py ... --budget N   # the backfill's own budget (see below)

Shopify figures add the cost points pollerd spent and the THROTTLED answers it got (goal 0);
`--mode pages` backfills a window under the bulk threshold (7 days), `bulk` one above it.

The store is the loopback simulator (real HTTP, `_fields` listing + `include=` fetches, 100 a
page); the backfill is a real `pollerd` subprocess writing a real SQLite file. Prints one JSON
object: wall seconds, orders/s, the subprocess's peak RSS, and the snapshot count it stored
(which must equal the order count). A bulk run adds `ingest_s`: from the poll that saw the
export complete to the process's exit (download, parse, normalise, diff, commit), which leaves
out the interpreter's start and the time the simulator takes to build the export. A
WooCommerce run adds `api_floor_s`: the same GET requests replayed back to back by a plain
client (the most the API allows), or the requests at `backfill_requests_per_minute` if that is
longer, and `of_api_ceiling`, that time over pollerd's wall time. A Shopify pages run adds the
same two figures, the floor there being the points the shop charged at the backfill's rate
(the restore rate above the floor it leaves in the bucket, and `backfill_max_budget` × the
restore rate for its own allowance, whichever is slower; `shop_floor`), and the same ratio
counted from the backfill's first API request (`first_request_s` after the launch: the
interpreter's start, imports and the database are not the API's time).

`--budget` sets the backfill's own budget: WooCommerce `backfill_requests_per_minute` (default
60000, so that on loopback the store, not the pacer, is the limit), Shopify
`backfill_max_budget` (default the config's). `cpu_s` is the backfill process's CPU time: the
machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import resource
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from pollerd.sources.ratelimit import backfill_keep
from pollerd.sources.shopify.options import ShopifyStore
from pollerd.sources.woocommerce.auth import oauth_params, rfc3986
from pollerd_sim import ShopSim, WebhookSink, WooSim
from pollerd_sim.harness import KEY, SECRET, SHOPIFY_TOKEN, pollerd_env, write_config

STATUSES = ("pending", "processing", "completed", "on-hold", "cancelled", "refunded")
FINANCIAL = ("PENDING", "PAID", "AUTHORIZED", "PAID", "PARTIALLY_REFUNDED", "REFUNDED")


class PeakWatch:
    """The backfill process's own peak RSS: its `VmHWM`, read every 20 ms until it exits.

    Not `getrusage(RUSAGE_CHILDREN).ru_maxrss`, which this script reported before: a child
    spawned by a process is charged that process's resident size at the exec, and this one
    holds the simulator with every order and the export file (234 MiB at 100,000 orders), which
    is what the "206 MiB peak, bulk and paged alike" of issue 15 was."""

    def __init__(self, pid: int) -> None:
        self.kib = 0
        self._status = Path(f"/proc/{pid}/status")
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.wait(0.02):
            try:
                text = self._status.read_text()
            except OSError:
                return  # gone
            for line in text.splitlines():
                if line.startswith("VmHWM:"):
                    self.kib = max(self.kib, int(line.split()[1]))

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def api_floor(site: str, log: list[dict[str, Any]]) -> float:
    """The API's ceiling for this backfill: the very GET requests pollerd made, replayed one
    after another by a plain client that does nothing with the answers (signed anew: a nonce
    is good once). `of_api_ceiling` = this time / pollerd's wall time."""
    with httpx.Client(timeout=60) as http:
        started = time.perf_counter()
        for entry in log:
            if entry["method"] != "GET":
                continue
            query = {k: v[-1] for k, v in entry["params"].items() if not k.startswith("oauth_")}
            url = site + entry["path"]
            query |= oauth_params(
                "GET",
                url,
                query,
                consumer_key=KEY,
                consumer_secret=SECRET,
                timestamp=int(time.time()),
                nonce=secrets.token_hex(16),
            )
            encoded = "&".join(f"{rfc3986(k)}={rfc3986(v)}" for k, v in query.items())
            http.get(f"{url}?{encoded}").raise_for_status()
        return time.perf_counter() - started


def shop_floor(sim: ShopSim, points: float, budget: float, live_share: float) -> float:
    """The least time the shop allows the backfill for `points` at its `budget`, by its two
    rules (`CostBudget`): the bucket above its floor is spent at once and then refills at the
    restore rate; its own allowance (`budget` of the bucket) at once and then at `budget` of
    the restore rate. The slower of the two is the ceiling."""
    size, restore = sim.bucket.size, sim.bucket.restore
    room = (1.0 - backfill_keep(live_share)) * size
    by_bucket = max(0.0, points - room) / restore
    by_allowance = max(0.0, points - budget * size) / (budget * restore)
    return max(by_bucket, by_allowance)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--platform", choices=("woocommerce", "shopify"), default="woocommerce")
    parser.add_argument("--mode", choices=("bulk", "pages"), default="bulk", help="Shopify only")
    parser.add_argument("--orders", type=int, default=None)
    parser.add_argument("--notify", action="store_true", help="also queue deliveries")
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="backfill_requests_per_minute (WooCommerce, default 60000) or backfill_max_budget "
        "(Shopify, default the config's)",
    )
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="run the backfill under pyinstrument (pip install pyinstrument) and write its "
        "text report to FILE; the wall time then includes the profiler's overhead",
    )
    args = parser.parse_args()
    shopify = args.platform == "shopify"
    args.orders = args.orders or (100_000 if shopify else 50_000)
    fields = ShopifyStore.model_fields
    if args.budget is None:
        args.budget = fields["backfill_max_budget"].default if shopify else 60_000
    live_share = float(fields["max_budget"].default)
    budget_key = "backfill_max_budget" if shopify else "backfill_requests_per_minute"
    budget_value = float(args.budget) if shopify else int(args.budget)
    since = "2020-01-01T00:00:00Z"
    if shopify and args.mode == "pages":  # inside the bulk threshold: paged GraphQL
        since = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    simulator = (
        ShopSim(access_token=SHOPIFY_TOKEN)
        if shopify
        else WooSim(consumer_key=KEY, consumer_secret=SECRET)
    )
    with (
        tempfile.TemporaryDirectory(prefix="pollerd-bench-") as tmp,
        simulator as sim,
        WebhookSink() as sink,
    ):
        started = time.perf_counter()
        for n in range(args.orders):
            if shopify:
                sim.create_order(financial=FINANCIAL[n % len(FINANCIAL)])
                continue
            status = STATUSES[n % len(STATUSES)]
            sim.create_order(status=status, payment_method="stripe", set_paid=status != "pending")
        seeded = time.perf_counter() - started
        config = write_config(
            Path(tmp),
            sim.url,
            sink.url,
            store={"start_from": "now", "timeout": "60s", budget_key: budget_value},
            platform=args.platform,
        )
        profiler = (
            ["-m", "pyinstrument", "-r", "text", "--show-all", "-o", args.profile]
            if args.profile
            else []
        )
        command = [
            sys.executable,
            *profiler,
            "-m",
            "pollerd",
            "backfill",
            "--config",
            str(config),
            "--store",
            "shop",
            "--since",
            since,
            *(["--notify"] if args.notify else []),
        ]
        started = time.perf_counter()
        launched = time.monotonic()  # the simulators' request log runs on this clock
        child = subprocess.Popen(
            command,
            env=pollerd_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        peak = PeakWatch(child.pid)
        _, stderr = child.communicate()
        wall = time.perf_counter() - started
        ended = time.monotonic()
        peak.stop()
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        shop_stats = sim.stats() if shopify else {}
        with sqlite3.connect(Path(tmp) / "pollerd.db") as db:
            (snapshots,) = db.execute("SELECT count(*) FROM snapshot").fetchone()
            (events,) = db.execute("SELECT count(*) FROM event").fetchone()
        requests = len(sim.request_log)
        if not shopify:
            log = list(sim.request_log)
            paced = sum(e["method"] == "GET" for e in log) * 60.0 / args.budget
            floor: float | None = max(api_floor(sim.url, log), paced)
        elif args.mode == "pages":
            floor = shop_floor(sim, float(shop_stats["points_spent"]), args.budget, live_share)
        else:
            floor = None
        # Bulk: the last API request is the poll that saw the export complete; what follows
        # (download, parse, normalise, diff, commit) is pollerd's own work, while the wall
        # time also holds the interpreter's start and the simulator building the export.
        bulk = shopify and args.mode == "bulk" and sim.request_log
        ingest = ended - sim.request_log[-1]["t"] if bulk else None
        # Shopify: from the launch to the first API request (interpreter, imports, database).
        first = sim.request_log[0]["t"] - launched if shopify and sim.request_log else None
    report = {
        "benchmark": "backfill",
        "platform": args.platform,
        **({"mode": args.mode} if shopify else {}),
        "orders": args.orders,
        budget_key: budget_value,
        "seed_s": round(seeded, 2),
        "wall_s": round(wall, 2),
        "orders_per_s": round(args.orders / wall, 1),
        **(
            {"ingest_s": round(ingest, 2), "ingest_orders_per_s": round(args.orders / ingest, 1)}
            if ingest
            else {}
        ),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),  # the machine may be shared
        "peak_rss_mib": round(peak.kib / 1024, 1),
        **(
            {"api_floor_s": round(floor, 2), "of_api_ceiling": round(floor / wall, 3)}
            if floor
            else {}
        ),
        **(
            {
                "first_request_s": round(first, 2),
                "of_api_ceiling_from_first_request": round(floor / (wall - first), 3),
            }
            if floor and first is not None and wall > first
            else {}
        ),
        "snapshots": snapshots,
        "events": events,
        "http_requests": requests,
        **(
            {
                "points_spent": shop_stats.get("points_spent"),
                "throttled": shop_stats.get("throttled"),
                "bulk_started": shop_stats.get("bulk_started"),
            }
            if shopify
            else {}
        ),
        "exit": child.returncode,
    }
    print(json.dumps(report))
    if child.returncode != 0:
        print(stderr[-2000:], file=sys.stderr)
    return 0 if child.returncode == 0 and snapshots == args.orders else 1


if __name__ == "__main__":
    sys.exit(main())
