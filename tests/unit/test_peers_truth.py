"""The peers bench's scoring (bench/peers/peers_truth.py): what counts as a change a syncer could
have seen, and what counts as captured. The bench itself installs the peers and is not run here."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench" / "peers"))

from peers_truth import Change, score, visible_changes


def test_only_statuses_present_at_a_sync_are_truth() -> None:
    """An order placed pending and paid before the first read shows only as processing; a status
    that came and went between two reads is in no one's truth."""
    history = [
        (1, "pending", "T0"),
        (1, "processing", "T0"),
        (2, "pending", "T0"),
        (2, "on-hold", "T1"),  # between sync 1 and 2, then
        (2, "processing", "T1"),  # overwritten before sync 2
        (3, "pending", "T1"),
    ]
    assert visible_changes(history, [3, 6]) == [
        Change(1, None, "processing", 1, "T0"),
        Change(2, None, "pending", 1, "T0"),
        Change(2, "pending", "processing", 2, "T1"),
        Change(3, None, "pending", 2, "T1"),
    ]


def test_a_read_inside_a_step_splits_it() -> None:
    """The burst's read lands after its first half: those orders are sync-3 truth, the rest
    sync 4's, each labelled with its half."""
    history = [(10, "processing", "burst, before"), (11, "processing", "burst, after")]
    changes = visible_changes(history, [0, 0, 1, 2])
    assert [(c.order_id, c.sync, c.kind) for c in changes] == [
        (10, 3, "burst, before"),
        (11, 4, "burst, after"),
    ]


def test_boundaries_must_not_go_backwards() -> None:
    with pytest.raises(ValueError, match="backwards"):
        visible_changes([(1, "pending", "T0")], [1, 0])


@pytest.mark.parametrize(
    ("observed", "orders", "changes", "missed_by_step", "unrelated"),
    [
        # a state syncer that saw every status at its syncs
        ([(1, "pending"), (1, "cancelled"), (2, "pending")], 2, 1, {}, 0),
        # a created-date cursor: first sights only, the change of an old order is lost
        ([(1, "pending"), (2, "pending")], 2, 0, {"T1 status change": 1}, 0),
        # a window that never moves again: only the initial sync
        ([(1, "pending")], 1, 0, {"T1 new order": 1, "T1 status change": 1}, 0),
        # the right order with the wrong status is not a captured change; stray ids are counted
        ([(1, "pending"), (1, "refunded"), (2, "pending"), (9, "pending")], 2, 0,
         {"T1 status change": 1}, 1),
    ],
)  # fmt: skip
def test_score(
    observed: list[tuple[int, str]],
    orders: int,
    changes: int,
    missed_by_step: dict[str, int],
    unrelated: int,
) -> None:
    history = [
        (1, "pending", "T0"),
        (1, "cancelled", "T1 status change"),
        (2, "pending", "T1 new order"),
    ]
    truth = visible_changes(history, [1, 3])
    result = score(truth, observed)
    assert result["orders_truth"] == 2
    assert result["changes_truth"] == 1
    assert result["orders_captured"] == orders
    assert result["changes_captured"] == changes
    assert result["missed_by_step"] == missed_by_step
    assert result["missed"] == sum(missed_by_step.values())
    assert result["unrelated"] == unrelated


@pytest.mark.parametrize(
    ("financial", "cancelled", "fulfillment", "key"),
    [
        ("PAID", False, "UNFULFILLED", "PAID"),
        ("paid", True, None, "PAID+CANCELLED"),  # pollerd's events carry lower case
        ("PAID", False, "fulfilled", "PAID+FULFILLED"),
        (None, False, None, "NONE"),
    ],
)
def test_shopify_status_key(
    financial: str | None, cancelled: bool, fulfillment: str | None, key: str
) -> None:
    """A peer's GraphQL record and pollerd's event body must map one order state to one key,
    or every Shopify change would count as missed."""
    from peers_shopify import status_key

    assert status_key(financial, cancelled, fulfillment) == key


def test_table_names_every_tool_and_its_losses() -> None:
    from run import table

    row = {
        "tool": "tap-x",
        "version": "1.0",
        "orders_captured": 40,
        "orders_truth": 300,
        "changes_captured": 0,
        "changes_truth": 20,
        "missed_by_step": {"T1 status change": 20},
        "requests": [1, 1],
        "wall_s": [0.5, 0.25],
        "exit_codes": [0, 0],
        "errors": [],
        "first_list_query": ["", "after=2026-12-06T14:00:00Z"],
    }
    text = table({"site_timezone": "Asia/Shanghai", "tools": [row], "shopify": []})
    assert "| tap-x | 1.0 | 40 / 300 | 0 / 20 | T1 status change: 20 | 1 / 1 | 0.5 / 0.2 |" in text
    assert "`after=2026-12-06T14:00:00Z`" in text
    assert "Shopify" not in text
