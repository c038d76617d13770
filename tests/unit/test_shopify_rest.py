"""`ShopifyRestSource` against a real `ShopSim` on loopback (no HTTP mocks), and the REST
normaliser against Shopify's own REST payload fixtures and the GraphQL view of the same orders.

Pacing runs on fake time (`FakeTime`) except in the call-limit test, which must let the
simulator's bucket really leak (a few seconds).
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from loguru import logger

from pollerd.errors import PermanentSourceError, RetryableSourceError, SourceError
from pollerd.model import (
    Contact,
    LineItem,
    Order,
    full_name,
    mask_email,
    mask_phone,
    parse_utc,
    short_name,
)
from pollerd.sources.base import Deletion, Feeds, FeedUnavailable, Listed, ListPage
from pollerd.sources.shopify import ShopifyStore
from pollerd.sources.shopify.normalize import gateway_title, normalize_order
from pollerd.sources.shopify.rest import (
    INLINE_WAIT,
    THROTTLE_TRIES,
    CallLimit,
    ShopifyRestSource,
    rfc3339,
)
from pollerd.sources.shopify.rest_normalize import (
    LIST_FIELDS,
    ORDER_FIELDS,
    OrderPayloadError,
    deletion,
    listed_row,
    normalize,
)
from pollerd_sim import ShopSim
from tests.support.clocks import FakeTime, WallClock
from tests.support.transports import RecordingTransport

TOKEN = "shpat_0123456789abcdef0123456789abcdef"
SHOP = "acme.myshopify.com"
VERSION = "2026-10"
ORDERS = f"/admin/api/{VERSION}/orders.json"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "shopify"
T = TypeVar("T")


# --- helpers -----------------------------------------------------------------------------------


class Recorder(RecordingTransport):
    """The wire, recorded. With `retry_after` it plays a proxy that stretches a 429's
    Retry-After (the simulator always says 2.0)."""

    def __init__(self, *, retry_after: str | None = None) -> None:
        super().__init__()
        self.retry_after = retry_after

    def answer(self, response: httpx.Response) -> httpx.Response:
        if self.retry_after is not None and response.status_code == 429:
            response.headers["Retry-After"] = self.retry_after
        return response

    def queries(self, path: str = ORDERS) -> list[dict[str, str]]:
        return [dict(r.url.params.multi_items()) for r in self.requests if r.url.path == path]

    def call_limits(self) -> list[int]:
        return [
            int(h["X-Shopify-Shop-Api-Call-Limit"].split("/")[0])
            for _, h in self.answers
            if "X-Shopify-Shop-Api-Call-Limit" in h
        ]


def cfg(sim: ShopSim, **kw: Any) -> ShopifyStore:
    values: dict[str, Any] = {
        "name": "acme",
        "platform": "shopify",
        "shop": SHOP,
        "access_token": TOKEN,
        "api": "rest",
        "api_version": VERSION,
        "base_url": sim.url,
        "timeout": timedelta(seconds=5),
        **kw,
    }
    return ShopifyStore(**values)


def run(
    config: ShopifyStore,
    body: Callable[[ShopifyRestSource], Awaitable[T]],
    *,
    clock: FakeTime | None = None,
    recorder: Recorder | None = None,
    real_time: bool = False,
) -> T:
    """Run `body` with a fresh source in one event loop, closing what was opened."""
    fake = clock or FakeTime(5000.0)

    async def main() -> T:
        http = httpx.AsyncClient(transport=recorder) if recorder is not None else None
        if real_time:
            source = ShopifyRestSource(config, http=http)
        else:
            source = ShopifyRestSource(config, http=http, clock=fake.clock, sleep=fake.sleep)
        try:
            return await body(source)
        finally:
            await source.aclose()
            if http is not None:
                await http.aclose()

    return asyncio.run(main())


def raises(
    config: ShopifyStore, body: Callable[[ShopifyRestSource], Awaitable[Any]], kind: type[T]
) -> T:
    with pytest.raises(kind) as info:  # type: ignore[call-overload]
        run(config, body)
    assert_no_token(info.value)
    return info.value  # type: ignore[no-any-return]


def assert_no_token(exc: BaseException) -> None:
    """Neither the message, nor any chained exception, nor the formatted traceback."""
    seen: BaseException | None = exc
    while seen is not None:
        assert TOKEN not in str(seen) and TOKEN not in repr(seen.args)
        seen = seen.__cause__ or seen.__context__
    assert TOKEN not in "".join(traceback.format_exception(exc))


async def walk(
    source: ShopifyRestSource, after: datetime, *, created: bool = False
) -> list[ListPage]:
    pages: list[ListPage] = []
    page: int | str | None = None
    while True:
        if created:
            listing = await source.list_created(after, page)
        else:
            listing = await source.list_modified(after, page)
        pages.append(listing)
        if listing.next is None:
            return pages
        page = listing.next


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def expected_from_node(node: dict[str, Any], *, store: str = "acme", shop: str = SHOP) -> Order:
    """The contract (brief shopify-source.md), spelled out independently of any normaliser:
    what the GraphQL source must make of a GraphQL `Order` node."""
    oid = str(node["legacyResourceId"])
    financial = node["displayFinancialStatus"].lower()
    customer = node.get("customer") or {}
    gateways = node.get("paymentGatewayNames") or []
    reason = node.get("cancelReason")

    def two(amount: str) -> str:
        return str(Decimal(amount).quantize(Decimal("0.01")))

    lines = (node.get("lineItems") or {}).get("nodes") or []
    return Order(
        store=store,
        platform="shopify",
        id=oid,
        number=node["name"],
        status="cancelled" if node.get("cancelledAt") else financial,
        created_at=parse_utc(node["createdAt"]),  # type: ignore[arg-type]
        updated_at=parse_utc(node["updatedAt"]),  # type: ignore[arg-type]
        cancelled_at=parse_utc(node.get("cancelledAt")),
        cancel_reason=reason.lower() if reason else None,
        total=two(node["totalPriceSet"]["shopMoney"]["amount"]),
        currency=node["totalPriceSet"]["shopMoney"]["currencyCode"],
        # Decimal of the amount; 2 dp like `total`, as the GraphQL normaliser writes it
        refunded_total=Decimal(two(node["totalRefundedSet"]["shopMoney"]["amount"])),
        financial_status=financial,
        fulfillment_status=node["displayFulfillmentStatus"].lower(),
        paid_at=None,
        completed_at=None,
        payment_method=gateways[0] if gateways else "",
        payment_method_title=gateway_title(gateways[0]) if gateways else "",
        test=node["test"],
        customer_email=mask_email(node.get("email") or customer.get("email")),
        customer_phone=mask_phone(node.get("phone") or customer.get("phone")),
        customer_name=short_name(customer.get("firstName"), customer.get("lastName")),
        contact=Contact.of(
            full_name(customer.get("firstName"), customer.get("lastName")),
            node.get("email") or customer.get("email") or None,
            node.get("phone") or customer.get("phone") or None,
        ),
        customer_ip=node.get("clientIp") or None,  # the simulator serves plain IPv4
        admin_url=f"https://admin.shopify.com/store/{shop.removesuffix('.myshopify.com')}"
        f"/orders/{oid}",
        line_items=tuple(
            LineItem(n["name"], n["quantity"], two(n["originalTotalSet"]["shopMoney"]["amount"]))
            for n in lines[:10]
        ),
    )


def undated(order: Order) -> Order:
    """Without the evidence dates (`expected_from_node` predates them)."""
    return replace(order, paid_at=None, completed_at=None, refunds_at=())


def assert_same_order(got: Order, want: Order) -> None:
    """Field by field, so a failure names the field (and Decimal's "0" vs "0.00" counts)."""
    for field in Order.__dataclass_fields__:
        assert getattr(got, field) == getattr(want, field), field
    assert str(got.refunded_total) == str(want.refunded_total)
    assert got == want


@pytest.fixture
def wall() -> WallClock:
    return WallClock(datetime(2026, 11, 22, 9, 0, 0, tzinfo=UTC))


@pytest.fixture
def sim(wall: WallClock) -> Iterator[ShopSim]:
    with ShopSim(shop=SHOP, access_token=TOKEN, throttle_status=429, clock=wall) as server:
        yield server


@pytest.fixture
def logs() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="DEBUG", format="{message}")
    yield lines
    logger.remove(sink)


