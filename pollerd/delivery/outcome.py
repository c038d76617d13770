"""Small facts about one send's outcome: when a failed delivery gives up, how it is counted."""

from __future__ import annotations

import time

from pollerd.channels.base import SendResult
from pollerd.config import DeliveryConfig
from pollerd.model import Event


def gives_up(cfg: DeliveryConfig, created_at: float, attempts: int, next_at: float) -> str | None:
    """Why a failed delivery is dead now, or None: `max_attempts` (when set) is spent, or its
    next attempt would fall past its expiry (created_at + dead_after), so no row ever waits
    past the horizon the README promises (a `Retry-After: 99999999` left one due in 1,157
    days)."""
    if cfg.max_attempts and attempts >= cfg.max_attempts:
        return f"gave up after {attempts} attempts"
    horizon = cfg.dead_after.total_seconds()
    if next_at >= created_at + horizon:
        return f"not sent within dead_after = {span(horizon)}"
    return None


def span(seconds: float) -> str:
    """A duration as the config writes it: `72h`, `90m`, `45s`."""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def latency(event: Event) -> float:
    """sent_at - detected_at, on the wall clock `Store.mark` stamps `sent_at` with."""
    return time.time() - event.detected_at.timestamp()


def refused(outcome: SendResult) -> str:
    """A refusal for good: "suppressed" when the recipients opted out or blocked pollerd (an
    SMS STOP, a blocked bot), "permanent" for a broken channel or message."""
    return "suppressed" if outcome.scope == "recipient" else "permanent"
