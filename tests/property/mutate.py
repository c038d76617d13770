"""Bad input for the property tests: real payloads with one or more fields broken.

A field is chosen among every path of the real fixture (so the mutations hit what the API
really sends, nested lists and objects included) and replaced by a value of the wrong type, a
huge number, a NaN/Infinity spelling, a date that is not one, unicode that only looks like
digits, or removed altogether.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MISSING = object()
"""Stands for "delete this key" (or "drop this list element")."""

_NUMBERISH = [
    "NaN",
    "nan",
    "-NaN",
    "sNaN",
    "Infinity",
    "-Infinity",
    "inf",
    "1e999999999",
    "-1e999999",
    "1e-999999",
    "9" * 400,
    "0x10",
    "1_000",
    " 12.5 ",
    "12,50",
    "١٢٣",  # Arabic-Indic digits: str.isdigit() and Decimal() accept them
    "²",  # a superscript: isdigit() says yes, int() says no
    "１２",  # fullwidth digits
    "-0",
    "0",
    "1.5",
    "",
]
_DATEISH = [
    "0001-01-01T00:00:00+01:00",
    "0001-01-01T00:00:00",
    "9999-12-31T23:59:59-05:00",
    "9999-12-31T23:59:59",
    "2026-02-30T00:00:00Z",
    "2026-13-01",
    "2026-11-22T09:32:37ZZ",
    "2026-11-22 09:32:37",
    "2026-11-22T25:00:00",
    "20261122T093237Z",
    "yesterday",
    "2026-11-22T09:32:37+99:00",
    "１２３４-01-01",
    "\x00",
]
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(),  # NaN, ±inf included
    st.text(max_size=30),
    st.sampled_from(_NUMBERISH + _DATEISH),
)
BAD = st.one_of(
    _SCALARS,
    st.lists(_SCALARS, max_size=3),
    st.dictionaries(st.text(max_size=8), _SCALARS, max_size=3),
    st.just(MISSING),
)


def load(relative: str) -> Any:
    return json.loads((FIXTURES / relative).read_text())


def paths(tree: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path of a JSON tree (the root excluded), parents before children."""
    found: list[tuple[Any, ...]] = []
    items: Any = ()
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, list):
        items = enumerate(tree)
    for key, value in items:
        found.append((*prefix, key))
        found.extend(paths(value, (*prefix, key)))
    return found


def replace(tree: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A copy of `tree` with the value at `path` replaced (or removed, for MISSING)."""
    tree = copy.deepcopy(tree)
    parent = tree
    for key in path[:-1]:
        parent = parent[key]
    if value is MISSING:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return tree


@st.composite
def mutated(draw: st.DrawFn, seeds: list[Any], *, rounds: int = 3) -> Any:
    """One seed with 1..`rounds` fields replaced by bad values (later rounds may hit a part
    an earlier one put in)."""
    tree = copy.deepcopy(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, rounds))):
        where = paths(tree)
        if not where:
            break
        tree = replace(tree, draw(st.sampled_from(where)), draw(BAD))
    return tree
