"""A failed exchange names the host:port and the kind of failure (refused, reset, DNS), in the
sources and the channels alike, and `--log-level DEBUG` shows each store request without a
credential. Real servers on loopback; a closed port is a port just released."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from loguru import logger

from pollerd.channels.base import ChannelContext
from pollerd.channels.webhook import WebhookChannel
from pollerd.errors import RetryableSourceError, SourceError
from pollerd.http import log_exchange, transport_error
from pollerd.model import Event
from pollerd.sources.shopify import ShopifyStore
from pollerd.sources.shopify.client import ShopifyClient, ShopifyServerError
from pollerd.sources.shopify.rest import ShopifyRestSource
from pollerd.sources.woocommerce import WooCommerceStore
from pollerd.sources.woocommerce.client import WooCommerceSource
from pollerd_sim import ShopSim, WooSim
from pollerd_sim.testing.events import paid_event
from pollerd_sim.testing.ports import free_port
from tests.support.clocks import FakeTime

KEY = "ck_7d1f0c2b9e8a4b3c6d5e4f3a2b1c0d9e8f7a6b5c"
SECRET = "cs_3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d"
TOKEN = "shpat_sim_token"
AFTER = datetime(2020, 1, 1, tzinfo=UTC)


def sample() -> Event:
    return paid_event(None, admin_url=None)


def woo(url: str, **kw: Any) -> WooCommerceStore:
    values: dict[str, Any] = {
        "name": "shop",
        "platform": "woocommerce",
        "url": url,
        "consumer_key": KEY,
        "consumer_secret": SECRET,
        "max_requests_per_minute": 6000,
        "timeout": timedelta(seconds=5),
        **kw,
    }
    return WooCommerceStore(**values)


def shopify(url: str, api: str = "graphql", **kw: Any) -> ShopifyStore:
    values: dict[str, Any] = {
        "name": "acme",
        "platform": "shopify",
        "shop": "acme.myshopify.com",
        "access_token": TOKEN,
        "base_url": url,
        "api": api,
        **kw,
    }
    return ShopifyStore(**values)


async def woo_error(url: str, fault: str | None = None, sim: WooSim | None = None) -> str:
    source = WooCommerceSource(woo(url))
    try:
        if sim is not None and fault is not None:
            await source.list_modified(AFTER, 1)  # the version gate passes first
            sim.add_fault(fault)
        with pytest.raises(RetryableSourceError) as info:
            await source.list_modified(AFTER, 1)
        return str(info.value)
    finally:
        await source.aclose()


def test_a_refused_connection_names_host_port_and_refused() -> None:
    port = free_port()
    said = asyncio.run(woo_error(f"http://127.0.0.1:{port}"))
    assert f"127.0.0.1:{port}" in said and "connection refused" in said, said
    assert "All connection attempts failed" not in said


def test_a_reset_says_reset_not_an_empty_read_error() -> None:
    with WooSim(consumer_key=KEY, consumer_secret=SECRET) as sim:
        said = asyncio.run(woo_error(sim.url, "reset", sim))
        port = sim.url.rsplit(":", 1)[1]
    assert "(ReadError: )" not in said, said
    assert f"127.0.0.1:{port}" in said and "reset" in said, said
    assert KEY not in said and SECRET not in said


@pytest.mark.parametrize("api", ["graphql", "rest"])
def test_shopify_sources_name_host_port_too(api: str) -> None:
    port = free_port()

    async def main() -> str:
        clock = FakeTime(5000.0)  # the GraphQL client retries with back-off: in fake time
        config = shopify(f"http://127.0.0.1:{port}", api)
        with pytest.raises(SourceError) as info:
            if api == "graphql":
                client = ShopifyClient(config, clock=clock.clock, sleep=clock.sleep)
                try:
                    await client.query("{ shop { name } }")
                finally:
                    await client.aclose()
            else:
                source = ShopifyRestSource(config, clock=clock.clock, sleep=clock.sleep)
                try:
                    await source.list_modified(AFTER, None)
                finally:
                    await source.aclose()
        return str(info.value)

    said = asyncio.run(main())
    assert f"127.0.0.1:{port}" in said and "connection refused" in said, said


def test_a_channel_names_host_port_and_refused() -> None:
    port = free_port()

    async def main() -> str:
        async with httpx.AsyncClient() as http:
            url = f"http://127.0.0.1:{port}/hook"
            ch = WebhookChannel(
                ChannelContext("hook", {"url": url, "secret": "whsec_dGVzdA=="}, http)
            )
            event = sample()
            result = await ch.send(event, ch.render(event))
            return result.detail

    said = asyncio.run(main())
    assert f"127.0.0.1:{port}" in said and "connection refused" in said, said


def test_dns_failure_is_named() -> None:
    async def main() -> str:
        async with httpx.AsyncClient() as http:
            try:
                await http.get("http://no-such-host.invalid:8443/x")
            except httpx.HTTPError as exc:
                return transport_error(exc)
        return ""

    said = asyncio.run(main())
    assert said.startswith("cannot connect to no-such-host.invalid:8443: host name not found")


def test_debug_logs_each_store_request_without_credentials() -> None:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="DEBUG", format="{message}")
    try:
        with WooSim(consumer_key=KEY, consumer_secret=SECRET) as sim:
            sim.create_order()
            for auth in ("oauth",):  # signed in the query string

                async def main(auth: str = auth) -> None:
                    source = WooCommerceSource(woo(sim.url, auth=auth))
                    try:
                        await source.list_modified(AFTER, 1)
                    finally:
                        await source.aclose()

                asyncio.run(main())
    finally:
        logger.remove(sink)
    requests = [line for line in lines if "GET /wp-json/wc/v3/orders" in line]
    assert requests, lines
    assert any("-> 200 in" in line and "bytes" in line and "page=1" in line for line in requests)
    text = "\n".join(lines)
    assert KEY not in text and SECRET not in text and "oauth_signature" not in text


def test_debug_logs_shopify_requests_without_the_token() -> None:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="DEBUG", format="{message}")
    try:
        with ShopSim(access_token=TOKEN) as sim:
            sim.create_order()

            async def main() -> None:
                clock = FakeTime(5000.0)
                for api in ("graphql", "rest"):
                    kind = ShopifyClient if api == "graphql" else ShopifyRestSource
                    client = kind(shopify(sim.url, api), clock=clock.clock, sleep=clock.sleep)
                    try:
                        if isinstance(client, ShopifyClient):
                            await client.query("{ shop { name } }")
                        else:
                            await client.list_modified(AFTER, None)
                    finally:
                        await client.aclose()

            asyncio.run(main())
    finally:
        logger.remove(sink)
    assert any(re.search(r"POST /admin/api/[\d-]+/graphql\.json -> 200 in", x) for x in lines)
    assert any(re.search(r"GET /admin/api/[\d-]+/orders\.json\?.*-> 200 in", x) for x in lines)
    assert TOKEN not in "\n".join(lines)


def test_the_request_line_drops_every_credential_parameter() -> None:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="DEBUG", format="{message}")
    try:
        url = (
            f"https://shop.example/wp-json/wc/v3/orders?page=2&consumer_key={KEY}"
            f"&consumer_secret={SECRET}&oauth_signature=abc%3D&access_token={TOKEN}&status=any"
        )
        log_exchange("store shop", "GET", url, 200, 0.0, 10)
    finally:
        logger.remove(sink)
    assert len(lines) == 1 and "GET /wp-json/wc/v3/orders?page=2&status=any -> 200" in lines[0]
    assert KEY not in lines[0] and SECRET not in lines[0] and TOKEN not in lines[0]
    assert "abc" not in lines[0]


def test_an_unreachable_token_endpoint_is_not_a_failed_page() -> None:
    """The client-credentials grant goes through the store's connection too (host:port named,
    counted, logged), but its failure stays a plain retryable error: a `ShopifyServerError`
    would be retried inline and make a pager halve its page for nothing."""
    port = free_port()
    config = shopify(
        f"http://127.0.0.1:{port}",
        access_token=None,
        client_id="app-id",
        client_secret="app-secret-value",
    )

    async def main() -> RetryableSourceError:
        clock = FakeTime(5000.0)
        client = ShopifyClient(config, clock=clock.clock, sleep=clock.sleep)
        try:
            with pytest.raises(RetryableSourceError) as info:
                await client.query("{ shop { name } }")
            assert client.requests == 0 and clock.sleeps == []  # no POST, no inline retry
            return info.value
        finally:
            await client.aclose()

    error = asyncio.run(main())
    assert not isinstance(error, ShopifyServerError), error
    said = str(error)
    assert "client-credentials token: POST /admin/oauth/access_token" in said, said
    assert f"127.0.0.1:{port}" in said and "connection refused" in said, said
    assert "app-secret-value" not in said
