"""GraphQL Admin API execution: parse, validate, price, throttle, resolve, refund.

Real parsing and validation with graphql-core over the SDL in `shop_schema`; an invalid document
answers HTTP 200 with `errors` (as Shopify does). Before resolving, the requested cost is computed
from the AST (`shop_bucket.CostWalker`): above 1000 → `MAX_COST_EXCEEDED`; above what the bucket
holds → `THROTTLED` (fixture `graphql_throttled_error_community.json`; HTTP status configurable
because Shopify's is not documented, research §1.4). Otherwise the cost is reserved, the query
runs, and `requested − actual` goes back into the bucket.

Search and the index: `updated_at` filters and `sortKey: UPDATED_AT` read the lagging search index
(`ShopBook.indexed`); other filters and sort keys, `order(id:)` and `nodes(ids:)` read current
data, so a sweep by `created_at` is the second access path the research recommends
(Implications 3).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    build_schema,
    execute_sync,
    get_operation_ast,
    parse,
    validate,
)
from graphql.execution.values import VariableValues, get_argument_values, get_variable_values

from pollerd_sim.shop_bucket import MAX_QUERY_COST, CostWalker, PointBucket
from pollerd_sim.shop_orders import Facets, OrderRec, ShopBook
from pollerd_sim.shop_schema import (
    SDL,
    SHOP_ID,
    render_dispute,
    render_event,
    render_line,
    render_order,
    render_refund,
)
from pollerd_sim.shop_search import InvalidCursor, Page, Row, paginate, parse_search

if TYPE_CHECKING:
    from pollerd_sim.shop_bulk import BulkRunner

_GID = re.compile(r"^gid://shopify/([A-Za-z]+)/(\d+)$")
THROTTLED_ERROR = {
    "message": "Throttled",
    "extensions": {
        "code": "THROTTLED",
        "documentation": "https://shopify.dev/api/usage/rate-limits",
    },
}
MAX_NODES = 250
BULK_CHUNK = 10_000
"""Root orders a bulk export reads per hold of the book's lock (`GraphQLApi.execute_bulk`)."""


def access_denied(field_name: str, scope: str) -> GraphQLError:
    return GraphQLError(
        f"Access denied for {field_name} field. Required access: `{scope}` access scope.",
        extensions={
            "code": "ACCESS_DENIED",
            "documentation": "https://shopify.dev/api/usage/access-scopes",
            "requiredAccess": f"`{scope}` access scope.",
        },
    )


@dataclass(slots=True)
class Context:
    bulk: bool = False
    only: list[int] | None = None  # a bulk chunk: the root `orders` connection holds these ids


@dataclass(slots=True)
class Outcome:
    """One answered GraphQL request, with what the request log records about it."""

    status: int
    body: dict[str, Any]
    kind: str = "other"
    requested: int | None = None
    actual: int | None = None
    available_before: float | None = None
    throttled: bool = False
    headers: list[tuple[str, str]] = field(default_factory=list)
    fields: tuple[str, ...] = ()
    """Root field names of the operation (`bulkOperationRunQuery`, `node`, `orders`...)."""


