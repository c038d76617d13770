"""Pins the Shopify behaviour `pollerd_sim.ShopSim` must reproduce (brief `shopsim.md`,
research/shopify.md, fixtures `shared/fixtures/shopify/`), over real HTTP on loopback.

Time is injected: `Wall` is the sim's clock for createdAt/updatedAt/index lag and `Mono` drives
the leaky buckets and bulk completion, so nothing here sleeps to synchronise."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from pollerd_sim import ShopSim, shop_graphql
from pollerd_sim.shop_bulk import flatten

TOKEN = "shpat_sim_token"
T0 = datetime(2026, 11, 22, 9, 32, 36, tzinfo=UTC)
GQL = "/admin/api/2026-10/graphql.json"
INVALID = {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}


class Wall:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float = 1) -> None:
        self.now += timedelta(seconds=seconds)


class Mono:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def tick(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def wall() -> Wall:
    return Wall()


@pytest.fixture
def mono() -> Mono:
    return Mono()


@pytest.fixture
def sim(wall: Wall, mono: Mono) -> Iterator[ShopSim]:
    with ShopSim(clock=wall, monotonic=mono) as s:
        yield s


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def gql(
    http: httpx.Client,
    sim: ShopSim,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    path: str = GQL,
    token: str | None = TOKEN,
) -> httpx.Response:
    headers = {"X-Shopify-Access-Token": token} if token else {}
    return http.post(sim.url + path, json={"query": query, "variables": variables}, headers=headers)


def data(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert response.status_code == 200, body
    assert "errors" not in body, body
    return body["data"]


def cost(response: httpx.Response) -> dict[str, Any]:
    return response.json()["extensions"]["cost"]


def ids_of(conn: dict[str, Any]) -> list[int]:
    return [int(n["legacyResourceId"]) for n in conn["nodes"]]


ORDERS_BY = """query($q: String, $after: String, $n: Int = 250, $sort: OrderSortKeys = UPDATED_AT) {
  orders(first: $n, after: $after, query: $q, sortKey: $sort) {
    nodes { legacyResourceId updatedAt displayFinancialStatus }
    pageInfo { hasNextPage hasPreviousPage endCursor }
  }
}"""


def listed(http: httpx.Client, sim: ShopSim, q: str | None = None, **kw: Any) -> list[int]:
    return ids_of(data(gql(http, sim, ORDERS_BY, {"q": q, **kw}))["orders"])


# --- transport, versions, auth -------------------------------------------------------------------


def test_versions_fall_forward_and_the_header_names_the_one_served(
    sim: ShopSim, http: httpx.Client
) -> None:
    q = "{ shop { myshopifyDomain } }"
    asked = gql(http, sim, q, path="/admin/api/2026-07/graphql.json")
    retired = gql(http, sim, q, path="/admin/api/2024-01/graphql.json")
    assert asked.headers["X-Shopify-API-Version"] == "2026-07"
    assert retired.headers["X-Shopify-API-Version"] == "2026-01"  # oldest supported, no error
    assert data(retired) == {"shop": {"myshopifyDomain": "acme.myshopify.com"}}


@pytest.mark.parametrize("token", [None, "shpat_wrong"])
def test_a_missing_or_wrong_token_is_401_with_shopifys_body(
    sim: ShopSim, http: httpx.Client, token: str | None
) -> None:
    response = gql(http, sim, "{ shop { name } }", token=token)
    assert response.status_code == 401
    assert response.json() == INVALID


def test_client_credentials_tokens_work_until_they_expire_or_are_revoked(
    wall: Wall, http: httpx.Client
) -> None:
    with ShopSim(
        access_token=None, client_id="cid", client_secret="csecret", token_ttl=3600, clock=wall
    ) as sim:
        url = sim.url + "/admin/oauth/access_token"
        bad = http.post(
            url,
            data={"grant_type": "client_credentials", "client_id": "cid", "client_secret": "nope"},
        )
        assert bad.status_code == 400 and bad.json()["error"] == "invalid_client"
        form = http.post(
            url,
            data={
                "grant_type": "client_credentials",
                "client_id": "cid",
                "client_secret": "csecret",
            },
        ).json()
        assert form["access_token"].startswith("shpat_") and form["expires_in"] == 3599
        assert form["scope"] == "read_orders,read_shopify_payments_disputes"
        as_json = http.post(
            url,
            json={
                "grant_type": "client_credentials",
                "client_id": "cid",
                "client_secret": "csecret",
            },
        ).json()
        assert gql(http, sim, "{ shop { name } }", token=form["access_token"]).status_code == 200
        assert gql(http, sim, "{ shop { name } }", token=TOKEN).status_code == 401  # no static
        wall.tick(3600)
        assert gql(http, sim, "{ shop { name } }", token=form["access_token"]).status_code == 401
        fresh = http.post(
            url,
            json={
                "grant_type": "client_credentials",
                "client_id": "cid",
                "client_secret": "csecret",
            },
        ).json()["access_token"]
        assert as_json["access_token"] != fresh
        sim.expire_tokens()
        assert gql(http, sim, "{ shop { name } }", token=fresh).json() == INVALID
        assert sim.stats()["tokens_issued"] == 3


# --- cost and buckets ----------------------------------------------------------------------------


def test_requested_cost_follows_shopifys_rules_and_actual_counts_what_came_back(
    sim: ShopSim, http: httpx.Client
) -> None:
    for _ in range(3):
        sim.create_order(items=[{"name": "A", "price": "1"}, {"name": "B", "price": "2"}])
    flat = gql(http, sim, "{ orders(first: 10) { nodes { id name } } }")
    assert cost(flat)["requestedQueryCost"] == 12  # 2 + 10 × 1
    assert cost(flat)["actualQueryCost"] == 5  # 2 + 3 returned × 1
    nested = gql(
        http,
        sim,
        """{ orders(first: 5) { edges { cursor node { ...O } } pageInfo { hasNextPage } } }
        fragment O on Order { id totalPriceSet { shopMoney { amount } } customer { id }
          lineItems(first: 4) { nodes { name } } refunds { id } }""",
    )
    # one order: 1 + totalPriceSet 2 + customer 1 + lineItems (2 + 4 × 1) + refunds 1 = 11
    assert cost(nested)["requestedQueryCost"] == 2 + 5 * 11
    # returned: 3 orders, each 1 + 2 + 1 + (2 + 2 lines) + 1 = 9
    assert cost(nested)["actualQueryCost"] == 2 + 3 * 9
    mutation = gql(
        http,
        sim,
        'mutation { bulkOperationRunQuery(query: "{ orders { edges '
        '{ node { id } } } }") { bulkOperation { id } userErrors { message } } }',
    )
    assert cost(mutation)["requestedQueryCost"] == cost(mutation)["actualQueryCost"] == 10


def test_the_bucket_reserves_refunds_and_restores_over_monotonic_time(
    sim: ShopSim, http: httpx.Client, mono: Mono
) -> None:
    sim.create_order()
    first = cost(gql(http, sim, "{ orders(first: 100) { nodes { id } } }"))
    assert first["requestedQueryCost"] == 102 and first["actualQueryCost"] == 3
    assert first["throttleStatus"] == {
        "maximumAvailable": 2000.0,
        "currentlyAvailable": 1997,
        "restoreRate": 100.0,
    }
    sim.consume(1500)
    assert cost(gql(http, sim, "{ shop { name } }"))["throttleStatus"]["currentlyAvailable"] == 496
    mono.tick(2.5)  # 250 points back
    assert cost(gql(http, sim, "{ shop { name } }"))["throttleStatus"]["currentlyAvailable"] == 745
    mono.tick(3600)
    assert sim.bucket.available == 2000.0  # capped at maximumAvailable


@pytest.mark.parametrize("status", [200, 429])
def test_a_query_dearer_than_the_bucket_is_throttled_with_the_configured_status(
    wall: Wall, mono: Mono, http: httpx.Client, status: int
) -> None:
    with ShopSim(
        clock=wall, monotonic=mono, bucket=1000, restore=50, throttle_status=status
    ) as sim:
        sim.consume(300)
        response = gql(
            http,
            sim,
            "{ orders(first: 150) { nodes { id lineItems(first: 2) { nodes { id } } } } }",
        )
        body = response.json()
        assert response.status_code == status
        assert "data" not in body
        assert body["errors"] == [
            {
                "message": "Throttled",
                "extensions": {
                    "code": "THROTTLED",
                    "documentation": "https://shopify.dev/api/usage/rate-limits",
                },
            }
        ]
        assert (
            body["extensions"]["cost"]["requestedQueryCost"] == 752
        )  # 2 + 150 × (1 + 2 + 2 × 1), the community sample's cost
        assert body["extensions"]["cost"]["actualQueryCost"] is None
        assert body["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 700
        assert sim.request_log[-1]["throttled"] and sim.stats()["throttled"] == 1
        assert ("Retry-After" in response.headers) == (status == 429)


def test_single_query_cost_above_1000_is_refused_and_not_charged(
    sim: ShopSim, http: httpx.Client
) -> None:
    response = gql(
        http, sim, "{ orders(first: 250) { nodes { lineItems(first: 10) { nodes { id } } } } }"
    )
    body = response.json()
    requested = 2 + 250 * (1 + 2 + 10)
    assert response.status_code == 200 and "data" not in body
    assert body["errors"][0]["message"].startswith(
        f"Query cost is {requested}, which exceeds the single query max cost limit (1000)"
    )
    assert body["errors"][0]["extensions"] == {
        "code": "MAX_COST_EXCEEDED",
        "cost": requested,
        "maxCost": 1000,
    }
    assert body["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 2000


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("{ orders { nodes { id } } }", "you must provide one of first or last"),
        ("{ orders(first: 251) { nodes { id } } }", "Argument 'first' on Field 'orders'"),
    ],
)
def test_connections_need_a_page_size_of_at_most_250(
    sim: ShopSim, http: httpx.Client, query: str, message: str
) -> None:
    body = gql(http, sim, query).json()
    assert body["data"] is None
    assert body["errors"][0]["message"].startswith(message)
    assert body["errors"][0]["path"] == ["orders"]


def test_an_invalid_document_is_200_with_errors_and_costs_nothing(
    sim: ShopSim, http: httpx.Client
) -> None:
    response = gql(http, sim, "{ orders(first: 1) { nodes { nosuchfield } } }")
    assert response.status_code == 200
    assert "nosuchfield" in response.json()["errors"][0]["message"]
    assert cost(response)["throttleStatus"]["currentlyAvailable"] == 2000
    syntax = gql(http, sim, "{ orders(first: 1) { nodes { id }")
    assert syntax.status_code == 200 and "Syntax Error" in syntax.json()["errors"][0]["message"]


# --- orders: sorting, clusters, search, index lag -------------------------------------------------


def test_a_cluster_sharing_one_updated_at_pages_by_id_without_loss(
    sim: ShopSim, http: httpx.Client
) -> None:
    ids = [sim.create_order() for _ in range(7)]
    sim.set_updated(reversed(ids), T0 + timedelta(minutes=5))
    seen: list[int] = []
    after = None
    while True:
        page = data(gql(http, sim, ORDERS_BY, {"n": 3, "after": after}))["orders"]
        seen += ids_of(page)
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == ids  # ties broken by id, every order exactly once
    decoded = json.loads(base64.b64decode(after))
    assert decoded == {"last_id": ids[5], "last_value": "2026-11-22 09:37:36.000000"}


def test_sort_keys_reverse_and_backward_paging(
    sim: ShopSim, http: httpx.Client, wall: Wall
) -> None:
    a = sim.create_order()
    wall.tick(10)
    b = sim.create_order()
    wall.tick(10)
    sim.touch(a)  # a is now the most recently updated
    assert listed(http, sim, sort="UPDATED_AT") == [b, a]
    assert listed(http, sim, sort="CREATED_AT") == [a, b]
    assert listed(http, sim, sort="ID") == [a, b]
    reverse = data(
        gql(
            http,
            sim,
            "{ orders(first: 5, reverse: true, sortKey: ID) { nodes { legacyResourceId } } }",
        )
    )["orders"]
    assert ids_of(reverse) == [b, a]
    end = data(gql(http, sim, "{ orders(first: 1, sortKey: ID) { pageInfo { endCursor } } }"))
    back = data(
        gql(
            http,
            sim,
            "query($c: String) { orders(last: 5, before: $c, sortKey: ID) "
            "{ nodes { legacyResourceId } pageInfo { hasNextPage hasPreviousPage } } }",
            {"c": end["orders"]["pageInfo"]["endCursor"]},
        )
    )["orders"]
    assert ids_of(back) == []  # nothing before the first order
    assert back["pageInfo"] == {"hasNextPage": True, "hasPreviousPage": False}


def test_search_terms_quoting_and_connectives(sim: ShopSim, http: httpx.Client, wall: Wall) -> None:
    old = sim.create_order()
    wall.tick(3600)
    paid = sim.create_order(financial="PAID")
    test = sim.create_order(test=True)
    gone = sim.create_order()
    sim.cancel(gone, reason="FRAUD")
    since = "'2026-11-22T10:00:00Z'"
    assert listed(http, sim, f"updated_at:>={since}") == [paid, test, gone]
    assert listed(http, sim, f"updated_at:<{since}") == [old]
    # an unquoted date-time is split at its colons by Shopify: the term filters nothing
    assert listed(http, sim, "updated_at:>=2026-11-22T10:00:00Z") == [old, paid, test, gone]
    assert listed(http, sim, "created_at:>2026-11-23") == []  # a bare date works
    assert listed(http, sim, "test:true") == [test]
    assert listed(http, sim, "financial_status:paid") == [paid]
    assert listed(http, sim, "status:cancelled") == [gone]
    assert listed(http, sim, "status:open") == [old, paid, test]
    assert listed(http, sim, "financial_status:paid OR test:true") == [paid, test]
    assert listed(http, sim, f"test:false AND created_at:>={since} -status:cancelled") == [paid]
    assert listed(http, sim, f"id:>={test}") == [test, gone]


def test_index_lag_hides_changes_from_updated_at_but_not_from_other_paths(
    wall: Wall, mono: Mono, http: httpx.Client
) -> None:
    with ShopSim(clock=wall, monotonic=mono, index_lag=30) as sim:
        since = "updated_at:>='2026-11-22T00:00:00Z'"
        new = sim.create_order()
        assert listed(http, sim, since) == []  # not indexed yet
        assert listed(http, sim, "created_at:>='2026-11-22T00:00:00Z'", sort="ID") == [new]
        nodes = data(
            gql(
                http,
                sim,
                "query($i: [ID!]!) { nodes(ids: $i) { ... on Order { legacyResourceId } } }",
                {"i": [f"gid://shopify/Order/{new}"]},
            )
        )
        assert nodes == {"nodes": [{"legacyResourceId": str(new)}]}
        wall.tick(30)
        assert listed(http, sim, since) == [new]
        sim.pay(new)  # at 09:33:06; the index still holds the 09:32:36 version
        later = "updated_at:>='2026-11-22T09:33:00Z'"
        assert listed(http, sim, later) == []
        page = data(gql(http, sim, ORDERS_BY, {"q": since}))["orders"]["nodes"]
        assert page == [
            {
                "legacyResourceId": str(new),
                "updatedAt": "2026-11-22T09:33:06Z",
                "displayFinancialStatus": "PAID",
            }
        ]  # nodes carry current data
        mono.tick(30)  # real waiting works too
        assert listed(http, sim, later) == [new]


def test_orders_older_than_60_days_are_absent_without_read_all_orders(
    wall: Wall, http: httpx.Client
) -> None:
    for scopes, visible in ((("read_orders",), False), (("read_orders", "read_all_orders"), True)):
        with ShopSim(clock=wall, scopes=scopes) as sim:
            old = sim.create_order(created_at=T0 - timedelta(days=61))
            recent = sim.create_order()
            assert listed(http, sim, sort="ID") == ([old, recent] if visible else [recent])
            node = data(gql(http, sim, f'{{ order(id: "gid://shopify/Order/{old}") {{ id }} }}'))
            assert (node["order"] is not None) == visible


# --- admin actions and ground truth --------------------------------------------------------------


def test_admin_http_api_drives_the_order_lifecycle(
    sim: ShopSim, http: httpx.Client, wall: Wall
) -> None:
    admin = sim.url + "/__sim"
    order_id = http.post(
        admin + "/orders", json={"financial": "AUTHORIZED", "total": "40.00"}
    ).json()["id"]
    steps = [
        ("pay", {}, "PAID"),
        ("refund", {"amount": "15"}, "PARTIALLY_REFUNDED"),
        ("refund", {"amount": "25.00"}, "REFUNDED"),
    ]
    for action, payload, financial in steps:
        wall.tick(1)
        assert http.post(f"{admin}/orders/{order_id}/{action}", json=payload).status_code == 200
        truth = sim.order(order_id)
        assert truth["displayFinancialStatus"] == financial
        assert truth["updatedAt"] == (wall.now).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert truth["totalRefundedSet"]["shopMoney"] == {"amount": "40.0", "currencyCode": "USD"}
    assert truth["currentTotalPriceSet"]["shopMoney"]["amount"] == "0.0"
    assert len(truth["refunds"]) == 2
    over = http.post(f"{admin}/orders/{order_id}/refund", json={"amount": "1"})
    assert over.status_code == 400
    wall.tick(1)
    http.post(f"{admin}/orders/{order_id}/cancel", json={"reason": "INVENTORY"})
    http.post(f"{admin}/orders/{order_id}/fulfill")
    truth = sim.order(order_id)
    assert truth["cancelReason"] == "INVENTORY" and truth["closed"] is True
    assert truth["cancelledAt"] == truth["closedAt"] == "2026-11-22T09:32:40Z"
    assert truth["displayFulfillmentStatus"] == "FULFILLED"
    before = {k: v for k, v in truth.items() if k != "updatedAt"}
    wall.tick(5)
    http.post(f"{admin}/orders/{order_id}/touch")
    touched = sim.order(order_id)
    assert touched["updatedAt"] == "2026-11-22T09:32:45Z"
    assert {k: v for k, v in touched.items() if k != "updatedAt"} == before
    assert http.post(f"{admin}/orders/{order_id}/void").status_code == 400  # not AUTHORIZED
    assert http.post(f"{admin}/orders/999/pay").status_code == 404
    assert http.post(f"{admin}/orders/{order_id}/delete").status_code == 200
    with pytest.raises(KeyError):
        sim.order(order_id)
    assert http.get(f"{admin}/stats").json()["orders"] == 0


def test_ground_truth_matches_what_graphql_returns(sim: ShopSim, http: httpx.Client) -> None:
    order_id = sim.create_order(
        financial="PAID",
        total="12.50",
        currency="EUR",
        items=[{"name": "Tea", "quantity": 2, "price": "6.25", "sku": "TEA"}],
    )
    got = data(
        gql(
            http,
            sim,
            f"""{{ order(id: "gid://shopify/Order/{order_id}") {{
        id legacyResourceId name createdAt updatedAt displayFinancialStatus currencyCode test
        totalPriceSet {{ shopMoney {{ amount currencyCode }} presentmentMoney {{ amount }} }}
        customer {{ displayName }} paymentGatewayNames
        lineItems(first: 5) {{ nodes {{ name quantity sku originalTotalSet {{ shopMoney {{
        amount }} }} }} }} }} }}""",
        )
    )["order"]
    truth = sim.order(order_id)
    for key in (
        "id",
        "legacyResourceId",
        "name",
        "createdAt",
        "updatedAt",
        "currencyCode",
        "displayFinancialStatus",
        "test",
        "paymentGatewayNames",
    ):
        assert got[key] == truth[key]
    assert got["name"] == "#1001" and got["legacyResourceId"] == "5273485869312"
    assert got["totalPriceSet"] == {
        "shopMoney": {"amount": "12.5", "currencyCode": "EUR"},
        "presentmentMoney": {"amount": "12.5"},
    }
    assert got["customer"] == {"displayName": "Ada Lovelace"}
    assert got["lineItems"]["nodes"] == [
        {
            "name": "Tea",
            "quantity": 2,
            "sku": "TEA",
            "originalTotalSet": {"shopMoney": {"amount": "12.5"}},
        }
    ]


def test_nodes_reject_bad_ids_and_more_than_250(sim: ShopSim, http: httpx.Client) -> None:
    bad = gql(http, sim, '{ nodes(ids: ["nope"]) { id } }').json()
    assert bad["errors"][0]["message"] == "Invalid global id 'nope'"
    many = [f"gid://shopify/Order/{i}" for i in range(251)]
    too_many = gql(http, sim, "query($i: [ID!]!) { nodes(ids: $i) { id } }", {"i": many}).json()
    assert "251" in too_many["errors"][0]["message"]
    missing = data(gql(http, sim, '{ nodes(ids: ["gid://shopify/Order/1"]) { id } }'))
    assert missing == {"nodes": [None]}


# --- deletions and disputes ----------------------------------------------------------------------


def test_a_deleted_order_leaves_a_destroy_event_listed_after_the_event_lag(
    wall: Wall, mono: Mono, http: httpx.Client
) -> None:
    with ShopSim(clock=wall, monotonic=mono, event_lag=10) as sim:
        keep, gone = sim.create_order(), sim.create_order()
        sim.delete(gone)
        assert listed(http, sim) == [keep]
        q = """{ events(first: 10, query: "subject_type:ORDER AND action:destroy") { nodes {
            id action message createdAt ... on BasicEvent { subjectId subjectType } } } }"""
        assert data(gql(http, sim, q))["events"]["nodes"] == []
        wall.tick(10)
        events = data(gql(http, sim, q))["events"]["nodes"]
        assert events == [
            {
                "id": events[0]["id"],
                "action": "destroy",
                "message": "Order #1002 was deleted.",
                "createdAt": "2026-11-22T09:32:36Z",
                "subjectId": f"gid://shopify/Order/{gone}",
                "subjectType": "ORDER",
            }
        ]
        rest = http.get(
            sim.url + "/admin/api/2026-10/events.json",
            params={"filter": "Order", "verb": "destroy", "created_at_min": "2026-11-22T00:00:00Z"},
            headers={"X-Shopify-Access-Token": TOKEN},
        ).json()["events"]
        assert [(e["subject_id"], e["verb"], e["subject_type"]) for e in rest] == [
            (gone, "destroy", "Order")
        ]


DISPUTES = """query($q: String) { disputes(first: 10, query: $q) { nodes { legacyResourceId status
  type amount { amount currencyCode } reasonDetails { reason } initiatedAt evidenceSentOn
  finalizedOn order { legacyResourceId } } } }"""


def test_disputes_are_listed_filtered_and_change_status(
    sim: ShopSim, http: httpx.Client, wall: Wall
) -> None:
    order_id = sim.create_order(financial="PAID")
    dispute = sim.add_dispute(order_id, "25.00")
    wall.tick(86400)
    sim.set_dispute_status(dispute, "UNDER_REVIEW")
    inquiry = sim.add_dispute(order_id, "5", type="INQUIRY", reason="PRODUCT_NOT_RECEIVED")
    nodes = data(gql(http, sim, DISPUTES))["disputes"]["nodes"]
    assert nodes[0] == {
        "legacyResourceId": str(dispute),
        "status": "UNDER_REVIEW",
        "type": "CHARGEBACK",
        "amount": {"amount": "25.0", "currencyCode": "USD"},
        "reasonDetails": {"reason": "FRAUDULENT"},
        "initiatedAt": "2026-11-22T09:32:36Z",
        "evidenceSentOn": "2026-11-23",
        "finalizedOn": None,
        "order": {"legacyResourceId": str(order_id)},
    }
    assert [
        n["legacyResourceId"]
        for n in data(gql(http, sim, DISPUTES, {"q": "status:needs_response"}))["disputes"]["nodes"]
    ] == [str(inquiry)]
    recent = data(gql(http, sim, DISPUTES, {"q": "initiated_at:>='2026-11-23T00:00:00Z'"}))
    assert len(recent["disputes"]["nodes"]) == 1
    sim.set_dispute_status(dispute, "WON")
    assert data(gql(http, sim, DISPUTES))["disputes"]["nodes"][0]["finalizedOn"] == "2026-11-23"


def test_disputes_without_the_scope_are_access_denied_with_null_data(
    http: httpx.Client,
) -> None:
    with ShopSim(scopes=("read_orders",)) as sim:
        body = gql(http, sim, DISPUTES).json()
        assert body["data"] == {"disputes": None}
        assert body["errors"][0]["extensions"]["code"] == "ACCESS_DENIED"
        assert body["errors"][0]["message"] == (
            "Access denied for disputes field. Required access: "
            "`read_shopify_payments_disputes` access scope."
        )


# --- bulk operations -----------------------------------------------------------------------------

RUN = """mutation($q: String!) { bulkOperationRunQuery(query: $q) {
  bulkOperation { id status } userErrors { field message } } }"""
POLL = """query($id: ID!) { node(id: $id) { ... on BulkOperation { id status errorCode objectCount
  rootObjectCount fileSize url partialDataUrl } } }"""
BULK_Q = """{ orders(query: "created_at:>='2026-01-01T00:00:00Z'") { edges { node { id name
  lineItems { edges { node { name } } } } } } }"""


def test_a_bulk_operation_runs_once_at_a_time_and_serves_jsonl_with_parent_ids(
    sim: ShopSim, http: httpx.Client, mono: Mono, wall: Wall
) -> None:
    orders = [sim.create_order(items=[{"name": f"L{i}a"}, {"name": f"L{i}b"}]) for i in range(3)]
    started = data(gql(http, sim, RUN, {"q": BULK_Q}))["bulkOperationRunQuery"]
    op = started["bulkOperation"]
    assert started["userErrors"] == [] and op["status"] == "CREATED"
    refused = data(gql(http, sim, RUN, {"q": BULK_Q}))["bulkOperationRunQuery"]
    assert refused["bulkOperation"] is None
    assert refused["userErrors"] == [
        {
            "field": None,
            "message": "A bulk query operation for this "
            f"app and shop is already in progress: {op['id']}.",
        }
    ]
    assert data(gql(http, sim, POLL, {"id": op["id"]}))["node"]["status"] == "RUNNING"
    mono.tick(0.5)
    node = data(gql(http, sim, POLL, {"id": op["id"]}))["node"]
    assert node["status"] == "COMPLETED" and node["objectCount"] == "9"
    assert node["rootObjectCount"] == "3" and node["partialDataUrl"] is None
    body = http.get(node["url"])
    assert body.status_code == 200 and int(node["fileSize"]) == len(body.content)
    assert "gid:\\/\\/shopify" in body.text  # slashes escaped as in the fixtures
    lines = [json.loads(line) for line in body.text.splitlines()]
    parent = f"gid://shopify/Order/{orders[0]}"
    assert lines[0] == {"id": parent, "name": "#1001"}
    assert lines[1] == {"name": "L0a", "__parentId": parent}
    assert lines[2] == {"name": "L0b", "__parentId": parent}
    assert sum(1 for line in lines if "__parentId" not in line) == 3
    assert sim.stats()["bulk_started"] == 1
    wall.tick(7 * 86400)
    expired = http.get(node["url"])
    assert expired.status_code == 403 and "<Code>ExpiredToken</Code>" in expired.text


def test_a_large_shop_is_exported_chunk_by_chunk_with_the_same_lines(
    sim: ShopSim, http: httpx.Client, mono: Mono, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A million-order export reads its rows a chunk at a time (so the Admin API keeps
    answering meanwhile); chunked or not, the lines are the same and children follow their
    parent; the operation is not COMPLETED before every row is read."""
    for i in range(7):
        sim.create_order(items=[{"name": f"L{i}"}])
    api = sim.graphql
    document, walker, problem = api.prepare_bulk(BULK_Q)
    assert document is not None and walker is not None and not problem
    whole = [flatten(api, document, walker, d or {}) for d in api.execute_bulk(document)]
    parts = [flatten(api, document, walker, d or {}) for d in api.execute_bulk(document, chunk=3)]
    assert len(whole) == 1 and len(parts) == 3  # 3 + 3 + 1 orders
    assert sorted(line for lines, _ in parts for line in lines) == sorted(whole[0][0])
    assert sum(roots for _, roots in parts) == whole[0][1] == 7
    for lines, _ in parts:  # each chunk's line item right after its order
        assert all("__parentId" in json.loads(b) for b in lines[1::2])
    runner = sim.bulk
    monkeypatch.setattr(shop_graphql, "BULK_CHUNK", 3)  # a "large" shop: read by a thread
    gate = threading.Event()
    reading = runner._read
    runner._read = lambda *args: (gate.wait(10), reading(*args))  # type: ignore[method-assign]
    started = runner.run_query(BULK_Q)
    mono.tick(1)
    op = started["bulkOperation"]["id"]
    assert data(gql(http, sim, POLL, {"id": op}))["node"]["status"] == "RUNNING"
    gate.set()
    runner.ops[int(op.rsplit("/", 1)[-1])].read.wait(10)
    assert data(gql(http, sim, POLL, {"id": op}))["node"]["objectCount"] == "14"


