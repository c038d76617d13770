"""`bulk_orders` against a real `ShopSim` on loopback (no HTTP mocks), and the JSONL regrouping
against Airbyte's recorded bulk files (tests/fixtures/shopify).

Waiting on a job is polling the simulator's own state (`bulk_seconds` = 0.3 s of real time);
the poll interval is shrunk, never replaced by a fixed sleep.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from pollerd.errors import RetryableSourceError
from pollerd.model import Order
from pollerd.sources.shopify import ShopifyStore
from pollerd.sources.shopify.bulk import (
    BATCH,
    BUSY_TRIES,
    IN_PROGRESS,
    RUN_MUTATION,
    BulkFileError,
    BulkOperationFailed,
    Operation,
    Regrouper,
    bulk_orders,
    bulk_query,
    regroup_lines,
)
from pollerd.sources.shopify.client import ShopifyClient
from pollerd.sources.shopify.normalize import normalize_order
from pollerd_sim import ShopSim
from tests.support.clocks import WallClock
from tests.support.transports import RecordingTransport

STORE = "acme"
SHOP = "acme.myshopify.com"
TOKEN = "shpat_sim_token"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "shopify"
EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
T0 = datetime(2026, 11, 22, 9, 0, 0, tzinfo=UTC)


class Crash(Exception):
    """The caller dies right after saving the job id."""


@pytest.fixture
def clock() -> WallClock:
    return WallClock(T0)


@pytest.fixture
def shop(clock: WallClock) -> Iterator[ShopSim]:
    with ShopSim(shop=SHOP, access_token=TOKEN, clock=clock, bulk_seconds=0.3) as sim:
        yield sim


def make_client(sim: ShopSim, http: httpx.AsyncClient | None = None) -> ShopifyClient:
    cfg = ShopifyStore.model_validate(
        {
            "name": STORE,
            "platform": "shopify",
            "shop": SHOP,
            "access_token": TOKEN,
            "base_url": sim.url,
            "max_budget": 1.0,
        }
    )
    return ShopifyClient(cfg, http=http)


class Run:
    """One `bulk_orders` call, with what it reported through its callbacks."""

    def __init__(self) -> None:
        self.batches: list[list[Order]] = []
        self.started: list[str] = []
        self.progress: list[int] = []
        self.sleeps: list[float] = []

    @property
    def orders(self) -> list[Order]:
        return [o for batch in self.batches for o in batch]

    async def sleep(self, seconds: float) -> None:
        """Remember the pause, then yield briefly: the simulator runs on real time."""
        self.sleeps.append(seconds)
        await asyncio.sleep(min(seconds, 0.05))

    async def drain(
        self,
        client: ShopifyClient,
        *,
        since: datetime = EPOCH,
        until: datetime | None = None,
        resume: str | None = None,
        on_started: Callable[[str], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        stop_after: int | None = None,
    ) -> Run:
        stream = bulk_orders(
            client,
            store=STORE,
            shop=SHOP,
            since=since,
            until=until,
            resume=resume,
            on_started=on_started or self.started.append,
            on_progress=self.progress.append,
            poll_every=0.02,
            sleep=sleep or self.sleep,
        )
        async for batch in stream:
            self.batches.append(batch)
            if stop_after is not None and len(self.batches) >= stop_after:
                await stream.aclose()  # type: ignore[attr-defined]
                break
        return self


def truth(sim: ShopSim, ids: list[int]) -> dict[str, Order]:
    return {str(i): normalize_order(sim.order(i), store=STORE, shop=SHOP) for i in ids}


def make_orders(sim: ShopSim, count: int, *, items_each: int | None = None) -> list[int]:
    """Orders with one to three line items each (the JSONL puts each on its own line)."""
    ids = []
    for n in range(count):
        lines = items_each or n % 3 + 1
        items = [
            {"name": f"Item {n}-{k}", "quantity": k + 1, "price": "2.50"} for k in range(lines)
        ]
        ids.append(sim.create_order(total="10.00", items=items, financial="PAID"))
    return ids


def bulk_runs(sim: ShopSim) -> int:
    return int(sim.stats()["bulk_started"])


# --- the whole window ---------------------------------------------------------------------------


def test_two_thousand_orders_are_each_yielded_once_with_their_line_items(shop: ShopSim) -> None:
    ids = make_orders(shop, 2000)
    expected = truth(shop, ids)

    async def main() -> Run:
        client = make_client(shop)
        try:
            return await Run().drain(client)
        finally:
            await client.aclose()

    run = asyncio.run(main())
    got = [o.id for o in run.orders]
    assert len(got) == len(set(got)) == 2000
    assert {o.id: o for o in run.orders} == expected
    assert all(len(b) <= BATCH for b in run.batches) and len(run.batches) >= 2000 // BATCH
    assert sum(len(o.line_items) for o in run.orders) == sum(n % 3 + 1 for n in range(2000))
    assert len(run.started) == 1 and bulk_runs(shop) == 1
    assert run.progress and run.progress[-1] >= 2000  # objectCount counts line items too


def test_window_bounds_are_inclusive_and_outside_orders_are_left_out(
    shop: ShopSim, clock: WallClock
) -> None:
    before = make_orders(shop, 3)
    clock.now = T0 + timedelta(hours=1)
    inside_first = make_orders(shop, 2)
    clock.now = T0 + timedelta(hours=2)
    inside_last = make_orders(shop, 2)
    clock.now = T0 + timedelta(hours=3)
    after = make_orders(shop, 3)

    async def main() -> Run:
        client = make_client(shop)
        try:
            # Sub-second bounds: the quoted dates are floored, `updatedAt` has whole seconds.
            return await Run().drain(
                client,
                since=T0 + timedelta(hours=1, microseconds=400_000),
                until=T0 + timedelta(hours=2, microseconds=900_000),
            )
        finally:
            await client.aclose()

    got = {o.id for o in asyncio.run(main()).orders}
    assert got == {str(i) for i in inside_first + inside_last}
    assert not got & {str(i) for i in before + after}


def test_the_inner_query_filters_updated_at_with_quoted_dates_and_never_sorts() -> None:
    query = bulk_query(T0, T0 + timedelta(days=1, microseconds=5))
    assert "updated_at:>='2026-11-22T09:00:00Z' AND updated_at:<='2026-11-23T09:00:00Z'" in query
    assert "sortKey" not in query and "reverse" not in query
    assert "lineItems" in query
    assert "groupObjects: true" in RUN_MUTATION  # children right after their parent (2026-01+)
    with pytest.raises(ValueError, match="timezone-aware"):
        bulk_query(datetime(2026, 1, 1), None)


def test_an_empty_window_completes_without_a_url_and_yields_nothing(shop: ShopSim) -> None:
    make_orders(shop, 2)

    async def main() -> Run:
        client = make_client(shop)
        try:
            return await Run().drain(client, since=T0 + timedelta(days=1))
        finally:
            await client.aclose()

    run = asyncio.run(main())
    assert run.batches == [] and len(run.started) == 1


def test_the_result_file_is_fetched_without_the_access_token(shop: ShopSim) -> None:
    make_orders(shop, 3)
    recorder = RecordingTransport()

    async def main() -> Run:
        # A shared client configured with the token as a default header must not leak it.
        http = httpx.AsyncClient(transport=recorder, headers={"X-Shopify-Access-Token": TOKEN})
        client = make_client(shop, http)
        try:
            return await Run().drain(client)
        finally:
            await http.aclose()

    run = asyncio.run(main())
    assert len(run.orders) == 3
    downloads = [r for r in recorder.requests if "graphql" not in r.url.path]
    assert downloads, "the JSONL was not downloaded through the client's transport"
    for request in downloads:
        assert "X-Shopify-Access-Token" not in request.headers
        assert TOKEN not in str(request.headers)


# --- failures -----------------------------------------------------------------------------------


def test_failed_job_yields_its_partial_data_then_raises_retryable(shop: ShopSim) -> None:
    # 301 orders of 4 lines: the sim's partial file (the first half of the lines, 602) ends
    # two lines into order 151, which must not be yielded with one line item of three.
    ids = make_orders(shop, 301, items_each=3)
    expected = truth(shop, ids)
    shop.fail_next_bulk(partial=True)
    run = Run()

    async def main() -> None:
        client = make_client(shop)
        try:
            await run.drain(client)
        finally:
            await client.aclose()

    with pytest.raises(BulkOperationFailed) as caught:
        asyncio.run(main())
    assert isinstance(caught.value, RetryableSourceError)
    assert caught.value.partial is True and caught.value.status == "FAILED"
    assert caught.value.operation_id == run.started[0]
    assert "partial data" in str(caught.value) and "read again" in str(caught.value)
    got = run.orders
    assert len(got) == len({o.id for o in got}) == 150
    for order in got:  # every yielded order is whole: the possibly cut-off last one is dropped
        assert order == expected[order.id]

    # The caller restarts with the saved (failed) id: a new job reads the whole window.
    async def again() -> Run:
        client = make_client(shop)
        try:
            return await Run().drain(client, resume=caught.value.operation_id)
        finally:
            await client.aclose()

    rerun = asyncio.run(again())
    assert {o.id for o in rerun.orders} == set(expected)
    assert rerun.started and rerun.started[0] != caught.value.operation_id
    assert bulk_runs(shop) == 2


def test_failed_job_without_partial_data_raises_having_yielded_nothing(shop: ShopSim) -> None:
    make_orders(shop, 10)
    shop.fail_next_bulk(partial=False)
    run = Run()

    async def main() -> None:
        client = make_client(shop)
        try:
            await run.drain(client)
        finally:
            await client.aclose()

    with pytest.raises(BulkOperationFailed) as caught:
        asyncio.run(main())
    assert caught.value.partial is False and run.batches == []
    assert "INTERNAL_SERVER_ERROR" in str(caught.value)


def test_already_in_progress_waits_with_back_off_then_runs(shop: ShopSim) -> None:
    ids = make_orders(shop, 20)

    async def main() -> tuple[Run, str]:
        client = make_client(shop)
        try:
            other = "{ orders { edges { node { id } } } }"  # somebody else's job
            data = await client.query(RUN_MUTATION, {"query": other})
            blocker = data["bulkOperationRunQuery"]["bulkOperation"]["id"]
            return await Run().drain(client), blocker
        finally:
            await client.aclose()

    run, blocker = asyncio.run(main())
    assert {o.id for o in run.orders} == {str(i) for i in ids}
    assert run.started and run.started[0] != blocker
    assert bulk_runs(shop) == 2
    busy = [run.sleeps[0]]  # the busy pauses, up to the first poll of our own job
    for pause in run.sleeps[1:BUSY_TRIES]:
        if pause <= busy[-1]:
            break
        busy.append(pause)
    assert all(b == pytest.approx(2 * a) for a, b in itertools.pairwise(busy))


def test_still_in_progress_after_the_back_off_is_retryable(shop: ShopSim) -> None:
    make_orders(shop, 2)
    with ShopSim(shop=SHOP, access_token=TOKEN, bulk_seconds=3600.0) as stuck:
        make_orders(stuck, 2)
        run = Run()

        async def no_wait(seconds: float) -> None:
            run.sleeps.append(seconds)

        async def main() -> None:
            client = make_client(stuck)
            try:
                await client.query(RUN_MUTATION, {"query": "{ orders { edges { node { id } } } }"})
                await run.drain(client, sleep=no_wait)
            finally:
                await client.aclose()

        with pytest.raises(RetryableSourceError, match="still running") as caught:
            asyncio.run(main())
        assert not isinstance(caught.value, BulkOperationFailed)
        assert len(run.sleeps) == BUSY_TRIES - 1 and run.started == []
        assert bulk_runs(stuck) == 1


def test_a_running_job_for_the_same_window_is_adopted_not_waited_for(shop: ShopSim) -> None:
    """We crashed between creating the job and saving its id: Shopify still runs it."""
    ids = make_orders(shop, 5)

    async def main() -> tuple[Run, str]:
        client = make_client(shop)
        try:
            data = await client.query(RUN_MUTATION, {"query": bulk_query(EPOCH, None)})
            orphan = data["bulkOperationRunQuery"]["bulkOperation"]["id"]
            return await Run().drain(client), orphan
        finally:
            await client.aclose()

    run, orphan = asyncio.run(main())
    assert run.started == [orphan]
    assert {o.id for o in run.orders} == {str(i) for i in ids}
    assert bulk_runs(shop) == 1


# --- resume -------------------------------------------------------------------------------------


def test_resume_after_a_crash_polls_the_saved_job_and_starts_none(shop: ShopSim) -> None:
    ids = make_orders(shop, 40)
    saved: list[str] = []

    def save_then_die(op_id: str) -> None:
        saved.append(op_id)
        raise Crash

    async def crash() -> None:
        client = make_client(shop)
        try:
            await Run().drain(client, on_started=save_then_die)
        finally:
            await client.aclose()

    with pytest.raises(Crash):
        asyncio.run(crash())
    assert bulk_runs(shop) == 1

    async def resume() -> Run:
        client = make_client(shop)
        try:
            return await Run().drain(client, resume=saved[0])
        finally:
            await client.aclose()

    before = len(shop.request_log)
    run = asyncio.run(resume())
    assert {o.id for o in run.orders} == {str(i) for i in ids}
    assert run.started == []  # nothing new to save
    assert bulk_runs(shop) == 1
    fields = [f for entry in shop.request_log[before:] for f in entry.get("fields", [])]
    assert "bulkOperationRunQuery" not in fields
    assert fields.count("node") == len(run.progress) >= 1  # it polled the saved job


def test_resume_mid_download_reads_the_finished_file_again(shop: ShopSim) -> None:
    ids = make_orders(shop, 3 * BATCH)

    async def main() -> tuple[Run, Run]:
        client = make_client(shop)
        try:
            first = await Run().drain(client, stop_after=1)  # the process dies after one batch
            second = await Run().drain(client, resume=first.started[0])
            return first, second
        finally:
            await client.aclose()

    first, second = asyncio.run(main())
    assert len(first.orders) == BATCH
    assert {o.id for o in second.orders} == {str(i) for i in ids}  # duplicates, never gaps
    assert bulk_runs(shop) == 1


def test_resume_of_an_unknown_job_starts_a_new_one(shop: ShopSim) -> None:
    ids = make_orders(shop, 5)

    async def main() -> Run:
        client = make_client(shop)
        try:
            return await Run().drain(client, resume="gid://shopify/BulkOperation/999999999")
        finally:
            await client.aclose()

    run = asyncio.run(main())
    assert len(run.started) == 1 and run.started[0] != "gid://shopify/BulkOperation/999999999"
    assert {o.id for o in run.orders} == {str(i) for i in ids}


def test_resume_of_a_job_for_another_window_starts_a_new_one(shop: ShopSim) -> None:
    make_orders(shop, 5)

    async def main() -> tuple[Run, Run]:
        client = make_client(shop)
        try:
            old = await Run().drain(client, since=T0 + timedelta(days=1))
            new = await Run().drain(client, resume=old.started[0])
            return old, new
        finally:
            await client.aclose()

    old, new = asyncio.run(main())
    assert old.orders == [] and len(new.orders) == 5
    assert len(new.started) == 1 and new.started != old.started


def test_an_expired_result_url_is_replaced_by_a_new_job(shop: ShopSim, clock: WallClock) -> None:
    ids = make_orders(shop, 5)

    async def main() -> tuple[Run, Run]:
        client = make_client(shop)
        try:
            first = await Run().drain(client)
            clock.now += timedelta(days=8)  # result URLs live 7 days after completion
            second = await Run().drain(client, resume=first.started[0])
            return first, second
        finally:
            await client.aclose()

    first, second = asyncio.run(main())
    assert {o.id for o in second.orders} == {str(i) for i in ids}
    assert len(second.started) == 1 and second.started != first.started
    assert bulk_runs(shop) == 2


# --- the JSONL format (recorded files) ----------------------------------------------------------


def lines(name: str) -> Iterator[str]:
    with (FIXTURES / name).open(encoding="utf-8") as handle:
        yield from handle


def test_recorded_nested_children_are_regrouped_under_their_parents() -> None:
    [order] = list(regroup_lines(STORE, lines("bulk_orders_fulfillment_orders.jsonl")))
    assert order["id"] == "gid://shopify/Order/1"
    [fulfillment] = order["fulfillmentOrders"]["nodes"]
    assert fulfillment["id"] == "gid://shopify/FulfillmentOrder/2"
    assert "__parentId" not in fulfillment
    assert [n["id"] for n in fulfillment["fulfillmentOrderLineItems"]["nodes"]] == [
        "gid://shopify/FulfillmentOrderLineItem/3"
    ]
    assert [n["kind"] for n in fulfillment["fulfillmentOrderMerchantRequests"]["nodes"]] == [
        "FULFILLMENT_REQUEST"
    ]


def test_recorded_inline_lists_stay_inline() -> None:
    [order] = list(regroup_lines(STORE, lines("bulk_orders_transactions.jsonl")))
    assert [t["kind"] for t in order["transactions"]] == ["SALE", "REFUND"]


def test_a_child_of_another_order_is_refused_with_its_line_number() -> None:
    text = list(lines("bulk_orders_fulfillment_orders.jsonl"))
    other = json.dumps({"id": "gid://shopify/Order/9"}) + "\n"
    shuffled = [text[0], text[1], other, text[2]]  # a grandchild after the next order
    with pytest.raises(BulkFileError, match="line 4") as caught:
        list(regroup_lines(STORE, iter(shuffled)))
    assert "FulfillmentOrder/2" in str(caught.value) and "Order/9" in str(caught.value)


def test_orphans_and_garbage_lines_are_refused() -> None:
    orphan = json.dumps({"id": "gid://shopify/LineItem/1", "__parentId": "gid://shopify/Order/1"})
    with pytest.raises(BulkFileError, match="line 1"):
        Regrouper(STORE).feed(orphan)
    grouper = Regrouper(STORE)
    grouper.feed('{"id": "gid://shopify/Order/1"}')
    with pytest.raises(BulkFileError, match="line 2: not JSON"):
        grouper.feed("{truncated")
    with pytest.raises(BulkFileError, match="not a JSON object"):
        grouper.feed("[1, 2]")


def test_line_items_of_an_order_land_where_the_normaliser_reads_them() -> None:
    text = [
        json.dumps(
            {
                "id": "gid://shopify/Order/5",
                "legacyResourceId": "5",
                "name": "#1005",
                "createdAt": "2026-11-22T09:00:00Z",
                "updatedAt": "2026-11-22T09:00:00Z",
                "displayFinancialStatus": "PAID",
                "totalPriceSet": {"shopMoney": {"amount": "5.0", "currencyCode": "USD"}},
            }
        ),
        json.dumps(
            {
                "name": "Mug",
                "quantity": 2,
                "originalTotalSet": {"shopMoney": {"amount": "5.0", "currencyCode": "USD"}},
                "__parentId": "gid://shopify/Order/5",
            }
        ),
    ]
    [node] = list(regroup_lines(STORE, iter(text)))
    order = normalize_order(node, store=STORE, shop=SHOP)
    assert [(i.name, i.quantity, i.total) for i in order.line_items] == [("Mug", 2, "5.00")]


def recorded(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def test_recorded_job_states_are_read() -> None:
    failed = Operation.from_node(
        recorded("graphql_bulk_node_failed_partial_data.json")["data"]["node"]
    )
    assert (failed.status, failed.error_code, failed.object_count) == (
        "FAILED",
        "INTERNAL_SERVER_ERROR",
        432,
    )
    assert failed.partial_url and failed.url is None
    done = Operation.from_node(recorded("graphql_bulk_node_completed.json")["data"]["node"])
    assert done.status == "COMPLETED" and done.url and done.object_count == 0
    busy = recorded("graphql_bulk_run_query_already_in_progress.json")
    messages = [e["message"] for e in busy["data"]["bulkOperationRunQuery"]["userErrors"]]
    found = [m.group(1) for text in messages if (m := IN_PROGRESS.search(text))]
    assert found == ["gid://shopify/BulkOperation/4046676525245"]
