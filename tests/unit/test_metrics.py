"""Each metric moves for the right reason, through the real parts that produce the fact: poll
passes against `WooSim` and `ShopSim`, deliveries to `WebhookSink` and `ChatSim`, a 429 from the
simulated host, a late event found by a sweep. Expected figures come from the simulators' own
request logs and the database, never from pollerd's counters themselves."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pollerd import metrics
from pollerd.channels.base import ChannelContext
from pollerd.channels.sms import SmsChannel
from pollerd.channels.webhook import WebhookChannel
from pollerd.config import DeliveryConfig, RouteConfig
from pollerd.delivery import Deliverer
from pollerd.errors import RetryableSourceError
from pollerd.model import EVENT_TYPES, Event, Order
from pollerd.sources.ratelimit import CostBudget, RequestPacer
from pollerd.sources.shopify import ShopifyStore
from pollerd.sources.shopify.graphql import ShopifyGraphQLSource
from pollerd.sources.woocommerce import WooCommerceStore
from pollerd.sources.woocommerce.client import WooCommerceSource
from pollerd.store import Store, open_store
from pollerd.sync import StoreSync
from pollerd_sim import ShopSim, WebhookSink, WooSim
from pollerd_sim.chat import ChatSim
from tests.support.clocks import FakeTime, SecondsClock, due_clock

KEY, SECRET = "ck_metrics_0123456789", "cs_metrics_abcdefghij"
HOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TOKEN = "shpat_metrics_0123456789"
ROUTES = [RouteConfig(channels=["hook"])]
CONTRACT = {
    "pollerd_build_info": ("gauge", {"version", "python"}),
    "pollerd_polls": ("counter", {"store", "result"}),
    "pollerd_poll_duration_seconds": ("histogram", {"store"}),
    "pollerd_last_successful_poll_timestamp_seconds": ("gauge", {"store"}),
    "pollerd_api_requests": ("counter", {"store", "code"}),
    "pollerd_rate_budget_used_ratio": ("gauge", {"store"}),
    "pollerd_cursor_lag_seconds": ("gauge", {"store"}),
    "pollerd_events": ("counter", {"store", "type"}),
    "pollerd_late_events": ("counter", {"store"}),
    "pollerd_deliveries": ("counter", {"channel", "result"}),
    "pollerd_delivery_latency_seconds": ("histogram", {"channel"}),
    "pollerd_deliveries_dead": ("gauge", {"channel"}),
    "pollerd_poll_interval_seconds": ("gauge", {"store"}),  # an extension: alerts in intervals
}


@pytest.fixture(autouse=True)
def fresh() -> Iterator[metrics.Metrics]:
    yield metrics.reset()
    metrics.reset()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'pollerd.db'}")
    yield s
    s.close()


@pytest.fixture
def sim() -> Iterator[WooSim]:
    with WooSim(consumer_key=KEY, consumer_secret=SECRET) as server:
        yield server


def value(name: str, **labels: str) -> float | None:
    """One sample as a scrape would read it (None: the series does not exist)."""
    return metrics.current().registry.get_sample_value(name, labels)


def woo(url: str, **kw: Any) -> WooCommerceStore:
    values: dict[str, Any] = {
        "name": "shop",
        "platform": "woocommerce",
        "url": url,
        "consumer_key": KEY,
        "consumer_secret": SECRET,
        "start_from": datetime(2020, 1, 1, tzinfo=UTC),
        "max_requests_per_minute": 600,
        "timeout": timedelta(seconds=5),
        **kw,
    }
    return WooCommerceStore(**values)


def passes(
    cfg: WooCommerceStore, store: Store, *sweeps: bool, after: Callable[[], None] | None = None
) -> list[object]:
    """One pass per item of `sweeps` (True: with the daily sweep), in one loop and source; a
    failed pass yields its exception instead of a report. `after` runs after each pass, while
    the source is alive (a closed source's budget is no longer watched)."""

    async def go() -> list[object]:
        source = WooCommerceSource(cfg)
        sync = StoreSync(cfg, source, store, ROUTES)
        out: list[object] = []
        try:
            for sweep in sweeps:
                try:
                    out.append(await sync.poll(sweep=sweep))
                except RetryableSourceError as exc:
                    out.append(exc)
                if after is not None:
                    after()
        finally:
            await source.aclose()
        return out

    return asyncio.run(go())


def served(sim: WooSim, status: int) -> int:
    return sim.stats()["requests"].get(str(status), 0)


# --- polls ------------------------------------------------------------------------------------


def test_a_pass_against_woosim_counts_its_requests_events_and_success(
    sim: WooSim, store: Store
) -> None:
    paid = sim.create_order(payment_method="stripe", set_paid=True)
    for _ in range(2):
        sim.create_order(payment_method="bacs")
    metrics.declare(["shop"], ["hook"])
    assert value("pollerd_last_successful_poll_timestamp_seconds", store="shop") == 0.0
    before = time.time()
    ratios: list[float | None] = []
    passes(
        woo(sim.url),
        store,
        False,
        after=lambda: ratios.append(value("pollerd_rate_budget_used_ratio", store="shop")),
    )
    after = time.time()

    assert value("pollerd_polls_total", store="shop", result="ok") == 1
    assert value("pollerd_polls_total", store="shop", result="error") == 0
    assert value("pollerd_poll_duration_seconds_count", store="shop") == 1
    assert 0 < value("pollerd_poll_duration_seconds_sum", store="shop") < after - before + 0.01
    success = value("pollerd_last_successful_poll_timestamp_seconds", store="shop")
    assert before <= success <= after
    # Every request the store answered, counted once, by its status.
    answered = served(sim, 200)
    assert (
        answered >= 3 and value("pollerd_api_requests_total", store="shop", code="200") == answered
    )
    # Events by type: what the database recorded as new.
    recorded = Counter(e["type"] for e in store.events("shop"))
    assert recorded == {"order.created": 3, "order.paid": 1}
    for kind in EVENT_TYPES:
        assert value("pollerd_events_total", store="shop", type=kind) == recorded.get(kind, 0)
    assert value("pollerd_late_events_total", store="shop") == 0
    # WooCommerce's budget is pollerd's own ceiling: requests in the last minute / 600.
    assert ratios == [pytest.approx(answered / 600)]
    cursor = store.cursor("shop")
    assert cursor is not None and cursor.updated_at.timestamp() >= before - 2
    lag = value("pollerd_cursor_lag_seconds", store="shop")
    assert lag == pytest.approx(time.time() - cursor.updated_at.timestamp(), abs=1.0)

    # A second pass over the same orders: one more ok pass, no new events counted.
    sim.set_status(paid, "completed")
    passes(woo(sim.url), store, False)
    assert value("pollerd_polls_total", store="shop", result="ok") == 2
    assert value("pollerd_events_total", store="shop", type="order.fulfilled") == 1
    assert value("pollerd_events_total", store="shop", type="order.created") == 3
    assert value("pollerd_api_requests_total", store="shop", code="200") == served(sim, 200)
    assert sim.orders_snapshot()[paid]["id"] == paid


def test_a_429_from_the_host_makes_a_throttled_pass_and_a_500_an_error(
    sim: WooSim, store: Store
) -> None:
    sim.create_order()
    sim.add_fault("429", count=1, retry_after=120)  # longer than pollerd sleeps inline
    first, second = passes(woo(sim.url), store, False, False)
    assert isinstance(first, RetryableSourceError) and isinstance(second, RetryableSourceError)
    # The first pass got the 429; the second sent nothing (Retry-After still pending).
    assert sim.fault_counts == {"429": 1}
    assert value("pollerd_api_requests_total", store="shop", code="429") == 1
    assert value("pollerd_polls_total", store="shop", result="throttled") == 2
    assert value("pollerd_polls_total", store="shop", result="ok") is None
    assert value("pollerd_last_successful_poll_timestamp_seconds", store="shop") is None
    assert value("pollerd_poll_duration_seconds_count", store="shop") == 2

    sim.clear_faults()
    sim.add_fault("500", count=1)
    [failed] = passes(woo(sim.url), store, False)  # a new source: no pause carried over
    assert isinstance(failed, RetryableSourceError)
    assert value("pollerd_api_requests_total", store="shop", code="500") == 1
    assert value("pollerd_polls_total", store="shop", result="error") == 1
    assert value("pollerd_polls_total", store="shop", result="throttled") == 2


def test_a_connection_refused_is_counted_with_no_status(store: Store) -> None:
    with WooSim(consumer_key=KEY, consumer_secret=SECRET) as gone:
        url = gone.url
    [failed] = passes(woo(url), store, False)
    assert isinstance(failed, RetryableSourceError)
    assert value("pollerd_api_requests_total", store="shop", code="error") == 1
    assert value("pollerd_polls_total", store="shop", result="error") == 1


def test_a_late_event_found_by_the_sweep_is_counted_as_late(sim: WooSim, store: Store) -> None:
    metrics.declare(["shop"], [])
    sim.create_order(payment_method="stripe")
    passes(woo(sim.url), store, False)
    # An order whose modified date sits behind the bookmark by more than the overlap: the
    # fast path (modified_after = bookmark - 5 min) cannot see it, the sweep (created) can.
    hidden = sim.create_order(payment_method="stripe", set_paid=True)
    sim.set_modified([hidden], datetime.now(UTC) - timedelta(minutes=10))
    passes(woo(sim.url), store, False)
    assert value("pollerd_late_events_total", store="shop") == 0
    assert value("pollerd_events_total", store="shop", type="order.paid") == 0

    passes(woo(sim.url), store, True)
    assert store.late_events("shop") == 2  # created + paid, recorded as late by the sweep
    assert value("pollerd_late_events_total", store="shop") == 2
    assert value("pollerd_events_total", store="shop", type="order.paid") == 1
    assert value("pollerd_events_total", store="shop", type="order.created") == 2
    assert value("pollerd_polls_total", store="shop", result="ok") == 3


def test_a_restarted_daemon_reports_the_last_success_from_the_database(
    sim: WooSim, store: Store
) -> None:
    passes(woo(sim.url), store, False)
    recorded = store.cursor("shop")
    assert recorded is not None and recorded.last_success is not None
    metrics.reset()  # a new process: its gauges start empty
    metrics.declare(["shop"], [])
    assert value("pollerd_last_successful_poll_timestamp_seconds", store="shop") == 0
    StoreSync(woo(sim.url), WooCommerceSource(woo(sim.url)), store, ROUTES).ensure_cursor()
    assert value("pollerd_last_successful_poll_timestamp_seconds", store="shop") == (
        pytest.approx(recorded.last_success.timestamp())
    )
    assert value("pollerd_poll_interval_seconds", store="shop") == 10.0  # the default interval


def test_shopify_budget_in_use_and_throttled_answers(store: Store) -> None:
    """The shop's cost bucket, drained by another app, shows in the ratio; a THROTTLED answer
    waited out inline is a throttle signal but the pass still succeeds."""
    fake = FakeTime()
    with ShopSim(access_token=TOKEN, bucket=1000, restore=50, monotonic=fake.clock) as shop:
        cfg = ShopifyStore(
            name="shop",
            platform="shopify",
            shop="acme.myshopify.com",
            base_url=shop.url,
            access_token=TOKEN,
            start_from=datetime(2020, 1, 1, tzinfo=UTC),
        )
        shop.create_order(financial="PAID")
        shop.consume(600)
        shop.add_fault("throttled", count=1)

        async def go() -> None:
            source = ShopifyGraphQLSource(cfg, clock=fake.clock, sleep=fake.sleep)
            metrics.declare(["shop"], [])
            assert value("pollerd_rate_budget_used_ratio", store="shop") == 0  # not known yet
            try:
                await StoreSync(cfg, source, store, ROUTES).poll()
                used.append(value("pollerd_rate_budget_used_ratio", store="shop"))
                truth.append(1 - shop.stats()["available"] / 1000)  # same (fake) moment
                throttles.append(source.throttled)
            finally:
                await source.aclose()

        used: list[float | None] = []
        truth: list[float] = []
        throttles: list[int] = []
        asyncio.run(go())
        stats = shop.stats()
    assert value("pollerd_polls_total", store="shop", result="ok") == 1
    assert throttles == [stats["throttled"]] == [1]  # counted by the source, not read back
    counted = sum(
        value("pollerd_api_requests_total", store="shop", code=code) or 0
        for code in stats["by_status"]
    )
    assert counted == stats["requests"] == sum(stats["by_status"].values())
    # The gauge is the shop's own bucket as its last answer showed it (refilled since on the
    # same clock), after another app spent 600 of its 1000 points and pollerd waited its share.
    assert used == [pytest.approx(truth[0], abs=0.01)] and 0 < truth[0] < 1
    assert value("pollerd_events_total", store="shop", type="order.paid") == 1


# --- deliveries --------------------------------------------------------------------------------


def event(n: int, detected: datetime) -> Event:
    order = Order(
        store="shop",
        platform="woocommerce",
        id=str(100 + n),
        number=str(100 + n),
        status="processing",
        created_at=detected,
        updated_at=detected,
        total="25.00",
        currency="EUR",
    )
    return Event(
        "order.paid", "shop", "woocommerce", order.id, detected, detected, False, order.to_json()
    )


def commit(store: Store, channel: str, *events: Event) -> None:
    store.init_cursor("shop", datetime(2020, 1, 1, tzinfo=UTC))
    store.commit_page("shop", [], [(e, [channel]) for e in events])


def sent_latencies(store: Store) -> list[float]:
    """sent_at - detected_at of every sent row, straight from the database."""
    detected = {e["id"]: e["detected_at"] for e in store.events("shop")}
    return [r["sent_at"] - detected[r["event_id"]] for r in store.deliveries() if r["sent_at"]]


def deliver(store: Store, url: str, clock: SecondsClock, rounds: int, **cfg: Any) -> Deliverer:
    async def go() -> Deliverer:
        async with httpx.AsyncClient() as http:
            ctx = ChannelContext("hook", {"url": url, "secret": HOOK_SECRET, "timeout": "2s"}, http)
            deliverer = Deliverer(
                store,
                {"hook": WebhookChannel(ctx)},
                DeliveryConfig(backoff_base="10ms", backoff_max="20ms", **cfg),
                clock=clock,
            )
            for _ in range(rounds):
                await deliverer.run_once()
                clock.now += 1.0  # past any back-off
            return deliverer

    return asyncio.run(go())


def test_deliveries_to_the_sink_count_sent_retry_dead_and_latency(store: Store) -> None:
    clock = due_clock()
    metrics.declare([], ["hook"])
    with WebhookSink() as sink:
        commit(store, "hook", event(1, datetime.now(UTC) - timedelta(seconds=6)))
        deliver(store, sink.url, clock, 1)
        assert len(sink.receipts) == 1
        assert value("pollerd_deliveries_total", channel="hook", result="sent") == 1
        assert value("pollerd_deliveries_total", channel="hook", result="retry") == 0
        [latency] = sent_latencies(store)
        assert 6.0 <= latency < 10.0
        assert value("pollerd_delivery_latency_seconds_count", channel="hook") == 1
        assert value("pollerd_delivery_latency_seconds_sum", channel="hook") == (
            pytest.approx(latency, abs=0.25)
        )
        assert value("pollerd_delivery_latency_seconds_bucket", channel="hook", le="5.0") == 0
        assert value("pollerd_delivery_latency_seconds_bucket", channel="hook", le="10.0") == 1

        sink.set_mode("500")
        commit(store, "hook", event(2, datetime.now(UTC)))
        deliverer = deliver(store, sink.url, clock, 3, max_attempts=2)  # kept: it is watched
        assert len(sink.attempts) == 3  # the first send, then two failures
        assert value("pollerd_deliveries_total", channel="hook", result="retry") == 1
        assert value("pollerd_deliveries_total", channel="hook", result="dead") == 1
        assert value("pollerd_deliveries_total", channel="hook", result="sent") == 1
        assert value("pollerd_delivery_latency_seconds_count", channel="hook") == 1
        dead = [r for r in store.deliveries() if r["state"] == "dead"]
        assert len(dead) == 1 and value("pollerd_deliveries_dead", channel="hook") == 1

        # `pollerd deliveries retry` (any process) empties the dead letters: the gauge follows
        # the database at the next scrape; the counters keep what happened.
        assert store.retry() == 1
        assert value("pollerd_deliveries_dead", channel="hook") == 0
        assert value("pollerd_deliveries_total", channel="hook", result="dead") == 1

        sink.set_mode("410")  # the endpoint is gone: the channel is held
        deliver(store, sink.url, clock, 1)
        assert value("pollerd_deliveries_total", channel="hook", result="permanent") == 1
        assert "hook" in store.broken_channels()
    del deliverer


def test_a_recipient_who_texted_stop_is_counted_as_suppressed(store: Store) -> None:
    with ChatSim() as chat:

        async def go() -> None:
            async with httpx.AsyncClient() as http:
                sms = SmsChannel(
                    ChannelContext(
                        "owner-sms",
                        {
                            "account_sid": chat.config["twilio_sid"],
                            "auth_token": chat.config["twilio_token"],
                            "sender": chat.config["twilio_from"],
                            "to": "+8613800138000",
                            "api_base": chat.url,
                        },
                        http,
                    )
                )
                chat.fail("twilio", "21610", count=5)
                commit(store, "owner-sms", event(1, datetime.now(UTC)))
                await Deliverer(store, {"owner-sms": sms}, DeliveryConfig()).run_once()

        asyncio.run(go())
    assert value("pollerd_deliveries_total", channel="owner-sms", result="suppressed") == 1
    assert value("pollerd_deliveries_total", channel="owner-sms", result="permanent") is None


# --- the registry itself ---------------------------------------------------------------------


def test_declare_exports_zeros_for_known_series_and_drops_removed_ones() -> None:
    assert value("pollerd_deliveries_dead", channel="x") is None  # no outbox watched: no figure
    metrics.watch_dead(dict)  # an outbox without dead letters
    metrics.declare(["a", "b"], ["x"])
    for store in ("a", "b"):
        for result in metrics.POLL_RESULTS:
            assert value("pollerd_polls_total", store=store, result=result) == 0
        assert value("pollerd_late_events_total", store=store) == 0
        assert value("pollerd_rate_budget_used_ratio", store=store) == 0
        assert value("pollerd_cursor_lag_seconds", store=store) == 0
    for result in metrics.DELIVERY_RESULTS:
        assert value("pollerd_deliveries_total", channel="x", result=result) == 0
    assert value("pollerd_deliveries_dead", channel="x") == 0
    assert value("pollerd_delivery_latency_seconds_count", channel="x") == 0
    metrics.api_request("b", 200)

    metrics.declare(["a"], [])  # a reload removed store b and channel x
    assert value("pollerd_polls_total", store="a", result="ok") == 0
    assert value("pollerd_polls_total", store="b", result="ok") is None
    assert value("pollerd_api_requests_total", store="b", code="200") is None
    assert value("pollerd_poll_duration_seconds_count", store="b") is None
    assert value("pollerd_rate_budget_used_ratio", store="b") is None
    assert value("pollerd_deliveries_total", channel="x", result="sent") is None
    assert value("pollerd_deliveries_dead", channel="x") is None


def test_the_exposition_parses_and_keeps_to_the_contract(sim: WooSim, store: Store) -> None:
    sim.create_order(set_paid=True, payment_method="stripe")
    metrics.declare(["shop"], ["hook"])
    metrics.watch_dead(dict)  # an outbox without dead letters
    passes(woo(sim.url), store, False)
    text = metrics.current().exposition().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    ours = {name for name in families if name.startswith("pollerd_")}
    assert ours == set(CONTRACT)
    for name, (kind, labels) in CONTRACT.items():
        family = families[name]
        assert family.type == kind, name
        assert family.samples, name
        for sample in family.samples:
            assert set(sample.labels) - {"le"} == labels, (name, sample.labels)
            assert sample.value == sample.value  # never NaN
    [build] = families["pollerd_build_info"].samples
    assert build.value == 1 and build.labels["version"]
    assert families["process_resident_memory_bytes"].samples[0].value > 0
    # Labels are only configured names, codes and results: no order, email or URL.
    assert "example.test" not in text and sim.url not in text and "127.0.0.1" not in text


def test_scrape_time_gauges_cost_nothing_until_scraped_and_hold_no_source(
    sim: WooSim, store: Store
) -> None:
    calls: list[int] = []

    def dead() -> dict[str, int]:
        calls.append(1)
        return {"hook": 3}

    metrics.declare(["shop"], ["hook"])
    metrics.watch_dead(dead)
    passes(woo(sim.url), store, False)  # a pass and its requests: no scrape-time work
    assert calls == []
    assert value("pollerd_deliveries_dead", channel="hook") == 3
    assert len(calls) == 1

    source = WooCommerceSource(woo(sim.url))
    assert value("pollerd_rate_budget_used_ratio", store="shop") == 0
    del source
    gc.collect()
    # The watched bound method died with its source: the series falls back to 0, no error.
    assert value("pollerd_rate_budget_used_ratio", store="shop") == 0


def test_a_broken_database_leaves_the_dead_gauge_out_instead_of_failing_the_scrape() -> None:
    def dead() -> dict[str, int]:
        raise OSError("disk I/O error")

    metrics.declare(["shop"], ["hook"])
    metrics.watch_dead(dead)
    text = metrics.current().exposition().decode()
    assert "pollerd_deliveries_dead{" not in text
    assert 'pollerd_polls_total{result="ok",store="shop"} 0.0' in text


def test_results_outside_the_contract_are_refused() -> None:
    with pytest.raises(ValueError, match="poll result"):
        metrics.poll("shop", "failed", 1.0)
    with pytest.raises(ValueError, match="delivery result"):
        metrics.delivery("hook", "failed")


def test_metrics_cost_nothing_until_enabled() -> None:
    """Without `metrics_listen` nobody enables them: the counters are no-ops and
    prometheus_client is never imported (a per-minute `pollerd once` pays nothing)."""
    code = (
        "import sys\n"
        "from datetime import UTC, datetime\n"
        "import pollerd.sync, pollerd.delivery, pollerd.sources.woocommerce.client\n"
        "from pollerd import metrics\n"
        "metrics.api_request('shop', 429)\n"
        "metrics.poll('shop', 'ok', 0.1)\n"
        "metrics.delivery('hook', 'sent', latency=0.2)\n"
        "metrics.new_events('shop', {'order.paid': 1}, late=1)\n"
        "metrics.cursor('shop', datetime.now(UTC))\n"
        "print(metrics.enabled(), 'prometheus_client' in sys.modules)\n"
        "metrics.declare(['shop'], [])\n"
        "text = metrics.current().exposition().decode()\n"
        "print(metrics.enabled(), 'prometheus_client' in sys.modules)\n"
        "print('pollerd_last_successful_poll_timestamp_seconds{store=\"shop\"} 0.0' not in text)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:3] == ["False False", "True True", "True"]


def test_budget_ratios_follow_the_models_without_moving_them() -> None:
    """The scrape thread reads the pacer and the cost bucket while the loop uses them: the
    ratios decay with time and reading them changes nothing."""
    fake = FakeTime()
    pacer = RequestPacer(60, fake.clock, fake.sleep)  # one request a second at most

    async def requests(n: int) -> None:
        for _ in range(n):
            async with pacer.slot():
                pass

    asyncio.run(requests(3))  # started at 1000, 1001, 1002
    assert pacer.used_ratio() == pytest.approx(3 / 60)
    fake.now += 58.5  # the first start leaves the minute
    assert pacer.used_ratio() == pytest.approx(2 / 60)
    fake.now += 2
    assert pacer.used_ratio() == 0

    bucket = CostBudget(0.5, fake.clock, fake.sleep)
    assert bucket.used_ratio() is None  # nothing answered yet: unknown, not 0
    bucket.observe({"maximumAvailable": 1000, "currentlyAvailable": 400, "restoreRate": 50})
    before = vars(bucket).copy()
    assert bucket.used_ratio() == pytest.approx(0.6)
    assert vars(bucket) == before
    fake.now += 4  # 200 points refilled
    assert bucket.used_ratio() == pytest.approx(0.4)
    assert vars(bucket) == before
    fake.now += 100
    assert bucket.used_ratio() == 0