def make_orders(sim: ShopSim, wall: WallClock, n: int, **kw: Any) -> list[int]:
    ids = []
    for _ in range(n):
        wall.advance()
        ids.append(sim.create_order(**kw))
    return ids


# --- listing -----------------------------------------------------------------------------------


def test_listing_asks_for_any_status_so_cancelled_orders_are_listed(
    sim: ShopSim, wall: WallClock
) -> None:
    start = wall.now
    paid, cancelled, pending = make_orders(sim, wall, 3)
    sim.pay(paid)
    wall.advance()
    sim.cancel(cancelled, reason="FRAUD")
    recorder = Recorder()

    async def body(source: ShopifyRestSource) -> list[ListPage]:
        return await walk(source, start)

    pages = run(cfg(sim), body, recorder=recorder)
    rows = {r.id: r for p in pages for r in p.rows}
    assert {k: r.status for k, r in rows.items()} == {
        str(paid): "paid",
        str(cancelled): "cancelled",
        str(pending): "pending",
    }
    assert all(r.updated_at.tzinfo is UTC for r in rows.values())
    [query] = recorder.queries()
    assert query == {
        "status": "any",
        "updated_at_min": "2026-11-22T09:00:00Z",
        "order": "updated_at asc",
        "limit": "250",
        "fields": LIST_FIELDS,
    }
    sent = recorder.requests[0]
    assert sent.headers["X-Shopify-Access-Token"] == TOKEN
    assert sent.headers["User-Agent"].startswith("pollerd/")
    # Without status=any the same store hides the cancelled order: the test can fail.
    with httpx.Client(base_url=sim.url) as raw:
        answer = raw.get(
            ORDERS,
            params={"updated_at_min": "2026-11-22T09:00:00Z", "fields": "id"},
            headers={"X-Shopify-Access-Token": TOKEN},
        )
    assert answer.status_code == 200
    assert cancelled not in {o["id"] for o in answer.json()["orders"]}


