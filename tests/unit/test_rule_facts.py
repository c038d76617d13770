"""Facts the seller rules need, from each platform: the buyer's IP from WooCommerce's
`customer_ip_address` and Shopify's `clientIp` / REST `browser_ip` (both simulators serve
them), the unpaid notion of each platform's rules, and the facts written with a page."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from pollerd.alerts.facts import blind, order_fact
from pollerd.sources.shopify.normalize import normalize_order
from pollerd.sources.shopify.rest_normalize import as_node
from pollerd.sources.shopify.rules import ShopifyRules
from pollerd.sources.woocommerce.normalize import normalize as woo_normalize
from pollerd.sources.woocommerce.rules import WooRules
from pollerd.store import open_store
from pollerd_sim import ShopSim, WooSim
from pollerd_sim.shop_schema import render_order

KEY = b"k" * 32


def woo_payload(**changes: Any) -> dict[str, Any]:
    text = resources.files("pollerd_sim").joinpath("data/order_processing_paid_13.json")
    return {**json.loads(text.read_text(encoding="utf-8")), **changes}


@pytest.mark.parametrize(
    ("raw", "ip"),
    [("203.0.113.9", "203.0.113.9"), ("::ffff:203.0.113.9", "203.0.113.9"), ("", None),
     ("2001:DB8::1", "2001:db8::1"), ("unknown", None), ("0.0.0.0", None),
     ("127.0.0.1", None), ("::1", None)],
)  # fmt: skip
def test_woocommerce_customer_ip(raw: str, ip: str | None) -> None:
    order = woo_normalize(
        woo_payload(customer_ip_address=raw), store="acme", site_url="https://x.example"
    )
    assert order.customer_ip == ip
    assert "203.0.113" not in json.dumps(order.to_json())  # never in an event


def test_woocommerce_unpaid_statuses() -> None:
    rules = WooRules()
    for status, unpaid in (("pending", True), ("on-hold", True), ("processing", False),
                           ("cancelled", False), ("failed", False)):  # fmt: skip
        order = woo_normalize(woo_payload(status=status), store="a", site_url="https://x.example")
        assert order_fact(order, rules, KEY).unpaid is unpaid, status
    cancelled = woo_normalize(woo_payload(status="cancelled"), store="a", site_url="https://x.ex")
    assert order_fact(cancelled, rules, KEY).cancelled


def test_shopify_client_ip_from_the_simulator() -> None:
    with ShopSim(shop="acme.myshopify.com", access_token="shpat_x") as sim:
        oid = sim.create_order(ip="198.51.100.77", financial="AUTHORIZED")
        node = render_order(sim.book.get(oid), "acme.myshopify.com")
    order = normalize_order(node, store="acme", shop="acme.myshopify.com")
    assert order.customer_ip == "198.51.100.77"
    fact = order_fact(order, ShopifyRules(), KEY)
    assert fact.unpaid and not fact.cancelled
    assert fact.digests["ip"] == blind(KEY, "ip", "198.51.100.77")
    assert fact.digests["email"] == blind(KEY, "email", "ada@example.test")


@pytest.mark.parametrize(
    "payload",
    [{"browser_ip": "198.51.100.7"}, {"client_details": {"browser_ip": "198.51.100.7"}}],
)
def test_shopify_rest_browser_ip(payload: dict[str, Any]) -> None:
    assert as_node({"id": 5, **payload}, store="acme")["clientIp"] == "198.51.100.7"


def test_woocommerce_simulator_serves_an_ip() -> None:
    with WooSim() as sim:
        checkout = sim.create_order(ip="203.0.113.50")
        admin = sim.create_order(created_via="admin")
        assert sim.book.orders[checkout].ip == "203.0.113.50"
        assert sim.book.orders[admin].ip == ""
        assert sim.book.orders[sim.create_order()].ip.startswith("203.0.113.")


def test_facts_are_written_with_the_page(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'f.db'}")
    order = woo_normalize(
        woo_payload(status="pending", customer_ip_address="203.0.113.9"),
        store="acme",
        site_url="https://x.example",
    )
    store.commit_page("acme", [], [], facts=[order_fact(order, WooRules(), KEY)])
    late = datetime(2100, 1, 1, tzinfo=UTC).timestamp()
    [row] = store.unpaid_before("acme", late, "alert.unpaid_timeout")
    assert (row.order_id, str(row.total)) == (order.id, order.total)
    buyers = store.buyers_seen_since("acme", ["ip"], 0, 1)
    assert list(buyers) == [("ip", blind(KEY, "ip", "203.0.113.9"))]
    [[buyer]] = buyers.values()  # the number a seller knows it by, from Order.number
    assert buyer.number == order.number and buyer.number
    with store.engine.connect() as conn:  # the raw value is nowhere in the file's rows
        rows = conn.exec_driver_sql("SELECT * FROM blind_index").all()
    assert b"203.0.113.9" not in repr(rows).encode()
    store.close()
