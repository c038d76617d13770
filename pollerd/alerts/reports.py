"""The daily digest and the weekly report (`[[reports]]`): which are due, their figures, and
recording each once per period and channel.

A report is made per table and channel, in the channel's time zone (`timezone`, else
`[pollerd] timezone`), because "yesterday" in Shanghai is not yesterday in London. The daily
report covers the previous local day, 00:00 to 00:00, and is due at `at` the day after; the
weekly one covers Monday 00:00 to Monday 00:00 and is due at `at` on its `day` (Monday) after.
Only the latest due period is made: a pollerd that was down for three days sends yesterday's
digest, not four; a report nobody read when it was due is no digest now.

Exactly once: the report's id is `<store>:report.<type>:<period start, local date>@<channel>`
(`store` the one store its globs match, else `*`) and `pollerd.store.alerts.record_alert`
records an id once, with its one delivery to that channel (not through `[[routes]]`: the table
names its channels). So `send_reports` may run every tick, after a restart, `kill -9` or from
`pollerd once` on a timer: the period's report is made when it is first seen due, then never
again. Figures are read when the report is made: the latest stored facts, which the passes of
that tick have just brought up to date.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from fnmatch import fnmatchcase
from typing import Any
from zoneinfo import ZoneInfo

from loguru import logger

from pollerd.alerts.base import PROCESS, alert_id
from pollerd.alerts.cancellations import CancellationRate, rate_and_mean
from pollerd.config import Settings
from pollerd.config.alerts import CancellationRateAlert
from pollerd.config.reports import ReportConfig
from pollerd.model import Event, utc_iso
from pollerd.store import Store
from pollerd.store.alerts import record_alert

WEEK = timedelta(days=7)
ORDER_EVENTS = {
    "paid": ("order.paid",),
    "cancelled": ("order.cancelled",),
    "refunded": ("order.refunded", "order.partially_refunded"),
}
ALERTS = ("dispute.deadline",)  # with every `alert.*`: what "alerts fired" counts
TOP_REASONS = 5
DECIDED = ("opened", "won", "lost")
LISTED_DISPUTES = 20  # the daily digest lists this many open disputes, the soonest first
RATE = CancellationRate(CancellationRateAlert.model_validate({}))
"""The weekly rate is the cancellation rule's own measure, with its default span for the mean
(the previous 13 weeks that had orders)."""


@dataclass(frozen=True)
class Period:
    """A report's local period [start, end) and the moment it is due, all aware datetimes."""

    start: datetime
    end: datetime
    due: datetime

    @property
    def label(self) -> str:
        """The period start as a local date: the id's and the reader's name for it."""
        return self.start.date().isoformat()


def _local(day: date, clock: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, clock, tzinfo=zone)


def latest_period(report: ReportConfig, zone: str, now: float) -> Period:
    """The latest period of `report` whose report is due at `now`, read in `zone`."""
    tz = ZoneInfo(zone)
    today = datetime.fromtimestamp(now, tz).date()
    midnight = time(0)
    if report.type == "daily":
        end = today if now >= _local(today, report.clock, tz).timestamp() else today - timedelta(1)
        send = end
        start = end - timedelta(1)
    else:
        end = today - timedelta(today.weekday())  # this week's Monday
        send = end + timedelta(report.weekday)
        if now < _local(send, report.clock, tz).timestamp():
            end, send = end - WEEK, send - WEEK
        start = end - WEEK
    return Period(
        _local(start, midnight, tz), _local(end, midnight, tz), _local(send, report.clock, tz)
    )


@dataclass(frozen=True)
class DueReport:
    """One report due on one channel."""

    config: ReportConfig
    channel: str
    zone: str
    period: Period
    stores: tuple[str, ...]  # the stores it covers, in config order

    @property
    def store(self) -> str:
        """The event's store: the one store covered, else `*`."""
        return self.stores[0] if len(self.stores) == 1 else "*"

    @property
    def id(self) -> str:
        return alert_id(self.store, self.config.event, f"{self.period.label}@{self.channel}")

    @property
    def group(self) -> str:
        """Its outbox group (`order.id`): the report and period, never a real order's id."""
        return f"{self.config.event}:{self.period.label}"


