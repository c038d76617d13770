"""The house rules of DESIGN §3, checked on the code itself so that they cannot drift: the
dependency direction, the rooms that name no platform, the simulators kept out of the product,
and mypy clean on `pollerd/` (this is how CI runs mypy: the README's one test command)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import pollerd

PACKAGE = Path(pollerd.__file__).parent


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (lazy imports inside functions count too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _modules(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [("sources", "pollerd.channels"), ("channels", "pollerd.sources")],
)
def test_sources_and_channels_never_import_each_other(folder: str, forbidden: str) -> None:
    offenders = [
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in _modules(folder)
        for name in sorted(_imports(path))
        if name == forbidden or name.startswith(forbidden + ".")
    ]
    assert not offenders, offenders


@pytest.mark.parametrize("module", ["diff.py", "routing.py"])
def test_diff_and_routing_are_pure(module: str) -> None:
    """No I/O rooms: no store, no HTTP, no channels, no sources' clients, no clock of their own."""
    impure = ("pollerd.store", "pollerd.http", "httpx", "pollerd.channels", "sqlalchemy")
    names = _imports(PACKAGE / module)
    assert not [n for n in names if n.startswith(impure)], sorted(names)


@pytest.mark.parametrize(
    "path",
    [
        "diff.py",
        "sync.py",
        "walk.py",
        "reconcile.py",
        "backfill.py",
        "daemon.py",
        "runtime.py",
        "model.py",
        "config",
    ],
)
def test_the_core_names_no_platform(path: str) -> None:
    """Adding a platform touches only its own package: the core holds no platform's name in
    code (a word in a comment or docstring is prose, not dispatch)."""
    target = PACKAGE / path
    files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
    if not files:  # a room another change split: the test names the new home
        pytest.fail(f"pollerd/{path} is gone: point this test at its new home")
    word = re.compile(r"woocommerce|shopify|\bwoo_|trash", re.IGNORECASE)
    hits = []
    for file in files:
        tree = ast.parse(file.read_text(encoding="utf-8"))
        docs = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            text = None
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = None if id(node) in docs else node.value
            elif isinstance(node, ast.Name | ast.Attribute):
                text = node.id if isinstance(node, ast.Name) else node.attr
            if text and word.search(text):
                hits.append(f"{file.relative_to(PACKAGE)}:{node.lineno}: {text[:60]!r}")
    allowed = {"deleted permanently: the store no longer has this order, not even in the trash"}
    assert not [h for h in hits if not any(a[:40] in h for a in allowed)], hits


def test_the_product_does_not_load_the_simulators() -> None:
    """`pollerd run`'s imports never reach pollerd_sim (nor graphql-core, which only the
    simulated Shopify needs): the simulators are loaded lazily by `demo` and `sim`."""
    code = (
        "import sys, pollerd.cli, pollerd.daemon, pollerd.runtime, pollerd.sources.shopify,"
        " pollerd.sources.woocommerce\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('pollerd_sim', 'graphql'))\n"
        "print(bad)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_mypy_is_clean_on_pollerd() -> None:
    """Default mode, config in pyproject (`[tool.mypy]`); a wrong type here is a bug to fix."""
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", str(PACKAGE)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=PACKAGE.parent,
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize(
    "script", sorted(p.name for p in (PACKAGE.parent / "bench").glob("*.py")), ids=str
)
def test_every_benchmark_starts(script: str) -> None:
    """A benchmark nobody can start measures nothing: each one's imports and arguments still
    hold after the code it measures moved (two did not, after the simulators moved out)."""
    out = subprocess.run(
        [sys.executable, str(PACKAGE.parent / "bench" / script), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
