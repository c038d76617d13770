"""The daily and weekly reports (issue 14 item 6) on a real database: the day across midnight
Beijing time (a UTC channel sees other days), nothing before `at`, once per period across a
reopened store, exact revenue per currency, the weekly win rate and top reasons, the dispute
dates they rest on, and a config error per check."""

from __future__ import annotations

import json
import re
import tomllib
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from pollerd.alerts.facts import dispute_fact
from pollerd.alerts.reports import DueReport, due_reports, latest_period, send_reports
from pollerd.config import ConfigErrors, Settings, load
from pollerd.config.reports import ReportConfig, check_reports
from pollerd.model import Dispute, Event
from pollerd.store import DisputeFact, OrderFact, Store, open_store
from pollerd.templates import templates_for

SH = ZoneInfo("Asia/Shanghai")
# Sunday Dec 6, 2026, 09:00 in Beijing (01:00 UTC): the report of Saturday Dec 5 is due.
NOW = datetime(2026, 12, 6, 9, 0, tzinfo=SH).timestamp()
WOO = {"platform": "woocommerce", "url": "http://127.0.0.1:9", "consumer_key": "ck_x",
       "consumer_secret": "cs_x"}  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(f"sqlite:///{tmp_path / 'reports.db'}")


def settings(*reports: dict[str, Any], stores: tuple[str, ...] = ("acme",)) -> Settings:
    return Settings.model_validate(
        {
            "pollerd": {"timezone": "Asia/Shanghai"},
            "stores": [{"name": name, **WOO} for name in stores],
            "channels": [
                {"name": "cn", "type": "console"},
                {"name": "utc", "type": "console", "timezone": "UTC", "locale": "en"},
            ],
            "reports": list(reports),
        }
    )


def order(store: Store, oid: str, at: datetime, total: str = "10.00", currency: str = "CNY",
          shop: str = "acme", **kw: Any) -> None:  # fmt: skip
    store.commit_page(shop, [], [], facts=[OrderFact(oid, at, Decimal(total), currency, **kw)])


def happened(store: Store, kind: str, oid: str, at: datetime, shop: str = "acme",
             reason: str | None = None) -> None:  # fmt: skip
    event = Event(kind, shop, "woocommerce", oid, at, at, False, {"id": oid}, reason=reason)
    store.commit_page(shop, [], [(event, [])])


def reports(store: Store) -> dict[str, dict[str, Any]]:
    """Every report recorded, by id, as its JSON."""
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "select id, payload from event where type like 'report.%'"
        ).all()
    return {row[0]: json.loads(row[1]) for row in rows}


def deliveries(store: Store) -> list[tuple[str, str]]:
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql("select event_id, channel from delivery order by id").all()
    return [(r[0], r[1]) for r in rows]


# periods ------------------------------------------------------------------------------------


def test_the_day_across_midnight_in_beijing_and_in_utc(store: Store) -> None:
    late = datetime(2026, 12, 4, 23, 59, 59, tzinfo=SH)  # Friday in Beijing
    early = datetime(2026, 12, 5, 0, 0, 0, tzinfo=SH)  # Saturday in Beijing, Friday 16:00 UTC
    order(store, "1", late, "100.00")
    order(store, "2", early, "200.00")
    config = settings({"type": "daily", "channels": ["cn", "utc"]})
    assert send_reports(store, config, NOW) == 2
    made = reports(store)
    cn = made["acme:report.daily:2026-12-05@cn"]["report"]
    assert cn["total"]["orders"] == 1 and cn["total"]["revenue"] == {"CNY": "200.00"}
    assert (cn["start"], cn["end"]) == ("2026-12-04T16:00:00Z", "2026-12-05T16:00:00Z")
    # 01:00 UTC on Dec 6: Dec 5's UTC report is not due before 09:00 UTC; Dec 4's (UTC) is the
    # latest due, and both orders fell on Dec 4 in UTC (15:59:59 and 16:00:00).
    utc = made["acme:report.daily:2026-12-04@utc"]["report"]
    assert utc["total"]["orders"] == 2 and utc["total"]["revenue"] == {"CNY": "300.00"}
    assert utc["timezone"] == "UTC" and cn["timezone"] == "Asia/Shanghai"


