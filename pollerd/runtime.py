"""What one pollerd process builds from a config, and the two commands that run it once.

`Runtime` holds the store, the HTTP client, the channels, one `StoreSync` per store and the
`Deliverer`; the factories here (`build_source`, `build_channels`, `start_web`) are the only
place a config turns into objects, so `run` (`pollerd.daemon.Service`), `once`, `backfill`,
`status`, `check` and `demo` all build the same things the same way.

`once` is one pass of every store, then a drain of the outbox; `backfill` fills history without
moving the live bookmark. Both stop on SIGTERM/SIGINT as `run` does (`StopSignals`): the page
and the sends in flight finish and are recorded, a second signal forces the exit.

A reload (`pollerd.reload`) changes a running `Runtime` only through its own methods
(`reconfigure`, `retire`, `adopt`), which pass the change on to the objects that own the state
(`Deliverer.reconfigure`, `StoreSync.reroute`, `StoreSync.retire`).
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
from loguru import logger

from pollerd import __version__
from pollerd.alerts.facts import blind_key
from pollerd.alerts.reports import send_reports
from pollerd.alerts.seller import applies, judge
from pollerd.alerts.store import REMIND_EVERY, StoreWatch
from pollerd.backfill import fill
from pollerd.channels import channel_class
from pollerd.channels.base import Channel, ChannelContext
from pollerd.config import Settings, StoreConfig
from pollerd.delivery import Deliverer, Round
from pollerd.errors import (
    EXIT_FAILED,
    EXIT_OK,
    BlockedSourceError,
    ConfigError,
    LockHeld,
    PermanentSourceError,
    RetryableSourceError,
    SourceError,
)
from pollerd.sources import platform
from pollerd.sources.base import Source
from pollerd.sources.ratelimit import Waits
from pollerd.store import StateLock, Store, fault, open_store
from pollerd.sync import StoreSync
from pollerd.templates import templates_for
from pollerd.unsubscribe import UnsubscribeLinks, is_suppressed
from pollerd.walk import PassReport
from pollerd.web.unsubscribe import UnsubscribeServer


def build_source(
    cfg: StoreConfig,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Source:
    """The source of the store's platform plugin (`pollerd.sources`), whose client is imported
    only now: a fleet without that platform never loads it. `sleep` is every pacing/budget
    wait of the source (the daemon's: `Waits.sleep`)."""
    return platform(cfg.platform).build(cfg, sleep=sleep)


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


class StopSignals:
    """SIGTERM and SIGINT for `run` and `once`: the first asks for a clean stop (`on_stop`); a
    second forces the exit at once, as most daemons do, because a person pressing Ctrl-C twice
    will not wait out a hung receiver's send timeout. What a forced exit cuts is safe, as after
    `kill -9`: every committed page stays, and a send not yet recorded is resent with the same
    idempotency key."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, on_stop: Callable[[], None]) -> None:
        self.on_stop = on_stop
        self.requested = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self.SIGNALS:
            loop.add_signal_handler(sig, self._received, sig)
        self._loop = loop

    def remove(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            for sig in self.SIGNALS:
                self._loop.remove_signal_handler(sig)
        self._loop = None

    def _received(self, sig: signal.Signals) -> None:
        if not self.requested:
            self.requested = True
            self.on_stop()
            return
        logger.warning(
            "second {}: forced exit now; a send not yet recorded is resent with the same "
            "idempotency key at the next start",
            sig.name,
        )
        # Die of the signal itself (not exit 0/1): the shell and systemd see what happened.
        signal.signal(sig, signal.SIG_DFL)
        signal.raise_signal(sig)
        os._exit(128 + sig)  # only reached if the signal did not end the process


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
    waits: Waits = field(default_factory=Waits)  # the sources' sleeps, which a stop cuts short
    watch: StoreWatch = field(init=False)  # failure episodes, store alerts and back-off
    backs_off: bool = False  # `run` skips passes while a store backs off; `once` cannot
    blind: bytes | None = None  # the blind index key, derived once (`alerts.facts.blind_key`)
    polled: set[str] = field(default_factory=set)  # stores with a pass ended in this process
    report_error: str | None = None  # the last failure of `report`, logged once

    def __post_init__(self) -> None:
        self.watch = StoreWatch(
            self.store,
            failing_after=lambda: self.settings.pollerd.store_failing_after,
            backoff_max=lambda: self.settings.pollerd.store_backoff_max,
            routes=lambda: self.settings.routes,
            on_commit=lambda n: self.wake.set(),
        )

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        only_store: str | None = None,
    ) -> Runtime:
        stores = [s for s in settings.stores if s.enabled]
        if only_store is not None:
            stores = [s for s in settings.stores if s.name == only_store]
            if not stores:
                known = ", ".join(s.name for s in settings.stores) or "none"
                raise ConfigError("stores", f"no store named {only_store!r}", f"known: {known}")
        store = open_store(settings.pollerd.database, pii_key=settings.pollerd.pii_key)
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
        runtime.blind = blind_key(store, settings.pollerd.pii_key)
        for cfg in stores:
            runtime.syncs[cfg.name] = runtime.make_sync(cfg, settings)
        return runtime

    def make_sync(self, cfg: StoreConfig, settings: Settings) -> StoreSync:
        """A store's sync with a fresh source (start-up, and a reload adding or changing it)."""
        return StoreSync(
            cfg,
            build_source(cfg, sleep=self.waits.sleep),
            self.store,
            settings.routes,
            on_commit=lambda n: self.wake.set(),
            stopping=lambda: self.stopping,
            blind=self.blind,
        )

    def stop(self) -> None:
        """SIGTERM/SIGINT: passes stop after the page in flight (or at once when asleep in a
        wait), no new send starts; the sends in flight finish and are recorded."""
        self.stopping = True
        self.deliverer.draining = True
        self.waits.interrupt()

    async def poll(self, name: str, *, sweep: bool = False) -> PassReport | None:
        """One pass, with every failure logged and recorded; never raises."""
        report, _ = await self.poll_pass(self.syncs[name], sweep=sweep)
        return report

    async def poll_pass(
        self, sync: StoreSync, *, sweep: bool = False
    ) -> tuple[PassReport | None, str | None]:
        """One pass → (report, None), or (None, why it failed) with the failure logged and
        recorded on the store's cursor; raises only CancelledError. Every log line of the
        pass carries `store` (journald `STORE=`)."""
        with logger.contextualize(store=sync.name):
            try:
                return await self._poll_pass(sync, sweep=sweep)
            finally:
                self.polled.add(sync.name)

    async def _poll_pass(
        self, sync: StoreSync, *, sweep: bool = False
    ) -> tuple[PassReport | None, str | None]:
        name = sync.name
        started = time.monotonic()
        try:
            report = await sync.poll(sweep=sweep)
        except (PermanentSourceError, BlockedSourceError) as exc:  # only a person can fix it
            error = str(exc)
            self._failed(sync, exc, fatal=True)
        except RetryableSourceError as exc:
            logger.warning("{} (will retry)", exc)
            error = str(exc)
            self._failed(sync, exc, fatal=False)
        except SourceError as exc:  # e.g. a listing row that breaks the API's contract
            logger.error("{}", exc)
            error = str(exc)
            self._failed(sync, exc, fatal=False)
        except Exception as exc:  # noqa: BLE001 - one store's bug must not stop the others
            if fault.handled(self.store, exc) is not None:
                # A full disk / read-only database: `Trouble` says so once a minute; recording
                # the failed pass would fail the same way, and nothing could be lost meanwhile
                # (the cursor did not move).
                return None, str(fault.trouble(self.store).error)
            logger.exception("store {}: unexpected error in a poll pass", name)
            error = f"{type(exc).__name__}: {exc}"
            self._failed(sync, exc, fatal=False)
        else:
            self._succeeded(sync)
            if not report.stopped:
                self.judge(sync)
            if report.events:
                logger.info(
                    "store {}: {} new event(s), {} deliveries ({} orders listed, {:.2f}s)",
                    name,
                    report.events,
                    report.deliveries,
                    report.listed,
                    time.monotonic() - started,
                )
            return report, None
        try:
            budget = sync.source.budget_used()
            self.store.record_poll(name, error=error, when=datetime.now(UTC), budget=budget)
        except Exception as exc:  # noqa: BLE001 - the database itself failing is logged, not raised
            if fault.handled(self.store, exc) is None:
                logger.exception("store {}: cannot record the failed pass", name)
        return None, error

    def _failed(self, sync: StoreSync, exc: Exception, *, fatal: bool) -> None:
        """Count the failure towards the store's episode (alert.store_failing once it lasts);
        log an error a person must fix once per episode, again only when it changes or as a
        reminder, and back off (`pollerd.alerts.store`)."""
        error = str(exc) or type(exc).__name__
        try:
            loud, ep, wait = self.watch.failed(
                sync.name,
                sync.source.platform,
                error,
                fatal=fatal,
                interval=sync.cfg.interval.total_seconds(),
            )
        except Exception as db_exc:  # noqa: BLE001 - the database failing too: log the store's error
            if fault.handled(self.store, db_exc) is None:
                logger.exception("store {}: cannot record the failed pass", sync.name)
            if fatal:
                logger.error("{}", exc)
            return
        if not fatal:
            return
        since = datetime.fromtimestamp(ep.since, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        retry = f"next try in {wait:.0f}s" if self.backs_off else "retried at the next run"
        if loud:
            logger.error("{} (failing since {}; {})", exc, since, retry)
        else:
            logger.info(
                "store {}: still failing since {} ({} failed passes; {}); the error is logged "
                "again when it changes or after {:g} min",
                sync.name,
                since,
                ep.failures,
                retry,
                REMIND_EVERY / 60,
            )

    def judge(self, sync: StoreSync) -> None:
        """The store's seller rules after its pass (`pollerd.alerts.seller`), with the
        `[[alerts]]` of the settings in force (a reload's take effect at the next pass).
        Nothing at all when no `[[alerts]]` table applies to the store. A rule that fails is
        logged and retried at the next pass: it never fails the pass, whose pages are
        committed (the rules read only what is stored, so nothing is lost meanwhile)."""
        alerts = self.settings.alerts
        if not any(applies(config, sync.name) for config in alerts):
            return
        try:
            cursor = self.store.cursor(sync.name)
            judge(
                self.store,
                alerts,
                self.settings.routes,
                sync.name,
                sync.source.platform,
                time.time(),
                on_commit=lambda n: self.wake.set(),
                start=cursor.start_at.timestamp() if cursor is not None else None,
            )
        except Exception as exc:  # noqa: BLE001 - a rule's bug must not fail the pass
            if fault.handled(self.store, exc) is None:
                logger.exception("store {}: the seller alert rules failed this pass", sync.name)

    def report(self, now: float | None = None) -> None:
        """The `[[reports]]` due now (`pollerd.alerts.reports`), once every store has ended a
        pass in this process: a report made just after a start counts what the shop did while
        pollerd was down. Called after the passes of a tick (`run`) and of `once`, never per
        store; nothing at all without `[[reports]]`. A failure is logged (once until it
        changes) and retried at the next tick; it never fails a pass."""
        if not self.settings.reports or not set(self.syncs) <= self.polled:
            return
        try:
            if send_reports(self.store, self.settings, time.time() if now is None else now):
                self.wake.set()
            self.report_error = None
        except Exception as exc:  # noqa: BLE001 - a report's bug must not stop polling
            if fault.handled(self.store, exc) is None and str(exc) != self.report_error:
                logger.exception("the reports failed; retried at the next tick")
            self.report_error = str(exc)

    def _succeeded(self, sync: StoreSync) -> None:
        try:
            self.watch.succeeded(sync.name, sync.source.platform)
        except Exception as exc:  # noqa: BLE001 - retried at the next successful pass
            if fault.handled(self.store, exc) is None:
                logger.exception("store {}: cannot record the recovery", sync.name)

    # ---- reload: the owners' side of `pollerd.reload` ------------------------------------

    def reconfigure(self, settings: Settings, channels: dict[str, Channel]) -> dict[str, Channel]:
        """A reload's settings and channels, with the delivery loop paused (the caller's job:
        the swap must fall between two sends). The next page committed routes by the new
        `[[routes]]`. Returns the old channels, to close once no send uses them."""
        old = self.channels
        self.channels = channels
        self.deliverer.reconfigure(channels, settings.pollerd.delivery, settings.routes)
        self.settings = settings
        for sync in self.syncs.values():
            sync.reroute(settings.routes)
        return old

    def retire(self, names: Iterable[str]) -> list[StoreSync]:
        """Take these stores' syncs out; each stops after the page in flight (the caller
        waits for their passes and closes their sources)."""
        retiring = []
        for name in names:
            sync = self.syncs.pop(name)
            sync.retire()
            retiring.append(sync)
        return retiring

    async def adopt(self, sync: StoreSync) -> bool:
        """Add a reload's new or changed store, polled at once (e.g. a fixed key: not after
        the old back-off); False (its source closed) when the process is stopping."""
        if self.stopping:
            await sync.source.aclose()
            return False
        self.syncs[sync.name] = sync
        self.watch.reset(sync.name)
        sync.ensure_cursor()
        return True

    def warn_orphans(self, gone: set[str]) -> None:
        """Rows routed to a channel that no longer exists stay pending (nothing is dropped)."""
        if not gone:
            return
        try:
            counts = self.store.counts()
        except Exception:  # noqa: BLE001 - only a warning depends on it
            return
        for name in sorted(gone):
            waiting = counts.get(name, {})
            pending = waiting.get("pending", 0) + waiting.get("retrying", 0)
            if pending:
                logger.warning(
                    "reload: channel {} was removed with {} deliveries pending; they stay in "
                    "the outbox and go out if a channel of that name is configured again",
                    name,
                    pending,
                )

    async def aclose(self) -> None:
        for sync in self.syncs.values():
            await sync.source.aclose()
        for channel in self.channels.values():
            await channel.close()
        await self.http.aclose()
        self.store.close()


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
    """One pass of every store, then deliver what is due; exit 1 if anything failed. A full
    disk or a read-only database ends it with one line (`StoreFull`, `StoreReadOnly`).

    SIGTERM/SIGINT stop it as they stop `run` (`pollerd-once.service` is stopped with SIGTERM):
    the page and the sends in flight finish and are recorded, nothing new starts, and the exit
    code says only how what did run went."""
    with fault.typed(settings.pollerd.database):
        return await _once(settings, only_store=only_store, sweep=sweep)


async def _once(settings: Settings, *, only_store: str | None, sweep: bool) -> int:
    with StateLock.of(settings):
        runtime = Runtime.build(settings, only_store=only_store)
        fault.trouble(runtime.store).one_shot = True

        def stop() -> None:
            logger.info(
                "stopping: finishing the current page and in-flight sends (a second SIGTERM or "
                "Ctrl-C forces the exit)"
            )
            runtime.stop()

        signals = StopSignals(stop)
        signals.install()
        try:
            runtime.store.set_sealing(True)
            failed = False
            for name in runtime.syncs:
                if runtime.stopping:
                    break
                failed |= await _once_pass(runtime, name, sweep=sweep)
            if not runtime.stopping:
                runtime.report()
            trouble = fault.trouble(runtime.store)
            if trouble.error is not None:  # sends now could not be recorded: sent again later
                raise trouble.error
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
            runtime.store.prune(time.time(), settings.pollerd.retention)  # bodies + PII
            runtime.store.set_sealing(False)
        finally:
            signals.remove()
            await runtime.aclose()
    if runtime.stopping:
        logger.info("stopped cleanly")
    return EXIT_FAILED if failed else EXIT_OK


async def _once_pass(runtime: Runtime, name: str, *, sweep: bool) -> bool:
    """One store's pass in its own task, so that a stop can cancel it where it sleeps (and
    not `once` itself); True if it failed. A pass cut by a stop is no failure: every committed
    page is safe and the next run resumes from the cursor."""
    task = asyncio.create_task(runtime.poll(name, sweep=sweep))
    await asyncio.wait({task})
    if task.cancelled():
        logger.info("store {}: pass stopped; the next run resumes", name)
        return False
    return task.result() is None


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
    with fault.typed(settings.pollerd.database):
        return await _backfill(settings, store, since, until, notify_channels, progress)


async def _backfill(
    settings: Settings,
    store: str,
    since: datetime,
    until: datetime | None,
    notify_channels: bool,
    progress: Callable[[int, int | None], None] | None,
) -> tuple[PassReport, Round | None]:
    runtime = Runtime.build(settings, only_store=store)
    try:
        report = await fill(
            runtime.syncs[store], since, until, notify=notify_channels, progress=progress
        )
        sent: Round | None = None
        if notify_channels and report.deliveries:
            lock = StateLock.of(settings)
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
