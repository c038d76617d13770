"""What the fault tests share: their size (`sized`), a killed run and what must hold after it
(`killed`, `intact`), and the ground truth compared with the sink (`verdict`).

Sizes: research §B.6 gives each row a CI size (the whole `tests/fault/` under 6 minutes on two
cores) and a nightly one about ten times larger; `POLLERD_FAULT_SCALE=nightly` switches every
test to the second, read here only."""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

from pollerd_sim import WebhookSink, WooSim
from pollerd_sim.harness import pollerd, pollerd_env
from pollerd_sim.testing.faults import Report, check, receipts_of, woo_truth

NIGHTLY = os.environ.get("POLLERD_FAULT_SCALE", "ci") == "nightly"


def sized(ci: int) -> int:
    """A row's size: `ci` in CI, ten times that with POLLERD_FAULT_SCALE=nightly."""
    return ci * 10 if NIGHTLY else ci


def killed(*args: str, failpoint: str, **env: str) -> str:
    """Run `pollerd <args>` with `failpoint` armed; it must die of SIGKILL (its own). Returns
    its stderr (the failpoint's line says where it died)."""
    result = pollerd(*args, env=pollerd_env(POLLERD_FAILPOINT=failpoint, **env))
    assert result.returncode == -signal.SIGKILL, (
        f"{failpoint}: exit {result.returncode}, not killed\n{result.stdout}\n{result.stderr}"
    )
    assert f"FAILPOINT {failpoint.split(',')[-1].split(':')[0]}: SIGKILL" in result.stderr
    return result.stderr


def clean(*args: str, **env: str) -> None:
    result = pollerd(*args, env=pollerd_env(**env))
    assert result.returncode == 0, result.stdout + result.stderr


def intact(db: Path, last: list[tuple[str, float]] | None = None) -> list[tuple[str, float]]:
    """What every row asserts after a crash: `PRAGMA integrity_check` is ok, and no store's
    cursor moved backwards since `last` (this call's result from before). Returns the cursors."""
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        try:
            rows = conn.execute("SELECT store, updated_at FROM cursor ORDER BY store").fetchall()
        except sqlite3.OperationalError:  # killed before the schema was there
            rows = []
    cursors = [(str(s), float(u)) for s, u in rows]
    for before, now in zip(last or [], cursors, strict=False):
        assert now >= before, f"cursor moved backwards: {before} → {now}"
    return cursors


def verdict(sim: WooSim, sink: WebhookSink, *, store: str = "shop") -> Report:
    """The checker on the sim's history against the sink's 2xx receipts."""
    return check(woo_truth(sim.history(), store=store), receipts_of(sink.receipts))
