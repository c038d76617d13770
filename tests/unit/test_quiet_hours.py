"""Quiet hours on `[[routes]]` (issue 14 item 7): the window, what is urgent, which channel a
delivery is held on, the config errors, and the outbox's order around held rows. And the
release at the end: one digest against a real chat receiver (the simulated WeCom), console,
and one by one, in order, to a webhook."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from pollerd.alerts import Alert, raise_alerts
from pollerd.channels.base import ChannelContext
from pollerd.channels.console import ConsoleChannel
from pollerd.channels.webhook import WebhookChannel
from pollerd.channels.wecom import WeComChannel
from pollerd.config import DeliveryConfig, RouteConfig, Settings, load
from pollerd.config.explain import ConfigErrors
from pollerd.delivery import Deliverer
from pollerd.model import Event, Order, Target, utc_iso
from pollerd.routing import channels_for, quiet_end, targets_for
from pollerd.store import Store, open_store
from pollerd.urgency import urgent
from pollerd_sim import WebhookSink
from pollerd_sim.chat import ChatSim
from pollerd_sim.harness import HOOK_SECRET, pollerd
from tests.support.clocks import SecondsClock

SHANGHAI = ZoneInfo("Asia/Shanghai")


def local(text: str, zone: ZoneInfo = SHANGHAI) -> datetime:
    """A wall-clock time in `zone` (default Beijing time) as an aware datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=zone)


# ---- the window ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "at", "end"),
    [
        ("22:00-08:00", "2026-11-22T21:59:59", None),
        ("22:00-08:00", "2026-11-22T22:00:00", "2026-11-23T08:00"),  # start inclusive
        ("22:00-08:00", "2026-11-22T23:59:59", "2026-11-23T08:00"),
        ("22:00-08:00", "2026-11-23T00:00:00", "2026-11-23T08:00"),  # across midnight
        ("22:00-08:00", "2026-11-23T07:59:59", "2026-11-23T08:00"),
        ("22:00-08:00", "2026-11-23T08:00:00", None),  # end exclusive
        ("22:00-08:00", "2026-11-23T12:00:00", None),
        ("13:00-14:30", "2026-11-23T12:59:59", None),
        ("13:00-14:30", "2026-11-23T13:00:00", "2026-11-23T14:30"),
        ("13:00-14:30", "2026-11-23T14:29:59", "2026-11-23T14:30"),
        ("13:00-14:30", "2026-11-23T14:30:00", None),
        ("23:30-00:15", "2026-12-31T23:45:00", "2027-01-01T00:15"),  # into the next year
    ],
)
def test_the_window_in_beijing_time(window: str, at: str, end: str | None) -> None:
    # Given in UTC, as pollerd's clocks give it: the window is read in the zone.
    found = quiet_end(window, "Asia/Shanghai", local(at).astimezone(UTC))
    assert found == (None if end is None else local(end))


def test_the_same_moment_is_quiet_in_one_zone_and_not_in_another() -> None:
    at = local("2026-11-22T23:00:00")  # 16:00 in Berlin
    assert quiet_end("22:00-08:00", "Asia/Shanghai", at) == local("2026-11-23T08:00")
    assert quiet_end("22:00-08:00", "Europe/Berlin", at) is None
    berlin = ZoneInfo("Europe/Berlin")
    late = local("2026-11-23T06:30:00")  # 23:30 the evening before in Berlin
    assert quiet_end("22:00-08:00", "Europe/Berlin", late) == local("2026-11-23T08:00", berlin)


def test_a_window_across_a_daylight_saving_change_ends_at_its_local_time() -> None:
    """Berlin springs forward at 02:00 on 2026-03-29: a night of 22:00-08:00 is an hour
    shorter, and still ends at 08:00 local (06:00 UTC, not 07:00)."""
    berlin = ZoneInfo("Europe/Berlin")
    end = quiet_end("22:00-08:00", "Europe/Berlin", local("2026-03-28T23:00:00", berlin))
    assert end == datetime(2026, 3, 29, 6, 0, tzinfo=UTC)


# ---- what is urgent on its own -------------------------------------------------------------

