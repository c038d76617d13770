"""The delivery outbox: which rows may go out now, and what became of them.

Per order the messages go out in the order things happened. That rests on ONE predicate,
`waits_on_nothing`, written once here and used by `due`, `next_due_at` and `expire`: a
pending row of a channel that is not held (broken), with no earlier pending row or dead letter
of its order on that channel. A dead letter holds its order's later events until `retry`
releases them, in order. `backlog` (digests) relaxes it on purpose: earlier rows that are due
too may go out in the same message, so only a dead letter or a row still backing off blocks.

Quiet hours (`quiet_until`, pollerd.routing) are the one exception to "nothing overtakes": a
row held until the morning does not hold back a later row of its order that is NOT held (an
urgent one, or one a route that is awake sends), so a dispute due in 4 hours is not kept
waiting behind last night's `order.created`. Held rows keep their order among themselves (a
later held row waits behind an earlier one even when its own hold ends sooner), and once the
hold is over the held row is an ordinary earlier row again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Integer,
    Select,
    and_,
    bindparam,
    func,
    literal_column,
    or_,
    select,
    text,
    update,
)

from pollerd.store.engine import Database, upsert
from pollerd.store.tables import CHANNEL_STATE, DELIVERY, EVENT

D = DELIVERY


@dataclass(frozen=True)
class Due:
    """A delivery the loop may send now."""

    id: int
    event_id: str
    channel: str
    attempts: int
    created_at: float
    body: str | None
    payload: dict[str, Any]
    store: str = ""
    order_id: str = ""
    quiet_until: float | None = None  # held by quiet hours until then (released when due)

    @property
    def since(self) -> float:
        """Where its expiry (`dead_after`) counts from: its creation, or the end of the quiet
        hours that held it (a night held is not a night of trying)."""
        return max(self.created_at, self.quiet_until or 0.0)


def _held_aside(p: Any) -> ColumnElement[bool]:
    """The earlier row `p` is held by quiet hours past the time this row is due, and this row
    is not held: it may go first (module docstring). Never NULL (NULL columns make it false)."""
    return and_(
        p.c.quiet_until.is_not(None), D.c.quiet_until.is_(None), p.c.quiet_until > D.c.next_at
    )


def _behind(earlier: Callable[[Any], ColumnElement[bool]]) -> ColumnElement[bool]:
    """The row has an earlier row (`event_seq`) of the same order on the same channel that
    matches `earlier` (index `delivery_order` answers it)."""
    p = DELIVERY.alias("p")
    # SELECT 1, not SELECT *: SQLite then answers from the covering index alone.
    return (
        select(literal_column("1"))
        .where(
            p.c.channel == D.c.channel,
            p.c.store == D.c.store,
            p.c.order_id == D.c.order_id,
            earlier(p),
            p.c.event_seq < D.c.event_seq,
        )
        .exists()
    )


HELD_CHANNELS = select(CHANNEL_STATE.c.channel).where(CHANNEL_STATE.c.broken)


def waits_on_nothing(*narrowing: ColumnElement[bool]) -> ColumnElement[bool]:
    """The one due predicate (module docstring): a pending row of a channel not held, not
    queued behind an earlier row of its order. The clock is not in it: `due` narrows it to
    `next_at <= now`, `expire` to the expiry cutoff. The narrowing terms go right after the
    state, before the held-channel and per-order subqueries: SQLite evaluates what the index
    does not answer in the order written, and the subqueries then run only for rows that can
    still match."""
    return and_(
        D.c.state == "pending",
        *narrowing,
        D.c.channel.not_in(HELD_CHANNELS),
        ~_behind(lambda p: or_(p.c.state == "dead", and_(p.c.state == "pending", ~_held_aside(p)))),
    )


def _with_payload(*where: ColumnElement[bool]) -> Select[Any]:
    """Delivery rows as `Due` needs them, with their event's JSON."""
    return (
        select(
            D.c.id,
            D.c.event_id,
            D.c.channel,
            D.c.attempts,
            D.c.created_at,
            D.c.body,
            EVENT.c.payload,
            D.c.store,
            D.c.order_id,
            D.c.quiet_until,
        )
        .select_from(D.join(EVENT, EVENT.c.seq == D.c.event_seq))
        .where(*where)
    )


