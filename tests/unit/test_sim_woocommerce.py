"""Pins every WooCommerce quirk `pollerd_sim.WooSim` must reproduce (research/woocommerce.md),
over real HTTP on loopback. Bodies are compared with the payloads recorded from a real
WooCommerce 10.0.2 (shipped in `pollerd_sim/data/`)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import pytest

from pollerd_sim import OrderStream, WooSim
from tests.support.clocks import WallClock

ORDERS = "/wp-json/wc/v3/orders"
BASIC = ("ck_sim", "cs_sim")
T0 = datetime(2026, 11, 22, 9, 32, 36, tzinfo=UTC)
NAIVE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")


def fixture(name: str) -> Any:
    return json.loads(resources.files("pollerd_sim").joinpath("data", name).read_text("utf-8"))


@pytest.fixture
def clock() -> WallClock:
    return WallClock(T0)


@pytest.fixture
def store(clock: WallClock) -> Iterator[WooSim]:
    """HTTPS detected, so plain Basic auth works (most tests are not about auth)."""
    with WooSim(https_detected=True, clock=clock) as sim:
        yield sim


@pytest.fixture
def http(store: WooSim) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=store.url, auth=BASIC, timeout=10) as client:
        yield client


def ids(response: httpx.Response) -> list[int]:
    assert response.status_code == 200, response.text
    return [o["id"] for o in response.json()]


def walk(client: httpx.Client, params: dict[str, Any]) -> list[int]:
    seen: list[int] = []
    page = 1
    while True:
        r = client.get(ORDERS, params={**params, "page": page})
        seen += ids(r)
        if page >= int(r.headers["X-WP-TotalPages"]):
            return seen
        page += 1


# --- payload shape -------------------------------------------------------------------------------


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value[:1]]
    return type(value).__name__ if value is not None else None


def test_order_has_the_live_shape(store: WooSim, http: httpx.Client) -> None:
    live = fixture("order_processing_paid_13.json")
    oid = store.create_order(
        items=[
            {"name": "Test Mug", "sku": "MUG-1", "product_id": 10, "quantity": 2, "price": "12.50"}
        ],
        transaction_id="txn_TEST_123",
    )
    store.set_status(oid, "processing")
    got = http.get(f"{ORDERS}/{oid}").json()
    assert list(got) == list(live)  # same keys, same order
    assert _shape(got) == _shape(live)
    assert got["number"] == str(oid) and got["total"] == "25.00"
    assert got["line_items"][0]["price"] == 12.5 and got["line_items"][0]["subtotal"] == "25.00"
    assert got["order_key"].startswith("wc_order_") and len(got["order_key"]) == 22
    assert got["_links"]["self"][0]["href"] == f"https://127.0.0.1:{store.port}{ORDERS}/{oid}"
    assert got["payment_url"].endswith(
        f"/order-pay/{oid}/?pay_for_order=true&key={got['order_key']}"
    )
    assert got["needs_payment"] is False and got["currency_symbol"] == "$"
    for key in ("date_created", "date_modified", "date_paid", "date_created_gmt", "date_paid_gmt"):
        assert NAIVE.match(got[key]), key


def test_local_dates_follow_the_site_timezone(clock: WallClock) -> None:
    with WooSim(site_timezone="America/New_York", clock=clock, https_detected=True) as sim:
        oid = sim.create_order()
        order = httpx.get(f"{sim.url}{ORDERS}/{oid}", auth=BASIC).json()
    assert order["date_created_gmt"] == "2026-11-22T09:32:36"
    assert order["date_created"] == "2026-11-22T04:32:36"  # as in the live fixture (UTC-5)


def test_fields_keep_the_response_key_order(store: WooSim, http: httpx.Client) -> None:
    store.create_order(set_paid=True)
    wanted = "id,number,status,currency,total,date_modified_gmt,date_paid_gmt"
    row = http.get(ORDERS, params={"_fields": wanted}).json()[0]
    assert list(row) == list(fixture("list_orders_fields_subset.json")[0])
    nested = http.get(ORDERS, params={"_fields": "id,billing.email"}).json()[0]
    assert nested == {"id": 100, "billing": {"email": "ada@example.test"}}


# --- argument errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"per_page": 101}, "error_400_per_page.json"),
        ({"orderby": "foo"}, "error_400_orderby.json"),
        ({"modified_after": "yesterday"}, "error_400_modified_after.json"),
        ({"modified_after": "2026-11-22"}, "error_400_modified_after.json"),
        ({"modified_after": "1795339958"}, "error_400_modified_after.json"),
    ],
)
def test_bad_arguments_get_the_exact_400(
    http: httpx.Client, params: dict[str, Any], name: str
) -> None:
    r = http.get(ORDERS, params=params)
    assert r.status_code == 400
    assert r.json() == fixture(name)


def test_fractional_seconds_and_bad_status(store: WooSim, http: httpx.Client) -> None:
    assert http.get(ORDERS, params={"modified_after": "2026-11-22T09:32:36.5"}).status_code == 200
    r = http.get(ORDERS, params={"status": "processing,shipped"})
    assert r.status_code == 400 and r.json()["data"]["params"]["status"].startswith(
        "status[1] is not one of any, trash, auto-draft, pending,"
    )


# --- date filters --------------------------------------------------------------------------------


def test_modified_after_is_strict_at_one_second(
    store: WooSim, http: httpx.Client, clock: WallClock
) -> None:
    before = store.create_order()
    clock.advance(0.4)  # same second once truncated
    same = store.create_order()
    clock.advance(1)
    after = store.create_order()
    q = {"dates_are_gmt": "true", "orderby": "id", "order": "asc"}
    assert ids(http.get(ORDERS, params={**q, "modified_after": "2026-11-22T09:32:36"})) == [after]
    assert ids(http.get(ORDERS, params={**q, "modified_after": "2026-11-22T09:32:35"})) == [
        before,
        same,
        after,
    ]
    assert ids(http.get(ORDERS, params={**q, "modified_before": "2026-11-22T09:32:37"})) == [
        before,
        same,
    ]


def test_z_suffix_shifts_the_window_on_a_site_east_of_utc(clock: WallClock) -> None:
    """Research §1.5: with dates_are_gmt=true a `Z` value is converted to site time first."""
    with WooSim(site_timezone="Asia/Shanghai", clock=clock, https_detected=True) as sim:
        a = sim.create_order()
        clock.advance(5)
        b = sim.create_order()
        with httpx.Client(base_url=sim.url, auth=BASIC) as client:
            gmt = {"dates_are_gmt": "true", "orderby": "id", "order": "asc"}
            assert ids(
                client.get(ORDERS, params={**gmt, "modified_after": "2026-11-22T09:32:35"})
            ) == [a, b]
            # Same instant with a Z: becomes 17:32:35 local, compared with the GMT column.
            assert (
                ids(client.get(ORDERS, params={**gmt, "modified_after": "2026-11-22T09:32:35Z"}))
                == []
            )
            assert (
                ids(
                    client.get(
                        ORDERS, params={**gmt, "modified_after": "2026-11-22T09:32:35+00:00"}
                    )
                )
                == []
            )
            # Without the flag, local wall time is compared with the local column: correct.
            assert ids(client.get(ORDERS, params={"modified_after": "2026-11-22T17:32:36"})) == [b]
            assert ids(client.get(ORDERS, params={"modified_after": "2026-11-22T09:32:36Z"})) == [b]


def test_z_suffix_widens_the_window_west_of_utc(clock: WallClock) -> None:
    """The live measurement (America/New_York): `Z` + dates_are_gmt returned every order."""
    with WooSim(site_timezone="America/New_York", clock=clock, https_detected=True) as sim:
        a = sim.create_order()
        clock.advance(2)
        b = sim.create_order()
        with httpx.Client(base_url=sim.url, auth=BASIC) as client:
            q = {"dates_are_gmt": "true", "modified_after": "2026-11-22T09:32:37"}
            assert ids(client.get(ORDERS, params=q)) == [b]
            q["modified_after"] += "Z"
            assert sorted(ids(client.get(ORDERS, params=q))) == [a, b]


# --- statuses ------------------------------------------------------------------------------------


def test_status_any_includes_drafts_and_excludes_trash(store: WooSim, http: httpx.Client) -> None:
    pending = store.create_order()
    draft = store.create_order(status="checkout-draft")
    trashed = store.create_order()
    store.trash(trashed)
    q = {"orderby": "id", "order": "asc"}
    assert ids(http.get(ORDERS, params=q)) == [pending, draft]
    assert ids(http.get(ORDERS, params={**q, "status": "any,trash"})) == [pending, draft]
    assert ids(http.get(ORDERS, params={**q, "status": "trash"})) == [trashed]
    assert ids(http.get(ORDERS, params={**q, "status[]": ["trash", "pending"]})) == [
        pending,
        trashed,
    ]
    assert ids(http.get(ORDERS, params={**q, "include": f"{pending},{trashed}"})) == [pending]
    assert http.get(f"{ORDERS}/{trashed}").json()["status"] == "trash"


# --- pagination ----------------------------------------------------------------------------------


def test_orderby_modified_drifts_across_pages_but_id_does_not(
    store: WooSim, http: httpx.Client
) -> None:
    created = [store.create_order() for _ in range(30)]
    store.set_modified(created, T0)
    for order in ("asc", "desc"):
        drifting = walk(http, {"orderby": "modified", "order": order, "per_page": 4})
        assert len(drifting) == 30
        assert len(set(drifting)) < 30  # duplicates, hence orders never seen
    stable = walk(http, {"orderby": "id", "order": "asc", "per_page": 4})
    assert stable == created
    by_date = walk(http, {"orderby": "date", "order": "desc", "per_page": 4})
    assert sorted(by_date) == created
    # Deterministic: the same page twice is the same page.
    q = {"orderby": "modified", "per_page": 4, "page": 3}
    assert ids(http.get(ORDERS, params=q)) == ids(http.get(ORDERS, params=q))


def test_link_has_only_prev_next_from_home_url_and_leaks_query_keys(clock: WallClock) -> None:
    with WooSim(https_detected=True, clock=clock, home_url="http://shop.example.test") as sim:
        for _ in range(5):
            sim.create_order()
        creds = {"consumer_key": "ck_sim", "consumer_secret": "cs_sim"}
        url = f"{sim.url}{ORDERS}"
        first = httpx.get(url, params={"per_page": 2, "orderby": "id", **creds})
        assert first.status_code == 200
        link = first.headers["Link"]
        assert link == (
            # `page` was not in the request: add_query_arg appends it after the defaults.
            "<https://shop.example.test/wp-json/wc/v3/orders?per_page=2&orderby=id"
            "&consumer_key=ck_sim&consumer_secret=cs_sim&status%5B0%5D=any&dp=2&context=view"
            '&page=2>; rel="next"'
        )
        middle = httpx.get(url, params={"per_page": 2, "page": 2, **creds}).headers["Link"]
        assert middle.startswith(  # as recorded live: `page` keeps its place
            "<https://shop.example.test/wp-json/wc/v3/orders?per_page=2&page=1&consumer_key="
        )
        assert 'rel="prev"' in middle and 'rel="next"' in middle
        last = httpx.get(url, params={"per_page": 2, "page": 3, **creds}).headers["Link"]
        assert 'rel="prev"' in last and 'rel="next"' not in last
        assert "first" not in middle + last and "last" not in middle + last
        assert first.headers["X-WP-Total"] == "5" and first.headers["X-WP-TotalPages"] == "3"


def test_link_matches_the_recorded_header(clock: WallClock) -> None:
    """`list_orders_page{1,2}_per_page5.headers.txt`, with this store's ids."""
    with WooSim(https_detected=True, clock=clock, home_url="http://127.0.0.1:8080") as sim:
        made = [sim.create_order() for _ in range(7)]
        include = ",".join(map(str, made))
        query = f"per_page=5&page={{}}&include={include}&orderby=id&order=asc"
        echoed = "".join(f"&include%5B{i}%5D={oid}" for i, oid in enumerate(made))
        expected = (
            "<https://127.0.0.1:8080/wp-json/wc/v3/orders?per_page=5&page={}"
            + echoed
            + '&orderby=id&order=asc&status%5B0%5D=any&dp=2&context=view>; rel="{}"'
        )
        for page, (target, rel) in ((1, (2, "next")), (2, (1, "prev"))):
            r = httpx.get(f"{sim.url}{ORDERS}?{query.format(page)}", auth=BASIC)
            assert r.headers["Link"] == expected.format(target, rel)
            assert (r.headers["X-WP-Total"], r.headers["X-WP-TotalPages"]) == ("7", "2")


