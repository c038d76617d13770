"""Client-side pacing of one store's API: one request in flight, a ceiling, adaptive back-off.

Why pollerd paces itself (research/woocommerce.md §1.7): WooCommerce has no rate limit of its own,
but each order page costs the shop PHP time, and the hosts and WAFs in front of it answer 429
(with or without `Retry-After`, RFC 6585 §4) or a 403 HTML page when a client is greedy. A
merchant's other apps share that budget, so polling must stay well under it and slow down on the
first sign of trouble instead of retrying into it.

- `RequestPacer` serialises requests (an `asyncio.Lock`: never two in flight to one store) and
  spaces their starts by `60 / max_per_minute` seconds, stretched by the `Backoff` multiplier.
- `Backoff` doubles the spacing after each failure (429, 5xx, WAF page, timeout) up to a cap and
  halves it again after a run of successes: slow down fast, recover gradually (AIMD-like).
- A server's `Retry-After` sets a "not before" time. Short waits are slept through; a wait
  longer than `max_wait` raises `TooSoon` without sending anything, so one poll pass does not
  hang for an hour and the caller can report "retry in N s".

Nothing here knows about HTTP libraries or platforms; clocks and sleeps are injected so tests run
on fake time. `CostBudget` models Shopify GraphQL's cost bucket for the same purpose. The daemon
injects `Waits.sleep`, so a stop cuts a pacing or budget wait short (nothing is in flight then).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

# The sources' one Retry-After parser is pollerd.http's (the channels use it too); re-exported
# here for the sources that import it from their pacing module.
from pollerd.errors import ControlFlow
from pollerd.failpoints import armed
from pollerd.http import MAX_RETRY_AFTER, parse_retry_after  # noqa: F401


class TooSoon(ControlFlow):
    """The server asked for a pause longer than the caller is willing to sleep in one call."""

    def __init__(self, wait: float) -> None:
        self.wait = wait
        super().__init__(f"the server asked to wait {wait:.0f} s before the next request")


class Waits:
    """The sleeps of a process's sources (pacing, Retry-After, Shopify's cost budget), which a
    stop interrupts: a pass asleep there has nothing in flight, so waiting out a back-off of up
    to two minutes would only delay the exit (and run into systemd's stop timeout).

    `interrupt()` cancels every task asleep here, and any task that reaches `sleep` afterwards.
    Cancelling is what the daemon does anyway to a pass that outlives the stop grace: every
    committed page is safe and the next pass resumes from the cursor."""

    def __init__(self) -> None:
        self.interrupted = False
        self._sleeping: set[asyncio.Task[Any]] = set()

    async def sleep(self, seconds: float) -> None:
        task = asyncio.current_task()
        if task is None:  # not in a task (never in pollerd): nothing to interrupt
            await asyncio.sleep(seconds)
            return
        if self.interrupted:
            task.cancel()
            await asyncio.sleep(0)  # raises CancelledError here, as an interrupted sleep does
        self._sleeping.add(task)
        try:
            await asyncio.sleep(seconds)
        finally:
            self._sleeping.discard(task)

    def interrupt(self) -> None:
        self.interrupted = True
        for task in list(self._sleeping):
            task.cancel()


@dataclass
class Backoff:
    """The adaptive part: a multiplier on the pacer's spacing.

    Each failure multiplies it by `factor` (up to `max_multiplier`); every `recover_after`
    consecutive successes divide it by `factor` again, so one lucky answer after a 429 does not
    put pollerd straight back at full speed.
    """

    factor: float = 2.0
    max_multiplier: float = 32.0
    recover_after: int = 5
    multiplier: float = 1.0
    streak: int = 0

    def failure(self) -> None:
        self.multiplier = min(self.multiplier * self.factor, self.max_multiplier)
        self.streak = 0

    def success(self) -> None:
        if self.multiplier <= 1.0:
            return
        self.streak += 1
        if self.streak >= self.recover_after:
            self.multiplier = max(1.0, self.multiplier / self.factor)
            self.streak = 0


class RequestPacer:
    """Spacing and serialisation of one store's requests (see the module docstring).

    Use `async with pacer.slot():` around exactly one request, then report the outcome with
    `success()` or `failure(retry_after)` (inside or after the block).
    """

    def __init__(
        self,
        max_per_minute: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        *,
        backoff: Backoff | None = None,
        max_wait: float = 60.0,
        max_spacing: float = 120.0,
    ) -> None:
        if max_per_minute <= 0:
            raise ValueError("max_per_minute must be positive")
        self.base_spacing = 60.0 / max_per_minute
        self.clock = clock
        self.sleep = sleep
        self.backoff = backoff or Backoff()
        self.max_wait = max_wait
        # The back-off may stretch the spacing up to this (or the configured spacing if that is
        # longer already): beyond it a pass would take longer than any poll interval.
        self.max_spacing = max(max_spacing, self.base_spacing)
        self._lock = asyncio.Lock()
        self._last_start: float | None = None
        self._not_before = -math.inf
        self._starts: deque[float] = deque()  # request starts in the last minute (metrics)

    @property
    def spacing(self) -> float:
        """Current minimum gap between request starts, back-off included."""
        if armed("unpaced"):  # test-only (failpoints.py): the ceiling row 5 must catch
            return 0.0
        return min(self.base_spacing * self.backoff.multiplier, self.max_spacing)

    def delay(self) -> float:
        """Seconds until the next request may start."""
        now = self.clock()
        earliest = self._not_before
        if self._last_start is not None:
            earliest = max(earliest, self._last_start + self.spacing)
        return max(0.0, earliest - now)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold the store's one request slot, after waiting out the spacing. Raises `TooSoon`
        (holding nothing) when a `Retry-After` pause has more than `max_wait` left."""
        async with self._lock:
            pause = self._not_before - self.clock()
            if pause > self.max_wait:
                raise TooSoon(pause)
            wait = self.delay()
            if wait > 0:
                await self.sleep(wait)
            self._last_start = self.clock()
            self._starts.append(self._last_start)
            while self._starts[0] <= self._last_start - 60.0:
                self._starts.popleft()
            yield

    def used_ratio(self) -> float:
        """Requests started in the last minute over the configured ceiling (0-1): how much of
        the budget pollerd allowed itself it is using (`pollerd_rate_budget_used_ratio`).
        Read-only, so a scrape thread may call it while the loop sends."""
        starts = tuple(self._starts)  # one C-level copy: the loop thread may append meanwhile
        since = self.clock() - 60.0
        return min(1.0, sum(at > since for at in starts) / (60.0 / self.base_spacing))

    def success(self) -> None:
        self.backoff.success()

    def failure(self, retry_after: float | None = None) -> None:
        """Slow down; with `retry_after`, also send nothing before that many seconds from now."""
        self.backoff.failure()
        if retry_after is not None and retry_after > 0:
            self._not_before = max(self._not_before, self.clock() + retry_after)


class CostBudget:
    """Shopify GraphQL's calculated-cost leaky bucket, modelled locally (research/shopify.md §1.4).

    Shopify keeps one bucket per app and shop (`maximumAvailable` points, refilled at
    `restoreRate` points/s) and reserves each query's `requestedQueryCost` before running it.
    Every other client of the same app token (a merchant's scripts, a second pollerd, the app's
    own UI) drinks from that bucket too, so pollerd limits itself twice:

    - *headroom*: a request is sent only when, after it, at least `(1 − share) × maximum` points
      would remain in the shared bucket (others' bursts still fit);
    - *rate*: pollerd's own spend is metered by a second bucket of `share × maximum` points that
      refills at `share × restoreRate`, so its average spend never exceeds that share of the
      restore rate, however long it runs (others' steady traffic still fits).

    The shared model is reset from `throttleStatus` on every answer (`observe`) and advanced by
    the clock in between; pollerd cannot see what others spend until the next answer, so the
    first request after someone else's burst may still land below the headroom (the server
    refuses it with THROTTLED if it does not fit at all). Until the first answer the smallest
    bucket seen in the wild (1000 points at 50/s) is assumed.

    A request larger than the share (only possible on a shop with a tiny bucket) waits for a
    full allowance and goes into debt, which later requests pay back: the average still holds.

    `keep` (a fraction of the bucket) replaces the headroom `1 − share`: a backfill
    (`pollerd backfill`, beside a running daemon) spends up to its own rate `share` but never
    drinks the bucket below `keep`, which leaves the live pass's headroom plus room for its
    next requests free (`backfill_keep`).
    """

    def __init__(
        self,
        share: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        *,
        maximum: float = 1000.0,
        restore: float = 50.0,
        max_query_cost: float = 1000.0,
        keep: float | None = None,
    ) -> None:
        if not 0 < share <= 1:
            raise ValueError("share must be in (0, 1]")
        if keep is not None and not 0 <= keep < 1:
            raise ValueError("keep must be in [0, 1)")
        if maximum <= 0 or restore <= 0:
            raise ValueError("maximum and restore must be positive")
        self.share = share
        self.clock = clock
        self.sleep = sleep
        self.maximum = float(maximum)
        self.restore = float(restore)
        self.max_query_cost = max_query_cost
        self.keep = keep
        self.known = False  # True once an answer told us the real bucket
        self.spent = 0.0  # points pollerd was charged (actual cost), for metrics
        self.waited = 0.0  # seconds slept in `reserve`
        self._at = clock()
        self._available = self.maximum
        self._allowance = self.capacity

    @property
    def floor(self) -> float:
        """Points pollerd leaves in the shared bucket for everyone else (with `keep`: for
        everyone else and the live pass)."""
        return (1.0 - self.share if self.keep is None else self.keep) * self.maximum

    @property
    def capacity(self) -> float:
        """Size of pollerd's own allowance: the largest burst it may spend at once."""
        return self.share * self.maximum

    def available(self) -> float:
        """Modelled points in the shared bucket now."""
        self._advance()
        return self._available

    def allowance(self) -> float:
        """Points pollerd may still spend now under its rate share (negative: in debt)."""
        self._advance()
        return self._allowance

    def used_ratio(self) -> float | None:
        """Share of the shop's whole bucket in use now (0-1, every app on the token), from the
        last `throttleStatus` plus the refill since; None until an answer told us the bucket.
        Unlike `available()` it moves nothing: a scrape thread calls it while the loop spends."""
        if not self.known:
            return None
        elapsed = max(0.0, self.clock() - self._at)
        available = min(self.maximum, self._available + elapsed * self.restore)
        return min(1.0, max(0.0, 1.0 - available / self.maximum))

    def max_cost(self) -> int:
        """The largest request pollerd should build (page and chunk sizing): within both
        Shopify's per-query limit, pollerd's share of the bucket and what it may drink of it
        above the floor (a request larger than that would wait for a full bucket)."""
        return max(1, int(min(self.max_query_cost, self.capacity, self.maximum - self.floor)))

    def delay(self, cost: float) -> float:
        """Seconds until a request of `cost` points fits both the headroom and the rate share
        (never, with the test-only failpoint `ignore_throttle`: the bug fault row 6 catches)."""
        self._advance()
        if armed("ignore_throttle"):
            return 0.0
        shared_need = min(cost + self.floor, self.maximum) - self._available
        own_need = min(cost, self.capacity) - self._allowance
        return max(0.0, shared_need / self.restore, own_need / (self.share * self.restore))

    async def reserve(self, cost: float) -> float:
        """Wait until `cost` fits, then take it from both buckets; returns the seconds waited.

        The wait is computed once and slept once: with one request in flight per store nothing
        else moves the model meanwhile, and the answer to this request corrects it anyway."""
        wait = self.delay(cost)
        if wait > 0:
            await self.sleep(wait)
            self.waited += wait
        self._advance()
        self._available -= cost
        self._allowance -= cost
        return wait

    def settle(self, reserved: float, spent: float) -> None:
        """The answer said what the request really cost (`actualQueryCost`; 0 when THROTTLED,
        which charges nothing): give the unspent part of the reservation back to the allowance."""
        self._advance()
        self._allowance = min(self.capacity, self._allowance + reserved - spent)
        self.spent += spent

    def observe(self, status: object) -> None:
        """Reset the shared model from a response's `extensions.cost.throttleStatus`; anything
        unreadable is ignored (the model keeps advancing on its own)."""
        if not isinstance(status, dict):
            return
        try:
            maximum = float(status["maximumAvailable"])
            available = float(status["currentlyAvailable"])
            restore = float(status["restoreRate"])
        except (KeyError, TypeError, ValueError):
            return
        if not (maximum > 0 and restore > 0 and math.isfinite(maximum + available + restore)):
            return
        self._advance()
        used = self.capacity - self._allowance
        self.maximum, self.restore = maximum, restore
        self._available = min(max(available, 0.0), maximum)
        if self.known:
            self._allowance = min(self._allowance, self.capacity)
        else:  # the assumed bucket was a guess: keep what was used, in the real one
            self._allowance = self.capacity - used
        self.known = True

    def _advance(self) -> None:
        now = self.clock()
        elapsed = max(0.0, now - self._at)
        self._at = now
        self._available = min(self.maximum, self._available + elapsed * self.restore)
        self._allowance = min(self.capacity, self._allowance + elapsed * self.share * self.restore)


def backfill_keep(live_share: float) -> float:
    """The floor (a fraction of the shop's bucket) a backfill leaves full: the live pass's
    headroom for other apps, `1 − live_share`, plus half the live share, so a live page of up
    to `live_share / 2` of the bucket (a probe costs 3 points, a page of changes tens) goes out
    at once however hard the backfill pulls. Above that floor the backfill spends at its own
    rate; below it only the live pass and other apps drink, so neither is ever refused."""
    return 1.0 - live_share / 2
