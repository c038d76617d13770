"""The tables, as sqlmodel classes: the one description of the schema.

Times are float UNIX seconds (UTC): sortable, zone-free. Every column, index, unique constraint,
foreign key and server default a migration creates is declared here too, and
tests/unit/test_schema.py checks that a database built by the migrations is exactly this
(SQLite and PostgreSQL), so the two cannot drift apart.

The DDL itself stays in `migrate.py` (numbered, explicit): a later model change must never
silently alter what migration 1 created on a user's disk. Change a table = a new migration +
the matching change here; the schema test fails until both agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Table, UniqueConstraint, text
from sqlmodel import Field, SQLModel


def _default(sql: str) -> dict[str, Any]:
    """A server-side default (`sa_column_kwargs`), as the migration's DDL writes it."""
    return {"server_default": text(sql)}


class MetaRow(SQLModel, table=True):
    __tablename__ = "meta"
    key: str = Field(primary_key=True)
    value: str


class CursorRow(SQLModel, table=True):
    """Per store: the bookmark `(updated_at, order_id)` taken from data, never from the clock."""

    __tablename__ = "cursor"
    store: str = Field(primary_key=True)
    updated_at: float
    order_id: str = Field(default="", sa_column_kwargs=_default("''"))
    start_at: float
    last_hourly_sweep: float | None = None
    last_daily_sweep: float | None = None
    last_success: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None


class SnapshotRow(SQLModel, table=True):
    __tablename__ = "snapshot"
    store: str = Field(primary_key=True)
    order_id: str = Field(primary_key=True)
    status: str
    updated_at: float
    refunded_total: str = Field(default="0", sa_column_kwargs=_default("'0'"))
    fired: str = Field(
        default="", sa_column_kwargs=_default("''")
    )  # comma-separated event types emitted
    seen_at: float


class EventRow(SQLModel, table=True):
    __tablename__ = "event"
    __table_args__ = (
        Index("event_store_order", "store", "order_id"),
        Index("event_type_time", "type", "occurred_at"),  # reports (migration 5)
    )
    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(unique=True)  # store:order_id:type
    type: str
    store: str
    order_id: str
    occurred_at: float
    detected_at: float
    payload: str  # the event JSON
    # found by a sweep after the fast path missed it
    late: bool = Field(default=False, sa_column_kwargs=_default("FALSE"))
    backfill: bool = Field(default=False, sa_column_kwargs=_default("FALSE"))