RAISED = local("2026-11-22T23:00:00")


def deadline_in(hours: float, at: datetime = RAISED) -> dict[str, Any]:
    return {"rule": "dispute_deadline", "severity": "warning",
            "deadline": utc_iso(at + timedelta(hours=hours))}  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "figures", "expected"),
    [
        ("alert.order_burst", {"rule": "order_burst", "severity": "warning"}, True),
        ("alert.high_value", {"rule": "high_value", "severity": "warning"}, False),
        ("alert.high_value", {"rule": "high_value", "severity": "critical"}, True),
        ("alert.unpaid_timeout", {"severity": "critical"}, True),
        ("dispute.deadline", deadline_in(4), True),
        ("dispute.deadline", deadline_in(23.9), True),
        ("dispute.deadline", deadline_in(24), False),  # the 24 h reminder raised on time
        ("dispute.deadline", deadline_in(72), False),
        ("dispute.deadline", deadline_in(-1), False),  # past: nothing left to act on
        ("dispute.deadline", {"deadline": "not a time"}, False),
        ("order.paid", None, False),
        ("alert.store_failing", None, False),
    ],
)
def test_urgent_on_its_own(kind: str, figures: dict[str, Any] | None, expected: bool) -> None:
    assert urgent(kind, figures, RAISED) is expected
    assert urgent(kind, figures, utc_iso(RAISED)) is expected  # the JSON's form


# ---- which deliveries are held --------------------------------------------------------------


def _next_night() -> datetime:
    """The next 23:30 in Beijing after the real now: the store stamps rows sent at once with
    the real time, so the night of these tests is still ahead of it (and not far)."""
    today = datetime.now(SHANGHAI).replace(hour=23, minute=30, second=0, microsecond=0)
    return today if today > datetime.now(SHANGHAI) else today + timedelta(days=1)


NIGHT = _next_night().astimezone(UTC)
DAY = NIGHT + timedelta(hours=10, minutes=30)  # 10:00 the next morning
MORNING = (NIGHT + timedelta(hours=8, minutes=30)).timestamp()  # 08:00


def beijing(clock: str) -> float:
    """HH:MM the morning after NIGHT, Beijing time, as epoch seconds."""
    hours, minutes = (int(part) for part in clock.split(":"))
    return MORNING + (hours - 8) * 3600 + minutes * 60


def event(kind: str, at: datetime = NIGHT, *, order: str = "1", **figures: Any) -> Event:
    return Event(
        kind, "acme", "woocommerce", order, at, at, False, {"id": order}, alert=figures or None
    )


def settings(*routes: dict[str, Any], zone: str = "Asia/Shanghai") -> Settings:
    channels = [{"name": n, "type": "console"} for n in ("ops", "log", "boss")]
    return Settings.model_validate(
        {"pollerd": {"timezone": zone}, "channels": channels, "routes": list(routes)}
    )


QUIET = {"events": ["order.*", "alert.*", "dispute.*"], "channels": ["ops"],
         "quiet_hours": "22:00-08:00"}  # fmt: skip


def test_a_quiet_route_takes_the_timezone_of_pollerd_unless_it_has_its_own() -> None:
    routes = settings(QUIET, {**QUIET, "timezone": "Europe/Berlin"}, {"channels": ["log"]}).routes
    assert [r.timezone for r in routes] == ["Asia/Shanghai", "Europe/Berlin", None]


@pytest.mark.parametrize(
    ("ev", "until"),
    [
        (event("order.created"), MORNING),
        (event("order.created", DAY), None),
        (event("alert.high_value", rule="high_value", severity="warning"), MORNING),
        (event("alert.high_value", rule="high_value", severity="critical"), None),
        (event("alert.order_burst", rule="order_burst", severity="warning"), None),
        (event("dispute.deadline", **deadline_in(4, NIGHT)), None),
        (event("dispute.deadline", **deadline_in(72, NIGHT)), MORNING),
    ],
)
def test_held_until_the_end_unless_urgent(ev: Event, until: float | None) -> None:
    assert targets_for(ev, settings(QUIET).routes) == [Target("ops", until)]


