"""Small facts about one send's outcome: what it was, when a failed delivery gives up, how it
is counted. The outcome is the error tree's channel vocabulary (`pollerd.errors`) as a value:
`SendResult` ok, retry(after) or permanent(scope)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable

from pollerd.channels.base import SendResult
from pollerd.config import DeliveryConfig
from pollerd.errors import ChannelError
from pollerd.model import Event


async def attempt(send: Awaitable[SendResult], timeout: float) -> SendResult:
    """One send's outcome, always a SendResult: a `ChannelError` the channel raises is taken
    as it says (retryable or permanent with its scope); a send hanging past `send_timeout`
    or an adapter bug is retried, never lost."""
    try:
        return await asyncio.wait_for(send, timeout)
    except TimeoutError:
        return SendResult.retry("send timed out")
    except ChannelError as exc:
        return SendResult.of(exc)
    except Exception as exc:  # noqa: BLE001 - an adapter bug is retried, never lost
        return SendResult.retry(f"{type(exc).__name__}: {exc}")


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