@pytest.mark.parametrize(("hpos", "total", "pages"), [(True, "0", "0"), (False, "3", "2")])
def test_past_the_end_is_200_empty(clock: WallClock, hpos: bool, total: str, pages: str) -> None:
    with WooSim(https_detected=True, clock=clock, hpos=hpos) as sim:
        for _ in range(3):
            sim.create_order()
        r = httpx.get(f"{sim.url}{ORDERS}", params={"per_page": 2, "page": 5}, auth=BASIC)
    assert r.status_code == 200 and r.json() == []
    assert (r.headers["X-WP-Total"], r.headers["X-WP-TotalPages"]) == (total, pages)


# --- order lifecycle -----------------------------------------------------------------------------


def test_date_paid_is_sticky_and_gateways_differ(store: WooSim, clock: WallClock) -> None:
    card = store.create_order(payment_method="stripe")
    assert store.checkout(card) == "processing"
    paid = store.order(card)["date_paid_gmt"]
    assert paid is not None and store.order(card)["transaction_id"]
    clock.advance(10)
    store.set_status(card, "cancelled")
    assert store.order(card)["date_paid_gmt"] == paid
    bacs = store.create_order(payment_method="bacs")
    assert store.checkout(bacs) == "on-hold" and store.order(bacs)["date_paid"] is None
    cod = store.create_order(payment_method="cod")
    assert store.checkout(cod) == "processing"
    assert store.order(cod)["date_paid_gmt"] is not None  # nothing collected, yet "paid"
    direct = store.create_order()
    store.set_status(direct, "completed")
    order = store.order(direct)
    assert order["date_paid"] is not None and order["date_completed"] is not None


