"""Event builders several test modules share."""

from __future__ import annotations

from dataclasses import replace

from pollerd.model import Event


def numbered(event: Event, count: int) -> list[Event]:
    """`count` copies of `event` for orders #1000, #1001, …: a flash sale for digests."""
    order = event.order or {}
    return [
        replace(
            event,
            order_id=f"{1000 + i}",
            order={**order, "id": f"{1000 + i}", "number": f"{1000 + i}"},
        )
        for i in range(count)
    ]
