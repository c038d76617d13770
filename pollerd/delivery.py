"""The outbox loop: claim due deliveries, render once, send, record the outcome.

At-least-once, stated plainly: a row is marked sent only after the channel accepted it, so a
crash between the two sends it again on restart (same body, same idempotency key). Nothing is
sent inside the transaction that created the row, and nothing is ever deleted for failing:
retryable failures back off exponentially with full jitter (honouring the channel's own wait),
and a row becomes a dead letter only after `max_attempts` or `dead_after`, listed and retryable
with `pollerd deliveries`. A channel that is broken as a whole (410 Gone, revoked key) is held,
not drained into the dead-letter list.

Rate budgets: a chat destination declares its published limit (`Channel.budget`, e.g. WeCom 20
a minute) and the loop never sends past it. A `Limiter` keeps a sliding window of send times
per destination; a delivery that does not fit stays pending as it is: waiting for a slot costs
no attempt, no back-off and can never make it dead. Slots are stamped when the answer arrives
(the service counted the message somewhere between request and answer) and every window is
held `WINDOW_PAD` longer than published, because exceeding DingTalk's costs a 10-minute block.

Digests: when more deliveries are due for a destination than its budget lets out within
`digest_after` (a flash sale: hundreds of orders in minutes, at 20 a minute that is hours),
they go out as ONE summary message (`Channel.render_digest`) in event order, and every row it
stands for is marked sent with the digest's id, in one transaction, or none is. A digest
takes an order's events only together with every earlier pending one (`Store.backlog`), so per
order nothing is overtaken. A failed digest backs its rows off like any failed send.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from loguru import logger
from sqlalchemy import func, select

from pollerd import metrics
from pollerd.channels.base import Budget, Channel, SendResult
from pollerd.config import DeliveryConfig, RouteConfig
from pollerd.model import Event
from pollerd.rules import channels_for
from pollerd.store import Due, Store
from pollerd.store.db import DELIVERY

DIGEST_AFTER = 60.0  # seconds of sending a backlog may take before it becomes one digest
DIGEST_MAX = 500  # rows one digest stands for at most (one transaction; it shows ten lines)
WINDOW_PAD = 0.05  # windows held 5 % longer than published: clocks and queues differ


@dataclass
class Slot:
    """One message's place in a destination's windows; `at` moves to when it was answered."""

    at: float


class Limiter:
    """Sliding-window rate limits per destination key, in memory, on a monotonic clock.

    A budget `((20, 60.0),)` lets at most 20 slots into any 60-second window (padded). Slots
    are taken before a send, so concurrent sends in one round never overbook a window, and
    stamped at the answer. A new process seeds its windows from the outbox's `sent_at`
    (`Deliverer.seed_limiter`), so a restart does not hand a destination a fresh window.
    """

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, *, pad: float = WINDOW_PAD
    ) -> None:
        self.clock = clock
        self.pad = pad
        self._slots: dict[str, list[Slot]] = {}

    def _live(self, budget: Budget, now: float) -> list[Slot]:
        longest = max(seconds for _, seconds in budget.windows) * (1 + self.pad)
        slots = [s for s in self._slots.get(budget.key, ()) if s.at > now - longest]
        self._slots[budget.key] = slots
        return slots

    def free(self, budget: Budget) -> int:
        """Slots the budget allows right now."""
        now = self.clock()
        slots = self._live(budget, now)
        room = [
            count - sum(s.at > now - seconds * (1 + self.pad) for s in slots)
            for count, seconds in budget.windows
        ]
        return max(0, min(room))

    def wait(self, budget: Budget) -> float:
        """Seconds until one more slot is free (0.0 when one is free now)."""
        now = self.clock()
        slots = self._live(budget, now)
        wait = 0.0
        for count, seconds in budget.windows:
            span = seconds * (1 + self.pad)
            inside = sorted(s.at for s in slots if s.at > now - span)
            if len(inside) >= count:
                wait = max(wait, inside[len(inside) - count] + span - now)
        return wait

    def take(self, budget: Budget, wanted: int) -> list[Slot]:
        """Up to `wanted` slots, as many as are free now (maybe none)."""
        now = self.clock()
        taken = [Slot(now) for _ in range(min(wanted, self.free(budget)))]
        self._slots.setdefault(budget.key, []).extend(taken)
        return taken

    def seed(self, budget: Budget, ages: list[float]) -> None:
        """Messages a previous process sent `ages` seconds ago: a restart must not hand a
        destination a fresh window (DingTalk punishes the 21st message in a minute with a
        10-minute block)."""
        now = self.clock()
        self._slots.setdefault(budget.key, []).extend(Slot(now - age) for age in ages)

    def stamp(self, slot: Slot) -> None:
        """The message was answered now: its window runs from here."""
        slot.at = max(slot.at, self.clock())

    def release(self, budget: Budget, slot: Slot) -> None:
        """A slot taken for a message that was never sent."""
        slots = self._slots.get(budget.key, [])
        if slot in slots:
            slots.remove(slot)


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
        self.cfg = cfg
        self.clock = clock
        self.rng = rng or random.Random()
        self.limiter = Limiter(monotonic)
        self.digest_after = digest_after
        self._seeded = False
        self.last_progress = time.monotonic()
        self.draining = False
        # A hook awaited before each send (the daemon's test-only failpoints).
        self.before_send: Callable[[], Awaitable[None]] | None = None
        self.no_digest: set[str] = set()  # channels whose digest was refused as a message
        self._waiting: dict[str, float] = {}  # channel → seconds until its budget has a slot
        metrics.watch_dead(self.dead_counts)

    def dead_counts(self) -> dict[str, int]:
        """Dead letters per channel, for `pollerd_deliveries_dead` (read when scraped, from the
        scrape's thread: `pollerd deliveries retry` in another process empties them, so a
        counter kept here would drift). One indexed read (`delivery_due` starts with state)."""
        query = (
            select(DELIVERY.c.channel, func.count())
            .where(DELIVERY.c.state == "dead")
            .group_by(DELIVERY.c.channel)
        )
        with self.store.engine.connect() as conn:
            return {str(channel): int(count) for channel, count in conn.execute(query)}

    def backoff(self, attempts: int, retry_after: float | None) -> float:
        """Full jitter (AWS architecture blog): spreads a burst of failures over the window
        instead of retrying them in lock-step; never sooner than the receiver asked."""
        ceiling = min(
            self.cfg.backoff_max.total_seconds(),
            self.cfg.backoff_base.total_seconds() * 2 ** max(0, attempts - 1),
        )
        delay = self.rng.uniform(0, ceiling)
        return max(delay, retry_after or 0.0)

    async def run_once(self, limit: int = 200, *, skip: set[int] | None = None) -> Round:
        """One batch: every due row (up to `limit`), sent concurrently, each outcome committed."""
        self.last_progress = time.monotonic()
        self.seed_limiter()
        now = self.clock()
        budgets = {name: ch.budget() for name, ch in self.channels.items()}
        free = [name for name, budget in budgets.items() if budget is None]
        due = self.store.due(now, limit, free)
        if skip is not None:
            due = [d for d in due if d.id not in skip]
            skip.update(d.id for d in due)
        result = Round()
        jobs: list[Coroutine[Any, Any, None]] = [self._deliver(d, result) for d in due]
        self._waiting = {}
        for name, budget in budgets.items():
            if budget is not None:
                jobs += self._plan(name, budget, now, result, skip)
        if not jobs:
            return result
        gate = asyncio.Semaphore(self.cfg.concurrency)

        async def one(job: Coroutine[Any, Any, None]) -> None:
            async with gate:
                await job

        await asyncio.gather(*(one(j) for j in jobs))
        self.last_progress = time.monotonic()
        return result

    def _plan(
        self, name: str, budget: Budget, now: float, result: Round, skip: set[int] | None
    ) -> list[Coroutine[Any, Any, None]]:
        """This round's sends to one budgeted destination: one digest when its backlog is
        more than the budget lets out within `digest_after`, else one send per free slot."""
        backlog = self.store.backlog(name, now, DIGEST_MAX, skip=skip or ())
        if not backlog:
            return []
        digest = (
            len(backlog) > max(1, budget.capacity(self.digest_after)) and name not in self.no_digest
        )
        seen: set[tuple[str, str]] = set()
        heads = []  # the rows `due` would hand out: the first pending one of each order
        for row in backlog:
            if (row.store, row.order_id) not in seen:
                seen.add((row.store, row.order_id))
                heads.append(row)
        slots = self.limiter.take(budget, 1 if digest else len(heads))
        chosen = backlog if digest else heads[: len(slots)]
        result.waiting += len(backlog) - len(chosen) if slots else len(backlog)
        if not slots or len(chosen) < len(heads):
            self._waiting[name] = self.limiter.wait(budget)
        if not slots:
            return []
        if skip is not None:
            skip.update(d.id for d in chosen)
        if digest:
            return [self._digest(name, budget, backlog, slots[0], result)]
        return [self._deliver(d, result, slot) for d, slot in zip(chosen, slots, strict=False)]

    async def drain(self, *, deadline: float | None = None) -> Round:
        """Send what is due now, each row at most once (`once` must not burn a row's attempts
        in one run just because full jitter drew a tiny back-off)."""
        total = Round()
        attempted: set[int] = set()
        while deadline is None or time.monotonic() < deadline:
            batch = await self.run_once(skip=attempted)
            total.waiting = batch.waiting  # what the last look still had to leave waiting
            if not batch.claimed:
                break
            total.sent += batch.sent
            total.retried += batch.retried
            total.dead += batch.dead
            total.held += batch.held
            total.sent_ids.extend(batch.sent_ids)
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
        """Loop until `stop`: a commit that created deliveries sets `wake`; otherwise sleep until
        the next row is due (at most 1 s, so a row made due by another process is not missed)."""
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception:  # noqa: BLE001 - a bad row must not kill the loop; it is logged
                logger.exception("delivery loop: unexpected error; continuing")
            # A destination out of budget is woken by its limiter, not by its (overdue) rows.
            next_at = self.store.next_due_at(c for c in self.channels if c not in self._waiting)
            wait = 1.0 if next_at is None else min(1.0, max(0.0, next_at - self.clock()))
            if self._waiting:
                wait = min(wait, max(0.01, min(self._waiting.values())))
            wake.clear()
            stopper = asyncio.ensure_future(stop.wait())
            waker = asyncio.ensure_future(wake.wait())
            await asyncio.wait({stopper, waker}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            waker.cancel()
            self.last_progress = time.monotonic()

    async def _deliver(self, due: Due, result: Round, slot: Slot | None = None) -> None:
        """`draining` (SIGTERM, or a reload swapping the channels) starts no new send: the row
        is left exactly as it was (no attempt charged, no back-off), its budget slot given
        back, while sends already in flight finish and record their outcome. Every finished
        send is a heartbeat (`last_progress`), so a loop stuck in one send is seen within one
        send timeout, not at the end of a 200-row round."""
        if self.draining:
            if slot is not None:
                budget = self.channels[due.channel].budget()
                if budget is not None:
                    self.limiter.release(budget, slot)
            return
        if self.before_send is not None:
            await self.before_send()
        # Every log line of this send carries channel and event (journald CHANNEL=, EVENT_ID=).
        try:
            with logger.contextualize(channel=due.channel, event_id=due.event_id):
                await self._deliver_one(due, result, slot)
        finally:
            self.last_progress = time.monotonic()

    async def _deliver_one(self, due: Due, result: Round, slot: Slot | None = None) -> None:
        channel = self.channels[due.channel]
        event = Event.from_json(due.payload)
        body = due.body
        if body is None:
            body = channel.render(event)
            # Persist before sending: a crash after the send must resend the same bytes.
            self.store.mark(due.id, state="pending", attempts=due.attempts, body=body)
        try:
            outcome = await asyncio.wait_for(
                channel.send(event, body), self.cfg.send_timeout.total_seconds()
            )
        except TimeoutError:
            outcome = SendResult.retry("send timed out")
        except Exception as exc:  # noqa: BLE001 - an adapter bug is retried, never lost
            outcome = SendResult.retry(f"{type(exc).__name__}: {exc}")
        if slot is not None:
            self.limiter.stamp(slot)
        attempts = due.attempts + 1
        if outcome.kind == "ok":
            self.store.mark(due.id, state="sent", attempts=attempts, body=body)
            metrics.delivery(due.channel, "sent", latency=_latency(event))
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
            metrics.delivery(due.channel, _refused(outcome))
            result.held += 1
            return
        now = self.clock()
        expired = now - due.created_at >= self.cfg.dead_after.total_seconds()
        if outcome.kind == "permanent" or attempts >= self.cfg.max_attempts or expired:
            why = (
                outcome.detail
                if outcome.kind == "permanent"
                else (f"gave up after {attempts} attempts: {outcome.detail}")
            )
            logger.error("delivery {} to {} is dead: {}", due.event_id, due.channel, why)
            self.store.mark(due.id, state="dead", attempts=attempts, body=body, error=why)
            metrics.delivery(due.channel, "permanent" if outcome.kind == "permanent" else "dead")
            result.dead += 1
            return
        delay = self.backoff(attempts, outcome.retry_after)
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
            self._alert_channel_failing(channel, detail)

    def _alert_channel_failing(self, channel: str, detail: str) -> None:
        """Tell the people on *other* channels that alerts to `channel` are held: a broken
        WeCom key must not fail silently just because the alert about it would go to WeCom
        too. Once per breakage (the id carries when it broke); routed like any event
        (`events = ["alert.*"]`), never to the failing channel itself."""
        now = datetime.now(UTC)
        event = Event(
            type="alert.channel_failing",
            store="pollerd",
            platform="pollerd",
            order_id=f"{channel}@{int(now.timestamp())}",
            occurred_at=now,
            detected_at=now,
            test=False,
            order={"id": channel, "number": channel},
            reason=f"channel {channel}: {detail}; fix it, then `pollerd deliveries retry "
            f"--channel {channel}`",
        )
        targets = [c for c in channels_for(event, self.routes) if c != channel]
        if not targets:
            logger.warning(
                "no route sends alert.* to another channel: nobody is told that {} is held",
                channel,
            )
            return
        self.store.commit_page(event.store, [], [(event, targets)])

    async def _digest(
        self, name: str, budget: Budget, rows: list[Due], slot: Slot, result: Round
    ) -> None:
        """Send `rows` as one message; on success every row is sent with the digest's id (one
        transaction), otherwise none is and each fails as its own send would have. Draining
        and the heartbeat as in `_deliver`."""
        if self.draining:
            self.limiter.release(budget, slot)
            return
        try:
            await self._digest_one(name, budget, rows, slot, result)
        finally:
            self.last_progress = time.monotonic()

    async def _digest_one(
        self, name: str, budget: Budget, rows: list[Due], slot: Slot, result: Round
    ) -> None:
        channel = self.channels[name]
        events = [Event.from_json(row.payload) for row in rows]
        # Unique among sent digests: a row is marked sent once, so its id starts one digest.
        digest_id = f"dg-{rows[0].id}-{rows[-1].id}-{len(rows)}"
        try:
            rendered = channel.render_digest(events)
        except Exception:  # noqa: BLE001 - a digest bug must not hold the alerts: send them singly
            logger.exception("channel {}: cannot render a digest; sending one by one", name)
            self.no_digest.add(name)
            self.limiter.release(budget, slot)
            return
        try:
            outcome = await asyncio.wait_for(
                channel.send(events[0], rendered), self.cfg.send_timeout.total_seconds()
            )
        except TimeoutError:
            outcome = SendResult.retry("send timed out")
        except Exception as exc:  # noqa: BLE001 - an adapter bug is retried, never lost
            outcome = SendResult.retry(f"{type(exc).__name__}: {exc}")
        self.limiter.stamp(slot)
        if outcome.kind == "ok":
            marked = self.store.mark_digest([row.id for row in rows], digest_id)
            for event in events[:marked]:  # rows sent meanwhile by another process: not ours
                metrics.delivery(name, "sent", latency=_latency(event))
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
                metrics.delivery(name, _refused(outcome))
            result.held += len(rows)
            return
        now = self.clock()
        # One delay for all: the rows stay together and go out as one digest again.
        delay = self.backoff(max(row.attempts for row in rows) + 1, outcome.retry_after)
        logger.info("{} to {} failed; retry in {:.1f}s", detail, name, delay)
        for row in rows:
            attempts = row.attempts + 1
            expired = now - row.created_at >= self.cfg.dead_after.total_seconds()
            if attempts >= self.cfg.max_attempts or expired:
                why = f"gave up after {attempts} attempts: {detail}"
                logger.error("delivery {} to {} is dead: {}", row.event_id, name, why)
                self.store.mark(row.id, state="dead", attempts=attempts, body=row.body, error=why)
                metrics.delivery(name, "dead")
                result.dead += 1
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


def _latency(event: Event) -> float:
    """sent_at - detected_at, on the wall clock `Store.mark` stamps `sent_at` with."""
    return time.time() - event.detected_at.timestamp()


def _refused(outcome: SendResult) -> str:
    """A refusal for good: "suppressed" when the recipients opted out or blocked pollerd (an
    SMS STOP, a blocked bot), "permanent" for a broken channel or message."""
    return "suppressed" if outcome.scope == "recipient" else "permanent"
