"""One page ahead: the next page's requests are in flight while this page commits.

A paged backfill spends its time in two places that need not wait for each other: the store
answering (a listing, then the full orders that changed), and pollerd writing the page before.
Walked strictly one after the other, a 20,000-order WooCommerce backfill on loopback reached
11 % of what the API gives back to back (bench/backfill.py). `Prefetch` starts the next page as
soon as this page's own requests are done, just before its commit (which the walk writes in a
worker thread), and `prepare` carries it as far as the walk allows ahead of time (its listing,
and the full orders of what changed), so the store works while SQLite does. What stays true:

- one request in flight to the store: the prefetch starts after this page's last request, its
  own requests go one after the other, and the sources serialise their requests anyway
  (`RequestPacer`, the Shopify client's lock);
- bounded memory: at most one page ahead;
- nothing moves early: the walk writes its resume point and the sync its bookmark only after
  a page's commit, so a kill -9 loses at most the page in flight, which the next run re-reads;
- a page is used only if it is the one asked for (a re-walk from page 1 drops it), and one
  left over when the walk ends (stop, error) is cancelled and its outcome collected.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from pollerd.sources.base import ListPage, PageToken

Lister = Callable[[PageToken], Awaitable[ListPage]]
T = TypeVar("T")


class Prefetch(Generic[T]):
    """A walk's pages, at most one ahead when `enabled` (see the module docstring). A page asked
    for on demand is only listed; one read ahead is also `prepare`d (the walk's own next step,
    done early), and handed over with what that gave."""

    def __init__(
        self,
        lister: Lister,
        *,
        enabled: bool,
        prepare: Callable[[ListPage], Awaitable[T]] | None = None,
    ) -> None:
        self._lister = lister
        self._prepare = prepare
        self.enabled = enabled
        self._task: asyncio.Future[tuple[ListPage, T | None]] | None = None
        self._token: PageToken = None

    async def page(self, token: PageToken) -> tuple[ListPage, T | None]:
        """The page `token`: the one already read ahead if that is it, else listed now."""
        if self._task is not None and self._token == token:
            task, self._task = self._task, None
            return await task
        await self.close()
        return await self._lister(token), None

    def ahead(self, token: PageToken) -> None:
        """Read page `token` now (once; nothing when disabled or at the last page)."""
        if self.enabled and token is not None and self._task is None:
            self._token = token
            self._task = asyncio.ensure_future(self._read(token))

    async def _read(self, token: PageToken) -> tuple[ListPage, T | None]:
        listing = await self._lister(token)
        prepared = await self._prepare(listing) if self._prepare is not None else None
        return listing, prepared

    async def close(self) -> None:
        """Drop a page still in flight or unread: cancel it and collect its outcome, so a
        failure of a page nobody asked for is neither raised nor reported as unretrieved."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
