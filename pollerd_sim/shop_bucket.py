"""Shopify's rate limits: the calculated query cost of a GraphQL document and the leaky buckets.

Cost rules (https://shopify.dev/docs/apps/build/graphql-admin/rate-limits, research/shopify.md
§1.4, the brief): scalars and enums cost 0; an object costs 1 plus its children; an interface or
union costs the most expensive of its possible selections; a connection costs
`2 + first × (cost of one node)`, where `edges`, `cursor` and `pageInfo` are free and each node
is an object; a list of objects costs like one object; every mutation field costs 10 (fixture
`graphql_bulk_run_query_created.json`: requested 10). `first`/`last` is required on every
connection ("you must provide one of first or last", `BAD_REQUEST`) and at most 250.

`requestedQueryCost` is that worst case, computed from the parsed document before execution;
`actualQueryCost` walks the same selection over the data really returned, so a connection costs
`2 + Σ cost of the nodes it returned` (never more than requested).

Buckets are computed from elapsed monotonic time, not from threads: the GraphQL bucket refills at
`restoreRate` points/s up to `maximumAvailable`; the REST bucket leaks `leak` requests/s from a
capacity of `size` (`X-Shopify-Shop-Api-Call-Limit: used/size`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLField,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    get_named_type,
    is_abstract_type,
    is_leaf_type,
)
from graphql.execution.values import VariableValues, get_argument_values

MAX_PAGE = 250
MAX_QUERY_COST = 1000
MUTATION_COST = 10


class CostError(Exception):
    """A connection argument Shopify rejects before executing (no data, HTTP 200; the message
    and code as quoted by Shopify/shopify-api-js tests and Shopify proxy emulators)."""

    def __init__(self, message: str, path: list[str], node: FieldNode) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.node = node

    def as_error(self) -> dict[str, Any]:
        loc = self.node.loc
        error: dict[str, Any] = {"message": self.message}
        if loc is not None:
            error["locations"] = [
                {
                    "line": loc.source.get_location(loc.start).line,
                    "column": loc.source.get_location(loc.start).column,
                }
            ]
        error["path"] = self.path
        error["extensions"] = {"code": "BAD_REQUEST"}
        return error


class CostWalker:
    """Walks one operation of a validated document to price it, requested or actual."""

    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: VariableValues | None,
        *,
        bulk: bool = False,
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables
        self.bulk = bulk
        self.connection_depths: list[int] = []
        """Nesting depth (1 = top level) of every connection seen: bulk queries allow ≤ 5, ≤ 2."""
        self.page_sizes: dict[str, int] = {}
        """`first`/`last` of each top-level connection by field name (max_ok_page)."""
        self.errors: list[CostError] = []
        """Rejected page sizes; priced as 0 so the error reply still carries a cost (Shopify
        charges 2 for `products { edges { node { id } } }` without `first`)."""

    def requested(self, operation: OperationDefinitionNode) -> int:
        root = self._root(operation)
        if operation.operation == OperationType.MUTATION:
            return MUTATION_COST * len(self.collect(operation.selection_set, root))
        return self._object(root, [operation.selection_set], None, [], 0)

    def actual(self, operation: OperationDefinitionNode, data: Mapping[str, Any] | None) -> int:
        root = self._root(operation)
        if operation.operation == OperationType.MUTATION:
            return MUTATION_COST * len(self.collect(operation.selection_set, root))
        if data is None:
            return 0
        return self._object(root, [operation.selection_set], data, [], 0, actual=True)

    def _root(self, operation: OperationDefinitionNode) -> GraphQLObjectType:
        root = self.schema.get_root_type(operation.operation)
        assert root is not None
        return root

    # --- selection collection ---------------------------------------------------------------

    def _applies(self, condition: str | None, type_: GraphQLObjectType) -> bool:
        if condition is None or condition == type_.name:
            return True
        cond = self.schema.get_type(condition)
        return cond is not None and is_abstract_type(cond) and self.schema.is_sub_type(cond, type_)  # type: ignore[arg-type]

    def collect(
        self,
        selection_set: SelectionSetNode | None,
        type_: GraphQLObjectType,
        out: dict[str, list[FieldNode]] | None = None,
    ) -> dict[str, list[FieldNode]]:
        out = {} if out is None else out
        for sel in selection_set.selections if selection_set else ():
            if isinstance(sel, FieldNode):
                key = sel.alias.value if sel.alias else sel.name.value
                out.setdefault(key, []).append(sel)
            elif isinstance(sel, InlineFragmentNode):
                cond = sel.type_condition.name.value if sel.type_condition else None
                if self._applies(cond, type_):
                    self.collect(sel.selection_set, type_, out)
            elif isinstance(sel, FragmentSpreadNode):
                frag = self.fragments.get(sel.name.value)
                if frag is not None and self._applies(frag.type_condition.name.value, type_):
                    self.collect(frag.selection_set, type_, out)
        return out

    # --- pricing ------------------------------------------------------------------------------

    def _object(
        self,
        type_: GraphQLObjectType,
        selection_sets: Sequence[SelectionSetNode | None],
        data: Mapping[str, Any] | None,
        path: list[str],
        depth: int,
        *,
        actual: bool = False,
    ) -> int:
        fields: dict[str, list[FieldNode]] = {}
        for selection_set in selection_sets:
            self.collect(selection_set, type_, fields)
        total = 0
        for key, nodes in fields.items():
            name = nodes[0].name.value
            if name.startswith("__"):
                continue
            if actual and (data is None or key not in data):
                continue
            value = data.get(key) if data is not None else None
            total += self._field(type_.fields[name], nodes, value, [*path, key], depth, actual)
        return total

    def _composite(
        self,
        named: Any,
        selection_sets: Sequence[SelectionSetNode | None],
        data: Mapping[str, Any] | None,
        path: list[str],
        depth: int,
        actual: bool,
    ) -> int:
        """Children of an object value; an abstract type costs its dearest possible type."""
        if not is_abstract_type(named):
            return self._object(named, selection_sets, data, path, depth, actual=actual)
        types: Sequence[GraphQLObjectType] = self.schema.get_possible_types(named)
        if actual and data is not None and isinstance(data.get("__typename"), str):
            types = [t for t in types if t.name == data["__typename"]] or types
        return max(
            (self._object(t, selection_sets, data, path, depth, actual=actual) for t in types),
            default=0,
        )

    def _field(
        self,
        field: GraphQLField,
        nodes: list[FieldNode],
        value: Any,
        path: list[str],
        depth: int,
        actual: bool,
    ) -> int:
        named = get_named_type(field.type)
        if is_leaf_type(named):
            return 0
        subs = [n.selection_set for n in nodes]
        if named.name.endswith("Connection"):
            return self._connection(field, named, nodes, value, path, depth + 1, actual)
        if actual:
            if value is None:
                return 1
            if isinstance(value, list):
                return 1 + max(
                    (self._composite(named, subs, v, path, depth, True) for v in value if v),
                    default=0,
                )
        return 1 + self._composite(named, subs, value, path, depth, actual)

    def _connection(
        self,
        field: GraphQLField,
        conn: Any,
        nodes: list[FieldNode],
        value: Any,
        path: list[str],
        depth: int,
        actual: bool,
    ) -> int:
        if not actual:
            self.connection_depths.append(depth)
        size = self._page_size(field, nodes[0], path, depth)
        node_type = get_named_type(conn.fields["nodes"].type)
        edge_type = get_named_type(conn.fields["edges"].type)
        per_node = 0
        returned = 0
        conn_fields = self._collect_many(nodes, conn)
        for key, fnodes in conn_fields.items():
            name = fnodes[0].name.value
            subs = [n.selection_set for n in fnodes]
            if name == "nodes":
                items = ((value or {}).get(key) or []) if actual else [None]
                for item in items:
                    cost = 1 + self._composite(node_type, [*subs], item, path, depth, actual)
                    per_node += cost
                    returned += 1
            elif name == "edges":
                edge_fields = self._collect_many(fnodes, edge_type)
                for ekey, enodes in edge_fields.items():
                    if enodes[0].name.value != "node":
                        continue
                    esubs = [n.selection_set for n in enodes]
                    edges = ((value or {}).get(key) or []) if actual else [None]
                    for edge in edges:
                        item = edge.get(ekey) if isinstance(edge, dict) else None
                        per_node += 1 + self._composite(node_type, esubs, item, path, depth, actual)
        if actual:
            return 2 + per_node
        return 2 + size * per_node

    def _collect_many(self, nodes: list[FieldNode], type_: Any) -> dict[str, list[FieldNode]]:
        out: dict[str, list[FieldNode]] = {}
        for node in nodes:
            self.collect(node.selection_set, type_, out)
        return out

    def _page_size(self, field: GraphQLField, node: FieldNode, path: list[str], depth: int) -> int:
        args = get_argument_values(field, node, self.variables)
        first, last = args.get("first"), args.get("last")
        if self.bulk:
            return 1
        if first is None and last is None:
            self.errors.append(CostError("you must provide one of first or last", path, node))
            return 0
        for label, size in (("first", first), ("last", last)):
            if size is not None and not 0 <= size <= MAX_PAGE:
                self.errors.append(
                    CostError(
                        f"Argument '{label}' on Field '{node.name.value}' has an invalid value "
                        f"({size}). Expected a page size from 0 to {MAX_PAGE}.",
                        path,
                        node,
                    )
                )
                return 0
        size = int(first if first is not None else last or 0)
        if depth == 1:
            self.page_sizes[node.name.value] = max(size, self.page_sizes.get(node.name.value, 0))
        return size


# --- buckets ---------------------------------------------------------------------------------


class PointBucket:
    """The GraphQL cost bucket of one app on one shop."""

    def __init__(self, size: float, restore: float, monotonic: Callable[[], float]) -> None:
        self.size = float(size)
        self.restore = float(restore)
        self.monotonic = monotonic
        self._level = float(size)
        self._at = monotonic()
        self._lock = threading.Lock()
        self._drain = 0.0
        self.others = 0.0
        """Points another app's steady spend (`drain`) got so far."""

    def drain(self, per_second: float) -> None:
        """Another app spends `per_second` points from now on, as much as the bucket holds."""
        with self._lock:
            self._refill()
            self._drain = max(0.0, float(per_second))

    def _refill(self) -> float:
        now = self.monotonic()
        elapsed = max(0.0, now - self._at)
        self._at = now
        net = self.restore - self._drain
        if net >= 0 or self._level >= -net * elapsed:  # the other app gets all it asks
            self.others += self._drain * elapsed
            self._level = min(self.size, self._level + net * elapsed)
        else:  # dry after `empty` seconds; from then on it gets what is restored
            empty = self._level / -net
            self.others += self._drain * empty + self.restore * (elapsed - empty)
            self._level = 0.0
        return self._level

    @property
    def available(self) -> float:
        with self._lock:
            return self._refill()

    def reserve(self, points: float) -> tuple[bool, float]:
        """Take `points` if they are available; (granted, level before)."""
        with self._lock:
            before = self._refill()
            if points > before:
                return False, before
            self._level -= points
            return True, before

    def refund(self, points: float) -> None:
        with self._lock:
            self._refill()
            self._level = min(self.size, self._level + max(0.0, points))

    def consume(self, points: float) -> None:
        """Another client of the same app token spends budget (never below zero)."""
        with self._lock:
            self._level = max(0.0, self._refill() - points)

    def status(self) -> dict[str, Any]:
        """`throttleStatus` as Shopify prints it (fixtures: 1000.0, 990, 50.0)."""
        with self._lock:
            level = self._refill()
        return {
            "maximumAvailable": self.size,
            "currentlyAvailable": int(level),
            "restoreRate": self.restore,
        }