# Built once: these run every few seconds, and building a statement per call cost about as
# much as the indexed read behind it (`next_due_at`, 20,000-row outbox on SQLite: 0.11 ms built
# once, about twice that built per call).
_CHANNELS: BindParameter[str] = bindparam("names", expanding=True)
_DUE = (
    _with_payload(waits_on_nothing(D.c.next_at <= bindparam("now"), D.c.channel.in_(_CHANNELS)))
    .order_by(D.c.next_at, D.c.event_seq)
    .limit(bindparam("limit", type_=Integer))
)
_NEXT_DUE_AT = select(func.min(D.c.next_at)).where(waits_on_nothing(D.c.channel.in_(_CHANNELS)))
_EXPIRED = _with_payload(
    waits_on_nothing(func.coalesce(D.c.quiet_until, D.c.created_at) <= bindparam("cutoff"))
)
_BACKLOG = (
    _with_payload(
        D.c.state == "pending",
        D.c.next_at <= bindparam("now"),
        D.c.channel == bindparam("channel"),
        D.c.channel.not_in(HELD_CHANNELS),
        # Only what could overtake: an earlier dead letter, or an earlier row still backing off
        # (an earlier row due now is in the same digest, ahead of this one), unless that one is
        # held aside by quiet hours.
        ~_behind(
            lambda p: or_(
                p.c.state == "dead",
                and_(p.c.state == "pending", p.c.next_at > bindparam("now"), ~_held_aside(p)),
            )
        ),
    )
    .order_by(D.c.event_seq)
    .limit(bindparam("limit", type_=Integer))
)


def _due(row: Any) -> Due:
    payload = json.loads(row[6])
    return Due(row[0], row[1], row[2], row[3], row[4], row[5], payload, row[7], row[8], row[9])


_RELEASE = text(
    """
    UPDATE delivery SET created_at = :now
    WHERE state = 'pending' AND EXISTS (
      SELECT 1 FROM delivery r
      WHERE r.id IN :ids AND r.channel = delivery.channel AND r.store = delivery.store
        AND r.order_id = delivery.order_id AND r.event_seq < delivery.event_seq)
    """
).bindparams(bindparam("ids", expanding=True))


