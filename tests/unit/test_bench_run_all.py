"""bench/run_all.py: the parts that decide what the published tables say."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run_all() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "bench" / "run_all.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_all"] = module
    spec.loader.exec_module(module)
    return module


def test_every_test_the_fault_map_names_exists(run_all: ModuleType) -> None:
    """A row whose test was renamed would vanish from bench/README.md's fault table without a
    word: every file and test named in tests/fault/README.md must be there."""
    rows = run_all.fault_rows()
    assert {"1", "2", "5", "13"} <= {row for row, _, _ in rows}
    for row, _, tests in rows:
        assert tests, f"row {row} names no test"
        for test in tests:
            file, _, name = test.partition("::")
            found = sorted((ROOT / "tests").rglob(file))  # a row may cite a test elsewhere too
            assert found, f"row {row}: no {file} under tests/"
            source = next((f for f in found if f.parent.name == "fault"), found[0])
            if name:
                assert f"def {name}(" in source.read_text(), f"row {row}: no {test}"


def test_a_row_counts_its_tests_and_their_parameters_only(run_all: ModuleType) -> None:
    assert run_all._matches("test_kill.py::test_a[3]", "test_kill.py::test_a")
    assert run_all._matches("test_kill.py::test_a", "test_kill.py")
    assert not run_all._matches("test_kill.py::test_ab", "test_kill.py::test_a")
    assert not run_all._matches("test_killer.py::test_a", "test_kill.py")


def test_the_figures_are_the_last_json_a_bench_prints(run_all: ModuleType) -> None:
    assert run_all._last_json('noise\n{"a": 1}\n{\n  "b": {"c": 2}\n}\n') == {"b": {"c": 2}}
    assert run_all._last_json("Traceback ...\n") is None


def test_a_failed_step_is_named_in_the_readme(run_all: ModuleType) -> None:
    results = {"crypto": {"ok": False, "exit": 1, "command": "python bench/crypto.py"}}
    meta = {"when": "now", "commit": "abc", "machine": "m", "seconds": 1}
    text = run_all.render(results, meta)
    assert "- `crypto`: exit 1" in text
    assert "Not measured in this run" in text  # the peers, absent
