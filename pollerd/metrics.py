"""Every Prometheus metric pollerd exports (the names are a contract), and how each is written.

Why it looks like this (research/style-reliability-ops.md §C.6, prometheus.io naming and
instrumentation practices):

- One `pollerd_` prefix, base units (seconds, ratios 0–1), `_total` counters, and a
  `_timestamp_seconds` gauge set only on success: "export the Unix timestamp at which it
  happened, not the time since", so an alert is `time() - x > 5 * interval`.
- Labels are only configured store and channel names, HTTP status codes and fixed results:
  bounded by the config, never an order id, an email or a URL.
- `declare()` exports 0 for every series known in advance (each configured store and
  channel), so `increase()` sees the first event and a store that never polled is visible as 0.
- pollerd's OWN registry, never the library's global one: two runtimes in one process (tests, a
  reload) do not collide, and `reset()` gives a test a clean slate.
- Free when unused: until `declare()`, `serve()` or `current()` is called the counters are
  no-ops and prometheus_client is not even imported (measured: +3.1 MiB RSS and ~0.2 s of
  import on a `pollerd once` that exports nothing). The few facts a later scrape needs anyway
  (bookmark, last success, budget models, the outbox) are plain references kept in `_Facts`.
- Cheap when nobody scrapes: the hot paths only add to counters; everything derived (cursor
  lag, rate budget in use, dead letters, last success, process figures) is computed when
  `/metrics` is read, by a collector.

`/metrics` and `/healthz` are served by `pollerd.web.scrape`, which reads `current()`.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from pollerd import __version__
from pollerd.model import EVENT_TYPES

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import GaugeMetricFamily

POLL_RESULTS = ("ok", "error", "throttled")
DELIVERY_RESULTS = ("sent", "retry", "permanent", "dead", "suppressed")
NO_ANSWER = ("timeout", "error")
"""`code` label values for requests that got no HTTP answer (timeout; refused, reset, TLS or
protocol failure). Every other `code` is the HTTP status."""
POLL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
"""A quiet pass is one small request (~10-50 ms on loopback, a few hundred ms to a real store);
a pass that pages, waits out a Retry-After or a THROTTLED refill takes seconds to minutes."""
DELIVERY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)
"""From detection to the channel's acceptance: sub-second when the channel is up, then the
back-off schedule (minutes to hours) when it is not; +Inf holds the rest up to `dead_after`."""

Ratio = Callable[[], float | None]
DeadCounts = Callable[[], Mapping[str, int]]


@dataclass
class _Facts:
    """What the scrape-time gauges read, kept whether or not metrics are enabled (a source is
    built before the daemon enables them). Written by the loop thread, read by the scrape
    thread under `lock`; bound methods are held weakly, so a reload's old source (and its
    HTTP client) is not kept alive by a metric."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    stores: set[str] = field(default_factory=set)
    channels: set[str] = field(default_factory=set)
    budgets: dict[str, Callable[[], Ratio | None]] = field(default_factory=dict)
    cursors: dict[str, float] = field(default_factory=dict)  # bookmark updated_at, Unix time
    successes: dict[str, float] = field(default_factory=dict)  # last ok pass, Unix time
    intervals: dict[str, float] = field(default_factory=dict)  # configured poll interval, s
    dead: Callable[[], DeadCounts | None] | None = None
    dead_failed: bool = False


