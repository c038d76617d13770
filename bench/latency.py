"""Alert latency: from an order change becoming visible in the store to the signed webhook
arriving at the receiver, through a real `pollerd run` polling every second.

    python bench/latency.py [--platform woocommerce|shopify] [--changes 50] [--interval 1s]

Half the changes are new orders, half are payments of earlier ones, spaced at random (0-1.5 s)
so they land at every phase of the poll cycle. Prints one JSON object: p50/p95/p99/max seconds.
Everything runs on 127.0.0.1 (the WooCommerce or Shopify simulator and a webhook sink); the
default interval is the platform's default (WooCommerce 1 s here, Shopify 2 s).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from pollerd_sim import ShopSim, WebhookSink, WooSim
from pollerd_sim.harness import KEY, SECRET, SHOPIFY_TOKEN, Daemon, write_config


class Store:
    """The two simulators behind one "create an unpaid order" / "pay it" interface."""

    def __init__(self, platform: str) -> None:
        self.platform = platform
        self.sim: Any = (
            ShopSim(access_token=SHOPIFY_TOKEN)
            if platform == "shopify"
            else WooSim(consumer_key=KEY, consumer_secret=SECRET, site_timezone="Asia/Shanghai")
        )

    def create(self) -> int:
        if self.platform == "shopify":
            return int(self.sim.create_order(financial="PENDING"))
        return int(self.sim.create_order(payment_method="stripe"))

    def pay(self, oid: int) -> None:
        if self.platform == "shopify":
            self.sim.pay(oid)
        else:
            self.sim.checkout(oid)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--platform", choices=("woocommerce", "shopify"), default="woocommerce")
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--interval", default=None)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    interval = args.interval or ("2s" if args.platform == "shopify" else "1s")
    store = Store(args.platform)
    simulator: AbstractContextManager[Any] = store.sim
    with (
        tempfile.TemporaryDirectory(prefix="pollerd-bench-") as tmp,
        simulator as sim,
        WebhookSink() as sink,
    ):
        config = write_config(
            Path(tmp),
            sim.url,
            sink.url,
            store={"interval": interval, "start_from": "now"},
            platform=args.platform,
        )
        daemon = Daemon(config, Path(tmp))
        daemon.start()
        try:
            changed_at: dict[str, float] = {}  # expected webhook-id → when the change was made
            unpaid: list[int] = []
            for _ in range(args.changes):
                time.sleep(rng.uniform(0.0, 1.5))
                if unpaid and rng.random() < 0.5:
                    oid = unpaid.pop(0)
                    changed_at[f"shop:{oid}:order.paid"] = time.time()
                    store.pay(oid)
                else:
                    before = time.time()
                    oid = store.create()
                    changed_at[f"shop:{oid}:order.created"] = before
                    unpaid.append(oid)
            sink.wait_for_ids(set(changed_at), timeout=60)
            received = {r.webhook_id: r.received_at for r in sink.receipts if r.status == 200}
        finally:
            code = daemon.stop()
    missing = sorted(set(changed_at) - set(received))
    latencies = [received[i] - t for i, t in changed_at.items() if i in received]
    report = {
        "benchmark": "latency",
        "platform": args.platform,
        "interval": interval,
        "changes": len(changed_at),
        "delivered": len(latencies),
        "missing": missing,
        "p50_s": round(statistics.median(latencies), 3),
        "p95_s": round(percentile(latencies, 0.95), 3),
        "p99_s": round(percentile(latencies, 0.99), 3),
        "max_s": round(max(latencies), 3),
        "min_s": round(min(latencies), 3),
        "daemon_exit": code,
    }
    print(json.dumps(report))
    return 0 if not missing and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
