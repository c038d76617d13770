"""The store's transaction boundaries and outbox queries, on real SQLite files and on a real
PostgreSQL (`db_url`: the server on 127.0.0.1:5432, a fresh schema per test)."""

from __future__ import annotations

import multiprocessing
import re
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from pollerd.errors import ConfigError, LockHeld
from pollerd.model import Event, Snapshot
from pollerd.store import StateLock, open_store
from pollerd.store.migrate import LATEST

T = datetime(2026, 11, 22, 9, 32, 36, tzinfo=UTC)


def ev(order: str, kind: str) -> Event:
    return Event(kind, "s", "woocommerce", order, T, T, False, {"id": order})


def snap(order: str, fired: set[str]) -> Snapshot:
    return Snapshot("s", order, "processing", T, Decimal("0"), frozenset(fired))


def test_schema_and_pragmas(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'p.db'}")
    store.init_cursor("s", T)
    store.close()
    conn = sqlite3.connect(tmp_path / "p.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(
        LATEST
    )
    # Reopening runs no migration twice.
    open_store(f"sqlite:///{tmp_path / 'p.db'}").close()


def test_replayed_page_creates_nothing_twice(db_url: str) -> None:
    store = open_store(db_url)
    store.init_cursor("s", T)
    page = [(ev("1", "order.created"), ["a", "b"]), (ev("1", "order.paid"), ["a"])]
    first = store.commit_page(
        "s", [snap("1", {"order.created", "order.paid"})], page, cursor=(T, "1")
    )
    again = store.commit_page(
        "s", [snap("1", {"order.created", "order.paid"})], page, cursor=(T, "1")
    )
    assert (first.new_events, first.new_deliveries) == (2, 3)
    assert (again.new_events, again.new_deliveries) == (0, 0)
    assert store.snapshots("s", ["1", "2"])["1"].fired == {"order.created", "order.paid"}
    # It says which rows it wrote, so the caller never reads them back to find out.
    assert first.event_ids == ("s:1:order.created", "s:1:order.paid")
    listed = store.deliveries()
    assert sorted(first.delivery_ids) == sorted(d["id"] for d in listed)
    assert {d["event_id"] for d in listed if d["id"] in first.delivery_ids} == set(first.event_ids)
    assert again.event_ids == () and again.delivery_ids == ()


def test_a_page_that_repeats_an_order_commits_as_row_by_row_would(db_url: str) -> None:
    """A bulk file may list an order twice, so one page can: the page's rows go in as one
    statement per table, and the result must still be the row-by-row one (the last snapshot
    wins; an event id is recorded once, with the first copy's body and deliveries), on
    PostgreSQL too, where one multi-row upsert may not touch a row twice."""
    store = open_store(db_url)
    store.init_cursor("s", T)
    paid = Event("order.paid", "s", "woocommerce", "1", T, T, False, {"id": "1", "v": 1})
    again = Event("order.paid", "s", "woocommerce", "1", T, T, False, {"id": "1", "v": 2})
    wrote = store.commit_page(
        "s",
        [snap("1", {"order.created"}), snap("2", set()), snap("1", {"order.paid"})],
        [(paid, ["a", "b"]), (ev("2", "order.created"), ["a"]), (again, ["c"])],
    )
    assert wrote.event_ids == ("s:1:order.paid", "s:2:order.created")
    rows = sorted(store.deliveries(), key=lambda d: d["id"])
    assert [(d["event_id"], d["channel"]) for d in rows] == [
        ("s:1:order.paid", "a"),
        ("s:1:order.paid", "b"),
        ("s:2:order.created", "a"),
    ]
    assert list(wrote.delivery_ids) == [d["id"] for d in rows]
    assert store.snapshots("s", ["1"])["1"].fired == {"order.paid"}
    (stored,) = [e for e in store.events("s") if e["id"] == "s:1:order.paid"]
    assert '"v":1' in stored["payload"]


def test_open_orders_are_the_announced_unfinished_ones_in_numeric_order(db_url: str) -> None:
    store = open_store(db_url)
    store.init_cursor("s", T)
    done = Snapshot("s", "3", "completed", T, Decimal("0"), frozenset({"order.created"}))
    dispute = snap("dispute:7", {"dispute.opened"})
    store.commit_page("s", [snap("10", {"order.created"}), snap("9", {"x"}), snap("2", set())], [])
    store.commit_page("s", [done, dispute], [])
    assert store.open_orders("s", finished=("completed",)) == ["9", "10"]
    assert store.open_orders("other", finished=()) == []


def test_known_deliveries_and_dead_counts(db_url: str) -> None:
    store = open_store(db_url)
    store.init_cursor("s", T)
    wrote = store.commit_page("s", [], [(ev("1", "order.created"), ["a", "b"])])
    first, second = wrote.delivery_ids
    assert store.known_deliveries([first, second + 100]) == {first}
    assert store.known_deliveries([]) == set()
    store.mark(first, state="dead", attempts=3, body=None, error="gone")
    assert store.dead_counts() == {"a": 1}


