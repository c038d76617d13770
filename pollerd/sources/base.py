"""What the sync loop needs from a platform: a cheap listing of what moved, and full orders.

The listing is deliberately small (id, modified time, status) so a pass that finds nothing new
costs a few hundred bytes (or a few Shopify cost points); full orders are fetched only for rows
whose (updated_at, status) differs from the stored snapshot.

Paging is by an opaque token: WooCommerce pages are numbers (`orderby=id`), Shopify's are
connection cursors that encode `(updatedAt, id)`. A source says which order its pages come in
(`keyset`), so the sync loop can refuse a page that goes backwards whatever the platform.

`fetch` sets aside an order it cannot read (`Malformed`) instead of failing the whole call:
one order a plugin broke must not stop every alert of its store (the sync quarantines it).

Optional capabilities (`Feeds`, `Hidden`, `Bounded`, `Bulk`, `Undated`, `Presence`, `Dating`,
`Backfilling`) are
separate
protocols: a platform without deletion or dispute feeds, or without bulk exports, simply does not
implement them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol, runtime_checkable

from pollerd.errors import SourceError
from pollerd.model import Deletion, Dispute, Order
from pollerd.sources.payload import OrderPayloadError

__all__ = [
    "Backfilling",
    "Bounded",
    "Bulk",
    "Dating",
    "Deletion",
    "Dispute",
    "FeedUnavailable",
    "Feeds",
    "Hidden",
    "ListPage",
    "Listed",
    "Malformed",
    "PageToken",
    "Presence",
    "Source",
    "Undated",
    "clamped",
]

PageToken = int | str | None
"""`None` asks for the first page; a `ListPage.next` asks for the one after it."""


@dataclass(frozen=True)
class Listed:
    """One row of a cheap listing. `status` must equal the `Order.status` the source would
    normalise for the same version of the order (the sync compares it with the snapshot)."""

    id: str
    updated_at: datetime
    status: str


@dataclass(frozen=True)
class Malformed:
    """An order the API returned that breaks its contract (a total of "garbage", a date that
    does not parse): set aside with the reason, never diffed, never partly announced."""

    order_id: str
    field: str
    problem: str
    number: str = ""
    updated_at: datetime | None = None
    admin_url: str = ""

    @classmethod
    def of(cls, exc: OrderPayloadError, payload: dict[str, Any], admin_url: str = "") -> Malformed:
        """From the normaliser's error and the raw payload (read for what it still shows)."""
        oid = str(exc.order_id) if exc.order_id not in ("?", None) else str(payload.get("id"))
        number = payload.get("number") or payload.get("name")
        return cls(
            order_id=oid,
            field=exc.field,
            problem=exc.problem,
            number=number.strip()[:40] if isinstance(number, str) else "",
            admin_url=admin_url,
        )


@dataclass(frozen=True)
class ListPage:
    rows: list[Listed]
    next: PageToken  # pass back for the following page; None: the window is walked
    total: int | None = None  # WooCommerce X-WP-Total as reported (HPOS says 0 past the end)
    set_aside: list[Malformed] = field(default_factory=list)
    """Rows that do not read (a broken date): quarantined by the sync; never all of a page."""


class Source(Protocol):
    platform: str
    keyset: Literal["id", "updated_at"]
    """Pages ascend by id (WooCommerce `orderby=id`) or by (updated_at, id) (Shopify
    `sortKey: UPDATED_AT`, ties broken by id inside one walk)."""

    async def check(self) -> str:
        """Read-only probe of auth and version; returns a one-line description."""
        ...

    async def probe(self) -> Listed | None:
        """The most recently updated order, for a few cost points, in any status the sync
        lists (a `Hidden` one too: the sync then lists those only when the probe saw
        something new); `None` when the platform has no cheap probe (the sync then walks the
        window every pass)."""
        ...

    async def list_modified(
        self, after: datetime, page: PageToken, *, status: str = "any"
    ) -> ListPage:
        """Orders updated at or after `after` (WooCommerce: strictly after, one-second
        precision; the sync's overlap covers both)."""
        ...

    async def list_created(self, after: datetime, page: PageToken) -> ListPage:
        """Orders created after `after`: the sweeps' second access path."""
        ...

    async def fetch(self, ids: list[str], *, status: str = "any") -> list[Order | Malformed]:
        """Full orders by id; ids the API does not return are absent; an order that cannot be
        read comes back as `Malformed` (the rest of the call goes on)."""
        ...

    @property
    def throttled(self) -> int:
        """Throttle signals this source has seen so far (a 429, a THROTTLED answer, a pending
        Retry-After that kept a request from being sent): a pass compares before and after to
        tell "throttled" from "error". Counted here, not read back from the metrics."""
        ...

    def budget_used(self) -> float | None:
        """The rate budget in use now (0-1), None while unknown: recorded with each pass for
        `pollerd status` (the metrics gauge reads the same model, separately)."""
        ...

    async def aclose(self) -> None: ...


