"""Render + send throughput of every channel against its loopback fake, and the flash sale.

    python bench/channels.py [--messages 200] [--burst 200]

Part one: each channel renders `--messages` order alerts from the templates (3 line items,
zh-CN, Asia/Shanghai) and sends them one after another to its fake (ChatSim for the robots,
Slack, Telegram, Discord and Twilio; a real aiosmtpd server for email; WebhookSink for the
signed webhook; the Apprise bridge posting json:// to the same sink), each with the options of
its channel contract rig (`pollerd_sim.testing.channel_rigs`; email in plain text, the loopback
SMTP server having no certificate here). Figures per channel:
messages/s (wall) and CPU milliseconds per message (this process: render + HTTP client side;
the fakes run in threads of this process too, so CPU includes their share: an upper bound).
The fakes' rate windows run on a clock that moves 10 s per reading, so no budget interferes.

Part two: `--burst` orders committed at once for ONE WeCom group, delivered by the real
delivery loop on a fake clock (1 s per round) against ChatSim's WeCom, which refuses with 45009
past 20 messages a minute: messages sent, digests, rows sent, the most sends in any 60 s.
Prints one JSON object. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from aiosmtpd.handlers import Sink

from pollerd.channels import channel_class
from pollerd.channels.base import Channel, ChannelContext
from pollerd.config import DeliveryConfig
from pollerd.delivery import Deliverer
from pollerd.model import Event, LineItem
from pollerd.store import open_store
from pollerd_sim.chat import ChatSim
from pollerd_sim.sink import WebhookSink
from pollerd_sim.testing.channel_rigs import CHANNEL_RIGS, Mailbox, Receivers
from pollerd_sim.testing.events import paid_event
from pollerd_sim.testing.smtp import Inbox, smtp_server

AT = datetime(2026, 11, 22, 23, 30, tzinfo=UTC)
ITEMS = tuple(LineItem(f"Mug {i}", 1 + i, "19.90") for i in range(3))


def order_event(n: int) -> Event:
    """Order 10000+n paid, 3 items, alternating USD and EUR: the sample alert of the channel
    suite with a bench's numbers."""
    number = str(10_000 + n)
    return paid_event(
        "王*",
        items=ITEMS,
        email="w***@example.com",
        admin_url=f"https://shop.example.com/wp-admin/post.php?post={number}&action=edit",
        number=number,
        order_id=number,
        currency="USD" if n % 2 else "EUR",
        total="59.70",
        at=AT + timedelta(seconds=n),
        placed=AT,
    )


class StepClock:
    """Seconds that move 10 s at every reading: rate windows never fill."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        self.now += 10.0
        return self.now


async def throughput(kind: str, opts: dict[str, Any], count: int) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        ctx = ChannelContext(kind, opts, http, timezone="Asia/Shanghai", locale="zh-CN")
        channel: Channel = channel_class(kind)(ctx)
        events = [order_event(n) for n in range(count)]
        await channel.send(events[0], channel.render(events[0]))  # connections, caches
        wall, cpu = time.perf_counter(), time.process_time()
        render_cpu = 0.0
        failed = 0
        for event in events:
            started = time.process_time()
            rendered = channel.render(event)
            render_cpu += time.process_time() - started
            result = await channel.send(event, rendered)
            failed += result.kind != "ok"
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        await channel.close()
    return {
        "messages": count,
        "failed": failed,
        "messages_per_s": round(count / wall, 1),
        "cpu_ms_per_message": round(1000 * cpu / count, 3),
        "render_cpu_ms_per_message": round(1000 * render_cpu / count, 3),
    }


def burst(size: int) -> dict[str, Any]:
    """`size` orders at once to one WeCom group through the real delivery loop."""

    class Clock:
        def __init__(self) -> None:
            self.now = time.time() + 3600.0

        def __call__(self) -> float:
            return self.now

    clock = Clock()
    with tempfile.TemporaryDirectory() as tmp, ChatSim(clock=clock) as sim:
        store = open_store(f"sqlite:///{Path(tmp) / 'p.db'}")
        store.init_cursor("acme", AT)
        events = [order_event(n) for n in range(size)]
        store.commit_page("acme", [], [(e, ["wecom"]) for e in events])

        async def run() -> int:
            async with httpx.AsyncClient() as http:
                ctx = ChannelContext("wecom", {"url": sim.endpoint("wecom")}, http)
                channel = channel_class("wecom")(ctx)
                deliverer = Deliverer(
                    store,
                    {"wecom": channel},
                    DeliveryConfig.model_validate({}),
                    clock=clock,
                    monotonic=clock,
                    rng=random.Random(7),
                )
                for rounds in range(3600):
                    await deliverer.run_once()
                    done = store.deliveries(limit=size + 10)
                    if all(r["state"] == "sent" for r in done):
                        return rounds
                    clock.now += 1.0
                return -1

        rounds = asyncio.run(run())
        rows = store.deliveries(limit=size + 10)
        store.close()
        sends = sorted(r.at for r in sim.received("wecom"))
        refused = [a for a in sim.attempts("wecom") if a.answer_json().get("errcode") != 0]
    most = max((sum(1 for t in sends if s <= t < s + 60.0) for s in sends), default=0)
    return {
        "events": size,
        "rows_sent": sum(r["state"] == "sent" for r in rows),
        "messages_sent": len(sends),
        "digests": len({r["digest"] for r in rows} - {None}),
        "single_alerts": sum(r["digest"] is None for r in rows),
        "max_sends_in_any_60s": most,
        "refused_by_wecom": len(refused),
        "fake_seconds_to_drain": rounds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--channels", default="")
    args = parser.parse_args(argv)
    kinds = [
        "wecom",
        "dingtalk",
        "feishu",
        "slack",
        "telegram",
        "discord",
        "sms",
        "email",
        "webhook",
        "apprise",
    ]
    if args.channels:
        kinds = [k for k in args.channels.split(",") if k]
    figures: dict[str, Any] = {}
    with ExitStack() as stack:
        sim = stack.enter_context(ChatSim(clock=StepClock()))
        sink = stack.enter_context(WebhookSink())
        # Plain SMTP, no login; aiosmtpd's Sink keeps nothing: an Inbox that records costs
        # this process 1.5-2 ms of CPU a message (measured), which would count as the
        # channel's. The rig's own Inbox stays empty: only its options are used here.
        port = stack.enter_context(smtp_server(Sink()))
        receivers = Receivers(sim, sink, Mailbox(Inbox(), port))
        for kind in kinds:
            try:
                opts = CHANNEL_RIGS.load(kind)(receivers).options
                figures[kind] = asyncio.run(throughput(kind, opts, args.messages))
            except ImportError as exc:  # apprise is an optional extra
                figures[kind] = {"skipped": str(exc)}
    figures["burst_wecom"] = burst(args.burst)
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
