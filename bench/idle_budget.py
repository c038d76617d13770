"""Idle polling cost: requests and bytes a real `pollerd run` spends on a WooCommerce store where
nothing happens, per hour.

    python bench/idle_budget.py [--platform woocommerce] [--minutes 2] [--interval 1s] [--recent 0]

The store has 200 orders, none changed in the last hour. After a warm-up (the first pass and the
first-run baseline), the simulator's own request log is read for `--minutes`; the figures are
extrapolated to an hour. With `--recent N`, the last N of those orders changed a minute before
pollerd started (a real store just after a busy spell): the walk due once a minute re-lists the
whole overlap, ceil(N / 100) listing pages instead of one (a real WooCommerce 10.0.2 with ~420
such orders: 659 requests an hour at 10 s, counted at its PHP access log). Requests are split
by what they were for: the probe (`per_page=1`, every status named), the window walk
(`status=any`), the trash listing (`status=trash`), fetches (`include=`) and anything else.
Bytes are what the simulator wrote back (status line, headers, body); it sends WordPress's own
headers, and a real idle answer measured the same (~550 bytes at PHP, plus the web server's
`Date` and `Connection`). Prints one JSON object.
Shopify's twin is `bench/shopify_budget.py` (cost points rather than requests).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pollerd_sim import WebhookSink, WooSim
from pollerd_sim.harness import KEY, SECRET, Daemon, write_config


def kind(entry: dict[str, Any]) -> str:
    """What a logged request was for, from its query (see the module docstring)."""
    params = entry.get("params") or {}
    if entry.get("method") != "GET":
        return str(entry.get("method"))
    if "include" in params:
        return "fetch"
    if params.get("per_page") == ["1"] and "trash," in ",".join(params.get("status") or []):
        return "probe"  # every status named, trash included
    if "modified_after" in params:
        return "trash" if params.get("status") == ["trash"] else "window"
    return "other"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--platform", choices=["woocommerce"], default="woocommerce")
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--interval", default="1s")
    parser.add_argument("--orders", type=int, default=200, help="existing orders")
    parser.add_argument(
        "--recent", type=int, default=0, help="of those, changed a minute before the start"
    )
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="pollerd-bench-") as tmp,
        WooSim(consumer_key=KEY, consumer_secret=SECRET) as sim,
        WebhookSink() as sink,
    ):
        ids = [sim.create_order(status="processing", set_paid=True) for _ in range(args.orders)]
        # An idle store: its orders exist, but none changed in the last hour.
        now = datetime.now(UTC).replace(microsecond=0)
        old, recent = ids[: len(ids) - args.recent], ids[len(ids) - args.recent :]
        sim.set_modified(old, now - timedelta(hours=1))
        # Inside the overlap (default 5 min) of the bookmark they set: re-listed once a minute.
        sim.set_modified(recent, now - timedelta(minutes=1))
        config = write_config(
            Path(tmp),
            sim.url,
            sink.url,
            store={"interval": args.interval, "start_from": "now"},
        )
        daemon = Daemon(config, Path(tmp))
        daemon.start()
        time.sleep(args.warmup)  # the first pass and the baseline; measure what follows
        first_entry = len(sim.request_log)
        started = time.monotonic()
        time.sleep(args.minutes * 60)  # the measurement window itself, not a synchronisation
        elapsed = time.monotonic() - started
        window = list(sim.request_log[first_entry:])
        code = daemon.stop()
    per_hour = 3600 / elapsed
    by_kind: dict[str, dict[str, int]] = {}
    for entry in window:
        slot = by_kind.setdefault(kind(entry), {"requests": 0, "bytes": 0})
        slot["requests"] += 1
        slot["bytes"] += int(entry.get("bytes") or 0)
    requests = len(window)
    sent = sum(int(e.get("bytes") or 0) for e in window)
    report = {
        "benchmark": "idle_budget",
        "platform": args.platform,
        "interval": args.interval,
        "recent": args.recent,
        "seconds": round(elapsed, 1),
        "requests": requests,
        "bytes": sent,
        "requests_per_hour": round(requests * per_hour),
        "bytes_per_hour": round(sent * per_hour),
        "by_kind": by_kind,
        "errors": sum(1 for e in window if e.get("status") != 200),
        "alerts": len(sink.receipts),
        "daemon_exit": code,
    }
    print(json.dumps(report))
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
