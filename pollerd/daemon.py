"""`run` and `once`: wire settings to stores, sources, channels, the scheduler and the outbox.

`run` uses APScheduler 3 (4.0 is not for production): one interval job per store with jitter,
`max_instances=1` (a slow pass is never overlapped by the next) and `coalesce=True` (a stalled
loop runs once, not a burst). SIGTERM/SIGINT stop scheduling, let the running page commit and
the in-flight sends finish, then exit 0, so a clean stop never duplicates a message.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
from loguru import logger

from pollerd import __version__
from pollerd.channels import channel_class
from pollerd.channels.base import Channel, ChannelContext
from pollerd.config import Settings, ShopifyStore, WooCommerceStore
from pollerd.delivery import Deliverer, Round
from pollerd.errors import (
    EXIT_FAILED,
    EXIT_OK,
    ConfigError,
    LockHeld,
    RetryableSourceError,
    SourceError,
)
from pollerd.sources.base import Source
from pollerd.store import StateLock, Store, open_store
from pollerd.sync import PassReport, StoreSync
from pollerd.systemd import notify
from pollerd.templates import templates_for
from pollerd.unsubscribe import UnsubscribeLinks, is_suppressed
from pollerd.web import UnsubscribeServer

STOP_GRACE = 30.0  # seconds a running page and in-flight sends get to finish on SIGTERM


def build_source(cfg: WooCommerceStore | ShopifyStore) -> Source:
    """Sources are imported lazily: a WooCommerce-only fleet never loads the Shopify code."""
    if isinstance(cfg, ShopifyStore):
        if cfg.api == "rest":
            from pollerd.sources.shopify_rest import ShopifyRestSource

            return ShopifyRestSource(cfg)
        from pollerd.sources.shopify_graphql import ShopifyGraphQLSource

        return ShopifyGraphQLSource(cfg)
    from pollerd.sources.woocommerce import WooCommerceSource

    return WooCommerceSource(cfg)


def build_channels(
    settings: Settings, http: httpx.AsyncClient, store: Store | None = None
) -> dict[str, Channel]:
    """With `store`, channels skip recipients who unsubscribed; with `public_url`, they get a
    maker of personal unsubscribe links (pollerd.unsubscribe)."""
    cfg = settings.pollerd
    link = None
    if cfg.public_url and cfg.unsubscribe_secret is not None:
        link = UnsubscribeLinks(cfg.unsubscribe_secret.get(), cfg.public_url).link
    suppressed = functools.partial(is_suppressed, store) if store is not None else None
    templates = templates_for(cfg.templates)
    channels: dict[str, Channel] = {}
    for ch in settings.channels:
        ctx = ChannelContext(
            name=ch.name,
            options=settings.channel_options.get(ch.name),
            http=http,
            timezone=ch.timezone or settings.pollerd.timezone,
            locale=ch.locale or settings.pollerd.locale,
            suppressed=suppressed,
            unsubscribe_link=link,
            templates=templates,
        )
        channels[ch.name] = channel_class(ch.type)(ctx)
    return channels


@dataclass
class Runtime:
    """Everything one process builds from a config."""

    settings: Settings
    store: Store
    http: httpx.AsyncClient
    channels: dict[str, Channel]
    syncs: dict[str, StoreSync]
    deliverer: Deliverer
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    stopping: bool = False

    @classmethod
    def build(cls, settings: Settings, *, only_store: str | None = None) -> Runtime:
        stores = [s for s in settings.stores if s.enabled]
        if only_store is not None:
            stores = [s for s in settings.stores if s.name == only_store]
            if not stores:
                known = ", ".join(s.name for s in settings.stores) or "none"
                raise ConfigError("stores", f"no store named {only_store!r}", f"known: {known}")
        store = open_store(settings.pollerd.database)
        http = httpx.AsyncClient(
            timeout=30.0,
            follow_redirects=False,
            headers={"User-Agent": f"pollerd/{__version__}"},
        )
        channels = build_channels(settings, http, store)
        runtime = cls(
            settings,
            store,
            http,
            channels,
            {},
            Deliverer(store, channels, settings.pollerd.delivery, routes=settings.routes),
        )
        for cfg in stores:
            runtime.syncs[cfg.name] = StoreSync(
                cfg,
                build_source(cfg),
                store,
                settings.routes,
                on_commit=lambda n: runtime.wake.set(),
                stopping=lambda: runtime.stopping,
            )
        return runtime

    async def poll(self, name: str, *, sweep: bool = False) -> PassReport | None:
        """One pass, with every failure logged and recorded; never raises."""
        sync = self.syncs[name]
        started = time.monotonic()
        try:
            report = await sync.poll(sweep=sweep)
        except RetryableSourceError as exc:
            logger.warning("{} (will retry)", exc)
            self.store.record_poll(name, error=str(exc), when=datetime.now(UTC))
            return None
        except SourceError as exc:  # fatal, or an order that breaks the API's contract
            logger.error("{}", exc)
            self.store.record_poll(name, error=str(exc), when=datetime.now(UTC))
            return None
        except Exception as exc:  # noqa: BLE001 - one store's bug must not stop the others
            logger.exception("store {}: unexpected error in a poll pass", name)
            self.store.record_poll(
                name, error=f"{type(exc).__name__}: {exc}", when=datetime.now(UTC)
            )
            return None
        if report.events:
            logger.info(
                "store {}: {} new event(s), {} deliveries ({} orders listed, {:.2f}s)",
                name,
                report.events,
                report.deliveries,
                report.listed,
                time.monotonic() - started,
            )
        return report

    async def aclose(self) -> None:
        for sync in self.syncs.values():
            await sync.source.aclose()
        for channel in self.channels.values():
            await channel.close()
        await self.http.aclose()
        self.store.close()


async def run(settings: Settings, *, on_ready: Callable[[Runtime], None] | None = None) -> int:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    lock = StateLock(settings.state_dir)
    lock.acquire()
    runtime = Runtime.build(settings)
    try:
        web = await start_web(settings, runtime.store)
    except ConfigError:
        await runtime.aclose()
        lock.release()
        raise
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    active: set[asyncio.Task[object]] = set()

    async def poll_job(name: str) -> None:
        if runtime.stopping:
            return
        task = asyncio.current_task()
        assert task is not None
        active.add(task)  # type: ignore[arg-type]
        try:
            await runtime.poll(name)
        except asyncio.CancelledError:
            if not runtime.stopping:
                raise
            # Cancelled past the stop grace (e.g. asleep in a store's back-off): every committed
            # page is safe and the next start re-reads the rest, so this is not an error.
            logger.info("store {}: poll cancelled at shutdown; the next start resumes", name)
        finally:
            active.discard(task)  # type: ignore[arg-type]

    scheduler = AsyncIOScheduler(
        event_loop=loop,
        job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
    )
    now = datetime.now(UTC)
    for name, sync in runtime.syncs.items():
        sync.ensure_cursor()
        interval = sync.cfg.interval.total_seconds()
        scheduler.add_job(
            poll_job,
            "interval",
            seconds=interval,
            jitter=min(interval * 0.1, 5.0),
            args=[name],
            id=name,
            next_run_time=now + timedelta(milliseconds=50),
        )
    scheduler.start()
    delivery_stop = asyncio.Event()
    delivering = asyncio.create_task(runtime.deliverer.run(delivery_stop, runtime.wake))
    names = ", ".join(runtime.syncs) or "no stores"
    logger.info("pollerd {} running: {}; {} channel(s)", __version__, names, len(runtime.channels))
    notify("READY=1", f"STATUS=polling {names}")
    if on_ready is not None:
        on_ready(runtime)
    await stop.wait()

    logger.info("stopping: finishing the current page and in-flight sends")
    notify("STOPPING=1")
    runtime.stopping = True
    scheduler.pause()  # no new passes; a running one stops after its current page
    if active:
        await asyncio.wait(set(active), timeout=STOP_GRACE)
    scheduler.shutdown(wait=False)  # cancels what is still running past the grace
    delivery_stop.set()
    try:
        await asyncio.wait_for(delivering, STOP_GRACE)
    except TimeoutError:
        logger.warning("in-flight sends did not finish in {}s; they will be resent", STOP_GRACE)
    if web is not None:
        await web.close()
    await runtime.aclose()
    lock.release()
    logger.info("stopped cleanly")
    return EXIT_OK


async def start_web(settings: Settings, store: Store) -> UnsubscribeServer | None:
    """The unsubscribe endpoint on `[pollerd] listen`; None when that is not set."""
    cfg = settings.pollerd
    if cfg.public_url and not cfg.listen:
        logger.warning(
            "public_url is set but listen is not: unsubscribe links only work if another "
            "pollerd on this database serves them"
        )
    if not cfg.listen or cfg.unsubscribe_secret is None:
        return None
    web = UnsubscribeServer(
        UnsubscribeLinks(cfg.unsubscribe_secret.get(), cfg.public_url or ""),
        store,
        locale=cfg.locale,
    )
    try:
        await web.start(cfg.listen)
    except OSError as exc:
        fix = "pick a free port, or stop what is using it"
        raise ConfigError("pollerd.listen", f"cannot listen on {cfg.listen}: {exc}", fix) from None
    logger.info("unsubscribe endpoint listening on {}", cfg.listen)
    return web


async def once(settings: Settings, *, only_store: str | None = None, sweep: bool = False) -> int:
    """One pass of every store, then deliver what is due; exit 1 if anything failed."""
    with StateLock(settings.state_dir):
        runtime = Runtime.build(settings, only_store=only_store)
        try:
            failed = False
            for name in runtime.syncs:
                failed |= await runtime.poll(name, sweep=sweep) is None
            result: Round = await runtime.deliverer.drain(deadline=time.monotonic() + 120)
            logger.info(
                "once: {} sent, {} to retry, {} dead, {} held, {} waiting for a rate window",
                result.sent,
                result.retried,
                result.dead,
                result.held,
                result.waiting,
            )
            failed |= bool(result.retried or result.dead or result.held)
        finally:
            await runtime.aclose()
    return EXIT_FAILED if failed else EXIT_OK


async def backfill(
    settings: Settings,
    *,
    store: str,
    since: datetime,
    until: datetime | None,
    notify_channels: bool,
    progress: Callable[[int, int | None], None] | None = None,
) -> tuple[PassReport, Round | None]:
    """Fill history without moving the live bookmark.

    It takes no lock for the reading part: every page is its own idempotent transaction, so it
    can run beside `pollerd run`. With `--notify` it sends the new deliveries itself only when
    no daemon owns the state directory; otherwise the running daemon's outbox loop sends them
    (two senders would race for the same rows).
    """
    runtime = Runtime.build(settings, only_store=store)
    try:
        report = await runtime.syncs[store].backfill(
            since, until, notify=notify_channels, progress=progress
        )
        sent: Round | None = None
        if notify_channels and report.deliveries:
            lock = StateLock(settings.state_dir)
            try:
                lock.acquire()
            except LockHeld:
                logger.info("pollerd run owns the state directory; it will send the alerts")
            else:
                try:
                    sent = await runtime.deliverer.drain(deadline=time.monotonic() + 600)
                finally:
                    lock.release()
        return report, sent
    finally:
        await runtime.aclose()
