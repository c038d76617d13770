"""`pollerd demo`: the whole pipeline against embedded simulated stores, no config needed.

A newcomer sees real alerts within seconds: two simulators (real HTTP servers on loopback: a
WooCommerce store with OAuth 1.0a, and a Shopify store with the GraphQL Admin API and its cost
bucket) generate streams of orders, and the real daemon polls both and prints each alert through
the console channel, plus any channel of a config given with `--config`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from loguru import logger

from pollerd.config import Settings, load, minimal
from pollerd.log import setup
from pollerd.model import Order
from pollerd.sources.base import Malformed, Source
from pollerd.store import open_store

if TYPE_CHECKING:
    from pollerd.runtime import Runtime


def demo_settings(
    url: str,
    state_dir: Path,
    *,
    locale: str,
    timezone: str,
    user: Settings | None,
    shopify_url: str | None = None,
) -> Settings:
    channels: list[dict[str, object]] = [{"name": "console", "type": "console"}]
    routes: list[dict[str, object]] = [{"events": ["order.*"], "channels": ["console"]}]
    if user is not None:
        for ch in user.channels:
            if ch.name != "console":
                channels.append(ch.model_dump(exclude_none=True))
        # The user's routes name their real stores ("acme-*") and may skip test orders; the
        # demo's stores are neither, and every demo order is a test. Keep which events go to
        # which channels, and let the demo's stores and test orders through, at any hour (a
        # demo run at night would otherwise show nothing until the quiet hours end).
        quiet = {"quiet_hours", "urgent", "timezone"}
        routes.extend(
            {**r.model_dump(exclude=quiet), "stores": ["*"], "test_orders": "mark"}
            for r in user.routes
        )
    stores = [
        {
            "name": "demo-store",
            "platform": "woocommerce",
            "url": url,
            "consumer_key": "ck_demo",
            "consumer_secret": "cs_demo",
            "interval": "1s",
        }
    ]
    if shopify_url is not None:
        stores.append(
            {
                "name": "demo-shopify",
                "platform": "shopify",
                "shop": "demo-shopify.myshopify.com",
                "base_url": shopify_url,
                "access_token": "shpat_demo",
                "interval": "2s",
            }
        )
    return minimal(
        database=f"sqlite:///{state_dir / 'pollerd.db'}",
        stores=stores,
        channels=channels,
        routes=routes,
        pollerd={"locale": locale, "timezone": timezone},
    )


def mark_tests(source: Source) -> None:
    """Every order of a simulated store is a test: its events say `"test": true`, whatever
    channel they reach (a person on the team chat must not take a demo order for a sale)."""
    fetch = source.fetch

    async def fetch_tests(ids: list[str], *, status: str = "any") -> list[Order | Malformed]:
        return [
            replace(item, test=True) if isinstance(item, Order) else item
            for item in await fetch(ids, status=status)
        ]

    source.fetch = fetch_tests  # type: ignore[method-assign]


def run_demo(
    config: Path | None, *, rate: float, seconds: float | None, locale: str, timezone: str
) -> int:
    from pollerd import daemon
    from pollerd_sim import OrderStream, ShopSim, WooSim
    from pollerd_sim.shop_stream import ShopStream

    user = load(config) if config is not None else None
    setup(level="WARNING")
    with (
        tempfile.TemporaryDirectory(prefix="pollerd-demo-") as tmp,
        WooSim(
            consumer_key="ck_demo",
            consumer_secret="cs_demo",  # noqa: S106 - the embedded simulator's own key
            site_timezone="Asia/Shanghai",
        ) as sim,
        ShopSim(shop="demo-shopify.myshopify.com", access_token="shpat_demo") as shop,  # noqa: S106
    ):
        settings = demo_settings(
            sim.url,
            Path(tmp),
            locale=locale,
            timezone=timezone,
            user=user,
            shopify_url=shop.url,
        )
        print(
            f"pollerd demo: simulated WooCommerce at {sim.url} (OAuth 1.0a over http) and "
            f"Shopify at {shop.url} (GraphQL Admin API), {rate:g} actions per minute each (new "
            "orders and changes to them); alerts appear below. Ctrl-C to stop.",
            flush=True,
        )
        stop = threading.Event()
        seed = int.from_bytes(os.urandom(2), "big")
        woo = OrderStream(sim, seed=seed, orders_per_minute=rate)
        streams: list[OrderStream | ShopStream] = [
            woo,
            ShopStream(shop, seed=seed, orders_per_minute=rate),
        ]
        # A shop has a past: orders placed days ago that change while the demo runs (a bank
        # transfer settling, a cancellation). Their changes alert; their creation does not.
        woo.history()

        def on_ready(runtime: Runtime) -> None:
            # Before any pass has run (run() calls this before it first awaits).
            for sync in runtime.syncs.values():
                mark_tests(sync.source)
            # Orders start after the daemon's first look, so each one is news to it.
            for stream in streams:
                threading.Thread(target=stream.run, args=(stop,), daemon=True).start()
            if seconds is not None:
                timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGTERM))
                timer.daemon = True
                timer.start()

        # A demo's database is new by design: the "new database" warning would only alarm.
        logger.disable("pollerd.store")
        open_store(settings.pollerd.database).close()
        logger.enable("pollerd.store")
        try:
            return asyncio.run(daemon.run(settings, on_ready=on_ready))
        finally:
            stop.set()
            logger.remove()
