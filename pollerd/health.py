"""Is pollerd working? The verdicts behind `/healthz`, the systemd watchdog and `STATUS=`.

A store is healthy when it had a successful pass within 3 of its intervals (its first gets
`FIRST_POLL_GRACE` more); the delivery loop when it made progress within one send timeout +
`DELIVERY_SLACK`; the scheduler when its own tick ran recently. A store's API being down is a
store verdict, never a reason to stop the watchdog: a restart would not fix it. Likewise a
channel that is failing (every attempt for `failing_after`, or letters gone dead: see
`pollerd.alerts.channel`) makes `/healthz` unhealthy, naming it, and never stops the watchdog.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

FIRST_POLL_GRACE = 30.0
"""A store's first pass may take this long (start-up, first walk) on top of its 3 intervals."""
DELIVERY_SLACK = 5.0
"""Beyond one send timeout, how long the delivery loop may show no progress before it counts as
stalled: covers rendering and the outbox writes between two sends."""


@dataclass
class StoreBeat:
    """One store's heartbeat, in monotonic seconds: what `/healthz` and `STATUS=` report."""

    interval: float
    since: float  # its first pass was scheduled (start-up, or the reload that added it)
    last_ok: float | None = None
    last_error: str | None = None
    failures: int = 0  # passes failed in a row
    running_since: float | None = None
    failing_since: str | None = None  # the stored failure episode's start (pollerd.alerts.store)
    backoff_until: float | None = None  # no pass before this: an error a person must fix

    def succeeded(self, now: float) -> None:
        self.last_ok, self.last_error, self.failures = now, None, 0
        self.failing_since = self.backoff_until = None

    def failed(self, error: str) -> None:
        from pollerd.log import redact  # the reason is served over HTTP: no secret, no PII

        self.last_error, self.failures = redact(error)[:300], self.failures + 1

    def check(self, now: float) -> tuple[bool, dict[str, Any]]:
        """Healthy when the last successful pass ended within 3 intervals; before the first
        one, within 3 intervals + `FIRST_POLL_GRACE` of being scheduled."""
        if self.last_ok is None:
            limit = 3 * self.interval + FIRST_POLL_GRACE
            age = now - self.since
            why = f"no successful poll in the {age:.0f}s since it was scheduled"
        else:
            limit = 3 * self.interval
            age = now - self.last_ok
            why = f"no successful poll for {age:.0f}s (3 intervals = {limit:g}s)"
        ok = age <= limit
        info: dict[str, Any] = {
            "healthy": ok,
            "interval_seconds": self.interval,
            "last_success_seconds_ago": None if self.last_ok is None else round(age, 3),
            "limit_seconds": limit,
            "failures_in_a_row": self.failures,
        }
        if self.running_since is not None:
            info["pass_running_seconds"] = round(now - self.running_since, 3)
        if self.last_error:
            info["last_error"] = self.last_error
            why += f"; last error: {self.last_error}"
        if self.failing_since:
            info["failing_since"] = self.failing_since
        if self.backoff_until is not None and self.backoff_until > now:
            info["backing_off_seconds"] = round(self.backoff_until - now, 1)
        if not ok:
            info["reason"] = why
        return ok, info