class Metrics:
    """One registry with every pollerd metric; the process has at most one current instance
    (`current()`), which the instrumented code writes to and `serve()` exposes."""

    def __init__(self, facts: _Facts) -> None:
        import platform

        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            GCCollector,
            Histogram,
            PlatformCollector,
            ProcessCollector,
            disable_created_metrics,
        )

        # `_created` series double every counter's output for a feature pollerd's alerts do not
        # use; the switch is process-wide in prometheus_client and pollerd owns the process.
        disable_created_metrics()
        self.facts = facts
        self.registry: CollectorRegistry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        ProcessCollector(registry=registry)  # process_resident_memory_bytes, _cpu_seconds, fds
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        self.build_info = Gauge(
            "pollerd_build_info",
            "Always 1; the labels say which pollerd and Python are running.",
            ["version", "python"],
            registry=registry,
        )
        self.build_info.labels(__version__, platform.python_version()).set(1)
        self.polls = Counter(
            "pollerd_polls_total",
            "Poll passes by result: ok; throttled (failed after the store's API said 'not "
            "now': 429, THROTTLED, Retry-After); error (anything else).",
            ["store", "result"],
            registry=registry,
        )
        self.poll_duration = Histogram(
            "pollerd_poll_duration_seconds",
            "Duration of one poll pass, probe to last commit (failed passes included).",
            ["store"],
            buckets=POLL_BUCKETS,
            registry=registry,
        )
        self.api_requests = Counter(
            "pollerd_api_requests_total",
            "HTTP requests to the store's API by status code (timeout/error: no answer).",
            ["store", "code"],
            registry=registry,
        )
        self.events = Counter(
            "pollerd_events_total",
            "New events recorded (each fires at most once per order and type).",
            ["store", "type"],
            registry=registry,
        )
        self.late_events = Counter(
            "pollerd_late_events_total",
            "Events a sweep found that the fast path missed (the API's search index lagged "
            "past the overlap); also counted in pollerd_events_total.",
            ["store"],
            registry=registry,
        )
        self.deliveries = Counter(
            "pollerd_deliveries_total",
            "Delivery attempts by outcome: sent; retry (backing off); permanent (refused for "
            "good: the row is dead or its channel held); dead (not sent within dead_after, or "
            "max_attempts when set); suppressed (the recipients opted out or blocked pollerd).",
            ["channel", "result"],
            registry=registry,
        )
        self.delivery_latency = Histogram(
            "pollerd_delivery_latency_seconds",
            "From an event's detection to the channel accepting it (sent_at - detected_at).",
            ["channel"],
            buckets=DELIVERY_BUCKETS,
            registry=registry,
        )
        registry.register(LiveCollector(facts))

    def declare(self, stores: Iterable[str], channels: Iterable[str]) -> None:
        """Export 0 for every series known in advance, and drop the series of stores and
        channels no longer configured (after a reload): a removed store must not look stuck."""
        store_names, channel_names = set(stores), set(channels)
        for name in store_names:
            for result in POLL_RESULTS:
                self.polls.labels(name, result)
            for kind in EVENT_TYPES:
                self.events.labels(name, kind)
            self.poll_duration.labels(name)
            self.late_events.labels(name)
        for name in channel_names:
            for result in DELIVERY_RESULTS:
                self.deliveries.labels(name, result)
            self.delivery_latency.labels(name)
        for metric, label, names in (
            (self.polls, "store", ("store", "result")),
            (self.poll_duration, "store", ("store",)),
            (self.api_requests, "store", ("store", "code")),
            (self.events, "store", ("store", "type")),
            (self.late_events, "store", ("store",)),
            (self.deliveries, "channel", ("channel", "result")),
            (self.delivery_latency, "channel", ("channel",)),
        ):
            keep = store_names if label == "store" else channel_names
            for values in _children(metric, names):
                if values[names.index(label)] not in keep:
                    metric.remove(*values)
        facts = self.facts
        with facts.lock:
            facts.stores, facts.channels = store_names, channel_names
            for table in (facts.budgets, facts.cursors, facts.successes, facts.intervals):
                for gone in set(table) - store_names:
                    del table[gone]

    def exposition(self) -> bytes:
        """The current text exposition (what `/metrics` answers by default)."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class LiveCollector:
    """The gauges computed when scraped, from `_Facts` the running code keeps anyway:

    - `pollerd_rate_budget_used_ratio{store}`: the source's budget model (`watch_budget`),
      read without side effects (the scrape runs in another thread);
    - `pollerd_cursor_lag_seconds{store}`: now minus the bookmark's `updated_at` (the newest
      order change pollerd has processed), as `pollerd status` shows it;
    - `pollerd_last_successful_poll_timestamp_seconds{store}`: set by ok passes, and at start
      from the database's record (a restart must not look like "never polled");
    - `pollerd_poll_interval_seconds{store}`: the configured interval (alerts in intervals);
    - `pollerd_deliveries_dead{channel}`: dead letters, counted in the database at scrape time,
      because `pollerd deliveries retry` (another process) empties them.
    """

    def __init__(self, facts: _Facts) -> None:
        self.facts = facts

    def describe(self) -> list[GaugeMetricFamily]:
        """Names only (the registry checks them for duplicates without computing anything)."""
        from prometheus_client.core import GaugeMetricFamily

        return [GaugeMetricFamily(n, doc, labels=[label]) for n, doc, label in _LIVE_GAUGES]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from prometheus_client.core import GaugeMetricFamily

        facts = self.facts
        with facts.lock:
            stores, channels, dead = set(facts.stores), set(facts.channels), facts.dead
            budgets, cursors = dict(facts.budgets), dict(facts.cursors)
            successes, intervals = dict(facts.successes), dict(facts.intervals)
        families = {n: GaugeMetricFamily(n, doc, labels=[lb]) for n, doc, lb in _LIVE_GAUGES}
        budget = families["pollerd_rate_budget_used_ratio"]
        for store in sorted(stores | set(budgets)):
            ref = budgets.get(store)
            fn = ref() if ref is not None else None
            value = fn() if fn is not None else None
            budget.add_metric([store], min(1.0, max(0.0, value or 0.0)))
        now = time.time()
        lag = families["pollerd_cursor_lag_seconds"]
        for store in sorted(stores | set(cursors)):
            at = cursors.get(store)
            lag.add_metric([store], max(0.0, now - at) if at is not None else 0.0)
        success = families["pollerd_last_successful_poll_timestamp_seconds"]
        for store in sorted(stores | set(successes)):
            success.add_metric([store], successes.get(store, 0.0))
        interval = families["pollerd_poll_interval_seconds"]
        for store in sorted(set(intervals)):  # no default: 0 would make "5 intervals" 0 s
            interval.add_metric([store], intervals[store])
        yield budget
        yield lag
        yield success
        yield interval
        counts = self._dead_counts(dead)
        if counts is not None:
            family = families["pollerd_deliveries_dead"]
            for channel in sorted(channels | set(counts)):
                family.add_metric([channel], float(counts.get(channel, 0)))
            yield family

    def _dead_counts(self, dead: Callable[[], DeadCounts | None] | None) -> dict[str, int] | None:
        """Dead letters per channel (declared channels without any: 0); None when no outbox is
        watched or the database cannot be read: no number is better than a wrong 0."""
        fn = dead() if dead is not None else None
        if fn is None:
            return None
        try:
            counts = dict(fn())
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail for one gauge
            if not self.facts.dead_failed:
                logger.warning(
                    "metrics: cannot count dead letters ({}); pollerd_deliveries_dead is "
                    "left out until the database answers",
                    type(exc).__name__,
                )
            self.facts.dead_failed = True
            return None
        self.facts.dead_failed = False
        return counts


_LIVE_GAUGES = (
    (
        "pollerd_rate_budget_used_ratio",
        "Share of the store's API rate budget in use (0-1): Shopify GraphQL the shop's cost "
        "bucket (every app on the token), WooCommerce requests in the last minute over "
        "max_requests_per_minute.",
        "store",
    ),
    (
        "pollerd_cursor_lag_seconds",
        "Seconds from the newest order change pollerd has processed (the bookmark) to now; "
        "grows on a quiet store too.",
        "store",
    ),
    (
        "pollerd_last_successful_poll_timestamp_seconds",
        "Unix time of the store's last successful poll pass (0: never, as far as this "
        "database knows).",
        "store",
    ),
    (
        "pollerd_poll_interval_seconds",
        "The store's configured poll interval, so one alert rule fits every store: "
        "time() - pollerd_last_successful_poll_timestamp_seconds > 5 * this.",
        "store",
    ),
    (
        "pollerd_deliveries_dead",
        "Dead letters (deliveries given up on) per channel, until `pollerd deliveries retry`.",
        "channel",
    ),
)


def _weak(fn: Callable[..., Any]) -> Callable[[], Any]:
    """A reference that does not keep a source (and its HTTP client) alive after a reload
    replaced it: bound methods are held weakly, plain functions strongly."""
    if hasattr(fn, "__self__") and hasattr(fn, "__func__"):
        return weakref.WeakMethod(fn)  # type: ignore[arg-type]
    return lambda: fn


def _children(metric: Any, names: tuple[str, ...]) -> set[tuple[str, ...]]:
    """The label values of every series a metric holds, through its public `collect()`."""
    found: set[tuple[str, ...]] = set()
    for family in metric.collect():
        for sample in family.samples:
            if all(n in sample.labels for n in names):
                found.add(tuple(sample.labels[n] for n in names))
    return found


# --- the process's metrics: the facts always, the registry once enabled ------------------------

_facts = _Facts()
_current: Metrics | None = None
_current_lock = threading.Lock()


def current() -> Metrics:
    """The process's metrics, enabling them on first use."""
    global _current
    if _current is None:
        with _current_lock:
            if _current is None:
                _current = Metrics(_facts)
    return _current


