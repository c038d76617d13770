"""Fault matrix row 2 (research §B.6): pollerd kills itself (`POLLERD_FAILPOINT=<point>:n`, a
real SIGKILL) at each transaction boundary, three runs in a row, then runs clean.

What must hold, against the sim's history and the sink's receipts (`rig.verdict`): nothing
lost, nothing unexpected, per order in order; and duplicates only where the design admits
them: a kill after the channel accepted a message and before the row was marked repeats
exactly that message (same id, same bytes) once; every other point repeats nothing. Each row
also keeps `PRAGMA integrity_check` ok and the cursor never moving backwards.

`pollerd once` is the process killed: it walks every page before it sends anything, so where
the kill lands is decided by the failpoint alone, not by timing. One delivery at a time
(`concurrency = 1`): with more sends in flight a kill may repeat each of them (≤ in-flight).

The same run with the dual write (`mark_first`: the row marked sent before the send) loses an
alert, which proves the test can fail."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pollerd.sources.shopify.bulk import BATCH
from pollerd.store.migrate import LATEST
from pollerd_sim import ShopSim, WebhookSink, WooSim
from pollerd_sim.harness import KEY, SECRET, SHOPIFY_TOKEN, write_config
from pollerd_sim.testing.faults import Report
from tests.fault.rig import clean, intact, killed, sized, verdict

pytestmark = pytest.mark.fault
RUNS = 3


def crash_runs(tmp: Path, failpoint: str) -> tuple[Report, int]:
    """Orders change between runs; each run is killed at `failpoint`, then one clean run.
    Returns the checker's report and the number of killed runs."""
    n = sized(150)  # orders changed per run: more than a page (100), spread over all pages
    with WooSim(consumer_key=KEY, consumer_secret=SECRET) as sim, WebhookSink() as sink:
        config = write_config(tmp, sim.url, sink.url, delivery={"concurrency": 1})
        args = ("once", "--config", str(config))
        db = tmp / "pollerd.db"
        ids = [sim.create_order(payment_method="stripe") for _ in range(n * (RUNS + 1))]
        clean(*args)  # all created, announced
        cursors = intact(db)
        for run in range(RUNS):
            for oid in ids[run :: RUNS + 1]:
                sim.set_status(oid, "processing")
                if oid % 5 == 0:
                    sim.set_status(oid, "cancelled")
            before = len(sink.receipts)
            killed(*args, failpoint=failpoint)
            cursors = intact(db, cursors)
            if failpoint.startswith(("before_page", "after_page")):
                assert len(sink.receipts) == before  # killed while walking: nothing sent
        clean(*args)
        intact(db, cursors)
        return verdict(sim, sink), RUNS


@pytest.mark.parametrize(
    ("point", "copies"),
    [
        ("before_page_commit:2", 0),
        ("after_page_commit:2", 0),
        ("after_send_before_mark:3", 1),  # the one send in flight, exactly once
        ("after_mark:3", 0),
    ],
)
def test_kill_at_each_boundary(tmp_path: Path, point: str, copies: int) -> None:
    report, runs = crash_runs(tmp_path, point)
    assert not report.lost and not report.unexpected, report.summary()
    assert not report.order_violations, report.summary()
    assert report.extra_copies == copies * runs, report.summary()
    assert all(d.copies == 1 and d.same_body for d in report.duplicated), report.summary()


def test_the_boundary_test_catches_marking_before_sending(tmp_path: Path) -> None:
    report, runs = crash_runs(tmp_path, "mark_first,after_send_before_mark:3")
    assert len(report.lost) == runs, report.summary()  # one alert per crash, never sent
    assert report.extra_copies == 0