@dataclass
class Health:
    """The heartbeats of the scheduler, the delivery loop and every store.

    `check` is the `/healthz` callable: the metrics server calls it from its own thread, so it
    only reads plain numbers, and `stores` is replaced, never mutated, by a reload.
    """

    delivery_last: Callable[[], float]  # monotonic time the delivery loop last made progress
    delivery_limit: float  # seconds without progress that count as stalled
    tick_every: float
    clock: Callable[[], float] = time.monotonic
    stores: dict[str, StoreBeat] = field(default_factory=dict)
    last_tick: float = field(default_factory=time.monotonic)
    delivery_ended: str | None = None  # why the delivery loop is gone (it should never end)
    # Failing channels (name → failing_seconds, detail), `Deliverer.failing` in the daemon.
    channels: Callable[[], dict[str, dict[str, Any]]] = field(default=lambda: {})
    # A full disk or a read-only database right now (`pollerd.store.fault.Trouble.problem`):
    # polls and sends wait on it, so the daemon is not healthy, but a restart would not help.
    database: Callable[[], str | None] = field(default=lambda: None)

    def delivery(self, now: float) -> tuple[bool, dict[str, Any]]:
        age = now - self.delivery_last()
        ok = self.delivery_ended is None and age <= self.delivery_limit
        info: dict[str, Any] = {
            "healthy": ok,
            "last_progress_seconds_ago": round(age, 3),
            "limit_seconds": self.delivery_limit,
        }
        if self.delivery_ended is not None:
            info["reason"] = f"delivery loop ended: {self.delivery_ended}"
        elif not ok:
            info["reason"] = f"delivery loop stalled: no progress for {age:.0f}s"
        return ok, info

    def scheduler(self, now: float) -> tuple[bool, dict[str, Any]]:
        age = now - self.last_tick
        limit = 3 * self.tick_every + DELIVERY_SLACK
        ok = age <= limit
        info: dict[str, Any] = {
            "healthy": ok,
            "last_tick_seconds_ago": round(age, 3),
            "limit_seconds": limit,
        }
        if not ok:
            info["reason"] = f"scheduler stalled: no tick for {age:.0f}s"
        return ok, info

    def check(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, report): every store polled within 3 intervals, the delivery loop and the
        scheduler alive; `problems` names each one that is not, and why."""
        now = self.clock()
        problems: list[str] = []
        stores: dict[str, Any] = {}
        for name, beat in list(self.stores.items()):
            ok, stores[name] = beat.check(now)
            if not ok:
                problems.append(f"store {name}: {stores[name]['reason']}")
        parts = {"delivery": self.delivery(now), "scheduler": self.scheduler(now)}
        for part, (ok, info) in parts.items():
            if not ok:
                problems.append(f"{part}: {info['reason']}")
        failing = self.channels()
        for name, info in failing.items():
            problems.append(
                f"channel {name}: failing for {info['failing_seconds']:.0f}s: {info['detail']}"
                + ("; it has dead letters" if info.get("dead_letters") else "")
            )
        database = self.database()
        if database is not None:
            problems.append(database)
        report = {
            "status": "unhealthy" if problems else "ok",
            **({"reason": "; ".join(problems)} if problems else {}),
            "problems": problems,
            "stores": stores,
            "failing_channels": failing,
            "database": {"healthy": database is None, **({"reason": database} if database else {})},
            **{part: info for part, (_, info) in parts.items()},
        }
        return not problems, report


_STATUS_TEXT = {
    "en": {
        "all": "{n} stores ok",
        "one": "1 store ok",
        "some": "{ok} of {n} stores ok ({name}: {why})",
        "due": "{due} due",
        "last": "last poll {age:.1f}s ago",
        "never": "no poll yet",
        "stalled": "delivery loop stalled for {age:.0f}s",
        "ended": "delivery loop ended",
        "reload_failed": "reload failed: {why}",
        "last_reload": "last reload failed: {why}",
        "stopping": "stopping: finishing the current page and in-flight sends",
    },
    "zh-CN": {
        "all": "{n} 家店铺正常",
        "one": "1 家店铺正常",
        "some": "{ok}/{n} 家店铺正常 ({name}: {why})",
        "due": "待发送 {due}",
        "last": "上次轮询 {age:.1f} 秒前",
        "never": "尚未轮询",
        "stalled": "投递循环停滞 {age:.0f} 秒",
        "ended": "投递循环已停止",
        "reload_failed": "重新加载失败: {why}",
        "last_reload": "上次重新加载失败: {why}",
        "stopping": "正在停止: 完成当前页和进行中的发送",
    },
}


def status_text(locale: str, key: str, **values: Any) -> str:
    """One of the status phrases in the locale (English when it has none)."""
    return _STATUS_TEXT.get(locale, _STATUS_TEXT["en"])[key].format(**values)


def status_line(
    report: dict[str, Any],
    *,
    due: int | None,
    last_poll_age: float | None,
    locale: str = "en",
    note: str | None = None,
) -> str:
    """The one-line `STATUS=` summary, e.g. `3 stores ok, 0 due, last poll 1.2s ago`."""
    text = _STATUS_TEXT.get(locale, _STATUS_TEXT["en"])
    stores = report["stores"]
    bad = [(name, info) for name, info in stores.items() if not info["healthy"]]
    if bad:
        name, info = bad[0]
        why = info.get("last_error") or info["reason"]
        why = why if len(why) <= 80 else why[:79] + "…"
        head = text["some"].format(ok=len(stores) - len(bad), n=len(stores), name=name, why=why)
    else:
        head = text["one"] if len(stores) == 1 else text["all"].format(n=len(stores))
    parts = [head]
    if due is not None:
        parts.append(text["due"].format(due=due))
    parts.append(text["never"] if last_poll_age is None else text["last"].format(age=last_poll_age))
    line = ", ".join(parts)
    delivery = report["delivery"]
    if not delivery["healthy"]:
        key = "ended" if "ended" in delivery.get("reason", "") else "stalled"
        line = text[key].format(age=delivery["last_progress_seconds_ago"]) + "; " + line
    if note:
        line += "; " + text["last_reload"].format(why=note)
    return line