def test_a_route_adds_its_own_urgent_types() -> None:
    routes = settings({**QUIET, "urgent": ["alert.high_*", "order.cancelled"]}).routes
    assert targets_for(event("alert.high_value", severity="warning"), routes) == [Target("ops")]
    assert targets_for(event("order.cancelled"), routes) == [Target("ops")]
    assert targets_for(event("order.paid"), routes) == [Target("ops", MORNING)]


def test_a_route_in_another_zone_is_awake() -> None:
    routes = settings({**QUIET, "timezone": "Europe/Berlin"}).routes  # 16:30 there
    assert targets_for(event("order.created"), routes) == [Target("ops")]


def test_two_routes_to_one_channel_hold_only_when_both_are_quiet() -> None:
    awake = {"events": ["order.cancelled"], "channels": ["ops", "boss"]}
    early = {"events": ["order.*"], "channels": ["ops", "log"], "quiet_hours": "23:00-06:30"}
    routes = settings(QUIET, awake, early).routes
    six_thirty = beijing("06:30")
    # One route awake (cancellations, at any hour): not held there; held on `log`.
    assert targets_for(event("order.cancelled"), routes) == [
        Target("ops"),
        Target("boss"),
        Target("log", six_thirty),
    ]
    # Both quiet: held until the first of them wakes.
    assert targets_for(event("order.paid"), routes) == [
        Target("ops", six_thirty),
        Target("log", six_thirty),
    ]
    # channels_for (the plain answer) is unchanged by quiet hours.
    assert channels_for(event("order.paid"), routes) == ["ops", "log"]