def test_a_failed_bulk_operation_offers_half_the_rows_as_partial_data(
    sim: ShopSim, http: httpx.Client, mono: Mono
) -> None:
    for _ in range(4):
        sim.create_order()
    sim.fail_next_bulk(partial=True)
    op = data(gql(http, sim, RUN, {"q": "{ orders { nodes { id } } }"}))
    mono.tick(1)
    node = data(gql(http, sim, POLL, {"id": op["bulkOperationRunQuery"]["bulkOperation"]["id"]}))
    node = node["node"]
    assert (node["status"], node["errorCode"], node["url"]) == (
        "FAILED",
        "INTERNAL_SERVER_ERROR",
        None,
    )
    partial = http.get(node["partialDataUrl"]).text.splitlines()
    assert len(partial) == 2 and node["objectCount"] == "2"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("{ shop { name } }", "Bulk queries must contain at least one connection."),
        ("{ orders { nodes { nope } } }", "Invalid bulk query: Cannot query field 'nope'"),
    ],
)
def test_bulk_queries_are_parsed_and_validated(
    sim: ShopSim, http: httpx.Client, query: str, message: str
) -> None:
    refused = data(gql(http, sim, RUN, {"q": query}))["bulkOperationRunQuery"]
    assert refused["bulkOperation"] is None
    assert refused["userErrors"][0]["message"].startswith(message)
    assert sim.stats()["bulk_started"] == 0


