"""A realistic, seeded stream of shop activity for `pollerd demo`, `pollerd sim` and benchmarks.

The mix is the set of lives a WooCommerce order really has (research/woocommerce.md §1.4, §1.9),
including the ones that trip naive pollers: card orders paid at checkout; BACS orders that wait
`on-hold` and are paid days later; cash-on-delivery orders that look paid at `processing`;
unpaid orders cancelled by the pending-payment timeout; a paid order cancelled (date_paid stays);
partial and full refunds; a Blocks checkout draft that becomes a real order; a trashed order.
Customers are a mixed crowd (张伟 and Amélie alike) on example.test domains, in USD and EUR.

Each `step()` is one thing happening in the shop: a new order (created and checked out in the
same second, as a real checkout does) or the next follow-up of an earlier order. Given the seed,
the sequence is deterministic.
"""

from __future__ import annotations

import contextlib
import heapq
import random
import threading
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from pollerd_sim.woocommerce import WooSim

PEOPLE = (
    ("Ada", "Lovelace", "ada.lovelace@example.test", "+15550100", "USD"),
    ("Grace", "Hopper", "grace@navy.example.test", "+15550199", "USD"),
    ("Alan", "Turing", "alan.turing@example.test", "+447700900123", "USD"),
    ("伟", "张", "zhang.wei@example.test", "13800138000", "USD"),
    ("芳", "王", "wang.fang@mail.example.test", "13912345678", "USD"),
    ("娜", "李", "li.na@example.test", "+8613700137000", "USD"),
    ("Amélie", "Dubois", "amelie.dubois@example.test", "+33612345678", "EUR"),
    ("Sofia", "Rossi", "sofia.rossi@example.test", "+393471234567", "EUR"),
    ("José", "García", "jose.garcia@correo.example.test", "+34612345678", "EUR"),
    ("Hedy", "Lamarr", "hedy@example.test", "", "EUR"),
    ("Katherine", "Johnson", "kjohnson@example.test", "+15550142", "USD"),
    ("Linus", "Berg", "linus.berg@example.test", "+46701234567", "EUR"),
)
PRODUCTS = (
    ("Test Mug", "MUG-1", 10, "12.50"),
    ("Oolong Tea Tin", "TEA-2", 11, "8.90"),
    ("Dot Grid Notebook", "NB-3", 12, "4.25"),
    ("Hoodie", "HD-4", 13, "39.00"),
    ("Bamboo Steamer", "BS-5", 14, "22.00"),
    ("Desk Lamp", "LMP-6", 15, "54.00"),
)
# scenario: (weight, payment methods, status at creation, follow-up actions)
SCENARIOS: dict[str, tuple[int, tuple[str, ...], str, tuple[str, ...]]] = {
    "card_fulfilled": (30, ("stripe", "ppcp-gateway"), "checkout", ("completed",)),
    "bacs_paid_later": (14, ("bacs",), "checkout", ("processing", "completed")),
    "cod_delivered": (10, ("cod",), "checkout", ("completed",)),
    "unpaid_cancelled": (8, ("stripe", "cheque"), "pending", ("cancelled",)),
    "paid_cancelled": (5, ("stripe",), "checkout", ("cancelled",)),
    "partial_refund": (6, ("stripe",), "checkout", ("refund_partial", "completed")),
    "full_refund": (5, ("stripe", "ppcp-gateway"), "checkout", ("completed", "refund_full")),
    "draft_to_order": (6, ("stripe",), "checkout-draft", ("pending", "checkout")),
    "failed_payment": (3, ("stripe",), "pending", ("failed",)),
    "trashed": (3, ("bacs",), "pending", ("trash",)),
}


class StreamAction(NamedTuple):
    """What one step did: `kind` is the scenario step, e.g. `create:bacs_paid_later`."""

    kind: str
    order_id: int
    status: str


