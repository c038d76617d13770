"""A store that keeps failing reaches a person, once; and it stops hammering the shop.

Before, `alert.store_failing` was never sent: a revoked key logged an ERROR every interval
forever (20 lines in 40 s) and was retried at full rate, the pattern that gets a server's IP
blocked by Wordfence-style firewalls. Now every store has a failure *episode*, from its first
failed pass to its next successful one:

- stored in the `meta` table (`failing:<store>`), so it survives restarts and `pollerd once`
  from a timer counts it too;
- `alert.store_failing` once the episode has lasted `[pollerd] store_failing_after`, and
  `alert.store_recovered` when it ends (only if the first was sent). Both are routed by
  `[[routes]]` like any event and delivered through the outbox; their id names the episode,
  `<store>:alert.store_failing|alert.store_recovered:<episode start, epoch s>`, so each is
  recorded once per episode however often the pass is replayed; both share the outbox group
  (`order.id`) `-@<episode start>`, so recovery never overtakes failure;
- errors only a person can fix (`PermanentSourceError`: 401/403, a wrong URL, an old WooCommerce;
  `BLOCKED`, a WAF page) back off exponentially from twice the interval up to
  `[pollerd] store_backoff_max`; retryable ones (5xx, timeouts, 429) keep the store's own
  pacing and still count towards the episode;
- the error is logged at ERROR when the episode starts, when the error changes, and at most
  every `REMIND_EVERY` seconds in between; the other failed passes log one INFO line.

The back-off itself is kept in memory: a restart (or a reload that changes the store, e.g. a
fixed key) polls at once.

`StoreWatch` keeps the episodes (the stored facts) and the back-off; the rules `StoreFailing`
and `StoreRecovered` turn an episode into an alert (`pollerd.alerts.base`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from loguru import logger

from pollerd.alerts.base import Alert, Facts, raise_alerts, register
from pollerd.config import RouteConfig
from pollerd.log import redact
from pollerd.store import Store

PREFIX = "failing:"
REMIND_EVERY = 900.0  # seconds between two ERROR lines for the same unchanged failure
FAILING = "alert.store_failing"
RECOVERED = "alert.store_recovered"


@dataclass
class Episode:
    """One store's failure episode, in epoch seconds."""

    since: float  # the first failed pass
    last: float  # the latest failed pass
    failures: int  # passes failed in it
    error: str  # the latest error, as logged (already scrubbed of secrets)
    alerted: bool = False  # alert.store_failing recorded
    logged: float = 0.0  # the error was last logged at ERROR

    @property
    def subject(self) -> str:
        """Its alerts' subject (the episode start, epoch s): one per episode."""
        return str(int(self.since))

    @property
    def group(self) -> str:
        """Its alerts' outbox group and `order.id`, shared by both: "recovered" waits for
        "failing". Never a number, so it cannot meet a real order of the store."""
        return f"-@{int(self.since)}"


def episode(store: Store, name: str) -> Episode | None:
    """The store's running episode, if it is failing (for `pollerd status`)."""
    value = store.meta(PREFIX + name)
    return Episode(**json.loads(value)) if value else None


