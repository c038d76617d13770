"""The seller alert rules' edges (issue 14), each on a real database through the store's
facts: exactly at a threshold and a cent under, another currency, the unpaid timer across a
restart, a burst spanning the window edge, a rate crossing up, down and up again, a dispute
closed before its reminder. Every alert is raised through `raise_alerts` and must not come back
on the next evaluation (once per subject)."""

from __future__ import annotations

import ast
import re
import time
import tomllib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from pollerd.alerts import evaluate, judge, raise_alerts
from pollerd.alerts.burst import bursts
from pollerd.alerts.facts import blind, blind_key, dispute_fact, normal_email, normal_phone
from pollerd.config import RouteConfig
from pollerd.config.alerts import (
    CancellationRateAlert,
    DisputeDeadlineAlert,
    HighValueAlert,
    OrderBurstAlert,
    UnpaidTimeoutAlert,
    check_alerts,
)
from pollerd.crypto import generate
from pollerd.model import Dispute, normal_ip
from pollerd.store import OrderFact, Store, open_store
from pollerd.store import facts as facts_module

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ROUTES = [RouteConfig(events=["alert.*", "dispute.*"], channels=["ops"])]
KEY = b"k" * 32


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(f"sqlite:///{tmp_path / 'rules.db'}")


def put(store: Store, *facts: OrderFact) -> None:
    store.commit_page("acme", [], [], facts=list(facts))


def fact(oid: str, at: datetime, total: str = "10.00", currency: str = "USD", **kw: Any) -> Any:
    return OrderFact(oid, at, Decimal(total), currency, **kw)


def run(store: Store, configs: list[Any], now: datetime) -> list[Any]:
    """One pass: evaluate and record, as the sync will."""
    found = evaluate(store, configs, "acme", "woocommerce", now.timestamp())
    raise_alerts(store, found, ROUTES, now=now.timestamp())
    return found


def subjects(alerts: list[Any]) -> list[str]:
    return sorted(a.subject for a in alerts)


# high value ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "currency", "fires"),
    [
        ("5000.00", "CNY", True),  # exactly the threshold fires
        ("4999.99", "CNY", False),  # one cent under does not
        ("700.00", "USD", True),  # its own table entry
        ("699.99", "USD", False),
        ("704.23", "EUR", False),  # EUR: no threshold, no rate: never
    ],
)
def test_high_value_edges(store: Store, total: str, currency: str, fires: bool) -> None:
    rule = HighValueAlert(thresholds={"CNY": Decimal(5000), "USD": Decimal(700)})
    put(store, fact("1", T0, total, currency))
    assert subjects(run(store, [rule], T0)) == (["1"] if fires else [])
    assert run(store, [rule], T0 + timedelta(hours=1)) == []  # once per order


def test_high_value_converts_with_static_rates(store: Store) -> None:
    rule = HighValueAlert(
        threshold=Decimal(5000), currency="CNY", rates={"USD": Decimal("7.1")}
    )  # 1 USD = 7.1 CNY: 704.23 USD = 5000.03 CNY
    put(store, fact("1", T0, "704.23", "USD"), fact("2", T0, "704.22", "USD"))
    put(store, fact("3", T0, "5000", "CNY"), fact("4", T0, "99999", "JPY"))
    [alert] = [a for a in run(store, [rule], T0) if a.subject == "1"]
    assert alert.id == "acme:alert.high_value:1"
    assert subjects(run(store, [rule], T0)) == []
    assert store.recorded(["acme:alert.high_value:3"]) == {"acme:alert.high_value:3"}
    assert not store.recorded(["acme:alert.high_value:2", "acme:alert.high_value:4"])
    assert alert.event(T0.timestamp()).to_json()["alert"]["threshold"].startswith("704.2")


# unpaid too long ----------------------------------------------------------------------------


def test_unpaid_timer_crosses_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    rule = UnpaidTimeoutAlert()  # 30 minutes
    first = open_store(url)
    put(first, fact("1", T0, unpaid=True), fact("2", T0, unpaid=True), fact("3", T0))
    assert run(first, [rule], T0 + timedelta(minutes=29)) == []
    put(first, fact("2", T0, unpaid=False))  # paid first: nothing
    first.close()  # the process stops; nothing of the timer lives in memory
    again = open_store(url)
    assert subjects(run(again, [rule], T0 + timedelta(minutes=30))) == ["1"]
    assert run(again, [rule], T0 + timedelta(hours=5)) == []


