"""`pollerd.sources.ratelimit` on fake time: spacing, serialisation, back-off, Retry-After."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from pollerd.sources.ratelimit import (
    MAX_RETRY_AFTER,
    Backoff,
    CostBudget,
    RequestPacer,
    TooSoon,
    Waits,
    parse_retry_after,
)
from tests.support.clocks import FakeTime


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


# --- CostBudget (Shopify GraphQL cost bucket) ----------------------------------------------------


def budget(share: float = 0.5, **status: float) -> tuple[CostBudget, FakeTime]:
    """A budget that has seen one answer: by default a 2000-point bucket, full, 100 points/s."""
    t = FakeTime()
    b = CostBudget(share, t.clock, t.sleep)
    b.observe(
        {
            "maximumAvailable": status.get("maximum", 2000.0),
            "currentlyAvailable": status.get("available", 2000.0),
            "restoreRate": status.get("restore", 100.0),
        }
    )
    return b, t


def test_budget_starts_from_the_smallest_known_bucket_until_an_answer_says_otherwise() -> None:
    t = FakeTime()
    b = CostBudget(0.5, t.clock, t.sleep)
    assert (b.maximum, b.restore, b.known) == (1000.0, 50.0, False)
    assert b.max_cost() == 500  # half of the smallest bucket: safe whatever the plan
    b.observe({"maximumAvailable": 2000.0, "currentlyAvailable": 1800, "restoreRate": 100.0})
    assert (b.maximum, b.restore, b.known, b.available()) == (2000.0, 100.0, True, 1800.0)
    assert b.max_cost() == 1000  # Shopify's own per-query limit caps it


def test_budget_request_that_fits_the_headroom_goes_at_once() -> None:
    b, t = budget()
    assert asyncio.run(b.reserve(300)) == 0.0
    assert t.sleeps == []
    assert b.available() == 1700.0


def test_budget_leaves_the_other_clients_share_of_the_bucket() -> None:
    """Another client drained the bucket to 1100 of 2000: a 300-point query would leave 800,
    under the 1000 that half the bucket reserves for others, so it waits (300+1000−1100)/100."""
    b, t = budget(available=1100.0)
    asyncio.run(b.reserve(300))
    assert t.sleeps == pytest.approx([2.0])
    assert b.available() == pytest.approx(1000.0)  # exactly the floor after the spend


def test_budget_model_refills_with_the_clock_between_answers() -> None:
    b, t = budget(available=500.0)
    t.now += 3.0
    assert b.available() == pytest.approx(800.0)
    t.now += 100.0
    assert b.available() == 2000.0  # never above maximumAvailable


def test_budget_caps_the_average_spend_at_the_share_of_the_restore_rate() -> None:
    """Nobody else is spending and every answer says the bucket is full: pollerd may still
    spend only share × restoreRate on average (plus one allowance-sized burst)."""
    b, t = budget(share=0.25)  # allowance 500 points, refilled at 25 points/s
    start = t.now

    async def run() -> float:
        spent = 0.0
        for _ in range(200):
            await b.reserve(100)
            b.observe({"maximumAvailable": 2000, "currentlyAvailable": 2000, "restoreRate": 100})
            b.settle(100, 100)
            spent += 100
        return spent

    spent = asyncio.run(run())
    elapsed = t.now - start
    assert spent <= 0.25 * 100 * elapsed + b.capacity + 1e-6
    assert spent / elapsed == pytest.approx(25.0, rel=0.05)  # and it does use its share
    assert b.spent == spent


def test_budget_refunds_what_a_query_did_not_cost() -> None:
    """Requested 400, actually 40: the 360 come back to the allowance at once."""
    b, _t = budget()
    asyncio.run(b.reserve(400))
    b.settle(400, 40)
    assert b.allowance() == pytest.approx(1000 - 40)
    assert b.spent == 40


def test_budget_throttled_answers_cost_nothing_but_reset_the_model() -> None:
    b, t = budget()
    asyncio.run(b.reserve(752))
    b.observe({"maximumAvailable": 1000.0, "currentlyAvailable": 666, "restoreRate": 50.0})
    b.settle(752, 0)
    assert (b.maximum, b.restore) == (1000.0, 50.0)
    assert b.available() == 666.0
    assert b.allowance() == 500.0  # clamped to the new, smaller share
    asyncio.run(b.reserve(200))  # 200 + floor 500 − 666 = 34 points short at 50/s
    assert t.sleeps == pytest.approx([0.68])


def test_budget_request_larger_than_the_share_waits_for_a_full_allowance_and_goes_into_debt() -> (
    None
):
    b, t = budget(share=0.1, maximum=1000.0, available=1000.0, restore=50.0)  # allowance 100
    assert b.max_cost() == 100
    asyncio.run(b.reserve(250))  # bucket: needs min(250+900, 1000) = full, it is; allowance full
    assert t.sleeps == []
    assert b.allowance() == pytest.approx(-150.0)
    asyncio.run(b.reserve(50))  # pays the debt first: (50 + 150) / (0.1 × 50) = 40 s
    assert t.sleeps == pytest.approx([40.0])


def test_budget_ignores_unreadable_throttle_status() -> None:
    b, _t = budget(available=1234.0)
    for junk in (
        None,
        "x",
        {},
        {"maximumAvailable": "a"},
        {"maximumAvailable": 0, "currentlyAvailable": 0, "restoreRate": 0},
    ):
        b.observe(junk)
    assert (b.maximum, b.available()) == (2000.0, 1234.0)


def test_budget_share_must_be_a_fraction() -> None:
    for share in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="share"):
            CostBudget(share)


def test_waits_interrupt_cuts_a_sleep_short_and_every_later_one() -> None:
    """A stop cancels a pass asleep in its pacing at once (nothing is in flight there), and a
    pass that reaches a wait after the stop does not start sleeping."""
    waits = Waits()

    async def main() -> tuple[bool, bool, float]:
        asleep = asyncio.create_task(waits.sleep(3600))
        await asyncio.sleep(0)  # it is asleep now
        started = asyncio.get_running_loop().time()
        waits.interrupt()
        await asyncio.wait({asleep})
        late = asyncio.create_task(waits.sleep(3600))
        await asyncio.wait({late})
        return asleep.cancelled(), late.cancelled(), asyncio.get_running_loop().time() - started

    first, later, took = asyncio.run(main())
    assert first and later
    assert took < 1.0
