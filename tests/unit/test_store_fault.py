"""Issue 12 items 1, 2, 4: typing a full disk / read-only database, and the episode it starts.

SQLite's own "database or disk is full" is made real with `PRAGMA max_page_count` (the file
may not grow past the pages it has); the integration tests fill a real disk.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from loguru import logger
from sqlalchemy import event

from pollerd.errors import EXIT_CONFIG, EXIT_FAILED, StoreFull, StoreReadOnly
from pollerd.health import Health
from pollerd.store import Store
from pollerd.store.fault import (
    PROBE_KEY,
    RETRY_MAX,
    WARN_EVERY,
    Trouble,
    classify,
    for_humans,
    trouble,
    typed,
)


@pytest.fixture
def lines() -> list[str]:
    seen: list[str] = []
    handler = logger.add(lambda m: seen.append(m.record["message"]), level="INFO")
    yield seen
    logger.remove(handler)


def capped(store: Store) -> None:
    """Every new connection may not grow the file past its pages: SQLITE_FULL on growth."""

    def cap(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        pages = dbapi_connection.execute("PRAGMA page_count").fetchone()[0]
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

    event.listen(store.engine, "connect", cap)
    store.engine.dispose()


def test_a_database_that_cannot_grow_is_typed_full_with_path_and_free_space(
    tmp_path: Path,
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'p.db'}")
    try:
        capped(store)
        with pytest.raises(Exception) as raised:
            for n in range(200):
                store.set_meta(f"big.{n}", "x" * 20000)
        error = classify(raised.value, str(tmp_path / "p.db"))
        assert isinstance(error, StoreFull) and error.exit_code == EXIT_FAILED
        assert str(error).startswith(f"database {tmp_path / 'p.db'}: the disk is full")
        assert "free in" in str(error) and error.free is not None
    finally:
        store.close()


def test_errors_that_are_not_faults_of_the_disk_stay_untyped() -> None:
    assert classify(ValueError("bad row"), "/x.db") is None
    assert classify(OSError(errno.ECONNRESET, "reset"), "/x.db") is None
    full = classify(OSError(errno.ENOSPC, "No space left on device"), "/x.db")
    assert isinstance(full, StoreFull)
    assert isinstance(classify(OSError(errno.EROFS, "ro"), "/x.db"), StoreReadOnly)


def test_read_only_is_a_setup_error_naming_uid_owner_mode_and_fix(tmp_path: Path) -> None:
    (tmp_path / "p.db").write_bytes(b"")
    (tmp_path / "p.db").chmod(0o444)
    error = classify(OSError(errno.EACCES, "Permission denied"), str(tmp_path / "p.db"))
    assert isinstance(error, StoreReadOnly) and error.exit_code == EXIT_CONFIG
    text = str(error)
    assert "pollerd runs as uid" in text and "owner uid" in text and "chown" in text


def test_one_shot_commands_get_the_typed_error(tmp_path: Path) -> None:
    with pytest.raises(StoreFull), typed(f"sqlite:///{tmp_path / 'p.db'}"):
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(KeyError), typed("sqlite:///x.db"):
        raise KeyError("other")


def test_an_episode_warns_once_a_minute_backs_off_and_says_when_it_is_over(
    lines: list[str],
) -> None:
    now = [1000.0]
    episode = Trouble("/data/p.db", clock=lambda: now[0])
    error = StoreFull("/data/p.db", 0, "database /data/p.db: the disk is full (0 B free)")
    waits = []
    for _ in range(200):  # a busy daemon: every writer hits it, time passes
        waits.append(episode.failed(error))
        now[0] += max(waits[-1], 0.25)
        if now[0] - 1000 > WARN_EVERY * 2.5:
            break
    warnings = [line for line in lines if "the disk is full" in line]
    assert len(warnings) == 3, lines  # at 0 s, after one minute, after two
    assert len(waits) > 10  # ...though the writers failed many more times
    assert "Traceback" not in "".join(lines)
    assert max(waits) == pytest.approx(RETRY_MAX)
    assert episode.problem() is not None and episode.failed(error) > 0 < episode.waiting()
    episode.ok()
    assert lines[-1].startswith("database /data/p.db: writable again after")
    assert episode.problem() is None and episode.waiting() == 0
    episode.ok()  # nothing to end: says nothing
    assert sum("writable again" in line for line in lines) == 1


def test_the_probe_ends_the_episode_only_when_a_write_commits(
    tmp_path: Path, lines: list[str]
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'p.db'}")
    try:
        episode = trouble(store)
        assert episode is trouble(store)  # one per Store: the daemon's writers share it
        assert episode.probe(store)  # no episode: nothing written, nothing said
        episode.failed(StoreFull(str(tmp_path / "p.db"), 0, "full"))
        assert episode.probe(store) and not episode.active
        assert store.meta(PROBE_KEY) is not None
        assert any("writable again" in line for line in lines)
    finally:
        store.close()


def test_healthz_is_unhealthy_while_the_database_cannot_be_written() -> None:
    health = Health(
        delivery_last=lambda: 0.0,
        delivery_limit=1e9,
        tick_every=1e9,
        clock=lambda: 1.0,
        database=lambda: "database /d/p.db: the disk is full (0 B free in /d) (for 61s)",
    )
    ok, report = health.check()
    assert not ok and report["database"]["healthy"] is False
    assert "the disk is full" in report["reason"]


def test_sizes_for_people() -> None:
    assert for_humans(0) == "0 B" and for_humans(1536) == "1.5 KB"
    assert for_humans(5 * 1024**3) == "5.0 GB" and for_humans(None) == "unknown"
