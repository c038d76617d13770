"""Shopify bulk exports (`bulkOperationRunQuery`): the backfill path, one job per window.

Every choice below comes from a peer's failure or Shopify's documented limits
(research/shopify.md §1.5, "Implications" 6):

- The inner query filters `updated_at` with quoted dates and has **no `sortKey`**: Estuary found
  that `sortKey: UPDATED_AT` plus an `updated_at` filter silently omitted records in bulk
  (estuary/connectors e1b9230a6). Rows therefore come in no useful order; the caller may only
  trust "every order of the window was yielded at least once" when the iterator ends normally.
- One job per app and shop ran at a time before 2026-01 (five since): a second one is refused
  with "already in progress"; we back off and retry a bounded number of times. If the running
  job is our own window (a crash between creating it and saving its id), it is adopted.
- The job's id is handed to `on_started` the moment Shopify accepts it, so a caller that
  crashes can `resume` it instead of paying for (and waiting on) a second export.
- Results are JSONL: one line per order, and each node of a nested connection (`lineItems`) on
  its own line carrying `__parentId`. The file can be gigabytes, so it is streamed line by line
  and only the current order is held while its children arrive. That needs children right
  after their parent, which Shopify stopped promising by default in 2026-01 (`groupObjects`
  defaults to false since then; changelog "Bulk operations group objects default changed to
  false"), so the job asks for `groupObjects: true`: slower for Shopify, but the alternative is
  holding the whole export in memory to join it.
- A FAILED job may carry `partialDataUrl`: those orders are yielded (they are real), then
  `BulkOperationFailed` (retryable) says the window is incomplete. The last order of a partial
  file is dropped, since its children may have been cut off; the rerun reads it again.
- Result URLs expire 7 days after completion (403 from the storage host); an expired or
  unknown resumed job is replaced by a new one. Jobs that run past 10 days are failed by
  Shopify (TIMEOUT), which bounds the wait here.

Error tree (all `SourceError`s, typed here at the edge):

    RetryableSourceError
    ├── BulkOperationFailed     FAILED/CANCELED job (after yielding any partial data)
    └── (plain)                 still "already in progress" after the back-off; download failed
    PermanentSourceError            ACCESS_DENIED, or Shopify refused the query (userErrors)
    BulkFileError               the JSONL breaks the `__parentId` contract
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
from loguru import logger

from pollerd.crypto import SealedSpool
from pollerd.errors import ControlFlow, PermanentSourceError, RetryableSourceError, SourceError
from pollerd.http import transport_error
from pollerd.model import Order
from pollerd.sources.payload import loads
from pollerd.sources.shopify.normalize import ORDER_FIELDS, normalize_order

if TYPE_CHECKING:
    from pollerd.sources.shopify.client import ShopifyClient

BATCH = 1000
"""Orders per yielded batch: one sync-loop write (one transaction). A commit waits for the disk
(synchronous=FULL), so at 250 a batch the commits were a tenth of a backfill; a resumed
export is read from its start again anyway (replays are no-ops), so a larger batch loses
nothing on `kill -9`."""
POLL_CAP = 30.0
"""Longest pause between two `node(id:)` polls; peers use 3 s (Airbyte) to 60 s (singer)."""
POLL_GROWTH = 1.5
BUSY_TRIES = 8
"""Attempts to start a job while another one runs (singer backs off 7 times, factor 10)."""
BUSY_CAP = 60.0
NEW_JOBS_MAX = 2
"""New jobs one call may start (the first, and one after an expired result URL)."""
RUN_COST = 10  # mutations cost 10 points
POLL_COST = 1

TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELED", "EXPIRED", "ACCESS_DENIED", "TIMEOUT"})
IN_PROGRESS = re.compile(r"already in progress(?::\s*(gid://shopify/BulkOperation/\d+))?")
_GID = re.compile(r"^gid://shopify/([A-Za-z]+)/")

RUN_MUTATION = """
mutation RunBulk($query: String!) {
  bulkOperationRunQuery(query: $query, groupObjects: true) {
    bulkOperation { id status }
    userErrors { field message code }
  }
}
"""

NODE_QUERY = """
query BulkNode($id: ID!) {
  node(id: $id) {
    ... on BulkOperation {
      id status errorCode objectCount fileSize url partialDataUrl createdAt completedAt query
    }
  }
}
"""


class BulkFileError(SourceError):
    """The JSONL result breaks Shopify's format (a child whose parent is not the order being
    read, a line that is not a JSON object). Neither retryable as such nor store-wide fatal:
    the daemon logs it; rerunning the window gets a fresh file."""

    def __init__(self, store: str, line_no: int, problem: str) -> None:
        self.line_no = line_no
        super().__init__(store, f"bulk result line {line_no}: {problem}")


class BulkOperationFailed(RetryableSourceError):
    """The job ended without a complete result. `partial` says whether some of its orders
    were yielded before this was raised; the caller reruns the window (duplicates are fine)."""

    def __init__(
        self, store: str, operation_id: str, status: str, message: str, *, partial: bool
    ) -> None:
        self.operation_id = operation_id
        self.status = status
        self.partial = partial
        super().__init__(store, message, retry_after=60.0)


@dataclass(frozen=True)
class Operation:
    """A `BulkOperation` as `node(id:)` showed it."""

    id: str
    status: str
    error_code: str | None
    object_count: int
    url: str | None
    partial_url: str | None
    query: str | None

    @classmethod
    def from_node(cls, node: dict[str, Any]) -> Operation:
        count = node.get("objectCount")  # a string: UnsignedInt64
        return cls(
            id=str(node.get("id")),
            status=str(node.get("status") or ""),
            error_code=node.get("errorCode"),
            object_count=int(count) if isinstance(count, str | int) and str(count).isdigit() else 0,
            url=node.get("url") or None,
            partial_url=node.get("partialDataUrl") or None,
            query=node.get("query"),
        )


class _UrlGone(ControlFlow):
    """The result URL no longer serves the file (expired signature, deleted object)."""


# --- the inner query ---------------------------------------------------------------------------


def bulk_query(since: datetime, until: datetime | None) -> str:
    """The orders query a job runs: `updated_at` window with quoted dates (an unquoted date is
    split at its colons by Shopify's search and matches nothing useful), no `sortKey`."""
    terms = [f"updated_at:>='{_search_date(since)}'"]
    if until is not None:
        terms.append(f"updated_at:<='{_search_date(until)}'")
    search = " AND ".join(terms)
    return f'{{ orders(query: "{search}") {{ edges {{ node {{ {ORDER_FIELDS} }} }} }} }}'


def _search_date(value: datetime) -> str:
    """Seconds precision, floored: `updatedAt` has whole seconds, so flooring both ends keeps
    `>=`/`<=` inclusive of every order inside the window."""
    if value.tzinfo is None:
        raise ValueError("bulk window bounds must be timezone-aware")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _same_query(a: str | None, b: str) -> bool:
    return a is not None and " ".join(a.split()) == " ".join(b.split())


# --- the JSONL result --------------------------------------------------------------------------


def connection_of(child: dict[str, Any]) -> str:
    """The parent field a child line belongs to, from `__typename` or its GID type:
    `LineItem` → `lineItems`. Orders' only nested connection is `lineItems`, so a child
    that names neither is a line item."""
    kind = child.get("__typename")
    if not isinstance(kind, str):
        match = _GID.match(str(child.get("id") or ""))
        kind = match.group(1) if match else None
    if not kind:
        return "lineItems"
    return kind[:1].lower() + kind[1:] + "s"


class Regrouper:
    """Rebuilds nested objects from JSONL lines, one root (order) at a time.

    A child's `__parentId` must name the current root or one of its descendants (nesting depth
    two): Shopify writes children right after their parent, so anything else means the file is
    not what we think it is, and guessing would attach line items to the wrong order.
    Children are attached as `{"nodes": [...]}`, the shape a non-bulk query returns, so one
    normaliser reads both.
    """

    def __init__(self, store: str) -> None:
        self.store = store
        self.line_no = 0
        self._root: dict[str, Any] | None = None
        self._ids: dict[str, dict[str, Any]] = {}

    def feed(self, line: str | bytes) -> dict[str, Any] | None:
        """Take one line; return the previous root once a new root shows it is complete."""
        self.line_no += 1
        if not line.strip():
            return None
        try:
            row = loads(line)
        except ValueError:
            raise BulkFileError(self.store, self.line_no, "not JSON") from None
        if not isinstance(row, dict):
            raise BulkFileError(self.store, self.line_no, "not a JSON object")
        parent_id = row.pop("__parentId", None)
        if parent_id is None:
            done, self._root = self._root, row
            self._ids = {}
            self._remember(row)
            return done
        parent = self._ids.get(str(parent_id))
        if parent is None:
            current = self._root.get("id") if self._root else None
            raise BulkFileError(
                self.store,
                self.line_no,
                f"child of {parent_id} while reading {current}: children must follow their "
                "parent (rerun the backfill; report it if it repeats)",
            )
        field = connection_of(row)
        connection = parent.setdefault(field, {"nodes": []})
        if not isinstance(connection, dict) or "nodes" not in connection:
            raise BulkFileError(
                self.store, self.line_no, f"{parent_id} has an inline {field!r} too"
            )
        connection["nodes"].append(row)
        self._remember(row)
        return None

    def finish(self) -> dict[str, Any] | None:
        """The last root: complete only if the file was (not a partial one)."""
        done, self._root, self._ids = self._root, None, {}
        return done

    def _remember(self, row: dict[str, Any]) -> None:
        if isinstance(row.get("id"), str):
            self._ids[row["id"]] = row


def regroup_lines(store: str, lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Synchronous `Regrouper` over a complete file (fixtures, tools)."""
    grouper = Regrouper(store)
    for line in lines:
        done = grouper.feed(line)
        if done is not None:
            yield done
    last = grouper.finish()
    if last is not None:
        yield last


# --- the job -----------------------------------------------------------------------------------


async def bulk_orders(
    client: ShopifyClient,
    *,
    store: str,
    shop: str,
    since: datetime,
    until: datetime | None,
    resume: str | None,
    on_started: Callable[[str], None],
    on_progress: Callable[[int], None] | None = None,
    poll_every: float = 1.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncIterator[list[Order]]:
    """Every order updated in [since, until] (inclusive, whole seconds), in batches of up to
    `BATCH`, through one bulk job; the body of `Bulk.bulk_orders`.

    `resume` is a job id the caller saved from `on_started`: it is polled instead of starting a
    new job, unless Shopify no longer has it, it ran another window, or it ended unusable
    (expired, cancelled, failed), in which case a new one starts (and `on_started` says so).
    Ending normally means every order of the window was yielded at least once; an exception
    means the window must be read again (anything yielded before it was real data).
    """
    job = _Job(client, store=store, shop=shop, poll_every=poll_every, sleep=sleep)
    query = bulk_query(since, until)
    adopted = await job.adopt(resume, query) if resume else None
    op_id = adopted.id if adopted else None
    started = 0
    while True:
        if op_id is None:
            if started >= NEW_JOBS_MAX:
                raise RetryableSourceError(
                    store,
                    f"bulk export: {started} new jobs in a row ended with a result URL that no "
                    "longer works (is the system clock right?); retrying later",
                    retry_after=300.0,
                )
            op_id = await job.start(query)
            started += 1
            on_started(op_id)
        op = await job.wait(op_id, on_progress, seen=adopted)
        adopted = None
        try:
            async for batch in job.results(op):
                yield batch
            return
        except _UrlGone:
            logger.info(
                "store {}: bulk job {} result URL no longer works (expired after 7 days?); "
                "starting a new job",
                store,
                op_id,
            )
            op_id = None


class _Job:
    """The calls behind `bulk_orders`, sharing the client and the store's name for errors."""

    def __init__(
        self,
        client: ShopifyClient,
        *,
        store: str,
        shop: str,
        poll_every: float,
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.client = client
        self.store = store
        self.shop = shop
        self.poll_every = poll_every
        self.sleep = sleep

    async def adopt(self, op_id: str, query: str) -> Operation | None:
        """The saved job if it is still worth waiting on or reading, else None (a job being
        cancelled is not: someone wants it gone)."""
        op = await self.node(op_id)
        if op is None:
            logger.info(
                "store {}: saved bulk job {} is unknown to Shopify; starting a new job",
                self.store,
                op_id,
            )
            return None
        if op.query is not None and not _same_query(op.query, query):
            logger.warning(
                "store {}: saved bulk job {} exported another window; starting a new job",
                self.store,
                op_id,
            )
            return None
        if op.status in ("CREATED", "RUNNING") or (
            op.status == "COMPLETED" and (op.url or op.object_count == 0)
        ):
            return op
        logger.info(
            "store {}: saved bulk job {} is {}; starting a new job", self.store, op_id, op.status
        )
        return None

    async def start(self, query: str) -> str:
        """Create the job; while another one runs, back off (bounded), or adopt it when it is
        ours (same query: we crashed before saving its id)."""
        wait = self.poll_every
        for attempt in range(1, BUSY_TRIES + 1):
            data = await self.client.query(RUN_MUTATION, {"query": query}, estimate=RUN_COST)
            payload = data.get("bulkOperationRunQuery") or {}
            errors = [e for e in payload.get("userErrors") or [] if e.get("message")]
            op = payload.get("bulkOperation")
            if op and op.get("id") and not errors:
                return str(op["id"])
            busy = next((m for e in errors if (m := IN_PROGRESS.search(e["message"]))), None)
            if busy is None:
                text = "; ".join(str(e.get("message")) for e in errors) or "no operation returned"
                raise PermanentSourceError(
                    self.store,
                    f"Shopify refused the bulk export query: {text} (a pollerd bug or an API "
                    "version that changed the Order fields; check api_version)",
                )
            other = busy.group(1)
            if other and attempt == 1:
                running = await self.node(other)
                # COMPLETED too: the job may finish between the refusal and this look, and
                # its file is exactly the window we asked for.
                if (
                    running
                    and running.status in ("CREATED", "RUNNING", "COMPLETED")
                    and (_same_query(running.query, query))
                ):
                    logger.info("store {}: adopting running bulk job {}", self.store, other)
                    return running.id
            if attempt == BUSY_TRIES:
                break
            logger.info(
                "store {}: another bulk job ({}) is running; retrying in {:.0f} s ({}/{})",
                self.store,
                other or "unknown id",
                wait,
                attempt,
                BUSY_TRIES,
            )
            await self.sleep(wait)
            wait = min(wait * 2, BUSY_CAP)
        raise RetryableSourceError(
            self.store,
            f"bulk export: another bulk query job ({other or 'unknown id'}) is still running "
            f"after {BUSY_TRIES} attempts; retrying later (if it is not pollerd's and is stuck, "
            "cancel it with bulkOperationCancel)",
            retry_after=BUSY_CAP,
        )

    async def node(self, op_id: str) -> Operation | None:
        data = await self.client.query(NODE_QUERY, {"id": op_id}, estimate=POLL_COST)
        node = data.get("node")
        return Operation.from_node(node) if isinstance(node, dict) and node.get("id") else None

    async def wait(
        self,
        op_id: str,
        on_progress: Callable[[int], None] | None,
        *,
        seen: Operation | None = None,
    ) -> Operation:
        """Poll until the job ends, the pause growing from `poll_every` to `POLL_CAP`. `seen`
        is the job as just polled (a resumed one), so it is not asked for twice in a row."""
        pause = self.poll_every
        while True:
            op, seen = seen or await self.node(op_id), None
            if op is None:
                raise RetryableSourceError(
                    self.store, f"bulk job {op_id} vanished while running; retrying later"
                )
            if on_progress is not None:
                on_progress(op.object_count)
            if op.status in TERMINAL:
                return op
            await self.sleep(pause)
            pause = min(pause * POLL_GROWTH, POLL_CAP)

    async def results(self, op: Operation) -> AsyncIterator[list[Order]]:
        """Yield the job's orders, or raise why there are none (see the module's error tree)."""
        if op.status == "COMPLETED":
            if op.url:
                async for batch in self.download(op.url, complete=True):
                    yield batch
            elif op.object_count:
                # Shopify omits `url` only when nothing matched; never read this as "no orders".
                raise RetryableSourceError(
                    self.store,
                    f"bulk job {op.id} completed with {op.object_count} objects but no result "
                    "URL; retrying later",
                    retry_after=60.0,
                )
            return
        denied = "ACCESS_DENIED" in (op.status, op.error_code)
        if denied:
            raise PermanentSourceError(
                self.store,
                f"bulk job {op.id} was denied access (ACCESS_DENIED): the app lacks a scope the "
                "orders export needs (read_orders; read_all_orders for orders older than 60 "
                "days); grant it in the app's configuration and reinstall",
            )
        if op.partial_url:
            async for batch in self.download(op.partial_url, complete=False):
                yield batch
        why = op.error_code or op.status
        if op.error_code == "TIMEOUT" or op.status == "TIMEOUT":
            why += " (ran past Shopify's 10-day limit: use a shorter backfill window)"
        part = "partial data was read; " if op.partial_url else ""
        raise BulkOperationFailed(
            self.store,
            op.id,
            op.status,
            f"bulk job {op.id} ended {op.status}: {why}; {part}the window must be read again",
            partial=op.partial_url is not None,
        )

    async def download(self, url: str, *, complete: bool) -> AsyncIterator[list[Order]]:
        """Fetch the JSONL into a temporary file, then normalise orders as their last child
        arrives. Spooling first decouples the download from our commit speed: a storage host
        (and the simulator) drops a reader that stalls for minutes, and a 100,000-order file
        is read in seconds but committed in minutes. The request goes to a storage host, not
        the shop: the access token is stripped from it."""
        with SealedSpool() as spool:  # customer data: ciphertext on disk, the key in memory
            await self._fetch(url, spool)
            grouper = Regrouper(self.store)
            batch: list[Order] = []
            for line in spool.lines():
                root = grouper.feed(line)
                if root is not None:
                    batch.append(self._order(root))
                    if len(batch) >= BATCH:
                        yield batch
                        batch = []
            last = grouper.finish()
            if last is not None and complete:
                batch.append(self._order(last))
            if batch:
                yield batch

    async def _fetch(self, url: str, spool: SealedSpool) -> None:
        http = self.client.http
        request = http.build_request("GET", url)
        for header in ("X-Shopify-Access-Token", "Authorization"):
            request.headers.pop(header, None)
        try:
            response = await http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise self._download_error(exc) from None
        try:
            if response.status_code >= 400:
                self._refuse(response)
            async for chunk in response.aiter_bytes(1 << 16):
                spool.write(chunk)
        except httpx.HTTPError as exc:
            raise self._download_error(exc) from None
        finally:
            await response.aclose()

    def _order(self, root: dict[str, Any]) -> Order:
        return normalize_order(root, store=self.store, shop=self.shop)

    def _refuse(self, response: httpx.Response) -> None:
        status = response.status_code
        if 400 <= status < 500:
            # GCS answers an expired signature with 400/403 "ExpiredToken"; a 404 means the
            # file is gone. Either way only a new job gets the data back.
            raise _UrlGone(status)
        raise RetryableSourceError(
            self.store,
            f"bulk result download: HTTP {status} from the storage host; retrying later",
            retry_after=30.0,
        )

    def _download_error(self, exc: httpx.HTTPError) -> RetryableSourceError:
        return RetryableSourceError(
            self.store,
            f"bulk result download failed: {transport_error(exc)}; retrying later",
            retry_after=30.0,
        )
