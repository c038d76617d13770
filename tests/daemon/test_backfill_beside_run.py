"""`pollerd backfill` beside `pollerd run` on the same Shopify shop (one cost bucket): the
backfill pulls the bucket as hard as its budget allows, and the live daemon still detects new
orders within its usual latency, with no request refused (THROTTLED) on either side.

The shop is the loopback simulator with a small bucket (1000 points at 100/s), so the
backfill is bound by the bucket for the whole test. The backfill's window ends before the live
orders are placed (`--until`), so it never records them first (a backfill without --notify
records history silently).

Proved able to fail: with the backfill's floor at a tenth of the bucket instead of
`backfill_keep`, the same test gets a THROTTLED answer and the live latency up from 1.1 s to
2.5 s (measured once, 2026-12-06)."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pollerd_sim import ShopSim, WebhookSink
from pollerd_sim.harness import SHOPIFY_TOKEN, Daemon, pollerd_env, write_config

PAST = timedelta(hours=2)


class ShopClock:
    """The shop's clock: two hours ago, a millisecond further per call, while the history is
    seeded; the real time once `now()` was called."""

    def __init__(self) -> None:
        self.past: datetime | None = datetime.now(UTC) - PAST

    def __call__(self) -> datetime:
        if self.past is None:
            return datetime.now(UTC)
        self.past += timedelta(milliseconds=1)
        return self.past

    def now(self) -> None:
        self.past = None


def until(condition: object, timeout: float) -> bool:
    """Poll `condition()` (a state of the simulator) until true or `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def detect(shop: ShopSim, sink: WebhookSink) -> float:
    """Place one order; seconds until its order.created reached the sink."""
    started = time.monotonic()
    oid = shop.create_order(financial="PAID")
    assert sink.wait_for_ids({f"shop:{oid}:order.created"}, timeout=60), "never detected"
    return time.monotonic() - started


def iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_live_daemon_keeps_detecting_while_a_backfill_pulls_the_same_bucket(
    tmp_path: Path,
) -> None:
    clock = ShopClock()
    with (
        ShopSim(access_token=SHOPIFY_TOKEN, bucket=1000, restore=100.0, clock=clock) as shop,
        WebhookSink() as sink,
    ):
        seeded_from = datetime.now(UTC) - PAST
        for _ in range(2000):
            shop.create_order(financial="PAID")
        seeded_to = clock() + timedelta(seconds=1)
        clock.now()
        # The backfill may take the whole restore rate: only its floor protects the live pass.
        store = {"start_from": "now", "backfill_max_budget": 1.0}
        config = write_config(tmp_path, shop.url, sink.url, platform="shopify", store=store)
        daemon = Daemon(config, tmp_path)
        backfill: subprocess.Popen[str] | None = None
        try:
            daemon.start()
            usual = max(detect(shop, sink) for _ in range(2))
            backfill = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pollerd",
                    "backfill",
                    "--config",
                    str(config),
                    "--store",
                    "shop",
                    "--since",
                    iso(seeded_from - timedelta(minutes=1)),
                    "--until",
                    iso(seeded_to),
                ],
                env=pollerd_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            # The backfill has drunk the bucket down to its floor (3/4 full).
            assert until(lambda: shop.bucket.available < 800, 60), "the backfill never pulled"
            during = []
            for _ in range(3):
                during.append(detect(shop, sink))
                assert backfill.poll() is None, "the backfill ended before the live orders"
            out, err = backfill.communicate(timeout=300)
            assert backfill.returncode == 0, out + err
        finally:
            if backfill is not None and backfill.poll() is None:
                backfill.kill()
                backfill.communicate()
            daemon.close()
        stats = shop.stats()
    assert stats["throttled"] == 0, stats
    assert max(during) <= max(3 * usual, usual + 4.0), (usual, during, daemon.output()[-3000:])
    # The backfill recorded the whole history, silently: only the live orders were announced.
    announced = {str(r.webhook_id).split(":")[1] for r in sink.receipts}
    assert len(announced) == 5, sorted(announced)
