"""What the sync loop needs from a platform: a cheap listing of what moved, and full orders.

The listing is deliberately small (id, modified time, status) so a pass that finds nothing new
costs a few hundred bytes; full orders are fetched only for rows whose (updated_at, status)
differs from the stored snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from pollerd.model import Order


@dataclass(frozen=True)
class Listed:
    """One row of a cheap listing."""

    id: str
    updated_at: datetime
    status: str


@dataclass(frozen=True)
class ListPage:
    rows: list[Listed]
    page: int
    total: int | None  # X-WP-Total as the server reported it (HPOS says 0 past the end)
    more: bool  # the server says there is a next page (or the page was full)


class Source(Protocol):
    platform: str

    async def check(self) -> str:
        """Read-only probe of auth and version; returns a one-line description."""
        ...

    async def list_modified(
        self, after: datetime, page: int, *, status: str = "any"
    ) -> ListPage: ...

    async def list_created(self, after: datetime, page: int) -> ListPage: ...

    async def fetch(self, ids: list[str], *, status: str = "any") -> list[Order]: ...

    async def aclose(self) -> None: ...