def due_reports(settings: Settings, now: float) -> list[DueReport]:
    """Every (table, channel)'s latest due report, recorded or not."""
    channels = settings.channels_by_name
    names = [s.name for s in settings.stores]
    found = []
    for report in settings.reports:
        stores = tuple(n for n in names if any(fnmatchcase(n, g) for g in report.stores))
        if not stores:
            continue
        for name in report.channels:
            channel = channels.get(name)
            if channel is None:  # config validation refuses this; a reload in between
                continue
            zone = channel.timezone or settings.pollerd.timezone
            found.append(DueReport(report, name, zone, latest_period(report, zone, now), stores))
    return found


def send_reports(store: Store, settings: Settings, now: float) -> int:
    """Make and record the due reports not recorded yet; returns the new deliveries."""
    due = due_reports(settings, now)
    done = store.recorded(d.id for d in due)
    platforms = {s.name: s.platform for s in settings.stores}
    made = 0
    for report in due:
        if report.id in done:
            continue
        figures = daily(store, report) if report.config.type == "daily" else weekly(store, report)
        platform = platforms.get(report.store, PROCESS)
        made += record_alert(store, event(report, figures, platform, now), [report.channel])
        logger.info("{} for channel {}: {}", report.config.event, report.channel, summary(figures))
    return made


def event(report: DueReport, figures: dict[str, Any], platform: str, now: float) -> Event:
    when = datetime.fromtimestamp(now, UTC)
    return Event(
        type=report.config.event,
        store=report.store,
        platform=platform,
        order_id=report.group,
        occurred_at=when,
        detected_at=when,
        test=False,
        order={"id": report.group},
        reason=summary(figures),
        alert_id=report.id,
        report=figures,
    )


def summary(figures: dict[str, Any]) -> str:
    """One English line for logs and the webhook's `reason`; templates word the figures."""
    total = figures["total"]
    if figures["kind"] == "daily":
        revenue = ", ".join(f"{v} {k}" for k, v in total["revenue"].items()) or "no revenue"
        return f"{figures['day']}: {total['orders']} orders, {revenue}"
    rate = "n/a" if total["rate"] is None else f"{total['rate']:.1%}"
    return f"week of {figures['day']}: cancellation rate {rate}, {total['opened']} disputes opened"


def _frame(report: DueReport) -> dict[str, Any]:
    p = report.period
    return {
        "kind": report.config.type,
        "day": p.label,
        "last_day": (p.end.date() - timedelta(1)).isoformat(),
        "start": utc_iso(p.start),
        "end": utc_iso(p.end),
        "timezone": report.zone,
    }


def _money(amounts: dict[str, Decimal]) -> dict[str, str]:
    return {code: str(amounts[code]) for code in sorted(amounts)}