# bursts -------------------------------------------------------------------------------------


def test_burst_cut_at_the_window_edge() -> None:
    h = 3600.0
    orders = [("1", 0.0), ("2", 10 * h), ("3", 24 * h), ("4", 24 * h + 1), ("5", 30 * h)]
    # 1, 2, 3 are within 24 h of 1 (the edge included); 4 starts a new span with only 5.
    assert bursts(orders, 24 * h, 3) == [orders[:3]]
    assert bursts(orders, 24 * h, 4) == [orders[1:5]]


def test_burst_fires_once_and_later_orders_join_it(store: Store) -> None:
    rule = OrderBurstAlert(count=3, window=timedelta(hours=24))
    ip = {"ip": blind(KEY, "ip", "203.0.113.9")}
    other = {"email": blind(KEY, "email", "x@example.test")}
    put(store, fact("1", T0, digests=ip), fact("2", T0 + timedelta(hours=1), digests=ip))
    assert run(store, [rule], T0 + timedelta(hours=1)) == []
    put(store, fact("3", T0 + timedelta(hours=23), digests=ip), fact("9", T0, digests=other))
    [alert] = run(store, [rule], T0 + timedelta(hours=23))
    assert alert.id == "acme:alert.order_burst:1" and alert.figures["orders"] == ["1", "2", "3"]
    put(store, fact("4", T0 + timedelta(hours=23, minutes=30), digests=ip))  # joins the burst
    assert run(store, [rule], T0 + timedelta(hours=24)) == []
    later = [fact(str(n), T0 + timedelta(hours=30 + n), digests=ip) for n in (5, 6, 7)]
    put(store, *later)  # a new burst, after the window of the first
    assert subjects(run(store, [rule], T0 + timedelta(hours=40))) == ["5"]


def test_blind_index_normalises_and_keys() -> None:
    assert normal_email(" Ada@Example.TEST ") == "ada@example.test"
    assert normal_phone("+1 (555) 010-0") == normal_phone("15550100") == "15550100"
    assert normal_ip("::ffff:203.0.113.9") == "203.0.113.9" and normal_ip("unknown") is None
    assert blind(KEY, "ip", "1.2.3.4") != blind(b"j" * 32, "ip", "1.2.3.4")
    assert blind(KEY, "email", "a@b.c") != blind(KEY, "phone", "a@b.c")


def test_blind_key_from_pii_key_or_the_database(store: Store) -> None:
    ring = generate(1)
    assert blind_key(store, ring) == blind_key(store, ring) != blind_key(store, None)
    assert blind_key(store, None) == blind_key(store, None)  # kept in meta
    assert blind_key(store, generate(2)) != blind_key(store, ring)  # rotation: new digests


# cancellation rate --------------------------------------------------------------------------


def test_rate_crosses_up_then_down_then_up(store: Store) -> None:
    rule = CancellationRateAlert(
        window=timedelta(days=7), min_orders=10, max_rate=0.9, max_rate_window=timedelta(days=28)
    )
    n = 0

    def week(start: datetime, orders: int, cancelled: int) -> None:
        nonlocal n
        for i in range(orders):
            n += 1
            at = start + timedelta(hours=i + 1)
            put(store, fact(str(n), at, cancelled=i < cancelled))

    week(T0, 20, 2)  # 10 %
    week(T0 + timedelta(days=7), 20, 2)
    assert run(store, [rule], T0 + timedelta(days=14)) == []
    week(T0 + timedelta(days=14), 20, 6)  # 30 % against a 10 % mean: up
    [up] = run(store, [rule], T0 + timedelta(days=21))
    assert up.figures["rate"] == 0.3 and up.figures["mean"] == 0.1
    assert run(store, [rule], T0 + timedelta(days=21, hours=1)) == []  # still above: once
    week(T0 + timedelta(days=21), 20, 1)  # down: re-armed
    assert run(store, [rule], T0 + timedelta(days=28)) == []
    week(T0 + timedelta(days=28), 20, 12)  # up again: a second alert
    [again] = run(store, [rule], T0 + timedelta(days=35))
    assert again.id != up.id


