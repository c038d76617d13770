"""What a platform plugin gives pollerd: everything the rest of the code must not know about a
platform. The `pollerd.sources` entry point of a platform names one `Platform` object.

- `config`: the model of its `[[stores]]` table (a `StoreConfig` subclass: the common keys
  with its own defaults, plus its own keys);
- `build(cfg, sleep=...)`: a `Source` for one store (which API, which auth: its own choice);
- `rules(cfg)`: its `Rules`, which events an order's current state proves happened, and when,
  by the order's own record (the diff applies them, and stays platform-neutral);
- `terminal`: statuses of orders that can no longer change (the daily existence check skips
  them);
- optional capabilities are on the source itself, as the protocols in `sources.base` (`Feeds`,
  `Hidden`, `Bounded`, `Bulk`, `Undated`, `Presence`, `Dating`): the sync asks `isinstance`,
  never a name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pollerd.model import Order

if TYPE_CHECKING:
    from pollerd.config.models import StoreConfig
    from pollerd.sources.base import Source

__all__ = ["Platform", "Rules", "Sleep", "evidence", "unpaid"]

Sleep = Callable[[float], Awaitable[None]]


class Rules(Protocol):
    """A platform's reading of an order's state (DESIGN §4): pure, per store."""

    def implied(self, order: Order, *, known: bool) -> set[str]:
        """The events the order's current state proves happened; `known`: pollerd already
        announced something of this order."""
        ...

    def evidence(self, order: Order, kind: str) -> datetime | None:
        """When `kind` happened by the order's own record; None when it keeps no date for it
        (most platforms: `evidence(order, kind)` below)."""
        ...


def unpaid(rules: Rules, order: Order) -> bool:
    """Whether the platform reads the order as awaiting payment (the unpaid-too-long alert).
    A platform's rules say so with an `unpaid(order)` method; one without it has no such
    notion, and its orders never count as unpaid."""
    method = getattr(rules, "unpaid", None)
    return bool(method(order)) if callable(method) else False


def evidence(order: Order, kind: str) -> datetime | None:
    """The dates every platform's `Order` carries for each event; None when it keeps no date
    for it (a WooCommerce cancellation, or a refund: its `refunds` carry no dates; the trash
    is dated by `_wp_trash_meta_time`)."""
    if kind == "order.created":
        return order.created_at
    if kind == "order.paid":
        return order.paid_at
    if kind == "order.fulfilled":
        return order.completed_at
    if kind == "order.cancelled":
        return order.cancelled_at
    if kind == "order.deleted":
        return order.hidden_at
    if kind == "order.partially_refunded" and order.refunds_at:
        return order.refunds_at[0]
    if kind == "order.refunded" and order.refunds_at:
        return order.refunds_at[-1]
    return None


class Platform(ABC):
    """One platform plugin. Subclass it, set `name`, `config` and `terminal`, and point a
    `pollerd.sources` entry point at an instance."""

    name: ClassVar[str]
    config: ClassVar[type[StoreConfig]]
    terminal: ClassVar[frozenset[str]] = frozenset()

    @abstractmethod
    def build(self, cfg: Any, *, sleep: Sleep) -> Source:
        """A source for the store `cfg` (an instance of `config`); import the client here, so
        a fleet without this platform never loads it."""

    @abstractmethod
    def rules(self, cfg: Any | None) -> Rules:
        """The store's rules; `cfg` None: the platform's defaults."""