def daily(store: Store, report: DueReport) -> dict[str, Any]:
    """The daily digest's figures: per store and in total, the orders created in the day, their
    revenue per currency (not cancelled), paid / cancelled / refunded counts and alerts fired
    by the events of the day; the open disputes with their deadlines, soonest first."""
    names, p = report.stores, report.period
    start, end = p.start.timestamp(), p.end.timestamp()
    orders = store.orders_created(names, start, end)
    kinds = [k for types in ORDER_EVENTS.values() for k in types] + list(ALERTS)
    events = store.events_between(names, start, end, kinds, prefixes=("alert.",))
    rows: list[dict[str, Any]] = []
    for name in names:
        counted = events[name]
        alerts = {k: n for k, n in sorted(counted.items()) if k.startswith("alert.") or k in ALERTS}
        rows.append(
            {
                "store": name,
                "orders": orders[name].orders,
                "revenue": _money(orders[name].revenue),
                **{key: sum(counted[k] for k in types) for key, types in ORDER_EVENTS.items()},
                "alerts": alerts,
            }
        )
    revenue: dict[str, Decimal] = {}
    for name in names:
        for code, amount in orders[name].revenue.items():
            revenue[code] = revenue.get(code, Decimal(0)) + amount
    alerts_total: Counter[str] = Counter()
    for row in rows:
        alerts_total.update(row["alerts"])
    total = {
        "orders": sum(r["orders"] for r in rows),
        "revenue": _money(revenue),
        **{key: sum(r[key] for r in rows) for key in ORDER_EVENTS},
        "alerts": dict(sorted(alerts_total.items())),
    }
    disputes = store.open_disputes(names)
    return {
        **_frame(report),
        "stores": rows,
        "total": total,
        "open_disputes": len(disputes),
        "disputes": [
            {
                "store": d.store,
                "dispute": d.dispute_id,
                "order": d.order_id,
                "amount": d.amount,
                "currency": d.currency,
                "reason": d.reason,
                "deadline": utc_iso(d.evidence_due_by),
            }
            for d in disputes[:LISTED_DISPUTES]
        ],
    }


def _rates(rows: Sequence[tuple[int, int, int]]) -> dict[str, Any]:
    (orders, cancelled), mean = rate_and_mean(rows)
    return {
        "orders": orders,
        "cancelled": cancelled,
        "rate": round(cancelled / orders, 4) if orders else None,
        "mean": None if mean is None else round(mean, 4),
    }


def _chargebacks(opened: int, won: int, lost: int) -> dict[str, Any]:
    decided = won + lost
    win_rate = round(won / decided, 4) if decided else None
    return {"opened": opened, "won": won, "lost": lost, "win_rate": win_rate}


def top(reasons: Counter[str]) -> list[list[Any]]:
    """The `TOP_REASONS` most frequent, as [reason, count]; ties by name, so a report made
    twice reads the same."""
    ranked = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))
    return [[reason, count] for reason, count in ranked[:TOP_REASONS]]


def weekly(store: Store, report: DueReport) -> dict[str, Any]:
    """The weekly report's figures: per store and in total, the cancellation rate of the week's
    orders against the mean of the previous weeks (the cancellation rule's own measure), the
    chargebacks opened, won and lost in the week with the win rate, and the top cancellation
    reasons of the week's `order.cancelled` events."""
    names, p = report.stores, report.period
    start, end = p.start.timestamp(), p.end.timestamp()
    disputes = store.disputes_between(names, start, end)
    reasons = store.cancel_reasons(names, start, end)
    week = WEEK.total_seconds()
    # The rule's windows end at `until` inclusive; a millisecond short of Monday 00:00 they
    # are the weeks [Monday, Monday) the report names.
    windows = {n: store.orders_by_window(n, end - 0.001, week, RATE.windows + 1) for n in names}
    rows = []
    for name in names:
        d = disputes[name]
        rows.append(
            {
                "store": name,
                **_rates(windows[name]),
                **_chargebacks(d.opened, d.won, d.lost),
                "reasons": top(reasons[name]),
            }
        )
    combined: Counter[int] = Counter()
    cancelled: Counter[int] = Counter()
    for found in windows.values():
        for w, n, k in found:
            combined[w] += n
            cancelled[w] += k
    all_reasons: Counter[str] = Counter()
    for found_reasons in reasons.values():
        all_reasons.update(found_reasons)
    total = {
        **_rates([(w, combined[w], cancelled[w]) for w in sorted(combined)]),
        **_chargebacks(*(sum(getattr(disputes[n], k) for n in names) for k in DECIDED)),
        "reasons": top(all_reasons),
    }
    return {**_frame(report), "stores": rows, "total": total}