def enabled() -> bool:
    return _current is not None


def reset() -> Metrics:
    """A clean slate, enabled (tests). A server started by `serve` exposes whichever
    registry is current when it is scraped."""
    global _current, _facts
    with _current_lock:
        _facts = _Facts()
        _current = Metrics(_facts)
    return _current


def declare(stores: Iterable[str], channels: Iterable[str]) -> None:
    """Enable metrics and export 0 for each configured store and channel; call it before the
    first pass, and again after each reload (series of removed ones are dropped)."""
    current().declare(stores, channels)


def poll(store: str, result: str, seconds: float) -> None:
    """One finished pass (a pass cut short by shutdown is not counted)."""
    if result not in POLL_RESULTS:
        raise ValueError(f"poll result {result!r} is not one of {POLL_RESULTS}")
    if result == "ok":
        with _facts.lock:
            _facts.successes[store] = time.time()
    if _current is not None:
        _current.polls.labels(store, result).inc()
        _current.poll_duration.labels(store).observe(seconds)


def seen_success(store: str, when: datetime | None) -> None:
    """The database's record of the last success (at start-up); never moves it backwards."""
    if when is None:
        return
    with _facts.lock:
        if when.timestamp() > _facts.successes.get(store, 0.0):
            _facts.successes[store] = when.timestamp()


