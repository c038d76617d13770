"""The shipped systemd units: valid for systemd, hardened (research C.1 measured 1.2), and the
service and the one-shot carry the same hardening block (systemd has no include)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pollerd.errors import EXIT_CONFIG, EXIT_DAMAGED

UNITS = Path(__file__).resolve().parents[2] / "systemd"
SERVICES = ("pollerd.service", "pollerd-once.service")
ANALYZE = shutil.which("systemd-analyze")


def analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None, "systemd-analyze is missing: .ci/run installs Debian's systemd"
    return subprocess.run(
        [ANALYZE, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def units(tmp_path: Path) -> Path:
    """Copies whose ExecStart= names this environment's pollerd: `verify` fails on a missing
    binary, and /opt/pollerd is where a real install puts it, not where tests run."""
    pollerd = Path(sys.executable).with_name("pollerd")
    assert pollerd.exists(), f"{pollerd} missing: install the project (pip install -e .)"
    for unit in UNITS.iterdir():
        text = unit.read_text().replace("/opt/pollerd/bin/pollerd", str(pollerd))
        (tmp_path / unit.name).write_text(text)
    return tmp_path


def test_units_verify(units: Path) -> None:
    names = sorted(p.name for p in units.iterdir())
    assert names == ["pollerd-once.service", "pollerd-once.timer", "pollerd.service"]
    result = analyze("verify", *(f"./{name}" for name in names), cwd=units)
    assert result.returncode == 0, result.stderr
    assert "Unknown key" not in result.stderr and "ignoring" not in result.stderr


@pytest.mark.parametrize("service", SERVICES)
def test_units_score_at_most_1_5_exposure(units: Path, service: str) -> None:
    # --threshold compares against the exposure × 10.
    result = analyze("security", "--offline=yes", "--threshold=15", f"./{service}", cwd=units)
    assert result.returncode == 0, result.stdout[-2000:]
    score = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
    assert score is not None and float(score.group(1)) <= 1.5


def hardening(service: str) -> str:
    text = (UNITS / service).read_text()
    start = text.index("# --- hardening")
    return text[start : text.index("# --- end of hardening")]


def test_both_services_share_one_hardening_block() -> None:
    assert hardening("pollerd.service") == hardening("pollerd-once.service")
    assert "MemoryDenyWriteExecute=yes" in hardening("pollerd.service")


def test_the_service_contract() -> None:
    service = (UNITS / "pollerd.service").read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=60s",
        "Restart=on-failure",
        f"RestartPreventExitStatus={EXIT_CONFIG} {EXIT_DAMAGED}",  # a restart repairs neither
        "DynamicUser=yes",
        "StateDirectory=pollerd",
        "ConfigurationDirectory=pollerd",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ):
        assert f"\n{line}\n" in service, line
    assert "LoadCredential=" in service
    timer = settings("pollerd-once.timer")
    assert "AccuracySec=1s" in timer and not any(s.startswith("Conflicts=") for s in timer)
    once = settings("pollerd-once.service")
    assert "SuccessExitStatus=75" in once and not any(s.startswith("Conflicts=") for s in once)


def settings(unit: str) -> list[str]:
    """The unit's setting lines, comments left out."""
    lines = (UNITS / unit).read_text().splitlines()
    return [line for line in lines if line and not line.startswith(("#", "["))]