def test_page_info_walks_600_orders_with_frozen_filters(sim: ShopSim, wall: WallClock) -> None:
    start = wall.now
    ids = make_orders(sim, wall, 600)
    recorder = Recorder()

    pages = run(cfg(sim), lambda source: walk(source, start), recorder=recorder)

    assert [len(p.rows) for p in pages] == [250, 250, 100]
    assert pages[-1].next is None and all(isinstance(p.next, str) for p in pages[:-1])
    assert [r.id for p in pages for r in p.rows] == [str(i) for i in ids]
    stamps = [r.updated_at for p in pages for r in p.rows]
    assert stamps == sorted(stamps)
    first, *rest = recorder.queries()
    assert first["updated_at_min"] == "2026-11-22T09:00:00Z"
    for query, page in zip(rest, pages, strict=False):
        # Shopify answers 400 to any filter beside page_info: only limit and fields go along.
        assert query == {"limit": "250", "fields": LIST_FIELDS, "page_info": page.next}


def test_thirty_orders_sharing_one_second_across_a_page_boundary_come_once(
    sim: ShopSim, wall: WallClock
) -> None:
    start = wall.now
    ids = make_orders(sim, wall, 280)
    cluster = ids[100:130]
    when = start + timedelta(seconds=260.5)  # rows 230..259 of the walk: across row 250
    sim.set_updated(cluster, when)

    pages = run(cfg(sim), lambda source: walk(source, start))

    seen = [r.id for p in pages for r in p.rows]
    assert sorted(seen) == sorted(str(i) for i in ids) and len(seen) == len(set(seen))
    tied_ids = {str(i) for i in cluster}
    tied = [i for i, r in enumerate(r for p in pages for r in p.rows) if r.id in tied_ids]
    assert tied[0] < 250 <= tied[-1], tied  # the cluster really straddles the page boundary
    # The inclusive bound re-reads the whole second the sync's bookmark points at.
    boundary = when.replace(microsecond=0)
    again = run(cfg(sim), lambda source: walk(source, boundary))
    assert {r.id for p in again for r in p.rows} >= {str(i) for i in cluster}


