"""A seeded stream of Shopify order lives for `pollerd demo` and `pollerd sim`.

The mix is the set of lives a Shopify order really has (research/shopify.md §1.3, §1.6, §1.7),
including the ones that trip naive pollers: a card *authorised* at checkout and captured later
(an authorisation is not a payment), an authorisation that is voided and the order cancelled,
manual payment methods paid days later, partial and full refunds, test orders from the Bogus
gateway, and a chargeback that opens a dispute. Customers and products are `stream.py`'s.
"""

from __future__ import annotations

import contextlib
import heapq
import random
import threading
from decimal import Decimal
from typing import TYPE_CHECKING

from pollerd_sim.stream import PEOPLE, PRODUCTS, StreamAction

if TYPE_CHECKING:
    from pollerd_sim.shopify import ShopSim

# scenario: (weight, financial status at creation, gateway, follow-up actions)
SCENARIOS: dict[str, tuple[int, str, str, tuple[str, ...]]] = {
    "card_fulfilled": (30, "PAID", "shopify_payments", ("fulfill",)),
    "authorized_captured": (14, "AUTHORIZED", "shopify_payments", ("pay", "fulfill")),
    "authorization_voided": (6, "AUTHORIZED", "shopify_payments", ("void", "cancel")),
    "bank_paid_later": (10, "PENDING", "Bank Deposit", ("pay", "fulfill")),
    "partial_refund": (8, "PAID", "paypal", ("refund_partial", "fulfill")),
    "cancelled_refunded": (6, "PAID", "shopify_payments", ("cancel", "refund_full")),
    "test_order": (4, "PAID", "bogus", ()),
    "chargeback": (3, "PAID", "shopify_payments", ("fulfill", "dispute", "under_review")),
}


class ShopStream:
    """`step()` is one thing happening in the shop; `run(stop)` steps at `orders_per_minute`."""

    def __init__(self, sim: ShopSim, *, seed: int = 0, orders_per_minute: float = 40.0) -> None:
        self.sim = sim
        self.interval = 60.0 / orders_per_minute / 2  # half the steps are follow-ups
        self._rng = random.Random(seed)
        self._timing = random.Random(seed + 1)
        self._due: list[tuple[int, int, int, tuple[str, ...]]] = []
        self._disputes: dict[int, int] = {}
        self._step = self._seq = 0

    def step(self) -> StreamAction:
        self._step += 1
        while self._due and self._due[0][0] <= self._step:
            _, _, order_id, remaining = heapq.heappop(self._due)
            action = self._follow_up(order_id, remaining)
            if action is not None:
                return action
        return self._new_order()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(KeyError, ValueError):
                self.step()
            wait = min(self._timing.expovariate(1.0 / self.interval), 4 * self.interval)
            if stop.wait(wait):
                return

    def _new_order(self) -> StreamAction:
        names = list(SCENARIOS)
        scenario = self._rng.choices(names, weights=[SCENARIOS[n][0] for n in names])[0]
        _, financial, gateway, follow = SCENARIOS[scenario]
        first, last, email, phone, currency = self._rng.choice(PEOPLE)
        chosen = self._rng.sample(PRODUCTS, self._rng.choice((1, 1, 2, 3)))
        items = [
            {"name": name, "sku": sku, "price": price, "quantity": self._rng.choice((1, 1, 2))}
            for name, sku, _pid, price in chosen
        ]
        total = sum((Decimal(str(i["price"])) * int(i["quantity"]) for i in items), Decimal(0))
        order_id = self.sim.create_order(
            financial=financial,
            total=str(total),
            currency=currency,
            email=email,
            phone=phone,
            first_name=first,
            last_name=last,
            items=items,
            test=gateway == "bogus",
            gateway=gateway,
        )
        if follow:
            self._seq += 1
            heapq.heappush(
                self._due, (self._step + self._rng.randint(2, 10), self._seq, order_id, follow)
            )
        return StreamAction(f"create:{scenario}", order_id, financial.lower())

    def _follow_up(self, order_id: int, remaining: tuple[str, ...]) -> StreamAction | None:
        action, rest = remaining[0], remaining[1:]
        try:
            if action.startswith("refund_"):
                total = Decimal(
                    str(self.sim.order(order_id)["totalPriceSet"]["shopMoney"]["amount"])
                )
                part = (total * Decimal("0.3")).quantize(Decimal("0.01"))
                self.sim.refund(order_id, str(total if action == "refund_full" else part))
            elif action == "dispute":
                amount = str(self.sim.order(order_id)["totalPriceSet"]["shopMoney"]["amount"])
                self._disputes[order_id] = self.sim.add_dispute(order_id, amount)
            elif action == "under_review":
                self.sim.set_dispute_status(self._disputes[order_id], "UNDER_REVIEW")
            else:
                getattr(self.sim, action)(order_id)  # pay, void, cancel, fulfill
        except (KeyError, ValueError):
            return None  # changed or deleted behind the stream's back
        if rest:
            self._seq += 1
            heapq.heappush(
                self._due, (self._step + self._rng.randint(2, 10), self._seq, order_id, rest)
            )
        return StreamAction(action, order_id, action)