def test_rate_needs_minimum_volume(store: Store) -> None:
    rule = CancellationRateAlert(min_orders=20)
    put(store, fact("1", T0), fact("2", T0, cancelled=True), fact("3", T0, cancelled=True))
    assert run(store, [rule], T0 + timedelta(days=1)) == []


# dispute deadlines --------------------------------------------------------------------------


def dispute(status: str, due: datetime, amount: str = "80.00", reason: str = "fraudulent") -> Any:
    return dispute_fact(
        Dispute("d1", "1", "#1001", status, "CHARGEBACK", amount, "USD", reason, T0, due)
    )


def test_dispute_reminders_once_each_and_none_once_closed(store: Store) -> None:
    rule = DisputeDeadlineAlert()
    due = T0 + timedelta(hours=100)
    store.commit_page("acme", [], [], disputes=[dispute("NEEDS_RESPONSE", due)])
    assert run(store, [rule], T0) == []
    assert subjects(run(store, [rule], due - timedelta(hours=72))) == ["d1:72h"]
    assert run(store, [rule], due - timedelta(hours=30)) == []
    assert subjects(run(store, [rule], due - timedelta(hours=20))) == ["d1:24h"]
    store.commit_page("acme", [], [], disputes=[dispute("UNDER_REVIEW", due)])  # evidence sent
    assert run(store, [rule], due - timedelta(hours=3)) == []


def test_dispute_first_seen_late_gets_only_the_nearest_reminder(store: Store) -> None:
    due = T0 + timedelta(hours=3)
    store.commit_page("acme", [], [], disputes=[dispute("NEEDS_RESPONSE", due)])
    assert subjects(run(store, [DisputeDeadlineAlert()], T0)) == ["d1:4h"]
    assert run(store, [DisputeDeadlineAlert()], due + timedelta(hours=1)) == []  # past due


@pytest.mark.parametrize(
    ("amount", "reason", "fires"),
    [("80.00", "fraudulent", True), ("49.99", "fraudulent", False), ("80", "general", False)],
)
def test_dispute_filters(store: Store, amount: str, reason: str, fires: bool) -> None:
    rule = DisputeDeadlineAlert(min_amount=Decimal(50), reasons=["fraudulent"])
    due = T0 + timedelta(hours=2)
    store.commit_page("acme", [], [], disputes=[dispute("NEEDS_RESPONSE", due, amount, reason)])
    assert bool(run(store, [rule], T0)) is fires


# on PostgreSQL too ----------------------------------------------------------------------------


def test_rules_on_each_backend(db_url: str) -> None:
    store = open_store(db_url)
    ip = {"ip": blind(KEY, "ip", "203.0.113.9")}
    put(store, *[fact(str(n), T0 + timedelta(minutes=n), "900", "USD", unpaid=True,
                      digests=ip) for n in range(1, 4)])  # fmt: skip
    configs = [
        HighValueAlert(thresholds={"USD": Decimal(700)}),
        UnpaidTimeoutAlert(),
        OrderBurstAlert(),
        CancellationRateAlert(),
    ]
    found = run(store, configs, T0 + timedelta(hours=1))
    assert sorted(a.id for a in found) == [
        "acme:alert.high_value:1",
        "acme:alert.high_value:2",
        "acme:alert.high_value:3",
        "acme:alert.order_burst:1",
        "acme:alert.unpaid_timeout:1",
        "acme:alert.unpaid_timeout:2",
        "acme:alert.unpaid_timeout:3",
    ]
    assert run(store, configs, T0 + timedelta(hours=2)) == []
    # settled passes: the written-since check, then the queries of what changed (commits are
    # stamped with the real clock, after T0)
    assert judge(store, configs, ROUTES, "acme", "woocommerce", T0.timestamp() + 3 * 3600) == []
    put(store, fact("4", T0 + timedelta(hours=3), "950", "USD", unpaid=True, digests=ip))
    found = judge(store, configs, ROUTES, "acme", "woocommerce", T0.timestamp() + 4 * 3600)
    assert sorted(a.id for a in found) == [
        "acme:alert.high_value:4",
        "acme:alert.unpaid_timeout:4",
    ]  # order 4 joins the burst of 1 without a second alert
    store.close()