def test_list_created_filters_by_creation_but_ascends_by_keyset(
    sim: ShopSim, wall: WallClock
) -> None:
    """The sync refuses a page that does not ascend by (updated_at, id) (sync._walk); sorted
    by creation, an old order updated after newer ones would fail every sweep."""
    before = make_orders(sim, wall, 1)[0]
    start = wall.advance()
    ids = make_orders(sim, wall, 5)
    wall.advance()
    sim.touch(ids[0])  # created first, updated last
    sim.touch(before)  # updated, but created before the window
    recorder = Recorder()

    pages = run(cfg(sim), lambda source: walk(source, start, created=True), recorder=recorder)

    rows = [r for p in pages for r in p.rows]
    assert [r.id for r in rows] == [str(i) for i in ids[1:] + ids[:1]]
    keys = [(r.updated_at, int(r.id)) for r in rows]
    assert keys == sorted(keys)
    [query] = recorder.queries()
    assert query["created_at_min"] == rfc3339(start)
    assert query["order"] == "updated_at asc" and query["status"] == "any"
    assert "updated_at_min" not in query


def test_probe_returns_the_most_recently_updated_order(sim: ShopSim, wall: WallClock) -> None:
    first, _, _ = make_orders(sim, wall, 3)
    wall.advance()
    sim.cancel(first)
    recorder = Recorder()

    row = run(cfg(sim), lambda source: source.probe(), recorder=recorder)

    assert isinstance(row, Listed)
    assert (row.id, row.status, row.updated_at) == (str(first), "cancelled", wall.now)
    [query] = recorder.queries()
    assert query == {
        "limit": "1",
        "status": "any",
        "order": "updated_at desc",
        "fields": LIST_FIELDS,
    }


def test_probe_of_an_empty_shop_is_none(sim: ShopSim) -> None:
    assert run(cfg(sim), lambda source: source.probe()) is None


def test_a_page_number_is_not_a_page_token(sim: ShopSim) -> None:
    with pytest.raises(TypeError):
        run(cfg(sim), lambda source: source.list_modified(datetime.now(UTC), 2))


# --- fetch and normalisation -------------------------------------------------------------------


def test_fetched_sim_orders_equal_the_graphql_view_field_by_field(
    sim: ShopSim, wall: WallClock
) -> None:
    plain = make_orders(sim, wall, 1)[0]
    items = [
        {"name": "Tea - green", "quantity": 2, "price": "4.5"},
        {"name": "Cup", "quantity": 1, "price": "12.00"},
    ]
    many = make_orders(sim, wall, 1, items=items, total="21.00", currency="EUR")[0]
    paid = make_orders(sim, wall, 1, financial="PAID", gateway="manual")[0]
    authorized = make_orders(sim, wall, 1, financial="AUTHORIZED")[0]
    sim.cancel(authorized, reason="INVENTORY")
    partly = make_orders(sim, wall, 1, financial="PAID", total="40.00")[0]
    sim.refund(partly, "15.00")
    refunded = make_orders(sim, wall, 1, financial="PAID", total="10.00")[0]
    sim.refund(refunded, "10.00")
    shipped = make_orders(sim, wall, 1, financial="PAID")[0]
    sim.fulfill(shipped)
    test_order = make_orders(sim, wall, 1, test=True, email="", phone="", first_name="Grace")[0]
    ids = [plain, many, paid, authorized, partly, refunded, shipped, test_order]
    recorder = Recorder()

    async def body(source: ShopifyRestSource) -> tuple[list[Order], list[Listed]]:
        orders = await source.fetch([str(i) for i in reversed(ids)] + [str(plain)])
        rows = [r for p in await walk(source, datetime(2026, 1, 1, tzinfo=UTC)) for r in p.rows]
        return orders, rows

    orders, rows = run(cfg(sim), body, recorder=recorder)

    by_id = {o.id: o for o in orders}
    assert len(orders) == len(ids) == len(by_id)  # the duplicate id was asked for once
    for oid in ids:
        node = sim.order(oid)
        got = by_id[str(oid)]
        assert_same_order(undated(got), expected_from_node(node))
        # REST dates refunds and fulfillments like GraphQL; captures only on request (`dated`).
        want = normalize_order(node, store="acme", shop=SHOP)
        assert_same_order(got, replace(want, paid_at=None))
    listed = {r.id: r for r in rows}
    for oid in ids:
        row, order = listed[str(oid)], by_id[str(oid)]
        assert (row.status, row.updated_at) == (order.status, order.updated_at)
    assert by_id[str(partly)].status == "partially_refunded"
    assert by_id[str(partly)].refunded_total == Decimal("15.00")
    assert by_id[str(authorized)].cancel_reason == "inventory"
    assert by_id[str(shipped)].fulfillment_status == "fulfilled"
    assert by_id[str(many)].line_items[0] == LineItem("Tea - green", 2, "9.00")
    fetch = recorder.queries()[0]
    assert fetch["status"] == "any" and fetch["fields"] == ORDER_FIELDS
    assert fetch["ids"].split(",") == [str(i) for i in reversed(ids)]