# --- REST ----------------------------------------------------------------------------------------


def rest(http: httpx.Client, sim: ShopSim, url: str, **params: Any) -> httpx.Response:
    if not url.startswith("http"):
        url = f"{sim.url}/admin/api/2026-10/{url}"
    return http.get(url, params=params or None, headers={"X-Shopify-Access-Token": TOKEN})


def test_rest_orders_default_to_open_and_page_with_frozen_filters(
    sim: ShopSim, http: httpx.Client, wall: Wall
) -> None:
    ids = [sim.create_order() for _ in range(5)]
    wall.tick(1)
    sim.cancel(ids[0])
    assert [o["id"] for o in rest(http, sim, "orders.json").json()["orders"]] == ids[:0:-1]
    first = rest(
        http,
        sim,
        "orders.json",
        status="any",
        order="updated_at asc",
        limit=2,
        updated_at_min="2026-11-22T00:00:00Z",
    )
    assert first.headers["X-Shopify-Shop-Api-Call-Limit"] == "2/40"
    assert first.headers["X-Shopify-API-Version"] == "2026-10"
    seen = [o["id"] for o in first.json()["orders"]]
    link = first.headers["Link"]
    assert 'rel="next"' in link and 'rel="previous"' not in link
    while 'rel="next"' in link:
        nxt = link.split(", ")[-1].split(";")[0].strip("<>")
        assert "status" not in nxt and "page_info=" in nxt
        page = rest(http, sim, nxt)
        seen += [o["id"] for o in page.json()["orders"]]
        link = page.headers.get("Link", "")
    assert seen == [ids[1], ids[2], ids[3], ids[4], ids[0]]  # cancel bumped ids[0]
    order = rest(http, sim, f"orders/{ids[0]}.json").json()["order"]
    assert (order["financial_status"], order["cancel_reason"], order["total_price"]) == (
        "pending",
        "customer",
        "25.00",
    )
    tampered = rest(http, sim, nxt + "&status=any")
    assert tampered.status_code == 400 and "page_info" in tampered.json()["errors"]
    assert rest(http, sim, "orders.json", limit=251).status_code == 400