class DeliveryRow(SQLModel, table=True):
    __tablename__ = "delivery"
    __table_args__ = (
        UniqueConstraint("event_id", "channel"),
        Index("delivery_due", "state", "next_at"),  # `due_count` every tick
        Index("delivery_order", "channel", "store", "order_id", "state", "event_seq"),  # `due`
        Index("delivery_digest", "digest"),
        # `prune`: only the rows that still hold a rendered body (migration 3)
        Index(
            "delivery_body_kept",
            "state",
            "sent_at",
            sqlite_where=text("body IS NOT NULL"),
            postgresql_where=text("body IS NOT NULL"),
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    event_seq: int = Field(sa_column_args=[ForeignKey("event.seq")])
    event_id: str
    channel: str
    store: str
    order_id: str
    state: str = Field(
        default="pending", sa_column_kwargs=_default("'pending'")
    )  # pending | sent | dead
    attempts: int = Field(default=0, sa_column_kwargs=_default("0"))
    next_at: float
    created_at: float
    sent_at: float | None = None
    last_error: str | None = None
    body: str | None = None  # rendered once, resent byte-identical
    digest: str | None = None  # id of the digest it was sent in (migration 2); None: on its own
    # held by a route's quiet hours until then (migration 5); None: never held
    quiet_until: float | None = None


class ChannelStateRow(SQLModel, table=True):
    __tablename__ = "channel_state"
    channel: str = Field(primary_key=True)
    broken: bool = Field(default=False, sa_column_kwargs=_default("FALSE"))
    reason: str | None = None
    since: float | None = None


class ContactRow(SQLModel, table=True):
    """An order's full customer contact, each field sealed by `crypto.KeyRing` with associated
    data `contact|<column>|<store>:<order_id>` (migration 3). Written only when `pii_key` is set,
    deleted `retention` after `sealed_at` (the last time pollerd received it)."""

    __tablename__ = "contact"
    __table_args__ = (
        UniqueConstraint("store", "order_id"),
        Index("contact_key", "key_id"),  # `rekey` and `status` count rows per key
        Index("contact_sealed", "sealed_at"),  # the retention clock
    )
    id: int | None = Field(default=None, primary_key=True)
    store: str
    order_id: str
    key_id: int
    name: bytes | None = None
    email: bytes | None = None
    phone: bytes | None = None
    sealed_at: float


class OrderFactRow(SQLModel, table=True):
    """What the seller alert rules read of an order (migration 4), written with its snapshot
    by `commit_page`. `unpaid` and `cancelled` are the platform's reading (its `Rules`), so the
    rules themselves never name a platform; `amount` is `total` as a number, for the index
    only (the rules compare `total` exactly, as a decimal)."""

    __tablename__ = "order_fact"
    __table_args__ = (
        # the cancellation rate's windows, counted from the index alone
        Index("order_fact_created", "store", "created_at", "cancelled"),
        Index("order_fact_written", "store", "written_at"),  # high value: what changed
        # unpaid too long: only the open unpaid orders are in it, however long history grows
        Index(
            "order_fact_unpaid",
            "store",
            "created_at",
            sqlite_where=text("unpaid"),
            postgresql_where=text("unpaid"),
        ),
    )
    store: str = Field(primary_key=True)
    order_id: str = Field(primary_key=True)
    created_at: float
    total: str
    amount: float
    currency: str
    unpaid: bool
    cancelled: bool
    written_at: float  # last written: the rules judge what changed since their last pass
    number: str | None = None  # the order number sellers know (migration 5); None: as the id


class BlindIndexRow(SQLModel, table=True):
    """A keyed HMAC-SHA256 of an order's normalised email, phone or IP (`kind`), never the
    value itself (migration 4): orders from one buyer match without pollerd keeping who."""

    __tablename__ = "blind_index"
    __table_args__ = (
        Index("blind_index_digest", "store", "kind", "digest", "created_at"),
        Index("blind_index_seen", "store", "seen_at"),
    )
    store: str = Field(primary_key=True)
    order_id: str = Field(primary_key=True)
    kind: str = Field(primary_key=True)  # email | phone | ip
    digest: bytes
    created_at: float  # the order's
    seen_at: float  # when this digest was first written for the order


class DisputeFactRow(SQLModel, table=True):
    """What the dispute deadline rule reads of a dispute (migration 4). `awaiting`: open and
    no evidence submitted yet, the only disputes a reminder is for."""

    __tablename__ = "dispute_fact"
    __table_args__ = (
        Index(
            "dispute_fact_due",
            "store",
            "evidence_due_by",
            sqlite_where=text("awaiting"),
            postgresql_where=text("awaiting"),
        ),
    )
    store: str = Field(primary_key=True)
    dispute_id: str = Field(primary_key=True)
    order_id: str
    status: str
    awaiting: bool
    amount: str
    currency: str
    reason: str | None = None
    evidence_due_by: float | None = None
    seen_at: float
    opened_at: float | None = None  # the dispute's initiation (migration 5)
    closed_at: float | None = None  # its finalisation, won or lost (migration 5)


def _table(row: type[SQLModel]) -> Table:
    return row.__table__  # type: ignore[attr-defined,no-any-return]


# The Core handles the queries in this package are written against.
META = _table(MetaRow)
CURSOR = _table(CursorRow)
SNAPSHOT = _table(SnapshotRow)
EVENT = _table(EventRow)
DELIVERY = _table(DeliveryRow)
CHANNEL_STATE = _table(ChannelStateRow)
CONTACT = _table(ContactRow)
ORDER_FACT = _table(OrderFactRow)
BLIND_INDEX = _table(BlindIndexRow)
DISPUTE_FACT = _table(DisputeFactRow)
CONTACT_FIELDS = ("name", "email", "phone")


def ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)