def connection(page: Page[Any], render: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    nodes = [render(row.item) for row in page.rows]
    cursors = [page.cursor(row) for row in page.rows]
    return {
        "nodes": nodes,
        "edges": [{"cursor": c, "node": n} for c, n in zip(cursors, nodes, strict=True)],
        "pageInfo": {
            "hasNextPage": page.has_next,
            "hasPreviousPage": page.has_previous,
            "startCursor": cursors[0] if cursors else None,
            "endCursor": cursors[-1] if cursors else None,
        },
    }


def _order_lookup(facets: Facets, rec: OrderRec) -> Callable[[str], Any]:
    if facets.closed:
        status = {"closed", "any"} | ({"cancelled"} if facets.cancelled else set())
    else:
        status = {"open", "not_closed", "any"}
    fulfillment = {
        "FULFILLED": {"fulfilled", "shipped"},
        "PARTIALLY_FULFILLED": {"partial", "unshipped"},
    }.get(facets.fulfillment, {"unfulfilled", "unshipped"})
    table: dict[str, Any] = {
        "updated_at": facets.updated_at,
        "created_at": facets.created_at,
        "processed_at": facets.processed_at,
        "financial_status": frozenset({facets.financial.lower(), "any"}),
        "fulfillment_status": frozenset(fulfillment | {"any"}),
        "status": frozenset(status),
        "test": facets.test,
        "id": rec.id,
        "name": frozenset({facets.name.lower(), facets.name[1:]}),
        "email": facets.email,
        "": frozenset(
            w.lower() for w in (facets.name, facets.name[1:], facets.email, *rec.email.split("@"))
        ),
    }
    return lambda name: table.get(name, ...)


def _sort_value(sort_key: str, facets: Facets, rec: OrderRec) -> Any:
    if sort_key == "UPDATED_AT":
        return facets.updated_at
    if sort_key == "CREATED_AT":
        return facets.created_at
    if sort_key == "PROCESSED_AT":
        return facets.processed_at
    if sort_key in ("TOTAL_PRICE", "CURRENT_TOTAL_PRICE"):
        return int(rec.total * 100)
    return rec.id  # ID, ORDER_NUMBER, RELEVANCE and the keys the sim does not model


class GraphQLApi:
    """Answers `POST /admin/api/{version}/graphql.json` bodies for one shop."""

    def __init__(
        self,
        *,
        book: ShopBook,
        bucket: PointBucket,
        shop: str,
        scopes: tuple[str, ...],
        max_ok_page: int | None,
        throttle_status: int,
    ) -> None:
        self.book = book
        self.bucket = bucket
        self.shop = shop
        self.scopes = scopes
        self.max_ok_page = max_ok_page
        self.throttle_status = throttle_status
        self.bulk: BulkRunner | None = None
        self.schema: GraphQLSchema = build_schema(SDL)
        self._wire()

    # --- request ---------------------------------------------------------------------------

    def cost_extension(self, requested: int | None, actual: int | None) -> dict[str, Any]:
        status = self.bucket.status()
        return {
            "cost": {
                "requestedQueryCost": requested,
                "actualQueryCost": actual,
                "throttleStatus": status,
            }
        }

    def _errors(self, errors: Sequence[Mapping[str, Any]], kind: str = "other") -> Outcome:
        return Outcome(200, {"errors": errors, "extensions": self.cost_extension(0, 0)}, kind)

    def execute(
        self,
        query: str,
        variables: dict[str, Any] | None,
        operation_name: str | None,
        *,
        fault: str | None = None,
    ) -> Outcome:
        """Run one request; `fault` "throttled" or "internal" overrides the answer."""
        try:
            document = parse(query)
        except GraphQLError as exc:
            return self._errors([exc.formatted])
        errors = validate(self.schema, document)
        if errors:
            return self._errors([e.formatted for e in errors])
        operation = get_operation_ast(document, operation_name)
        if operation is None:
            return self._errors([{"message": "An operation name is required"}])
        coerced = get_variable_values(
            self.schema, operation.variable_definitions or (), variables or {}
        )
        if isinstance(coerced, list):
            return self._errors([e.formatted for e in coerced])
        kind = self._kind(operation, coerced)
        names = tuple(
            sel.name.value
            for sel in operation.selection_set.selections
            if isinstance(sel, FieldNode)
        )
        walker = CostWalker(self.schema, _fragments(document), coerced)
        requested = walker.requested(operation)
        if walker.errors:
            spent = max(1, requested)
            self.bucket.reserve(spent)
            body: dict[str, Any] = {
                "errors": [e.as_error() for e in walker.errors],
                "data": None,
                "extensions": self.cost_extension(spent, spent),
            }
            return Outcome(200, body, kind, spent, spent, fields=names)
        if requested > MAX_QUERY_COST:
            error = {
                "message": f"Query cost is {requested}, which exceeds the single query max cost "
                f"limit ({MAX_QUERY_COST}).\n\nSee https://shopify.dev/concepts/about-apis/"
                "rate-limits for more information on how the\ncost of a query is calculated.\n\n"
                "To query larger amounts of data with fewer limits, bulk operations should be "
                "used instead.\nSee https://shopify.dev/tutorials/perform-bulk-operations-with-"
                "admin-api for usage details.\n",
                "extensions": {
                    "code": "MAX_COST_EXCEEDED",
                    "cost": requested,
                    "maxCost": MAX_QUERY_COST,
                },
            }
            body = {"errors": [error], "extensions": self.cost_extension(requested, None)}
            return Outcome(200, body, kind, requested, None, fields=names)
        if (
            self.max_ok_page is not None
            and max(walker.page_sizes.values(), default=0) > (self.max_ok_page)
            and "orders" in walker.page_sizes
        ):
            # Airbyte PR #60797: pages of orders with huge line item counts answer 500.
            return Outcome(500, {"errors": "Internal Server Error"}, kind, requested, fields=names)
        if fault == "internal":
            error = {
                "message": "Internal error. Looks like something went wrong on our end.\n"
                "Request ID: 7f4e1c2a-sim (include this in support requests).",
                "extensions": {"code": "INTERNAL_SERVER_ERROR", "requestId": "7f4e1c2a-sim"},
            }
            body = {"errors": [error], "extensions": self.cost_extension(requested, 0)}
            return Outcome(200, body, kind, requested, 0, fields=names)
        granted, before = (
            (False, self.bucket.available)
            if fault == "throttled"
            else (self.bucket.reserve(requested))
        )
        if not granted:
            body = {"errors": [THROTTLED_ERROR], "extensions": self.cost_extension(requested, None)}
            headers = []
            if self.throttle_status == 429:
                wait = max(1.0, (requested - before) / self.bucket.restore)
                headers.append(("Retry-After", f"{wait:.1f}"))
            return Outcome(
                self.throttle_status,
                body,
                kind,
                requested,
                None,
                before,
                True,
                headers,
                fields=names,
            )
        with self.book.lock:
            result = execute_sync(
                self.schema,
                document,
                context_value=Context(),
                variable_values=variables or {},
                operation_name=operation_name,
            )
        actual = walker.actual(operation, result.data)
        actual = min(actual, requested)
        self.bucket.refund(requested - actual)
        body = {}
        if result.errors:
            body["errors"] = [e.formatted for e in result.errors]
        body["data"] = result.data
        body["extensions"] = self.cost_extension(requested, actual)
        return Outcome(200, body, kind, requested, actual, before, fields=names)

    def _kind(self, operation: OperationDefinitionNode, variables: VariableValues) -> str:
        root = self.schema.get_root_type(operation.operation)
        for sel in operation.selection_set.selections:
            if not isinstance(sel, FieldNode) or root is None:
                continue
            name = sel.name.value
            if operation.operation == OperationType.MUTATION:
                return "bulk" if name.startswith("bulkOperation") else "other"
            if name == "currentBulkOperation":
                return "bulk"
            if name in ("orders", "events", "disputes"):
                return name
            if name in ("node", "nodes", "order"):
                args = get_argument_values(root.fields[name], sel, variables)
                ids = args.get("ids") or [args.get("id")]
                if any("/BulkOperation/" in str(i) for i in ids):
                    return "bulk"
                return "nodes"
        return "other"

    # --- bulk support ------------------------------------------------------------------------

    def prepare_bulk(self, query: str) -> tuple[DocumentNode | None, CostWalker | None, str]:
        """Parse and validate a bulk query; (document, walker, "") or (None, None, message)."""
        try:
            document = parse(query)
        except GraphQLError as exc:
            return None, None, f"Invalid bulk query: {exc.message}"
        errors = validate(self.schema, document)
        if errors:
            return None, None, f"Invalid bulk query: {errors[0].message}"
        operation = get_operation_ast(document, None)
        if operation is None or operation.operation != OperationType.QUERY:
            return None, None, "Invalid bulk query: a single query operation is required"
        walker = CostWalker(self.schema, _fragments(document), None, bulk=True)
        walker.requested(operation)
        return document, walker, ""

    def execute_bulk(
        self, document: DocumentNode, chunk: int | None = None
    ) -> Iterator[dict[str, Any] | None]:
        """Run a bulk query (connections ignore `first` and return every row), `chunk` root
        orders at a time, each under the book's lock: a shop of a million orders takes minutes
        to export, and holding the lock that long would stall every other request (a real
        export does not stop the Admin API either). A query over anything but `orders`, or a
        shop within one chunk, is read in one go: a snapshot."""
        operation = get_operation_ast(document, None)
        roots = {
            node.name.value
            for node in (operation.selection_set.selections if operation else ())
            if isinstance(node, FieldNode)
        }
        chunk = chunk or BULK_CHUNK
        with self.book.lock:
            ids = list(self.book.orders)
        if roots != {"orders"} or len(ids) <= chunk:
            with self.book.lock:
                yield execute_sync(self.schema, document, context_value=Context(bulk=True)).data
            return
        for start in range(0, len(ids), chunk):
            part = Context(bulk=True, only=ids[start : start + chunk])
            with self.book.lock:
                yield execute_sync(self.schema, document, context_value=part).data

    # --- resolvers ---------------------------------------------------------------------------

    def _wire(self) -> None:
        query = self.schema.query_type
        mutation = self.schema.mutation_type
        assert query is not None and mutation is not None
        query.fields["orders"].resolve = self._orders
        query.fields["order"].resolve = self._order
        query.fields["node"].resolve = lambda _o, info, id: self._node(id)
        query.fields["nodes"].resolve = self._nodes
        query.fields["events"].resolve = self._events
        query.fields["disputes"].resolve = self._disputes
        query.fields["shop"].resolve = lambda _o, _i: self._shop()
        query.fields["currentAppInstallation"].resolve = lambda _o, _i: {
            "id": "gid://shopify/AppInstallation/1",
            "accessScopes": [{"handle": s, "description": ""} for s in self.scopes],
        }
        query.fields["currentBulkOperation"].resolve = lambda _o, _i, type="QUERY": (
            self.bulk.current() if self.bulk else None
        )
        mutation.fields["bulkOperationRunQuery"].resolve = lambda _o, _i, query, **_: (
            self._bulk().run_query(query)
        )
        mutation.fields["bulkOperationCancel"].resolve = lambda _o, _i, id: self._bulk().cancel(id)
        order = self.schema.get_type("Order")
        order.fields["lineItems"].resolve = self._line_items  # type: ignore[union-attr]
        order.fields["refunds"].resolve = self._refunds  # type: ignore[union-attr]

    def _bulk(self) -> BulkRunner:
        assert self.bulk is not None
        return self.bulk

    def _shop(self) -> dict[str, Any]:
        return {
            "id": f"gid://shopify/Shop/{SHOP_ID}",
            "name": self.shop.split(".", 1)[0].replace("-", " ").title(),
            "myshopifyDomain": self.shop,
            "ianaTimezone": "Etc/UTC",
            "currencyCode": "USD",
        }

    def _has_order_scope(self) -> bool:
        return any(s in self.scopes for s in ("read_orders", "write_orders"))

    def render(self, rec: OrderRec) -> dict[str, Any]:
        return render_order(rec, self.shop)

    def _orders(self, _obj: Any, info: Any, **args: Any) -> dict[str, Any]:
        if not self._has_order_scope():
            raise access_denied("orders", "read_orders")
        book, bulk = self.book, info.context.bulk
        search = parse_search(args.get("query"))
        sort_key = args.get("sortKey") or "PROCESSED_AT"
        stale = "updated_at" in search.fields or sort_key == "UPDATED_AT"
        now = book.now()
        rows: list[Row[OrderRec]] = []
        only = info.context.only
        records = book.orders.values() if only is None else _present(book.orders, only)
        for rec in records:
            if not book.visible(rec):
                continue
            facets = book.indexed(rec) if stale else rec.facets()
            if facets is None or not search.matches(_order_lookup(facets, rec), now):
                continue
            rows.append(Row(_sort_value(sort_key, facets, rec), rec.id, rec))
        return connection(_page(rows, args, bulk), self.render)

    def _order(self, _obj: Any, _info: Any, id: str) -> dict[str, Any] | None:
        if not self._has_order_scope():
            raise access_denied("order", "read_orders")
        node = self._node(id)
        return node if node is not None and node.get("__typename") == "Order" else None

    def _nodes(self, _obj: Any, _info: Any, ids: list[str]) -> list[dict[str, Any] | None]:
        if len(ids) > MAX_NODES:
            raise GraphQLError(
                f"The number of ids ({len(ids)}) exceeds the maximum of {MAX_NODES}.",
                extensions={"code": "MAX_INPUT_SIZE_EXCEEDED"},
            )
        return [self._node(i) for i in ids]

    def _node(self, global_id: str) -> dict[str, Any] | None:
        match = _GID.match(global_id)
        if match is None:
            raise GraphQLError(
                f"Invalid global id '{global_id}'",
                extensions={"code": "argumentLiteralsIncompatible", "typeName": "CoercionError"},
            )
        kind, number = match.group(1), int(match.group(2))
        if kind == "Order":
            rec = self.book.orders.get(number)
            if rec is None or not self.book.visible(rec) or not self._has_order_scope():
                return None
            return self.render(rec)
        if kind == "BulkOperation" and self.bulk is not None:
            return self.bulk.node(number)
        if kind == "ShopifyPaymentsDispute" and "read_shopify_payments_disputes" in self.scopes:
            dispute = self.book.disputes.get(number)
            return self._dispute(dispute) if dispute is not None else None
        return None

    def _line_items(self, obj: dict[str, Any], info: Any, **args: Any) -> dict[str, Any]:
        rec: OrderRec = obj["_rec"]
        rows = [Row(i, line.id, line) for i, line in enumerate(rec.items)]
        return connection(
            _page(rows, args, info.context.bulk), lambda li: render_line(li, rec.currency)
        )

    def _refunds(self, obj: dict[str, Any], _info: Any, first: int | None = None) -> list[Any]:
        rec: OrderRec = obj["_rec"]
        refunds = rec.refunds if first is None else rec.refunds[:first]
        return [render_refund(r, rec.currency) for r in refunds]

    def _events(self, _obj: Any, info: Any, **args: Any) -> dict[str, Any]:
        search = parse_search(args.get("query"))
        by_created = args.get("sortKey") == "CREATED_AT"
        now = self.book.now()
        rows = []
        for event in self.book.listed_events():
            table = {
                "subject_type": frozenset({event.subject_type.lower()}),
                "action": frozenset({event.action}),
                "verb": frozenset({event.action}),
                "created_at": event.created_at,
                "id": event.id,
            }
            if search.matches(_lookup(table), now):
                rows.append(Row(event.created_at if by_created else event.id, event.id, event))
        return connection(_page(rows, args, info.context.bulk), render_event)

    def _dispute(self, dispute: Any) -> dict[str, Any]:
        rec = self.book.orders.get(dispute.order_id)
        order = self.render(rec) if rec is not None and self.book.visible(rec) else None
        return render_dispute(dispute, order)

    def _disputes(self, _obj: Any, info: Any, **args: Any) -> dict[str, Any]:
        if "read_shopify_payments_disputes" not in self.scopes:
            raise access_denied("disputes", "read_shopify_payments_disputes")
        search = parse_search(args.get("query"))
        now = self.book.now()
        rows = []
        for dispute in self.book.disputes.values():
            table = {
                "initiated_at": dispute.initiated_at,
                "status": frozenset({dispute.status.lower()}),
                "type": frozenset({dispute.type.lower()}),
                "id": dispute.id,
            }
            if search.matches(_lookup(table), now):
                rows.append(Row(dispute.id, dispute.id, dispute))
        return connection(_page(rows, args, info.context.bulk), self._dispute)


def _present(orders: dict[int, OrderRec], ids: list[int]) -> Iterator[OrderRec]:
    """The records of `ids` still in the shop (one deleted since the chunk list was taken is
    not exported)."""
    return (rec for i in ids if (rec := orders.get(i)) is not None)


def _page(rows: list[Row[Any]], args: dict[str, Any], bulk: bool) -> Page[Any]:
    try:
        if bulk:
            return paginate(rows, reverse=bool(args.get("reverse")))
        return paginate(
            rows,
            first=args.get("first"),
            after=args.get("after"),
            last=args.get("last"),
            before=args.get("before"),
            reverse=bool(args.get("reverse")),
        )
    except InvalidCursor as exc:
        raise GraphQLError(str(exc), extensions={"code": "BAD_REQUEST"}) from exc


def _fragments(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
    return {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}


def _lookup(table: dict[str, Any]) -> Callable[[str], Any]:
    """A search row's field getter; `...` for a field the resource cannot filter on."""
    return lambda name: table.get(name, ...)