def clamped(ratio: float | None) -> float | None:
    """A budget ratio as `Source.budget_used` reports it: within 0-1, None while unknown."""
    return None if ratio is None else min(1.0, max(0.0, float(ratio)))


class FeedUnavailable(SourceError):
    """An optional feed the credentials may not read (a missing scope): warn once, go on."""

    def __init__(self, store: str, feed: str, message: str) -> None:
        self.feed = feed
        super().__init__(store, message)


@runtime_checkable
class Feeds(Protocol):
    async def deletions(self, after: datetime) -> list[Deletion]:
        """Order deletions recorded at or after `after`, oldest first. Raises
        `FeedUnavailable` when the credentials cannot read them."""
        ...

    async def disputes(self, since: datetime) -> list[Dispute]:
        """Disputes initiated at or after `since` plus every one not yet finalised. Raises
        `FeedUnavailable` without the disputes scope."""
        ...


@runtime_checkable
class Backfilling(Protocol):
    """A source with a request budget of its own for `pollerd backfill`, which runs as a
    separate process beside the daemon: switched once, before the backfill's first request."""

    def use_backfill_budget(self) -> str:
        """Pace every later request by the store's backfill budget; returns it in words."""
        ...


@runtime_checkable
class Hidden(Protocol):
    """A platform whose default listing (`status="any"`) leaves out some statuses, deleted
    orders among them (WooCommerce's trash): the sync lists each of them on its own whenever it
    walks the window, and the daily existence check fetches orders it finds in one of them."""

    hidden: tuple[str, ...]


@runtime_checkable
class Bounded(Protocol):
    """A platform that can be asked whether anything changed after a moment (WooCommerce's
    `modified_after`): the sync then asks that instead of `probe`, because "nothing since" is
    an empty answer of a few hundred bytes, where the newest order comes with the paging
    headers of the whole store."""

    async def moved_since(self, after: datetime) -> bool | None:
        """Whether any order, in any status the sync lists (`Hidden` ones included), was
        modified strictly after `after` (one-second precision); None when this source cannot
        tell (the sync then walks)."""
        ...


@runtime_checkable
class Bulk(Protocol):
    def bulk_orders(
        self,
        since: datetime,
        until: datetime | None,
        *,
        resume: str | None,
        on_started: Callable[[str], None],
        on_progress: Callable[[int], None] | None = None,
    ) -> AsyncIterator[list[Order]]:
        """Every order updated in [since, until] through one bulk export, in batches.
        `on_started(operation_id)` is called once the platform accepted the job so the caller
        can save it; `resume` is a saved id to pick up instead of starting a new job."""
        ...


@runtime_checkable
class Undated(Protocol):
    """A platform whose orders do not date every change (WooCommerce keeps no date for a
    cancellation, a trashing or a refund), so the sync records a first-run baseline of the
    orders that can still change: such a change is then diffed against a known state. Shopify
    dates them all (transactions, refunds, fulfillments, `cancelledAt`) and needs none."""

    baseline_horizon: timedelta
    """How far before the start point the baseline reaches (the store's own key)."""

    async def list_between(self, after: datetime, before: datetime, page: PageToken) -> ListPage:
        """Orders modified strictly after `after` and strictly before `before` (any status but
        trash), paged like `list_modified`."""
        ...


@runtime_checkable
class Presence(Protocol):
    """A platform with no deletions feed, whose permanently deleted orders vanish from every
    listing (WooCommerce `DELETE orders/<id>?force=true`): the daily sweep asks for the orders
    pollerd knows as open, by id, to notice the ones that are gone."""

    async def present(self, ids: list[str]) -> dict[str, str]:
        """Which of these (≤ 100) orders the store still has, trash included: id → status."""
        ...


@runtime_checkable
class Dating(Protocol):
    """A platform whose order payload leaves some changes undated although another route dates
    them (WooCommerce refunds: `orders/<id>/refunds`; Shopify REST captures:
    `orders/<id>/transactions.json`)."""

    async def dated(self, order: Order) -> Order:
        """The order with the dates its payload lacks filled in; asked only for an order pollerd
        never saw that was placed before the start point, and free (no request) when nothing
        is missing."""
        ...
