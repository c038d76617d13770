"""`ShopifyGraphQLSource` and `ShopifyClient` against a real `ShopSim` on loopback, and
`normalize_order` against Shopify's documented payloads.

The client's monotonic clock and sleep are fake (`FakeTime`) unless a test exercises the sim's
real leaky bucket, which refills in real time: those use a fast restore rate so the real waits
stay under two seconds. The only HTTP stand-ins are replays of real captured bodies (the
community THROTTLED answer) and a transport that raises a timeout (the sim's slow fault takes
35 s).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from loguru import logger

from pollerd.errors import PermanentSourceError, RetryableSourceError
from pollerd.sources.base import Listed
from pollerd.sources.shopify import ShopifyStore
from pollerd.sources.shopify import graphql as shopify_graphql
from pollerd.sources.shopify.client import (
    THROTTLE_MIN_WAIT,
    CostTooHigh,
    ShopifyAccessDenied,
    ShopifyClient,
)
from pollerd.sources.shopify.graphql import PageSize, ShopifyGraphQLSource
from pollerd.sources.shopify.normalize import (
    OrderPayloadError,
    listed,
    money,
    normalize_order,
)
from pollerd_sim import ShopSim
from tests.support.clocks import FakeTime
from tests.support.transports import RecordingTransport

TOKEN = "shpat_sim_token"
CLIENT_ID = "a1b2c3d4e5f6"
CLIENT_SECRET = "shpss_0123456789abcdef0123456789abcdef"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "shopify"
T = TypeVar("T")
EPOCH = datetime(2020, 1, 1, tzinfo=UTC)  # before every sim order


class Recorder(RecordingTransport):
    def graphql(self) -> list[dict[str, Any]]:
        return [
            json.loads(r.content) for r in self.requests if r.url.path.endswith("/graphql.json")
        ]


def cfg(sim: ShopSim, **kw: Any) -> ShopifyStore:
    values: dict[str, Any] = {
        "name": "acme",
        "platform": "shopify",
        "shop": "acme.myshopify.com",
        "access_token": TOKEN,
        "base_url": sim.url,
        "api_version": "2026-10",
        "timeout": timedelta(seconds=10),
        **kw,
    }
    return ShopifyStore(**values)


def run(
    config: ShopifyStore,
    body: Callable[[ShopifyGraphQLSource], Awaitable[T]],
    *,
    time: FakeTime | None = None,
    real_time: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
) -> T:
    """Run `body` with a fresh source in one event loop, closing what was opened."""
    clock = time or FakeTime(10_000.0)

    async def main() -> T:
        http = httpx.AsyncClient(transport=transport) if transport else None
        if real_time:
            source = ShopifyGraphQLSource(config, http=http)
        else:
            source = ShopifyGraphQLSource(config, http=http, clock=clock.clock, sleep=clock.sleep)
        try:
            return await body(source)
        finally:
            await source.aclose()
            if http is not None:
                await http.aclose()

    return asyncio.run(main())


async def walk(source: ShopifyGraphQLSource, after: datetime, *, created: bool = False) -> list:
    rows: list[Listed] = []
    page = None
    while True:
        if created:
            result = await source.list_created(after, page)
        else:
            result = await source.list_modified(after, page)
        rows.extend(result.rows)
        if result.next is None:
            return rows
        page = result.next


@pytest.fixture
def sim() -> Iterator[ShopSim]:
    with ShopSim() as server:
        yield server


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="WARNING", format="{message}")
    yield lines
    logger.remove(sink)


def docs_nodes(name: str) -> list[dict[str, Any]]:
    data = json.loads((FIXTURES / name).read_text())
    return [edge["node"] for edge in data["orders"]["edges"]]


# --- normalize: Shopify's documented payloads -----------------------------------------------------


def test_normalize_docs_example_orders() -> None:
    """Shopify's own example (no legacyResourceId, edges-style lineItems, "2000.0")."""
    nodes = docs_nodes("graphql_orders_details_docs.json")
    first = normalize_order(
        {**nodes[0], "updatedAt": "2024-01-02T03:04:05Z"}, store="acme", shop="acme.myshopify.com"
    )
    assert first.id == "158040885"  # the GID's numeric tail
    assert first.number == "#2000"
    assert first.platform == "shopify"
    assert (first.status, first.financial_status) == ("paid", "paid")
    assert first.fulfillment_status == "unfulfilled"
    assert (first.total, first.currency) == ("2000.00", "CAD")
    assert first.created_at == datetime(2024, 1, 1, tzinfo=UTC)
    assert first.updated_at == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert first.customer_email == "b***@example.com"
    assert first.refunded_total == Decimal("0")
    assert first.cancelled_at is None and first.cancel_reason is None
    assert first.line_items[0].name == "Draft - 151cm" and first.line_items[0].quantity == 10
    assert first.admin_url == "https://admin.shopify.com/store/acme/orders/158040885"
    ids = [
        normalize_order({**n, "updatedAt": "2024-01-02T00:00:00Z"}, store="a", shop="a").id
        for n in nodes
    ]
    assert ids == ["158040885", "199007853", "212949620", "294238686", "316002265"]


