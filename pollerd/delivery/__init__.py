"""The delivery outbox: `loop` (one task per channel), `limiter` (rate budgets), `watch`
(failing channels). See `pollerd.delivery.loop` for the guarantees."""

from pollerd.delivery.limiter import WINDOW_PAD, Limiter, Slot
from pollerd.delivery.loop import DIGEST_AFTER, DIGEST_MAX, Deliverer, Gates, Round

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
