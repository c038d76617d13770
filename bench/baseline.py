"""First-run baseline of an established WooCommerce shop: 20,000 orders placed over two years
(mostly completed long ago; some processing, on-hold and pending in the last days).

    python bench/baseline.py [--orders 20000] [--years 2] [--interval 10s] [--ceiling 120]

A real `pollerd run` subprocess with a brand-new database and `start_from = "now"` polls the
loopback simulator with the shipped defaults (interval 10 s, `max_requests_per_minute = 120`,
`baseline_horizon = "90d"`). Measured from READY until the baseline's progress in the database
says done: wall time, HTTP requests (all of them, and the baseline's own listings and fetches),
the request rate against the store's ceiling, the orders recorded (and how many the horizon
holds by the simulator's ground truth), and the database bytes the baseline added (the file,
vacuumed, with and without its snapshots). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sqlite3
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pollerd.config import parse_duration
from pollerd_sim import WebhookSink, WooSim
from pollerd_sim.harness import KEY, SECRET, Daemon, write_config

HORIZON = timedelta(days=90)


def seed(sim: WooSim, orders: int, years: float, now: datetime, rng: random.Random) -> None:
    """Orders in creation order (ids ascend with time, as in WooCommerce), untouched since."""
    span = timedelta(days=365 * years).total_seconds()
    ages = sorted((rng.uniform(0, span) for _ in range(orders)), reverse=True)
    for age in ages:
        days = age / 86400
        if days < 2:
            mix = (("pending", 15), ("on-hold", 15), ("processing", 40), ("completed", 30))
        elif days < 14:
            mix = (("processing", 10), ("on-hold", 5), ("completed", 75), ("cancelled", 7))
            mix += (("refunded", 3),)
        else:
            mix = (("completed", 88), ("cancelled", 8), ("refunded", 3), ("failed", 1))
        status = rng.choices([s for s, _ in mix], [w for _, w in mix])[0]
        method = rng.choices(("stripe", "bacs", "cod"), (70, 20, 10))[0]
        if status in ("on-hold",):
            method = "bacs"
        sim.create_order(
            status=status, payment_method=method, created_at=now - timedelta(seconds=age)
        )


def baseline_state(db: Path) -> dict[str, object] | None:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'baseline:shop'").fetchone()
    except sqlite3.OperationalError:
        return None
    return json.loads(row[0]) if row else None


def vacuumed_size(db: Path, *, drop_snapshots: bool) -> int:
    copy = db.with_name(f"copy-{drop_snapshots}.db")
    with sqlite3.connect(db) as conn:
        conn.execute(f"VACUUM INTO '{copy}'")
    if drop_snapshots:
        with sqlite3.connect(copy) as conn:
            conn.execute("DELETE FROM snapshot")
        with sqlite3.connect(copy) as conn:
            conn.execute("VACUUM")
    size = copy.stat().st_size
    copy.unlink()
    return size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--years", type=float, default=2.0)
    parser.add_argument("--interval", default="10s")
    parser.add_argument("--ceiling", type=int, default=120, help="max_requests_per_minute")
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    rng = random.Random(11)
    now = datetime.now(UTC)
    with (
        tempfile.TemporaryDirectory(prefix="pollerd-bench-") as tmp,
        WooSim(consumer_key=KEY, consumer_secret=SECRET) as sim,
        WebhookSink() as sink,
    ):
        started = time.perf_counter()
        seed(sim, args.orders, args.years, now, rng)
        seeded = time.perf_counter() - started
        edge = now - HORIZON - timedelta(seconds=1)
        in_horizon = sum(1 for rec in sim.book.orders.values() if rec.modified >= edge)
        store = {
            "start_from": "now",
            "interval": args.interval,
            "max_requests_per_minute": args.ceiling,
            "timeout": "30s",
        }
        config = write_config(Path(tmp), sim.url, sink.url, store=store)
        db = Path(tmp) / "pollerd.db"
        daemon = Daemon(config, Path(tmp))
        try:
            daemon.start()
            ready = time.perf_counter()
            first = len(sim.request_log)
            state = baseline_state(db)
            while not (state and state.get("done")):
                if time.perf_counter() - ready > args.timeout:
                    raise SystemExit(f"baseline not done after {args.timeout}s:\n{daemon.output()}")
                time.sleep(0.25)
                state = baseline_state(db)
            wall = time.perf_counter() - ready
            log = sim.request_log[first:]
            daemon.stop()
        finally:
            daemon.close()
        listings = sum(1 for r in log if "modified_before" in r["params"])
        fetches = sum(1 for r in log if "include" in r["params"])
        with_snaps = vacuumed_size(db, drop_snapshots=False)
        without = vacuumed_size(db, drop_snapshots=True)
        shutil.rmtree(tmp, ignore_errors=True)
    seconds = parse_duration(args.interval).total_seconds()
    report = {
        "benchmark": "baseline",
        "orders": args.orders,
        "years": args.years,
        "interval_s": seconds,
        "ceiling_per_min": args.ceiling,
        "seed_s": round(seeded, 2),
        "orders_modified_in_horizon": in_horizon,
        "recorded": state["recorded"],
        "wall_s": round(wall, 1),
        "requests": len(log),
        "baseline_listings": listings,
        "baseline_fetches": fetches,
        "requests_per_min": round(len(log) / wall * 60, 1),
        "budget_share": round(len(log) / wall * 60 / args.ceiling, 3),
        "db_bytes_added": with_snaps - without,
        "db_bytes_per_order": round((with_snaps - without) / max(1, int(state["recorded"])), 1),  # type: ignore[call-overload]
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