def test_normalize_refuses_a_node_without_updated_at_naming_the_order() -> None:
    node = docs_nodes("graphql_orders_details_docs.json")[0]
    with pytest.raises(OrderPayloadError, match=r"order 158040885: field updatedAt: missing"):
        normalize_order(node, store="acme", shop="acme.myshopify.com")


def test_listing_rows_from_the_docs_cluster_share_one_updated_at() -> None:
    nodes = docs_nodes("graphql_orders_updated_at_filter_docs.json")
    rows = [
        listed({**n, "displayFinancialStatus": "PAID", "cancelledAt": None}, store="a")
        for n in nodes
    ]
    assert len({r.id for r in rows}) == 10
    assert {r.updated_at for r in rows} == {datetime(2024, 1, 1, 12, 34, 43, tzinfo=UTC)}


@pytest.mark.parametrize(
    ("node", "field"),
    [
        ({"updatedAt": "2026-01-01T00:00:00Z"}, "legacyResourceId"),
        ({"legacyResourceId": "7", "updatedAt": "yesterday"}, "updatedAt"),
        ({"legacyResourceId": "7", "updatedAt": "2026-01-01T00:00:00Z"}, "displayFinancialStatus"),
    ],
)
def test_listing_row_breaking_the_contract_names_the_field(node: dict, field: str) -> None:
    with pytest.raises(OrderPayloadError, match=f"field {field}"):
        listed(node, store="acme")


@pytest.mark.parametrize(
    ("raw", "shown"),
    [("25.0", "25.00"), ("2000", "2000.00"), (19.5, "19.50"), ("0.125", "0.12"), (7, "7.00")],
)
def test_money_two_decimals(raw: object, shown: str) -> None:
    assert money(raw) == shown


@pytest.mark.parametrize("raw", ["", "abc", None, True, "NaN", [1]])
def test_money_refuses_what_is_not_an_amount(raw: object) -> None:
    with pytest.raises(ValueError, match="not an amount"):
        money(raw)


# --- normalize: orders as the simulator serves them -----------------------------------------------


