"""Sliding-window rate limits per destination (a chat robot's published budget), in memory,
and the bound on sends in flight (`Gates`); `first_set`, how a loop waits between rounds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from pollerd.channels.base import Budget

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

    def release(self, budget: Budget | None, slot: Slot | None) -> None:
        """A slot taken for a message that was never sent (a send without a budget took none)."""
        if budget is None or slot is None:
            return
        slots = self._slots.get(budget.key, [])
        if slot in slots:
            slots.remove(slot)


class Gates:
    """The concurrency bound of one loop: `concurrency` sends in flight across all channels,
    and each channel at most its even share of them (at least one), so a channel whose sends
    hang until the timeout can never hold the permits the others need."""

    def __init__(self, concurrency: int, channels: int) -> None:
        self.all = asyncio.Semaphore(concurrency)
        self.share = max(1, concurrency // max(1, channels))
        self._each: dict[str, asyncio.Semaphore] = {}

    async def run(self, channel: str, job: Coroutine[Any, Any, None]) -> None:
        gate = self._each.setdefault(channel, asyncio.Semaphore(self.share))
        async with gate, self.all:  # the channel's own share first: waiting holds no global permit
            await job


async def first_set(
    stop: asyncio.Event, wake: asyncio.Event, timeout: float
) -> asyncio.Event | None:
    """Wait until `stop` or `wake` is set (that one is returned) or `timeout` passes (None)."""
    waits = {asyncio.ensure_future(stop.wait()): stop, asyncio.ensure_future(wake.wait()): wake}
    done, pending = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    return next((waits[task] for task in done), None)
