"""The WooCommerce probe and the passes it makes cheap: `StoreSync` + `WooCommerceSource` + a real
SQLite store against `WooSim` over loopback HTTP, the simulator's clock held still so every
change gets a controlled `date_modified`. Requests are counted at the simulator."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pollerd.config import RouteConfig
from pollerd.errors import RetryableSourceError
from pollerd.sources.woocommerce import WooCommerceStore
from pollerd.sources.woocommerce.client import WooCommerceSource
from pollerd.sources.woocommerce.responses import every_status
from pollerd.store import Store, open_store
from pollerd.sync import WALK_EVERY, StoreSync
from pollerd_sim import WooSim
from tests.support.clocks import FakeTime, WallClock

KEY = "ck_probe_0123456789"
SECRET = "cs_probe_0123456789"
ORDERS = "/wp-json/wc/v3/orders"
T = TypeVar("T")


@pytest.fixture
def moment() -> WallClock:
    """The simulator's and the sync's clock: ten minutes ago, moved only by the test."""
    return WallClock(datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10))


@pytest.fixture
def sim(moment: WallClock) -> Iterator[WooSim]:
    with WooSim(consumer_key=KEY, consumer_secret=SECRET, clock=moment) as server:
        yield server


def _cfg(url: str) -> WooCommerceStore:
    values: dict[str, Any] = {  # the keys as a config file gives them (secrets as text)
        "name": "shop",
        "platform": "woocommerce",
        "url": url,
        "consumer_key": KEY,
        "consumer_secret": SECRET,
        "max_requests_per_minute": 6000,
        "timeout": timedelta(seconds=5),
        "start_from": datetime(2020, 1, 1, tzinfo=UTC),
    }
    return WooCommerceStore(**values)


def _kind(entry: dict[str, Any]) -> str:
    params = entry["params"]
    if entry["method"] != "GET":
        return str(entry["method"])
    if "include" in params:
        return "fetch"
    if params.get("per_page") == ["1"] and params.get("_fields") == ["id"]:
        return "probe"
    return "trash" if params.get("status") == ["trash"] else "window"


def _sent(sim: WooSim, since: int) -> list[str]:
    return [_kind(e) for e in sim.request_log[since:] if e["path"].startswith(ORDERS)]


def _events(store: Store) -> list[str]:
    return sorted(e["id"] for e in store.events("shop"))


def _session(
    sim: WooSim,
    moment: WallClock,
    tmp_path: Path,
    scenario: Callable[[StoreSync], Awaitable[T]],
    *,
    time: FakeTime | None = None,
) -> tuple[T, Store]:
    """Run `scenario` with a sync whose first passes (the walk, the empty baseline) are done and
    whose orders were last changed a minute before: every later pass starts idle."""
    store = open_store(f"sqlite:///{tmp_path / 'pollerd.db'}")
    cfg = _cfg(sim.url)

    async def main() -> T:
        wiring: dict[str, Any] = {"clock": time.clock, "sleep": time.sleep} if time else {}
        source = WooCommerceSource(cfg, **wiring)
        sync = StoreSync(cfg, source, store, [RouteConfig(channels=["hook"])], clock=moment)
        try:
            await sync.poll()
            moment.advance(60)
            sync._last_walk -= WALK_EVERY  # a periodic walk, a minute after the changes
            await sync.poll()
            return await scenario(sync)
        finally:
            await source.aclose()

    return asyncio.run(main()), store


def test_the_probe_asks_every_status_for_one_row(sim: WooSim, moment: WallClock) -> None:
    """A trashing, which `status=any` would hide, is a change like any other; the question is
    one row of one field, strictly after a second (GMT, naive, like the listing)."""
    first = sim.create_order()
    moment.advance(5)
    sim.create_order()
    moment.advance(5)
    trashed_at = moment.now
    sim.trash(first)

    async def body() -> tuple[Any, ...]:
        source = WooCommerceSource(_cfg(sim.url))
        try:
            return (
                await source.moved_since(trashed_at - timedelta(seconds=1)),
                await source.moved_since(trashed_at),
                await source.probe(),
            )
        finally:
            await source.aclose()

    before, at, newest = asyncio.run(body())
    assert (before, at) == (True, False)
    assert (newest.id, newest.status, newest.updated_at) == (str(first), "trash", trashed_at)
    asked = [e["params"] for e in sim.request_log if e["method"] == "GET"]
    assert len(asked) == 3
    statuses = asked[0]["status"][0].split(",")
    assert "trash" in statuses and "any" not in statuses and "processing" in statuses
    assert asked[0]["per_page"] == ["1"] and asked[0]["_fields"] == ["id"]
    assert asked[0]["dates_are_gmt"] == ["true"]
    assert asked[0]["modified_after"] == [(trashed_at - timedelta(seconds=1)).strftime("%FT%T")]
    assert asked[2]["orderby"] == ["modified"] and asked[2]["order"] == ["desc"]


def test_the_probe_on_a_site_east_of_utc_sees_the_change(moment: WallClock) -> None:
    """With a `Z`, WordPress moves the window by the site's UTC offset (research §1.5): on a
    UTC+8 site a change would hide from the probe for eight hours."""
    with WooSim(
        consumer_key=KEY, consumer_secret=SECRET, clock=moment, site_timezone="Asia/Shanghai"
    ) as east:
        order = east.create_order()
        moment.advance(5)
        east.set_status(order, "processing")

        async def body() -> tuple[bool | None, bool | None]:
            source = WooCommerceSource(_cfg(east.url))
            try:
                return (
                    await source.moved_since(moment.now - timedelta(seconds=1)),
                    await source.moved_since(moment.now),
                )
            finally:
                await source.aclose()

        assert asyncio.run(body()) == (True, False)


def test_without_the_status_list_there_is_no_probe() -> None:
    """A schema that does not list the statuses (or not trash) leaves no one-request question
    that sees trashings: no probe, so the sync walks every pass as before."""
    schema: dict[str, Any] = {
        "endpoints": [
            {"methods": ["GET"], "args": {"status": {"items": {"enum": ["any", "pending"]}}}}
        ]
    }
    assert every_status(schema) is None
    assert every_status({"endpoints": "nonsense"}) is None
    schema["endpoints"][0]["args"]["status"]["items"]["enum"] += ["trash", "auto-draft", "shipped"]
    assert every_status(schema) == ("pending", "trash", "shipped")  # a plugin's status kept


def _passes(
    sim: WooSim, moment: WallClock, count: int, *, step: float
) -> Callable[[StoreSync], Awaitable[list[list[str]]]]:
    """A scenario of `count` passes `step` seconds apart: the kinds of request each sent."""

    async def scenario(sync: StoreSync) -> list[list[str]]:
        passes = []
        for _ in range(count):
            moment.advance(step)
            mark = len(sim.request_log)
            await sync.poll()
            passes.append(_sent(sim, mark))
        return passes

    return scenario


def test_an_idle_pass_is_one_request(sim: WooSim, moment: WallClock, tmp_path: Path) -> None:
    sim.create_order(status="processing", set_paid=True)
    sim.create_order()

    passes, store = _session(sim, moment, tmp_path, _passes(sim, moment, 3, step=1))
    store.close()
    assert passes == [["probe"]] * 3


def test_a_change_is_noticed_at_the_next_pass(
    sim: WooSim, moment: WallClock, tmp_path: Path
) -> None:
    order = sim.create_order()

    async def scenario(sync: StoreSync) -> tuple[list[str], list[str]]:
        moment.advance(1)
        await sync.poll()  # idle
        moment.advance(1)
        sim.set_status(order, "processing")
        mark = len(sim.request_log)
        await sync.poll()
        noticed = _sent(sim, mark)
        for _ in range(2):  # the seam's walk (the change shares the walk's second), then idle
            moment.advance(5)
            mark = len(sim.request_log)
            await sync.poll()
        return noticed, _sent(sim, mark)

    (noticed, after), store = _session(sim, moment, tmp_path, scenario)
    found = _events(store)
    store.close()
    assert noticed == ["probe", "window", "fetch", "trash"]
    assert f"shop:{order}:order.paid" in found
    assert after == ["probe"]  # the bookmark moved: idle again


def test_a_trashing_is_noticed_once_then_the_store_is_idle_again(
    sim: WooSim, moment: WallClock, tmp_path: Path
) -> None:
    """The probe sees the trash but the bookmark (the window's) never reaches a trashed order:
    what the trash listing saw must count as seen, or every later pass walks."""
    kept = sim.create_order()
    gone = sim.create_order()

    async def scenario(sync: StoreSync) -> list[list[str]]:
        moment.advance(1)
        sim.trash(gone)
        passes = []
        for _ in range(4):
            mark = len(sim.request_log)
            await sync.poll()
            passes.append(_sent(sim, mark))
            moment.advance(5)  # past the seam (`PROBE_SEAM`): a change is walked until then
        return passes

    passes, store = _session(sim, moment, tmp_path, scenario)
    found = _events(store)
    store.close()
    assert passes[0] == ["probe", "window", "trash", "fetch"]
    assert f"shop:{gone}:order.deleted" in found and f"shop:{kept}:order.deleted" not in found
    # Once more for the seam (the trashing shares the second the walk read), then idle.
    assert passes[1:] == [["window", "trash"], ["probe"], ["probe"]]


def test_a_change_dated_behind_the_bookmark_is_found_by_the_minute_walk(
    sim: WooSim, moment: WallClock, tmp_path: Path
) -> None:
    """A plugin (or a clock that disagrees) dates a payment before the bookmark, inside the
    overlap: the probe's newest is still the bookmark, so idle passes do not see it; the walk
    due once a minute does, on time (not a sweep's late find)."""
    hidden = sim.create_order()
    moment.advance(2)
    sim.create_order()  # the bookmark

    async def scenario(sync: StoreSync) -> tuple[list[str], int, list[str]]:
        moment.advance(10)
        sim.set_status(hidden, "processing")
        sim.set_modified([hidden], moment.now - timedelta(minutes=1, seconds=20))
        mark = len(sim.request_log)
        quiet = await sync.poll()
        missed = _sent(sim, mark)
        sync._last_walk -= WALK_EVERY  # a minute has passed since the last walk
        mark = len(sim.request_log)
        report = await sync.poll()
        assert report.late_events == 0
        return missed, quiet.events, _sent(sim, mark)

    (missed, quiet, walked), store = _session(sim, moment, tmp_path, scenario)
    found = _events(store)
    store.close()
    assert (missed, quiet) == (["probe"], 0)  # hidden from the probe...
    assert walked == ["window", "fetch", "trash"]  # ...the minute walk needs no probe
    assert f"shop:{hidden}:order.paid" in found


@pytest.mark.parametrize(
    ("kind", "says"),
    [("403html", "HTTP 403 with an HTML page: a WAF"), ("503", "HTTP 503 server error")],
)
def test_a_refused_probe_fails_the_pass_like_a_listing(
    sim: WooSim, moment: WallClock, tmp_path: Path, kind: str, says: str
) -> None:
    """A WAF page or a 5xx is never "nothing moved": the pass fails (retryable, with the pause
    a WAF asks for) and the change made meanwhile is found by the next one."""
    order = sim.create_order()
    time = FakeTime(5000.0)

    async def scenario(sync: StoreSync) -> tuple[str, list[str]]:
        moment.advance(1)
        sim.set_status(order, "processing")
        sim.add_fault(kind, count=1)
        mark = len(sim.request_log)
        with pytest.raises(RetryableSourceError) as refused:
            await sync.poll()
        assert _sent(sim, mark) == ["probe"]
        assert not [e for e in sync.store.events("shop") if e["type"] == "order.paid"]
        time.now += 120.0  # the daemon's back-off, past any pause the answer asked for
        mark = len(sim.request_log)
        await sync.poll()
        return str(refused.value), _sent(sim, mark)

    (message, retried), store = _session(sim, moment, tmp_path, scenario, time=time)
    found = _events(store)
    store.close()
    assert says in message
    assert retried[0] == "probe" and "window" in retried
    assert f"shop:{order}:order.paid" in found


def test_a_store_whose_schema_lists_no_statuses_is_walked_every_pass(
    sim: WooSim, moment: WallClock, tmp_path: Path
) -> None:
    """A host that trims the route schema leaves no one-request question that sees the trash:
    the sync walks the window and the trash every pass, as before the probe existed."""
    trimmed = sim.rest._schema()
    trimmed["endpoints"][0]["args"].pop("status")
    sim.rest._schema = lambda: trimmed  # type: ignore[method-assign]
    sim.create_order()

    passes, store = _session(sim, moment, tmp_path, _passes(sim, moment, 2, step=5))
    store.close()
    assert passes == [["window", "trash"]] * 2


def test_the_minute_walk_rereads_every_order_in_the_overlap(
    sim: WooSim, moment: WallClock, tmp_path: Path
) -> None:
    """Measured on a real WooCommerce 10.0.2 (HPOS, UTC+8, ~420 orders changed in the 5 minutes
    before the last change): idle passes were one probe each, but the walk due once a minute
    re-listed the whole overlap, 5 pages + the trash, so an idle hour at 10 s cost 659 requests
    where an empty overlap costs ~420. The simulator shows the same: ceil(n / 100) listing pages
    a minute, and no fetch (nothing changed)."""
    for _ in range(250):
        sim.create_order()

    async def scenario(sync: StoreSync) -> list[list[str]]:
        passes = []
        for minute_walk in (False, True, False):
            moment.advance(1)
            if minute_walk:
                sync._last_walk -= WALK_EVERY
            mark = len(sim.request_log)
            await sync.poll()
            passes.append(_sent(sim, mark))
        return passes

    passes, store = _session(sim, moment, tmp_path, scenario)
    store.close()
    assert passes == [["probe"], ["window", "window", "window", "trash"], ["probe"]]
