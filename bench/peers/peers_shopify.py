"""tap-shopify and pollerd over one scripted Shopify history with a lagging search index.

tap-shopify 3.13.0 reads orders through bulk operations filtered on
`updated_at:>='{bookmark}' AND updated_at:<'{now}'` (inclusive start, client-clock end), and its
bookmark is `min(now, max updatedAt seen)`: a cursor from data. The history:

    T0     40 orders: 10 PENDING, 10 PAID, 10 PAID then fulfilled, 10 AUTHORIZED
           (the index catches up)                                   → sync 1 (initial)
    T1     20 changes to T0 orders (5 PENDING→PAID, 5 PAID cancelled, 5 PAID→REFUNDED,
           5 AUTHORIZED→PAID) and 250 new PAID orders in one second (held clock)
                                                                    → sync 2 (inside the lag)
           (the index catches up)                                   → sync 3

Two things tap-shopify needs that the simulator does not do on its own, both outside its logic:
the host (`myshopify_shim/`: `*.myshopify.com` resolves to the TLS proxy) and `GET
/admin/api/<version>/shop.json`, the one REST call it makes (`shopify.Shop.current()`), which
ShopSim lacks and `ShopStore` below answers. Its catalog selects the `Order` fields ShopSim's
schema has (leaf fields: ids, dates, statuses); with every field selected the query asks for 101
fields ShopSim does not model, and ShopSim rejects the bulk query (`Invalid bulk query: Cannot
query field 'additionalFees' on type 'Order'`, exit 1).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from graphql import GraphQLEnumType, GraphQLNonNull, GraphQLScalarType, build_schema
from peers_tools import SyncRun, json_line, run_cli

from pollerd_sim import ShopSim
from pollerd_sim.harness import SHOPIFY_TOKEN, pollerd, pollerd_env, write_config
from pollerd_sim.shop_rest import Reply, json_reply
from pollerd_sim.shop_schema import SDL

SHIM = Path(__file__).resolve().parent / "myshopify_shim"
INDEX_LAG_S = 10.0
BURST = 250
_SHOP_JSON = re.compile(r"^/admin/api/[^/]+/shop\.json$")


def status_key(financial: str | None, cancelled: bool, fulfillment: str | None) -> str:
    """One comparable status for a Shopify order: financial status, +CANCELLED, +FULFILLED."""
    key = (financial or "NONE").upper()
    if cancelled:
        key += "+CANCELLED"
    if (fulfillment or "").upper() == "FULFILLED":
        key += "+FULFILLED"
    return key


def _graphql_key(node: dict[str, Any]) -> str:
    return status_key(
        node.get("displayFinancialStatus"),
        bool(node.get("cancelledAt")),
        node.get("displayFulfillmentStatus"),
    )


class ShopStore(ShopSim):
    """A `ShopSim` that also answers `GET shop.json` and whose clock can be held."""

    def __init__(self, **kwargs: Any) -> None:
        self._held: datetime | None = None
        self.unlogged = 0  # requests ShopSim answers without logging: bulk files, shop.json
        super().__init__(clock=self._now, **kwargs)

    @property
    def requests(self) -> int:
        """Every request answered so far (the request log and what it leaves out)."""
        return len(self.request_log) + self.unlogged

    def _now(self) -> datetime:
        return self._held or datetime.now(UTC)

    def hold(self, on: bool) -> None:
        self._held = datetime.now(UTC) if on else None

    def handle(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> Reply:
        if path.startswith("/__bulk/"):
            self.unlogged += 1
        if method == "GET" and _SHOP_JSON.match(path):
            self.unlogged += 1
            if headers.get("x-shopify-access-token") != self.access_token:
                return json_reply(401, {"errors": "[API] Invalid API key or access token"})
            shop = {
                "id": 690933842,
                "name": "acme",
                "myshopify_domain": self.shop,
                "domain": self.shop,
                "iana_timezone": "Asia/Shanghai",
                "currency": "USD",
            }
            return json_reply(200, {"shop": shop})
        return super().handle(method, path, query, headers, body)


def leaf_order_fields() -> set[str]:
    """`Order` fields of ShopSim's schema that need no sub-selection (what a catalog can select
    without asking for sub-fields the simulator does not model)."""
    order = build_schema(SDL).type_map["Order"]
    leaves = set()
    for name, field in order.fields.items():  # type: ignore[attr-defined]
        kind = field.type.of_type if isinstance(field.type, GraphQLNonNull) else field.type
        if isinstance(kind, GraphQLScalarType | GraphQLEnumType) and not field.args:
            leaves.add(name)
    return leaves


class TapShopify:
    """tap-shopify with the host shim, its catalog selecting the `orders` stream."""

    def __init__(self, venv: Path, work: Path, port: int) -> None:
        self.exe = str(venv / "bin" / "tap-shopify")
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.config = work / "config.json"
        self.catalog = work / "catalog.json"
        self.state = work / "state.json"
        self.port = port
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        self.config.write_text(
            json.dumps({"shop": "acme", "access_token": SHOPIFY_TOKEN, "start_date": day})
        )

    def env(self, cert: Path) -> dict[str, str]:
        return dict(
            os.environ,
            PYTHONPATH=str(SHIM),
            PEERS_SHOPIFY_PORT=str(self.port),
            SSL_CERT_FILE=str(cert),
            REQUESTS_CA_BUNDLE=str(cert),
            PYTHONUNBUFFERED="1",
        )

    def prepare(self, cert: Path) -> None:
        out = subprocess.run(
            [self.exe, "-c", str(self.config), "--discover"],
            capture_output=True,
            text=True,
            env=self.env(cert),
            check=True,
            timeout=300,
        ).stdout
        catalog = json.loads(out)
        keep = leaf_order_fields()
        streams = [s for s in catalog["streams"] if s["tap_stream_id"] == "orders"]
        for stream in streams:
            for entry in stream["metadata"]:
                crumb = entry["breadcrumb"]
                if not crumb:
                    entry["metadata"]["selected"] = True
                elif len(crumb) == 2:
                    entry["metadata"]["selected"] = crumb[1] in keep
        catalog["streams"] = streams
        self.catalog.write_text(json.dumps(catalog))

    def sync(self, cert: Path) -> SyncRun:
        cmd = [self.exe, "-c", str(self.config), "--catalog", str(self.catalog)]
        if self.state.exists():
            cmd += ["--state", str(self.state)]
        run, stdout = run_cli(cmd, self.env(cert), self.work, SHOPIFY_TOKEN)
        for line in stdout.splitlines():
            message = json_line(line)
            if message.get("type") == "RECORD" and message.get("stream") == "orders":
                record = message["record"]
                oid = int(str(record.get("legacyResourceId") or record["id"]).rsplit("/", 1)[-1])
                run.pairs.append((oid, _graphql_key(record)))
            elif message.get("type") == "STATE":
                run.state = message["value"]
        if run.state is not None:
            self.state.write_text(json.dumps(run.state))
        return run


class PollerdShopify:
    """`pollerd once` against the simulator (GraphQL, its defaults), events to a sink."""

    def __init__(self, work: Path, url: str) -> None:
        from pollerd_sim import WebhookSink

        self.work = work
        self.sink = WebhookSink().start()
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        self.config = write_config(
            work,
            url,
            self.sink.url,
            store={"start_from": f"{day}T00:00:00Z", "interval": "2s"},
            platform="shopify",
        )
        self.seen = 0

    def prepare(self, cert: Path) -> None:
        """Nothing to discover."""

    def sync(self, cert: Path) -> SyncRun:
        started = time.monotonic()
        proc = pollerd("once", "--config", str(self.config), env=pollerd_env(), cwd=self.work)
        run = SyncRun(exit_code=proc.returncode, wall_s=round(time.monotonic() - started, 2))
        run.stderr_tail = "\n".join(proc.stderr.strip().splitlines()[-3:])
        receipts = [r for r in self.sink.receipts if r.status == 200]
        for receipt in receipts[self.seen :]:
            order = receipt.json().get("order") or {}
            key = status_key(
                order.get("financial_status"),
                bool(order.get("cancelled_at")),
                order.get("fulfillment_status"),
            )
            run.pairs.append((int(order["id"]), key))
        self.seen = len(receipts)
        return run

    def close(self) -> None:
        self.sink.stop()


def script(
    sim: ShopStore, sync: Callable[[], None], writes: list[tuple[int, str, str]]
) -> list[int]:
    """Run the history around `sync`; returns the sync boundaries (writes before each read)."""

    def wrote(oid: int, step: str) -> None:
        writes.append((oid, _graphql_key(sim.order(oid)), step))

    def settle() -> None:
        time.sleep(INDEX_LAG_S + 1.0)  # the script waits for the index, as a schedule would

    made: dict[str, list[int]] = {}
    for financial in ("PENDING", "PAID", "FULFILLED", "AUTHORIZED"):
        made[financial] = []
        for _ in range(10):
            oid = sim.create_order(financial="PAID" if financial == "FULFILLED" else financial)
            if financial == "FULFILLED":
                sim.fulfill(oid)
            made[financial].append(oid)
            wrote(oid, "T0 new order")
    settle()
    boundaries = [len(writes)]
    sync()
    time.sleep(1.05)  # T1 in a later second than anything sync 1 saw
    for oid in made["PENDING"][:5]:
        sim.pay(oid)
        wrote(oid, "T1 status change")
    for oid in made["PAID"][:5]:
        sim.cancel(oid)
        wrote(oid, "T1 status change")
    for oid in made["PAID"][5:]:
        sim.refund(oid, sim.order(oid)["totalPriceSet"]["shopMoney"]["amount"])
        wrote(oid, "T1 status change")
    for oid in made["AUTHORIZED"][:5]:
        sim.pay(oid)
        wrote(oid, "T1 status change")
    sim.hold(True)
    try:
        for _ in range(BURST):
            wrote(sim.create_order(financial="PAID"), "T1 burst (250 in one second)")
    finally:
        sim.hold(False)
    boundaries.append(len(writes))
    sync()  # inside the index lag
    settle()
    boundaries.append(len(writes))
    sync()
    return boundaries