def test_refunds_are_negative_and_full_refund_refunds(store: WooSim, http: httpx.Client) -> None:
    oid = store.create_order(payment_method="stripe", set_paid=True, total="25.00")
    first = store.refund(oid, "5.00", "Damaged")
    assert first == oid + 1  # refunds take ids from the order sequence
    assert store.order(oid)["status"] == "processing"
    second = store.refund(oid, "20.00")
    order = http.get(f"{ORDERS}/{oid}").json()
    assert order["status"] == "refunded" and order["date_paid"] is not None
    assert order["refunds"] == [
        {"id": second, "reason": "", "total": "-20.00"},
        {"id": first, "reason": "Damaged", "total": "-5.00"},
    ]
    with pytest.raises(ValueError, match="Invalid refund amount"):
        store.refund(oid, "1.00")
    other = store.create_order(set_paid=True)
    store.set_status(other, "refunded")  # wc_order_fully_refunded: refunds the remainder
    assert store.order(other)["refunds"][0]["total"] == "-25.00"
    truth = [
        (t.order_id, t.status, str(t.refunded_total)) for t in store.history() if t.order_id == oid
    ]
    assert truth == [
        (oid, "pending", "0"),
        (oid, "processing", "0"),
        (oid, "processing", "5.00"),
        (oid, "refunded", "25.00"),
    ]


