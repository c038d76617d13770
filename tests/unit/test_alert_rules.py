"""Alert rules (pollerd.alerts): a table of cases per rule, the registry, and the id scheme
`<store>:<type>:<subject>` kept through the event JSON."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from pollerd.alerts import (
    PROCESS,
    RULES,
    AlertRule,
    ChannelFailing,
    Facts,
    StoreFailing,
    StoreRecovered,
    rule_class,
)
from pollerd.alerts.channel import Trouble
from pollerd.alerts.store import Episode
from pollerd.errors import ConfigError
from pollerd.model import Event
from pollerd.store import Store, open_store
from pollerd.store.alerts import record_alert

T0 = 1_795_476_600.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'a.db'}")
    yield s
    s.close()


def episode(*, alerted: bool = False, failures: int = 3) -> Episode:
    return Episode(since=T0, last=T0, failures=failures, error="HTTP 503", alerted=alerted)


@pytest.mark.parametrize(
    ("minutes", "alerted", "raised"),
    [
        (9.9, False, False),  # not yet failing_after
        (10, False, True),
        (60, False, True),
        (60, True, False),  # once per episode
    ],
)
def test_store_failing(store: Store, minutes: float, alerted: bool, raised: bool) -> None:
    rule = StoreFailing(timedelta(minutes=10))
    facts = Facts(store, "shop", "woocommerce", episode(alerted=alerted), T0 + minutes * 60)
    alerts = rule.evaluate(facts)
    assert bool(alerts) is raised
    if raised:
        [alert] = alerts
        assert alert.id == f"shop:alert.store_failing:{int(T0)}"
        assert alert.group == f"-@{int(T0)}" and "HTTP 503" in alert.reason


@pytest.mark.parametrize(("alerted", "raised"), [(True, True), (False, False)])
def test_store_recovered_only_after_an_alerted_episode(
    store: Store, alerted: bool, raised: bool
) -> None:
    facts = Facts(store, "shop", "woocommerce", episode(alerted=alerted), T0 + 3600)
    alerts = StoreRecovered().evaluate(facts)
    assert [a.id for a in alerts] == ([f"shop:alert.store_recovered:{int(T0)}"] if raised else [])


@pytest.mark.parametrize(
    ("trouble", "raised", "words"),
    [
        (Trouble("hook", "failing", "HTTP 500", lasted=899.0), False, ""),
        (Trouble("hook", "failing", "HTTP 500", lasted=960.0), True, "16m"),
        (Trouble("hook", "dead", "HTTP 500", count=2), True, "2 alert(s) became dead letters"),
        (Trouble("hook", "broken", "HTTP 410"), True, "--channel hook"),
    ],
)
def test_channel_failing(store: Store, trouble: Trouble, raised: bool, words: str) -> None:
    facts = Facts(store, PROCESS, PROCESS, trouble, T0)
    alerts = ChannelFailing(failing_after=900.0).evaluate(facts)
    assert bool(alerts) is raised
    if raised:
        [alert] = alerts
        assert alert.id == f"pollerd:alert.channel_failing:hook@{int(T0 * 1000)}"
        assert words in alert.reason and alert.exclude == {"hook"}


def test_every_builtin_rule_is_registered_and_an_unknown_one_is_named() -> None:
    assert {"alert.store_failing", "alert.store_recovered", "alert.channel_failing"} <= set(RULES)
    assert rule_class("alert.store_failing") is StoreFailing
    rule: AlertRule[Episode] = StoreRecovered()  # the classes satisfy the interface (mypy)
    assert rule.type == "alert.store_recovered"
    with pytest.raises(ConfigError, match=r"no alert rule named 'alert\.nope'.*known: alert"):
        rule_class("alert.nope")


def test_an_alert_is_recorded_once_and_keeps_its_id_through_the_json(store: Store) -> None:
    facts = Facts(store, "shop", "woocommerce", episode(), T0 + 3600)
    [alert] = StoreFailing(timedelta(minutes=10)).evaluate(facts)
    event = alert.event(T0 + 3600)
    assert record_alert(store, event, ["ops"]) == 1
    assert record_alert(store, event, ["ops"]) == 0  # raised again: nothing new
    [row] = store.events()
    assert row["id"] == alert.id and row["order_id"] == f"-@{int(T0)}"
    again = Event.from_json(event.to_json())
    assert again.id == alert.id and again.to_json() == event.to_json()


def test_an_order_event_keeps_its_id_scheme() -> None:
    event = Event.from_json(
        {
            "id": "shop:7:alert.order_quarantined",
            "type": "alert.order_quarantined",
            "store": "shop",
            "platform": "woocommerce",
            "occurred_at": "2026-11-22T09:32:37Z",
            "detected_at": "2026-11-22T09:32:38.120Z",
            "order": {"id": "7"},
        }
    )
    assert event.id == "shop:7:alert.order_quarantined"
