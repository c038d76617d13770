"""Table tests for the WooCommerce rules of DESIGN §4/§5: one row per status path."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from pollerd.diff import diff, unchanged
from pollerd.model import Order, Snapshot
from pollerd.sources.woocommerce.rules import WooRules

START = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
T = START + timedelta(minutes=30)
PAID = T + timedelta(seconds=5)


def order(
    status: str,
    *,
    paid: bool = False,
    method: str = "bacs",
    refunded: str = "0",
    completed: bool = False,
    created: datetime = T,
    step: int = 0,
) -> Order:
    return Order(
        store="s",
        platform="woocommerce",
        id="13",
        number="13",
        status=status,
        created_at=created,
        updated_at=T + timedelta(seconds=10 + step),
        total="25.00",
        currency="USD",
        paid_at=PAID if paid else None,
        completed_at=T + timedelta(seconds=9) if completed else None,
        payment_method=method,
        refunded_total=Decimal(refunded),
    )


def run(*observations: Order, rules: WooRules | None = None) -> list[list[str]]:
    """Feed successive observations of one order; return the event types of each step."""
    snap: Snapshot | None = None
    out = []
    for obs in observations:
        snap, events = diff(snap, obs, detected_at=obs.updated_at, start_at=START, rules=rules)
        out.append([e.type for e in events])
    return out


C, P, F, PR, R, X, D = (
    "order.created",
    "order.paid",
    "order.fulfilled",
    "order.partially_refunded",
    "order.refunded",
    "order.cancelled",
    "order.deleted",
)

CASES = {
    "pending then paid by card": (
        [order("pending"), order("processing", paid=True, step=1)],
        [[C], [P]],
    ),
    "bacs: on-hold is not paid": (
        [order("on-hold"), order("processing", paid=True, step=1)],
        [[C], [P]],
    ),
    "on-hold with sticky date_paid first seen is still not paid": (
        [order("on-hold", paid=True)],
        [[C]],
    ),
    "first seen completed implies created, paid, fulfilled": (
        [order("completed", paid=True, completed=True)],
        [[C, P, F]],
    ),
    "completed without date_paid (admin order) is paid": (
        [order("completed", completed=True)],
        [[C, P, F]],
    ),
    "checkout-draft is never announced; created when it becomes pending": (
        [order("checkout-draft"), order("pending", step=1)],
        [[], [C]],
    ),
    "draft trashed: nothing": ([order("checkout-draft"), order("trash", step=1)], [[], []]),
    "cod: processing with date_paid is not paid": (
        [order("processing", paid=True, method="cod")],
        [[C]],
    ),
    "cod: paid only at completed": (
        [
            order("processing", paid=True, method="cod"),
            order("completed", paid=True, method="cod", completed=True, step=1),
        ],
        [[C], [P, F]],
    ),
    "cod cancelled keeps date_paid but was never paid": (
        [
            order("processing", paid=True, method="cod"),
            order("cancelled", paid=True, method="cod", step=1),
        ],
        [[C], [X]],
    ),
    "paid then cancelled: sticky date_paid never re-fires": (
        [
            order("processing", paid=True),
            order("cancelled", paid=True, step=1),
            order("cancelled", paid=True, step=2),
        ],
        [[C, P], [X], []],
    ),
    "first seen cancelled with date_paid: created, paid, cancelled": (
        [order("cancelled", paid=True)],
        [[C, P, X]],
    ),
    "pending cancelled: never paid": ([order("pending"), order("cancelled", step=1)], [[C], [X]]),
    "failed is created only": ([order("failed")], [[C]]),
    "partial refund grows, then full": (
        [
            order("processing", paid=True),
            order("processing", paid=True, refunded="5", step=1),
            order("processing", paid=True, refunded="7", step=2),
            order("refunded", paid=True, refunded="25", step=3),
        ],
        [[C, P], [PR], [], [R]],
    ),
    "first seen refunded implies created and paid": (
        [order("refunded", paid=True, refunded="25")],
        [[C, P, R]],
    ),
    "refunded without date_paid still implies paid": (
        [order("refunded", refunded="25")],
        [[C, P, R]],
    ),
    "trash after an announced order: deleted once, restore silent": (
        [
            order("processing", paid=True),
            order("trash", paid=True, step=1),
            order("processing", paid=True, step=2),
            order("trash", paid=True, step=3),
        ],
        [[C, P], [D], [], []],
    ),
    "unknown order first seen in trash: nothing": ([order("trash")], [[]]),
    "updated_at moving with nothing changed: nothing": (
        [order("processing", paid=True), order("processing", paid=True, step=1)],
        [[C, P], []],
    ),
    "paid, fulfilled, refunded": (
        [
            order("processing", paid=True),
            order("completed", paid=True, completed=True, step=1),
            order("refunded", paid=True, completed=True, refunded="25", step=2),
        ],
        [[C, P], [F], [R]],
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_woocommerce_paths(name: str) -> None:
    observations, expected = CASES[name]
    assert run(*observations) == expected


def test_pay_on_delivery_methods_are_configurable() -> None:
    rules = WooRules(pay_on_delivery_methods=frozenset({"cod", "cheque_on_delivery"}))
    assert run(order("processing", paid=True, method="cheque_on_delivery"), rules=rules) == [[C]]
    assert run(order("processing", paid=True, method="cod"), rules=WooRules(frozenset())) == [
        [C, P]
    ]


OLD = START - timedelta(days=5)
EARLY = START - timedelta(days=4)  # a change before the start point


def old_order(status: str, *, updated: datetime = T, **dates: object) -> Order:
    """An order placed five days before the start point, first seen now."""
    base = order(status, created=OLD)
    return replace(base, updated_at=updated, **dates)  # type: ignore[arg-type]


PRE_START_CASES = {
    # (first observation, events): the change after the start alerts, what came before does not.
    "bacs paid after the start: paid, never created": (old_order("processing", paid_at=PAID), [P]),
    "paid before the start, touched after: nothing": (old_order("processing", paid_at=EARLY), []),
    "completed after the start": (
        old_order("completed", paid_at=EARLY, completed_at=PAID),
        [F],
    ),
    "completed before the start, touched after: nothing": (
        old_order("completed", paid_at=EARLY, completed_at=EARLY),
        [],
    ),
    "cash on delivery completed after the start: paid then": (
        old_order("completed", paid_at=EARLY, completed_at=PAID, payment_method="cod"),
        [P, F],
    ),
    "refund dated after the start": (
        old_order("refunded", paid_at=EARLY, refunded_total=Decimal(25), refunds_at=(PAID,)),
        [R],
    ),
    "cancelled, no date of its own, changed after the start: alerts": (
        old_order("cancelled"),
        [X],
    ),
    "cancelled, last changed before the start: nothing": (
        old_order("cancelled", updated=START - timedelta(minutes=3)),
        [],
    ),
    "trashed after the start": (old_order("trash", paid_at=EARLY, hidden_from="processing"), [D]),
    "trashed after the start, by its trash time": (
        old_order("trash", paid_at=EARLY, hidden_from="processing", hidden_at=PAID),
        [D],
    ),
    # Seen on a real WooCommerce 10.0.2: trashed two days before the start, then edited by the
    # REST API after it (date_modified moves): the trash's own time says it is history.
    "trashed before the start, edited after: nothing": (
        old_order("trash", paid_at=EARLY, hidden_from="processing", hidden_at=EARLY),
        [],
    ),
}


@pytest.mark.parametrize("name", list(PRE_START_CASES))
def test_orders_created_before_start_alert_only_what_happened_after(name: str) -> None:
    observation, expected = PRE_START_CASES[name]
    assert run(observation) == [expected]


def test_an_old_order_known_from_the_baseline_diffs_against_it() -> None:
    assert run(
        old_order("on-hold", updated=EARLY),  # the baseline: before the start, silent
        old_order("cancelled"),
        old_order("trash", hidden_from="cancelled", updated=T + timedelta(minutes=1)),
    ) == [[], [X], [D]]


TRASH_FIRST_SIGHT = {
    # Created after the start point, first seen in the trash (issue 11 item 2).
    "paid then trashed": (order("trash", paid=True), [C, P, D]),
    "on-hold then trashed (trash meta)": (
        replace(order("trash", paid=True), hidden_from="on-hold"),
        [C, D],
    ),
    "completed then trashed": (order("trash", paid=True, completed=True), [C, P, F, D]),
    "a draft trashed: nothing": (replace(order("trash"), hidden_from="checkout-draft"), []),
}


@pytest.mark.parametrize("name", list(TRASH_FIRST_SIGHT))
def test_first_sight_in_the_trash_fills_in_what_happened(name: str) -> None:
    observation, expected = TRASH_FIRST_SIGHT[name]
    assert run(observation) == [expected]


def test_events_carry_ids_times_and_the_order() -> None:
    snap, events = diff(None, order("processing", paid=True), detected_at=PAID, start_at=START)
    assert [e.id for e in events] == ["s:13:order.created", "s:13:order.paid"]
    assert events[0].occurred_at == T and events[1].occurred_at == PAID
    body = events[1].to_json()
    assert body["order"]["total"] == "25.00" and body["platform"] == "woocommerce"
    assert snap.fired == {"order.created", "order.paid"}


def test_unchanged_compares_time_and_status() -> None:
    snap, _ = diff(None, order("pending"), detected_at=T, start_at=START)
    assert unchanged(snap, snap.updated_at, "pending")
    assert not unchanged(snap, snap.updated_at, "processing")
    assert not unchanged(snap, snap.updated_at + timedelta(seconds=1), "pending")
    assert not unchanged(None, T, "pending")


# --- Shopify (DESIGN §4): financial paths -------------------------------------------------------


def shop(
    financial: str,
    *,
    step: int = 0,
    cancelled: bool = False,
    fulfilled: bool = False,
    refunded: str = "0",
    test: bool = False,
    created: datetime = T,
) -> Order:
    return Order(
        store="s",
        platform="shopify",
        id="5273485869312",
        number="#1001",
        status="cancelled" if cancelled else financial,
        created_at=created,
        updated_at=T + timedelta(seconds=10 + step),
        total="25.00",
        currency="USD",
        cancelled_at=T + timedelta(seconds=10 + step) if cancelled else None,
        cancel_reason="customer" if cancelled else None,
        financial_status=financial,
        fulfillment_status="fulfilled" if fulfilled else "unfulfilled",
        refunded_total=Decimal(refunded),
        test=test,
    )


SHOPIFY_CASES: dict[str, tuple[list[Order], list[list[str]]]] = {
    "authorized is not paid; capture is": (
        [shop("authorized"), shop("paid", step=1)],
        [[C], [P]],
    ),
    "pending, then paid": ([shop("pending"), shop("paid", step=1)], [[C], [P]]),
    "partially paid is not paid": (
        [shop("partially_paid"), shop("paid", step=1)],
        [[C], [P]],
    ),
    "authorization expired: never paid": (
        [shop("authorized"), shop("expired", step=1)],
        [[C], []],
    ),
    "authorization voided and cancelled": (
        [shop("authorized"), shop("voided", step=1, cancelled=True)],
        [[C], [X]],
    ),
    "first seen paid": ([shop("paid")], [[C, P]]),
    "paid, partially refunded, refunded": (
        [
            shop("paid"),
            shop("partially_refunded", refunded="10", step=1),
            shop("refunded", refunded="25", step=2),
        ],
        [[C, P], [PR], [R]],
    ),
    "first seen refunded: it was paid": ([shop("refunded", refunded="25")], [[C, P, R]]),
    "first seen partially refunded": (
        [shop("partially_refunded", refunded="5")],
        [[C, P, PR]],
    ),
    "paid then cancelled and refunded": (
        [shop("paid"), shop("refunded", refunded="25", step=1, cancelled=True)],
        [[C, P], [R, X]],
    ),
    "paid then fulfilled": (
        [shop("paid"), shop("paid", step=1, fulfilled=True)],
        [[C, P], [F]],
    ),
    "updated_at moving with nothing changed: nothing": (
        [shop("paid"), shop("paid", step=1), shop("paid", step=2)],
        [[C, P], [], []],
    ),
    "cancelled while pending: never paid": (
        [shop("pending"), shop("pending", step=1, cancelled=True)],
        [[C], [X]],
    ),
}


@pytest.mark.parametrize("name", list(SHOPIFY_CASES))
def test_shopify_paths(name: str) -> None:
    observations, expected = SHOPIFY_CASES[name]
    assert run(*observations) == expected


def test_shopify_events_carry_test_flag_and_cancel_reason() -> None:
    _, events = diff(None, shop("paid", cancelled=True, test=True), detected_at=T, start_at=START)
    assert [e.type for e in events] == [C, P, X]
    assert all(e.test for e in events) and all(e.to_json()["test"] is True for e in events)
    assert events[2].to_json()["reason"] == "customer"
    assert events[0].id == "s:5273485869312:order.created"


def test_shopify_order_placed_before_start_alerts_what_its_dates_put_after() -> None:
    old = START - timedelta(days=20)
    early = START - timedelta(days=19)
    paid = replace(shop("paid", created=old), paid_at=early)
    assert run(paid, replace(paid, financial_status="refunded", refunds_at=(PAID,))) == [[], [R]]
    assert run(replace(paid, cancelled_at=PAID, status="cancelled")) == [[X]]
    assert run(replace(paid, fulfillment_status="fulfilled", completed_at=PAID)) == [[F]]
    assert run(replace(paid, fulfillment_status="fulfilled", completed_at=early)) == [[]]
    captured = replace(shop("paid", created=old), paid_at=PAID)
    assert run(captured) == [[P]]


def test_deletion_announced_once_and_only_for_known_orders() -> None:
    from pollerd.diff import deleted
    from pollerd.model import Deletion

    gone = Deletion("5273485869312", T + timedelta(minutes=1), "Order #1001 was deleted.")
    args = {"store": "s", "platform": "shopify", "detected_at": T, "last_order": None}
    assert deleted(None, gone, **args) == (None, [])  # never seen: noise
    # Never seen, but destroyed after the start point: a dated change of an old order.
    assert deleted(None, gone, **args, start_at=T + timedelta(minutes=2))[1] == []
    snap0, events0 = deleted(None, gone, **args, start_at=START)
    assert [e.type for e in events0] == ["order.deleted"] and snap0 is not None
    assert deleted(snap0, gone, **args, start_at=START)[1] == []  # once
    snap, _ = diff(None, shop("paid"), detected_at=T, start_at=START)
    snap2, events = deleted(snap, gone, **args)
    assert [e.id for e in events] == ["s:5273485869312:order.deleted"]
    assert events[0].order["status"] == "deleted" and events[0].reason == gone.message
    assert deleted(snap2, gone, **args)[1] == []


def test_dispute_opened_then_each_status_once() -> None:
    from pollerd.diff import dispute_diff
    from pollerd.model import Dispute

    def dispute(status: str, initiated: datetime = T) -> Dispute:
        return Dispute(
            "77",
            "5273485869312",
            "#1001",
            status,
            "CHARGEBACK",
            "25.00",
            "USD",
            "FRAUDULENT",
            initiated,
            None,
        )

    args = {"store": "s", "platform": "shopify", "detected_at": T, "start_at": START, "order": None}
    snap, events = dispute_diff(None, dispute("NEEDS_RESPONSE"), **args)
    assert [e.id for e in events] == ["s:5273485869312:dispute.opened:77"]
    assert events[0].to_json()["dispute"]["amount"] == "25.00"
    snap, events = dispute_diff(snap, dispute("NEEDS_RESPONSE"), **args)
    assert events == []
    snap, events = dispute_diff(snap, dispute("UNDER_REVIEW"), **args)
    assert [e.id for e in events] == ["s:5273485869312:dispute.updated:77:under_review"]
    snap, events = dispute_diff(snap, dispute("WON"), **args)
    assert [e.type for e in events] == ["dispute.updated"]
    old = dispute("LOST", initiated=START - timedelta(days=9))
    assert dispute_diff(None, old, **args)[1] == []  # before the start point: baseline
    from pollerd.model import Event

    again = Event.from_json(events[0].to_json())
    assert again.id == events[0].id