def test_nothing_before_at_then_yesterday_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    config = settings({"type": "daily", "at": "09:30", "channels": ["cn"]})
    first = open_store(url)
    # 09:00 < 09:30: Dec 5's report is not due; the latest due one is Dec 4's.
    [due] = due_reports(config, NOW)
    assert due.period.label == "2026-12-04"
    first.close()
    at = datetime(2026, 12, 6, 9, 30, tzinfo=SH).timestamp()
    for moment in (at - 1, at, at + 60, at + 3600):
        again = open_store(url)  # each a new process: `pollerd once` from a timer
        send_reports(again, config, moment)
        again.close()
    final = open_store(url)
    assert sorted(reports(final)) == [
        "acme:report.daily:2026-12-04@cn",  # the one due at 09:29:59
        "acme:report.daily:2026-12-05@cn",  # from 09:30 on, once
    ]
    assert deliveries(final) == [
        ("acme:report.daily:2026-12-04@cn", "cn"),
        ("acme:report.daily:2026-12-05@cn", "cn"),
    ]


def test_only_the_latest_due_period_after_days_down(store: Store) -> None:
    config = settings({"type": "daily", "channels": ["cn"]}, {"type": "weekly", "channels": ["cn"]})
    send_reports(store, config, NOW - 4 * 86400)  # Wednesday Dec 2, then down until Sunday
    send_reports(store, config, NOW)
    assert sorted(reports(store)) == [
        "acme:report.daily:2026-12-01@cn",
        "acme:report.daily:2026-12-05@cn",  # not Dec 2, 3 or 4
        "acme:report.weekly:2026-11-23@cn",  # the week before Monday Nov 30: still the latest
    ]


@pytest.mark.parametrize(
    ("day", "now", "start"),
    [
        (None, datetime(2026, 11, 30, 9, 0), "2026-11-23"),  # Monday 09:00: last week
        (None, datetime(2026, 11, 30, 8, 59), "2026-11-16"),  # a minute early: the one before
        ("wednesday", datetime(2026, 12, 1, 12, 0), "2026-11-16"),  # Tuesday: not yet
        ("wednesday", datetime(2026, 12, 2, 9, 0), "2026-11-23"),
        ("sunday", datetime(2026, 12, 5, 9, 0), "2026-11-16"),
        ("sunday", datetime(2026, 12, 6, 9, 0), "2026-11-23"),  # Mon 23 → Mon 30, sent Sun 6
    ],
)
def test_weekly_covers_monday_to_monday(day: str | None, now: datetime, start: str) -> None:
    config = ReportConfig(type="weekly", channels=["cn"], day=day)
    period = latest_period(config, "Asia/Shanghai", now.replace(tzinfo=SH).timestamp())
    assert period.label == start
    assert period.start.weekday() == 0 and period.end - period.start == timedelta(days=7)
    assert period.due.date() >= period.end.date()


# figures ------------------------------------------------------------------------------------


def test_revenue_is_exact_per_currency_and_skips_cancelled(store: Store) -> None:
    day = datetime(2026, 12, 5, 12, 0, tzinfo=SH)
    for i, (total, currency) in enumerate(
        [("0.10", "USD"), ("0.20", "USD"), ("1288.00", "CNY"), ("0.01", "CNY"), ("9.99", "EUR")]
    ):
        order(store, f"o{i}", day + timedelta(minutes=i), total, currency)
    order(store, "gone", day, "5000.00", "CNY", cancelled=True)
    happened(store, "order.paid", "o0", day)
    happened(store, "order.cancelled", "gone", day, reason="customer")
    happened(store, "order.partially_refunded", "o2", day)
    happened(store, "order.refunded", "o3", day)
    happened(store, "order.paid", "o1", day - timedelta(days=1))  # the day before: not counted
    send_reports(store, settings({"type": "daily", "channels": ["cn"]}), NOW)
    [made] = reports(store).values()
    total = made["report"]["total"]
    assert total["revenue"] == {"CNY": "1288.01", "EUR": "9.99", "USD": "0.30"}  # not 0.30000004
    assert (total["orders"], total["paid"], total["cancelled"], total["refunded"]) == (6, 1, 1, 2)