def test_sim_orders_normalize_and_listing_status_matches(sim: ShopSim) -> None:
    authorized = sim.create_order(financial="AUTHORIZED", total="25.0", gateway="manual")
    paid = sim.create_order(
        financial="PAID", total="100.00", first_name="Grace", last_name="Hopper"
    )
    cancelled = sim.create_order(financial="PAID")
    sim.cancel(cancelled, reason="FRAUD")
    refunded = sim.create_order(financial="PAID", total="80.00")
    sim.refund(refunded, "30.00")
    test_order = sim.create_order(financial="PAID", test=True, gateway="bogus")
    ids = [str(i) for i in (authorized, paid, cancelled, refunded, test_order)]

    async def body(source: ShopifyGraphQLSource) -> tuple[list, list]:
        rows = await walk(source, EPOCH - timedelta(days=1))
        return rows, await source.fetch(ids)

    rows, orders = run(cfg(sim), body)
    by_id = {o.id: o for o in orders}
    assert sorted(by_id) == sorted(ids)
    assert {r.id: r.status for r in rows if r.id in by_id} == {o.id: o.status for o in orders}
    a, p, c, r, t = (by_id[i] for i in ids)
    assert (a.status, a.total, a.payment_method, a.test) == ("authorized", "25.00", "manual", False)
    assert (p.status, p.customer_name, p.customer_email) == (
        "paid",
        "Grace H.",
        "a***@example.test",
    )
    assert p.customer_phone == "155****0100"
    assert (c.status, c.financial_status, c.cancel_reason) == ("cancelled", "paid", "fraud")
    assert c.cancelled_at is not None
    assert (r.status, r.refunded_total) == ("partially_refunded", Decimal("30.00"))
    assert (t.test, t.payment_method_title) == (True, "Bogus Gateway (test)")
    for order in orders:  # the same bytes Shopify serves, normalised directly
        assert order == normalize_order(
            sim.order(int(order.id)), store="acme", shop="acme.myshopify.com"
        )
        assert order.number.startswith("#") and order.admin_url.endswith(f"/orders/{order.id}")


def test_fetch_skips_deleted_and_unknown_ids(sim: ShopSim) -> None:
    keep, gone = sim.create_order(), sim.create_order()
    sim.delete(gone)
    orders = run(cfg(sim), lambda s: s.fetch([str(keep), str(gone), "999999", str(keep)]))
    assert [o.id for o in orders] == [str(keep)]


# --- the wire -------------------------------------------------------------------------------------


def test_listing_sends_sort_key_and_quoted_dates(sim: ShopSim) -> None:
    sim.create_order()
    recorder = Recorder()
    after = datetime(2026, 11, 22, 9, 32, 36, 900_000, tzinfo=UTC)

    async def body(source: ShopifyGraphQLSource) -> None:
        await source.list_modified(after, None)
        await source.list_created(after, None)

    run(cfg(sim), body, transport=recorder)
    modified, created = recorder.graphql()
    assert "sortKey: UPDATED_AT" in modified["query"]
    assert modified["variables"]["query"] == "updated_at:>='2026-11-22T09:32:36Z'"
    assert "sortKey: CREATED_AT" in created["query"]
    assert created["variables"]["query"] == "created_at:>='2026-11-22T09:32:36Z'"
    request = recorder.requests[0]
    assert request.url.path == "/admin/api/2026-10/graphql.json"
    assert request.headers["X-Shopify-Access-Token"] == TOKEN
    assert 0 < modified["variables"]["first"] <= 250


def test_quoted_date_filter_really_narrows_the_window(sim: ShopSim) -> None:
    """Orders updated before `after` are not listed; those at or after it are (inclusive)."""
    old = [sim.create_order() for _ in range(3)]
    new = [sim.create_order() for _ in range(2)]
    cut = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
    sim.set_updated(old, cut - timedelta(seconds=1))
    sim.set_updated(new[:1], cut)
    sim.set_updated(new[1:], cut + timedelta(hours=1))
    rows = run(cfg(sim), lambda s: walk(s, cut))
    assert [r.id for r in rows] == [str(i) for i in new]


def test_thirty_orders_sharing_one_updated_at_across_pages_of_ten(sim: ShopSim) -> None:
    ids = [sim.create_order() for _ in range(30)]
    when = datetime(2026, 11, 22, 12, 34, 43, tzinfo=UTC)
    sim.set_updated(ids, when)

    async def body(source: ShopifyGraphQLSource) -> tuple[list, int]:
        source.page = PageSize(10, 10)
        rows = await walk(source, when)
        return rows, source.client.requests

    rows, requests = run(cfg(sim), body)
    assert [r.id for r in rows] == [str(i) for i in ids]  # each once, by (updatedAt, id)
    assert {r.updated_at for r in rows} == {when}
    assert requests == 3


