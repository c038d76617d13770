"""The facts the seller alert rules read (pollerd.alerts), and the queries that read them.

Rules run from stored facts, never from in-memory timers: what an order or dispute looked like
is written by `commit_page` in the same transaction as its snapshot (`write_facts`), so a
restart, `kill -9` or `pollerd once` from a timer sees exactly what the last pass saw. Each
query below answers one rule's question with an index behind it (tables.py): a pass costs
about the same with 100,000 stored orders as with 100 (bench/rules.py).

"Not alerted yet" is asked of the event table itself (`NOT EXISTS` on the alert's id,
`<store>:<type>:<subject>`): the alert already recorded is the only bookkeeping, so no rule
keeps a second record that could disagree with it.
"""

from __future__ import annotations

import math
import secrets
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import (
    Connection,
    Integer,
    and_,
    bindparam,
    case,
    cast,
    exists,
    func,
    insert,
    or_,
    select,
    text,
    tuple_,
    union,
)
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import String

from pollerd.store.engine import Database, execute_rows, upsert
from pollerd.store.meta import put_meta
from pollerd.store.tables import BLIND_INDEX, DISPUTE_FACT, EVENT, META, ORDER_FACT, ts

BLIND_SEED = "blind_index.key"
"""meta: the per-database random key the blind index uses when no `pii_key` is set (hex)."""


@dataclass(frozen=True)
class OrderFact:
    """An order as the rules read it; `unpaid`/`cancelled` are its platform's reading and
    `digests` its buyer's blind indexes by kind (email, phone, ip), never the values;
    `number` the order number a seller knows it by (a burst lists those, not ids)."""

    order_id: str
    created_at: datetime
    total: Decimal
    currency: str
    unpaid: bool = False
    cancelled: bool = False
    digests: Mapping[str, bytes] = field(default_factory=dict)
    number: str | None = None


@dataclass(frozen=True)
class DisputeFact:
    """A dispute as the deadline rule reads it. `awaiting`: open, no evidence submitted."""

    dispute_id: str
    order_id: str
    status: str
    awaiting: bool
    amount: Decimal
    currency: str
    reason: str | None
    evidence_due_by: datetime | None
    opened_at: datetime | None = None  # its initiation (the weekly report's "opened")
    # When it was decided (won or lost): the platform's finalisation date, else None and
    # `closed` true, and `write_facts` keeps the time it was first written closed.
    closed_at: datetime | None = None
    closed: bool = False


class BuyerOrder(NamedTuple):
    """One order of a buyer the burst rule looks at (`buyers_seen_since`); `number` is None
    for facts written before migration 5."""

    order_id: str
    created_at: float
    number: str | None


@dataclass(frozen=True)
class StoredOrder:
    """One row a rule query returns."""

    order_id: str
    created_at: float
    total: Decimal
    currency: str


def write_facts(
    conn: Connection,
    store: str,
    orders: Iterable[OrderFact],
    disputes: Iterable[DisputeFact],
    now: float,
) -> None:
    """Inside `commit_page`'s transaction: the page's order and dispute facts. An order's
    `written_at` is its last write (what the high value rule judges again); a blind index's
    `seen_at` the first write of that digest for the order (what the burst rule looks at).

    One statement per table for the whole page (executemany): built and compiled per row, these
    upserts doubled a 20,000-order backfill (22.5 s → 48.6 s, `bench/backfill.py`)."""
    facts: list[dict[str, Any]] = []
    digests: list[dict[str, Any]] = []
    for fact in orders:
        created = fact.created_at.timestamp()
        facts.append(
            {
                "store": store,
                "order_id": fact.order_id,
                "created_at": created,
                "total": str(fact.total),
                "amount": float(fact.total),
                "currency": fact.currency,
                "unpaid": fact.unpaid,
                "cancelled": fact.cancelled,
                "written_at": now,
                "number": fact.number,
            }
        )
        digests.extend(
            {
                "store": store,
                "order_id": fact.order_id,
                "kind": kind,
                "digest": digest,
                "created_at": created,
                "seen_at": now,
            }
            for kind, digest in fact.digests.items()
        )
    rows = [
        {
            "store": store,
            "dispute_id": dispute.dispute_id,
            "order_id": dispute.order_id,
            "status": dispute.status,
            "awaiting": dispute.awaiting,
            "amount": str(dispute.amount),
            "currency": dispute.currency,
            "reason": dispute.reason,
            "evidence_due_by": ts(dispute.evidence_due_by),
            "seen_at": now,
            "opened_at": ts(dispute.opened_at),
            "closed_at": ts(dispute.closed_at) or (now if dispute.closed else None),
        }
        for dispute in disputes
    ]
    if facts:
        replace = _replace(conn, ORDER_FACT, ("store", "order_id"), facts[0])
        execute_rows(conn, "order_fact", replace, facts)
    if digests:
        stmt = upsert(conn, BLIND_INDEX)
        stmt = stmt.on_conflict_do_update(
            index_elements=["store", "order_id", "kind"],
            set_={"digest": stmt.excluded.digest, "seen_at": stmt.excluded.seen_at},
            where=BLIND_INDEX.c.digest != stmt.excluded.digest,
        )
        execute_rows(conn, "blind_index", stmt, digests)
    if rows:
        conn.execute(_dispute_upsert(conn, rows[0]), rows)