def _when(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _episode_alert(facts: Facts[Episode], kind: str, reason: str, occurred: float) -> Alert:
    ep = facts.subject
    return Alert(
        type=kind,
        store=facts.name,
        platform=facts.platform,
        subject=ep.subject,
        reason=redact(reason),  # sent to people: no secret, no contact
        occurred_at=_when(occurred),
        group=ep.group,
        unheard=f"no route sends {kind} of store {facts.name} anywhere: nobody is told",
    )


@register
class StoreFailing:
    """`alert.store_failing` once an episode not yet alerted has lasted `failing_after`."""

    type: ClassVar[str] = FAILING

    def __init__(self, failing_after: timedelta) -> None:
        self.failing_after = failing_after.total_seconds()

    def evaluate(self, facts: Facts[Episode]) -> list[Alert]:
        ep, now = facts.subject, facts.now
        if ep.alerted or now - ep.since < self.failing_after:
            return []
        reason = (
            f"{ep.error[:300]} (failing for {_minutes(now - ep.since)}, {ep.failures} failed "
            "passes; pollerd keeps retrying)"
        )
        return [_episode_alert(facts, FAILING, reason, ep.since)]


@register
class StoreRecovered:
    """`alert.store_recovered` for an episode that just ended, if it was alerted."""

    type: ClassVar[str] = RECOVERED

    def evaluate(self, facts: Facts[Episode]) -> list[Alert]:
        ep, now = facts.subject, facts.now
        if not ep.alerted:
            return []
        reason = (
            f"polling works again after {_minutes(now - ep.since)} ({ep.failures} failed passes)"
        )
        return [_episode_alert(facts, RECOVERED, reason, now)]


class StoreWatch:
    """Failure episodes and back-off of every store of one process (module docstring)."""

    def __init__(
        self,
        store: Store,
        *,
        failing_after: Callable[[], timedelta],
        backoff_max: Callable[[], timedelta],
        routes: Callable[[], Sequence[RouteConfig]],
        on_commit: Callable[[int], None] = lambda n: None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.failing_after = failing_after
        self.backoff_max = backoff_max
        self.routes = routes
        self.on_commit = on_commit
        self.clock = clock
        self.monotonic = monotonic
        self._clean: set[str] = set()  # known to have no episode: a success costs no read
        self._streak: dict[str, int] = {}  # fatal failures in a row
        self._not_before: dict[str, float] = {}  # monotonic time of the next allowed pass

    def waiting(self, name: str) -> float:
        """Seconds the store's back-off still asks to wait before its next pass (0: none)."""
        return max(0.0, self._not_before.get(name, 0.0) - self.monotonic())

    def since(self, name: str) -> datetime | None:
        """When the store's running failure episode started (None: not failing)."""
        if name in self._clean:
            return None
        ep = episode(self.store, name)
        return None if ep is None else _when(ep.since)

    def reset(self, name: str) -> None:
        """Poll at once (a reload changed the store, e.g. a fixed key); the episode stays."""
        self._streak.pop(name, None)
        self._not_before.pop(name, None)

    def failed(
        self, name: str, platform: str, error: str, *, fatal: bool, interval: float
    ) -> tuple[bool, Episode, float]:
        """Record a failed pass → (log it at ERROR?, the episode, back-off seconds or 0)."""
        now = self.clock()
        self._clean.discard(name)
        text = error.removeprefix(f"store {name}: ")
        ep = episode(self.store, name) or Episode(since=now, last=now, failures=0, error=text)
        loud = ep.failures == 0 or text != ep.error or now - ep.logged >= REMIND_EVERY
        ep.failures += 1
        ep.last, ep.error = now, text
        if loud:
            ep.logged = now
        wait = 0.0
        if fatal:
            streak = self._streak.get(name, 0) + 1
            self._streak[name] = streak
            cap = self.backoff_max().total_seconds()
            wait = min(interval * 2 ** min(streak, 30), max(cap, interval))
            self._not_before[name] = self.monotonic() + wait
        else:
            self.reset(name)
        if not ep.alerted:
            facts = Facts(self.store, name, platform, ep, now)
            ep.alerted = bool(self._raise(StoreFailing(self.failing_after()).evaluate(facts), now))
        self.store.set_meta(PREFIX + name, json.dumps(asdict(ep)))
        return loud, ep, wait

    def succeeded(self, name: str, platform: str) -> None:
        """End the store's episode (and its back-off); `alert.store_recovered` if it alerted."""
        self.reset(name)
        if name in self._clean:
            return
        ep = episode(self.store, name)
        if ep is not None:
            now = self.clock()
            took = _minutes(now - ep.since)
            logger.info(
                "store {}: polling works again after {} ({} failed passes)",
                name,
                took,
                ep.failures,
            )
            self._raise(StoreRecovered().evaluate(Facts(self.store, name, platform, ep, now)), now)
            self.store.set_meta(PREFIX + name, None)
        self._clean.add(name)

    def _raise(self, alerts: list[Alert], now: float) -> list[Alert]:
        """Record the episode's alerts (idempotent: the id names the episode), even with no
        route for them (then a warning says nobody is told); returns those recorded."""
        return raise_alerts(self.store, alerts, self.routes(), now=now, on_commit=self.on_commit)
