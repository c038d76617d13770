"""`pollerd.failpoints`: what POLLERD_FAILPOINT arms, and that a kill point kills the process
itself at the pass it names, and nowhere else."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

SNIPPET = """
from pollerd import failpoints as f
print(sorted(f._ARMED.items()), f.armed("mark_first"), flush=True)
for n in (1, 2, 3):
    f.kill_point("other")
    print("pass", n, flush=True)
    f.kill_point("after_mark")
"""


def run(failpoint: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLLERD_")}
    env["POLLERD_FAILPOINT"] = failpoint
    return subprocess.run(
        [sys.executable, "-c", SNIPPET], env=env, capture_output=True, text=True, timeout=60
    )


def test_a_kill_point_kills_at_its_nth_pass() -> None:
    result = run("mark_first, after_mark:2")
    assert result.returncode == -signal.SIGKILL
    lines = result.stdout.splitlines()
    assert lines == ["[('after_mark', 2), ('mark_first', 1)] True", "pass 1", "pass 2"]
    assert "FAILPOINT after_mark: SIGKILL at pass 2" in result.stderr


def test_nothing_armed_kills_nothing() -> None:
    result = run("")
    assert result.returncode == 0
    assert result.stdout.splitlines() == ["[] False", "pass 1", "pass 2", "pass 3"]


def test_clock_skew_moves_the_wall_clock_every_pollerd_module_reads() -> None:
    snippet = (
        "import time, datetime, pollerd\n"
        "from pollerd.failpoints import value\n"
        "from pollerd.walk import utcnow\n"
        "real = datetime.datetime.now(datetime.UTC).timestamp()\n"
        "print(round(time.time() - real), round(utcnow().timestamp() - real), value('disk_full'))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLLERD_")}
    for skew, want in (("clock_skew:-3600,disk_full:7", "-3600 -3600 7"), ("", "0 0 0")):
        env["POLLERD_FAILPOINT"] = skew
        result = subprocess.run(
            [sys.executable, "-c", snippet], env=env, capture_output=True, text=True, timeout=60
        )
        assert result.stdout.strip() == want, result.stderr