def test_trash_restore_delete_touch(store: WooSim, http: httpx.Client, clock: WallClock) -> None:
    oid = store.create_order()
    clock.advance(3)
    store.trash(oid)
    trashed = http.get(f"{ORDERS}/{oid}").json()
    assert trashed["status"] == "trash" and trashed["date_modified_gmt"] == "2026-11-22T09:32:39"
    assert {m["key"] for m in trashed["meta_data"]} >= {"_wp_trash_meta_status"}
    store.restore(oid)
    assert store.order(oid)["status"] == "pending" and store.order(oid)["meta_data"] == []
    clock.advance(3)
    before = store.order(oid)
    store.touch(oid)
    after = store.order(oid)
    assert after["date_modified_gmt"] == "2026-11-22T09:32:42"
    assert {k: v for k, v in after.items() if "modified" not in k} == {
        k: v for k, v in before.items() if "modified" not in k
    }
    store.delete(oid)
    r = http.get(f"{ORDERS}/{oid}")
    assert r.status_code == 404 and r.json() == fixture("error_404_invalid_id.json")
    assert store.history()[-1].status == "deleted"


# --- authentication ------------------------------------------------------------------------------


def _rfc3986(value: str) -> str:
    return urllib.parse.quote(value, safe="~")


def oauth_sign(
    method: str,
    url: str,
    params: dict[str, str],
    *,
    secret: str = BASIC[1],
    key: str = BASIC[0],
    ts: int,
    nonce: str,
    algorithm: str = "HMAC-SHA256",
) -> dict[str, str]:
    """OAuth 1.0a one-legged, written from the WooCommerce docs (research §1.6)."""
    oauth = {
        "oauth_consumer_key": key,
        "oauth_timestamp": str(ts),
        "oauth_nonce": nonce,
        "oauth_signature_method": algorithm,
    }
    pairs = sorted({**params, **oauth}.items())
    joined = "&".join(f"{_rfc3986(k)}={_rfc3986(v)}" for k, v in pairs)
    base = f"{method}&{_rfc3986(url)}&{_rfc3986(joined)}"
    digest = hashlib.sha256 if algorithm == "HMAC-SHA256" else hashlib.sha1
    mac = hmac.new(f"{secret}&".encode(), base.encode(), digest).digest()
    return {**oauth, "oauth_signature": base64.b64encode(mac).decode()}


