"""Pure routing: which channels an event goes to, from the `[[routes]]` tables.

Globs (`order.*`, `acme-*`) use shell matching. A channel named by several matching routes gets
the event once. A route with `test_orders = "skip"` drops test orders; "mark" sends them with
`"test": true` for the channel to label.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

from pollerd.config import RouteConfig
from pollerd.model import Event


def channels_for(event: Event, routes: Sequence[RouteConfig]) -> list[str]:
    chosen: list[str] = []
    for route in routes:
        if event.test and route.test_orders == "skip":
            continue
        if not any(fnmatchcase(event.type, pattern) for pattern in route.events):
            continue
        if not any(fnmatchcase(event.store, pattern) for pattern in route.stores):
            continue
        for name in route.channels:
            if name not in chosen:
                chosen.append(name)
    return chosen