def test_probe_returns_the_most_recently_updated_order(sim: ShopSim) -> None:
    a, b = sim.create_order(), sim.create_order()
    sim.set_updated([b], datetime(2026, 11, 22, tzinfo=UTC))
    sim.set_updated([a], datetime(2026, 11, 23, tzinfo=UTC))
    newest = run(cfg(sim), lambda s: s.probe())
    assert newest is not None and newest.id == str(a)
    assert sim.request_log[-1]["requested"] <= 5


def test_probe_on_an_empty_shop_is_none(sim: ShopSim) -> None:
    assert run(cfg(sim), lambda s: s.probe()) is None


def test_version_fall_forward_is_warned_once(sim: ShopSim, warnings: list[str]) -> None:
    sim.create_order()

    async def body(source: ShopifyGraphQLSource) -> str:
        await source.probe()
        await source.probe()
        return await source.check()

    text = run(cfg(sim, api_version="2024-01"), body)
    fell = [w for w in warnings if "fell forward" in w]
    assert len(fell) == 1
    assert "2024-01" in fell[0] and "2026-01" in fell[0]
    assert "pinned 2024-01" in text and "API 2026-01" in text


def test_check_describes_shop_version_scopes_and_the_60_day_horizon(sim: ShopSim) -> None:
    text = run(cfg(sim), lambda s: s.check())
    assert "acme.myshopify.com" in text and "API 2026-10" in text
    assert "read_orders" in text and "60 days" in text and "invisible" in text
    assert TOKEN not in text
    with ShopSim(scopes=("read_orders", "read_all_orders")) as wide:
        assert "all orders visible" in run(cfg(wide), lambda s: s.check())
    with (
        ShopSim(scopes=("read_products",)) as narrow,
        pytest.raises(PermanentSourceError, match="read_orders"),
    ):
        run(cfg(narrow), lambda s: s.check())


# --- budget and throttling ------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 429])
def test_throttled_waits_then_succeeds(status: int) -> None:
    with ShopSim(throttle_status=status) as sim:
        sim.create_order()
        sim.add_fault("throttled")
        clock = FakeTime(10_000.0)

        async def body(source: ShopifyGraphQLSource) -> tuple[Listed | None, int]:
            return await source.probe(), source.client.last_cost.throttled

        newest, throttled = run(cfg(sim), body, time=clock)
    assert newest is not None
    assert throttled == 1
    assert clock.sleeps and clock.sleeps[0] >= THROTTLE_MIN_WAIT
    assert [e["status"] for e in sim.request_log if e["query_kind"] == "orders"] == [status, 200]


def test_community_throttled_body_is_waited_out() -> None:
    """Replay of a real THROTTLED answer (1000/666/50, cost 752), then a normal one."""
    throttled = (FIXTURES / "graphql_throttled_error_community.json").read_bytes()
    ok = {
        "data": {"shop": {"name": "x"}},
        "extensions": {
            "cost": {
                "requestedQueryCost": 752,
                "actualQueryCost": 5,
                "throttleStatus": {
                    "maximumAvailable": 1000.0,
                    "currentlyAvailable": 995,
                    "restoreRate": 50.0,
                },
            }
        },
    }
    answers = [httpx.Response(200, content=throttled), httpx.Response(200, json=ok)]
    transport = httpx.MockTransport(lambda request: answers.pop(0))
    clock = FakeTime(10_000.0)

    async def main() -> tuple[dict, ShopifyClient]:
        async with httpx.AsyncClient(transport=transport) as http:
            config = ShopifyStore(
                name="acme", platform="shopify", shop="acme.myshopify.com", access_token=TOKEN
            )
            client = ShopifyClient(config, http=http, clock=clock.clock, sleep=clock.sleep)
            return await client.query("{ shop { name } }", estimate=752), client

    data, client = asyncio.run(main())
    assert data == {"shop": {"name": "x"}}
    assert client.throttled == 1 and client.last_cost.throttled == 1
    assert sum(clock.sleeps) >= (752 - 666) / 50  # at least the refill Shopify asked for