def test_oauth_signed_against_home_url(clock: WallClock) -> None:
    with WooSim(clock=clock, home_url="http://shop.example.test") as sim:
        sim.create_order()
        ts = int(clock().timestamp())
        site = f"http://shop.example.test{ORDERS}"
        params = {"modified_after": "2026-11-22T09:00:00", "dates_are_gmt": "true"}
        with httpx.Client(base_url=sim.url) as client:
            ok = client.get(
                ORDERS, params={**params, **oauth_sign("GET", site, params, ts=ts, nonce="n1")}
            )
            assert ok.status_code == 200 and len(ok.json()) == 1
            sha1 = oauth_sign("GET", site, params, ts=ts + 1, nonce="n2", algorithm="HMAC-SHA1")
            assert client.get(ORDERS, params={**params, **sha1}).status_code == 200
            header = oauth_sign("GET", site, params, ts=ts + 2, nonce="n3")
            auth = "OAuth " + ", ".join(f'{k}="{_rfc3986(v)}"' for k, v in header.items())
            assert (
                client.get(ORDERS, params=params, headers={"Authorization": auth}).status_code
                == 200
            )
            assert sim.nonce_writes == 3

            def message(signed: dict[str, str]) -> tuple[int, str]:
                r = client.get(ORDERS, params={**params, **signed})
                body = r.json()
                return r.status_code, body["message"] if isinstance(body, dict) else ""

            tampered = oauth_sign("GET", site, params, ts=ts, nonce="n4")
            tampered["oauth_signature"] = "A" + tampered["oauth_signature"][1:]
            assert message(tampered) == (
                401,
                "Invalid signature - provided signature does not match.",
            )
            called_url = oauth_sign("GET", f"{sim.url}{ORDERS}", params, ts=ts, nonce="n5")
            assert message(called_url)[1].startswith("Invalid signature")
            replay = oauth_sign("GET", site, params, ts=ts, nonce="n1")
            assert message(replay) == (401, "Invalid nonce - nonce has already been used.")
            stale = oauth_sign("GET", site, params, ts=ts - 901, nonce="n6")
            assert message(stale) == (401, "Invalid timestamp.")
            assert message(oauth_sign("GET", site, params, ts=ts + 899, nonce="n7"))[0] == 200
            # WooCommerce keeps one nonce per timestamp: n8 replaces n7's slot, so n7 passes again.
            assert message(oauth_sign("GET", site, params, ts=ts + 899, nonce="n8"))[0] == 200
            assert message(oauth_sign("GET", site, params, ts=ts + 898, nonce="n7"))[0] == 200


def test_basic_auth_only_when_https_is_detected(clock: WallClock) -> None:
    with WooSim(clock=clock) as sim:
        r = httpx.get(f"{sim.url}{ORDERS}", auth=BASIC)
        assert r.status_code == 401 and r.json() == fixture("error_401_basic_over_plain_http.json")
        assert httpx.get(f"{sim.url}{ORDERS}").json() == fixture("error_401_no_credentials.json")
        sim.https_detected = True
        assert httpx.get(f"{sim.url}{ORDERS}", auth=BASIC).status_code == 200
        wrong = httpx.get(f"{sim.url}{ORDERS}", auth=("ck_sim", "nope"))
        assert wrong.status_code == 401 and wrong.json() == fixture("error_401_bad_secret.json")
        unknown = httpx.get(f"{sim.url}{ORDERS}", auth=("ck_other", "cs_sim"))
        assert unknown.json() == fixture("error_401_no_credentials.json")
        # Query-string keys win over the header.
        creds = {"consumer_key": "ck_sim", "consumer_secret": "cs_sim"}
        assert httpx.get(f"{sim.url}{ORDERS}", params=creds, auth=("x", "y")).status_code == 200
        # The ?rest_route= fallback skips WooCommerce key auth altogether.
        fallback = httpx.get(f"{sim.url}/", params={"rest_route": "/wc/v3/orders", **creds})
        assert fallback.status_code == 401


