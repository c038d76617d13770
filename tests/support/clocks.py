"""Clocks a test moves by hand, injected where pollerd takes a clock (never patched in).

`FakeTime` is a source's monotonic clock and sleep: time moves only when the code under test
sleeps, and every sleep is recorded (pacing, Retry-After, back-off are asserted from
`sleeps`). `SecondsClock` and `WallClock` are callables returning a number or a datetime that
only the test moves (`advance`): the delivery loop's and the simulators' clocks.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta


class FakeTime:
    """`clock()` and `sleep()` for a source or a rate limiter: time moves only when it sleeps."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class SecondsClock:
    """Seconds (monotonic or Unix) that move only when the test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float = 1.0) -> float:
        self.now += seconds
        return self.now


class WallClock:
    """An aware UTC datetime that moves only when the test says so (a simulator's clock:
    orders get distinct, controlled timestamps)."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now if now is not None else datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float = 1.0) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def due_clock() -> SecondsClock:
    """The delivery loop's wall clock, an hour ahead of the real time: every row that
    `commit_page` stamps with the real time is due however slow the machine (back-offs are
    waited out by moving it)."""
    return SecondsClock(time.time() + 3600.0)