def schema_version(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def test_kill_mid_migration_resumes(tmp_path: Path) -> None:
    """Each run dies inside its second migration's transaction: the first one it applied
    stays, the killed one is rolled back whole, and the next run starts there."""
    with WooSim(consumer_key=KEY, consumer_secret=SECRET) as sim, WebhookSink() as sink:
        config = write_config(tmp_path, sim.url, sink.url)
        args = ("once", "--config", str(config))
        db = tmp_path / "pollerd.db"
        for run in range(1, RUNS + 1):
            killed(*args, failpoint="mid_migration:2")
            intact(db)
            assert schema_version(db) == run
        assert schema_version(db) < LATEST  # the clean run still has migrations to apply
        for _ in range(sized(20)):
            sim.create_order(payment_method="stripe", set_paid=True)
        clean(*args)
        assert schema_version(db) == LATEST
        intact(db)
        report = verdict(sim, sink)
        assert report.ok and not report.duplicated and report.received == 2 * sized(20)


def key_counts(db: Path) -> dict[int, int]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT key_id, COUNT(*) FROM contact GROUP BY key_id").fetchall()
    return {int(k): int(n) for k, n in rows}


def test_kill_mid_rekey_resumes(tmp_path: Path) -> None:
    """Each run dies inside its third re-seal batch: two batches stay re-sealed, the third is
    rolled back whole; the next run goes on, and every contact opens with the new key."""
    from pollerd.crypto import KeyRing, generate
    from pollerd.store import Store

    old, new = generate(1), generate(2)
    batch, per_run = 5, 2 * 5
    contacts = RUNS * per_run + sized(10)
    with WooSim(consumer_key=KEY, consumer_secret=SECRET) as sim, WebhookSink() as sink:
        config = write_config(tmp_path, sim.url, sink.url)
        text = config.read_text(encoding="utf-8")
        config.write_text(
            text.replace("[pollerd]\n", '[pollerd]\npii_key = "env:TEST_PII_KEY"\n', 1),
            encoding="utf-8",
        )
        for i in range(contacts):
            sim.create_order(payment_method="stripe", email=f"buyer{i}@example.test")
        clean("once", "--config", str(config), TEST_PII_KEY=old)
    db = tmp_path / "pollerd.db"
    assert key_counts(db) == {1: contacts}
    rekey = ("rekey", "--config", str(config), "--batch", str(batch))
    for run in range(1, RUNS + 1):
        killed(*rekey, failpoint="mid_rekey:3", TEST_PII_KEY=f"{new} {old}")
        intact(db)
        assert key_counts(db) == {2: run * per_run, 1: contacts - run * per_run}
    clean(*rekey, TEST_PII_KEY=f"{new} {old}")
    assert key_counts(db) == {2: contacts}
    store = Store(f"sqlite:///{db}", pii=KeyRing.parse(new))  # the old key no longer needed
    try:
        opened = {store.contact("shop", str(r[0])) for r in _order_ids(db)}
    finally:
        store.close()
    assert len({c.email for c in opened if c is not None}) == contacts


def _order_ids(db: Path) -> list[tuple[str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT order_id FROM contact").fetchall()


def test_kill_mid_bulk_import_resumes_the_same_export(tmp_path: Path) -> None:
    """A Shopify bulk backfill dies after each batch it committed (`BATCH` orders): the
    next run resumes the same export (the sim counts one), replays what is in, and the last
    one records every order once and forgets the operation."""
    n = sized(BATCH * 12 // 5)  # two whole batches and part of a third
    since = "2026-01-01T00:00:00Z"
    with (
        ShopSim(access_token=SHOPIFY_TOKEN, bulk_seconds=0.2) as shop,
        WebhookSink() as sink,
    ):
        ids = [shop.create_order(financial="PAID") for _ in range(n)]
        config = write_config(
            tmp_path, shop.url, sink.url, platform="shopify", store={"start_from": "now"}
        )
        args = ("backfill", "--config", str(config), "--store", "shop", "--since", since)
        db = tmp_path / "pollerd.db"
        done = []
        for run in range(1, RUNS + 1):
            killed(*args, failpoint=f"mid_bulk_import:{run}")
            intact(db)
            done.append(_snapshots(db))
            assert shop.stats()["bulk_started"] == 1
        assert done == sorted(done) and done[0] == BATCH and done[-1] <= n
        clean(*args)
        assert shop.stats()["bulk_started"] == 1, "a resumed backfill started a second export"
    assert sorted(int(r) for r in _snapshot_ids(db)) == sorted(ids)
    assert not sink.receipts  # a backfill without --notify announces nothing
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'bulk:shop'").fetchone() is None


def _snapshots(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM snapshot").fetchone()[0])


def _snapshot_ids(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [str(r[0]) for r in conn.execute("SELECT order_id FROM snapshot")]