# config -------------------------------------------------------------------------------------


def test_alert_tables_errors_name_the_key() -> None:
    _, problems = check_alerts([{"type": "big_orders"}, {"type": "high_value", "threshold": 5}])
    assert [str(p) for p in problems] == [
        "config: alerts[0].type: no alert rule named 'big_orders' (known: high_value, "
        "unpaid_timeout, order_burst, cancellation_rate, dispute_deadline)",
        'config: alerts[1].threshold: has no currency (add currency = "CNY", the currency '
        "the threshold is in)",
    ]


def test_example_documents_every_alert_key() -> None:
    text = (Path(__file__).parents[2] / "config.example.toml").read_text(encoding="utf-8")
    for model in (HighValueAlert, UnpaidTimeoutAlert, OrderBurstAlert, CancellationRateAlert,
                  DisputeDeadlineAlert):  # fmt: skip
        for key in model.model_fields:
            assert f"# {key} = " in text, (model.__name__, key)


# settled passes -------------------------------------------------------------------------------


def test_a_settled_pass_reads_only_what_changed_and_misses_nothing(store: Store) -> None:
    """`judge` settles each pass; the next reads only orders written or come due since, on
    the real clock (commits are stamped with it): a late-seen old order, an order that comes
    due, an edited total."""
    configs = [UnpaidTimeoutAlert(), HighValueAlert(thresholds={"USD": Decimal(700)})]
    now = time.time()
    at = datetime.fromtimestamp(now, UTC)
    put(store, fact("1", at - timedelta(minutes=40), unpaid=True))
    put(store, fact("2", at - timedelta(minutes=10), unpaid=True))
    first = judge(store, configs, ROUTES, "acme", "woocommerce", now)
    assert subjects(first) == ["1"]
    assert store.meta("rule:judged:acme") == repr(now)
    put(store, fact("3", at - timedelta(hours=5), unpaid=True))  # seen late, long due
    put(store, fact("4", at, "699.99"))
    later = time.time()
    assert subjects(judge(store, configs, ROUTES, "acme", "woocommerce", later)) == ["3"]
    put(store, fact("4", at, "700.00"))  # edited up to the threshold
    due = later + 25 * 60  # order 2 comes due
    found = judge(store, configs, ROUTES, "acme", "woocommerce", max(due, time.time()))
    assert sorted(a.id for a in found) == ["acme:alert.high_value:4", "acme:alert.unpaid_timeout:2"]
    assert judge(store, configs, ROUTES, "acme", "woocommerce", due + 60) == []


def test_example_alert_blocks_validate() -> None:
    """The commented [[alerts]] blocks of config.example.toml, uncommented, are valid tables."""
    text = (Path(__file__).parents[2] / "config.example.toml").read_text(encoding="utf-8")
    section = text[text.index("# [[alerts]]") : text.index("# [[reports]]")]
    entry = re.compile(r"^# (\[\[alerts\]\]|\w+ = .*)$")
    lines = [m.group(1) for m in map(entry.match, section.splitlines()) if m]
    tables = tomllib.loads("\n".join(lines))["alerts"]
    models, problems = check_alerts(tables)
    assert problems == [] and [m.type for m in models or []] == [
        "high_value",
        "unpaid_timeout",
        "order_burst",
        "cancellation_rate",
        "dispute_deadline",
    ]


def test_the_rules_name_no_platform() -> None:
    """The rules, their facts and their config read the platform's verdicts (`unpaid`,
    `cancelled`), never its name (the house rule of DESIGN §3)."""
    root = Path(__file__).parents[2] / "pollerd"
    files = [*sorted((root / "alerts").glob("*.py")), root / "store" / "facts.py"]
    files.append(root / "config" / "alerts.py")
    word = re.compile(r"woocommerce|shopify|\bwoo_", re.IGNORECASE)
    hits = []
    for file in files:
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            name = getattr(node, "id", None) or getattr(node, "attr", None)
            if isinstance(name, str) and word.search(name):
                hits.append(f"{file.name}:{node.lineno}: {name}")  # type: ignore[attr-defined]
    assert hits == []


