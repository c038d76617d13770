"""The Admin API version Shopify serves, against the one pinned (research/shopify.md §1.1).

Shopify never rejects a retired or unknown version in the URL: it silently "falls forward" to
the oldest one it supports and says so only in the `X-Shopify-API-Version` header of each
answer. Both Shopify clients (GraphQL and REST) read that header here, and warn once, loudly,
because order fields may then behave differently from what pollerd was tested against.
"""

from __future__ import annotations

import httpx
from loguru import logger

__all__ = ["ServedVersion"]


class ServedVersion:
    """What `X-Shopify-API-Version` said last (`served`, None before any answer said it)."""

    def __init__(self, store: str, pinned: str) -> None:
        self.store = store
        self.pinned = pinned
        self.served: str | None = None
        self._warned = False

    def note(self, response: httpx.Response) -> None:
        served = response.headers.get("X-Shopify-API-Version")
        if not served:
            return
        self.served = served
        if served != self.pinned and not self._warned:
            self._warned = True
            logger.warning(
                "store {}: Shopify serves API version {} instead of the pinned {} (api_version): "
                "that version is retired or unknown, so Shopify silently fell forward to the "
                "oldest one it supports. Order fields may behave differently; set api_version to "
                "a supported version after checking the release notes (a recent one: {} itself "
                "retires next)",
                self.store,
                served,
                self.pinned,
                served,
            )