class CallBucket:
    """The REST leaky bucket: each request adds one, `leak` drain per second."""

    def __init__(self, size: int, leak: float, monotonic: Callable[[], float]) -> None:
        self.size = size
        self.leak = float(leak)
        self.monotonic = monotonic
        self._used = 0.0
        self._at = monotonic()
        self._lock = threading.Lock()
        self._drain = 0.0
        self.others = 0.0
        """Calls another app's steady traffic (`drain`) made so far."""

    def drain(self, per_second: float) -> None:
        """Another app makes `per_second` calls from now on, as many as the bucket takes."""
        with self._lock:
            self._leak()
            self._drain = max(0.0, float(per_second))

    def _leak(self) -> None:
        now = self.monotonic()
        elapsed = max(0.0, now - self._at)
        self._at = now
        net = self._drain - self.leak
        if net <= 0 or self.size - self._used >= net * elapsed:  # every call of theirs fits
            self.others += self._drain * elapsed
            self._used = max(0.0, self._used + net * elapsed)
        else:  # full after `full` seconds; from then on it gets what leaks out
            full = (self.size - self._used) / net
            self.others += self._drain * full + self.leak * (elapsed - full)
            self._used = float(self.size)

    def take(self) -> tuple[bool, int]:
        """Count one request; (allowed, used for the header)."""
        with self._lock:
            self._leak()
            if self._used + 1 > self.size:
                return False, self.size
            self._used += 1
            return True, max(1, round(self._used))
