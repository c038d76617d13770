"""`run` and `once`: wire settings to stores, sources, channels, the scheduler and the outbox.

`run` uses APScheduler 3 (4.0 is not for production): one interval job per store with jitter,
`max_instances=1` (a slow pass is never overlapped by the next) and `coalesce=True` (a stalled
loop runs once, not a burst). Under systemd (`Type=notify`, research §C.3) it says:

- `READY=1` once the store is open, every cursor exists and every store's first pass is
  scheduled (so `start_from = "now"` means the moment it was ready);
- `WATCHDOG=1` every `WATCHDOG_USEC / 2`, sent by a job of the scheduler itself and only while
  the delivery loop makes progress. Pinging from a free-running thread (Puma, Sidekiq) keeps a
  wedged daemon alive; here a blocked event loop, a stopped scheduler or a stalled outbox all
  stop the pings and systemd restarts pollerd. A store whose API is down is NOT a watchdog
  failure (a restart would not fix it): it shows in `STATUS=`, `/healthz` and the metrics;
- `STATUS=` one line (`3 stores ok, 0 due, last poll 1.2s ago`; Chinese with `locale = "zh-CN"`);
- `STOPPING=1` on SIGTERM/SIGINT, then a drain: no new passes and no new sends; the running
  page transaction and the sends in flight finish and are recorded (bounded by `STOP_GRACE`),
  exit 0. A clean stop therefore never sends a message twice. A pass asleep in a pacing or
  budget wait has nothing in flight and ends at once (`Waits`). A second SIGTERM/SIGINT forces
  the exit (`StopSignals`; a send cut there is resent with the same idempotency key). `once`
  stops the same way;
- `RELOADING=1` + `MONOTONIC_USEC=` on SIGHUP, then `READY=1`. The config file is re-read and
  applied without a restart (see `Service.reload`); a bad file is refused, logged with the key,
  shown as `STATUS=reload failed: …`, and the running config stays.

Every `PRUNE_EVERY` seconds a job applies `[pollerd] retention` (message bodies, sealed
contacts; `Store.prune`).

Test-only failpoints (`POLLERD_FAILPOINT`, never set in production; the tests prove with them
that a hung loop stops the watchdog pings): `hang_delivery` makes the delivery loop's first
send hang forever while the event loop keeps running; `block_loop` blocks the event loop thread
itself at that point.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
from loguru import logger

from pollerd import __version__, metrics
from pollerd.alerts.store import REMIND_EVERY, StoreWatch
from pollerd.channels import channel_class
from pollerd.channels.base import Channel, ChannelContext
from pollerd.config import Settings, StoreConfig, load
from pollerd.delivery import Deliverer, Round
from pollerd.errors import (
    EXIT_FAILED,
    EXIT_OK,
    BlockedSourceError,
    ConfigError,
    FatalSourceError,
    LockHeld,
    RetryableSourceError,
    SourceError,
)
from pollerd.health import DELIVERY_SLACK, Health, StoreBeat, status_line, status_text
from pollerd.sources import platform
from pollerd.sources.base import Source
from pollerd.sources.ratelimit import Waits
from pollerd.store import StateLock, Store, fault, open_store
from pollerd.sync import PassReport, StoreSync
from pollerd.systemd import monotonic_usec, notify, supervised, watchdog_interval
from pollerd.templates import templates_for
from pollerd.unsubscribe import UnsubscribeLinks, is_suppressed
from pollerd.web import UnsubscribeServer

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

STOP_GRACE = 30.0
"""Seconds the running pages and in-flight sends get on SIGTERM (TimeoutStopSec= is 45 s)."""
TICK_MAX = 5.0  # seconds between status updates (and watchdog pings, if more often is needed)
TICK_JOB = "pollerd:tick"  # never a store name: those are [a-z0-9_-]
PRUNE_JOB = "pollerd:prune"
PRUNE_EVERY = 300.0  # seconds between retention prunes (`[pollerd] retention`)
FAILPOINT = os.environ.get("POLLERD_FAILPOINT", "")
RESTART_KEYS = (
    "database",
    "listen",
    "public_url",
    "unsubscribe_secret",
    "metrics_listen",
    "pii_key",
    "log_level",
)
"""`[pollerd]` keys a reload cannot apply (open connections, sockets, the key ring, the log
sink): a change is logged and the running value kept until the next restart."""


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


async def _finish(tasks: set[asyncio.Task[Any]]) -> set[asyncio.Task[Any]]:
    """Let `tasks` (passes committing a page, sends in flight) finish within `STOP_GRACE`, then
    cancel the rest (a committed page is safe, a cut send is resent with the same id); returns
    the ones that had to be cancelled."""
    if not tasks:
        return set()
    _, left = await asyncio.wait(tasks, timeout=STOP_GRACE)
    for task in left:
        task.cancel()
    if left:
        await asyncio.wait(left, timeout=5.0)
    return left


async def _failpoint() -> None:
    """Test-only hangs (module docstring); a no-op unless POLLERD_FAILPOINT names one."""
    if FAILPOINT == "hang_delivery":
        logger.warning("FAILPOINT hang_delivery: the delivery loop hangs here (test only)")
        await asyncio.get_running_loop().create_future()  # never resolved; the loop runs on
    elif FAILPOINT == "block_loop":
        logger.warning("FAILPOINT block_loop: the event loop thread blocks here (test only)")
        time.sleep(3600)  # the whole event loop stops: nothing else may run


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
            return await self._poll_pass(sync, sweep=sweep)

    async def _poll_pass(
        self, sync: StoreSync, *, sweep: bool = False
    ) -> tuple[PassReport | None, str | None]:
        name = sync.name
        started = time.monotonic()
        try:
            report = await sync.poll(sweep=sweep)
        except (FatalSourceError, BlockedSourceError) as exc:  # only a person can fix it
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

    def _succeeded(self, sync: StoreSync) -> None:
        try:
            self.watch.succeeded(sync.name, sync.source.platform)
        except Exception as exc:  # noqa: BLE001 - retried at the next successful pass
            if fault.handled(self.store, exc) is None:
                logger.exception("store {}: cannot record the recovery", sync.name)

    async def aclose(self) -> None:
        for sync in self.syncs.values():
            await sync.source.aclose()
        for channel in self.channels.values():
            await channel.close()
        await self.http.aclose()
        self.store.close()


@dataclass
class ReloadPlan:
    """What a new config changes, built completely before anything running is touched."""

    settings: Settings
    channels: dict[str, Channel]
    start: dict[str, StoreSync]  # stores added or changed: a fresh sync and source each
    retire: list[str]  # stores removed or changed: their running sync stops
    added: list[str]
    changed: list[str]
    removed: list[str]
    kept_keys: list[str]  # [pollerd] keys changed in the file that need a restart


class Service:
    """`pollerd run`: the scheduler, the delivery loop, signals, reload, watchdog and health."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.watchdog = watchdog_interval()
        self.tick_every = min(self.watchdog or TICK_MAX, TICK_MAX)
        self.stop_requested = asyncio.Event()
        self.ready = False
        self.passes: dict[StoreSync, asyncio.Task[Any]] = {}
        self.reloading: asyncio.Task[None] | None = None
        self.reload_again = False
        self.reload_note: str | None = None  # why the last reload failed, until one succeeds
        self.delivery_stop = asyncio.Event()
        self.delivering: asyncio.Task[None] | None = None
        self.notify_failed = False
        self.delivery_alive = True  # as last seen by the tick, to log each change once
        self._declare: Callable[[], None] = lambda: None  # metrics series for the config
        # Set in run():
        self.runtime: Runtime
        self.deliverer: Deliverer
        self.scheduler: AsyncIOScheduler
        self.health: Health

    # ---- start and stop ------------------------------------------------------------------

    async def run(self, on_ready: Callable[[Runtime], None] | None = None) -> int:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        logging.getLogger("apscheduler").setLevel(logging.ERROR)
        loop = asyncio.get_running_loop()
        StopSignals(self._request_stop).install()
        loop.add_signal_handler(signal.SIGHUP, self._request_reload)
        settings = self.settings
        lock = StateLock.of(settings)
        lock.acquire()
        try:
            self.runtime = runtime = Runtime.build(settings)
            runtime.store.set_sealing(True)  # for `rekey`: a reload keeps this key ring
            runtime.backs_off = True
        except BaseException:
            lock.release()
            raise
        self.deliverer = runtime.deliverer
        if FAILPOINT:
            self.deliverer.before_send = _failpoint
        self.health = Health(
            delivery_last=lambda: self.deliverer.last_progress,
            delivery_limit=self._delivery_limit(settings),
            tick_every=self.tick_every,
            channels=lambda: self.deliverer.failing(),
            database=lambda: fault.trouble(self.runtime.store).problem(),
        )
        web = metrics_server = None
        try:
            web = await start_web(settings, runtime.store)
            metrics_server = self._start_metrics(settings)
        except BaseException:
            if web is not None:
                await web.close()
            await runtime.aclose()
            lock.release()
            raise

        self.scheduler = AsyncIOScheduler(
            event_loop=loop,
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
        )
        beats: dict[str, StoreBeat] = {}
        for sync in runtime.syncs.values():
            sync.ensure_cursor()
            beats[sync.name] = self._schedule(sync)
        self.health.stores = beats
        self.scheduler.add_job(
            self._tick,
            "interval",
            seconds=self.tick_every,
            id=TICK_JOB,
            next_run_time=datetime.now(UTC),
        )
        self.scheduler.add_job(
            self._prune,
            "interval",
            seconds=PRUNE_EVERY,
            id=PRUNE_JOB,
            next_run_time=datetime.now(UTC) + timedelta(seconds=10),
        )
        self.scheduler.start()
        self._start_delivery()
        names = ", ".join(runtime.syncs) or "no stores"
        logger.info(
            "pollerd {} running: {}; {} channel(s){}",
            __version__,
            names,
            len(runtime.channels),
            f"; watchdog ping every {self.watchdog:g}s" if self.watchdog else "",
        )
        self.ready = True
        self._notify("READY=1", f"STATUS={self._status()}")
        if on_ready is not None:
            on_ready(runtime)
        if self.reload_again:  # a SIGHUP that came during start-up
            self._request_reload()
        await self.stop_requested.wait()
        await self._shutdown()
        if web is not None:
            await web.close()
        if metrics_server is not None:
            closing = metrics_server.close()
            if inspect.isawaitable(closing):
                await closing
        runtime.store.set_sealing(False)
        await runtime.aclose()
        lock.release()
        logger.info("stopped cleanly")
        return EXIT_OK

    def _start_metrics(self, settings: Settings) -> Any:
        """`/metrics` and `/healthz` on `metrics_listen` (pollerd.metrics), None when unset."""
        listen = settings.pollerd.metrics_listen
        if not listen:
            return None
        self._declare = lambda: metrics.declare(self.runtime.syncs, self.runtime.channels)
        self._declare()  # a 0 for every configured store and channel, before the first pass
        try:
            server = metrics.serve(listen, self.health.check)
        except OSError as exc:
            fix = "pick a free port, or stop what is using it"
            raise ConfigError(
                "pollerd.metrics_listen", f"cannot listen on {listen}: {exc.strerror}", fix
            ) from None
        logger.info("metrics and health on http://{}/metrics and /healthz", listen)
        return server

    def _request_stop(self) -> None:
        if self.stop_requested.is_set():
            logger.info("already stopping; waiting for the page and sends in flight")
            return
        self.stop_requested.set()

    async def _shutdown(self) -> None:
        """No new passes or sends; the running pages and sends finish within STOP_GRACE (then
        they are cancelled: a committed page is safe, a cut send is resent with the same id)."""
        runtime = self.runtime
        logger.info(
            "stopping: finishing the current page and in-flight sends (a second SIGTERM or "
            "Ctrl-C forces the exit)"
        )
        self._notify("STOPPING=1", f"STATUS={self._text('stopping')}")
        runtime.stop()
        self.delivery_stop.set()
        self.scheduler.pause()  # no new passes; a running one stops after its current page
        running: set[asyncio.Task[Any]] = set(self.passes.values())
        if self.delivering is not None:
            running.add(self.delivering)
        if self.reloading is not None:
            running.add(self.reloading)
        if self.delivering in await _finish(running):
            logger.warning(
                "sends in flight did not finish in {:g}s; they will be resent with the "
                "same idempotency key",
                STOP_GRACE,
            )
        self.scheduler.shutdown(wait=False)

    # ---- passes --------------------------------------------------------------------------

    def _schedule(self, sync: StoreSync) -> StoreBeat:
        """The store's interval job, first run right away; returns its new heartbeat."""
        interval = sync.cfg.interval.total_seconds()
        self.scheduler.add_job(
            self._poll_job,
            "interval",
            seconds=interval,
            jitter=min(interval * 0.1, 5.0),
            args=[sync],
            id=sync.name,
            next_run_time=datetime.now(UTC) + timedelta(milliseconds=50),
        )
        return StoreBeat(interval=interval, since=time.monotonic())

    async def _poll_job(self, sync: StoreSync) -> None:
        runtime = self.runtime
        # A job dispatched just before a reload retired its sync finds another (or none) here.
        if runtime.stopping or runtime.syncs.get(sync.name) is not sync:
            return
        if runtime.watch.waiting(sync.name) > 0:  # backing off an error a person must fix
            return
        if fault.trouble(runtime.store).waiting() > 0:  # the database cannot be written now
            return
        task = asyncio.current_task()
        assert task is not None
        self.passes[sync] = task
        beat = self.health.stores.get(sync.name)
        if beat is not None:
            beat.running_since = time.monotonic()
        try:
            report, error = await runtime.poll_pass(sync)
        except asyncio.CancelledError:
            if not runtime.stopping and runtime.syncs.get(sync.name) is sync:
                raise
            # Cancelled past a grace (asleep in a store's back-off): every committed page is
            # safe and the next pass re-reads the rest, so this is not an error.
            logger.info("store {}: pass cancelled; the next one resumes", sync.name)
            return
        finally:
            self.passes.pop(sync, None)
            if beat is not None:
                beat.running_since = None
        if beat is None:
            return
        if error is not None:
            beat.failed(error)
            self._failing(beat, sync.name)
        elif report is not None and not report.stopped:
            beat.succeeded(time.monotonic())

    def _failing(self, beat: StoreBeat, name: str) -> None:
        """/healthz shows since when the store fails and how long it backs off."""
        watch = self.runtime.watch
        try:
            since = watch.since(name)
        except Exception:  # noqa: BLE001 - /healthz must not fail on the database
            since = None
        beat.failing_since = None if since is None else since.isoformat()
        wait = watch.waiting(name)
        beat.backoff_until = time.monotonic() + wait if wait else None

    async def _prune(self) -> None:
        """Retention: message bodies and sealed contacts older than `[pollerd] retention` go
        (batches of short transactions, so page commits are not held up)."""
        retention = self.runtime.settings.pollerd.retention
        try:
            pruned = self.runtime.store.prune(time.time(), retention)
        except Exception as exc:  # noqa: BLE001 - retried at the next prune; polling goes on
            if fault.handled(self.runtime.store, exc) is None:
                logger.exception("retention prune failed; retrying in {:g}s", PRUNE_EVERY)
            return
        if pruned.bodies or pruned.contacts:
            logger.info(
                "retention: pruned {} message bodies and {} sealed contacts older than {:g} h",
                pruned.bodies,
                pruned.contacts,
                retention.total_seconds() / 3600,
            )

    # ---- delivery ------------------------------------------------------------------------

    @staticmethod
    def _delivery_limit(settings: Settings) -> float:
        return settings.pollerd.delivery.send_timeout.total_seconds() + DELIVERY_SLACK

    def _start_delivery(self) -> None:
        self.delivery_stop = asyncio.Event()
        self.deliverer.draining = False
        self.deliverer.last_progress = time.monotonic()
        self.health.delivery_ended = None  # a reload revives a loop that died
        self.runtime.wake.set()  # a first round right away: rows may have waited on a reload
        self.delivering = asyncio.create_task(
            self.deliverer.run(self.delivery_stop, self.runtime.wake), name="pollerd-delivery"
        )
        self.delivering.add_done_callback(
            functools.partial(self._delivery_ended, stop=self.delivery_stop)
        )

    def _delivery_ended(self, task: asyncio.Task[None], *, stop: asyncio.Event) -> None:
        """The loop only ends when asked (`stop`); anything else stops the watchdog pings
        (systemd then restarts pollerd) and shows in /healthz."""
        exc = None if task.cancelled() else task.exception()  # retrieved either way
        if stop.is_set():
            return
        if task.cancelled():
            why = "cancelled"
        elif exc is not None:
            why = f"{type(exc).__name__}: {exc}"
        else:
            why = "returned"
        self.health.delivery_ended = why
        logger.opt(exception=exc).error("the delivery loop ended unexpectedly ({})", why)

    async def _pause_delivery(self) -> None:
        """Let the sends in flight finish and be recorded, start no new one, end the loop."""
        self.deliverer.draining = True
        self.delivery_stop.set()
        task = self.delivering
        if task is None or task.done():
            return
        _, left = await asyncio.wait({task}, timeout=self.health.delivery_limit)
        if left:
            task.cancel()
            await asyncio.wait({task}, timeout=5.0)
            logger.warning(
                "reload: sends in flight did not finish in {:g}s; they will be resent with the "
                "same idempotency key",
                self.health.delivery_limit,
            )

    # ---- watchdog and status -------------------------------------------------------------

    async def _tick(self) -> None:
        """A scheduler job: its running proves the scheduler and the event loop work, so it is
        the one place that pings the watchdog, and only while the delivery loop progresses."""
        now = time.monotonic()
        self.health.last_tick = now
        alive, info = self.health.delivery(now)
        if alive != self.delivery_alive:
            self.delivery_alive = alive
            if alive:
                logger.info("the delivery loop makes progress again")
            else:
                logger.error(
                    "{}; watchdog pings stop{}",
                    info["reason"],
                    " (systemd restarts pollerd)" if self.watchdog else "",
                )
        states = ["WATCHDOG=1"] if self.watchdog and alive else []
        self._notify(*states, f"STATUS={self._status()}")

    def _status(self) -> str:
        _, report = self.health.check()
        try:
            due: int | None = self.runtime.store.due_count(time.time())
        except Exception:  # noqa: BLE001 - a status line must not fail on the database
            due = None
        oks = [b.last_ok for b in self.health.stores.values() if b.last_ok is not None]
        age = time.monotonic() - max(oks) if oks else None
        return status_line(
            report,
            due=due,
            last_poll_age=age,
            locale=self.runtime.settings.pollerd.locale,
            note=self.reload_note,
        )

    def _text(self, key: str, **values: Any) -> str:
        locale = self.settings.pollerd.locale
        return status_text(locale, key, **values)

    def _notify(self, *states: str) -> None:
        if not notify(*states) and supervised() and not self.notify_failed:
            self.notify_failed = True
            logger.warning(
                "cannot notify systemd on NOTIFY_SOCKET; readiness and watchdog pings are lost"
            )

    # ---- reload --------------------------------------------------------------------------

    def _request_reload(self) -> None:
        if self.stop_requested.is_set():
            return
        if not self.ready or (self.reloading is not None and not self.reloading.done()):
            self.reload_again = True  # once more when start-up or the running reload is done
            return
        self.reloading = asyncio.create_task(self._reloads(), name="pollerd-reload")

    async def _reloads(self) -> None:
        while True:
            self.reload_again = False
            try:
                await self.reload()
            except Exception:  # noqa: BLE001 - e.g. the database failing mid-way; keep running
                logger.exception("reload failed part-way; send SIGHUP again or restart pollerd")
                self.reload_note = "see the log"
                self._notify(f"STATUS={self._status()}", "READY=1")
            if not self.reload_again or self.stop_requested.is_set():
                return

    async def reload(self) -> None:
        """SIGHUP: re-read the config file and apply it without a restart, or refuse it.

        Stores added start polling (from their `start_from`); removed or changed ones stop after
        the page in flight commits (a changed one then continues from its saved cursor with a
        fresh source); channel objects are all rebuilt and the delivery loop swapped onto them
        between two sends; routes apply to the next page committed. Pages and sends are atomic,
        so nothing is lost or repeated. A file that does not validate changes nothing.
        """
        self._notify("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}")
        path = self.settings.path
        logger.info("SIGHUP: re-reading {}", path or "the config")
        try:
            plan = await self._plan()
        except Exception as exc:  # noqa: BLE001 - a bad config must never stop the daemon
            if isinstance(exc, ConfigError):
                field_name = exc.field or "config"
                text = str(exc)
            else:  # e.g. a channel that cannot be built: its traceback helps
                field_name, text = "config", f"{type(exc).__name__}: {exc}"
            trace = None if isinstance(exc, ConfigError) else exc
            logger.opt(exception=trace).error("reload refused, the running config stays: {}", text)
            self.reload_note = field_name
            first = text.splitlines()[0] if text else field_name
            self._notify(f"STATUS={self._text('reload_failed', why=first)}", "READY=1")
            return
        await self._apply(plan)
        self.reload_note = None
        if not self.stop_requested.is_set():
            self._notify("READY=1", f"STATUS={self._status()}")

    async def _plan(self) -> ReloadPlan:
        """Load and validate the file and build the new channels and sources; raises (and
        closes what it built) on any problem, before anything running is touched."""
        old = self.runtime.settings
        if old.path is None:
            raise ConfigError("", "this run has no config file to re-read", "restart pollerd")
        new = load(old.path, named_by="the file this pollerd started with")
        kept = [
            key for key in RESTART_KEYS if getattr(new.pollerd, key) != getattr(old.pollerd, key)
        ]
        if kept:
            pollerd = new.pollerd.model_copy(
                update={key: getattr(old.pollerd, key) for key in kept}
            )
            new = new.model_copy(update={"pollerd": pollerd})
        running = {name: sync.cfg for name, sync in self.runtime.syncs.items()}
        wanted = {cfg.name: cfg for cfg in new.stores if cfg.enabled}
        added = [name for name in wanted if name not in running]
        removed = [name for name in running if name not in wanted]
        changed = [name for name in wanted if name in running and wanted[name] != running[name]]
        channels: dict[str, Channel] = {}
        start: dict[str, StoreSync] = {}
        try:
            channels = build_channels(new, self.runtime.http, self.runtime.store)
            for name in added + changed:
                start[name] = self.runtime.make_sync(wanted[name], new)
        except BaseException:
            for channel in channels.values():
                await channel.close()
            for sync in start.values():
                await sync.source.aclose()
            raise
        return ReloadPlan(
            settings=new,
            channels=channels,
            start=start,
            retire=removed + changed,
            added=added,
            changed=changed,
            removed=removed,
            kept_keys=kept,
        )

    async def _apply(self, plan: ReloadPlan) -> None:
        runtime = self.runtime
        new = plan.settings
        for key in plan.kept_keys:
            logger.warning(
                "reload: [pollerd] {} changed; it takes effect at the next restart "
                "(the running value stays)",
                key,
            )
        # Channels: swap between two sends, so no send is cut and no row is sent twice.
        await self._pause_delivery()
        old_channels = runtime.channels
        runtime.channels = plan.channels
        self.deliverer.channels = plan.channels
        self.deliverer.routes = new.routes
        self.deliverer.cfg = new.pollerd.delivery
        self.health.delivery_limit = self._delivery_limit(new)
        runtime.settings = new
        self.settings = new
        for sync in runtime.syncs.values():
            sync.routes = new.routes  # the next page committed routes by the new rules
        if not runtime.stopping:
            self._start_delivery()
        for channel in old_channels.values():
            await channel.close()
        self._warn_orphans(set(old_channels) - set(plan.channels))

        # Stores: removed and changed ones stop after the page in flight.
        retiring: list[StoreSync] = []
        for name in plan.retire:
            sync = runtime.syncs.pop(name)
            sync.stopping = lambda: True
            if self.scheduler.get_job(name) is not None:
                self.scheduler.remove_job(name)
            retiring.append(sync)
        await _finish({self.passes[s] for s in retiring if s in self.passes})
        for sync in retiring:
            await sync.source.aclose()
        beats = {n: b for n, b in self.health.stores.items() if n not in plan.retire}
        for name, sync in plan.start.items():
            if runtime.stopping:
                await sync.source.aclose()
                continue
            runtime.syncs[name] = sync
            runtime.watch.reset(name)  # e.g. a fixed key: poll at once, not after the back-off
            sync.ensure_cursor()
            beats[name] = self._schedule(sync)
        self.health.stores = beats
        self._declare()
        logger.info(
            "reloaded {}: stores {} (added: {}; changed: {}; removed: {}); channels {}; "
            "{} route(s)",
            new.path,
            ", ".join(runtime.syncs) or "none",
            ", ".join(plan.added) or "-",
            ", ".join(plan.changed) or "-",
            ", ".join(plan.removed) or "-",
            ", ".join(plan.channels) or "none",
            len(new.routes),
        )

    def _warn_orphans(self, gone: set[str]) -> None:
        """Rows routed to a channel that no longer exists stay pending (nothing is dropped)."""
        if not gone:
            return
        try:
            counts = self.runtime.store.counts()
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


async def run(settings: Settings, *, on_ready: Callable[[Runtime], None] | None = None) -> int:
    """`pollerd run` until SIGTERM/SIGINT; see `Service` and the module docstring."""
    return await Service(settings).run(on_ready)


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
        report = await runtime.syncs[store].backfill(
            since, until, notify=notify_channels, progress=progress
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
