"""`GET /wc/v3/orders` arguments: validation and the `Link` header (selection: `wc_select`).

Measured WooCommerce 10.0.2 / WordPress 6.8.8 behaviour reproduced here (research/woocommerce.md
§1.1, §1.2, §1.5):
- argument errors are WordPress's `rest_invalid_param` bodies, word for word (fixtures
  `error_400_*.json`); arguments a WooCommerce version did not have are silently ignored
  (`modified_after` before 5.8: every order comes back);
- `any` anywhere in `status` wins (`any,trash` is `any`);
- a date value carrying `Z` or an offset is first converted to the *site* time zone, then
  compared with whichever column `dates_are_gmt` selects (the §1.5 bug: with
  `dates_are_gmt=true` the window moves by the site's UTC offset); a naive value is taken as is;
- `Link` has only `prev`/`next`, is built from the site URL and echoes the normalised query,
  query-string credentials included.
"""

from __future__ import annotations

import calendar
import re
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pollerd_sim.wc_orders import ORDER_STATUSES

Query = dict[str, str | dict[str, str]]

STATUS_ENUM = ("any", "trash", "auto-draft", *ORDER_STATUSES)
ORDERBY_ENUM = ("date", "id", "include", "title", "slug", "modified")
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}(?::\d{2})?)?$"
)
_NUMERIC = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$")


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:3])


def parse_php_query(query: str) -> Query:
    """Parse a query string as PHP fills `$_GET`: `a[]=1&a[]=2` and `a[0]=1` become arrays,
    a repeated scalar keeps its first position and its last value."""
    out: Query = {}
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        match = re.match(r"^([^\[\]]+)\[([^\]]*)\]$", key)
        if match is None:
            out[key] = value
            continue
        name, sub = match.groups()
        current = out.get(name)
        if not isinstance(current, dict):
            current = {}
            out[name] = current
        if sub == "":
            numeric = [int(k) for k in current if k.isdigit()]
            sub = str(max(numeric) + 1 if numeric else 0)
        current[sub] = value
    return out


def wp_parse_list(value: str | dict[str, str]) -> list[str]:
    if isinstance(value, dict):
        return list(value.values())
    return [v for v in re.split(r"[\s,]+", value) if v]


def _oxford(values: tuple[str, ...]) -> str:
    """wp_sprintf_l: `a, b, and c` / `a and b`."""
    if len(values) <= 2:
        return " and ".join(values)
    return ", ".join(values[:-1]) + ", and " + values[-1]


class ParamError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class DateBound:
    """A date filter as WP_Date_Query applies it: a wall-clock value and the column it targets."""

    ts: int  # the value read as UTC wall time, after the site-timezone conversion

    @staticmethod
    def parse(raw: str, tz: ZoneInfo) -> DateBound:
        if not _RFC3339.match(raw):
            raise ParamError("rest_invalid_date", "Invalid date.")
        text = raw.replace("t", "T").replace(" ", "T")
        text = re.sub(r"(\.\d{1,6})\d*", r"\1", text)
        text = re.sub(r"Z$", "+00:00", text)
        text = re.sub(r"([+-]\d{2})$", r"\1:00", text)
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise ParamError("rest_invalid_date", "Invalid date.") from None
        if value.tzinfo is not None:
            # WP_Date_Query::build_mysql_datetime: date_create($s)->setTimezone(wp_timezone()).
            value = value.astimezone(tz).replace(tzinfo=None)
        return DateBound(calendar.timegm(value.timetuple()))


