"""The outbox loop: claim due deliveries, render once, send, record the outcome.

At-least-once, stated plainly: a row is marked sent only after the channel accepted it, so a
crash between the two sends it again on restart (same body, same idempotency key). Nothing is
sent inside the transaction that created the row, and nothing is ever deleted for failing:
retryable failures back off exponentially with full jitter (honouring the channel's own wait),
and a row becomes a dead letter only after `max_attempts` or `dead_after`, listed and retryable
with `pollerd deliveries`. A channel that is broken as a whole (410 Gone, revoked key) is held,
not drained into the dead-letter list.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from loguru import logger

from pollerd.channels.base import Channel, SendResult
from pollerd.config import DeliveryConfig
from pollerd.model import Event
from pollerd.store import Due, Store


@dataclass
class Round:
    sent: int = 0
    retried: int = 0
    dead: int = 0
    held: int = 0
    sent_ids: list[str] = field(default_factory=list)

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
    ) -> None:
        self.store = store
        self.channels = channels
        self.cfg = cfg
        self.clock = clock
        self.rng = rng or random.Random()
        self.last_progress = time.monotonic()

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
        due = self.store.due(self.clock(), limit, self.channels)
        if skip is not None:
            due = [d for d in due if d.id not in skip]
            skip.update(d.id for d in due)
        result = Round()
        if not due:
            return result
        gate = asyncio.Semaphore(self.cfg.concurrency)

        async def one(item: Due) -> None:
            async with gate:
                await self._deliver(item, result)

        await asyncio.gather(*(one(d) for d in due))
        self.last_progress = time.monotonic()
        return result

    async def drain(self, *, deadline: float | None = None) -> Round:
        """Send what is due now, each row at most once (`once` must not burn a row's attempts
        in one run just because full jitter drew a tiny back-off)."""
        total = Round()
        attempted: set[int] = set()
        while deadline is None or time.monotonic() < deadline:
            batch = await self.run_once(skip=attempted)
            if not batch.claimed:
                break
            total.sent += batch.sent
            total.retried += batch.retried
            total.dead += batch.dead
            total.held += batch.held
            total.sent_ids.extend(batch.sent_ids)
        return total

    async def run(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        """Loop until `stop`: a commit that created deliveries sets `wake`; otherwise sleep until
        the next row is due (at most 1 s, so a row made due by another process is not missed)."""
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception:  # noqa: BLE001 - a bad row must not kill the loop; it is logged
                logger.exception("delivery loop: unexpected error; continuing")
            next_at = self.store.next_due_at(self.channels)
            wait = 1.0 if next_at is None else min(1.0, max(0.0, next_at - self.clock()))
            wake.clear()
            stopper = asyncio.ensure_future(stop.wait())
            waker = asyncio.ensure_future(wake.wait())
            await asyncio.wait({stopper, waker}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            waker.cancel()
            self.last_progress = time.monotonic()

    async def _deliver(self, due: Due, result: Round) -> None:
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
        attempts = due.attempts + 1
        if outcome.kind == "ok":
            self.store.mark(due.id, state="sent", attempts=attempts, body=body)
            result.sent += 1
            result.sent_ids.append(due.event_id)
            return
        if outcome.kind == "permanent" and outcome.scope == "channel":
            logger.error(
                "channel {} is broken: {}; its deliveries are held until "
                "`pollerd deliveries retry --channel {}`",
                due.channel,
                outcome.detail,
                due.channel,
            )
            self.store.set_channel_broken(due.channel, outcome.detail)
            self.store.mark(
                due.id, state="pending", attempts=attempts, body=body, error=outcome.detail
            )
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
        result.retried += 1
