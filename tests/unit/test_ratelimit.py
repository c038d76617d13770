"""`pollerd.sources.ratelimit` on fake time: spacing, serialisation, back-off, Retry-After."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from pollerd.sources.ratelimit import (
    MAX_RETRY_AFTER,
    Backoff,
    RequestPacer,
    TooSoon,
    parse_retry_after,
)


class FakeTime:
    """A monotonic clock that only moves when someone sleeps; records every sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def pacer(per_minute: float = 60, **kw: object) -> tuple[RequestPacer, FakeTime]:
    t = FakeTime()
    return RequestPacer(per_minute, t.clock, t.sleep, **kw), t  # type: ignore[arg-type]


async def requests(p: RequestPacer, n: int, t: FakeTime, took: float = 0.0) -> list[float]:
    """Start `n` requests one after the other; return their start times."""
    starts = []
    for _ in range(n):
        async with p.slot():
            starts.append(t.now)
            t.now += took
        p.success()
    return starts


def test_first_request_is_immediate_then_spaced_by_the_ceiling() -> None:
    p, t = pacer(per_minute=120)
    starts = asyncio.run(requests(p, 4, t))
    assert starts == [1000.0, 1000.5, 1001.0, 1001.5]
    assert t.sleeps == [0.5, 0.5, 0.5]


def test_time_spent_in_a_request_counts_towards_the_spacing() -> None:
    p, t = pacer(per_minute=60)
    starts = asyncio.run(requests(p, 3, t, took=0.75))
    assert starts == [1000.0, 1001.0, 1002.0]
    assert t.sleeps == pytest.approx([0.25, 0.25])


def test_one_request_in_flight() -> None:
    """Concurrent callers are serialised: the second enters only after the first left."""
    p, _t = pacer(per_minute=60_000)
    inside = 0
    peak = 0

    async def one() -> None:
        nonlocal inside, peak
        async with p.slot():
            inside += 1
            peak = max(peak, inside)
            await asyncio.sleep(0)  # yield to the other tasks while "in flight"
            inside -= 1

    async def main() -> None:
        await asyncio.gather(*(one() for _ in range(5)))

    asyncio.run(main())
    assert peak == 1


def test_backoff_doubles_on_failure_up_to_the_cap() -> None:
    b = Backoff(factor=2, max_multiplier=8)
    seen = []
    for _ in range(5):
        b.failure()
        seen.append(b.multiplier)
    assert seen == [2, 4, 8, 8, 8]


def test_backoff_recovers_gradually() -> None:
    b = Backoff(factor=2, recover_after=3)
    b.failure()
    b.failure()
    assert b.multiplier == 4
    for _ in range(2):
        b.success()
    assert b.multiplier == 4  # two good answers are not enough
    b.success()
    assert b.multiplier == 2
    for _ in range(3):
        b.success()
    assert b.multiplier == 1
    for _ in range(10):
        b.success()
    assert b.multiplier == 1


def test_a_failure_resets_the_recovery_streak() -> None:
    b = Backoff(factor=2, recover_after=3)
    b.failure()
    b.success()
    b.success()
    b.failure()
    b.success()
    b.success()
    assert b.multiplier == 4


def test_failures_stretch_the_spacing_and_successes_shrink_it() -> None:
    p, t = pacer(per_minute=60, backoff=Backoff(recover_after=1))

    async def main() -> None:
        async with p.slot():
            p.failure()
        async with p.slot():  # 2 s after the first
            p.failure()
        async with p.slot():  # 4 s after the second
            p.success()
        async with p.slot():  # back to 2 s
            p.success()
        async with p.slot():  # and 1 s
            pass

    asyncio.run(main())
    assert t.sleeps == [2.0, 4.0, 2.0, 1.0]


def test_backoff_spacing_is_capped() -> None:
    p, _t = pacer(per_minute=6, max_spacing=30.0)  # 10 s spacing, 32x would be 320 s
    for _ in range(6):
        p.failure()
    assert p.spacing == 30.0
    slow, _ = pacer(per_minute=0.5, max_spacing=30.0)  # configured slower than the cap
    assert slow.spacing == 120.0


def test_retry_after_is_slept_through_when_short() -> None:
    p, t = pacer(per_minute=600, max_wait=10)

    async def main() -> None:
        async with p.slot():
            p.failure(retry_after=7)
        async with p.slot():
            pass

    asyncio.run(main())
    assert t.sleeps == [7.0]


def test_long_retry_after_gives_the_call_back_without_a_request() -> None:
    p, t = pacer(per_minute=600, max_wait=10)
    entered = []

    async def main() -> None:
        async with p.slot():
            p.failure(retry_after=120)
        t.now += 50
        with pytest.raises(TooSoon) as info:
            async with p.slot():
                entered.append(True)
        assert info.value.wait == pytest.approx(70)
        t.now += 65  # 5 s left: short enough to sleep through
        async with p.slot():
            entered.append(True)

    asyncio.run(main())
    assert entered == [True]
    assert t.sleeps == pytest.approx([5.0])


def test_retry_after_never_shortens_an_earlier_pause() -> None:
    p, _t = pacer(per_minute=600, max_wait=100)
    p.failure(retry_after=50)
    p.failure(retry_after=5)
    assert p.delay() == pytest.approx(50)


def test_delay_reports_the_wait_without_taking_a_slot() -> None:
    p, t = pacer(per_minute=30)
    assert p.delay() == 0
    asyncio.run(requests(p, 1, t))
    assert p.delay() == 2.0
    t.now += 1.5
    assert p.delay() == pytest.approx(0.5)


def test_rejects_a_nonpositive_ceiling() -> None:
    with pytest.raises(ValueError, match="positive"):
        RequestPacer(0)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("30", 30.0),
        (" 2 ", 2.0),
        ("1.5", 1.5),
        ("-4", 0.0),
        ("999999", MAX_RETRY_AFTER),
        ("soon", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_parse_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_parse_retry_after_http_date() -> None:
    now = datetime(2026, 11, 22, 9, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert later.endswith("GMT")
    assert parse_retry_after(later, now=now.timestamp()) == pytest.approx(90)
    past = format_datetime(now - timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(past, now=now.timestamp()) == 0.0
