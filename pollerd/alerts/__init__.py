"""Alert rules: the events pollerd raises itself, as opposed to the ones a shop's orders make.

- `base`: what a rule is (`AlertRule`: built from its config, evaluated with `Facts` — the
  store, the shop, one fact, the clock — returning `Alert`s with their subject), the registry
  (`RULES`, `register`, `rule_class`), the id scheme `<store>:<type>:<subject>` and
  `raise_alerts`, which routes alerts and records them through the one store call
  `pollerd.store.alerts.record_alert`;
- `store`: a store that keeps failing (`alert.store_failing`, `alert.store_recovered`), its
  failure episodes and back-off (`StoreWatch`);
- `channel`: a channel failing, with dead letters or held as broken (`alert.channel_failing`
  on the other channels), its failing episodes (`ChannelWatch`).

- the seller rules, from stored facts (`facts` builds them for `commit_page`; the blind
  index): `orders` (`alert.high_value`, `alert.unpaid_timeout`), `burst`
  (`alert.order_burst`), `cancellations` (`alert.cancellation_rate`), `disputes`
  (`dispute.deadline`); `seller.judge` is the one call a pass makes (evaluate, raise, settle).

Adding a rule is one module here with one `@register`ed class. `docs/alerts.md`
describes every alert event, its subject and its id.
"""

from pollerd.alerts.base import (
    PROCESS,
    RULES,
    Alert,
    AlertRule,
    Facts,
    alert_id,
    raise_alerts,
    register,
    rule_class,
)
from pollerd.alerts.burst import OrderBurst
from pollerd.alerts.cancellations import CancellationRate
from pollerd.alerts.channel import ChannelFailing, ChannelWatch
from pollerd.alerts.disputes import DisputeDeadline
from pollerd.alerts.orders import HighValue, UnpaidTimeout
from pollerd.alerts.seller import evaluate, judge, settle
from pollerd.alerts.store import StoreFailing, StoreRecovered, StoreWatch

__all__ = [
    "PROCESS",
    "RULES",
    "Alert",
    "AlertRule",
    "CancellationRate",
    "ChannelFailing",
    "ChannelWatch",
    "DisputeDeadline",
    "Facts",
    "HighValue",
    "OrderBurst",
    "StoreFailing",
    "StoreRecovered",
    "StoreWatch",
    "UnpaidTimeout",
    "alert_id",
    "evaluate",
    "judge",
    "raise_alerts",
    "register",
    "rule_class",
    "settle",
]