def _replace(conn: Connection, table: Any, key: tuple[str, ...], row: dict[str, Any]) -> Any:
    """An upsert of `table` that overwrites the columns of `row` but the `key` ones."""
    stmt = upsert(conn, table)
    return stmt.on_conflict_do_update(
        index_elements=list(key),
        set_={name: stmt.excluded[name] for name in row if name not in key},
    )


def _dispute_upsert(conn: Connection, row: dict[str, Any]) -> Any:
    """`_replace` for disputes, but a dispute's `closed_at` once known stays: one first seen
    won or lost without a finalisation date is dated when pollerd first saw it closed, and the
    passes after must not move it (the weekly report counts it in that week)."""
    stmt = upsert(conn, DISPUTE_FACT)
    keep = ("store", "dispute_id", "closed_at")
    return stmt.on_conflict_do_update(
        index_elements=["store", "dispute_id"],
        set_={
            **{name: stmt.excluded[name] for name in row if name not in keep},
            "closed_at": func.coalesce(DISPUTE_FACT.c.closed_at, stmt.excluded.closed_at),
        },
    )


def _not_alerted(subject: ColumnElement[str]) -> ColumnElement[bool]:
    """No event `<prefix><subject>` recorded yet (the bound `prefix`: `<store>:<type>:`)."""
    alert = bindparam("prefix", type_=String) + subject
    return ~exists().where(EVENT.c.id == alert)