def test_fetch_chunks_ids_by_250(sim: ShopSim, wall: WallClock) -> None:
    ids = [str(i) for i in make_orders(sim, wall, 260)]
    recorder = Recorder()

    orders = run(cfg(sim), lambda source: source.fetch(ids), recorder=recorder)

    assert sorted(o.id for o in orders) == sorted(ids)
    assert [len(q["ids"].split(",")) for q in recorder.queries()] == [250, 10]


def test_fetch_of_a_deleted_order_returns_nothing_for_it(sim: ShopSim, wall: WallClock) -> None:
    kept, gone = make_orders(sim, wall, 2)
    sim.delete(gone)
    orders = run(cfg(sim), lambda source: source.fetch([str(kept), str(gone)]))
    assert [o.id for o in orders] == [str(kept)]


def test_rest_list_fixture_normalises_per_contract() -> None:
    """Shopify's own `orders.json` fixture (shopify_python_api test/fixtures/orders.json)."""
    payload = fixture("rest_orders_list.json")["orders"][0]
    order = normalize(payload, store="apple", shop="apple.myshopify.com")
    want = Order(
        store="apple",
        platform="shopify",
        id="450789469",
        number="#1001",
        status="partially_refunded",
        created_at=datetime(2008, 1, 10, 16, 0, tzinfo=UTC),
        updated_at=datetime(2008, 1, 10, 16, 0, tzinfo=UTC),
        total="598.94",
        currency="USD",
        refunded_total=Decimal("0.00"),  # this fixture carries no refunds[] to sum
        financial_status="partially_refunded",
        fulfillment_status="unfulfilled",
        payment_method="bogus",
        payment_method_title="Bogus Gateway (test)",
        test=False,
        customer_email="b***@hostmail.com",
        customer_phone="557****1234",  # the order's phone wins over the customer's
        customer_name="Bob N.",
        contact=Contact("Bob Norman", "bob.norman@hostmail.com", "+557734881234"),
        admin_url="https://admin.shopify.com/store/apple/orders/450789469",
    )
    assert_same_order(order, want)
    row = listed_row({k: payload[k] for k in LIST_FIELDS.split(",")}, store="apple")
    assert row == Listed("450789469", want.updated_at, "partially_refunded")