def test_real_bucket_throttle_is_waited_out_in_real_time() -> None:
    """Another client drains the sim's bucket after pollerd last looked: the server refuses
    pollerd's next page (THROTTLED), pollerd waits for the refill and gets it."""
    with ShopSim(bucket=300, restore=200.0) as sim:
        sim.create_order()

        async def body(source: ShopifyGraphQLSource) -> int:
            await source.probe()
            sim.consume(295)
            rows = await walk(source, EPOCH)
            assert len(rows) == 1
            return source.client.throttled

        assert run(cfg(sim), body, real_time=True) >= 1
    assert not [e for e in sim.request_log if e["status"] not in (200,) and not e["throttled"]]


def test_budget_leaves_others_their_share_after_another_client_spent() -> None:
    """max_budget 0.5 of a 1000-point bucket: once an answer showed that another app drained
    the bucket, pollerd's next page waits until it leaves ≥ 500 points to the others."""
    with ShopSim(bucket=1000, restore=500.0) as sim:
        for _ in range(100):
            sim.create_order()

        async def body(source: ShopifyGraphQLSource) -> None:
            await source.probe()
            sim.consume(900)  # another app: the bucket is nearly empty
            await source.probe()  # 3 points: fits, and shows pollerd the drained bucket
            assert len(await walk(source, EPOCH)) == 100

        run(cfg(sim, max_budget=0.5), body, real_time=True)
        log = [e for e in sim.request_log if e["query_kind"] == "orders"]
    assert [e["throttled"] for e in log] == [False, False, False]
    assert log[1]["available_before"] < 400  # drained (less the refill since the consume)
    page = log[2]
    assert page["requested"] > 200
    assert page["available_before"] - page["requested"] >= 500 - 20, page


def test_budget_caps_pollerds_average_spend_at_its_share_of_the_restore_rate() -> None:
    """Nobody else spends and the bucket refills fast: pollerd could spend the whole restore
    rate, but keeps to max_budget × restoreRate (plus one allowance-sized burst)."""
    with ShopSim(bucket=1000, restore=2000.0) as sim:
        for _ in range(250):
            sim.create_order()

        async def body(source: ShopifyGraphQLSource) -> None:
            await source.probe()
            for _ in range(12):
                await walk(source, EPOCH)

        run(cfg(sim, max_budget=0.5), body, real_time=True)
        log = [e for e in sim.request_log if e["query_kind"] == "orders"]
    assert not [e for e in log if e["throttled"]]
    spent = sum(e["actual"] or 0 for e in log[:-1])  # what was spent before the last request
    assert spent >= 11 * 250  # it did the work
    elapsed = log[-1]["t"] - log[0]["t"]
    slack = 100  # sim timestamps are taken on arrival, a few ms after pollerd's clock decided
    assert spent <= 0.5 * 2000 * elapsed + 0.5 * 1000 + slack


# --- failures on big pages, transient errors ------------------------------------------------------


def test_http_500_on_big_pages_shrinks_the_page_and_succeeds() -> None:
    with ShopSim(max_ok_page=40) as sim:
        ids = [sim.create_order() for _ in range(100)]

        async def body(source: ShopifyGraphQLSource) -> tuple[list, int]:
            rows = await walk(source, EPOCH)
            return rows, source.page.value

        rows, size = run(cfg(sim), body)
    assert [r.id for r in rows] == [str(i) for i in ids]
    assert size == 31  # 250 → 125 → 62 → 31
    statuses = [e["status"] for e in sim.request_log if e["query_kind"] == "orders"]
    assert statuses[:3] == [500, 500, 500] and set(statuses[3:]) == {200}


