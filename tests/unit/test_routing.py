from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pollerd.config import RouteConfig
from pollerd.model import Event
from pollerd.routing import channels_for

NOW = datetime(2026, 11, 22, tzinfo=UTC)


def event(kind: str, store: str = "acme-eu", test: bool = False) -> Event:
    return Event(kind, store, "woocommerce", "1", NOW, NOW, test, {"id": "1"})


ROUTES = [
    RouteConfig(events=["order.paid", "order.cancelled"], stores=["acme-*"], channels=["ops"]),
    RouteConfig(events=["order.*"], stores=["*"], channels=["log", "ops"], test_orders="skip"),
]


@pytest.mark.parametrize(
    ("ev", "expected"),
    [
        (event("order.paid"), ["ops", "log"]),
        (event("order.created"), ["log", "ops"]),
        (event("order.paid", store="other"), ["log", "ops"]),
        (event("order.paid", test=True), ["ops"]),
        (event("order.created", test=True), []),
        (event("dispute.opened"), []),
    ],
)
def test_routes(ev: Event, expected: list[str]) -> None:
    assert channels_for(ev, ROUTES) == expected
