"""Fault matrix row 1 (research §B.6): SIGKILL `pollerd run` at random moments while orders
change. Nothing may be lost; a duplicate may only repeat an id that was already delivered.
The same scenario against a deliberately broken variant (no read overlap) must lose orders,
which proves this test can fail."""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pollerd_sim import WebhookSink, WooSim
from pollerd_sim.harness import write_config

pytestmark = pytest.mark.fault
NIGHTLY = os.environ.get("POLLERD_FAULT_SCALE") == "nightly"


def drive(sim: WooSim, orders: int, seconds: float, seed: int) -> set[str]:
    """Create, pay and sometimes cancel `orders` orders over `seconds`; return expected ids."""
    rng = random.Random(seed)
    expected: set[str] = set()
    ids: list[int] = []
    steps = orders * 2
    pause = seconds / steps
    for _ in range(orders):
        ids.append(sim.create_order(payment_method="stripe"))
        expected.add(f"shop:{ids[-1]}:order.created")
        time.sleep(pause)
    for oid in ids:
        sim.set_status(oid, "processing")
        expected.add(f"shop:{oid}:order.paid")
        if rng.random() < 0.2:
            sim.set_status(oid, "cancelled")
            expected.add(f"shop:{oid}:order.cancelled")
        time.sleep(pause)
    return expected


def scenario(
    tmp: Path,
    factory: Any,
    *,
    orders: int,
    kills: int,
    seed: int,
    failpoint: str = "",
    settle: float = 90.0,
) -> tuple[set[str], Counter[str], list[str]]:
    with (
        WooSim(
            consumer_key="ck_test_0123456789", consumer_secret="cs_test_abcdefghijkl", seed=seed
        ) as sim,
        WebhookSink() as sink,
    ):
        config = write_config(tmp, sim.url, sink.url, store={"start_from": "now"})
        extra = {"POLLERD_FAILPOINT": failpoint} if failpoint else {}
        daemon = factory(config, **extra)
        daemon.start()
        expected: set[str] = set()
        driver = threading.Thread(
            target=lambda: expected.update(drive(sim, orders, seconds=12.0, seed=seed))
        )
        driver.start()
        rng = random.Random(seed)
        for _ in range(kills):
            time.sleep(rng.uniform(0.05, 12.0 / kills))
            daemon.kill()
            daemon.start()
        driver.join()
        sink.wait_for_ids(expected, timeout=settle)
        assert daemon.stop() == 0
        ids = sink.ids()
        return expected, Counter(ids), ids


def test_sigkill_during_changes_loses_nothing(tmp_path: Path, daemon_factory: Any) -> None:
    orders, kills = (5000, 200) if NIGHTLY else (500, 20)
    seed = int(os.environ.get("POLLERD_SEED", "7"))
    expected, counts, ids = scenario(
        tmp_path, daemon_factory, orders=orders, kills=kills, seed=seed
    )
    lost = expected - set(counts)
    assert not lost, f"seed {seed}: lost {len(lost)} events, e.g. {sorted(lost)[:5]}"
    assert set(counts) == expected, "events that should not exist were sent"
    duplicates = {k: v for k, v in counts.items() if v > 1}
    # At most one in-flight batch per kill can repeat; each repeat is an id already delivered.
    assert sum(v - 1 for v in duplicates.values()) <= kills * 8
    for key in duplicates:
        assert ids.index(key) < len(ids) - 1


def test_the_kill_test_catches_a_missing_overlap(tmp_path: Path, daemon_factory: Any) -> None:
    # Whether a run without overlap loses an order depends on where the kills land against the
    # page walks, which machine load shifts: one losing run in three seeds proves the point.
    for seed in (11, 12, 13):
        expected, counts, _ = scenario(
            tmp_path / str(seed),
            daemon_factory,
            orders=300,
            kills=3,
            seed=seed,
            failpoint="no_overlap",
            settle=20.0,
        )
        if expected - set(counts):
            return
    pytest.fail("without overlap orders must be lost (3 seeds lost none), or the test is blind")
