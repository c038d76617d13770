"""`pollerd run`: the `Service` (scheduler, signals, reload, watchdog, health, graceful stop).

What it runs is built in `pollerd.runtime` (`Runtime`, the factories, `once`, `backfill`) and a
reload is planned in `pollerd.reload`; this module only schedules and supervises.

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
  stops the same way (`pollerd.runtime.once`);
- `RELOADING=1` + `MONOTONIC_USEC=` on SIGHUP, then `READY=1`. The config file is re-read and
  applied without a restart (see `Service.reload`); a bad file is refused, logged with the key,
  shown as `STATUS=reload failed: …`, and the running config stays.

Every `PRUNE_EVERY` seconds a job applies `[pollerd] retention` (message bodies, sealed
contacts; `Store.prune`).

Test-only failpoints (`pollerd.failpoints`): `hang_delivery` and `block_loop` prove that a hung
loop stops the watchdog pings (`block_loop` says `X_POLLERD_FAILPOINT=block_loop` on the notify
socket as it blocks); `watchdog_thread` is the free-running pinger the fault test must catch.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from loguru import logger

from pollerd import __version__, metrics
from pollerd.config import Settings
from pollerd.delivery import Deliverer
from pollerd.errors import EXIT_OK, ConfigError
from pollerd.failpoints import FAILPOINT, armed
from pollerd.health import DELIVERY_SLACK, Health, StoreBeat, status_line, status_text
from pollerd.reload import ReloadPlan
from pollerd.runtime import Runtime, StopSignals, start_web
from pollerd.store import StateLock, fault
from pollerd.sync import StoreSync
from pollerd.systemd import monotonic_usec, notify, supervised, watchdog_interval
from pollerd.web import scrape

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]

__all__ = ["Service", "run"]

STOP_GRACE = 30.0
"""Seconds the running pages and in-flight sends get on SIGTERM (TimeoutStopSec= is 45 s)."""
TICK_MAX = 5.0  # seconds between status updates (and watchdog pings, if more often is needed)
TICK_JOB = "pollerd:tick"  # never a store name: those are [a-z0-9_-]
PRUNE_JOB = "pollerd:prune"
PRUNE_EVERY = 300.0  # seconds between retention prunes (`[pollerd] retention`)


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
    """Test-only hangs (`pollerd.failpoints`); a no-op unless one is armed."""
    if armed("hang_delivery"):
        logger.warning("FAILPOINT hang_delivery: the delivery loop hangs here (test only)")
        await asyncio.get_running_loop().create_future()  # never resolved; the loop runs on
    elif armed("block_loop"):
        logger.warning("FAILPOINT block_loop: the event loop thread blocks here (test only)")
        notify("X_POLLERD_FAILPOINT=block_loop")  # when the hang began, in the pings' stream
        time.sleep(3600)  # the whole event loop stops: nothing else may run


def _free_pings(every: float) -> None:
    """The `watchdog_thread` failpoint: pings that prove only that this thread runs."""
    while True:
        notify("WATCHDOG=1")
        time.sleep(every)


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
        if armed("watchdog_thread") and self.watchdog:  # test-only: row 14's mutant
            threading.Thread(target=_free_pings, args=(self.watchdog,), daemon=True).start()
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
        """`/metrics` and `/healthz` on `metrics_listen` (pollerd.web.scrape), None when unset."""
        listen = settings.pollerd.metrics_listen
        if not listen:
            return None
        self._declare = lambda: metrics.declare(self.runtime.syncs, self.runtime.channels)
        self._declare()  # a 0 for every configured store and channel, before the first pass
        try:
            server = scrape.serve(listen, self.health.check)
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
        if not self.runtime.stopping:
            self.runtime.report()  # after the passes so far; each period's report once
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
            plan = await ReloadPlan.build(self.runtime)
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

    async def _apply(self, plan: ReloadPlan) -> None:
        """Apply `plan` through the owners' methods; this only orders the calls around the
        delivery task and the scheduler, which are the Service's own."""
        runtime = self.runtime
        new = plan.settings
        plan.warn_kept()
        # Channels: swap between two sends, so no send is cut and no row is sent twice.
        await self._pause_delivery()
        old_channels = runtime.reconfigure(new, plan.channels)
        self.health.delivery_limit = self._delivery_limit(new)
        self.settings = new
        if not runtime.stopping:
            self._start_delivery()
        for channel in old_channels.values():
            await channel.close()
        runtime.warn_orphans(set(old_channels) - set(plan.channels))

        # Stores: removed and changed ones stop after the page in flight.
        retiring = runtime.retire(plan.retire)
        for sync in retiring:
            if self.scheduler.get_job(sync.name) is not None:
                self.scheduler.remove_job(sync.name)
        await _finish({self.passes[s] for s in retiring if s in self.passes})
        for sync in retiring:
            await sync.source.aclose()
        beats = {n: b for n, b in self.health.stores.items() if n not in plan.retire}
        for name, sync in plan.start.items():
            if await runtime.adopt(sync):
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


async def run(settings: Settings, *, on_ready: Callable[[Runtime], None] | None = None) -> int:
    """`pollerd run` until SIGTERM/SIGINT; see `Service` and the module docstring."""
    return await Service(settings).run(on_ready)
