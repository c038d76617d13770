"""The fault suite's checker (`pollerd_sim.testing.faults`): each field of its report can fail,
and the truth it derives from a simulator's history is the one pollerd announces."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from pollerd.sources.shopify.normalize import normalize_order
from pollerd.sources.shopify.rules import shopify_implied
from pollerd_sim import ShopSim
from pollerd_sim.shop_orders import Change
from pollerd_sim.testing.faults import (
    Got,
    as_dict,
    check,
    receipts_of,
    shop_truth,
    woo_truth,
)
from pollerd_sim.wc_orders import Transition

T0 = datetime(2026, 12, 1, tzinfo=UTC)
TRUTH = ["s:1:order.created", "s:1:order.paid", "s:2:order.created", "s:1:order.cancelled"]


def got(*ids: str, body: str = "b") -> list[Got]:
    return [Got(i, body) for i in ids]


def test_all_received_once_in_order_is_ok() -> None:
    report = check(TRUTH, got(*TRUTH))
    assert report.ok and report.expected == 4 and report.received == 4
    assert not (report.lost or report.duplicated or report.unexpected or report.order_violations)


def test_lost_names_what_never_arrived_and_dead_letters_are_not_lost() -> None:
    report = check(TRUTH, got(*TRUTH[:2]))
    assert report.lost == ("s:2:order.created", "s:1:order.cancelled") and not report.ok
    report = check(TRUTH, got(*TRUTH[:3]), dead=["s:1:order.cancelled"])
    assert report.lost == () and report.dead == ("s:1:order.cancelled",) and report.ok


def test_duplicates_say_whether_they_repeat_the_delivered_bytes() -> None:
    report = check(TRUTH, [*got(*TRUTH), Got("s:1:order.paid", "b"), Got("s:1:order.paid", "b")])
    [dup] = report.duplicated
    assert (dup.id, dup.copies, dup.same_body) == ("s:1:order.paid", 2, True)
    assert report.ok and report.extra_copies == 2  # harmless after receiver dedupe
    report = check(TRUTH, [*got(*TRUTH), Got("s:2:order.created", "other")])
    assert [d.same_body for d in report.duplicated] == [False] and not report.ok


def test_unexpected_names_what_the_history_never_implied() -> None:
    report = check(TRUTH, got(*TRUTH, "s:9:order.refunded", ""))
    assert report.unexpected == ("s:9:order.refunded", "") and not report.ok


def test_order_violations_per_order_only() -> None:
    # s:2 arriving before s:1's events is fine (other order); paid before created is not.
    arrived = ["s:2:order.created", "s:1:order.paid", "s:1:order.created", "s:1:order.cancelled"]
    report = check(TRUTH, got(*arrived))
    assert report.order_violations == (("s:1:order.created", "s:1:order.paid"),)
    assert not report.ok
    # A duplicate arriving late does not reorder: the first arrival counts.
    assert check(TRUTH, got(*TRUTH, "s:1:order.created")).order_violations == ()


def test_woo_truth_follows_the_simulators_history() -> None:
    history = [
        Transition(T0, 100, "pending", Decimal(0)),
        Transition(T0 + timedelta(seconds=1), 101, "processing", Decimal(0)),
        Transition(T0 + timedelta(seconds=2), 100, "processing", Decimal(0)),
        Transition(T0 + timedelta(seconds=3), 100, "cancelled", Decimal(0)),
        Transition(T0 + timedelta(seconds=4), 101, "refunded", Decimal("5")),
    ]
    assert woo_truth(history) == [
        "shop:100:order.created",
        "shop:101:order.created",
        "shop:101:order.paid",
        "shop:100:order.paid",
        "shop:100:order.cancelled",
        "shop:101:order.refunded",
    ]
    # Orders created before the start point announce nothing.
    late = woo_truth(history, store="x", since=T0 + timedelta(seconds=1))
    assert late == ["x:101:order.created", "x:101:order.paid", "x:101:order.refunded"]


def test_shop_truth_rebuilds_the_state_each_change_leaves() -> None:
    def at(n: int, oid: int, action: str, financial: str) -> Change:
        return Change(T0 + timedelta(seconds=n), oid, action, financial)

    history = [
        at(0, 7, "create", "PENDING"),
        at(1, 8, "create", "PAID"),  # paid at checkout: two events from one change
        at(2, 7, "touch", "PENDING"),  # updatedAt moves, nothing is proved
        at(3, 7, "paid", "PAID"),
        at(4, 8, "fulfill", "PAID"),
        at(5, 7, "refund", "PARTIALLY_REFUNDED"),
        at(6, 7, "refund", "REFUNDED"),  # the partial refund stays announced once
        at(7, 8, "cancel", "PAID"),
        at(8, 8, "refund", "REFUNDED"),
        at(9, 9, "create", "AUTHORIZED"),  # a hold is not a payment
        at(10, 9, "voided", "VOIDED"),
        at(11, 9, "delete", "VOIDED"),
    ]
    assert shop_truth(history) == [
        "shop:7:order.created",
        "shop:8:order.created",
        "shop:8:order.paid",
        "shop:7:order.paid",
        "shop:8:order.fulfilled",
        "shop:7:order.partially_refunded",
        "shop:7:order.refunded",
        "shop:8:order.cancelled",
        "shop:8:order.refunded",
        "shop:9:order.created",
        "shop:9:order.deleted",
    ]
    late = shop_truth(history, store="x", since=T0 + timedelta(seconds=1))
    assert late[:2] == ["x:8:order.created", "x:8:order.paid"] and not any(":7:" in e for e in late)


def test_shop_truth_matches_pollerds_rules_on_a_real_simulator() -> None:
    """Each order's truth is what pollerd's own Shopify rules say its final state proves (the
    two are written apart, so a drift between them fails here, not in a fault test)."""
    sim = ShopSim()  # never started: only its book is used
    paid = sim.create_order(financial="PAID")
    sim.fulfill(paid)
    held = sim.create_order(financial="AUTHORIZED")
    sim.pay(held)
    sim.refund(held, "5.00")
    gone = sim.create_order()
    sim.cancel(gone)
    truth = shop_truth(sim.history())
    assert len(sim.history()) == 7
    for oid in (paid, held, gone):
        order = normalize_order(sim.order(oid), store="shop", shop=sim.shop)
        mine = {e.rsplit(":", 1)[1] for e in truth if e.startswith(f"shop:{oid}:")}
        assert mine == shopify_implied(order), oid


def test_receipts_of_a_sink_and_plain_data() -> None:
    class R:
        def __init__(self, wid: str | None, body: bytes) -> None:
            self.webhook_id, self.body = wid, body

    gots = receipts_of([R("a", b"x"), R(None, b"x"), R("a", b"y")])
    assert [g.id for g in gots] == ["a", "", "a"] and gots[0].body != gots[2].body
    data = as_dict(check(["a"], gots))
    assert data["unexpected"] == [""] and data["duplicated"][0]["same_body"] is False