def test_rest_single_fixture_with_a_refund_and_a_cancellation() -> None:
    """`order.json` plus the refund of `refund.json` attached the way `orders.json` embeds
    `refunds[]`, then cancelled: status, reason, refunded total and line totals."""
    payload = copy.deepcopy(fixture("rest_order_single.json")["order"])
    order = normalize(payload, store="apple", shop="apple.myshopify.com")
    assert (order.status, order.total, order.fulfillment_status) == (
        "authorized",
        "409.94",
        "unfulfilled",
    )
    assert order.line_items == (
        LineItem("IPod Nano - 8gb - green", 1, "199.00"),
        LineItem("IPod Nano - 8gb - red", 1, "199.00"),
        LineItem("IPod Nano - 8gb - black", 1, "199.00"),
    )
    assert (order.payment_method, order.customer_phone) == ("", None)  # no gateway names, phone
    payload["refunds"] = [fixture("rest_order_refund.json")["refund"]]
    payload["cancelled_at"] = "2008-01-11T09:30:00-05:00"
    payload["cancel_reason"] = "customer"
    payload["fulfillment_status"] = "partial"
    payload["line_items"][0]["quantity"] = 3
    order = normalize(payload, store="apple", shop="apple.myshopify.com")
    assert order.status == "cancelled" and order.financial_status == "authorized"
    assert order.cancelled_at == datetime(2008, 1, 11, 14, 30, tzinfo=UTC)
    assert order.cancel_reason == "customer"
    assert order.refunded_total == Decimal("209.00") and str(order.refunded_total) == "209.00"
    assert order.fulfillment_status == "partially_fulfilled"
    assert order.line_items[0] == LineItem("IPod Nano - 8gb - green", 3, "597.00")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"id": None}, "id"),
        ({"id": "450789469"}, "id"),
        ({"updated_at": None}, "updated_at"),
        ({"updated_at": "yesterday"}, "updated_at"),
        ({"created_at": "10/01/2008"}, "created_at"),
        ({"total_price_set": None, "total_price": None}, "total_price"),
        (
            {"line_items": [{"name": "x", "quantity": "2", "price": "1.00"}]},
            "line_items[0].quantity",
        ),
    ],
)
def test_a_payload_breaking_the_contract_names_order_and_field(
    change: dict[str, Any], field: str
) -> None:
    payload = {**fixture("rest_orders_list.json")["orders"][0], **change}
    with pytest.raises(OrderPayloadError) as info:
        normalize(payload, store="apple", shop="apple.myshopify.com")
    assert info.value.field == field
    assert f"field {field}:" in str(info.value)


# --- rate limits -------------------------------------------------------------------------------


def test_429_with_retry_after_is_waited_out_and_the_call_succeeds(
    sim: ShopSim, wall: WallClock
) -> None:
    ids = make_orders(sim, wall, 2)
    sim.add_fault("throttled", count=1)
    clock = FakeTime(5000.0)
    recorder = Recorder()

    orders = run(
        cfg(sim), lambda source: source.fetch([str(i) for i in ids]), clock=clock, recorder=recorder
    )

    assert sorted(o.id for o in orders) == sorted(map(str, ids))
    assert [status for status, _ in recorder.answers] == [429, 200]
    assert recorder.answers[0][1]["Retry-After"] == "2.0"
    assert sum(clock.sleeps) >= 2.0  # the pause happened before the second request


def test_a_long_retry_after_ends_the_call_retryable_without_sending(
    sim: ShopSim, wall: WallClock
) -> None:
    make_orders(sim, wall, 1)
    sim.add_fault("throttled", count=1)
    recorder = Recorder(retry_after="120")

    async def body(source: ShopifyRestSource) -> None:
        with pytest.raises(RetryableSourceError) as info:
            await source.probe()
        assert info.value.retry_after is not None and info.value.retry_after > INLINE_WAIT
        with pytest.raises(RetryableSourceError):  # still inside the pause: nothing is sent
            await source.probe()

    run(cfg(sim), body, recorder=recorder)
    assert len(recorder.requests) == 1


def test_429s_without_end_give_up_retryable(sim: ShopSim) -> None:
    sim.add_fault("throttled", count=THROTTLE_TRIES + 5)
    recorder = Recorder()
    error = None

    async def body(source: ShopifyRestSource) -> None:
        nonlocal error
        with pytest.raises(RetryableSourceError) as info:
            await source.probe()
        error = info.value

    run(cfg(sim), body, recorder=recorder)
    assert len(recorder.requests) == THROTTLE_TRIES
    assert error is not None and "429" in str(error)


@pytest.mark.parametrize(("budget", "within"), [(0.5, True), (1.0, False)])
def test_call_limit_header_keeps_pollerd_within_its_share(budget: float, within: bool) -> None:
    """Real time: the simulator's bucket (20 requests, 2/s) must really leak. With
    max_budget 0.5 pollerd never takes more than 10; at 1.0 the same calls do (so the
    measurement can see a breach)."""
    with ShopSim(shop=SHOP, access_token=TOKEN, rest_bucket=20, rest_leak=2.0) as sim:
        sim.create_order()
        recorder = Recorder()

        async def body(source: ShopifyRestSource) -> None:
            for _ in range(14):
                await source.probe()

        started = time.monotonic()
        run(cfg(sim, max_budget=budget), body, recorder=recorder, real_time=True)
        elapsed = time.monotonic() - started
    used = recorder.call_limits()
    assert len(used) == 14 and all(status == 200 for status, _ in recorder.answers)
    if within:
        assert max(used) <= 10, used
        assert max(used) >= 8, used  # the budget was really approached
        assert elapsed >= 1.5  # (14 - 10) requests had to wait for the leak
    else:
        assert max(used) > 10, used


