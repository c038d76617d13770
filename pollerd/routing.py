"""Pure routing: which channels an event goes to, from the `[[routes]]` tables, and whether a
route's quiet hours hold it there.

Globs (`order.*`, `acme-*`) use shell matching. A channel named by several matching routes gets
the event once. A route with `test_orders = "skip"` drops test orders; "mark" sends them with
`"test": true` for the channel to label.

Quiet hours (`quiet_hours = "22:00-08:00"`, local time in the route's `timezone`, start
inclusive, end exclusive, possibly across midnight) are decided once, when the delivery is
recorded, at the moment pollerd noticed the event (`detected_at`: the pass's clock, so a
restart or a replay decides the same). A delivery to a channel is held iff EVERY matching route
naming that channel is in its quiet hours then and the event is not urgent for it: urgent on
its own (`pollerd.urgency`) or of a type the route lists in `urgent`. One route awake is
enough to send, so a held delivery waits until the earliest end among its routes. What is
held is stored (`delivery.quiet_until`), never remembered in memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, time, timedelta
from fnmatch import fnmatchcase
from zoneinfo import ZoneInfo

from pollerd.config import RouteConfig
from pollerd.config.types import quiet_window
from pollerd.model import Event, Target
from pollerd.urgency import urgent

__all__ = ["channels_for", "quiet_end", "targets_for"]


def _matching(event: Event, routes: Sequence[RouteConfig]) -> Iterator[RouteConfig]:
    for route in routes:
        if event.test and route.test_orders == "skip":
            continue
        if not any(fnmatchcase(event.type, pattern) for pattern in route.events):
            continue
        if not any(fnmatchcase(event.store, pattern) for pattern in route.stores):
            continue
        yield route


def channels_for(event: Event, routes: Sequence[RouteConfig]) -> list[str]:
    """The channels `event` goes to, each once, in the order the routes name them."""
    return [target.channel for target in targets_for(event, routes, quiet=False)]


def targets_for(event: Event, routes: Sequence[RouteConfig], *, quiet: bool = True) -> list[Target]:
    """The channels `event` goes to, each with the end of the quiet hours holding it (None:
    send now). `quiet=False` ignores quiet hours (module docstring)."""
    on_its_own = urgent(event.type, event.alert, event.occurred_at)
    ends: dict[str, list[float | None]] = {}
    for route in _matching(event, routes):
        until = None if on_its_own or not quiet else held_until(route, event)
        for name in route.channels:
            ends.setdefault(name, []).append(until)
    return [
        Target(name, None if None in untils else min(u for u in untils if u is not None))
        for name, untils in ends.items()
    ]


def held_until(route: RouteConfig, event: Event) -> float | None:
    """When `route`'s quiet hours stop holding `event` (epoch seconds), or None: the route is
    awake at `event.detected_at`, or the event is one of its `urgent` types."""
    if route.quiet_hours is None:
        return None
    if any(fnmatchcase(event.type, pattern) for pattern in route.urgent):
        return None
    end = quiet_end(route.quiet_hours, route.timezone or "UTC", event.detected_at)
    return None if end is None else end.timestamp()


def quiet_end(window: str, zone: str, at: datetime) -> datetime | None:
    """The end (UTC) of the quiet period of `window` ("22:00-08:00" in `zone`) that `at` falls
    in; None when `at` is outside it. Start inclusive, end exclusive: at 22:00:00 it is quiet,
    at 08:00:00 it is not. Whole minutes, so comparing the local minute is exact."""
    start, end = quiet_window(window)
    tz = ZoneInfo(zone)
    local = at.astimezone(tz)
    minute = local.hour * 60 + local.minute
    day = local.date()
    if start < end:
        if not start <= minute < end:
            return None
    elif minute >= start:  # across midnight, before it: ends tomorrow
        day += timedelta(days=1)
    elif minute >= end:
        return None
    return datetime.combine(day, time(end // 60, end % 60), tzinfo=tz).astimezone(UTC)