def test_write_only_key_cannot_read(clock: WallClock) -> None:
    with WooSim(clock=clock, https_detected=True, permissions="write") as sim:
        r = httpx.get(f"{sim.url}{ORDERS}", auth=BASIC)
    assert (r.status_code, r.json()["message"]) == (
        401,
        "The API key provided does not have read permissions.",
    )


# --- versions, schema, other routes --------------------------------------------------------------


def test_old_woocommerce_ignores_modified_after(clock: WallClock) -> None:
    with WooSim(clock=clock, https_detected=True, wc_version="5.7.0") as sim:
        sim.create_order()
        q = {"modified_after": "2030-01-01T00:00:00", "dates_are_gmt": "true"}
        assert len(httpx.get(f"{sim.url}{ORDERS}", params=q, auth=BASIC).json()) == 1
        schema = httpx.options(f"{sim.url}{ORDERS}").json()  # OPTIONS needs no auth
        status = httpx.get(f"{sim.url}/wp-json/wc/v3/system_status", auth=BASIC).json()
        assert sim.order(100)["version"] == "5.7.0"
    assert "modified_after" not in schema["endpoints"][0]["args"]
    assert "dates_are_gmt" in schema["endpoints"][0]["args"]
    assert status["environment"]["version"] == "5.7.0"


def test_schema_index_and_unknown_routes(store: WooSim, http: httpx.Client) -> None:
    schema = httpx.options(f"{store.url}{ORDERS}").json()
    assert schema["endpoints"][0]["args"]["per_page"]["maximum"] == 100
    assert "modified" in schema["endpoints"][0]["args"]["orderby"]["enum"]
    assert schema["_links"]["self"][0]["href"] == f"https://127.0.0.1:{store.port}{ORDERS}"
    index = httpx.get(f"{store.url}/wp-json/").json()
    assert "wc/v3" in index["namespaces"]
    assert httpx.get(f"{store.url}/wp-json/wc/v3/system_status").status_code == 401
    r = http.get("/wp-json/wc/v3/nothing")
    assert r.status_code == 404 and r.json()["code"] == "rest_no_route"


def test_keep_alive_reuses_one_connection(store: WooSim, http: httpx.Client) -> None:
    store.create_order()
    for _ in range(5):
        assert http.get(ORDERS).status_code == 200
    http.get(f"{ORDERS}/999")
    assert store.connections_accepted == 1


# --- faults --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "ctype"),
    [
        ("429", 429, "text/html"),
        ("403html", 403, "text/html"),
        ("500", 500, "application/json"),
        ("502", 502, "text/html"),
        ("503", 503, "text/html"),
    ],
)
def test_http_faults(store: WooSim, http: httpx.Client, kind: str, status: int, ctype: str) -> None:
    store.add_fault(kind, count=2, retry_after=7 if kind in ("429", "503") else None)
    for _ in range(2):
        r = http.get(ORDERS)
        assert r.status_code == status and r.headers["content-type"].startswith(ctype)
        assert r.headers.get("Retry-After") == ("7" if kind in ("429", "503") else None)
    assert http.get(ORDERS).status_code == 200
    assert store.fault_counts == {kind: 2}


def test_429_without_retry_after_and_rate(store: WooSim, http: httpx.Client) -> None:
    store.add_fault("429", rate=1.0)
    r = http.get(ORDERS)
    assert r.status_code == 429 and "Retry-After" not in r.headers
    assert http.get("/wp-json/wc/v3/system_status").status_code == 200  # only /orders* fail
    store.clear_faults()
    assert http.get(ORDERS).status_code == 200


def test_slow_malformed_and_reset(store: WooSim, http: httpx.Client) -> None:
    store.create_order()
    store.add_fault("slow", delay=0.3)
    started = time.monotonic()
    assert http.get(ORDERS).status_code == 200
    assert time.monotonic() - started >= 0.3
    store.add_fault("malformed")
    r = http.get(ORDERS)
    assert r.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.content)
    store.add_fault("reset")
    with pytest.raises(httpx.TransportError):
        http.get(ORDERS)
    assert http.get(ORDERS).status_code == 200
    assert store.fault_counts == {"slow": 1, "malformed": 1, "reset": 1}
    assert [e["status"] for e in store.request_log] == [200, 200, 0, 200]


