"""The outbox loop: claim due deliveries, render once, send, record the outcome.

At-least-once, stated plainly: a row is marked sent only after the channel accepted it, so a
crash between the two sends it again on restart (same body, same idempotency key). Nothing is
sent inside the transaction that created the row, and nothing is ever deleted for failing:
retryable failures back off exponentially with full jitter (honouring the channel's own wait,
capped at an hour), and a row becomes a dead letter when its next attempt would fall past
`dead_after` (or after `max_attempts`, when set), listed and retryable with `pollerd
deliveries`; a dead letter holds its order's later events on that channel until it is retried.
A channel that is broken as a whole (410 Gone, revoked key) is held, not drained into the
dead-letter list; one that keeps failing is announced (`watch`).

One task per channel (`run`): a receiver that hangs until the send timeout delays its own
alerts only, and `Gates` gives each channel an even share of `concurrency`.

Rate budgets: a chat destination declares its published limit (`Channel.budget`, e.g. WeCom 20
a minute) and the loop never sends past it. A `Limiter` keeps a sliding window of send times
per destination; a delivery that does not fit stays pending as it is: waiting for a slot costs
no attempt and no back-off. Slots are stamped when the answer arrives
(the service counted the message somewhere between request and answer) and every window is
held `WINDOW_PAD` longer than published, because exceeding DingTalk's costs a 10-minute block.

Digests: when more deliveries are due for a destination than its budget lets out within
`digest_after` (a flash sale: hundreds of orders in minutes, at 20 a minute that is hours),
they go out as summary messages (`Channel.render_digest`) in event order. A digest names
every row it stands for (as many as fit the channel's limit: `plan.fit_digest`; the rest wait
for the next one), and those rows are marked sent with its id, in one transaction, or none
is. A digest takes an order's events only together with every earlier pending one
(`Store.backlog`), so per order nothing is overtaken. A failed digest backs its rows off like
any failed send. Rows quiet hours held (`quiet_until`) and released together at their end go
out the same way, as digests of more than one row, on channels whose digest is a message.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from loguru import logger

from pollerd import metrics
from pollerd.alerts.channel import ChannelWatch
from pollerd.channels.base import Budget, Channel
from pollerd.config import DeliveryConfig, RouteConfig
from pollerd.delivery.limiter import WINDOW_PAD, Gates, Limiter, Slot, first_set
from pollerd.delivery.outcome import attempt, gives_up, latency, refused, span
from pollerd.delivery.plan import first_of_each_order, fit_digest
from pollerd.failpoints import armed, kill_point
from pollerd.http import MAX_RETRY_AFTER
from pollerd.model import Event
from pollerd.store import Due, Store, fault

DIGEST_AFTER = 60.0  # seconds of sending a backlog may take before it becomes one digest
DIGEST_MAX = 500  # rows one digest stands for at most (one transaction; it shows ten lines)
DIGEST_GUESS = 20  # alerts a channel's first digest tries to name (then: its last digest's)
HOUSEKEEPING = 5.0  # seconds between expiry sweeps / failing-channel checks in `run`


@dataclass
class Round:
    sent: int = 0
    retried: int = 0
    dead: int = 0
    held: int = 0
    sent_ids: list[str] = field(default_factory=list)
    digests: int = 0  # digest messages sent (their rows are counted in `sent`)
    waiting: int = 0  # due rows left pending because their destination's budget was spent

    @property
    def claimed(self) -> int:
        return self.sent + self.retried + self.dead + self.held


class Deliverer:
    """Sends the outbox. `run` gives every channel its own task, so a receiver that hangs delays
    only its own alerts (issue 11: a hanging webhook had pushed console alerts from 8 ms to 14 s);
    `run_once` and `drain` run one round / all rounds of every channel side by side."""

    def __init__(
        self,
        store: Store,
        channels: Mapping[str, Channel],
        cfg: DeliveryConfig,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        digest_after: float = DIGEST_AFTER,
        routes: Sequence[RouteConfig] = (),
    ) -> None:
        self.store = store
        self.routes = routes
        self.channels = channels
        self._cfg = cfg
        self.clock = clock
        self.rng = rng or random.Random()
        self.limiter = Limiter(monotonic)
        self.digest_after = digest_after
        self._seeded = False
        self._progress_base = time.monotonic()
        self._progress: dict[str, float] = {}  # channel → its loop's last heartbeat
        self.draining = False
        # A hook awaited before each send (the daemon's test-only failpoints).
        self.before_send: Callable[[], Awaitable[None]] | None = None
        self.no_digest: set[str] = set()  # channels whose digest was refused as a message
        self._waiting: dict[str, float] = {}  # channel → seconds until its budget has a slot
        self._fits: dict[str, int] = {}  # channel → alerts its last digest named (a guess)
        # Failing channels and `alert.channel_failing` (pollerd.alerts.channel), routed by the
        # routes of the moment: a reload's new ones apply to the next alert.
        self.watch = ChannelWatch(store, cfg.failing_after.total_seconds(), lambda: self.routes)
        metrics.watch_dead(self.dead_counts)

    @property
    def cfg(self) -> DeliveryConfig:
        return self._cfg

    @cfg.setter
    def cfg(self, cfg: DeliveryConfig) -> None:
        """A reload's new `[pollerd.delivery]` (failing_after included) applies at once."""
        self._cfg = cfg
        self.watch.failing_after = cfg.failing_after.total_seconds()

    def reconfigure(
        self, channels: Mapping[str, Channel], cfg: DeliveryConfig, routes: Sequence[RouteConfig]
    ) -> None:
        """A reload's channels, `[pollerd.delivery]` and routes, swapped in between two sends
        (the caller pauses the loop first)."""
        self.channels = channels
        self.routes = routes
        self.cfg = cfg

    @property
    def last_progress(self) -> float:
        """When the loop last made progress (monotonic): its slowest channel's heartbeat, so
        one channel's stuck task is seen even while the others are busy."""
        return min(tuple(self._progress.values()), default=self._progress_base)

    @last_progress.setter
    def last_progress(self, value: float) -> None:
        self._progress_base = value
        self._progress = {}

    def _beat(self, channel: str) -> None:
        self._progress[channel] = time.monotonic()

    def failing(self) -> dict[str, dict[str, Any]]:
        """Channels failing for `failing_after` or with new dead letters (for `/healthz`; a
        channel a reload removed is no longer reported)."""
        report = self.watch.report(self.clock())
        return {name: info for name, info in report.items() if name in self.channels}

    def dead_counts(self) -> dict[str, int]:
        """Dead letters per channel, for `pollerd_deliveries_dead` (read when scraped, from the
        scrape's thread: `pollerd deliveries retry` in another process empties them, so a
        counter kept here would drift)."""
        return self.store.dead_counts()

    def backoff(self, attempts: int, retry_after: float | None) -> float:
        """Full jitter (AWS architecture blog): spreads a burst of failures over the window
        instead of retrying them in lock-step; never sooner than the receiver asked (capped
        like every Retry-After: a body's own `retry_after` must not strand a row either)."""
        ceiling = min(
            self.cfg.backoff_max.total_seconds(),
            # The exponent is capped: past ~1,000 attempts (dead_after may be a year) the
            # float would overflow, and 2**40 seconds is past any backoff_max already.
            self.cfg.backoff_base.total_seconds() * 2 ** min(40, max(0, attempts - 1)),
        )
        delay = 0.0 if armed("no_backoff") else self.rng.uniform(0, ceiling)  # failpoints.py
        return max(delay, min(retry_after or 0.0, MAX_RETRY_AFTER))

    def housekeeping(self) -> None:
        """Dead-letter rows past their expiry that no attempt will reach in time (one an older
        pollerd left due in years), and announce channels failing for `failing_after`."""
        now = self.clock()
        horizon = self.cfg.dead_after.total_seconds()
        expired = self.store.expire(
            now - horizon, f"not sent within dead_after = {span(horizon)} (expired)"
        )
        by_channel: dict[str, int] = {}
        for row in expired:
            logger.error("delivery {} to {} is dead: expired", row.event_id, row.channel)
            metrics.delivery(row.channel, "dead")
            by_channel[row.channel] = by_channel.get(row.channel, 0) + 1
        for channel, count in by_channel.items():
            self.watch.dead(channel, count, "expired", now)
        self.watch.check(now)

    async def run_once(self, limit: int = 200, *, skip: set[int] | None = None) -> Round:
        """One round of every channel, side by side: each channel's due rows (up to `limit`),
        sent concurrently, each outcome committed."""
        self.seed_limiter()
        self.housekeeping()
        now = self.clock()
        result = Round()
        self._waiting = {}
        gates = Gates(self.cfg.concurrency, len(self.channels))
        await asyncio.gather(
            *(self._round(name, gates, now, result, limit, skip) for name in self.channels)
        )
        return result

    async def _round(
        self,
        name: str,
        gates: Gates,
        now: float,
        result: Round,
        limit: int = 200,
        skip: set[int] | None = None,
    ) -> None:
        """One round of one channel: what is due (or planned against its budget), sent."""
        self._beat(name)
        self._waiting.pop(name, None)
        channel = self.channels[name]
        budget = channel.budget()
        if budget is None and not (channel.digestible and self.store.released(name, now) > 1):
            due = self.store.due(now, limit, [name])
            if skip is not None:
                due = [d for d in due if d.id not in skip]
                skip.update(d.id for d in due)
            jobs = [self._deliver(d, result) for d in due]
        else:
            jobs = self._plan(name, budget, now, result, skip)
        if jobs:
            await asyncio.gather(*(gates.run(name, job) for job in jobs))
        self._beat(name)

    def _plan(
        self, name: str, budget: Budget | None, now: float, result: Round, skip: set[int] | None
    ) -> list[Coroutine[Any, Any, None]]:
        """This round's sends to one destination with a budget or held rows just released:
        one digest when its backlog is more than the budget lets out within `digest_after`,
        or holds more than one row released by the end of quiet hours (the night's alerts as
        one message, for channels whose digest is a message: `Channel.digestible`); else one
        send per free slot."""
        backlog = self.store.backlog(name, now, DIGEST_MAX, skip=skip or ())
        if not backlog:
            return []
        released = sum(row.quiet_until is not None for row in backlog)
        digest = name not in self.no_digest and (
            (budget is not None and len(backlog) > max(1, budget.capacity(self.digest_after)))
            or (released > 1 and self.channels[name].digestible)
        )
        heads = first_of_each_order(backlog)
        wanted = 1 if digest else len(heads)
        slots: list[Slot | None] = (
            [None] * wanted if budget is None else list(self.limiter.take(budget, wanted))
        )
        rendered = ""
        if slots and digest:
            fitted = self._fit_digest(name, backlog)
            if fitted is None and budget is None:  # cannot render a digest: one by one now
                digest, slots = False, [None] * len(heads)
            elif fitted is None:  # one by one from the next round
                self.limiter.release(budget, slots[0])
                slots = []
            else:
                chosen, rendered = fitted
        if not (slots and digest):
            chosen = heads[: len(slots)]
        result.waiting += len(backlog) - len(chosen)
        if budget is not None and (
            not slots or len(chosen) < len(heads if not digest else backlog)
        ):
            self._waiting[name] = self.limiter.wait(budget)
        if not slots:
            return []
        if skip is not None:
            skip.update(d.id for d in chosen)
        if digest and len(chosen) > 1:
            return [self._digest(name, budget, chosen, rendered, slots[0], result)]
        return [self._deliver(d, result, slot) for d, slot in zip(chosen, slots, strict=False)]

    def _fit_digest(self, name: str, backlog: list[Due]) -> tuple[list[Due], str] | None:
        """`plan.fit_digest` for this channel, remembering its fit as the next guess; None
        (and one by one from now on) when the channel cannot render a digest at all."""
        guess = self._fits.get(name, DIGEST_GUESS)
        try:
            count, rendered = fit_digest(self.channels[name], backlog, guess)
        except Exception:  # noqa: BLE001 - a digest bug must not hold the alerts: send singly
            logger.exception("channel {}: cannot render a digest; sending one by one", name)
            self.no_digest.add(name)
            return None
        self._fits[name] = max(2, count)
        return backlog[:count], rendered

    async def drain(self, *, deadline: float | None = None) -> Round:
        """Send what is due now, each row at most once (`once` must not burn a row's attempts
        in one run just because full jitter drew a tiny back-off). Every channel drains on its
        own, side by side."""
        self.seed_limiter()
        self.housekeeping()
        total = Round()
        attempted: set[int] = set()
        gates = Gates(self.cfg.concurrency, len(self.channels))

        async def one(name: str) -> int:
            claimed = 0
            while deadline is None or time.monotonic() < deadline:
                batch = Round()
                await self._round(name, gates, self.clock(), batch, skip=attempted)
                if not batch.claimed:
                    total.waiting += batch.waiting  # what the last look had to leave waiting
                    break
                claimed += batch.claimed
                total.sent += batch.sent
                total.retried += batch.retried
                total.dead += batch.dead
                total.held += batch.held
                total.digests += batch.digests
                total.sent_ids.extend(batch.sent_ids)
            return claimed

        # Again while a pass sent anything: one channel's outcome may queue an alert on another
        # (alert.channel_failing) that this run must still send.
        while deadline is None or time.monotonic() < deadline:
            total.waiting = 0
            if not sum(await asyncio.gather(*(one(name) for name in self.channels))):
                break
        return total

    def seed_limiter(self) -> None:
        """Carry the last window's sends over from the outbox (sent_at), once per process."""
        if self._seeded:
            return
        self._seeded = True
        now = self.clock()
        for name, channel in self.channels.items():
            budget = channel.budget()
            if budget is None:
                continue
            longest = max(seconds for _, seconds in budget.windows) * (1 + WINDOW_PAD)
            sent = self.store.recent_sends(name, now - longest)
            self.limiter.seed(budget, [now - at for at in sent])

    async def run(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        """Loop until `stop`, one task per channel (`_channel_loop`). A commit that created
        deliveries sets `wake`, which this task passes on to every channel; it also runs the
        housekeeping (expiry, failing channels) every `HOUSEKEEPING` seconds."""
        self.seed_limiter()
        wakes = {name: asyncio.Event() for name in self.channels}
        gates = Gates(self.cfg.concurrency, len(self.channels))
        tasks = [
            asyncio.create_task(self._channel_loop(name, gates, stop, wakes[name]))
            for name in self.channels
        ]
        try:
            while not stop.is_set():
                try:
                    self.housekeeping()
                except Exception as exc:  # noqa: BLE001 - logged; the channels keep sending
                    if fault.handled(self.store, exc) is None:
                        logger.exception("delivery housekeeping: unexpected error; continuing")
                if await first_set(stop, wake, HOUSEKEEPING) is wake:
                    wake.clear()
                    for event in wakes.values():
                        event.set()
            # Stopping: the channels finish their sends in flight (`draining`) and end.
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    async def _channel_loop(
        self, name: str, gates: Gates, stop: asyncio.Event, wake: asyncio.Event
    ) -> None:
        """One channel's rounds, until `stop`: sleep until its next row is due (at most 1 s,
        so a row made due by another process is not missed), or its budget has a slot.

        While the database cannot be written (full disk, read-only: `fault.Trouble`) nothing
        is sent: an outcome that cannot be recorded leaves its row due, and it went out again
        at once, in a loop. The channel pauses instead, and a small write (`probe`) tells when
        the database takes writes again."""
        trouble = fault.trouble(self.store)
        while not stop.is_set():
            wake.clear()  # before the look: a commit during the round wakes the next one
            pause: float | None = trouble.waiting()
            if not pause and not trouble.probe(self.store):
                pause = trouble.waiting()
            if not pause:
                try:
                    await self._round(name, gates, self.clock(), Round())
                except Exception as exc:  # noqa: BLE001 - a bad row must not kill the loop
                    pause = fault.handled(self.store, exc)
                    if pause is None:
                        logger.exception("delivery to {}: unexpected error; continuing", name)
            if stop.is_set():
                break
            if pause:
                wait = pause
            elif name in self._waiting:  # out of budget: woken by its limiter, not its rows
                wait = max(0.01, min(1.0, self._waiting[name]))
            else:
                next_at = self.store.next_due_at([name])
                wait = 1.0 if next_at is None else min(1.0, max(0.0, next_at - self.clock()))
            await first_set(stop, wake, wait)
            self._beat(name)

    async def _deliver(self, due: Due, result: Round, slot: Slot | None = None) -> None:
        """`draining` (SIGTERM, or a reload swapping the channels) starts no new send: the row
        is left exactly as it was (no attempt charged, no back-off), its budget slot given
        back, while sends already in flight finish and record their outcome. Every finished
        send is a heartbeat (`last_progress`), so a loop stuck in one send is seen within one
        send timeout, not at the end of a 200-row round."""
        if self.draining:
            self.limiter.release(self.channels[due.channel].budget(), slot)
            return
        if self.before_send is not None:
            await self.before_send()
        # Every log line of this send carries channel and event (journald CHANNEL=, EVENT_ID=).
        try:
            with logger.contextualize(channel=due.channel, event_id=due.event_id):
                await self._deliver_one(due, result, slot)
        finally:
            self._beat(due.channel)

    async def _deliver_one(self, due: Due, result: Round, slot: Slot | None = None) -> None:
        channel = self.channels[due.channel]
        event = Event.from_json(due.payload)
        body = due.body
        if body is None:
            body = channel.render(event)
            # Persist before sending: a crash after the send must resend the same bytes.
            self.store.mark(due.id, state="pending", attempts=due.attempts, body=body)
        if armed("mark_first"):  # test-only: the dual-write bug, marked before it is sent
            self.store.mark(due.id, state="sent", attempts=due.attempts + 1, body=body)
            kill_point("after_send_before_mark")  # ...where its first step ends (failpoints.py)
        outcome = await attempt(channel.send(event, body), self.cfg.send_timeout.total_seconds())
        if slot is not None:
            self.limiter.stamp(slot)
        attempts = due.attempts + 1
        if outcome.kind == "ok":
            kill_point("after_send_before_mark")  # test-only (failpoints.py), as `after_mark`
            self.store.mark(due.id, state="sent", attempts=attempts, body=body)
            kill_point("after_mark")
            metrics.delivery(due.channel, "sent", latency=latency(event))
            self.watch.succeeded(due.channel)
            result.sent += 1
            result.sent_ids.append(due.event_id)
            return
        # A channel's recipients refusing everything (an SMS number that texted STOP, a user who
        # blocked the Telegram bot, every mail address refused) fails every later message the
        # same way: hold the channel like a broken one instead of dead-lettering each alert.
        if outcome.kind == "permanent" and outcome.scope in ("channel", "recipient"):
            self._hold(due.channel, outcome.detail)
            self.store.mark(
                due.id, state="pending", attempts=attempts, body=body, error=outcome.detail
            )
            metrics.delivery(due.channel, refused(outcome))
            result.held += 1
            return
        now = self.clock()
        delay = self.backoff(attempts, outcome.retry_after)
        why = outcome.detail if outcome.kind == "permanent" else None
        if why is None:
            gave_up = gives_up(self.cfg, due.since, attempts, now + delay)
            why = None if gave_up is None else f"{gave_up}: {outcome.detail}"
        if why is not None:
            logger.error("delivery {} to {} is dead: {}", due.event_id, due.channel, why)
            dead = "sent" if armed("dead_is_sent") else "dead"  # test-only (failpoints.py)
            self.store.mark(due.id, state=dead, attempts=attempts, body=body, error=why)
            metrics.delivery(due.channel, "permanent" if outcome.kind == "permanent" else "dead")
            self.watch.dead(due.channel, 1, why, now)
            result.dead += 1
            return
        logger.info(
            "delivery {} to {} failed ({}); retry {} in {:.1f}s",
            due.event_id,
            due.channel,
            outcome.detail,
            attempts,
            delay,
        )
        self.store.mark(
            due.id,
            state="pending",
            attempts=attempts,
            body=body,
            next_at=now + delay,
            error=outcome.detail,
        )
        metrics.delivery(due.channel, "retry")
        self.watch.failed(due.channel, outcome.detail, now)
        result.retried += 1

    def _hold(self, channel: str, detail: str) -> None:
        """Hold every delivery of a broken channel, and say so once on the other channels."""
        logger.error(
            "channel {} is broken: {}; its deliveries are held until "
            "`pollerd deliveries retry --channel {}`",
            channel,
            detail,
            channel,
        )
        newly = channel not in self.store.broken_channels()
        self.store.set_channel_broken(channel, detail)
        if newly:
            self.watch.broken(channel, detail)

    async def _digest(
        self,
        name: str,
        budget: Budget | None,
        rows: list[Due],
        rendered: str,
        slot: Slot | None,
        result: Round,
    ) -> None:
        """Send `rows` as one message; on success every row is sent with the digest's id (one
        transaction), otherwise none is and each fails as its own send would have. Draining
        and the heartbeat as in `_deliver`."""
        if self.draining:
            self.limiter.release(budget, slot)
            return
        try:
            await self._digest_one(name, rows, rendered, slot, result)
        finally:
            self._beat(name)

    async def _digest_one(
        self, name: str, rows: list[Due], rendered: str, slot: Slot | None, result: Round
    ) -> None:
        channel = self.channels[name]
        events = [Event.from_json(row.payload) for row in rows]
        # Unique among sent digests: a row is marked sent once, so its id starts one digest.
        digest_id = f"dg-{rows[0].id}-{rows[-1].id}-{len(rows)}"
        outcome = await attempt(
            channel.send(events[0], rendered), self.cfg.send_timeout.total_seconds()
        )
        if slot is not None:
            self.limiter.stamp(slot)
        if outcome.kind == "ok":
            self.watch.succeeded(name)
            marked = self.store.mark_digest([row.id for row in rows], digest_id)
            for event in events[:marked]:  # rows sent meanwhile by another process: not ours
                metrics.delivery(name, "sent", latency=latency(event))
            logger.info("digest {} to {}: {} alerts in one message", digest_id, name, marked)
            result.sent += marked
            result.digests += 1
            result.sent_ids.extend(row.event_id for row in rows)
            return
        detail = f"digest {digest_id} of {len(rows)} alerts: {outcome.detail}"
        if outcome.kind == "permanent" and outcome.scope == "message":
            # The summary itself was refused (its fault, not the alerts'): no attempt is
            # charged, and this channel sends one by one from now on.
            logger.error("channel {} refused a digest ({}); sending one by one", name, detail)
            self.no_digest.add(name)
            for row in rows:
                self.store.mark(
                    row.id, state="pending", attempts=row.attempts, body=row.body, error=detail
                )
                metrics.delivery(name, "retry")
            result.retried += len(rows)
            return
        if outcome.kind == "permanent":
            self._hold(name, outcome.detail)
            for row in rows:
                self.store.mark(
                    row.id, state="pending", attempts=row.attempts + 1, body=row.body, error=detail
                )
                metrics.delivery(name, refused(outcome))
            result.held += len(rows)
            return
        now = self.clock()
        # One delay for all: the rows stay together and go out as one digest again.
        delay = self.backoff(max(row.attempts for row in rows) + 1, outcome.retry_after)
        logger.info("{} to {} failed; retry in {:.1f}s", detail, name, delay)
        self.watch.failed(name, detail, now)
        dead = 0
        for row in rows:
            attempts = row.attempts + 1
            gave_up = gives_up(self.cfg, row.since, attempts, now + delay)
            if gave_up is not None:
                why = f"{gave_up}: {detail}"
                logger.error("delivery {} to {} is dead: {}", row.event_id, name, why)
                self.store.mark(row.id, state="dead", attempts=attempts, body=row.body, error=why)
                metrics.delivery(name, "dead")
                result.dead += 1
                dead += 1
                continue
            self.store.mark(
                row.id,
                state="pending",
                attempts=attempts,
                body=row.body,
                next_at=now + delay,
                error=detail,
            )
            metrics.delivery(name, "retry")
            result.retried += 1
        if dead:
            self.watch.dead(name, dead, detail, now)