def test_call_limit_estimate_leaks_and_holds_requests_back() -> None:
    clock = FakeTime(5000.0)
    bucket = CallLimit(0.5, clock.clock)
    assert bucket.delay() == 0.0  # nothing known yet: the first request goes out blind
    bucket.observe("19/40")
    assert bucket.delay() == 0.0  # 19 + 1 is the share of 20
    bucket.observe("20/40")
    assert bucket.delay() == pytest.approx(0.5)  # one request leaks in 0.5 s at 2/s
    clock.now += 0.5
    assert bucket.delay() == 0.0
    bucket.observe("300/400")  # a Plus bucket leaks 20/s and the share is 200
    assert bucket.share == 200 and bucket.delay() == pytest.approx(101 / 20)
    bucket.observe("garbage")
    assert bucket.size == 400


# --- failures ----------------------------------------------------------------------------------


def test_a_bad_token_is_fatal_and_names_the_fix_not_the_token(sim: ShopSim) -> None:
    wrong = cfg(sim, access_token="shpat_ffffffffffffffffffffffffffffffff")
    error = raises(wrong, lambda source: source.probe(), PermanentSourceError)
    text = str(error)
    assert "store acme" in text and "HTTP 401" in text and "set access_token" in text
    assert "shpat_ffff" not in text
    assert "Invalid API key or access token" in text  # Shopify's own words are kept


def test_a_wrong_address_is_fatal_and_names_shop_and_version(sim: ShopSim) -> None:
    elsewhere = cfg(sim, base_url=sim.url + "/not-shopify")
    error = raises(elsewhere, lambda source: source.probe(), PermanentSourceError)
    assert "HTTP 404" in str(error) and "api_version" in str(error) and "shop" in str(error)


@pytest.mark.parametrize("kind", ["500", "502", "reset"])
def test_server_errors_are_retryable_and_slow_the_pacer(sim: ShopSim, kind: str) -> None:
    sim.add_fault(kind, count=1)

    async def body(source: ShopifyRestSource) -> None:
        with pytest.raises(RetryableSourceError) as info:
            await source.probe()
        assert_no_token(info.value)
        assert source._pacer.backoff.multiplier > 1
        await source.probe()  # the fault was one answer: the next call works

    run(cfg(sim), body)


def test_a_store_that_does_not_answer_in_time_is_retryable(sim: ShopSim) -> None:
    sim.add_fault("slow", count=1, delay=1.0)

    async def body(source: ShopifyRestSource) -> None:
        with pytest.raises(RetryableSourceError, match=r"no answer within 0\.3 s"):
            await source.probe()
        assert source._pacer.backoff.multiplier > 1
        assert await source.probe() is None

    run(cfg(sim, timeout=timedelta(seconds=0.3)), body)


@pytest.mark.parametrize(
    "data", [{"errors": "Not Found"}, [], {"orders": None}, {"orders": [1]}, "<html>"]
)
def test_a_200_that_is_not_an_orders_object_is_retryable(sim: ShopSim, data: Any) -> None:
    async def body(source: ShopifyRestSource) -> None:
        with pytest.raises(RetryableSourceError, match="orders"):
            source._orders(data)

    run(cfg(sim), body)


def test_a_served_version_other_than_the_pinned_one_warns_once(
    sim: ShopSim, logs: list[str]
) -> None:
    old = cfg(sim, api_version="2023-04")

    async def body(source: ShopifyRestSource) -> str:
        await source.probe()
        await source.probe()
        return await source.check()

    line = run(old, body)
    warnings = [m for m in logs if "instead of the pinned 2023-04" in m]
    assert len(warnings) == 1 and "serves API version 2026-01" in warnings[0]
    assert "2026-01" in line and "pinned 2023-04" in line


