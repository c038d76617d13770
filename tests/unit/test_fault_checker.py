"""The fault suite's checker (`pollerd_sim.testing.faults`): each field of its report can fail,
and the truth it derives from a simulator's history is the one pollerd announces."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from pollerd_sim.testing.faults import Got, as_dict, check, receipts_of, woo_truth
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


def test_receipts_of_a_sink_and_plain_data() -> None:
    class R:
        def __init__(self, wid: str | None, body: bytes) -> None:
            self.webhook_id, self.body = wid, body

    gots = receipts_of([R("a", b"x"), R(None, b"x"), R("a", b"y")])
    assert [g.id for g in gots] == ["a", "", "a"] and gots[0].body != gots[2].body
    data = as_dict(check(["a"], gots))
    assert data["unexpected"] == [""] and data["duplicated"][0]["same_body"] is False