def test_a_shop_failing_every_page_gives_the_pass_up_instead_of_looping() -> None:
    """At the smallest page there is nothing left to shrink: after the client's own retries the
    listing fails the pass (retryable), it does not ask again forever (an unreachable or broken
    shop kept a pass running until its timeout)."""
    with ShopSim(max_ok_page=0) as sim:
        sim.create_order()

        async def body(source: ShopifyGraphQLSource) -> list:
            return await walk(source, EPOCH)

        with pytest.raises(RetryableSourceError):
            run(cfg(sim), body)
        asked = [e for e in sim.request_log if e["query_kind"] == "orders"]
    assert 3 <= len(asked) <= 12, len(asked)  # 250 → … → 10, then the client's retries


def test_page_size_recovers_slowly() -> None:
    size = PageSize(250, 10)
    for _ in range(6):
        size.shrink()
    assert size.value == 10  # floor
    for _ in range(9):
        size.success()
    assert size.value == 10
    size.success()
    assert size.value == 20


def test_max_cost_exceeded_shrinks_the_page_and_succeeds(
    sim: ShopSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listing made expensive (line items per row) must resize from the cost Shopify names."""
    ids = [sim.create_order() for _ in range(80)]
    heavy = shopify_graphql.LIST_UPDATED.replace(
        "nodes { legacyResourceId",
        "nodes { lineItems(first: 10) { nodes { name } } legacyResourceId",
    )
    assert heavy != shopify_graphql.LIST_UPDATED
    monkeypatch.setattr(shopify_graphql, "LIST_UPDATED", heavy)
    rows = run(cfg(sim), lambda s: walk(s, EPOCH))
    assert [r.id for r in rows] == [str(i) for i in ids]
    log = [e for e in sim.request_log if e["query_kind"] == "orders"]
    assert log[0]["requested"] > 1000 and log[0]["status"] == 200  # MAX_COST_EXCEEDED, no data
    assert all(e["requested"] <= 1000 for e in log[1:])


def test_client_types_max_cost_exceeded(sim: ShopSim) -> None:
    query = "{ orders(first: 250) { nodes { lineItems(first: 250) { nodes { name } } } } }"

    async def body(source: ShopifyGraphQLSource) -> None:
        await source.client.query(query, estimate=10)

    with pytest.raises(CostTooHigh) as caught:
        run(cfg(sim), body)
    assert caught.value.cost > 1000 and caught.value.limit == 1000


def test_fetch_chunk_halves_after_a_500_and_gets_everything(sim: ShopSim) -> None:
    ids = [str(sim.create_order()) for _ in range(30)]
    sim.add_fault("500")

    async def body(source: ShopifyGraphQLSource) -> tuple[list, int]:
        return await source.fetch(ids), source.chunk.value

    orders, chunk = run(cfg(sim), body)
    assert [o.id for o in orders] == ids
    assert chunk < 250


@pytest.mark.parametrize("kind", ["500", "502", "reset", "internal"])
def test_transient_failures_are_retried_inline(sim: ShopSim, kind: str) -> None:
    sim.create_order()
    sim.add_fault(kind)
    clock = FakeTime(10_000.0)
    assert run(cfg(sim), lambda s: s.probe(), time=clock) is not None
    assert len(clock.sleeps) == 1  # one full-jitter back-off


def test_persistent_5xx_becomes_retryable(sim: ShopSim) -> None:
    sim.add_fault("500", count=10)
    with pytest.raises(RetryableSourceError, match="HTTP 500"):
        run(cfg(sim), lambda s: s.probe())


def test_timeout_on_a_big_page_shrinks_it() -> None:
    """The sim's slow fault takes 35 s, so a transport raises the timeout instead."""
    calls: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        first = json.loads(request.content)["variables"]["first"]
        calls.append(first)
        if first > 100:
            raise httpx.ReadTimeout("timed out", request=request)
        page = {"nodes": [], "pageInfo": {"hasNextPage": False, "endCursor": None}}
        return httpx.Response(200, json={"data": {"orders": page}})

    config = ShopifyStore(
        name="acme", platform="shopify", shop="acme.myshopify.com", access_token=TOKEN
    )
    page = run(
        config, lambda s: s.list_modified(EPOCH, None), transport=httpx.MockTransport(answer)
    )
    assert page.rows == [] and page.next is None
    assert calls == [250, 125, 62]


# --- auth -----------------------------------------------------------------------------------------


def test_bad_static_token_is_fatal_with_the_fix_and_without_the_token(sim: ShopSim) -> None:
    wrong = "shpat_wrong_0123456789abcdef"
    with pytest.raises(PermanentSourceError) as caught:
        run(cfg(sim, access_token=wrong), lambda s: s.probe())
    text = str(caught.value)
    assert "401" in text and "access_token" in text and "revoked" in text
    assert wrong not in text and TOKEN not in text


def credentials_sim(**kw: Any) -> ShopSim:
    return ShopSim(access_token=None, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, **kw)


def credentials_cfg(sim: ShopSim, secret: str = CLIENT_SECRET) -> ShopifyStore:
    return cfg(sim, access_token=None, client_id=CLIENT_ID, client_secret=secret)


def test_client_credentials_token_expiry_mid_run_is_refreshed_transparently() -> None:
    with credentials_sim() as sim:
        sim.create_order()

        async def body(source: ShopifyGraphQLSource) -> int:
            await source.probe()
            sim.expire_tokens()
            assert await source.probe() is not None
            return source.client.auth.issued  # type: ignore[attr-defined]

        assert run(credentials_cfg(sim), body) == 2
        statuses = [e["status"] for e in sim.request_log if e["query_kind"] != "token"]
    assert statuses == [200, 401, 200]


def test_client_credentials_token_is_renewed_before_it_expires() -> None:
    with credentials_sim() as sim:
        sim.create_order()
        clock = FakeTime(10_000.0)

        async def body(source: ShopifyGraphQLSource) -> None:
            await source.probe()
            clock.now += 0.95 * 86399  # past 90 % of the lifetime, before the end
            await source.probe()

        run(credentials_cfg(sim), body, time=clock)
        kinds = [(e["query_kind"], e["status"]) for e in sim.request_log]
    assert kinds == [("token", 200), ("orders", 200), ("token", 200), ("orders", 200)]


def test_wrong_client_secret_is_fatal_and_never_shown() -> None:
    wrong = "shpss_ffffffffffffffffffffffffffffffff"
    with credentials_sim() as sim, pytest.raises(PermanentSourceError) as caught:
        run(credentials_cfg(sim, secret=wrong), lambda s: s.probe())
    text = str(caught.value)
    assert "client_id" in text and "client_secret" in text
    assert wrong not in text and CLIENT_SECRET not in text


def test_access_denied_names_the_missing_scope() -> None:
    with ShopSim(scopes=("read_orders",)) as sim:

        async def body(source: ShopifyGraphQLSource) -> None:
            await source.client.query("{ disputes(first: 1) { nodes { id } } }", estimate=3)

        with pytest.raises(ShopifyAccessDenied) as caught:
            run(cfg(sim), body)
    assert caught.value.access_scope == "read_shopify_payments_disputes"
    assert caught.value.scope == "store"  # the error tree's scope, not Shopify's
    assert "read_shopify_payments_disputes" in str(caught.value)


def test_gateway_ids_read_as_words_and_merchant_names_stay() -> None:
    from pollerd.sources.shopify.normalize import gateway_title

    assert gateway_title("shopify_payments") == "Shopify Payments"
    assert gateway_title("some_new_gateway") == "Some new gateway"
    assert gateway_title("Cash on Delivery (COD)") == "Cash on Delivery (COD)"
    assert gateway_title("") == ""
