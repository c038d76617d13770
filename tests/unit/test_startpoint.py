"""Start points, CLI times and the state directory (issue 11 items 4, 5, 8, 18): the pieces
the CLI tests in tests/integration/test_ops_cli.py drive end to end."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pollerd.config import minimal
from pollerd.errors import ConfigError
from pollerd.localtime import describe, parse_local
from pollerd.startpoint import mismatch
from pollerd.store import StateLock, Store
from pollerd.store.db import Cursor

STORE = {"name": "shop", "platform": "woocommerce", "url": "http://127.0.0.1:1",
         "consumer_key": "ck_x", "consumer_secret": "cs_x"}  # fmt: skip


def settings(tmp_path: Path, start_from: str) -> object:
    db = f"sqlite:///{tmp_path / 'p.db'}"
    return minimal(db, [{**STORE, "start_from": start_from}], [], [])


def test_a_future_start_from_is_a_config_error(tmp_path: Path) -> None:
    future = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    with pytest.raises(ConfigError, match=r"stores\[0\]\.start_from: .* is in the future"):
        settings(tmp_path, future)
    settings(tmp_path, (datetime.now(UTC) - timedelta(minutes=5)).isoformat())  # the past: fine
    settings(tmp_path, "now")


@pytest.mark.parametrize(
    ("start_from", "stored", "warns"),
    [
        ("now", "2026-01-01T00:00:00Z", False),  # "now" is whatever the first run's moment was
        ("2026-01-01T08:00:00+08:00", "2026-01-01T00:00:00Z", False),  # the same instant
        ("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z", True),
    ],
)
def test_a_start_from_that_differs_from_the_cursor_is_named(
    tmp_path: Path, start_from: str, stored: str, warns: bool
) -> None:
    cfg = settings(tmp_path, start_from).stores[0]  # type: ignore[attr-defined]
    at = datetime.fromisoformat(stored)
    problem = mismatch(cfg, Cursor("shop", at, "", at))
    assert bool(problem) is warns
    if problem:
        assert "pollerd cursor set --store shop --start-from 2026-01-01T00:00:00Z" in problem


@pytest.mark.parametrize(
    ("text", "zone", "utc"),
    [
        ("2026-11-01", "Asia/Shanghai", "2026-10-31T16:00:00+00:00"),
        ("2026-11-01T08:30", "Asia/Shanghai", "2026-11-01T00:30:00+00:00"),
        ("2026-11-01T00:00:00Z", "Asia/Shanghai", "2026-11-01T00:00:00+00:00"),
        ("2026-11-01T00:00:00+02:00", "America/Los_Angeles", "2026-10-31T22:00:00+00:00"),
        ("2026-11-01", "America/Los_Angeles", "2026-11-01T07:00:00+00:00"),  # PDT, before DST ends
        ("2026-11-02", "America/Los_Angeles", "2026-11-02T08:00:00+00:00"),  # PST
    ],
)
def test_cli_times_without_offset_are_local(text: str, zone: str, utc: str) -> None:
    assert parse_local(text, zone).astimezone(UTC).isoformat() == utc


def test_the_resolved_instant_is_shown_in_both_zones() -> None:
    when = parse_local("2026-11-01", "Asia/Shanghai")
    assert describe(when, "Asia/Shanghai") == (
        "2026-11-01 00:00:00 Asia/Shanghai (2026-10-31T16:00:00Z)"
    )
    with pytest.raises(ValueError):
        parse_local("last tuesday", "UTC")


def test_a_missing_state_folder_is_never_created(tmp_path: Path) -> None:
    missing = tmp_path / "sate"
    with pytest.raises(ConfigError, match=r"pollerd\.database: the folder .*sate does not exist"):
        StateLock(missing).acquire()
    with pytest.raises(ConfigError, match=r"pollerd\.database"):
        Store(f"sqlite:///{missing / 'pollerd.db'}")
    assert not missing.exists()


def test_the_lock_tells_who_holds_the_state_directory(tmp_path: Path) -> None:
    probe = StateLock(tmp_path)
    assert probe.holder() is None  # no lock file yet
    with StateLock(tmp_path):
        assert StateLock(tmp_path).holder() == os.getpid()  # flock: per open file, not process
    assert probe.holder() is None


def test_the_daemon_records_the_key_it_seals_with(tmp_path: Path) -> None:
    from pollerd.crypto import KeyRing, generate

    url = f"sqlite:///{tmp_path / 'p.db'}"
    plain = Store(url)
    assert plain.sealing_key() == "unknown"
    plain.set_sealing(True)
    assert plain.sealing_key() is None  # runs without pii_key: seals nothing
    sealed = Store(url, pii=KeyRing.parse(f"{generate(2)} {generate(1)}"))
    sealed.set_sealing(True)
    assert plain.sealing_key() == 2
    sealed.set_sealing(False)
    assert plain.sealing_key() == "unknown"