# The rules' queries, built once with bound parameters: a pass runs them every few seconds per
# store, and building and caching a statement each time cost more than running it.
_ORDER = (ORDER_FACT.c.order_id, ORDER_FACT.c.created_at, ORDER_FACT.c.total, ORDER_FACT.c.currency)
_DUE = (
    ORDER_FACT.c.store == bindparam("store"),
    text("order_fact.unpaid"),  # the partial index's own WHERE: SQLite then uses it
    ORDER_FACT.c.created_at <= bindparam("due"),
    _not_alerted(ORDER_FACT.c.order_id),
)
_UNPAID = select(*_ORDER).where(*_DUE)
_UNPAID_NEW = select(*_ORDER).where(*_DUE, ORDER_FACT.c.created_at > bindparam("bound"))
# Orders written since: few, found by `order_fact_written`. Spelled `unpaid IS 1` rather than
# the partial index's WHERE, or SQLite walks every open unpaid order for their `written_at`.
_UNPAID_WRITTEN = select(*_ORDER).where(
    ORDER_FACT.c.store == bindparam("store"),
    ORDER_FACT.c.unpaid.is_(True),
    ORDER_FACT.c.created_at <= bindparam("due"),
    ORDER_FACT.c.written_at >= bindparam("settled"),
    _not_alerted(ORDER_FACT.c.order_id),
)
_UNPAID_CHANGED = union(_UNPAID_NEW, _UNPAID_WRITTEN)
_VALUED = select(*_ORDER).where(
    ORDER_FACT.c.store == bindparam("store"),
    ORDER_FACT.c.currency == bindparam("currency"),
    ORDER_FACT.c.amount >= bindparam("amount"),
    _not_alerted(ORDER_FACT.c.order_id),
)
_VALUED_WRITTEN = _VALUED.where(ORDER_FACT.c.written_at >= bindparam("since"))
_WRITTEN = select(
    or_(
        exists().where(
            ORDER_FACT.c.store == bindparam("store"), ORDER_FACT.c.written_at >= bindparam("since")
        ),
        exists().where(
            BLIND_INDEX.c.store == bindparam("store"), BLIND_INDEX.c.seen_at >= bindparam("since")
        ),
    )
)
# A burst's buyers: the digests written since the last pass (`blind_index_seen`), then every
# order with one of them (`blind_index_digest`), each step driven by its index whatever the
# planner's statistics (as one statement PostgreSQL hashed the whole table when it guessed
# "written since" wrong: 50-100 ms a pass). Many digests at once (a first pass after a
# backfill) go as that one statement instead: a bound list that long is slower, or refused.
# Not DISTINCT: SQLite would then walk `blind_index_digest` (all of it) for the order it gives.
_RECENT = select(BLIND_INDEX.c.kind, BLIND_INDEX.c.digest).where(
    BLIND_INDEX.c.store == bindparam("store"),
    BLIND_INDEX.c.seen_at >= bindparam("since"),
    BLIND_INDEX.c.kind.in_(bindparam("kinds", expanding=True)),
)
_RECENT_ROWS = _RECENT.distinct().subquery("recent")
_HOT = (
    select(BLIND_INDEX.c.kind, BLIND_INDEX.c.digest)
    .join(
        _RECENT_ROWS,
        and_(
            BLIND_INDEX.c.kind == _RECENT_ROWS.c.kind,
            BLIND_INDEX.c.digest == _RECENT_ROWS.c.digest,
        ),
    )
    .where(BLIND_INDEX.c.store == bindparam("store"))
    .group_by(BLIND_INDEX.c.kind, BLIND_INDEX.c.digest)
    .having(func.count() >= bindparam("at_least"))
)
_BUYER_COLUMNS = select(
    BLIND_INDEX.c.kind,
    BLIND_INDEX.c.digest,
    BLIND_INDEX.c.order_id,
    BLIND_INDEX.c.created_at,
    ORDER_FACT.c.number,
).select_from(
    BLIND_INDEX.outerjoin(
        ORDER_FACT,
        and_(
            ORDER_FACT.c.store == BLIND_INDEX.c.store,
            ORDER_FACT.c.order_id == BLIND_INDEX.c.order_id,
        ),
    )
)
_BUYER_ORDER = (BLIND_INDEX.c.created_at, BLIND_INDEX.c.order_id)
# Two lists rather than one of (kind, digest) pairs: both engines probe the index for each
# kind × digest; with pairs SQLite probed by kind alone and read every digest of that kind.
_BUYERS = _BUYER_COLUMNS.where(
    BLIND_INDEX.c.store == bindparam("store"),
    BLIND_INDEX.c.kind.in_(bindparam("kinds", expanding=True)),
    BLIND_INDEX.c.digest.in_(bindparam("digests", expanding=True)),
).order_by(*_BUYER_ORDER)
_BUYERS_MANY = _BUYER_COLUMNS.where(
    BLIND_INDEX.c.store == bindparam("store"),
    tuple_(BLIND_INDEX.c.kind, BLIND_INDEX.c.digest).in_(_HOT),
).order_by(*_BUYER_ORDER)
BOUND_DIGESTS = 500
"""At most this many digests go into a bound list (`buyers_seen_since`)."""
_AWAITING = select(DISPUTE_FACT).where(
    DISPUTE_FACT.c.store == bindparam("store"),
    text("dispute_fact.awaiting"),  # the partial index's own WHERE
    DISPUTE_FACT.c.evidence_due_by > bindparam("after"),
    DISPUTE_FACT.c.evidence_due_by <= bindparam("before"),
)
_RECORDED = select(EVENT.c.id).where(EVENT.c.id.in_(bindparam("ids", expanding=True)))