class Outbox(Database):
    """The `Store` facade's outbox: handing out due rows, marking them, dead letters, retry."""

    # ---- handing out ---------------------------------------------------------------------

    def due(self, now: float, limit: int, channels: Iterable[str]) -> list[Due]:
        """Pending rows of `channels` whose time has come, oldest first, skipping held channels
        and any row whose order still has an earlier pending event for the same channel, or an
        earlier dead letter: its later events are held behind it (never overtaking it) until
        `retry` releases them, in order."""
        names = sorted(channels)
        if not names:
            return []
        with self.engine.connect() as conn:
            rows = conn.execute(_DUE, {"now": now, "limit": limit, "names": names}).all()
        return [_due(r) for r in rows]

    def backlog(
        self, channel: str, now: float, limit: int, *, skip: Iterable[int] = ()
    ) -> list[Due]:
        """The due rows of `channel` that may go out together in ONE message (a digest), in
        event order: a row is in only when every earlier pending row of its order on this
        channel is in too, so a digest never overtakes an event still backing off, a dead
        letter, nor one in `skip`. Its first row per order is exactly what `due` would hand
        out alone."""
        with self.engine.connect() as conn:
            rows = conn.execute(_BACKLOG, {"now": now, "limit": limit, "channel": channel}).all()
        skipped, blocked, out = set(skip), set(), []
        for row in rows:
            due = _due(row)
            order = (due.store, due.order_id)
            if order in blocked or due.id in skipped:
                blocked.add(order)
                continue
            out.append(due)
        return out

    def released(self, channel: str, now: float) -> int:
        """Rows of `channel` due now that quiet hours held (index `delivery_due`: the pending
        rows due now, a handful): more than one means the night's digest is ready."""
        query = (
            select(func.count())
            .select_from(D)
            .where(
                D.c.state == "pending",
                D.c.next_at <= now,
                D.c.channel == channel,
                D.c.quiet_until.is_not(None),
            )
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def next_due_at(self, channels: Iterable[str]) -> float | None:
        """When the next row `due` would hand out becomes due (a row queued behind an earlier
        one of its order does not count: it waits for that one, not for the clock)."""
        names = sorted(channels)
        if not names:
            return None
        with self.engine.connect() as conn:
            return conn.execute(_NEXT_DUE_AT, {"names": names}).scalar()

    def due_count(self, now: float) -> int:
        """Deliveries waiting to go out now (index `delivery_due`: cheap enough for every tick).
        A count of pending rows past their time, not `waits_on_nothing`: rows held behind
        others are waiting too."""
        query = (
            select(func.count()).select_from(D).where(D.c.state == "pending", D.c.next_at <= now)
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    # ---- outcomes ------------------------------------------------------------------------

    def mark(
        self,
        delivery_id: int,
        *,
        state: str,
        attempts: int,
        body: str | None,
        next_at: float | None = None,
        error: str | None = None,
    ) -> None:
        values: dict[str, Any] = {"state": state, "attempts": attempts, "body": body}
        if state == "sent":
            values["sent_at"] = time.time()
            values["last_error"] = None
        if next_at is not None:
            values["next_at"] = next_at
        if error is not None:
            values["last_error"] = error[:1000]
        with self.tx() as conn:
            conn.execute(update(D).where(D.c.id == delivery_id).values(values))

    def mark_digest(self, delivery_ids: list[int], digest: str) -> int:
        """Every row a digest stood for is sent, in ONE transaction (all or none), with the
        digest's id; returns how many rows were still pending (and are now sent)."""
        if not delivery_ids:
            return 0
        values = {
            "state": "sent",
            "attempts": D.c.attempts + 1,
            "sent_at": time.time(),
            "last_error": None,
            "digest": digest,
        }
        with self.tx() as conn:
            count = conn.execute(
                update(D).where(D.c.id.in_(delivery_ids), D.c.state == "pending").values(values)
            ).rowcount
        return int(count or 0)

    def expire(self, cutoff: float, why: str) -> list[Due]:
        """Dead-letter every pending row created (or released by quiet hours) before `cutoff`
        (its expiry has passed) that
        is not waiting for anything: not behind an earlier pending row or dead letter of its
        order (a held row does not expire while held), not in a held (broken) channel. Covers
        rows an older pollerd left due in years (`Retry-After: 99999999`). Returns them."""
        # Read first, write only when something expired: this runs every few seconds and
        # must not take the write lock from the pages being committed for nothing.
        with self.engine.connect() as conn:
            rows = [_due(r) for r in conn.execute(_EXPIRED, {"cutoff": cutoff}).all()]
        if not rows:
            return []
        with self.tx() as conn:
            conn.execute(
                update(D)
                .where(D.c.id.in_([r.id for r in rows]), D.c.state == "pending")
                .values(state="dead", last_error=why[:1000])
            )
        return rows

    # ---- held channels -------------------------------------------------------------------

    def set_channel_broken(self, channel: str, reason: str | None) -> None:
        """Hold (reason given) or release (None) every delivery of a channel."""
        with self.tx() as conn:
            stmt = upsert(conn, CHANNEL_STATE).values(
                channel=channel, broken=reason is not None, reason=reason, since=time.time()
            )
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["channel"],
                    set_={
                        "broken": stmt.excluded.broken,
                        "reason": stmt.excluded.reason,
                        "since": stmt.excluded.since,
                    },
                )
            )

    def broken_channels(self) -> dict[str, str]:
        query = select(CHANNEL_STATE.c.channel, CHANNEL_STATE.c.reason).where(
            CHANNEL_STATE.c.broken
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return {r[0]: r[1] or "" for r in rows}

    # ---- dead letters and the operator's view --------------------------------------------

    def retry(self, *, ids: list[int] | None = None, channel: str | None = None) -> int:
        """Give dead (and held) deliveries a fresh set of attempts, due now. The events held
        behind a retried dead letter are released with it: they go out after it, in order
        (`due` hands out one row per order at a time), and their expiry clock restarts."""
        where: list[ColumnElement[bool]] = [D.c.state.in_(["dead", "pending"])]
        if ids:
            where.append(D.c.id.in_(ids))
        if channel:
            where.append(D.c.channel == channel)
        if not ids and not channel:
            where.append(D.c.state == "dead")
        now = time.time()
        # A row quiet hours still hold is not stuck: it waits for the morning, retry or not.
        where.append(~and_(D.c.state == "pending", func.coalesce(D.c.quiet_until, 0) > now))
        with self.tx() as conn:
            retried = [int(i) for i in conn.execute(select(D.c.id).where(*where)).scalars()]
            count = conn.execute(
                update(D)
                .where(*where)
                .values(state="pending", attempts=0, next_at=now, created_at=now)
            ).rowcount
            if retried:
                conn.execute(_RELEASE, {"now": now, "ids": retried})
        if channel:
            self.set_channel_broken(channel, None)
        return int(count or 0)

    def deliveries(
        self, *, state: str | None = None, channel: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The outbox, newest first. `held_behind` is the id of the dead letter a pending row
        waits behind (its order's earlier event on this channel), else None."""
        dead = DELIVERY.alias("dead")
        held_behind = (
            select(func.min(dead.c.id))
            .where(
                dead.c.channel == D.c.channel,
                dead.c.store == D.c.store,
                dead.c.order_id == D.c.order_id,
                dead.c.state == "dead",
                dead.c.event_seq < D.c.event_seq,
                D.c.state == "pending",
            )
            .scalar_subquery()
            .label("held_behind")
        )
        query = (
            select(
                D.c.id,
                D.c.event_id,
                D.c.channel,
                D.c.state,
                D.c.attempts,
                D.c.next_at,
                D.c.created_at,
                D.c.sent_at,
                D.c.last_error,
                D.c.digest,
                D.c.quiet_until,
                held_behind,
            )
            .order_by(D.c.id.desc())
            .limit(limit)
        )
        if state:
            query = query.where(D.c.state == state)
        if channel:
            query = query.where(D.c.channel == channel)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def known_deliveries(self, ids: Iterable[int]) -> set[int]:
        """Which of these ids are deliveries (`deliveries retry` names the ones that are not)."""
        wanted = sorted(set(ids))
        if not wanted:
            return set()
        with self.engine.connect() as conn:
            return {
                int(i) for i in conn.execute(select(D.c.id).where(D.c.id.in_(wanted))).scalars()
            }

    def counts(self) -> dict[str, dict[str, int]]:
        """channel → {pending, retrying, sent, dead} for `pollerd status`."""
        sql = text(
            "SELECT channel, state, attempts > 0, COUNT(*) FROM delivery "
            "GROUP BY channel, state, attempts > 0"
        )
        out: dict[str, dict[str, int]] = {}
        with self.engine.connect() as conn:
            for channel, state, retried, count in conn.execute(sql):
                key = "retrying" if state == "pending" and retried else state
                bucket = out.setdefault(
                    channel, {"pending": 0, "retrying": 0, "sent": 0, "dead": 0}
                )
                bucket[key] = bucket.get(key, 0) + int(count)
        return out

    def quiet(self, now: float) -> dict[str, tuple[int, float]]:
        """channel → (rows held by quiet hours at `now`, the earliest end of their hold), for
        `pollerd status` (index `delivery_due`: pending rows not yet due)."""
        query = (
            select(D.c.channel, func.count(), func.min(D.c.quiet_until))
            .where(D.c.state == "pending", D.c.next_at > now, D.c.quiet_until > now)
            .group_by(D.c.channel)
        )
        with self.engine.connect() as conn:
            return {str(c): (int(n), float(at)) for c, n, at in conn.execute(query)}

    def dead_counts(self) -> dict[str, int]:
        """Dead letters per channel (`pollerd_deliveries_dead`, read when scraped: `pollerd
        deliveries retry` in another process empties them). One indexed read (`delivery_due`
        starts with state)."""
        query = select(D.c.channel, func.count()).where(D.c.state == "dead").group_by(D.c.channel)
        with self.engine.connect() as conn:
            return {str(channel): int(count) for channel, count in conn.execute(query)}

    def recent_sends(self, channel: str, since: float) -> list[float]:
        """When this channel's messages went out since `since` (wall clock): one entry per
        message, so the rows merged into one digest count once."""
        query = select(D.c.sent_at, D.c.digest).where(
            D.c.channel == channel, D.c.state == "sent", D.c.sent_at >= since
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        singles = [at for at, digest in rows if digest is None]
        digests = {digest: at for at, digest in rows if digest is not None}
        return sorted([*singles, *digests.values()])
