"""`ShopSim`: a Shopify store on loopback, faithful to the documented Admin API behaviour.

pollerd's Shopify correctness is proved against this simulator (contract: the brief
`shopsim.md`; facts: research/shopify.md; payload shapes: fixtures `shared/fixtures/shopify/`).
What it reproduces: the GraphQL Admin API with calculated query cost, a leaky bucket and
`THROTTLED` (as HTTP 200 or 429), `MAX_COST_EXCEEDED`, version fall-forward
(`X-Shopify-API-Version` names the version served, never an error), a lagging search index for
`updated_at`, same-`updatedAt` clusters paged by (value, id) cursors, bulk operations with JSONL,
deletion events, disputes, the 60-day visibility limit without `read_all_orders`, the legacy REST
API with its own bucket and frozen `page_info`, the client-credentials token endpoint, and
injected faults.

Pieces: `shop_orders` (state, ground truth), `shop_search` (search syntax, cursors),
`shop_schema` (SDL and node shapes), `shop_bucket` (cost and buckets), `shop_graphql`
(execution), `shop_bulk` (bulk operations), `shop_rest` (REST), `shop_admin` (the `/__sim/` admin
API); this module wires them to a real HTTP server.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import signal
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pollerd_sim.loopback import LoopbackService, RoutedHandler
from pollerd_sim.shop_admin import admin_reply
from pollerd_sim.shop_bucket import CallBucket, PointBucket
from pollerd_sim.shop_bulk import BulkRunner
from pollerd_sim.shop_graphql import GraphQLApi, Outcome
from pollerd_sim.shop_orders import Change, ShopBook, Stamp
from pollerd_sim.shop_rest import THROTTLED_BODY, Reply, RestApi, json_reply
from pollerd_sim.shop_schema import CURRENCIES, ground_truth

_API_PATH = re.compile(r"^/admin/api/([^/]+)/(.+)$")
_HTML = "text/html; charset=UTF-8"
INVALID_TOKEN = {
    "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"
}
FAULT_KINDS = ("500", "502", "throttled", "slow", "reset", "internal")
BAD_GATEWAY_PAGE = (
    b'<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8"><title>502 Bad Gateway'
    b"</title></head>\n<body><h1>502 Bad Gateway</h1><p>There was a problem loading this "
    b"website. Please try again.</p></body>\n</html>\n"
)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Fault:
    kind: str
    count: int
    retry_after: float | str | None = None
    delay: float | None = None


class ShopSim(LoopbackService):
    """A simulated Shopify store over real HTTP on 127.0.0.1 (see the module docstring)."""

    handler_class = RoutedHandler

    def crash_reply(self) -> Reply:
        return json_reply(500, {"errors": "Internal Server Error"})

    def __init__(
        self,
        shop: str = "acme.myshopify.com",
        access_token: str | None = "shpat_sim_token",  # noqa: S107 - the published sim token
        client_id: str | None = None,
        client_secret: str | None = None,
        token_ttl: float = 86400.0,
        scopes: tuple[str, ...] = ("read_orders", "read_shopify_payments_disputes"),
        versions: tuple[str, ...] = ("2026-01", "2026-04", "2026-07", "2026-10"),
        bucket: int = 2000,
        restore: float = 100.0,
        rest_bucket: int = 40,
        rest_leak: float = 2.0,
        throttle_status: int = 200,
        index_lag: float | tuple[float, float] = 0.0,
        event_lag: float = 0.0,
        bulk_seconds: float = 0.3,
        bulk_concurrency: int = 1,
        max_ok_page: int | None = None,
        clock: Callable[[], datetime] | None = None,
        seed: int = 0,
        *,
        monotonic: Callable[[], float] | None = None,
        slow_seconds: float = 35.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        if throttle_status not in (200, 429):
            raise ValueError("throttle_status must be 200 or 429")
        self.shop = shop
        self.access_token = access_token
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_ttl = token_ttl
        self.scopes = tuple(scopes)
        self.versions = tuple(versions)
        self.slow_seconds = slow_seconds
        self.clock = clock or _utc_now
        self.monotonic = monotonic or time.monotonic
        self.book = ShopBook(
            clock=self.clock,
            monotonic=self.monotonic,
            index_lag=index_lag,
            event_lag=event_lag,
            read_all_orders="read_all_orders" in self.scopes,
            seed=seed,
        )
        self.bucket = PointBucket(bucket, restore, self.monotonic)
        self.rest_bucket = CallBucket(rest_bucket, rest_leak, self.monotonic)
        self.graphql = GraphQLApi(
            book=self.book,
            bucket=self.bucket,
            shop=shop,
            scopes=self.scopes,
            max_ok_page=max_ok_page,
            throttle_status=throttle_status,
        )
        self.bulk = BulkRunner(
            self.graphql,
            self.book,
            seconds=bulk_seconds,
            concurrency=bulk_concurrency,
            base_url=lambda: self.url,
        )
        self.graphql.bulk = self.bulk
        self.rest = RestApi(
            book=self.book,
            bucket=self.rest_bucket,
            shop=shop,
            base_url=lambda: self.url,
            max_ok_page=max_ok_page,
        )
        self.request_log: list[dict[str, Any]] = []
        self._log_lock = threading.Lock()
        self._faults: list[Fault] = []
        self._fault_counts: dict[str, int] = {}
        self._tokens: dict[str, Stamp] = {}
        self._tokens_issued = 0

    # --- orders (thread-safe; each change bumps updatedAt to the clock's second) -------------

    def create_order(
        self,
        *,
        financial: str = "PENDING",
        total: str | Decimal = "25.00",
        currency: str = "USD",
        email: str = "ada@example.test",
        phone: str = "+15550100",
        first_name: str = "Ada",
        last_name: str = "Lovelace",
        items: Iterable[dict[str, Any]] | None = None,
        test: bool = False,
        gateway: str = "shopify_payments",
        created_at: datetime | None = None,
        ip: str | None = None,
    ) -> int:
        """A new order; returns its legacy id. `currency` must be a `CurrencyCode`; `items` are
        dicts of name, quantity, sku, price; `created_at` backdates the order (one older than
        60 days is invisible without `read_all_orders`)."""
        if currency.upper() not in CURRENCIES:
            raise ValueError(f"unknown currency {currency!r}; known: {', '.join(CURRENCIES)}")
        return self.book.create(
            financial=financial,
            total=total,
            currency=currency,
            email=email,
            phone=phone,
            first_name=first_name,
            last_name=last_name,
            items=items,
            test=test,
            gateway=gateway,
            created_at=created_at,
            ip=ip,
        )

    def authorize(self, order_id: int) -> None:
        self.book.set_financial(order_id, "AUTHORIZED")

    def pay(self, order_id: int) -> None:
        """Capture: the order becomes PAID."""
        self.book.set_financial(order_id, "PAID")

    def partially_pay(self, order_id: int) -> None:
        self.book.set_financial(order_id, "PARTIALLY_PAID")

    def void(self, order_id: int) -> None:
        """Void an authorization (only AUTHORIZED orders)."""
        self.book.set_financial(order_id, "VOIDED", requires="AUTHORIZED")

    def expire(self, order_id: int) -> None:
        """An authorization that was never captured lapses (only AUTHORIZED orders)."""
        self.book.set_financial(order_id, "EXPIRED", requires="AUTHORIZED")

    def cancel(self, order_id: int, reason: str = "CUSTOMER") -> None:
        """Sets cancelledAt, cancelReason, and closes the order."""
        self.book.cancel(order_id, reason)

    def refund(self, order_id: int, amount: str | Decimal) -> int:
        """Refund `amount`: PARTIALLY_REFUNDED, or REFUNDED once the whole total is back.
        Returns the refund's id."""
        return self.book.refund(order_id, amount)

    def fulfill(self, order_id: int) -> None:
        self.book.fulfill(order_id)

    def touch(self, order_id: int) -> None:
        """updatedAt moves, nothing else (research §4: updated_at changing with no edit)."""
        self.book.touch(order_id)

    def set_updated(self, order_ids: Iterable[int], when: datetime) -> None:
        """Stamp every order with one updatedAt (a cluster sharing one value)."""
        self.book.set_updated(order_ids, when)

    def delete(self, order_id: int) -> None:
        """The order disappears from every query; a `destroy` BasicEvent is recorded."""
        self.book.delete(order_id)

    def add_dispute(
        self,
        order_id: int,
        amount: str | Decimal,
        *,
        reason: str = "FRAUDULENT",
        status: str = "NEEDS_RESPONSE",
        type: str = "CHARGEBACK",
        evidence_due_by: datetime | None = None,
    ) -> int:
        return self.book.add_dispute(
            order_id,
            amount,
            reason=reason,
            status=status,
            type=type,
            evidence_due_by=evidence_due_by,
        )

    def set_dispute_status(self, dispute_id: int, status: str) -> None:
        self.book.set_dispute_status(dispute_id, status)

    def order(self, order_id: int) -> dict[str, Any]:
        """Ground truth: the order as a GraphQL query selecting every field would return it
        (regardless of scopes and index lag). KeyError once deleted."""
        with self.book.lock:
            return ground_truth(self.book.get(order_id), self.shop)

    def history(self) -> list[Change]:
        """Every change the store made, in order (deletions included), each with the index lag
        it got."""
        with self.book.lock:
            return list(self.book.history)

    def lagging(self, seconds: float) -> contextlib.AbstractContextManager[None]:
        """`with sim.lagging(30): sim.pay(order)`: the `updated_at` search index shows the
        changes made inside only after `seconds` (see `shop_orders`)."""
        return self.book.lagging(seconds)

    # --- budget, faults, tokens --------------------------------------------------------------

    def consume(self, points: float) -> None:
        """Another client of the same app token spends GraphQL budget."""
        self.bucket.consume(points)

    def other_app(self, points_per_second: float = 0.0, calls_per_second: float = 0.0) -> None:
        """Another app on the same token spends steadily from now on: `points_per_second` of
        the GraphQL bucket and `calls_per_second` of the REST one, as much as is left (0 stops
        it). What it got is `stats()["others"]`; what pollerd spent is in `request_log`, so a
        test can measure pollerd's share of the budget."""
        self.bucket.drain(points_per_second)
        self.rest_bucket.drain(calls_per_second)

    def set_throttle_status(self, status: int) -> None:
        """THROTTLED comes as HTTP 200 (a GraphQL error in the body) or 429 from now on."""
        if status not in (200, 429):
            raise ValueError("throttle_status must be 200 or 429")
        self.graphql.throttle_status = status

    def add_fault(
        self,
        kind: str,
        count: int = 1,
        *,
        retry_after: float | str | None = None,
        delay: float | None = None,
    ) -> None:
        """Fail the next `count` `/admin/api/` requests. Kinds: 500, 502 (HTML), throttled,
        slow (answer after `delay`, default `slow_seconds` = 35 s), reset (TCP RST), internal
        (200 with INTERNAL_SERVER_ERROR)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULT_KINDS)}")
        with self._log_lock:
            self._faults.append(Fault(kind, int(count), retry_after, delay))

    def clear_faults(self) -> None:
        with self._log_lock:
            self._faults.clear()

    def _take_fault(self) -> Fault | None:
        with self._log_lock:
            while self._faults and self._faults[0].count <= 0:
                self._faults.pop(0)
            if not self._faults:
                return None
            fault = self._faults[0]
            fault.count -= 1
            self._fault_counts[fault.kind] = self._fault_counts.get(fault.kind, 0) + 1
            return fault

    def fail_next_bulk(self, partial: bool = True) -> None:
        """The next bulk operation ends FAILED (INTERNAL_SERVER_ERROR), with `partialDataUrl`
        holding the first half of its rows when `partial`."""
        self.bulk.fail_next(partial)

    def expire_tokens(self) -> None:
        """Every client-credentials token issued so far becomes invalid (401)."""
        with self._log_lock:
            self._tokens.clear()

    def _token_ok(self, token: str | None) -> bool:
        if not token:
            return False
        if self.access_token is not None and secrets.compare_digest(token, self.access_token):
            return True
        with self._log_lock:
            issued = self._tokens.get(token)
        return issued is not None and not self.book.aged(issued, self.token_ttl)

    def stats(self) -> dict[str, Any]:
        with self._log_lock:
            log = list(self.request_log)
            faults = dict(self._fault_counts)
            tokens = self._tokens_issued
        by_kind: dict[str, int] = {}
        by_status: dict[str, int] = {}
        for entry in log:
            by_kind[entry["query_kind"]] = by_kind.get(entry["query_kind"], 0) + 1
            by_status[str(entry["status"])] = by_status.get(str(entry["status"]), 0) + 1
        return {
            "requests": len(log),
            "throttled": sum(1 for e in log if e["throttled"]),
            "points_spent": sum(e["actual"] or 0 for e in log),
            "max_cost_seen": max((e["requested"] or 0 for e in log), default=0),
            "bulk_started": self.bulk.started,
            "by_kind": by_kind,
            "by_status": by_status,
            "faults": faults,
            "tokens_issued": tokens,
            "orders": len(self.book.orders),
            "available": self.bucket.available,
            "others": {"points": self.bucket.others, "calls": self.rest_bucket.others},
        }

    # --- HTTP --------------------------------------------------------------------------------

    def served_version(self, requested: str) -> str:
        """A supported version is served as asked; any other falls forward to the oldest."""
        return requested if requested in self.versions else self.versions[0]

    def handle(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> Reply:
        """Answer one request (everything but socket I/O; `headers` keys lower-case)."""
        if path.startswith("/__sim/"):
            return admin_reply(self, method, path, body)
        if path.startswith("/__bulk/") and method in ("GET", "HEAD"):
            status, data, content_type = self.bulk.file(path.rsplit("/", 1)[-1])
            return Reply(status, data, [], content_type)
        if path == "/admin/oauth/access_token" and method == "POST":
            reply = self._token(headers, body)
            self._log(path, reply.status, "token")
            return reply
        match = _API_PATH.match(path)
        if match is None:
            return json_reply(404, {"errors": "Not Found"})
        version = self.served_version(match.group(1))
        resource = match.group(2)
        kind = "other" if resource == "graphql.json" else "rest"
        fault = self._take_fault()
        if fault is not None and fault.kind == "slow":
            time.sleep(self.slow_seconds if fault.delay is None else float(fault.delay))
        outcome: Outcome | None = None
        if fault is not None and fault.kind in ("500", "502", "reset"):
            reply = _fault_reply(fault)
        elif not self._token_ok(headers.get("x-shopify-access-token")):
            reply = json_reply(401, INVALID_TOKEN)
        elif resource == "graphql.json" and method == "POST":
            forced = fault.kind if fault is not None and fault.kind != "slow" else None
            outcome, reply = self._graphql(headers, body, forced)
            kind = outcome.kind if outcome is not None else kind
        elif fault is not None and fault.kind == "throttled":
            wait = float(fault.retry_after) if fault.retry_after is not None else 2.0
            reply = json_reply(429, THROTTLED_BODY, [("Retry-After", f"{wait:.1f}")])
        elif fault is not None and fault.kind == "internal":
            reply = json_reply(500, {"errors": "Internal Server Error"})
        else:
            reply = self.rest.respond(method, resource, query, version)
        reply.headers.append(("X-Shopify-API-Version", version))
        reply.headers.append(("X-Request-Id", secrets.token_hex(8)))
        self._log(path, 0 if reply.reset else reply.status, kind, outcome, fault)
        return reply

    def _graphql(
        self, headers: dict[str, str], body: bytes, fault: str | None
    ) -> tuple[Outcome | None, Reply]:
        content_type = headers.get("content-type", "application/json")
        variables: Any = None
        operation_name = None
        try:
            if content_type.startswith("application/graphql"):
                query: Any = body.decode()
            else:
                payload = json.loads(body or b"{}")
                query = payload.get("query")
                variables = payload.get("variables")
                operation_name = payload.get("operationName")
        except (ValueError, AttributeError):
            query = None
        if (
            not isinstance(query, str)
            or not query.strip()
            or not isinstance(variables, dict | type(None))
        ):
            return None, json_reply(
                400, {"errors": {"query": "Required parameter missing or invalid"}}
            )
        outcome = self.graphql.execute(query, variables, operation_name, fault=fault)
        return outcome, json_reply(outcome.status, outcome.body, list(outcome.headers))

    def _token(self, headers: dict[str, str], body: bytes) -> Reply:
        """`POST /admin/oauth/access_token`, client-credentials grant (form or JSON)."""
        text = body.decode("utf-8", "replace")
        if headers.get("content-type", "").startswith("application/json"):
            try:
                raw = json.loads(text or "{}")
                params = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
            except ValueError:
                params = {}
        else:
            params = {k: v[-1] for k, v in urllib.parse.parse_qs(text).items()}
        if params.get("grant_type") != "client_credentials":
            return json_reply(
                400,
                {
                    "error": "unsupported_grant_type",
                    "error_description": "The grant type is not supported.",
                },
            )
        if (
            self.client_id is None
            or self.client_secret is None
            or params.get("client_id") != self.client_id
            or not secrets.compare_digest(params.get("client_secret", ""), self.client_secret)
        ):
            return json_reply(
                400,
                {
                    "error": "invalid_client",
                    "error_description": "Client authentication failed due to unknown client, no "
                    "client authentication included, or unsupported authentication method.",
                },
            )
        token = "shpat_" + secrets.token_hex(16)
        with self._log_lock:
            self._tokens[token] = self.book.stamp()
            self._tokens_issued += 1
        return json_reply(
            200,
            {
                "access_token": token,
                "scope": ",".join(self.scopes),
                "expires_in": max(0, int(self.token_ttl) - 1),
            },
        )

    def _log(
        self,
        path: str,
        status: int,
        kind: str,
        outcome: Outcome | None = None,
        fault: Fault | None = None,
    ) -> None:
        entry = {
            "t": self.monotonic(),
            "path": path,
            "status": status,
            "requested": outcome.requested if outcome else None,
            "actual": outcome.actual if outcome else None,
            "available_before": outcome.available_before if outcome else None,
            "throttled": bool(outcome and outcome.throttled),
            "query_kind": kind,
            "fields": list(outcome.fields) if outcome else [],
            "fault": fault.kind if fault else None,
        }
        with self._log_lock:
            self.request_log.append(entry)


def _fault_reply(fault: Fault) -> Reply:
    retry = [("Retry-After", str(fault.retry_after))] if fault.retry_after is not None else []
    if fault.kind == "reset":
        return Reply(0, b"", reset=True)
    if fault.kind == "502":
        return Reply(502, BAD_GATEWAY_PAGE, retry, _HTML)
    return json_reply(500, {"errors": "Internal Server Error"}, retry)


def serve_shopify(
    host: str = "127.0.0.1",
    port: int = 8089,
    *,
    orders_per_minute: float = 0.0,
    seed: int = 0,
    **kwargs: Any,
) -> None:
    """Run a ShopSim (and a ShopStream when `orders_per_minute` > 0) until Ctrl-C or SIGTERM;
    `kwargs` are ShopSim's."""
    from pollerd_sim.shop_stream import ShopStream

    sim = ShopSim(host=host, port=port, seed=seed, **kwargs).start()
    stop = threading.Event()
    if orders_per_minute > 0:
        stream = ShopStream(sim, seed=seed, orders_per_minute=orders_per_minute)
        threading.Thread(target=stream.run, args=(stop,), daemon=True).start()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(
        f"Shopify simulator for {sim.shop} at {sim.url}  (versions {', '.join(sim.versions)})\n"
        f"  GraphQL: POST {sim.url}/admin/api/{sim.versions[-1]}/graphql.json  "
        f"X-Shopify-Access-Token: {sim.access_token or '(client credentials only)'}\n"
        f"  admin: POST {sim.url}/__sim/orders, GET {sim.url}/__sim/stats\n"
        f"  generating {orders_per_minute:g} actions per minute (new orders and changes to "
        "them); Ctrl-C to stop",
        flush=True,
    )
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
