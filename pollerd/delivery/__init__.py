"""The delivery outbox: `loop` (one task per channel), `limiter` (rate budgets, sends in
flight), `plan` (what a budgeted round sends, digests), `outcome` (giving up, counting).
Failing channels and their alert live in `pollerd.alerts.channel`. See
`pollerd.delivery.loop` for the guarantees."""

from pollerd.delivery.limiter import WINDOW_PAD, Gates, Limiter, Slot
from pollerd.delivery.loop import DIGEST_AFTER, DIGEST_MAX, Deliverer, Round

__all__ = [
    "DIGEST_AFTER",
    "DIGEST_MAX",
    "WINDOW_PAD",
    "Deliverer",
    "Gates",
    "Limiter",
    "Round",
    "Slot",
]
