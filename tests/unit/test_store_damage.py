"""The store's own file handling (issue 12 items 3, 7, 8): damage met after the start check
still surfaces as `DamagedDatabase`, new files are private under a permissive umask, and the
lock is named after the database."""

from __future__ import annotations

import os
import random
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from pollerd.config import minimal
from pollerd.errors import DamagedDatabase
from pollerd.store import StateLock, Store


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_a_new_database_is_0600_under_umask_022(tmp_path: Path, umask_022: None) -> None:
    store = Store(f"sqlite:///{tmp_path / 'pollerd.db'}")
    try:
        store.set_meta("probe", "1")  # WAL mode: -wal and -shm exist while the store is open
        for name in ("pollerd.db", "pollerd.db-wal", "pollerd.db-shm"):
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    finally:
        store.close()


def test_damage_after_the_start_check_is_named_as_damage(tmp_path: Path) -> None:
    db = tmp_path / "pollerd.db"
    store = Store(f"sqlite:///{db}")
    try:
        store.set_meta("probe", "1")
        store.engine.dispose()  # the next query opens the file afresh, as after a restart
        with db.open("r+b") as f:
            f.write(random.Random(12).randbytes(100))
        with pytest.raises(DamagedDatabase, match=r"pollerd\.db is damaged .*Restore a backup"):
            store.meta("probe")
    finally:
        store.close()


def test_the_lock_is_per_database(tmp_path: Path) -> None:
    one, two = (minimal(f"sqlite:///{tmp_path / name}", [], [], []) for name in ("1.db", "2.db"))
    assert StateLock.of(one).path == tmp_path / "1.db.lock"
    with StateLock.of(one):
        with StateLock.of(two):  # the same folder, another database: not blocked
            pass
        assert StateLock.of(one).holder() == os.getpid()