def test_daily_counts_alerts_and_lists_open_disputes_soonest_first(store: Store) -> None:
    day = datetime(2026, 12, 5, 12, 0, tzinfo=SH)
    for kind, oid in [("alert.high_value", "1"), ("alert.high_value", "2"),
                      ("dispute.deadline", "3"), ("alert.store_failing", "-@1")]:  # fmt: skip
        event = Event(kind, "acme", "woocommerce", oid, day, day, False, {"id": oid},
                      alert_id=f"acme:{kind}:{oid}")  # fmt: skip
        store.commit_page("acme", [], [(event, [])])

    def dispute(did: str, due: datetime | None, awaiting: bool = True) -> DisputeFact:
        return DisputeFact(did, "9", "NEEDS_RESPONSE", awaiting, Decimal("50"), "USD",
                           "fraudulent", due)  # fmt: skip

    store.commit_page("acme", [], [], disputes=[
        dispute("late", day + timedelta(days=9)), dispute("none", None),
        dispute("soon", day + timedelta(days=2)), dispute("done", day, awaiting=False),
    ])  # fmt: skip
    send_reports(store, settings({"type": "daily", "channels": ["cn"]}), NOW)
    [made] = reports(store).values()
    figures = made["report"]
    assert figures["total"]["alerts"] == {
        "alert.high_value": 2, "alert.store_failing": 1, "dispute.deadline": 1,
    }  # fmt: skip
    assert [d["dispute"] for d in figures["disputes"]] == ["soon", "late", "none"]
    assert figures["open_disputes"] == 3
    text = templates_for(None).render(made, flavour="text", locale="zh-CN", timezone="UTC")
    assert "订单：0 笔" in text.body and "待处理争议：3 起" in text.body
    assert "大额订单 2 条" in text.body and text.body.count("举证截止 ") == 2


def test_several_stores_get_a_line_each_and_the_star_id(store: Store) -> None:
    day = datetime(2026, 12, 5, 12, 0, tzinfo=SH)
    order(store, "1", day, "10.00", "USD", shop="acme")
    order(store, "2", day, "20.00", "USD", shop="tea")
    config = settings({"type": "daily", "channels": ["utc"], "at": "00:00"},
                      stores=("acme", "tea"))  # fmt: skip
    send_reports(store, config, NOW)
    [(key, made)] = reports(store).items()
    assert key == "*:report.daily:2026-12-05@utc"
    assert [s["store"] for s in made["report"]["stores"]] == ["acme", "tea"]
    assert made["report"]["total"]["revenue"] == {"USD": "30.00"}
    body = templates_for(None).render(made, flavour="text", locale="en", timezone="UTC").body
    assert "acme: 1 orders · $10.00" in body and "tea: 1 orders · $20.00" in body
    assert not body.startswith("[*]")
    assert Event.from_json(made) == Event.from_json(json.loads(json.dumps(made)))
    assert Event.from_json(made).id == key and Event.from_json(made).to_json() == made


