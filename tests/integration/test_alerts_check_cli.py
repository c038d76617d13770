"""`pollerd check` on `[[alerts]]` tables: exit 78 naming the key (an unknown type, a threshold
without a currency, a window shorter than the poll interval), and a clean example passes."""

from __future__ import annotations

from pathlib import Path

import pytest

from pollerd_sim import WebhookSink, WooSim
from pollerd_sim.harness import pollerd, write_config


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ('type = "big_orders"', "alerts[0].type"),
        ('type = "high_value"\nthreshold = 5000', "alerts[0].threshold"),
        ('type = "order_burst"\nwindow = "30s"', "alerts[0].window"),
        ('type = "cancellation_rate"\nmax_rate = 2', "alerts[0].max_rate"),
        ('type = "unpaid_timeout"\nstores = ["nope*"]', "alerts[0].stores[0]"),
    ],
)
def test_check_names_the_alert_key(
    tmp_path: Path, sim: WooSim, sink: WebhookSink, table: str, key: str
) -> None:
    extra = "[[alerts]]\n" + table
    config = write_config(tmp_path, sim.url, sink.url, store={"interval": "1m"}, extra=extra)
    result = pollerd("check", "--config", str(config))
    assert result.returncode == 78, result.stdout + result.stderr
    assert key in result.stdout + result.stderr


def test_check_accepts_rules_routed_by_name(tmp_path: Path, sim: WooSim, sink: WebhookSink) -> None:
    extra = "\n".join(
        [
            "[[routes]]",
            'events = ["alert.high_value", "dispute.deadline"]',
            'channels = ["hook"]',
            "[[alerts]]",
            'type = "high_value"',
            "thresholds = { CNY = 5000 }",
            "[[alerts]]",
            'type = "dispute_deadline"',
        ]
    )
    config = write_config(tmp_path, sim.url, sink.url, extra=extra)
    result = pollerd("check", "--config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