def test_cursor_never_moves_backwards(db_url: str) -> None:
    store = open_store(db_url)
    store.init_cursor("s", T)
    store.commit_page("s", [], [], cursor=(T + timedelta(seconds=10), "5"))
    store.commit_page("s", [], [], cursor=(T + timedelta(seconds=3), "9"))
    cursor = store.cursor("s")
    assert cursor is not None and cursor.updated_at == T + timedelta(seconds=10)


def test_due_keeps_per_order_order_without_blocking_other_orders(db_url: str) -> None:
    store = open_store(db_url)
    store.init_cursor("s", T)
    store.commit_page(
        "s",
        [],
        [
            (ev("1", "order.created"), ["a"]),
            (ev("1", "order.paid"), ["a"]),
            (ev("2", "order.created"), ["a"]),
        ],
    )
    due = store.due(now=2e9, limit=10, channels=["a"])
    assert [d.event_id for d in due] == ["s:1:order.created", "s:2:order.created"]
    # Order 1's first event is retrying later: its second stays queued, order 2 is unaffected.
    store.mark(due[0].id, state="pending", attempts=1, body="x", next_at=3e9)
    assert [d.event_id for d in store.due(2e9, 10, ["a"])] == ["s:2:order.created"]
    # Dead: order 1's later events are held behind their dead letter (issue 11 item 12).
    store.mark(due[0].id, state="dead", attempts=2, body="x")
    assert [d.event_id for d in store.due(2e9, 10, ["a"])] == ["s:2:order.created"]
    assert store.due(2e9, 10, ["other"]) == []


def test_broken_channel_is_held_and_retry_releases_it(db_url: str) -> None:
    store = open_store(db_url)
    store.init_cursor("s", T)
    store.commit_page("s", [], [(ev("1", "order.created"), ["a", "b"])])
    store.set_channel_broken("a", "410 Gone")
    assert [d.channel for d in store.due(2e9, 10, ["a", "b"])] == ["b"]
    assert store.broken_channels() == {"a": "410 Gone"}
    assert store.retry(channel="a") == 1
    assert store.broken_channels() == {}
    assert sorted(d.channel for d in store.due(2e9, 10, ["a", "b"])) == ["a", "b"]


def _hold(
    path: str, ready: multiprocessing.synchronize.Event, done: multiprocessing.synchronize.Event
) -> None:
    with StateLock(Path(path)):
        ready.set()
        done.wait(10)


def test_lock_is_exclusive_across_processes(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready, done = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(tmp_path), ready, done))
    holder.start()
    try:
        assert ready.wait(20)
        with pytest.raises(LockHeld, match=f"pid {holder.pid}"):
            StateLock(tmp_path).acquire()
    finally:
        done.set()
        holder.join(10)
    with StateLock(tmp_path):  # released when the holder exits
        pass


def test_a_postgresql_url_without_its_driver_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`pip install pollerd` without the `postgres` extra: one line naming the key and the
    install command, exit 78 (a setup error: restarting cannot fix it), no traceback."""
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if it were not installed
    with pytest.raises(ConfigError) as caught:
        open_store("postgresql+psycopg://pollerd:pw@127.0.0.1:1/pollerd")
    message = str(caught.value)
    assert caught.value.exit_code == 78
    assert "pollerd.database" in message and "psycopg" in message
    assert "pollerd[postgres]" in message and "pw" not in message


def test_processes_opening_a_new_database_at_once_migrate_it_once(db_url: str) -> None:
    """`pollerd run` starting while `status` runs, or two hosts on one PostgreSQL: each opens a
    database nobody created yet. Every one must open it (each migration applied once), none may
    fail with "relation already exists"."""
    count = 3
    code = f"from pollerd.store import open_store; open_store({db_url!r}).close()"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for _ in range(count)
    ]
    outputs = [p.communicate(timeout=60)[0].decode(errors="replace") for p in procs]
    assert [p.returncode for p in procs] == [0] * count, "\n".join(outputs)
    store = open_store(db_url)
    try:
        assert store.meta("schema_version") == str(LATEST)
    finally:
        store.close()


def test_no_module_outside_store_speaks_sql() -> None:
    """Only pollerd/store/ holds SQL (DESIGN §3): everything else asks the `Store` facade."""
    import pollerd

    root = Path(pollerd.__file__).parent
    sql = re.compile(
        r"^\s*(from|import) (sqlalchemy|sqlmodel|sqlite3|psycopg)\b|\.engine\.connect\("
    )
    speaking = [
        f"{path.relative_to(root)}:{number}"
        for path in sorted(root.rglob("*.py"))
        if "store" not in path.relative_to(root).parts[:1]
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if sql.search(line)
    ]
    assert speaking == []
