"""The tables, as sqlmodel classes. Times are float UNIX seconds (UTC): sortable, zone-free.

The DDL that creates them lives in `migrate.py` (numbered, explicit), so a later model change
can never silently alter what migration 1 created on a user's disk.
"""

from __future__ import annotations

from sqlmodel import Field, SQLModel


class MetaRow(SQLModel, table=True):
    __tablename__ = "meta"
    key: str = Field(primary_key=True)
    value: str


class CursorRow(SQLModel, table=True):
    """Per store: the bookmark `(updated_at, order_id)` taken from data, never from the clock."""

    __tablename__ = "cursor"
    store: str = Field(primary_key=True)
    updated_at: float
    order_id: str = ""
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
    refunded_total: str = "0"
    fired: str = ""  # comma-separated event types already emitted
    seen_at: float


class EventRow(SQLModel, table=True):
    __tablename__ = "event"
    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(unique=True)  # store:order_id:type
    type: str
    store: str
    order_id: str
    occurred_at: float
    detected_at: float
    payload: str  # the event JSON
    late: bool = False  # found by a sweep after the fast path missed it
    backfill: bool = False


class DeliveryRow(SQLModel, table=True):
    __tablename__ = "delivery"
    id: int | None = Field(default=None, primary_key=True)
    event_seq: int
    event_id: str
    channel: str
    store: str
    order_id: str
    state: str = "pending"  # pending | sent | dead
    attempts: int = 0
    next_at: float
    created_at: float
    sent_at: float | None = None
    last_error: str | None = None
    body: str | None = None  # rendered once, resent byte-identical
    digest: str | None = None  # id of the digest it was sent in (migration 2); None: on its own


class ChannelStateRow(SQLModel, table=True):
    __tablename__ = "channel_state"
    channel: str = Field(primary_key=True)
    broken: bool = False
    reason: str | None = None
    since: float | None = None


class ContactRow(SQLModel, table=True):
    """An order's full customer contact, each field sealed by `crypto.KeyRing` with associated
    data `contact|<column>|<store>:<order_id>` (migration 3). Written only when `pii_key` is set,
    deleted `retention` after `sealed_at` (the last time pollerd received it)."""

    __tablename__ = "contact"
    id: int | None = Field(default=None, primary_key=True)
    store: str
    order_id: str
    key_id: int
    name: bytes | None = None
    email: bytes | None = None
    phone: bytes | None = None
    sealed_at: float
