"""The one entry point the sync calls each pass (and `pollerd once`, and later `alerts test`):
every `[[alerts]]` rule that applies to a store, evaluated from its stored facts.

`evaluate` returns only alerts not recorded yet; `raise_alerts` (base.py) then routes and
records them, and recording is idempotent by id, so calling it twice, or after a crash between
evaluating and recording, raises nothing twice. The cost per pass is one indexed query per
rule (bench/rules.py measures it).
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import Any

from pollerd.alerts.base import RULES, Alert, Facts
from pollerd.config.alerts import AlertConfig
from pollerd.errors import ConfigError
from pollerd.store import Store


def rule_for(config: AlertConfig) -> Any:
    """The rule an `[[alerts]]` table turns on, built from it."""
    for cls in RULES.values():
        if getattr(cls, "table", None) == config.type:
            return cls(config)
    raise ConfigError("alerts", f"no alert rule named {config.type!r}")


def applies(config: AlertConfig, store_name: str) -> bool:
    return any(fnmatchcase(store_name, glob) for glob in config.stores)


def evaluate(
    store: Store,
    alerts: Sequence[AlertConfig],
    store_name: str,
    platform: str,
    now: float,
) -> list[Alert]:
    """The new alerts of one store at `now` (epoch seconds), rule by rule in config order."""
    facts: Facts[None] = Facts(store, store_name, platform, None, now)
    found: dict[str, Alert] = {}
    for config in alerts:
        if applies(config, store_name):
            for alert in rule_for(config).evaluate(facts):
                found.setdefault(alert.id, alert)
    done = store.recorded(found)
    return [alert for key, alert in found.items() if key not in done]