def test_weekly_win_rate_and_top_reasons(store: Store) -> None:
    monday = datetime(2026, 11, 23, 0, 0, tzinfo=SH)  # the week Nov 23 → Nov 30
    reasons = ["customer"] * 3 + ["inventory"] * 2 + ["fraud", "declined", "staff", "other", None]
    for i, reason in enumerate(reasons):
        order(store, f"c{i}", monday + timedelta(hours=i), cancelled=True)
        happened(store, "order.cancelled", f"c{i}", monday + timedelta(hours=i), reason=reason)
    happened(store, "order.cancelled", "old", monday - timedelta(seconds=1), reason="fraud")
    for i in range(10):
        order(store, f"k{i}", monday + timedelta(days=1, hours=i))
    for i in range(20):  # the week before: 20 orders, 1 cancelled (5 %)
        order(store, f"p{i}", monday - timedelta(days=3, hours=i), cancelled=i == 0)

    def dispute(did: str, status: str, opened: datetime, closed: datetime | None) -> DisputeFact:
        return DisputeFact(did, did, status, False, Decimal(1), "USD", None, None,
                           opened_at=opened, closed_at=closed)  # fmt: skip

    week = monday + timedelta(days=2)
    store.commit_page("acme", [], [], disputes=[
        dispute("w1", "WON", monday - timedelta(days=40), week),
        dispute("w2", "won", week, week),
        dispute("l1", "LOST", week, week),
        dispute("a1", "ACCEPTED", monday - timedelta(days=9), monday - timedelta(days=1)),
        dispute("o1", "UNDER_REVIEW", week, None),
    ])  # fmt: skip
    send_reports(store, settings({"type": "weekly", "channels": ["cn"]}), NOW)
    [made] = reports(store).values()
    total = made["report"]["total"]
    assert made["id"] == "acme:report.weekly:2026-11-23@cn"
    assert (total["orders"], total["cancelled"], total["rate"]) == (20, 10, 0.5)
    assert total["mean"] == 0.05
    assert (total["opened"], total["won"], total["lost"], total["win_rate"]) == (3, 2, 1, 0.6667)
    assert total["reasons"] == [["customer", 3], ["inventory", 2], ["", 1], ["declined", 1],
                                ["fraud", 1]]  # fmt: skip
    title = templates_for(None).render(made, flavour="text", locale="en", timezone="UTC").title
    assert "cancellation rate 50 % (usual 5 %)" in title and "win rate 66.7 %" in title


def test_weekly_win_rate_is_na_without_decided_chargebacks(store: Store) -> None:
    send_reports(store, settings({"type": "weekly", "channels": ["utc", "cn"]}), NOW)
    made = reports(store)
    en = templates_for(None).render(made["acme:report.weekly:2026-11-23@utc"], flavour="text",
                                    locale="en", timezone="UTC")  # fmt: skip
    zh = templates_for(None).render(made["acme:report.weekly:2026-11-23@cn"], flavour="wecom",
                                    locale="zh-CN", timezone="Asia/Shanghai")  # fmt: skip
    assert made["acme:report.weekly:2026-11-23@utc"]["report"]["total"]["win_rate"] is None
    assert "win rate n/a" in en.title and "拒付胜诉率 无" in zh.title


def test_dispute_dates_are_written_and_closed_at_stays(store: Store) -> None:
    opened = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)

    def seen(status: str, finalized: date | None = None) -> Dispute:
        return Dispute("d1", "1", "#1", status, "CHARGEBACK", "50.00", "USD", "FRAUDULENT",
                       opened, None, finalized)  # fmt: skip

    def dates() -> tuple[float | None, float | None]:
        with store.engine.connect() as conn:
            row = conn.exec_driver_sql("select opened_at, closed_at from dispute_fact").one()
        return row[0], row[1]

    store.commit_page("acme", [], [], disputes=[dispute_fact(seen("NEEDS_RESPONSE"))])
    assert dates() == (opened.timestamp(), None)
    store.commit_page("acme", [], [], disputes=[dispute_fact(seen("WON"))])  # no date given
    first = dates()[1]
    assert first is not None and abs(first - datetime.now(UTC).timestamp()) < 60
    store.commit_page("acme", [], [], disputes=[dispute_fact(seen("WON"))])
    assert dates()[1] == first  # seen won again: still the first sight
    other = "d2"
    fact = dispute_fact(seen("LOST", date(2026, 11, 28)))
    store.commit_page(
        "acme", [], [], disputes=[DisputeFact(**{**fact.__dict__, "dispute_id": other})]
    )
    with store.engine.connect() as conn:
        closed = conn.exec_driver_sql("select closed_at from dispute_fact where dispute_id='d2'")
        assert closed.scalar() == datetime(2026, 11, 28, tzinfo=UTC).timestamp()


def test_no_reports_no_work(store: Store) -> None:
    assert send_reports(store, settings(), NOW) == 0
    assert reports(store) == {} and due_reports(settings(), NOW) == []


