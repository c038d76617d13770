"""Console latency with a hanging webhook beside it (issue 11 item 9).

    python bench/slow_channel.py [--events 30] [--every 0.1] [--timeout 10]

`--events` orders are committed one every `--every` seconds, each for two channels: the console
(writing to /dev/null, timed at the write) and a webhook whose receiver accepts the connection
and never answers (a loopback socket that reads nothing), so every send to it ends at its
`--timeout`. The real delivery loop (`Deliverer.run`) sends them. Figures: console latency from
commit to write (avg, p50, max, seconds), events, webhook timeout. Prints one JSON object.
Loopback only; uses only the API the loop had before issue 11, so the same script measures both.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

# The same numbered sample orders and webhook secret as the channel benchmark beside it.
from channels import AT, order_event  # bench/ is on sys.path

from pollerd.channels.base import ChannelContext, SendResult
from pollerd.channels.console import ConsoleChannel
from pollerd.channels.webhook import WebhookChannel
from pollerd.config import DeliveryConfig
from pollerd.delivery import Deliverer
from pollerd.model import Event
from pollerd.store import open_store
from pollerd_sim import HangingReceiver
from pollerd_sim.harness import HOOK_SECRET


class TimedConsole(ConsoleChannel):
    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        self.at: dict[str, float] = {}

    async def send(self, event: Event, rendered: str) -> SendResult:
        with open("/dev/null", "w") as sink, contextlib.redirect_stdout(sink):
            outcome = await super().send(event, rendered)
        self.at.setdefault(event.id, time.monotonic())
        return outcome


async def measure(events: int, every: float, timeout: float, folder: Path) -> dict[str, Any]:
    store = open_store(f"sqlite:///{folder / 'bench.db'}")
    store.init_cursor("acme", AT)
    hang = HangingReceiver()
    try:
        async with httpx.AsyncClient() as http:
            options = {"url": hang.url, "secret": HOOK_SECRET, "timeout": f"{timeout:g}s"}
            hook = WebhookChannel(ChannelContext("hook", options, http))
            console = TimedConsole(ChannelContext("console", {}, http))
            cfg = DeliveryConfig(send_timeout=f"{timeout:g}s", backoff_base="1s")
            deliverer = Deliverer(store, {"hook": hook, "console": console}, cfg)
            stop, wake = asyncio.Event(), asyncio.Event()
            loop = asyncio.create_task(deliverer.run(stop, wake))
            committed: dict[str, float] = {}
            for n in range(events):
                event = order_event(n)
                store.commit_page("acme", [], [(event, ["hook", "console"])])
                committed[event.id] = time.monotonic()
                wake.set()
                await asyncio.sleep(every)
            limit = time.monotonic() + 30 * timeout + 60
            while len(console.at) < events and time.monotonic() < limit:
                await asyncio.sleep(0.01)
            deliverer.draining = True
            stop.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(loop, timeout + 5)
    finally:
        hang.close()
        store.close()
    latencies = [console.at[k] - committed[k] for k in console.at]
    return {
        "events": events,
        "console_delivered": len(latencies),
        "webhook_timeout_s": timeout,
        "console_latency_avg_s": round(statistics.fmean(latencies), 4) if latencies else None,
        "console_latency_p50_s": round(statistics.median(latencies), 4) if latencies else None,
        "console_latency_max_s": round(max(latencies), 4) if latencies else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=30)
    parser.add_argument("--every", type=float, default=0.1)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        result = asyncio.run(measure(args.events, args.every, args.timeout, Path(folder)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