class OrderStream:
    """Drives a `WooSim` like a shop with customers; see the module docstring."""

    def __init__(self, sim: WooSim, *, seed: int = 0, orders_per_minute: float = 30.0) -> None:
        if orders_per_minute <= 0:
            raise ValueError("orders_per_minute must be positive")
        self.sim = sim
        self.orders_per_minute = orders_per_minute
        self._rng = random.Random(seed)
        self._timing = random.Random(seed + 1)
        self._step = 0
        self._seq = 0
        # (due step, tie-break, order id, remaining follow-ups)
        self._due: list[tuple[int, int, int, tuple[str, ...]]] = []
        self.actions: list[StreamAction] = []

    @property
    def interval(self) -> float:
        """Mean seconds between steps."""
        return 60.0 / self.orders_per_minute

    def step(self) -> StreamAction:
        """Perform the next action; a follow-up if one is due, else a new order."""
        self._step += 1
        while self._due and self._due[0][0] <= self._step:
            _, _, order_id, remaining = heapq.heappop(self._due)
            action = self._follow_up(order_id, remaining)
            if action is not None:
                self.actions.append(action)
                return action
        action = self._new_order()
        self.actions.append(action)
        return action

    def run(self, stop: threading.Event) -> None:
        """Step until `stop` is set, Poisson-spaced around `interval` (capped at 4x)."""
        while not stop.is_set():
            # Someone else may delete or change an order under us: keep the shop open.
            with contextlib.suppress(KeyError, ValueError):
                self.step()
            wait = min(self._timing.expovariate(1.0 / self.interval), 4 * self.interval)
            if stop.wait(wait):
                return

    def history(self, days: tuple[int, ...] = (6, 3, 2)) -> list[int]:
        """Orders placed `days` ago and untouched since (BACS awaiting the transfer, a card
        order), each with a follow-up due within the first steps: what a real shop has when
        pollerd first starts. Call before the daemon starts."""
        now = self.sim.book.now()  # the simulated store's clock, which tests may skew
        plans: tuple[tuple[str, str, tuple[str, ...]], ...] = (
            ("bacs", "on-hold", ("processing",)),
            ("bacs", "on-hold", ("cancelled",)),
            ("stripe", "processing", ("completed",)),
        )
        made = []
        for age, (method, status, follow) in zip(days, plans, strict=False):
            first, last, email, phone, currency = self._rng.choice(PEOPLE)
            name, sku, pid, price = self._rng.choice(PRODUCTS)
            order_id = self.sim.create_order(
                status=status,
                payment_method=method,
                currency=currency,
                email=email,
                phone=phone,
                first_name=first,
                last_name=last,
                items=[{"name": name, "sku": sku, "product_id": pid, "price": price}],
                set_paid=status == "processing",
                created_at=now - timedelta(days=age),
            )
            self._schedule(order_id, follow)
            made.append(order_id)
        return made

    # --- internals -----------------------------------------------------------------------------

    def _schedule(self, order_id: int, remaining: tuple[str, ...]) -> None:
        if remaining:
            self._seq += 1
            due = self._step + self._rng.randint(2, 12)
            heapq.heappush(self._due, (due, self._seq, order_id, remaining))

    def _new_order(self) -> StreamAction:
        names = list(SCENARIOS)
        scenario = self._rng.choices(names, weights=[SCENARIOS[n][0] for n in names])[0]
        _, methods, start, follow = SCENARIOS[scenario]
        first, last, email, phone, currency = self._rng.choice(PEOPLE)
        items = [
            {
                "name": name,
                "sku": sku,
                "product_id": pid,
                "price": price,
                "quantity": self._rng.choice((1, 1, 1, 2, 3)),
            }
            for name, sku, pid, price in self._rng.sample(PRODUCTS, self._rng.choice((1, 1, 2, 3)))
        ]
        order_id = self.sim.create_order(
            status="checkout-draft" if start == "checkout-draft" else "pending",
            payment_method=self._rng.choice(methods),
            currency=currency,
            email=email,
            phone=phone,
            first_name=first,
            last_name=last,
            items=items,
        )
        if start == "checkout":
            self.sim.checkout(order_id)
        self._schedule(order_id, follow)
        return StreamAction(f"create:{scenario}", order_id, self._status(order_id))

    def _follow_up(self, order_id: int, remaining: tuple[str, ...]) -> StreamAction | None:
        action, rest = remaining[0], remaining[1:]
        try:
            if action == "checkout":
                self.sim.checkout(order_id)
            elif action == "trash":
                self.sim.trash(order_id)
            elif action.startswith("refund_"):
                total = Decimal(self.sim.order(order_id)["total"])
                part = (total * Decimal("0.3")).quantize(Decimal("0.01"))
                amount = total if action == "refund_full" or part <= 0 else part
                reason = self._rng.choice(("Damaged in transit", "Customer request", ""))
                self.sim.refund(order_id, amount, reason)
            else:
                self.sim.set_status(order_id, action)
        except (KeyError, ValueError):
            return None  # changed or deleted behind the stream's back (admin API, tests)
        self._schedule(order_id, rest)
        return StreamAction(action, order_id, self._status(order_id))

    def _status(self, order_id: int) -> str:
        return str(self.sim.order(order_id)["status"])
