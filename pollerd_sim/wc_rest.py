"""The `/wp-json/` routes of the simulated store, as WordPress + WooCommerce 10.0.2 answer them.

Routes: `GET /wp-json/` (index, no auth), `GET|OPTIONS /wc/v3/orders`, `GET /wc/v3/orders/<id>`,
`GET /wc/v3/system_status`; anything else under `/wp-json/` is `rest_no_route`. Key
authentication runs only for URLs containing `wp-json/wc/` (`is_request_to_rest_api()`), which is
why the `?rest_route=/wc/v3/orders` fallback always answers the generic 401 (research §1.6).
Headers and bodies follow the recorded fixtures (`*.headers.txt`).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

from pollerd_sim.loopback import JSON_TYPE
from pollerd_sim.wc_auth import KeyAuth, auth_error
from pollerd_sim.wc_orders import OrderBook
from pollerd_sim.wc_query import (
    InvalidParams,
    Query,
    link_header,
    parse_list_args,
    version_tuple,
    wp_parse_list,
)
from pollerd_sim.wc_render import FieldsFilter, OrderRenderer, wp_json
from pollerd_sim.wc_select import SelectionCache, select

ORDERS_PREFIX = "/wp-json/wc/v3/orders"
_ORDER_PATH = re.compile(r"^/wp-json/wc/v3/orders/(\d+)$")
_REFUNDS_PATH = re.compile(r"^/wp-json/wc/v3/orders/(\d+)/refunds$")
CANNOT_LIST = auth_error("Sorry, you cannot list resources.", "woocommerce_rest_cannot_view")
CANNOT_VIEW = auth_error("Sorry, you cannot view this resource.", "woocommerce_rest_cannot_view")
INVALID_ID = {
    "code": "woocommerce_rest_shop_order_invalid_id",
    "message": "Invalid ID.",
    "data": {"status": 404},
}
NO_ROUTE = {
    "code": "rest_no_route",
    "message": "No route was found matching the URL and request method.",
    "data": {"status": 404},
}
_NO_CACHE = [
    ("Expires", "Wed, 11 Jan 1984 05:00:00 GMT"),
    ("Cache-Control", "no-cache, must-revalidate, max-age=0, no-store, private"),
]
_NOT_FOUND_PAGE = (
    b'<!DOCTYPE html>\n<html lang="en-US"><head><title>Page not found</title></head>'
    b"<body><h1>Oops! That page can&rsquo;t be found.</h1></body></html>\n"
)


@dataclass
class Reply:
    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = JSON_TYPE
    reset: bool = False


@cache
def load_data(name: str) -> Any:
    """A recorded payload shipped as package data (`pollerd_sim/data/`)."""
    return json.loads(resources.files("pollerd_sim").joinpath("data", name).read_text("utf-8"))


class RestApi:
    """Answers one REST request given the site's configuration and its order book."""

    def __init__(
        self,
        *,
        book: OrderBook,
        auth: KeyAuth,
        tz: ZoneInfo,
        wc_version: str,
        hpos: bool,
        seed: int,
        site_base: Callable[[], str],
        https: Callable[[], bool],
        home_url: Callable[[], str],
        site_name: str,
    ) -> None:
        self.book = book
        self.auth = auth
        self.tz = tz
        self.wc_version = wc_version
        self.hpos = hpos
        self.seed = seed
        self.site_base = site_base
        self.https = https
        self.home_url = home_url
        self.site_name = site_name
        self.renderer = OrderRenderer(tz=tz, version=wc_version)
        self._selections = SelectionCache()

    # --- plumbing ------------------------------------------------------------------------------

    def _headers(
        self, extra: list[tuple[str, str]], *, link: str | None = None
    ) -> list[tuple[str, str]]:
        return [
            ("X-Robots-Tag", "noindex"),
            ("Link", link or f'<{self.site_base()}/wp-json/>; rel="https://api.w.org/"'),
            ("X-Content-Type-Options", "nosniff"),
            ("Access-Control-Expose-Headers", "X-WP-Total, X-WP-TotalPages, Link"),
            (
                "Access-Control-Allow-Headers",
                "Authorization, X-WP-Nonce, Content-Disposition, Content-MD5, Content-Type",
            ),
            *extra,
        ]

    def _json(
        self, status: int, data: Any, extra: list[tuple[str, str]] | None = None, **kw: Any
    ) -> Reply:
        body = data if isinstance(data, bytes) else wp_json(data)
        return Reply(status, body, self._headers(extra or [], **kw))

    def _unauthorized(self, body: dict[str, Any]) -> Reply:
        return self._json(401, body, [("Vary", "Origin")])

    # --- dispatch ------------------------------------------------------------------------------

    def respond(self, method: str, path: str, query: Query, headers: Mapping[str, str]) -> Reply:
        if path != "/":
            path = path.rstrip("/")
        if path == "/" and isinstance(query.get("rest_route"), str):
            # WooCommerce key auth is skipped on ?rest_route=: nothing but the generic 401.
            route = str(query["rest_route"])
            if route.startswith("/wc/"):
                return self._unauthorized(CANNOT_LIST)
            path = "/wp-json" + route.rstrip("/")
        if path == "/wp-json":
            return self._json(200, self._index(), [("Allow", "GET")])
        if not path.startswith("/wp-json/"):
            return Reply(404, _NOT_FOUND_PAGE, [], "text/html; charset=UTF-8")
        if not path.startswith("/wp-json/wc/"):
            return self._json(404, NO_ROUTE)
        authenticated, error = self.auth.authenticate(
            method=method,
            path=path,
            query=query,
            headers=headers,
            https=self.https(),
            home_url=self.home_url(),
        )
        if error is not None:
            return self._unauthorized(error)
        if path == ORDERS_PREFIX and method == "OPTIONS":
            return self._json(200, self._schema(), [("Allow", "GET, POST"), *_NO_CACHE])
        if path == ORDERS_PREFIX and method in ("GET", "HEAD"):
            if not authenticated:
                return self._unauthorized(CANNOT_LIST)
            return self._list(query)
        match = _ORDER_PATH.match(path)
        if match and method in ("GET", "HEAD"):
            if not authenticated:
                return self._unauthorized(CANNOT_VIEW)
            return self._single(int(match.group(1)), query)
        if match and method == "DELETE":
            if not authenticated:
                return self._unauthorized(CANNOT_VIEW)
            return self._delete(int(match.group(1)), query)
        match = _REFUNDS_PATH.match(path)
        if match and method in ("GET", "HEAD"):
            if not authenticated:
                return self._unauthorized(CANNOT_LIST)
            return self._refunds(int(match.group(1)), query)
        if path == "/wp-json/wc/v3/system_status" and method in ("GET", "HEAD"):
            if not authenticated:
                return self._unauthorized(CANNOT_LIST)
            return self._json(200, self._system_status(), [("Allow", "GET"), *_NO_CACHE])
        return self._json(404, NO_ROUTE)

    # --- routes --------------------------------------------------------------------------------

    def _list(self, query: Query) -> Reply:
        allow = [("Allow", "GET, POST")]
        try:
            args = parse_list_args(query, tz=self.tz, wc_version=self.wc_version)
        except InvalidParams as exc:
            return self._json(400, exc.body(), [*allow, *_NO_CACHE])
        base = self.site_base()
        fields = FieldsFilter(args.fields) if args.fields else None
        with self.book.lock:
            rows, total, pages = select(
                list(self.book.orders.values()),
                args,
                seed=self.seed,
                hpos=self.hpos,
                cache=self._selections,
                version=self.book.version,
            )
            render = self.renderer
            if fields is not None:
                body = wp_json([render.project(r, fields, base, args.dp) for r in rows])
            elif args.dp == 2:
                body = b"[" + b",".join(render.render_json(r, base) for r in rows) + b"]"
            else:
                body = wp_json([render.render(r, base, args.dp) for r in rows])
        link = link_header(
            query, args, collection_url=base + ORDERS_PREFIX, page=args.page, pages=pages
        )
        extra = [("X-WP-Total", str(total)), ("X-WP-TotalPages", str(pages))]
        return self._json(200, body, [*extra, *allow, *_NO_CACHE], link=link)

    def _single(self, order_id: int, query: Query) -> Reply:
        allow = [("Allow", "GET, POST, PUT, PATCH, DELETE"), *_NO_CACHE]
        dp = 2
        raw_dp = query.get("dp")
        if isinstance(raw_dp, str) and raw_dp.strip().isdigit():
            dp = int(raw_dp)
        with self.book.lock:
            rec = self.book.orders.get(order_id)
            if rec is None:
                return self._json(404, INVALID_ID, allow)
            data = self.renderer.render(rec, self.site_base(), dp)
            if "_fields" in query:
                data = FieldsFilter(wp_parse_list(query["_fields"])).apply(data)
            body = wp_json(data)
        return self._json(200, body, allow)

    def _delete(self, order_id: int, query: Query) -> Reply:
        """`DELETE orders/<id>`: to the trash, or gone for good with `force=true` ("Delete
        permanently", cleanup plugins); answers the order as it was (fixture
        rest-api-docs/delete_order_727_response)."""
        allow = [("Allow", "GET, POST, PUT, PATCH, DELETE"), *_NO_CACHE]
        with self.book.lock:
            rec = self.book.orders.get(order_id)
            if rec is None:
                return self._json(404, INVALID_ID, allow)
            body = wp_json(self.renderer.render(rec, self.site_base()))
            if str(query.get("force", "")).lower() in ("true", "1"):
                self.book.delete(order_id)
            else:
                self.book.trash(order_id)
        return self._json(200, body, allow)

    def _refunds(self, order_id: int, query: Query) -> Reply:
        """`GET orders/<id>/refunds`: the order's refunds, newest first, each with its own date
        (the order's `refunds[]` has none; fixture rest-api-docs/list_order_refunds_723)."""
        allow = [("Allow", "GET, POST"), *_NO_CACHE]
        with self.book.lock:
            rec = self.book.orders.get(order_id)
            # A real WooCommerce 10.0.2 answers `200 []` (X-WP-Total 0) for the refunds of an
            # order deleted for good, not 404 (measured on loopback, HPOS).
            rows: list[dict[str, Any]] = [
                {
                    "id": r.id,
                    "date_created": r.created.astimezone(self.tz).strftime("%Y-%m-%dT%H:%M:%S"),
                    "date_created_gmt": r.created.strftime("%Y-%m-%dT%H:%M:%S"),
                    "amount": f"{r.amount:.2f}",
                    "reason": r.reason,
                    "refunded_by": 1,
                    "refunded_payment": False,
                    "meta_data": [],
                    "line_items": [],
                }
                for r in (rec.refunds if rec is not None else ())
            ]
        if "_fields" in query:
            fields = FieldsFilter(wp_parse_list(query["_fields"]))
            rows = [fields.apply(row) for row in rows]
        total = [("X-WP-Total", str(len(rows))), ("X-WP-TotalPages", "1")]
        return self._json(200, wp_json(rows), [*total, *allow])

    def _schema(self) -> dict[str, Any]:
        """The live OPTIONS schema, minus the arguments this WooCommerce version did not have."""
        schema = copy.deepcopy(load_data("options_orders_route_schema.json"))
        version = version_tuple(self.wc_version)
        args = schema["endpoints"][0]["args"]
        if version < (5, 8):
            args.pop("modified_after", None)
            args.pop("modified_before", None)
        if version < (5, 4):
            args.pop("dates_are_gmt", None)
        if version < (9, 9):
            args.pop("created_via", None)
        if version < (4, 4):
            args["orderby"]["enum"] = [v for v in args["orderby"]["enum"] if v != "modified"]
        schema["_links"] = {"self": [{"href": self.site_base() + ORDERS_PREFIX}]}
        return schema

    def _index(self) -> dict[str, Any]:
        home = self.site_base()
        offset = datetime.now(UTC).astimezone(self.tz).utcoffset()
        hours = offset.total_seconds() / 3600 if offset else 0
        return {
            "name": self.site_name,
            "description": "A simulated WooCommerce store (pollerd_sim)",
            "url": home,
            "home": home,
            "gmt_offset": int(hours) if hours == int(hours) else hours,
            "timezone_string": str(self.tz.key),
            "namespaces": ["oembed/1.0", "wc/store/v1", "wc/v1", "wc/v2", "wc/v3", "wp/v2"],
            "authentication": [],
            "routes": {},
        }

    def _system_status(self) -> dict[str, Any]:
        home = self.site_base()
        return {
            "environment": {
                "home_url": home,
                "site_url": home,
                "store_id": "",
                "version": self.wc_version,
                "wp_version": "6.8.8",
                "wp_multisite": False,
                "wp_debug_mode": False,
                "language": "en_US",
                "server_info": "pollerd-sim",
                "php_version": "8.2.36",
                "default_timezone": "UTC",
            },
            "database": {"wc_database_version": self.wc_version},
            "active_plugins": [
                {
                    "plugin": "woocommerce/woocommerce.php",
                    "name": "WooCommerce",
                    "version": self.wc_version,
                },
            ],
            "settings": {
                "api_enabled": True,
                "currency": "USD",
                "currency_symbol": "$",
                "timezone": str(self.tz.key),
            },
        }