def test_check_describes_shop_version_and_orders(sim: ShopSim, wall: WallClock) -> None:
    ids = make_orders(sim, wall, 3)
    sim.cancel(ids[0])
    line = run(cfg(sim), lambda source: source.check())
    assert SHOP in line and f"REST Admin API {VERSION}" in line and "static token" in line
    assert "3 orders" in line or "order count not available" in line
    assert TOKEN not in line


def test_client_credentials_tokens_are_fetched_and_replaced_on_401(
    wall: WallClock,
) -> None:
    with ShopSim(
        shop=SHOP, access_token=None, client_id="cid", client_secret="csecret", clock=wall
    ) as sim:
        make_orders(sim, wall, 2)
        config = cfg(sim, access_token=None, client_id="cid", client_secret="csecret")

        async def body(source: ShopifyRestSource) -> list[str]:
            first = await source.probe()
            sim.expire_tokens()
            second = await source.probe()
            return [r.id for r in (first, second) if r is not None]

        assert len(run(config, body)) == 2


# --- feeds -------------------------------------------------------------------------------------


def test_deletions_come_from_the_events_feed_oldest_first(sim: ShopSim, wall: WallClock) -> None:
    start = wall.now
    ids = make_orders(sim, wall, 4)
    for oid in (ids[2], ids[0]):
        wall.advance()
        sim.delete(oid)
    recorder = Recorder()

    async def body(source: ShopifyRestSource) -> Any:
        assert isinstance(source, Feeds)
        return await source.deletions(start)

    found = run(cfg(sim), body, recorder=recorder)

    assert [d.order_id for d in found] == [str(ids[2]), str(ids[0])]
    assert [d.deleted_at for d in found] == [start + timedelta(seconds=5), wall.now]
    assert found[0].message == "Order #1003 was deleted."
    [query] = recorder.queries(f"/admin/api/{VERSION}/events.json")
    assert query == {
        "filter": "Order",
        "verb": "destroy",
        "created_at_min": "2026-11-22T09:00:00Z",
        "limit": "250",
    }


def test_deletions_page_through_the_link_header(sim: ShopSim, wall: WallClock) -> None:
    start = wall.now
    ids = make_orders(sim, wall, 260)
    for oid in ids:
        sim.delete(oid)
    recorder = Recorder()

    found = run(cfg(sim), lambda source: source.deletions(start), recorder=recorder)

    assert sorted(d.order_id for d in found) == sorted(map(str, ids)) and len(found) == 260
    _, second = recorder.queries(f"/admin/api/{VERSION}/events.json")
    assert set(second) == {"limit", "page_info"}  # filter and verb are frozen in the token


def test_events_that_are_not_order_deletions_are_not_deletions() -> None:
    """Shopify's events fixture (placed, confirmed, authorization_success) as a server that
    ignored the filter would send it."""
    events = fixture("rest_events_order.json")["events"]
    assert [deletion(e, store="acme") for e in events] == [None, None, None]
    destroyed = {**events[0], "verb": "destroy"}
    assert deletion(destroyed, store="acme") == (
        datetime(2008, 1, 10, 16, 0, tzinfo=UTC),
        852065041,
        Deletion("450789469", datetime(2008, 1, 10, 16, 0, tzinfo=UTC), "Order was placed"),
    )
    with pytest.raises(SourceError, match="event 852065041"):
        deletion({**destroyed, "created_at": "never"}, store="acme")


def test_disputes_are_not_read_over_rest(sim: ShopSim) -> None:
    error = raises(cfg(sim), lambda source: source.disputes(datetime.now(UTC)), FeedUnavailable)
    assert error.feed == "disputes" and 'api = "graphql"' in str(error)


# --- pure helpers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (datetime(2026, 11, 22, 9, 32, 36, 999999, tzinfo=UTC), "2026-11-22T09:32:36Z"),
        (
            datetime(2026, 11, 22, 17, 32, 36, tzinfo=timezone(timedelta(hours=8))),
            "2026-11-22T09:32:36Z",
        ),
        (datetime(2026, 11, 22, 9, 32, 36), "2026-11-22T09:32:36Z"),
    ],
)
def test_rfc3339_is_utc_with_z_floored_to_the_second(value: datetime, text: str) -> None:
    assert rfc3339(value) == text
