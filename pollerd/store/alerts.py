"""The one store call for alert events: the event row and its outbox rows, in one transaction.

Every alert (`pollerd.alerts`: a failing store or channel, later the seller rules) is written
here and nowhere else. It is `Store.commit_page` with no snapshots and no cursor: the same
transaction an order event gets, so an alert is in the outbox exactly when its event row is,
and the same idempotence (an id already recorded inserts nothing and creates no deliveries).
An alert's id (`<store>:<type>:<subject>`) names its subject, so raising it again, after a
restart or by `pollerd once` from a timer, records nothing new.
"""

from __future__ import annotations

from collections.abc import Sequence

from pollerd.model import Event, Target
from pollerd.store.db import Store


def record_alert(store: Store, event: Event, channels: Sequence[str | Target]) -> int:
    """Record `event` (an `alert.*`) with one pending delivery per channel (a `Target` held by
    quiet hours is due at its `quiet_until`); returns the new deliveries (0 when the id was
    already recorded, or `channels` is empty)."""
    return store.commit_page(event.store, [], [(event, list(channels))]).new_deliveries
