"""A channel in trouble reaches a person on the *other* channels: `alert.channel_failing`.

Which channels are failing: every attempt since some moment failed (a webhook answering 500,
or hanging, for hours). Not broken (a 410 or a revoked key holds a channel at once): retried,
but nobody would know. `alert.channel_failing` goes out once per failing episode when it has
lasted `failing_after`, once when its letters go dead, and once when the channel is held as
broken (`Deliverer`); `/healthz` and `pollerd status` show the channel as failing (the episode
is kept in the `meta` table, so `status` in another process sees it and a restart neither
forgets nor repeats the alert). One success ends it.

`ChannelWatch` keeps the episodes (the stored facts); `ChannelFailing` is the rule that turns
one into an alert. Its subject is `<channel>@<epoch ms when raised>`: an episode's "failing"
and "dead letters" alerts are two events, and every later breakage is a new one (a receiver
deduping on the webhook id must not drop it). It is never sent to the failing channel itself:
a broken WeCom key must not fail silently just because the alert about it would go to WeCom.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pollerd.alerts.base import PROCESS, Alert, Facts, raise_alerts, register
from pollerd.config import RouteConfig
from pollerd.store import Store

PREFIX = "channel_failing:"


@dataclass
class Episode:
    since: float  # wall-clock time of the first failed attempt in a row
    detail: str  # the first failure's reason (secrets are the channel's to redact)
    alerted: bool = False  # announced as failing for `failing_after`
    dead_alerted: bool = False  # announced as having dead letters


def episodes(store: Store) -> dict[str, Episode]:
    """The failing episodes recorded in `store` (channel → episode), for `status`."""
    out = {}
    for key, value in store.metas(PREFIX).items():
        try:
            out[key.removeprefix(PREFIX)] = Episode(**json.loads(value))
        except (ValueError, TypeError):
            continue  # a hand-edited value must not break `status`
    return out


def for_humans(seconds: float) -> str:
    """`15m`, `2h5m`, `40s`: how long a channel has been failing, in a message."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    hours, minutes = divmod(seconds // 60, 60)
    return f"{hours}h{minutes}m" if hours and minutes else (f"{hours}h" if hours else f"{minutes}m")


@dataclass(frozen=True)
class Trouble:
    """One channel's trouble, as the rule is given it."""

    channel: str
    kind: Literal["failing", "dead", "broken"]
    detail: str
    lasted: float = 0.0  # seconds the episode has lasted ("failing")
    count: int = 0  # letters that just went dead ("dead")


@register
class ChannelFailing:
    """`alert.channel_failing` for a failing episode that has lasted `failing_after`, for new
    dead letters, and for a channel held as broken (module docstring)."""

    type: ClassVar[str] = "alert.channel_failing"

    def __init__(self, failing_after: float) -> None:
        self.failing_after = failing_after

    def evaluate(self, facts: Facts[Trouble]) -> list[Alert]:
        trouble = facts.subject
        channel, detail = trouble.channel, trouble.detail
        if trouble.kind == "failing":
            if trouble.lasted < self.failing_after:
                return []
            reason = (
                f"channel {channel}: every attempt failed for {for_humans(trouble.lasted)} "
                f"({detail}); alerts are retried until dead_after. Fix the receiver; "
                "`pollerd status` shows the channel"
            )
        elif trouble.kind == "dead":
            reason = (
                f"channel {channel}: {trouble.count} alert(s) became dead letters "
                f"({detail[:200]}); later alerts of the same orders are held behind them. See "
                "`pollerd deliveries list --dead`; fix the channel, then `pollerd deliveries "
                "retry`"
            )
        else:
            reason = (
                f"channel {channel}: {detail}; fix it, then `pollerd deliveries retry "
                f"--channel {channel}`"
            )
        subject = f"{channel}@{int(facts.now * 1000)}"
        return [
            Alert(
                type=self.type,
                store=facts.name,
                platform=facts.platform,
                subject=subject,
                reason=reason,
                occurred_at=datetime.fromtimestamp(facts.now, UTC),
                group=subject,
                order={"number": channel},
                exclude=frozenset({channel}),
                # Not recorded when nobody hears it: the next breakage raises it again.
                record_unheard=False,
                unheard=f"no route sends alert.* to another channel: nobody is told: {reason}",
            )
        ]


class ChannelWatch:
    """Failing episodes per channel, in memory and in `meta`; raises `ChannelFailing`'s
    alerts, routed by `routes()` (see `Deliverer`). `clock` is the wall clock an alert is
    stamped with (episodes are timed by the caller's `now`)."""

    def __init__(
        self,
        store: Store,
        failing_after: float,
        routes: Callable[[], Sequence[RouteConfig]],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.failing_after = failing_after
        self.routes = routes
        self.clock = clock
        self.open = episodes(store)

    def _save(self, channel: str) -> None:
        episode = self.open.get(channel)
        self.store.set_meta(PREFIX + channel, json.dumps(asdict(episode)) if episode else None)

    def _evaluate(self, trouble: Trouble, now: float) -> list[Alert]:
        facts = Facts(self.store, PROCESS, PROCESS, trouble, now)
        return ChannelFailing(self.failing_after).evaluate(facts)

    def _record(self, alerts: list[Alert], now: float) -> None:
        raise_alerts(self.store, alerts, self.routes(), now=now)

    def failed(self, channel: str, detail: str, now: float) -> None:
        if channel not in self.open:
            self.open[channel] = Episode(since=now, detail=detail[:300])
            self._save(channel)
        self.check(now)

    def succeeded(self, channel: str) -> None:
        if self.open.pop(channel, None) is not None:
            self._save(channel)

    def broken(self, channel: str, detail: str) -> None:
        """`channel` was just held as broken (410, a revoked key): say so once, elsewhere."""
        now = self.clock()
        self._record(self._evaluate(Trouble(channel, "broken", detail), now), now)

    def dead(self, channel: str, count: int, detail: str, now: float) -> None:
        """`count` letters of `channel` just went dead: tell a person once per episode (a
        dead letter also holds its order's later events on this channel)."""
        episode = self.open.setdefault(channel, Episode(since=now, detail=detail[:300]))
        if episode.dead_alerted:
            return
        episode.dead_alerted = True
        self._save(channel)
        wall = self.clock()
        self._record(self._evaluate(Trouble(channel, "dead", detail, count=count), wall), wall)

    def check(self, now: float) -> None:
        """Announce every episode that has lasted `failing_after` and was not announced."""
        for channel, episode in list(self.open.items()):
            if episode.alerted:
                continue
            trouble = Trouble(channel, "failing", episode.detail, lasted=now - episode.since)
            wall = self.clock()
            alerts = self._evaluate(trouble, wall)
            if not alerts:
                continue
            episode.alerted = True
            self._save(channel)
            self._record(alerts, wall)

    def report(self, now: float) -> dict[str, dict[str, Any]]:
        """Channels failing for at least `failing_after` (plain data: read from the health
        server's thread)."""
        return {
            channel: {
                "failing_seconds": round(now - e.since, 3),
                "detail": e.detail,
                "dead_letters": e.dead_alerted,
            }
            for channel, e in list(self.open.items())
            if now - e.since >= self.failing_after or e.dead_alerted
        }
