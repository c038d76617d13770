"""Which channels are failing: every attempt since some moment failed (a webhook answering 500,
or hanging, for hours). Not broken (a 410 or a revoked key holds a channel at once): retried,
but nobody would know. `alert.channel_failing` goes out once per failing episode when it has
lasted `failing_after`, and once when its letters go dead; `/healthz` and `pollerd status`
show the channel as failing (the episode is kept in the `meta` table, so `status` in another
process sees it and a restart neither forgets nor repeats the alert). One success ends it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

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


class ChannelWatch:
    """Failing episodes per channel, in memory and in `meta`; `announce(channel, reason)`
    raises `alert.channel_failing` on the other channels (see `Deliverer`)."""

    def __init__(
        self,
        store: Store,
        failing_after: float,
        announce: Callable[[str, str], None],
    ) -> None:
        self.store = store
        self.failing_after = failing_after
        self.announce = announce
        self.open = episodes(store)

    def _save(self, channel: str) -> None:
        episode = self.open.get(channel)
        self.store.set_meta(PREFIX + channel, json.dumps(asdict(episode)) if episode else None)

    def failed(self, channel: str, detail: str, now: float) -> None:
        if channel not in self.open:
            self.open[channel] = Episode(since=now, detail=detail[:300])
            self._save(channel)
        self.check(now)

    def succeeded(self, channel: str) -> None:
        if self.open.pop(channel, None) is not None:
            self._save(channel)

    def dead(self, channel: str, count: int, detail: str, now: float) -> None:
        """`count` letters of `channel` just went dead: tell a person once per episode (a
        dead letter also holds its order's later events on this channel)."""
        episode = self.open.setdefault(channel, Episode(since=now, detail=detail[:300]))
        if episode.dead_alerted:
            return
        episode.dead_alerted = True
        self._save(channel)
        self.announce(
            channel,
            f"channel {channel}: {count} alert(s) became dead letters ({detail[:200]}); "
            "later alerts of the same orders are held behind them. See `pollerd deliveries "
            "list --dead`; fix the channel, then `pollerd deliveries retry`",
        )

    def check(self, now: float) -> None:
        """Announce every episode that has lasted `failing_after` and was not announced."""
        for channel, episode in list(self.open.items()):
            if episode.alerted or now - episode.since < self.failing_after:
                continue
            episode.alerted = True
            self._save(channel)
            self.announce(
                channel,
                f"channel {channel}: every attempt failed for "
                f"{for_humans(now - episode.since)} ({episode.detail}); alerts are retried "
                "until dead_after. Fix the receiver; `pollerd status` shows the channel",
            )

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