# ---- config errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "key", "words"),
    [
        ('quiet_hours = "22:00-22:00"', "routes[0].quiet_hours", "starts and ends at the same"),
        ('quiet_hours = "22:00-8:00"', "routes[0].quiet_hours", "is not a time range"),
        ('quiet_hours = "24:00-08:00"', "routes[0].quiet_hours", 'e.g. "22:00-08:00"'),
        ('quiet_hours = "22:00"', "routes[0].quiet_hours", "HH:MM-HH:MM"),
        ('urgent = ["alert.order_burst"]', "routes[0].urgent", "without quiet_hours"),
        ('timezone = "UTC"', "routes[0].timezone", "without quiet_hours"),
        ('quiet_hours = "22:00-08:00"\ntimezone = "Asia/Shanghia"', "routes[0].timezone",
         "did you mean 'Asia/Shanghai'"),
        ('quiet_hours = "22:00-08:00"\nurgent = ["order.pad"]', "routes[0].urgent[0]",
         "did you mean 'order.paid'"),
    ],
)  # fmt: skip
def test_config_errors_name_the_key_and_the_fix(
    tmp_path: Path, route: str, key: str, words: str
) -> None:
    path = tmp_path / "pollerd.toml"
    path.write_text(
        '[[channels]]\nname = "ops"\ntype = "console"\n'
        f'[[routes]]\nevents = ["order.*"]\nchannels = ["ops"]\n{route}\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigErrors) as caught:
        load(path)
    [problem] = [p for p in caught.value.problems if p.field == key]
    assert words in str(problem)


def test_pollerd_check_exits_78_naming_the_route(tmp_path: Path) -> None:
    path = tmp_path / "pollerd.toml"
    path.write_text(
        '[[channels]]\nname = "ops"\ntype = "console"\n'
        '[[routes]]\nchannels = ["ops"]\n'
        '[[routes]]\nchannels = ["ops"]\nquiet_hours = "08:00-08:00"\n',
        encoding="utf-8",
    )
    result = pollerd("check", "--config", str(path))
    assert result.returncode == 78, result.stdout + result.stderr
    assert "routes[1].quiet_hours: '08:00-08:00' starts and ends at the same time" in (
        result.stderr
    )


def test_a_good_route_loads(tmp_path: Path) -> None:
    path = tmp_path / "pollerd.toml"
    path.write_text(
        '[pollerd]\ntimezone = "Asia/Shanghai"\n[[channels]]\nname = "ops"\ntype = "console"\n'
        '[[routes]]\nchannels = ["ops"]\nquiet_hours = "22:00-08:00"\n'
        'urgent = ["alert.high_value", "order.cancelled"]\n',
        encoding="utf-8",
    )
    [route] = load(path).routes
    assert route == RouteConfig(
        channels=["ops"],
        quiet_hours="22:00-08:00",
        urgent=["alert.high_value", "order.cancelled"],
        timezone="Asia/Shanghai",
    )


# ---- the outbox: held rows and each order's order ------------------------------------------


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """On both backends: the held-row exception is in the outbox's one due predicate."""
    s = open_store(db_url)
    yield s
    s.close()


def record(store: Store, ev: Event, routes: list[RouteConfig]) -> None:
    store.commit_page("acme", [], [(ev, targets_for(ev, routes))])


def due_ids(store: Store, now: float) -> list[str]:
    return [d.event_id for d in store.due(now, 100, ["ops"])]


def test_a_held_row_is_due_at_the_end_and_stored_as_held(store: Store) -> None:
    record(store, event("order.created"), settings(QUIET).routes)
    [row] = store.deliveries()
    assert (row["quiet_until"], row["next_at"], row["state"]) == (MORNING, MORNING, "pending")
    assert due_ids(store, MORNING - 1) == []
    assert due_ids(store, MORNING) == ["acme:1:order.created"]
    assert store.quiet(MORNING - 1) == {"ops": (1, MORNING)}
    assert store.quiet(MORNING) == {}


def test_an_urgent_event_does_not_wait_behind_its_orders_held_one(store: Store) -> None:
    """Decided: a row held by quiet hours does not hold back a later row of its order that is
    not held; held rows keep their order among themselves, and after the end everything is
    ordinary again."""
    routes = settings(QUIET).routes
    record(store, event("order.created", order="7"), routes)
    record(store, event("dispute.deadline", order="7", **deadline_in(4, NIGHT)), routes)  # urgent
    record(store, event("order.paid", NIGHT + timedelta(minutes=5), order="7"), routes)
    night = NIGHT.timestamp() + 600
    assert due_ids(store, night) == ["acme:7:dispute.deadline"]
    assert [d.event_id for d in store.backlog("ops", night, 100)] == ["acme:7:dispute.deadline"]
    [urgent_row] = store.due(night, 100, ["ops"])
    store.mark(urgent_row.id, state="sent", attempts=1, body="x")
    # The end: the night's rows of the order, one at a time and in order (the paid one waits
    # behind the created one) or together, in order, in a digest's backlog.
    assert due_ids(store, MORNING) == ["acme:7:order.created"]
    backlog = store.backlog("ops", MORNING, 100)
    assert [d.event_id for d in backlog] == ["acme:7:order.created", "acme:7:order.paid"]
    assert {d.quiet_until for d in backlog} == {MORNING}


def test_a_row_held_longer_still_holds_back_a_later_held_one(store: Store) -> None:
    """Two quiet routes with different ends on one channel: the later event, held for the
    shorter time, still waits for the earlier one (only rows NOT held may go first)."""
    short = {"events": ["order.paid"], "channels": ["ops"], "quiet_hours": "22:00-06:00"}
    routes = settings(QUIET, short).routes
    six = beijing("06:00")
    record(store, event("order.created", order="9"), routes)  # held until 08:00
    # order.paid: both routes match and are quiet, so held until the earlier end, 06:00
    paid = event("order.paid", NIGHT + timedelta(minutes=1), order="9")
    assert targets_for(paid, routes) == [Target("ops", six)]
    record(store, paid, routes)
    assert due_ids(store, six) == []
    assert store.backlog("ops", six, 100) == []
    assert due_ids(store, MORNING) == ["acme:9:order.created"]


# ---- the end of quiet hours: the release ----------------------------------------------------


def order_event(n: int, kind: str = "order.created", *, order: int | None = None) -> Event:
    """Order `1000 + (order or n)`'s `kind`, noticed `n` minutes into the night."""
    number = str(1000 + (n if order is None else order))
    at = NIGHT + timedelta(minutes=n)
    payload = Order(
        store="acme", platform="woocommerce", id=number, number=number, status="processing",
        created_at=at, updated_at=at, total="99.00", currency="CNY",
    ).to_json()  # fmt: skip
    return Event(kind, "acme", "woocommerce", number, at, at, False, payload)


def burst(n: int) -> Event:
    figures = {"rule": "order_burst", "severity": "warning", "by": ["ip"], "count": 3,
               "window_seconds": 86400.0, "orders": ["1001", "1002", "1003"]}  # fmt: skip
    ev = order_event(n, "alert.order_burst", order=1)
    return Event(**{**ev.__dict__, "alert": figures, "alert_id": "acme:alert.order_burst:1001"})


def night_to(store: Store, channel: str, events: list[Event]) -> None:
    """Record `events` as the page path does, through a quiet route to `channel`."""
    routes = settings({**QUIET, "channels": [channel]}).routes
    store.commit_page("acme", [], [(ev, targets_for(ev, routes)) for ev in events])


def numbers(received: list[Any]) -> list[str]:
    text = " ".join(json.dumps(r.json, ensure_ascii=False) for r in received)
    return sorted(set(re.findall(r"#(\d+)", text)))


def wecom_night(store: Store, events: list[Event], *, rounds_at_end: int = 1) -> list[Any]:
    """The night's `events` to a WeCom group (the simulated service, 20 messages a minute): a
    round every hour of the night, then `rounds_at_end` rounds a second apart from 08:00.
    Returns what the group received, each message with the sim's time."""
    clock = SecondsClock(NIGHT.timestamp())
    with ChatSim(clock=clock) as sim:

        async def run() -> None:
            async with httpx.AsyncClient() as http:
                ctx = ChannelContext("wecom", {"url": sim.endpoint("wecom")}, http)
                deliverer = Deliverer(
                    store, {"wecom": WeComChannel(ctx)}, DeliveryConfig(),
                    clock=clock, monotonic=clock,
                )  # fmt: skip
                night_to(store, "wecom", events)
                while clock.now < MORNING:
                    await deliverer.run_once()
                    clock.now = min(MORNING, clock.now + 3600)
                for _ in range(rounds_at_end):
                    await deliverer.run_once()
                    clock.now += 1

        asyncio.run(run())
        return sim.received("wecom")


def test_the_night_goes_out_as_one_digest_at_the_end_and_a_burst_at_once(store: Store) -> None:
    received = wecom_night(store, [order_event(n) for n in range(1, 6)] + [burst(30)])
    assert [r.at for r in received] == [NIGHT.timestamp(), MORNING]
    night, morning = (r.json["markdown"]["content"] for r in received)
    assert "URGENT" in night and "3 orders from one IP" in night  # the burst, not held
    assert "Digest: 5 order alerts" in morning
    assert numbers(received[1:]) == ["1001", "1002", "1003", "1004", "1005"]
    done = {r["event_id"]: r for r in store.deliveries()}
    digests = {r["digest"] for r in done.values() if r["event_id"].endswith("order.created")}
    assert len(digests) == 1 and None not in digests
    assert done["acme:alert.order_burst:1001"]["digest"] is None
    assert {r["state"] for r in done.values()} == {"sent"}


def test_one_held_row_goes_out_alone(store: Store) -> None:
    [message] = wecom_night(store, [order_event(1)])
    assert "Digest" not in message.json["markdown"]["content"]
    assert numbers([message]) == ["1001"]
    [row] = store.deliveries()
    assert (row["state"], row["digest"]) == ("sent", None)


def test_more_than_one_digest_holds_goes_out_in_several(store: Store) -> None:
    received = wecom_night(store, [order_event(n) for n in range(80)], rounds_at_end=10)
    done = store.deliveries(limit=1000)
    assert {r["state"] for r in done} == {"sent"}
    digests = {r["digest"] for r in done}
    assert None not in digests and len(received) == len(digests) >= 2  # WeCom's 4,096 bytes
    assert numbers(received) == [str(1000 + n) for n in range(80)]
    assert min(r.at for r in received) == MORNING


def test_console_has_no_budget_and_still_gets_one_digest(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    night_to(store, "console", [order_event(n) for n in range(1, 4)])
    console = ConsoleChannel(ChannelContext("console", {}, None))  # type: ignore[arg-type]
    capsys.readouterr()
    clock = SecondsClock(MORNING - 1)
    deliverer = Deliverer(store, {"console": console}, DeliveryConfig(), clock=clock)
    asyncio.run(deliverer.run_once())
    assert capsys.readouterr().out == ""
    clock.now = MORNING
    asyncio.run(deliverer.run_once())
    out = capsys.readouterr().out
    assert "3 order alerts" in out and all(f"#{n}" in out for n in (1001, 1002, 1003))
    assert len({r["digest"] for r in store.deliveries()} - {None}) == 1


def test_a_webhook_gets_the_night_one_by_one_in_order(store: Store) -> None:
    """A webhook's body is one event's signed JSON: no digest, each event in order."""
    kinds = ("order.created", "order.paid", "order.fulfilled")
    night_to(store, "hook", [order_event(n, kind, order=7) for n, kind in enumerate(kinds)])
    clock = SecondsClock(MORNING - 1)
    with WebhookSink() as sink:

        async def run() -> None:
            async with httpx.AsyncClient() as http:
                options = {"url": sink.url, "secret": HOOK_SECRET, "timeout": "2s"}
                hook = WebhookChannel(ChannelContext("hook", options, http))
                # dead_after shorter than the night: its expiry counts from the morning
                cfg = DeliveryConfig(dead_after=timedelta(hours=1))
                deliverer = Deliverer(store, {"hook": hook}, cfg, clock=clock)
                await deliverer.run_once()
                assert sink.ids() == []
                clock.now = MORNING
                for _ in range(4):
                    await deliverer.run_once()

        asyncio.run(run())
        assert sink.ids() == [f"acme:1007:{kind}" for kind in kinds]
    assert {(r["digest"], r["state"]) for r in store.deliveries()} == {(None, "sent")}


def test_retrying_a_channel_does_not_wake_its_quiet_rows(store: Store) -> None:
    """`deliveries retry --channel` frees a broken channel's rows; the night's are not stuck."""
    night_to(store, "ops", [order_event(1)])
    assert store.retry(channel="ops") == 0
    [row] = store.deliveries()
    assert (row["next_at"], row["quiet_until"]) == (MORNING, MORNING)


def test_alerts_are_held_where_they_are_recorded(store: Store) -> None:
    """`raise_alerts` (every rule's way into the outbox) holds what quiet hours hold."""
    routes = settings(QUIET).routes
    now = NIGHT.timestamp()
    alerts = [
        Alert(kind, "acme", "woocommerce", "1001", "why", NIGHT, group="1001",
              figures={"rule": kind, "severity": "warning"})
        for kind in ("alert.high_value", "alert.order_burst")
    ]  # fmt: skip
    raise_alerts(store, alerts, routes, now=now)
    held = {r["event_id"]: r["quiet_until"] for r in store.deliveries()}
    assert held == {
        "acme:alert.high_value:1001": MORNING,
        "acme:alert.order_burst:1001": None,
    }


def test_the_readme_example_loads(tmp_path: Path) -> None:
    """The README's quiet-hours route is a real config (with its card shop's channel)."""
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    [block] = [b for b in readme.split("```toml")[1:] if "quiet_hours" in b.split("```")[0]]
    path = tmp_path / "pollerd.toml"
    path.write_text(
        '[[channels]]\nname = "owner-wecom"\ntype = "console"\n' + block.split("```")[0],
        encoding="utf-8",
    )
    [route] = load(path).routes
    assert (route.quiet_hours, route.timezone) == ("22:00-08:00", "Asia/Shanghai")
    night = Event(**{**order_event(1).__dict__, "type": "alert.high_value"})
    assert targets_for(night, [route]) == [Target("owner-wecom")]  # urgent for this route
    assert targets_for(order_event(1), [route]) == [Target("owner-wecom", MORNING)]