def test_the_report_id_names_store_type_period_and_channel() -> None:
    config = ReportConfig(type="daily", channels=["cn"])
    period = latest_period(config, "Asia/Shanghai", NOW)
    due = DueReport(config, "cn", "Asia/Shanghai", period, ("acme",))
    assert due.id == "acme:report.daily:2026-12-05@cn"
    assert DueReport(config, "cn", "UTC", period, ("a", "b")).id.startswith("*:report.daily:")


# config -------------------------------------------------------------------------------------


def write(tmp_path: Path, reports: str) -> Path:
    path = tmp_path / "pollerd.toml"
    path.write_text(
        """
[[stores]]
name = "acme"
platform = "woocommerce"
url = "https://shop.example.com"
consumer_key = "env:WC_KEY"
consumer_secret = "env:WC_SECRET"

[[channels]]
name = "ops"
type = "console"

[[channels]]
name = "boss"
type = "console"
"""
        + reports,
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    ("tables", "key", "words"),
    [
        ('type = "daily"\nchannels = ["nope"]', "reports[0].channels[0]", "defined: ops, boss"),
        ('type = "daily"', "reports[0].channels", "missing"),
        ('type = "daily"\nchannels = []', "reports[0].channels", "at least 1"),
        ('type = "monthly"\nchannels = ["ops"]', "reports[0].type", '"daily" or "weekly"'),
        ('type = "daily"\nat = "9:00"\nchannels = ["ops"]', "reports[0].at", "HH:MM"),
        ('type = "daily"\nat = "24:00"\nchannels = ["ops"]', "reports[0].at", "HH:MM"),
        ('type = "weekly"\nday = "funday"\nchannels = ["ops"]', "reports[0].day", "weekday"),
        ('type = "daily"\nday = "monday"\nchannels = ["ops"]', "reports[0].day", "only for weekly"),
        (
            'type = "daily"\nchannels = ["ops"]\nstores = ["shop-*"]',
            "reports[0].stores[0]",
            "matches no store",
        ),
        ('type = "daily"\nchannels = ["ops"]\nwhen = "09:00"', "reports[0].when", "unknown key"),
        (
            'type = "daily"\nchannels = ["ops", "boss"]\n[[reports]]\ntype = "weekly"\n'
            'channels = ["ops"]\n[[reports]]\ntype = "daily"\nchannels = ["boss"]',
            "reports[2].channels[0]",
            "already gets a daily report (reports[0])",
        ),
    ],
)
def test_config_errors_name_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tables: str, key: str, words: str
) -> None:
    monkeypatch.setenv("WC_KEY", "ck_x")
    monkeypatch.setenv("WC_SECRET", "cs_x")
    with pytest.raises(ConfigErrors) as caught:
        load(write(tmp_path, "[[reports]]\n" + tables + "\n"))
    found = {p.field: str(p) for p in caught.value.problems}
    assert key in found, found
    assert words in found[key]


def test_a_good_config_loads_with_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WC_KEY", "ck_x")
    monkeypatch.setenv("WC_SECRET", "cs_x")
    tables = '[[reports]]\ntype = "weekly"\nchannels = ["ops", "boss"]\n'
    tables += '[[reports]]\ntype = "daily"\nchannels = ["ops"]\n'
    settings = load(write(tmp_path, tables))
    weekly, daily = settings.reports
    assert (weekly.at, weekly.weekday, weekly.stores, daily.event) == (
        "09:00",
        0,
        ["*"],
        "report.daily",
    )


def test_example_report_blocks_validate() -> None:
    """The commented [[reports]] blocks of config.example.toml, uncommented, are valid tables
    with the documented defaults."""
    text = (Path(__file__).parents[2] / "config.example.toml").read_text(encoding="utf-8")
    section = text[text.index("# [[reports]]") :]
    entry = re.compile(r"^# (\[\[reports\]\]|\w+ = .*)$")
    lines = [m.group(1) for m in map(entry.match, section.splitlines()) if m]
    found, problems = check_reports(tomllib.loads("\n".join(lines))["reports"])
    assert problems == [] and found is not None
    assert [(r.type, r.at, r.weekday) for _, r in found] == [("daily", "09:00", 0),
                                                            ("weekly", "09:00", 0)]  # fmt: skip
