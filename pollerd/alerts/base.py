"""What an alert rule is: given stored facts, the clock and its config, it returns alerts.

A rule is a small class registered by the event type it raises (`register`, `rule_class`).
It is built once from its config (a duration, a threshold) and then evaluated, as often as
its caller likes, with `Facts`: the store (for rules that look beyond one subject: a rate, a
burst), the shop or part of pollerd the facts are about, the one fact in question (a failure
episode, an order) and the clock. It returns `Alert`s, each naming its *subject*: what the
alert is about, stable across evaluations. Evaluating again raises nothing new, because an
alert's id is `<store>:<type>:<subject>` and `pollerd.store.alerts.record_alert` records an
id once: "once per subject" needs no bookkeeping in the rule. The rule itself is pure (no
writes, no sends, no logging); `raise_alerts` routes what it returned and records it.

The seller rules (high value, unpaid too long, bursts, cancellation rate, dispute deadlines)
fit the same shape: evaluated each pass from the stored orders, one alert per order or window.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from loguru import logger

from pollerd.config import RouteConfig
from pollerd.errors import ConfigError
from pollerd.model import Event
from pollerd.routing import targets_for
from pollerd.store import Store
from pollerd.store.alerts import record_alert

PROCESS = "pollerd"
"""The `store` (and `platform`) of alerts about pollerd's own parts, e.g. a channel. Store
names are `[a-z0-9_-]`, so a store may be called this too; its alerts' types keep them apart."""

F_co = TypeVar("F_co", covariant=True)
F_contra = TypeVar("F_contra", contravariant=True)


@dataclass(frozen=True)
class Facts(Generic[F_co]):
    """What a rule is given each time it is evaluated."""

    store: Store  # everything stored: orders, failure episodes (meta), the outbox
    name: str  # the shop the facts are about, or PROCESS
    platform: str  # its platform ("woocommerce", "shopify"), or PROCESS
    subject: F_co  # the fact in question: a failure episode, an order
    now: float  # the clock, epoch seconds
    # Seller rules: facts written before this were judged by an earlier pass whose alerts are
    # recorded (`seller.settle`); None: judge everything the rule looks at.
    since: float | None = None
    # Seller rules: orders created before this (the store's start point, epoch seconds) are
    # history, never judged about themselves (a backfill must not page about last year);
    # they still count in rates. None: every order.
    start: float | None = None
    # Seller rules: whether any order fact was written since `since` (`Store.written_since`,
    # asked once per pass). False: the rules that read only what changed have nothing to read.
    changed: bool = True

    def current(self, created_at: float) -> bool:
        """An order created at `created_at` is news to the seller rules (not history)."""
        return self.start is None or created_at >= self.start


@dataclass(frozen=True)
class Alert:
    """One alert a rule raised. `subject` is what it is about, stable across evaluations (an
    episode's start, `channel@ms`, an order id): with the type it makes the event id."""

    type: str
    store: str
    platform: str
    subject: str
    reason: str
    occurred_at: datetime
    # The event's `order` object and outbox group (`order.id`): alerts about one subject share
    # it, so the outbox sends them in order (a store's "recovered" never overtakes "failing").
    group: str
    order: dict[str, Any] = field(default_factory=dict)
    exclude: frozenset[str] = frozenset()  # channels never told (the failing one itself)
    record_unheard: bool = True  # recorded even when no route takes it (module docstring)
    unheard: str = ""  # the warning when no route takes it ("nobody is told")
    # The rule's figures (threshold, count, rate, mean, deadline, orders): the event's `alert`
    # object (DESIGN §7); empty for pollerd's own alerts, whose JSON stays as it was.
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return alert_id(self.store, self.type, self.subject)

    def event(self, now: float) -> Event:
        return Event(
            type=self.type,
            store=self.store,
            platform=self.platform,
            order_id=self.group,
            occurred_at=self.occurred_at,
            detected_at=datetime.fromtimestamp(now, UTC),
            test=False,
            order={"id": self.group, **self.order},
            reason=self.reason,
            alert_id=self.id,
            alert=self.figures or None,
        )


def alert_id(store: str, kind: str, subject: str) -> str:
    """`<store>:<type>:<subject>`: an order event's id is `<store>:<order id>:<type>`, so the
    two can never be mistaken for one another."""
    return f"{store}:{kind}:{subject}"


class AlertRule(Protocol[F_contra]):
    """A rule: `type` is the event type it raises; `evaluate` is pure (module docstring)."""

    type: ClassVar[str]

    def evaluate(self, facts: Facts[F_contra]) -> list[Alert]: ...


RULES: dict[str, type[Any]] = {}
"""Every alert rule pollerd knows, by the event type it raises."""

R = TypeVar("R", bound=type[Any])


def register(cls: R) -> R:
    """Class decorator: make a rule known by its `type`."""
    RULES[cls.type] = cls
    return cls


def rule_class(kind: str) -> type[Any]:
    try:
        return RULES[kind]
    except KeyError:
        known = ", ".join(sorted(RULES)) or "none"
        raise ConfigError("alerts", f"no alert rule named {kind!r}", f"known: {known}") from None


def raise_alerts(
    store: Store,
    alerts: Iterable[Alert],
    routes: Sequence[RouteConfig],
    *,
    now: float,
    on_commit: Callable[[int], None] = lambda n: None,
) -> list[Alert]:
    """Route each alert by `[[routes]]` (never to its `exclude`d channels; held where quiet
    hours hold it) and record it with its deliveries (`record_alert`, idempotent by id);
    returns the alerts recorded. One with no
    route logs its `unheard` warning and is recorded only if `record_unheard`."""
    recorded = []
    for alert in alerts:
        event = alert.event(now)
        channels = [t for t in targets_for(event, routes) if t.channel not in alert.exclude]
        if not channels:
            logger.warning("{}", alert.unheard or f"no route sends {alert.type}: nobody is told")
            if not alert.record_unheard:
                continue
        new = record_alert(store, event, channels)
        if new:
            on_commit(new)
        recorded.append(alert)
    return recorded