# --- admin API, stream, serve --------------------------------------------------------------------


def test_admin_api_round_trip(store: WooSim, http: httpx.Client) -> None:
    admin = httpx.Client(base_url=f"{store.url}/__sim")
    oid = admin.post("/orders", json={"payment_method": "cod", "total": "9.90"}).json()["id"]
    assert admin.post(f"/orders/{oid}/checkout").json() == {"status": "processing"}
    assert admin.post(f"/orders/{oid}/refund", json={"amount": "1.00"}).status_code == 200
    assert admin.post(f"/orders/{oid}/status", json={"status": "completed"}).status_code == 200
    assert admin.post(f"/orders/{oid}/touch").status_code == 200
    assert admin.post(f"/orders/{oid}/trash").status_code == 200
    assert http.get(f"{ORDERS}/{oid}").json()["status"] == "trash"
    assert admin.delete(f"/orders/{oid}").status_code == 200
    assert admin.post(f"/orders/{oid}/touch").status_code == 404
    assert admin.post("/orders", json={"colour": "red"}).status_code == 400
    assert (
        admin.post("/faults", json={"kind": "503", "count": 1, "retry_after": 2}).status_code == 200
    )
    assert http.get(ORDERS).status_code == 503
    assert admin.delete("/faults").status_code == 200
    history = admin.get("/history").json()
    assert [h["status"] for h in history] == [
        "pending",
        "processing",
        "processing",
        "completed",
        "trash",
        "deleted",
    ]
    assert history[2]["refunded_total"] == "1.00"
    stats = admin.get("/stats").json()
    assert stats["faults"] == {"503": 1} and stats["requests"]["503"] == 1
    admin.close()


def test_order_stream_is_deterministic_and_varied(clock: WallClock) -> None:
    runs = []
    for _ in range(2):
        with WooSim(clock=clock) as sim:
            stream = OrderStream(sim, seed=3, orders_per_minute=60)
            for _ in range(150):
                stream.step()
            runs.append([(t.order_id, t.status) for t in sim.history()])
            orders = sim.orders_snapshot().values()
    assert runs[0] == runs[1]
    statuses = {status for _, status in runs[0]}
    assert statuses >= {
        "pending",
        "processing",
        "on-hold",
        "completed",
        "cancelled",
        "refunded",
        "checkout-draft",
        "trash",
    }
    assert {o["currency"] for o in orders} == {"USD", "EUR"}
    assert any(o["billing"]["last_name"] == "张" for o in orders)
    assert any(o["refunds"] and o["status"] != "refunded" for o in orders)  # a partial refund


def test_serve_runs_until_sigterm(tmp_path: Path) -> None:
    code = "from pollerd_sim import serve; serve(port=0, orders_per_minute=600)"
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=root
    )
    try:
        assert proc.stdout is not None
        url = re.search(r"http://127\.0\.0\.1:\d+", proc.stdout.readline())
        assert url is not None
        r = httpx.get(f"{url.group(0)}/__sim/stats")
        assert r.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


def test_delete_trashes_or_with_force_deletes_for_good(store: WooSim, http: httpx.Client) -> None:
    trashed, gone = store.create_order(), store.create_order()
    assert http.delete(f"{ORDERS}/{trashed}").json()["id"] == trashed
    assert http.get(f"{ORDERS}/{trashed}").json()["status"] == "trash"
    assert http.delete(f"{ORDERS}/{gone}", params={"force": "true"}).status_code == 200
    assert http.get(f"{ORDERS}/{gone}").status_code == 404
    listed = http.get(ORDERS, params={"include": f"{gone}", "status": "trash"}).json()
    assert listed == [] and store.history()[-1].status == "deleted"


def test_refunds_route_dates_each_refund(store: WooSim, http: httpx.Client) -> None:
    oid = store.create_order(status="processing", payment_method="stripe", total="30.00")
    store.refund(oid, "10.00", "damaged")
    rows = http.get(f"{ORDERS}/{oid}/refunds", params={"_fields": "id,date_created_gmt"}).json()
    assert [set(r) for r in rows] == [{"id", "date_created_gmt"}]
    assert http.get(f"{ORDERS}/{oid}").json()["refunds"][0]["id"] == rows[0]["id"]
