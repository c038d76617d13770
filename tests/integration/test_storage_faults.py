"""Issue 12 items 1, 2, 4: a full disk and a database pollerd may not write.

Real faults, no mocks: the full disk is a 1 MiB tmpfs filled to the last byte (mounting needs
root, as the test suite runs here; skipped elsewhere), the read-only database is a root-owned
0644 file with pollerd started as `nobody` through `setpriv` (root itself ignores file modes).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pollerd_sim import WebhookSink, WooSim
from pollerd_sim.harness import Daemon, pollerd, pollerd_env, write_config
from tests.support import ROOT

NOBODY = 65534


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A 1 MiB file system of its own, so filling it fills nothing else."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    where = Path(tempfile.mkdtemp(prefix="pollerd-full-"))
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        where.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
        with contextlib.suppress(OSError):
            where.rmdir()


def fill(disk: Path) -> Path:
    """Take every free byte of `disk`; delete the returned file to give the space back."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        while True:
            os.write(fd, b"\0")
    os.close(fd)
    return filler


def test_once_on_a_full_disk_ends_with_one_line_and_exit_1(
    small_disk: Path, sim: WooSim, sink: WebhookSink
) -> None:
    config = write_config(small_disk, sim.url, sink.url)
    sim.create_order(payment_method="stripe", set_paid=True)
    assert pollerd("once", "--config", str(config)).returncode == 0
    sim.create_order(payment_method="stripe", set_paid=True)
    fill(small_disk)
    result = pollerd("once", "--config", str(config))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("pollerd: database ") and str(small_disk / "pollerd.db") in last, last
    assert "the disk is full" in last and "free in" in last, last


def test_run_on_a_full_disk_waits_quietly_and_carries_on(
    small_disk: Path, sim: WooSim, tmp_path: Path
) -> None:
    """A due row whose outcome cannot be recorded was retried at once, forever (35,010
    tracebacks in 45 s); now the loop pauses, warns once and sends nothing it cannot record."""
    with WebhookSink(mode="500") as sink:
        config = write_config(small_disk, sim.url, sink.url)
        sim.create_order(payment_method="stripe", set_paid=True)
        daemon = Daemon(config, tmp_path)
        try:
            daemon.start()
            assert sink.wait_for_attempts(2)  # a failing delivery row, due again and again
            filler = fill(small_disk)
            sim.create_order(payment_method="stripe", set_paid=True)
            before, attempts = len(daemon.output().splitlines()), len(sink.attempts)
            time.sleep(6)  # measuring what six seconds of a full disk cost, not waiting on it
            during = daemon.output().splitlines()[before:]
            assert len(during) <= 4, "\n".join(during[:40])
            assert not [ln for ln in during if "Traceback" in ln or "ERROR" in ln], during[:40]
            warned = [ln for ln in during if "WARNING" in ln and "the disk is full" in ln]
            assert warned and str(small_disk / "pollerd.db") in warned[0], during
            assert len(sink.attempts) - attempts <= 2, "sends it could not record"

            shown = pollerd("status", "--json", "--config", str(config))
            report = json.loads(shown.stdout)
            assert shown.returncode == 1 and report["healthy"] is False, shown.stdout
            assert "disk" in report["database"]["problem"], report["database"]

            filler.unlink()  # space comes back
            sink.set_mode("ok")
            assert sink.wait_for(2, timeout=30), daemon.output()[-2000:]
            assert "writable again" in daemon.output()
            assert daemon.stop() == 0
        finally:
            daemon.close()


def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    command = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    return subprocess.run(
        [*command, sys.executable, "-m", "pollerd", *args],
        capture_output=True,
        text=True,
        env=pollerd_env(),
        cwd=ROOT,
        timeout=60,
    )


@pytest.fixture
def root_owned_database(sim: WooSim, sink: WebhookSink) -> Iterator[Path]:
    """A config whose database belongs to root, mode 0644; the folder and lock stay usable."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run pollerd as another user")
    base = Path(tempfile.mkdtemp(prefix="pollerd-ro-"))
    try:
        base.chmod(0o755)
        config = write_config(base, sim.url, sink.url)
        config.chmod(0o644)
        sim.create_order(payment_method="stripe", set_paid=True)
        assert pollerd("once", "--config", str(config)).returncode == 0
        for lock in base.glob("*.lock"):  # the lock stays usable: only the database is not
            os.chown(lock, NOBODY, NOBODY)
        (base / "pollerd.db").chmod(0o644)
        yield config
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("command", ["once", "run", "status"])
def test_a_read_only_database_is_one_line_naming_owner_mode_and_fix(
    root_owned_database: Path, command: str
) -> None:
    result = as_nobody(command, "--config", str(root_owned_database))
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert result.returncode == 78, result.stderr
    line = lines[0]
    assert f"uid {NOBODY}" in line and "uid 0 (root)" in line and "mode 0644" in line, line
    assert "chown" in line and str(root_owned_database.parent / "pollerd.db") in line, line


def test_a_database_pollerd_may_not_even_read_is_named_the_same_way(
    root_owned_database: Path,
) -> None:
    (root_owned_database.parent / "pollerd.db").chmod(0o600)  # pollerd's own default mode
    result = as_nobody("once", "--config", str(root_owned_database))
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and result.returncode == 78, result.stderr
    assert f"uid {NOBODY}" in lines[0] and "mode 0600" in lines[0] and "chown" in lines[0]


def test_a_read_only_database_in_json_is_json(root_owned_database: Path) -> None:
    result = as_nobody("--log-format", "json", "once", "--config", str(root_owned_database))
    lines = result.stderr.strip().splitlines()
    assert lines and result.returncode == 78, result.stderr
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert records[-1]["level"] == "ERROR" and "mode 0644" in records[-1]["msg"], records
    assert records[-1]["exit_code"] == 78
