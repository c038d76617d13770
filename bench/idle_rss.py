"""Resident memory of an idle `pollerd run` with N WooCommerce stores (issue 5's figure).

    python bench/idle_rss.py [--stores 1,10] [--idle 30] [--metrics]

For each N: N simulated WooCommerce stores (one `WooSim` each, on 127.0.0.1), one webhook
channel, the default 10 s interval. The daemon is started as systemd would (a notify socket;
ready at READY=1); once every store has recorded a successful pass in the database the daemon
is left idle for `--idle` seconds (every store polls again meanwhile), then VmRSS and VmHWM are
read from /proc/PID/status. `--metrics` also turns on `metrics_listen` (prometheus-client).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import sqlite3
import sys
import tempfile
import time
from contextlib import ExitStack, closing
from pathlib import Path
from typing import Any

from pollerd import __version__
from pollerd_sim import WebhookSink, WooSim
from pollerd_sim.harness import KEY, SECRET, Daemon, write_config


def store_table(name: str, url: str) -> str:
    return f"""
[[stores]]
name = "{name}"
platform = "woocommerce"
url = "{url}"
consumer_key = "env:TEST_WC_KEY"
consumer_secret = "env:TEST_WC_SECRET"
start_from = "now"
"""


def proc_status(pid: int) -> dict[str, int]:
    """The kB figures of /proc/PID/status (VmRSS, VmHWM, RssAnon, RssFile...)."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if value.strip().endswith(" kB"):
            out[key] = int(value.split()[0])
    return out


def polled(database: Path) -> int:
    """Stores whose last pass succeeded, as the daemon recorded it."""
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)) as db:
        row = db.execute("SELECT COUNT(*) FROM cursor WHERE last_success IS NOT NULL").fetchone()
    return int(row[0])


def measure(stores: int, idle: float, with_metrics: bool) -> dict[str, Any]:
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="pollerd-rss-") as tmp:
        sims = [
            stack.enter_context(WooSim(consumer_key=KEY, consumer_secret=SECRET))
            for _ in range(stores)
        ]
        sink = stack.enter_context(WebhookSink())
        folder = Path(tmp)
        config = write_config(folder, sims[0].url, sink.url, store={"start_from": "now"})
        text = config.read_text(encoding="utf-8")
        # The harness's store polls every second for tests; a real store's default is 10 s.
        text = text.replace('interval = "1s"\n', "").replace("max_requests_per_minute = 6000\n", "")
        if with_metrics:
            with socket.socket() as probe:  # a free port (the config wants a real one)
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            text = text.replace(
                "[pollerd]\n", f'[pollerd]\nmetrics_listen = "127.0.0.1:{port}"\n', 1
            )
        text += "".join(store_table(f"shop{i}", sims[i].url) for i in range(1, stores))
        config.write_text(text, encoding="utf-8")
        daemon = Daemon(config, folder)
        try:
            daemon.start(timeout=60)
            assert daemon.proc is not None
            deadline = time.monotonic() + 60
            while polled(folder / "pollerd.db") < stores:
                if time.monotonic() > deadline:
                    raise SystemExit(f"not every store polled in 60 s:\n{daemon.output()}")
                time.sleep(0.2)
            first = proc_status(daemon.proc.pid)
            time.sleep(idle)
            after = proc_status(daemon.proc.pid)
            assert daemon.stop() == 0
        finally:
            daemon.close()
    return {
        "stores": stores,
        "metrics": with_metrics,
        "rss_mib_after_first_polls": round(first["VmRSS"] / 1024, 1),
        "rss_mib_after_idle": round(after["VmRSS"] / 1024, 1),
        "peak_mib": round(after["VmHWM"] / 1024, 1),
        "anon_mib": round(after.get("RssAnon", 0) / 1024, 1),
        "idle_seconds": idle,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", default="1,10", help="comma-separated store counts")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds idle before reading")
    parser.add_argument("--metrics", action="store_true", help="also serve /metrics")
    args = parser.parse_args()
    runs = [measure(int(n), args.idle, args.metrics) for n in args.stores.split(",")]
    print(
        json.dumps(
            {
                "pollerd": __version__,
                "python": platform.python_version(),
                "runs": runs,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
