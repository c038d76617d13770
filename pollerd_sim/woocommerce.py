"""`WooSim`: a WooCommerce 10.0.2 store on loopback, faithful to the measured quirks.

pollerd's WooCommerce correctness is proved against this simulator, so it reproduces what a real
store does (research/woocommerce.md, fixtures `live-wc10.0.2/`), bugs included: the `Z` +
`dates_are_gmt` window shift, unstable `orderby=modified` pages, HPOS totals of 0 past the last
page, sticky `date_paid`, cash-on-delivery "paid" orders, credentials echoed in `Link`, Basic
auth honoured only over (detected) HTTPS, OAuth signed against the site's own URL, and
`modified_after` silently ignored before WooCommerce 5.8.

Pieces: `wc_orders` (state and ground truth), `wc_render` (JSON), `wc_query` (list arguments),
`wc_auth` (keys), `wc_rest` (routes), `wc_faults` (host failures); this module wires them to a
real HTTP server and adds the admin API under `/__sim/` that subprocess tests and `pollerd sim`
users drive the store with.
"""

from __future__ import annotations

import signal
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from pollerd_sim.loopback import JSON_TYPE, LoopbackService, RoutedHandler
from pollerd_sim.wc_admin import admin_reply
from pollerd_sim.wc_auth import KeyAuth
from pollerd_sim.wc_faults import WAF_PAGE, WP_FATAL, FaultPlan, nginx_page
from pollerd_sim.wc_orders import OrderBook, Transition
from pollerd_sim.wc_query import parse_php_query
from pollerd_sim.wc_render import wp_json
from pollerd_sim.wc_rest import ORDERS_PREFIX, Reply, RestApi

