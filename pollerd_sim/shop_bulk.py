"""Bulk operations: `bulkOperationRunQuery`, their lifecycle, and the JSONL result files.

From https://shopify.dev/api/usage/bulk-operations/queries and the fixtures (research §1.5):
- the inner query is parsed and validated; it must hold a connection, at most five of them,
  nested at most two deep; connections ignore `first` (every row is returned);
- `bulk_concurrency` operations may run at once (5 from 2026-01, 1 before); one more is refused
  with the userError of fixture `graphql_bulk_run_query_already_in_progress.json`;
- CREATED → RUNNING → COMPLETED after `bulk_seconds`; `objectCount`/`fileSize` are strings
  (`UnsignedInt64`); a FAILED operation may carry `partialDataUrl` (fixture
  `graphql_bulk_node_failed_partial_data.json`);
- JSONL: one object per line; each node of a nested connection gets its own line with
  `"__parentId"`, right after its parent (fixtures `bulk_orders_*.jsonl`); lists that are not
  connections stay inline; slashes are escaped (`gid:\\/\\/shopify`) as in the fixtures;
- result URLs expire 7 days (sim clock) after completion: then 403 with a storage XML error.

The rows are read when the operation starts: a shop within one chunk (`BULK_CHUNK` orders) at
once, a snapshot, before `bulkOperationRunQuery` answers; a larger one by a thread of its own,
chunk by chunk, while the operation is RUNNING (minutes for a million orders,
as on Shopify; the Admin API keeps answering meanwhile), so an order changed during that time
may be exported before or after its change. Completion is lazy, computed whenever the operation
is read, on either clock (`ShopBook.aged`), and never before the rows are all read.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from graphql import DocumentNode, FieldNode, get_named_type, get_operation_ast, is_abstract_type

from pollerd.model import utc_iso
from pollerd_sim import shop_graphql
from pollerd_sim.shop_bucket import CostWalker
from pollerd_sim.shop_orders import ShopBook, Stamp
from pollerd_sim.shop_schema import gid

if TYPE_CHECKING:
    from pollerd_sim.shop_graphql import GraphQLApi

FIRST_BULK_ID = 4046733967549
URL_LIFETIME = timedelta(days=7)
MAX_CONNECTIONS = 5
MAX_DEPTH = 2
EXPIRED_XML = (
    "<?xml version='1.0' encoding='UTF-8'?><Error><Code>ExpiredToken</Code>"
    "<Message>The provided token has expired.</Message>"
    "<Details>Request signature expired at: {when}</Details></Error>"
)


@dataclass(slots=True)
class BulkOp:
    id: int
    query: str
    started: Stamp
    created_at: datetime
    lines: list[str]
    root_count: int
    fail: bool = False
    partial: bool = True
    status: str = "CREATED"
    error_code: str | None = None
    completed_at: datetime | None = None
    reads: int = 0
    files: dict[str, bytes] = field(default_factory=dict)
    read: threading.Event = field(default_factory=threading.Event)  # every row is in `lines`


class BulkRunner:
    """Bulk operations of one app on one shop (thread-safe)."""

    def __init__(
        self,
        api: GraphQLApi,
        book: ShopBook,
        *,
        seconds: float,
        concurrency: int,
        base_url: Callable[[], str],
    ) -> None:
        self.api = api
        self.book = book
        self.seconds = seconds
        self.concurrency = concurrency
        self.base_url = base_url
        self.ops: dict[int, BulkOp] = {}
        self.started = 0
        self._next = FIRST_BULK_ID
        self._fail_next: bool | None = None
        self._lock = threading.RLock()

    def fail_next(self, partial: bool = True) -> None:
        with self._lock:
            self._fail_next = partial

    # --- lifecycle ---------------------------------------------------------------------------

    def _advance(self, op: BulkOp) -> None:
        if op.status == "CANCELING":
            op.status = "CANCELED"
            op.completed_at = self.book.now()
            return
        if op.status not in ("CREATED", "RUNNING"):
            return
        if not op.read.is_set() or not self.book.aged(op.started, self.seconds):
            op.status = "RUNNING"
            return
        op.completed_at = self.book.now()
        if op.fail:
            op.status, op.error_code = "FAILED", "INTERNAL_SERVER_ERROR"
            if op.partial:
                half = op.lines[: len(op.lines) // 2]
                op.files["partial"] = "".join(line + "\n" for line in half).encode()
        else:
            op.status = "COMPLETED"
            op.files["full"] = "".join(line + "\n" for line in op.lines).encode()

    def _running(self) -> list[BulkOp]:
        for op in self.ops.values():
            self._advance(op)
        return [op for op in self.ops.values() if op.status in ("CREATED", "RUNNING")]

    def run_query(self, query: str) -> dict[str, Any]:
        def refused(message: str, code: str = "INVALID") -> dict[str, Any]:
            error = {"field": ["query"] if code == "INVALID" else None, "message": message}
            return {"bulkOperation": None, "userErrors": [{**error, "code": code}]}

        document, walker, problem = self.api.prepare_bulk(query)
        if document is None or walker is None:
            return refused(problem)
        problem = _shape_problem(walker)
        if problem:
            return refused(problem)
        with self._lock:
            running = self._running()
            if len(running) >= self.concurrency:
                return refused(
                    "A bulk query operation for this app and shop is already in progress: "
                    f"{gid('BulkOperation', running[0].id)}.",
                    "OPERATION_IN_PROGRESS",
                )
            op = BulkOp(
                id=self._next,
                query=query,
                started=self.book.stamp(),
                created_at=self.book.now(),
                lines=[],
                root_count=0,
            )
            if self._fail_next is not None:
                op.fail, op.partial, self._fail_next = True, self._fail_next, None
            self._next += 1
            self.started += 1
            self.ops[op.id] = op
            if len(self.book.orders) <= shop_graphql.BULK_CHUNK:
                self._read(op, document, walker)  # before the answer: a snapshot
            else:  # the request holds the book's lock: the reader starts when it answers
                threading.Thread(
                    target=self._read, args=(op, document, walker), daemon=True
                ).start()
            return {"bulkOperation": self._render(op), "userErrors": []}

    def _read(self, op: BulkOp, document: DocumentNode, walker: CostWalker) -> None:
        """Every row of the operation into `op.lines` (see the module docstring)."""
        lines: list[str] = []
        roots = 0
        try:
            for data in self.api.execute_bulk(document):
                more, count = flatten(self.api, document, walker, data or {})
                lines += more
                roots += count
            op.lines, op.root_count = lines, roots
        except Exception:  # noqa: BLE001  (the export fails as Shopify's would, not the sim)
            op.fail, op.partial = True, False
        finally:
            op.read.set()

    def cancel(self, global_id: str) -> dict[str, Any]:
        with self._lock:
            number = global_id.rsplit("/", 1)[-1]
            op = self.ops.get(int(number)) if number.isdigit() else None
            if op is None:
                return {
                    "bulkOperation": None,
                    "userErrors": [{"field": ["id"], "message": "Bulk operation does not exist"}],
                }
            self._advance(op)
            if op.status not in ("CREATED", "RUNNING"):
                return {
                    "bulkOperation": self._render(op),
                    "userErrors": [
                        {
                            "field": None,
                            "message": f"A bulk operation cannot be canceled when it is "
                            f"{op.status.lower()}",
                        }
                    ],
                }
            op.status = "CANCELING"
            return {"bulkOperation": self._render(op), "userErrors": []}

    def node(self, number: int) -> dict[str, Any] | None:
        with self._lock:
            op = self.ops.get(number)
            if op is None:
                return None
            self._advance(op)
            return self._render(op)

    def current(self) -> dict[str, Any] | None:
        with self._lock:
            if not self.ops:
                return None
            op = self.ops[max(self.ops)]
            self._advance(op)
            return self._render(op)

    def _render(self, op: BulkOp) -> dict[str, Any]:
        base = f"{self.base_url()}/__bulk/{op.id}"
        done = op.status in ("COMPLETED", "FAILED")
        body = op.files.get("full") or op.files.get("partial")
        count = len(op.lines) if "full" in op.files else body.count(b"\n") if body else 0
        return {
            "__typename": "BulkOperation",
            "id": gid("BulkOperation", op.id),
            "status": op.status,
            "errorCode": op.error_code,
            "objectCount": str(count if done else 0),
            "rootObjectCount": str(op.root_count if op.status == "COMPLETED" else 0),
            "fileSize": str(len(body)) if body else None,
            "url": f"{base}.jsonl" if op.status == "COMPLETED" else None,
            "partialDataUrl": f"{base}-partial.jsonl" if "partial" in op.files else None,
            "createdAt": utc_iso(op.created_at),
            "completedAt": utc_iso(op.completed_at),
            "query": op.query,
            "type": "QUERY",
        }

    def file(self, name: str) -> tuple[int, bytes, str]:
        """`/__bulk/{name}`: (status, body, content type)."""
        stem = name.removesuffix(".jsonl")
        which = "partial" if stem.endswith("-partial") else "full"
        number = stem.removesuffix("-partial")
        with self._lock:
            op = self.ops.get(int(number)) if number.isdigit() else None
            if op is not None:
                self._advance(op)
            body = op.files.get(which) if op is not None else None
            if op is None or body is None or op.completed_at is None:
                return (
                    404,
                    b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>NoSuchKey</Code>"
                    b"<Message>The specified key does not exist.</Message></Error>",
                    "application/xml",
                )
            expires = op.completed_at + URL_LIFETIME
            if self.book.now() >= expires:
                xml = EXPIRED_XML.format(when=expires.strftime("%a, %d %b %Y %H:%M:%S GMT"))
                return 403, xml.encode(), "application/xml"
            return 200, body, "application/jsonl"


def _shape_problem(walker: CostWalker) -> str:
    depths = walker.connection_depths
    if not depths:
        return "Bulk queries must contain at least one connection."
    if len(depths) > MAX_CONNECTIONS:
        return f"Bulk queries cannot contain more than {MAX_CONNECTIONS} connections."
    if max(depths) > MAX_DEPTH:
        return f"Bulk queries cannot contain connections nested deeper than {MAX_DEPTH} levels."
    return ""


def _dumps(line: dict[str, Any]) -> str:
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).replace("/", "\\/")


def flatten(
    api: GraphQLApi, document: DocumentNode, walker: CostWalker, data: dict[str, Any]
) -> tuple[list[str], int]:
    """JSONL lines of a bulk result and the number of root objects."""
    schema = api.schema
    operation = get_operation_ast(document, None)
    assert operation is not None and schema.query_type is not None
    lines: list[str] = []
    roots = [0]

    def connection(conn: Any, nodes: list[FieldNode], value: Any, parent: str | None) -> None:
        if not isinstance(value, dict):
            return
        node_type = get_named_type(conn.fields["nodes"].type)
        edge_type = get_named_type(conn.fields["edges"].type)
        for key, fnodes in _collect(walker, nodes, conn).items():
            name = fnodes[0].name.value
            if name == "nodes":
                for item in value.get(key) or []:
                    emit(node_type, fnodes, item, parent)
            elif name == "edges":
                for ekey, enodes in _collect(walker, fnodes, edge_type).items():
                    if enodes[0].name.value == "node":
                        for edge in value.get(key) or []:
                            emit(node_type, enodes, edge.get(ekey), parent)

    def emit(type_: Any, nodes: list[FieldNode], item: Any, parent: str | None) -> None:
        if not isinstance(item, dict):
            return
        if is_abstract_type(type_):
            runtime = schema.get_type(str(item.get("__typename", "")))
            type_ = runtime if runtime is not None else schema.get_possible_types(type_)[0]
        line = dict(item)
        children = []
        for key, fnodes in _collect(walker, nodes, type_).items():
            if fnodes[0].name.value.startswith("__"):
                continue
            named = get_named_type(type_.fields[fnodes[0].name.value].type)
            if named.name.endswith("Connection"):
                children.append((named, fnodes, line.pop(key, None)))
        if parent is not None:
            line["__parentId"] = parent
        else:
            roots[0] += 1
        lines.append(_dumps(line))
        for named, fnodes, value in children:
            connection(named, fnodes, value, item.get("id"))

    root = schema.query_type
    for key, fnodes in walker.collect(operation.selection_set, root).items():
        named = get_named_type(root.fields[fnodes[0].name.value].type)
        if named.name.endswith("Connection"):
            connection(named, fnodes, data.get(key), None)
    return lines, roots[0]


def _collect(walker: CostWalker, nodes: list[FieldNode], type_: Any) -> dict[str, list[FieldNode]]:
    out: dict[str, list[FieldNode]] = {}
    for node in nodes:
        walker.collect(node.selection_set, type_, out)
    return out