# order numbers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bound", [500, 1])  # 1: more digests than a bound list takes
def test_burst_lists_numbers_and_keeps_ids(
    store: Store, bound: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst names its orders by number; an order whose fact has no number (written before
    migration 5) by its id; `order_ids` keeps the ids for webhooks. Found the same with few
    digests written since (a bound list) as with many (one statement)."""
    monkeypatch.setattr(facts_module, "BOUND_DIGESTS", bound)
    ip = {"ip": blind(KEY, "ip", "203.0.113.9")}
    put(
        store,
        fact("901", T0, digests=ip),  # stored before numbers were
        fact("902", T0 + timedelta(minutes=1), digests=ip, number="#1002"),
        fact("903", T0 + timedelta(minutes=2), digests=ip, number="#1003"),
        fact("904", T0, digests={"email": blind(KEY, "email", "x@example.test")}),
    )
    [alert] = run(store, [OrderBurstAlert()], T0 + timedelta(minutes=3))
    assert alert.figures["orders"] == ["901", "#1002", "#1003"]
    assert alert.figures["order_ids"] == ["901", "902", "903"]
    assert alert.subject == "901" and "901, #1002, #1003" in alert.reason


# a quiet pass -----------------------------------------------------------------------------------


def test_a_quiet_pass_skips_and_a_change_after_its_check_is_judged(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass that finds nothing written since the last settled one skips the high value and
    burst queries and settles nothing; a page committed right after its check (before the
    pass ends) is judged by the next pass: the judged mark never passes a write unread."""
    configs = [HighValueAlert(thresholds={"USD": Decimal(700)}), OrderBurstAlert(count=2)]
    ip = {"ip": blind(KEY, "ip", "203.0.113.9")}
    put(store, fact("1", datetime.fromtimestamp(time.time(), UTC), "10.00", digests=ip))
    first = time.time()
    assert judge(store, configs, ROUTES, "acme", "woocommerce", first) == []
    assert store.meta("rule:judged:acme") == repr(first)
    checked = store.written_since
    late: list[bool] = []

    def check_then_write(name: str, since: float) -> bool:
        answer = checked(name, since)
        if not late:  # the page a concurrent pass commits just after the check
            at = datetime.fromtimestamp(time.time(), UTC)
            put(store, fact("2", at, "900.00", digests=ip))
            late.append(answer)
        return answer

    monkeypatch.setattr(store, "written_since", check_then_write)
    assert judge(store, configs, ROUTES, "acme", "woocommerce", time.time()) == []
    assert late == [False]  # the check saw nothing: the rules were skipped
    assert store.meta("rule:judged:acme") == repr(first)  # and nothing was settled
    found = judge(store, configs, ROUTES, "acme", "woocommerce", time.time())
    assert sorted(a.id for a in found) == ["acme:alert.high_value:2", "acme:alert.order_burst:1"]
    assert judge(store, configs, ROUTES, "acme", "woocommerce", time.time()) == []


def test_unpaid_due_without_a_write_fires_once_unsettled(store: Store) -> None:
    """Time alone brings unpaid orders due: a pass with nothing written still reads them
    (and, settling nothing, never raises them twice)."""
    put(store, fact("1", T0, unpaid=True), fact("2", T0 + timedelta(minutes=20), unpaid=True))
    now = T0.timestamp() + 60
    assert judge(store, [UnpaidTimeoutAlert()], ROUTES, "acme", "woocommerce", now) == []
    later = [judge(store, [UnpaidTimeoutAlert()], ROUTES, "acme", "woocommerce", now + m * 600)
             for m in range(1, 7)]  # fmt: skip
    assert [subjects(found) for found in later] == [[], [], ["1"], [], ["2"], []]


def test_the_unpaid_query_uses_the_partial_index(store: Store) -> None:
    """The unpaid rule's steady query walks only open unpaid orders (`order_fact_unpaid`), and
    the changed-orders one only what was written (`order_fact_written`), however long the
    history: EXPLAIN QUERY PLAN of the statements a pass sends."""
    put(store, fact("1", T0, unpaid=True))
    judge(store, [UnpaidTimeoutAlert()], ROUTES, "acme", "woocommerce", T0.timestamp())
    sent: list[tuple[str, Any]] = []

    def grab(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if "order_fact.unpaid" in statement or "order_fact.unpaid IS 1" in statement:
            sent.append((statement, params))

    event.listen(store.engine, "before_cursor_execute", grab)
    try:
        put(store, fact("2", T0, unpaid=True))  # a write: the pass reads both arms
        judge(store, [UnpaidTimeoutAlert()], ROUTES, "acme", "woocommerce", time.time())
    finally:
        event.remove(store.engine, "before_cursor_execute", grab)
    [(statement, params)] = sent
    with store.engine.connect() as conn:
        plan = [r[-1] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)]
    assert any("USING INDEX order_fact_unpaid" in step for step in plan), plan
    assert any("USING INDEX order_fact_written" in step for step in plan), plan
    assert not any(step.startswith("SCAN order_fact") for step in plan), plan


def test_no_query_of_a_pass_walks_a_whole_table(store: Store) -> None:
    """Every SELECT a settled pass sends, quiet or after a write, is led by an index on what
    narrows it: EXPLAIN QUERY PLAN shows no SCAN of the facts or events, and no SEARCH on
    the store (and kind) alone, which walks the store's whole history (it grows; a pass must
    not grow with it)."""
    ip = {"ip": blind(KEY, "ip", "203.0.113.9")}
    history = [fact(str(n), T0 - timedelta(days=n), "800", "USD", digests=ip) for n in range(30)]
    put(store, *history)
    configs = [
        HighValueAlert(thresholds={"USD": Decimal(700)}),
        UnpaidTimeoutAlert(),
        OrderBurstAlert(),
        DisputeDeadlineAlert(),
    ]
    judge(store, configs, ROUTES, "acme", "woocommerce", time.time())
    sent: list[tuple[str, Any]] = []

    def grab(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().startswith("SELECT"):
            sent.append((statement, params))

    event.listen(store.engine, "before_cursor_execute", grab)
    try:
        judge(store, configs, ROUTES, "acme", "woocommerce", time.time())  # quiet
        at = datetime.fromtimestamp(time.time(), UTC)
        put(store, fact("new", at, "900", "USD", unpaid=True, digests=ip))
        judge(store, configs, ROUTES, "acme", "woocommerce", time.time())  # after a write
    finally:
        event.remove(store.engine, "before_cursor_execute", grab)
    tables = ("order_fact", "blind_index", "event", "dispute_fact", "meta")
    walks = []
    with store.engine.connect() as conn:
        for statement, params in sent:
            for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params):
                step = str(row[-1])
                if step.split()[:1] not in (["SCAN"], ["SEARCH"]) or step.split()[1] not in tables:
                    continue
                terms = re.findall(r"(\w+)[=<>]", step.partition("(")[2])
                if step.startswith("SCAN ") or not set(terms) - {"store", "kind"}:
                    walks.append((step, statement.split("FROM")[1][:80]))
    assert len(sent) > 10 and walks == []


def test_reads_of_a_pass_do_not_hold_the_write_lock(store: Store) -> None:
    """`reading` holds one connection for a pass's reads; pooled connections that wrote before
    must read with a plain BEGIN, or a page committed during the pass would wait out the busy
    timeout (the mark BEGIN IMMEDIATE is set with stays in the pooled connection)."""
    for n in range(3):  # every pooled connection has written once
        put(store, fact(str(n), T0))
    began: list[str] = []
    listen = event.listens_for(store.engine, "before_cursor_execute")

    @listen
    def grab(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("BEGIN"):
            began.append(statement)

    started = time.monotonic()
    with store.reading():
        assert store.meta("rule:judged:acme") is None
        put(store, fact("9", T0))  # another connection writes meanwhile
        assert store.written_since("acme", 0)
    assert time.monotonic() - started < 5
    assert began[0] == "BEGIN" and began.count("BEGIN IMMEDIATE") == 1
    event.remove(store.engine, "before_cursor_execute", grab)
