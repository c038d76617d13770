"""The database files as an operator meets them (issue 12 items 3, 7, 8): a damaged database
stops every command with one line and exit 65, `pollerd backup` makes a copy that restores,
the files are private (0600), and the lock is per database, not per folder."""

from __future__ import annotations

import random
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from pollerd.errors import EXIT_DAMAGED
from pollerd_sim import WebhookSink, WooSim
from pollerd_sim.harness import pollerd, write_config

ORDERS = 5


def _with_database(config: Path, name: str) -> Path:
    """The same config, writing to `name` (beside the config); returns the new config."""
    other = config.with_name(f"{Path(name).stem}.toml")
    text = config.read_text(encoding="utf-8")
    other.write_text(text.replace("sqlite:///pollerd.db", f"sqlite:///{name}"), encoding="utf-8")
    return other


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_two_databases_in_one_folder_do_not_block_each_other(
    tmp_path: Path, sim: WooSim, sink: WebhookSink, daemon_factory: Any
) -> None:
    config = write_config(tmp_path, sim.url, sink.url)
    other = _with_database(config, "other.db")
    daemon = daemon_factory(config)
    daemon.start()
    try:
        beside = pollerd("once", "--config", str(other))
        assert beside.returncode == 0, beside.stderr  # a different database: its own lock
        same = pollerd("once", "--config", str(config))
        assert same.returncode == 75 and "pollerd.db.lock" in same.stderr, same.stderr
    finally:
        assert daemon.stop() == 0


@pytest.fixture
def filled(tmp_path: Path, sim: WooSim, sink: WebhookSink) -> Path:
    """A real pollerd.db holding 5 sent deliveries, its WAL checkpointed into the file."""
    config = write_config(tmp_path, sim.url, sink.url)
    for _ in range(ORDERS):
        sim.create_order(payment_method="cod")
    result = pollerd("once", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert sink.wait_for(ORDERS, timeout=10)
    listed = pollerd("deliveries", "list", "--config", str(config))
    assert listed.stdout.count(" sent ") == ORDERS, listed.stdout
    assert not (tmp_path / "pollerd.db-wal").exists()  # the last close checkpointed it
    return config


def test_the_database_files_are_private(filled: Path) -> None:
    folder = filled.parent
    assert _mode(folder / "pollerd.db") == 0o600
    assert _mode(folder / "pollerd.db.lock") == 0o600
    # -wal and -shm take the database file's mode (SQLite copies it): seen while one is open.
    con = sqlite3.connect(folder / "pollerd.db")
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("INSERT INTO meta (key, value) VALUES ('probe', '1')")
        con.commit()
        assert _mode(folder / "pollerd.db-wal") == 0o600
        assert _mode(folder / "pollerd.db-shm") == 0o600
    finally:
        con.close()


def _delivery_leaf(db: Path) -> int:
    """The number of a leaf page of the `delivery` table, read from the file format itself
    (the root page's header; its first cell's left child when the root is interior)."""
    con = sqlite3.connect(db)
    try:
        root = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'delivery'").fetchone()
        page_size = con.execute("PRAGMA page_size").fetchone()[0]
    finally:
        con.close()
    data = db.read_bytes()
    page = root[0]
    while True:
        start = (page - 1) * page_size
        kind = data[start]
        if kind == 0x0D:  # table leaf
            return page
        assert kind == 0x05, kind  # table interior: 12-byte header, then cell pointers
        cell = int.from_bytes(data[start + 12 : start + 14], "big")
        page = int.from_bytes(data[start + cell : start + cell + 4], "big")


def _expect_damaged(config: Path, *command: str) -> None:
    result = pollerd(*command, "--config", str(config))
    assert result.returncode == EXIT_DAMAGED, (command, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, (command, result.stderr)
    assert "pollerd.db is damaged" in lines[0] and "Restore a backup" in lines[0], lines[0]


def test_garbage_over_the_header_stops_every_command_with_one_line(filled: Path) -> None:
    db = filled.parent / "pollerd.db"
    with db.open("r+b") as f:
        f.write(random.Random(12).randbytes(100))
    for command in (("once",), ("run",), ("status",), ("deliveries", "list")):
        _expect_damaged(filled, *command)
    checked = pollerd("check", "--config", str(filled))
    assert checked.returncode == 1 and "Traceback" not in checked.stderr, checked.stderr
    assert "pollerd.db is damaged" in checked.stdout and "Restore a backup" in checked.stdout


def test_damage_in_the_middle_is_found_before_any_work(filled: Path, sink: WebhookSink) -> None:
    db = filled.parent / "pollerd.db"
    page = _delivery_leaf(db)
    with db.open("r+b") as f:  # the second half of the page: where the row cells sit
        f.seek((page - 1) * 4096 + 2048)
        f.write(random.Random(12).randbytes(2048))
    for command in (("once",), ("status",), ("deliveries", "list"), ("cursor", "show")):
        _expect_damaged(filled, *command)
    assert len(sink.receipts) == ORDERS  # nothing was sent again


def test_a_backup_restores_a_damaged_database(filled: Path, tmp_path: Path) -> None:
    folder = filled.parent
    backups = tmp_path / "backups"
    backups.mkdir()
    made = pollerd("backup", str(backups), "--config", str(filled))
    assert made.returncode == 0, made.stderr
    (copy,) = backups.iterdir()  # a dated name in the folder; no partial file left behind
    assert copy.name.startswith("pollerd-") and copy.suffix == ".db", copy.name
    assert _mode(copy) == 0o600 and not list(backups.glob(f"{copy.name}-*"))
    again = pollerd("backup", str(copy), "--config", str(filled))
    assert again.returncode == 1 and "never overwrites" in again.stderr, again.stderr
    db = folder / "pollerd.db"
    with db.open("r+b") as f:
        f.write(random.Random(12).randbytes(100))
    refused = pollerd("backup", str(backups / "of-damaged.db"), "--config", str(filled))
    assert refused.returncode == EXIT_DAMAGED and not (backups / "of-damaged.db").exists()
    # The restore the README describes.
    db.write_bytes(copy.read_bytes())
    for leftover in ("pollerd.db-wal", "pollerd.db-shm"):
        (folder / leftover).unlink(missing_ok=True)
    listed = pollerd("deliveries", "list", "--config", str(filled))
    assert listed.returncode == 0 and listed.stdout.count(" sent ") == ORDERS, listed.stdout


def test_backup_points_postgresql_to_pg_dump(
    tmp_path: Path, sim: WooSim, sink: WebhookSink
) -> None:
    config = write_config(tmp_path, sim.url, sink.url)
    text = config.read_text(encoding="utf-8")
    url = "postgresql+psycopg://pollerd@127.0.0.1:1/pollerd"
    config.write_text(text.replace("sqlite:///pollerd.db", url), encoding="utf-8")
    result = pollerd("backup", str(tmp_path / "x.db"), "--config", str(config))
    assert result.returncode == 2 and "pg_dump" in result.stderr, result.stderr