def test_rest_call_limit_bucket_answers_429_then_leaks(
    wall: Wall, mono: Mono, http: httpx.Client
) -> None:
    with ShopSim(clock=wall, monotonic=mono, rest_bucket=3, rest_leak=2.0) as sim:
        used = [
            rest(http, sim, "orders.json").headers["X-Shopify-Shop-Api-Call-Limit"]
            for _ in range(3)
        ]
        assert used == ["1/3", "2/3", "3/3"]
        over = rest(http, sim, "orders.json")
        assert over.status_code == 429 and over.headers["Retry-After"] == "2.0"
        assert over.json()["errors"].startswith("Exceeded 2 calls per second for api client.")
        mono.tick(1)
        assert rest(http, sim, "orders.json").headers["X-Shopify-Shop-Api-Call-Limit"] == "2/3"


# --- faults --------------------------------------------------------------------------------------


def test_faults_are_served_in_order_then_the_store_answers_again(
    sim: ShopSim, http: httpx.Client
) -> None:
    sim.create_order()
    q = "{ orders(first: 5) { nodes { id } } }"
    sim.add_fault("500")
    sim.add_fault("502", retry_after=3)
    sim.add_fault("throttled")
    sim.add_fault("internal")
    sim.add_fault("slow", delay=0.05)
    failed = gql(http, sim, q)
    assert failed.status_code == 500 and failed.json() == {"errors": "Internal Server Error"}
    gateway = gql(http, sim, q)
    assert gateway.status_code == 502 and gateway.headers["Retry-After"] == "3"
    assert gateway.headers["Content-Type"].startswith("text/html")
    throttled = gql(http, sim, q).json()  # the bucket is full, Shopify throttles anyway
    assert throttled["errors"][0]["extensions"]["code"] == "THROTTLED"
    internal = gql(http, sim, q)
    assert internal.status_code == 200
    assert internal.json()["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert "data" not in internal.json()
    assert len(data(gql(http, sim, q))["orders"]["nodes"]) == 1  # slow, then normal
    sim.add_fault("reset")
    with pytest.raises(httpx.TransportError):
        gql(http, sim, q)
    sim.add_fault("500", count=5)
    sim.clear_faults()
    assert gql(http, sim, q).status_code == 200
    assert [e["fault"] for e in sim.request_log[:5]] == [
        "500",
        "502",
        "throttled",
        "internal",
        "slow",
    ]


def test_huge_pages_answer_500_above_max_ok_page(http: httpx.Client) -> None:
    with ShopSim(max_ok_page=40) as sim:
        sim.create_order()
        assert gql(http, sim, "{ orders(first: 41) { nodes { id } } }").status_code == 500
        assert gql(http, sim, "{ orders(first: 40) { nodes { id } } }").status_code == 200


def test_request_log_records_cost_and_kind(sim: ShopSim, http: httpx.Client) -> None:
    order_id = sim.create_order()
    gql(http, sim, "{ orders(first: 2) { nodes { id } } }")
    gql(http, sim, f'{{ nodes(ids: ["gid://shopify/Order/{order_id}"]) {{ id }} }}')
    gql(http, sim, "{ events(first: 5) { nodes { id } } }")
    log = http.get(sim.url + "/__sim/log").json()
    assert [(e["query_kind"], e["requested"], e["actual"]) for e in log] == [
        ("orders", 4, 3),
        ("nodes", 1, 1),
        ("events", 7, 2),
    ]
    assert log[0]["available_before"] == 2000.0 and log[0]["fields"] == ["orders"]
    stats = sim.stats()
    assert (stats["requests"], stats["points_spent"], stats["max_cost_seen"]) == (3, 6, 7)


def test_drawn_index_lags_are_recorded_and_lagging_overrides_them(
    wall: Wall, mono: Mono, http: httpx.Client
) -> None:
    """The fault suite's row 7 knobs: each change draws its own lag from the range (seeded,
    so a run repeats), `lagging` gives the changes inside it one lag, and the history says
    which lag each change got."""
    with ShopSim(clock=wall, monotonic=mono, index_lag=(1.0, 2.0), seed=3) as sim:
        since = "updated_at:>='2026-11-22T00:00:00Z'"
        quick = sim.create_order()
        with sim.lagging(30):
            slow = sim.create_order()
        lags = [c.lag for c in sim.history()]
        assert 1.0 <= lags[0] <= 2.0 and lags[1] == 30.0
        assert listed(http, sim, since) == []
        mono.tick(2)
        assert listed(http, sim, since) == [quick]  # `slow` is not indexed yet
        mono.tick(28)
        assert listed(http, sim, since) == [quick, slow]
    with ShopSim(clock=wall, monotonic=mono, index_lag=(1.0, 2.0), seed=3) as again:
        again.create_order()
        assert again.history()[0].lag == lags[0]


def test_another_app_drains_both_buckets(mono: Mono) -> None:
    """`other_app`: a steady spend from the GraphQL bucket and the REST call bucket, as much
    as they hold, counted apart from pollerd's requests."""
    with ShopSim(monotonic=mono, bucket=1000, restore=50, rest_bucket=40, rest_leak=2) as sim:
        sim.other_app(points_per_second=80, calls_per_second=5)
        mono.tick(10)  # 30 points/s and 3 calls/s more than the buckets give back
        assert sim.bucket.available == 700 and sim.rest_bucket.take() == (True, 31)
        mono.tick(30)  # dry after 23.3 s more, full after 3 s more
        assert sim.bucket.reserve(1) == (False, 0.0)
        assert sim.rest_bucket.take() == (False, 40)
        sim.other_app(0, 0)
        mono.tick(4)
        assert sim.bucket.available == 200 and sim.rest_bucket.take() == (True, 33)
        others = sim.stats()["others"]
    # 40 s asking 80/s: all of it until dry (1000 + 50/s restored), then 50/s.
    assert others["points"] == pytest.approx(1000 + 50 * 40)
    assert others["calls"] == pytest.approx(5 * 10 + 5 * 3 + 2 * 27)