def api_request(store: str, code: int | str) -> None:
    """One request to a store's API and how it was answered (an HTTP status, or one of
    `NO_ANSWER`). Throttle signals for the pass result are the source's own count
    (`Source.throttled`): metrics are written, never read back to decide anything."""
    if _current is not None:
        _current.api_requests.labels(store, str(code)).inc()


def new_events(store: str, types: Mapping[str, int], *, late: int = 0) -> None:
    if _current is None:
        return
    for kind, count in types.items():
        if count:
            _current.events.labels(store, kind).inc(count)
    if late:
        _current.late_events.labels(store).inc(late)


def cursor(store: str, updated_at: datetime) -> None:
    """Where the store's bookmark stands (for `pollerd_cursor_lag_seconds`)."""
    with _facts.lock:
        _facts.cursors[store] = updated_at.timestamp()


def interval(store: str, seconds: float) -> None:
    """The store's configured poll interval (`pollerd_poll_interval_seconds`)."""
    with _facts.lock:
        _facts.intervals[store] = seconds


def watch_budget(store: str, ratio: Ratio) -> None:
    """`ratio()` (0-1, or None while unknown) is read at scrape time, from the scrape's thread:
    it must not change the model it reads. A bound method is held weakly."""
    with _facts.lock:
        _facts.budgets[store] = _weak(ratio)


def watch_dead(counts: DeadCounts) -> None:
    """`counts()` → {channel: dead letters}, read at scrape time from the scrape's thread."""
    with _facts.lock:
        _facts.dead = _weak(counts)


def delivery(channel: str, result: str, *, latency: float | None = None) -> None:
    """One delivery row's attempt; `latency` (sent_at - detected_at) when it was sent."""
    if result not in DELIVERY_RESULTS:
        raise ValueError(f"delivery result {result!r} is not one of {DELIVERY_RESULTS}")
    if _current is None:
        return
    _current.deliveries.labels(channel, result).inc()
    if latency is not None:
        _current.delivery_latency.labels(channel).observe(max(0.0, latency))


def write_textfile(path: str | Path) -> None:
    """The current metrics as a node_exporter textfile (written to a temporary file, then
    renamed: a half-written file is never read). For `pollerd once` under a timer."""
    from prometheus_client import write_to_textfile

    write_to_textfile(str(path), current().registry)
