"""Sliding-window rate limits of the chat services, read from an injectable monotonic clock.

The limits are the published ones (research `notifications.md` §4.1–§4.6): WeCom 20/min per robot,
DingTalk 20/min per robot then a 10-minute block, Feishu 5/s and 100/min per bot, Slack 1/s per
webhook, Telegram 1/s per chat and 20/min per group, Discord 5 per 2 s per webhook. Only accepted
messages fill a window: a request refused for its key, signature or shape never reached the
sending part of the service. Not thread-safe on its own: `ChatSim` calls it under its lock.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

Rule = tuple[int, float]
"""At most `count` messages in any `seconds`-long window."""

WECOM: Sequence[Rule] = ((20, 60.0),)
DINGTALK: Sequence[Rule] = ((20, 60.0),)
DINGTALK_BLOCK = 600.0  # "如果超过20条，会限流10分钟" (§4.2)
FEISHU: Sequence[Rule] = ((5, 1.0), (100, 60.0))
SLACK: Sequence[Rule] = ((1, 1.0),)
TELEGRAM_CHAT: Sequence[Rule] = ((1, 1.0),)
TELEGRAM_GROUP: Sequence[Rule] = ((1, 1.0), (20, 60.0))
DISCORD: Sequence[Rule] = ((5, 2.0),)


class RateWindows:
    """Per-key sliding windows; `take()` admits and records a message, or says how long to wait."""

    def __init__(self, *, enforce: bool = True) -> None:
        self.enforce = enforce
        self._sent: dict[str, deque[float]] = {}
        self._blocked_until: dict[str, float] = {}

    def take(self, key: str, rules: Sequence[Rule], now: float, *, block: float = 0.0) -> float:
        """0.0 when the message may go (it is recorded); otherwise the seconds until it may.

        With `block`, overrunning a window shuts the key for `block` seconds (DingTalk)."""
        if not self.enforce:
            return 0.0
        sent = self._sent.setdefault(key, deque())
        until = self._blocked_until.get(key, 0.0)
        if now < until:
            return until - now
        longest = max(seconds for _, seconds in rules)
        while sent and sent[0] <= now - longest:
            sent.popleft()
        wait = 0.0
        for count, seconds in rules:
            inside = [t for t in sent if t > now - seconds]
            if len(inside) >= count:
                wait = max(wait, inside[-count] + seconds - now)
        if wait > 0:
            if block:
                self._blocked_until[key] = now + block
                return block
            return wait
        sent.append(now)
        return 0.0

    def used(self, key: str, seconds: float, now: float) -> int:
        """Messages recorded for `key` in the last `seconds` (for `X-RateLimit-Remaining`)."""
        return sum(t > now - seconds for t in self._sent.get(key, ()))

    def clear(self) -> None:
        self._sent.clear()
        self._blocked_until.clear()


def whole_seconds(wait: float) -> int:
    """A wait as the services state it: whole seconds, never 0 (a client must not spin)."""
    return max(1, math.ceil(wait - 1e-9))