_HTML = "text/html; charset=UTF-8"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class WooSim(LoopbackService):
    """A simulated WooCommerce store over real HTTP on 127.0.0.1 (see the module docstring)."""

    handler_class = RoutedHandler

    def crash_reply(self) -> Reply:
        return Reply(500, wp_json({"code": "sim_error", "data": {"status": 500}}))

    def __init__(
        self,
        *,
        consumer_key: str = "ck_sim",
        consumer_secret: str = "cs_sim",  # noqa: S107 - the simulator's published test key
        site_timezone: str = "UTC",
        hpos: bool = True,
        wc_version: str = "10.0.2",
        https_detected: bool = False,
        home_url: str | None = None,
        permissions: str = "read_write",
        clock: Callable[[], datetime] | None = None,
        seed: int = 0,
        port: int = 0,
        host: str = "127.0.0.1",
        site_name: str = "pollerd sim store",
    ) -> None:
        super().__init__(host=host, port=port)
        self.clock = clock or _utc_now
        self.tz = ZoneInfo(site_timezone)
        self.hpos = hpos
        self.wc_version = wc_version
        self.https_detected = https_detected
        self._home_url = home_url.rstrip("/") if home_url else None
        self.seed = seed
        self.book = OrderBook(clock=self.clock, tz=self.tz, seed=seed)
        self.auth = KeyAuth(
            consumer_key=consumer_key,
            consumer_secret=consumer_secret,
            permissions=permissions,
            clock=self.clock,
        )
        self.faults = FaultPlan(seed)
        self.request_log: list[dict[str, Any]] = []
        self._log_lock = threading.Lock()
        self.rest = RestApi(
            book=self.book,
            auth=self.auth,
            tz=self.tz,
            wc_version=wc_version,
            hpos=hpos,
            seed=seed,
            site_base=self.site_base,
            https=lambda: self.https_detected,
            home_url=lambda: self.home_url,
            site_name=site_name,
        )

    # --- identity ------------------------------------------------------------------------------

    @property
    def consumer_key(self) -> str:
        return self.auth.consumer_key

    @property
    def consumer_secret(self) -> str:
        return self.auth.consumer_secret

    @property
    def home_url(self) -> str:
        """The site's own URL: OAuth signatures are checked against it (default: `.url`)."""
        return self._home_url or self.url

    def site_base(self) -> str:
        """Home URL as `rest_url()` renders it: the scheme follows `is_ssl()`."""
        parts = urllib.parse.urlsplit(self.home_url)
        scheme = "https" if self.https_detected else parts.scheme
        return urllib.parse.urlunsplit((scheme, parts.netloc, parts.path, "", "")).rstrip("/")

    @property
    def nonce_writes(self) -> int:
        """OAuth requests accepted; each one rewrites the key's nonce list in WooCommerce."""
        return self.auth.nonce_writes

    # --- orders (thread-safe; every change bumps date_modified to clock()'s second) ------------

    def create_order(
        self,
        *,
        status: str = "pending",
        payment_method: str = "bacs",
        total: str | Decimal | None = None,
        currency: str = "USD",
        email: str = "ada@example.test",
        phone: str = "+15550100",
        first_name: str = "Ada",
        last_name: str = "Lovelace",
        items: Iterable[dict[str, Any]] | None = None,
        set_paid: bool = False,
        created_via: str = "checkout",
        transaction_id: str = "",
        created_at: datetime | None = None,
        ip: str | None = None,
    ) -> int:
        """A new order; `total` defaults to 25.00 (one "Test Mug"), or the items' sum.
        `items`: dicts of name, quantity, price or total, sku, product_id.
        `set_paid=True` is REST `set_paid`: payment_complete → processing with date_paid.
        `status="checkout-draft"` is a Blocks checkout draft (listed by `status=any`).
        `created_at` backdates it: placed (and paid/completed, as its status says) then and
        untouched since, the history a shop has before pollerd's first run."""
        return self.book.create(
            status=status,
            payment_method=payment_method,
            total=total,
            currency=currency,
            email=email,
            phone=phone,
            first_name=first_name,
            last_name=last_name,
            items=items,
            set_paid=set_paid,
            created_via=created_via,
            transaction_id=transaction_id,
            created_at=created_at,
            ip=ip,
        )

    def set_status(self, order_id: int, status: str) -> None:
        """Change status with WooCommerce side effects (date_paid at processing/completed and
        sticky after; date_completed at completed; `refunded` refunds what remains)."""
        self.book.set_status(order_id, status)

    def checkout(self, order_id: int, transaction_id: str = "") -> str:
        """The gateway's process_payment(): bacs/cheque → on-hold (no date_paid); cod →
        processing *with* date_paid; anything else (stripe, ...) → payment_complete."""
        return self.book.checkout(order_id, transaction_id)

    def refund(self, order_id: int, amount: str | Decimal, reason: str = "") -> int:
        """Add a refund (negative total, id from the order sequence); returns the refund id.
        Refunds reaching the order total make it `refunded`."""
        return self.book.refund(order_id, amount, reason)

    def trash(self, order_id: int, when: datetime | None = None) -> None:
        """Status `trash` (out of `status=any`, visible under `status=trash`), modified bumped;
        `when` backdates it (a shop's history: trashed before pollerd first started)."""
        self.book.trash(order_id, when)

    def restore(self, order_id: int, status: str | None = None) -> None:
        """Out of the trash, to `status` or to the status it had."""
        self.book.restore(order_id, status)

    def delete(self, order_id: int) -> None:
        """Force delete: `GET /orders/<id>` answers 404 and no list shows it again."""
        self.book.delete(order_id)

    def touch(self, order_id: int) -> None:
        """Bump date_modified with no change (HPOS #41226)."""
        self.book.touch(order_id)

    def corrupt(self, order_id: int, **fields: Any) -> None:
        """Serve these raw values in the order (e.g. `total="garbage"`, a broken plugin), date
        modified bumped; `field=None` serves the real value again."""
        self.book.corrupt(order_id, fields)

    def set_modified(self, order_ids: Iterable[int], when: datetime) -> None:
        """Put orders' date_modified in one second (`orderby=modified` tie tests)."""
        self.book.set_modified(order_ids, when)

    def history(self) -> list[Transition]:
        """Ground truth: every (time, order_id, status, refunded_total) in order. Deletions
        appear with status `deleted`."""
        with self.book.lock:
            return list(self.book.history)

    def order(self, order_id: int) -> dict[str, Any]:
        """The order as `GET /orders/<id>` would return it (KeyError when deleted)."""
        with self.book.lock:
            return self.rest.renderer.render(self.book.get(order_id), self.site_base())

    def orders_snapshot(self) -> dict[int, dict[str, Any]]:
        """Every order (trashed ones included) as the REST API renders it, by id."""
        base = self.site_base()
        with self.book.lock:
            return {
                order_id: self.rest.renderer.render(rec, base)
                for order_id, rec in self.book.orders.items()
            }

    # --- faults --------------------------------------------------------------------------------

    def add_fault(
        self,
        kind: str,
        *,
        count: int | None = None,
        rate: float | None = None,
        retry_after: int | str | None = None,
        delay: float | None = None,
    ) -> None:
        """Fail `/wp-json/wc/v3/orders*` requests before auth. Kinds: 429, 403html, 500, 502,
        503, slow, malformed, reset (see `wc_faults`)."""
        self.faults.add(kind, count=count, rate=rate, retry_after=retry_after, delay=delay)

    def clear_faults(self) -> None:
        self.faults.clear()

    @property
    def fault_counts(self) -> dict[str, int]:
        """Faults served so far, by kind."""
        return self.faults.served()

    def stats(self) -> dict[str, Any]:
        with self._log_lock:
            by_status: dict[str, int] = {}
            for entry in self.request_log:
                key = str(entry["status"])
                by_status[key] = by_status.get(key, 0) + 1
            total = len(self.request_log)
            sent = sum(entry["bytes"] for entry in self.request_log)
        return {
            "requests": by_status,
            "requests_total": total,
            "bytes_total": sent,
            "faults": self.fault_counts,
            "orders": len(self.book.orders),
            "nonce_writes": self.nonce_writes,
        }

    # --- HTTP ----------------------------------------------------------------------------------

    def handle(
        self, method: str, path: str, query_string: str, headers: dict[str, str], body: bytes
    ) -> Reply:
        """Answer one request (everything but socket I/O; `headers` keys lower-case)."""
        if path.startswith("/__sim/"):
            return admin_reply(self, method, path, body)
        fault = self.faults.take() if path.startswith(ORDERS_PREFIX) else None
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay or 0)
        if fault is None or fault.kind in ("slow", "malformed"):
            reply = self.rest.respond(method, path, parse_php_query(query_string), headers)
            if fault is not None and fault.kind == "malformed":
                # A proxy cutting the body: a 200 whose JSON stops half way.
                reply = Reply(200, reply.body[: max(1, len(reply.body) // 2)], reply.headers)
        else:
            reply = _fault_reply(fault.kind, fault.retry_after)
        with self._log_lock:
            self.request_log.append(
                {
                    "method": method,
                    "path": path,
                    "params": urllib.parse.parse_qs(query_string, keep_blank_values=True),
                    "status": 0 if reply.reset else reply.status,
                    "time": self.clock(),
                    "fault": fault.kind if fault else None,
                    "bytes": _wire_bytes(reply),
                }
            )
        return reply


def _wire_bytes(reply: Reply) -> int:
    """What one answer costs on the wire: body plus status line and headers as the loopback
    server writes them (a real WordPress adds more headers; the body is the part that scales)."""
    if reply.reset:
        return 0
    headers = [
        ("Content-Type", reply.content_type),
        ("Content-Length", str(len(reply.body))),
        *reply.headers,
    ]
    head = len("HTTP/1.0 200 OK\r\nServer: pollerd-sim\r\nDate: Sun, 06 Dec 2026 00:00:00 GMT\r\n")
    return head + sum(len(k) + len(v) + 4 for k, v in headers) + 2 + len(reply.body)


def _fault_reply(kind: str, retry_after: int | str | None) -> Reply:
    retry = [("Retry-After", str(retry_after))] if retry_after is not None else []
    if kind == "reset":
        return Reply(0, b"", reset=True)
    if kind == "429":
        return Reply(429, nginx_page(429, "Too Many Requests"), retry, _HTML)
    if kind == "403html":
        return Reply(403, WAF_PAGE.encode(), [("CF-RAY", "8f2c1d0e9a7b6c5d-LAX")], _HTML)
    if kind == "500":
        return Reply(500, wp_json(WP_FATAL), [], JSON_TYPE)
    if kind == "502":
        return Reply(502, nginx_page(502, "Bad Gateway"), retry, _HTML)
    return Reply(503, nginx_page(503, "Service Temporarily Unavailable"), retry, _HTML)


def serve(
    host: str = "127.0.0.1",
    port: int = 8088,
    *,
    orders_per_minute: float = 0.0,
    seed: int = 0,
    **kwargs: Any,
) -> None:
    """Run a WooSim (and an OrderStream when `orders_per_minute` > 0) until Ctrl-C or SIGTERM.
    `kwargs` are WooSim's (consumer_key, consumer_secret, site_timezone, hpos, ...)."""
    from pollerd_sim.stream import OrderStream

    sim = WooSim(host=host, port=port, seed=seed, **kwargs).start()
    stop = threading.Event()
    stream_thread = None
    if orders_per_minute > 0:
        stream = OrderStream(sim, seed=seed, orders_per_minute=orders_per_minute)
        stream_thread = threading.Thread(target=stream.run, args=(stop,), daemon=True)
        stream_thread.start()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    scheme = "HTTPS detected: Basic auth works" if sim.https_detected else "plain HTTP: OAuth 1.0a"
    print(
        f"WooCommerce {sim.wc_version} simulator at {sim.url}  (site time zone {sim.tz.key}, "
        f"{'HPOS' if sim.hpos else 'posts storage'})\n"
        f"  consumer_key={sim.consumer_key}  consumer_secret={sim.consumer_secret}  ({scheme})\n"
        f"  orders: {sim.url}{ORDERS_PREFIX}   admin: POST {sim.url}/__sim/orders, "
        f"GET {sim.url}/__sim/history, GET {sim.url}/__sim/stats\n"
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
        stop.set()
        if stream_thread is not None:
            stream_thread.join(timeout=5)
        sim.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