@dataclass
class ListArgs:
    page: int = 1
    per_page: int = 10
    offset: int | None = None
    order: str = "desc"
    orderby: str = "date"
    statuses: frozenset[str] | None = None  # None = any
    include: list[int] = field(default_factory=list)
    exclude: list[int] = field(default_factory=list)
    parent: list[int] | None = None
    parent_exclude: list[int] = field(default_factory=list)
    customer: int | None = None
    product: int | None = None
    search: str = ""
    created_via: list[str] | None = None
    dates_are_gmt: bool = False
    after: DateBound | None = None
    before: DateBound | None = None
    modified_after: DateBound | None = None
    modified_before: DateBound | None = None
    fields: list[str] | None = None
    dp: int = 2
    sanitized: dict[str, str | list[str]] = field(default_factory=dict)

    def selection_key(self) -> tuple[Any, ...]:
        """What decides the selection and its order (not the page, `_fields` or `dp`)."""
        return (
            self.statuses,
            tuple(self.include),
            tuple(self.exclude),
            None if self.parent is None else tuple(self.parent),
            tuple(self.parent_exclude),
            self.customer,
            self.product,
            self.search,
            None if self.created_via is None else tuple(self.created_via),
            self.dates_are_gmt,
            *(
                None if b is None else b.ts
                for b in (self.after, self.before, self.modified_after, self.modified_before)
            ),
            self.orderby,
            self.order,
        )

    @property
    def start(self) -> int:
        return self.offset if self.offset is not None else (self.page - 1) * self.per_page


def _integer(name: str, raw: str) -> int:
    if not _NUMERIC.match(raw) or float(raw) != round(float(raw)):
        raise ParamError("rest_invalid_type", f"{name} is not of type integer.")
    return int(float(raw))


def _array_of_int(name: str, raw: str | dict[str, str]) -> list[int]:
    return [_integer(f"{name}[{i}]", item) for i, item in enumerate(wp_parse_list(raw))]


def _scalar(raw: str | dict[str, str]) -> str:
    # PHP would hand an array to a scalar arg; WordPress then fails the type check.
    return raw if isinstance(raw, str) else "Array"


def parse_list_args(query: Query, *, tz: ZoneInfo, wc_version: str) -> ListArgs:
    """Validate like WP_REST_Request::has_valid_params, in the route's argument order.
    Raises `InvalidParams` with every failing argument, as WordPress reports them."""
    version = version_tuple(wc_version)
    args = ListArgs()
    errors: dict[str, ParamError] = {}
    sanitized: dict[str, str | list[str]] = {}
    orderby_enum = ORDERBY_ENUM if version >= (4, 4) else ORDERBY_ENUM[:-1]

    def run(name: str, fn: Any) -> None:
        if name not in query:
            return
        try:
            fn(query[name])
        except ParamError as exc:
            errors[name] = exc

    def enum(name: str, raw: str | dict[str, str], values: tuple[str, ...]) -> str:
        value = _scalar(raw)
        if value not in values:
            raise ParamError("rest_not_in_enum", f"{name} is not one of {_oxford(values)}.")
        sanitized[name] = value
        return value

    def context(raw: Any) -> None:
        enum("context", raw, ("view", "edit"))

    def page(raw: Any) -> None:
        value = _integer("page", _scalar(raw))
        if value < 1:
            raise ParamError("rest_out_of_bounds", "page must be greater than or equal to 1")
        args.page = value
        sanitized["page"] = str(value)

    def per_page(raw: Any) -> None:
        value = _integer("per_page", _scalar(raw))
        if not 1 <= value <= 100:
            raise ParamError(
                "rest_out_of_bounds", "per_page must be between 1 (inclusive) and 100 (inclusive)"
            )
        args.per_page = value
        sanitized["per_page"] = str(value)

    def date(name: str) -> Any:
        def check(raw: Any) -> None:
            setattr(args, name, DateBound.parse(_scalar(raw), tz))

        return check

    def dates_are_gmt(raw: Any) -> None:
        value = _scalar(raw).lower()
        if value not in ("true", "false", "1", "0"):
            raise ParamError("rest_invalid_type", "dates_are_gmt is not of type boolean.")
        args.dates_are_gmt = value in ("true", "1")
        sanitized["dates_are_gmt"] = "1" if args.dates_are_gmt else ""

    def int_list(name: str) -> Any:
        def check(raw: Any) -> None:
            values = _array_of_int(name, raw)
            setattr(args, name, values)
            sanitized[name] = [str(v) for v in values]

        return check

    def scalar_int(name: str) -> Any:
        def check(raw: Any) -> None:
            value = _integer(name, _scalar(raw))
            setattr(args, name, value)
            sanitized[name] = str(value)

        return check

    def order(raw: Any) -> None:
        args.order = enum("order", raw, ("asc", "desc"))

    def orderby(raw: Any) -> None:
        args.orderby = enum("orderby", raw, orderby_enum)

    def status(raw: Any) -> None:
        values = wp_parse_list(raw)
        for i, value in enumerate(values):
            if value not in STATUS_ENUM:
                raise ParamError(
                    "rest_not_in_enum", f"status[{i}] is not one of {_oxford(STATUS_ENUM)}."
                )
        sanitized["status"] = values
        # WC_REST_Orders_Controller::prepare_objects_query breaks out of its loop at `any`.
        args.statuses = None if "any" in values else frozenset(values)

    def search(raw: Any) -> None:
        args.search = _scalar(raw)

    def created_via(raw: Any) -> None:
        args.created_via = wp_parse_list(raw)
        sanitized["created_via"] = list(args.created_via)

    checks: list[tuple[str, Any]] = [
        ("context", context),
        ("page", page),
        ("per_page", per_page),
        ("search", search),
        ("after", date("after")),
        ("before", date("before")),
    ]
    if version >= (5, 8):  # older WooCommerce has no such arguments and ignores them
        checks += [
            ("modified_after", date("modified_after")),
            ("modified_before", date("modified_before")),
        ]
    if version >= (5, 4):
        checks.append(("dates_are_gmt", dates_are_gmt))
    checks += [
        ("exclude", int_list("exclude")),
        ("include", int_list("include")),
        ("offset", scalar_int("offset")),
        ("order", order),
        ("orderby", orderby),
        ("parent", int_list("parent")),
        ("parent_exclude", int_list("parent_exclude")),
        ("status", status),
        ("customer", scalar_int("customer")),
        ("product", scalar_int("product")),
        ("dp", scalar_int("dp")),
    ]
    if version >= (9, 9):
        checks.append(("created_via", created_via))
    for name, check in checks:
        run(name, check)
    if errors:
        raise InvalidParams(errors)
    if "_fields" in query:
        args.fields = wp_parse_list(query["_fields"])
    args.sanitized = sanitized
    return args