FACT_TABLES = {"order_fact": ORDER_FACT, "blind_index": BLIND_INDEX, "dispute_fact": DISPUTE_FACT}
"""The rule facts' tables by name (`fact_rows`, `put_fact_rows`)."""


class RuleFacts(Database):
    """The `Store` facade's rule facts: one named query per question a seller rule asks."""

    def blind_seed(self) -> bytes:
        """The per-database random key of the blind index (created on first use, kept in
        meta): used when no `pii_key` is set. Two processes creating it at once keep one."""
        with self.tx() as conn:
            conn.execute(
                upsert(conn, META)
                .values(key=BLIND_SEED, value=secrets.token_hex(32))
                .on_conflict_do_nothing()
            )
            value = conn.execute(select(META.c.value).where(META.c.key == BLIND_SEED)).scalar()
        return bytes.fromhex(str(value))

    def written_since(self, store: str, since: float) -> bool:
        """Whether any order fact or blind index of `store` was written at or after `since`:
        two index probes. A pass that finds nothing has nothing new for the rules that read
        what changed (high value, bursts) and skips their queries (`seller.evaluate`)."""
        with self.read() as conn:
            return bool(conn.execute(_WRITTEN, {"store": store, "since": since}).scalar())

    def unpaid_before(
        self,
        store: str,
        created_before: float,
        alert: str,
        since: tuple[float, float] | None = None,
        written: bool = True,
    ) -> list[StoredOrder]:
        """Orders still unpaid that were created before `created_before`, with no `alert`
        recorded for them yet (the partial index `order_fact_unpaid` holds only unpaid ones).
        `since`: (the `created_before` of the last settled pass, its time). That pass judged
        every order due then, so only orders created after its bound, or written after it,
        are read; `written=False`: nothing was written since it (`written_since`), so only
        the former."""
        params = {"store": store, "due": created_before, "prefix": f"{store}:{alert}:"}
        if since is None:
            return self._orders(_UNPAID, params)
        bound, settled = since
        query = _UNPAID_CHANGED if written else _UNPAID_NEW
        found = self._orders(query, {**params, "bound": bound, "settled": settled})
        return sorted(found, key=lambda o: (o.created_at, o.order_id))

    def valued_at_least(
        self,
        store: str,
        currency: str,
        at_least: Decimal,
        alert: str,
        written_since: float | None = None,
    ) -> list[StoredOrder]:
        """Orders in `currency` whose total is at least `at_least`, not yet alerted, among
        those written since `written_since` (None: all). The float column only narrows (a cent
        below, for rounding); the caller compares exactly."""
        params: dict[str, Any] = {
            "store": store,
            "currency": currency,
            "amount": float(at_least) - 0.01,
            "prefix": f"{store}:{alert}:",
        }
        if written_since is None:
            found = self._orders(_VALUED, params)
        else:
            found = self._orders(_VALUED_WRITTEN, {**params, "since": written_since})
        return [o for o in found if o.total >= at_least]

    def _orders(self, query: Any, params: Mapping[str, Any]) -> list[StoredOrder]:
        with self.read() as conn:
            rows = conn.execute(query, params).all()
        return [StoredOrder(r[0], float(r[1]), Decimal(r[2]), r[3]) for r in rows]

    def buyers_seen_since(
        self, store: str, kinds: Sequence[str], seen_since: float, at_least: int
    ) -> dict[tuple[str, bytes], list[BuyerOrder]]:
        """Per (kind, digest) written since `seen_since` and shared by at least `at_least`
        orders: every order with that digest, oldest first, with its number. Two queries,
        each led by an index; a digest seen once in the store's history costs one probe."""
        found: dict[tuple[str, bytes], list[BuyerOrder]] = {}
        params = {"store": store, "since": seen_since, "kinds": list(kinds)}
        with self.read() as conn:
            recent = conn.execute(_RECENT, params)
            pairs = list(dict.fromkeys((kind, bytes(digest)) for kind, digest in recent))
            if not pairs:
                return found
            if len(pairs) <= BOUND_DIGESTS:
                seen = {"kinds": sorted({k for k, _ in pairs}), "digests": [d for _, d in pairs]}
                rows = conn.execute(_BUYERS, {**params, **seen})
            else:
                rows = conn.execute(_BUYERS_MANY, {**params, "at_least": at_least})
            for kind, digest, order_id, created, number in rows:
                order = BuyerOrder(order_id, float(created), number)
                found.setdefault((kind, bytes(digest)), []).append(order)
        wanted = set(pairs)  # a digest is keyed by its kind: another kind's never matches it
        return {k: orders for k, orders in found.items() if k in wanted and len(orders) >= at_least}

    def orders_by_window(
        self, store: str, until: float, window: float, windows: int
    ) -> list[tuple[int, int, int]]:
        """Orders created in each of the `windows` windows of `window` seconds ending at
        `until` (0: the latest), as `(window number, orders, cancelled)`, only windows with
        orders. A cancelled order counts in the window it was created in."""
        since = until - window * windows
        # A cast truncates, which is floor here (until >= created_at); SQLite's floor() needs
        # a build with its math functions.
        bucket = cast((until - ORDER_FACT.c.created_at) / window, Integer)
        cancelled = func.sum(case((ORDER_FACT.c.cancelled.is_(True), 1), else_=0))
        query = (
            select(bucket.label("k"), func.count(), cancelled)
            .where(
                ORDER_FACT.c.store == store,
                ORDER_FACT.c.created_at > since,
                ORDER_FACT.c.created_at <= until,
            )
            .group_by("k")
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return sorted((min(int(k), windows - 1), int(n), int(c or 0)) for k, n, c in rows)

    def disputes_awaiting(
        self, store: str, due_after: float, due_by: float = math.inf
    ) -> list[DisputeFact]:
        """Disputes awaiting evidence whose deadline is after `due_after` (still ahead) and no
        later than `due_by` (a reminder's moment has come: the rest need nothing yet)."""
        params = {"store": store, "after": due_after, "before": min(due_by, sys.float_info.max)}
        with self.read() as conn:
            rows = conn.execute(_AWAITING, params).mappings().all()
        return [
            DisputeFact(
                dispute_id=r["dispute_id"],
                order_id=r["order_id"],
                status=r["status"],
                awaiting=bool(r["awaiting"]),
                amount=Decimal(r["amount"]),
                currency=r["currency"],
                reason=r["reason"],
                evidence_due_by=datetime.fromtimestamp(r["evidence_due_by"], UTC),
            )
            for r in rows
        ]

    def recorded(self, event_ids: Iterable[str]) -> set[str]:
        """Which of these event ids are recorded already (an alert fires once per id)."""
        ids = list(event_ids)
        if not ids:
            return set()
        with self.read() as conn:
            return set(conn.execute(_RECORDED, {"ids": ids}).scalars())

    def fact_rows(self, store: str, until: float) -> dict[str, list[dict[str, Any]]]:
        """Every stored fact of `store` as rows, by table (`FACT_TABLES`): orders and their
        blind indexes created by `until`, oldest first, and the disputes. What `pollerd alerts
        test` (pollerd.alerts.replay) copies into its scratch database; read only."""
        found: dict[str, list[dict[str, Any]]] = {}
        with self.engine.connect() as conn:
            for name, table in FACT_TABLES.items():
                query = select(table).where(table.c.store == store)
                if "created_at" in table.c:
                    query = query.where(table.c.created_at <= until).order_by(table.c.created_at)
                found[name] = [dict(row._mapping) for row in conn.execute(query)]
        return found

    def put_fact_rows(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Rows as `fact_rows` returned them, into this database (a replay's scratch one)."""
        if rows:
            with self.tx() as conn:
                conn.execute(insert(FACT_TABLES[table]), list(rows))

    def set_rule_state(self, key: str, value: str | None) -> None:
        """A rule's own small state (`rule:<type>:<store>` in meta), e.g. the cancellation
        rate's current crossing."""
        with self.tx() as conn:
            put_meta(conn, key, value)