class InvalidParams(Exception):
    def __init__(self, errors: dict[str, ParamError]) -> None:
        super().__init__(", ".join(errors))
        self.errors = errors

    def body(self) -> dict[str, Any]:
        """The `rest_invalid_param` body of WP_REST_Request::has_valid_params."""
        return {
            "code": "rest_invalid_param",
            "message": "Invalid parameter(s): " + ", ".join(self.errors),
            "data": {
                "status": 400,
                "params": {name: e.message for name, e in self.errors.items()},
                "details": {
                    name: {"code": e.code, "message": e.message, "data": None}
                    for name, e in self.errors.items()
                },
            },
        }


def _php_urlencode(value: str) -> str:
    return urllib.parse.quote_plus(value, safe="").replace("~", "%7E")


def link_header(
    query: Query, args: ListArgs, *, collection_url: str, page: int, pages: int
) -> str | None:
    """`Link` as WC_REST_CRUD_Controller::get_items builds it: only prev/next, from the site
    URL, echoing the request's query after sanitising (arrays as `key%5B0%5D`), with `status`,
    `dp` and `context` filled in, and whatever else came in the query string (credentials too)."""
    params: dict[str, str | list[str]] = {}
    for name, raw in query.items():
        params[name] = args.sanitized.get(name, raw if isinstance(raw, str) else list(raw.values()))
    params.setdefault("status", ["any"])
    params.setdefault("dp", str(args.dp))
    params.setdefault("context", "view")

    def href(target: int) -> str:
        with_page = dict(params)
        with_page["page"] = str(target)
        parts: list[str] = []
        for name, value in with_page.items():
            if isinstance(value, list):
                parts += [f"{name}%5B{i}%5D={_php_urlencode(v)}" for i, v in enumerate(value)]
            else:
                parts.append(f"{name}={_php_urlencode(value)}")
        return f"<{collection_url}?{'&'.join(parts)}>"

    links = []
    if page > 1:
        links.append(f'{href(min(page - 1, pages))}; rel="prev"')
    if pages > page:
        links.append(f'{href(page + 1)}; rel="next"')
    return ", ".join(links) or None
