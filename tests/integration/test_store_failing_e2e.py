"""Issue 11 item 14: a store that keeps failing reaches a person, once, and so does its recovery.

`pollerd once` subprocesses (as from a systemd timer) against the WooCommerce simulator whose
API key no longer matches the configured one; alerts received by a real webhook sink."""

from __future__ import annotations

import json
from pathlib import Path

from pollerd_sim import WebhookSink, WooSim
from pollerd_sim.harness import KEY, SECRET, pollerd, write_config

ALERTS_ROUTE = '[[routes]]\nevents = ["alert.*"]\nchannels = ["hook"]\n'


def failing_config(tmp_path: Path, sim: WooSim, sink: WebhookSink, **pollerd_keys: str) -> Path:
    config = write_config(tmp_path, sim.url, sink.url, extra=ALERTS_ROUTE)
    keys = "".join(f'{k} = "{v}"\n' for k, v in pollerd_keys.items())
    text = config.read_text(encoding="utf-8").replace("[pollerd]\n", f"[pollerd]\n{keys}", 1)
    config.write_text(text, encoding="utf-8")
    return config


def status(config: Path) -> dict[str, object]:
    return json.loads(pollerd("status", "--json", "--config", str(config)).stdout)["stores"][0]


def test_a_failing_store_alerts_once_per_episode_and_when_it_heals(
    tmp_path: Path, sink: WebhookSink
) -> None:
    # The key was revoked in the shop: every request answers 401.
    with WooSim(consumer_key="ck_revoked_000000", consumer_secret="cs_revoked_0000") as sim:
        config = failing_config(tmp_path, sim, sink, store_failing_after="0s")
        first = pollerd("once", "--config", str(config))
        assert first.returncode == 1
        assert "consumer_key" in first.stderr and "ERROR" in first.stderr
        second = pollerd("once", "--config", str(config))
        assert second.returncode == 1
        # The episode is stored: the second run (another process) neither alerts nor logs the
        # same error again at ERROR.
        assert not [ln for ln in second.stderr.splitlines() if "ERROR" in ln], second.stderr
        failing = [i for i in sink.ids() if i and i.startswith("shop:alert.store_failing:")]
        assert len(failing) == 1 and failing[0].rpartition(":")[2].isdigit(), sink.ids()
        body = json.loads(sink.receipts[0].body)
        assert body["type"] == "alert.store_failing" and "consumer_key" in body["reason"]
        shown = status(config)
        assert shown["state"] == "failing" and shown["failing_since"]

        sim.auth.consumer_key, sim.auth.consumer_secret = KEY, SECRET  # the key works again
        healed = pollerd("once", "--config", str(config))
        assert healed.returncode == 0, healed.stderr
        since = failing[0].rpartition(":")[2]  # the episode: both alerts' subject
        assert sink.ids().count(f"shop:alert.store_recovered:{since}") == 1, sink.ids()
        shown = status(config)
        assert shown["state"] == "ok" and shown["failing_since"] is None


def test_a_short_failure_does_not_alert(tmp_path: Path, sink: WebhookSink) -> None:
    """Default `store_failing_after` (10 min): one failed pass and a recovery say nothing."""
    with WooSim(consumer_key="ck_revoked_000000", consumer_secret="cs_revoked_0000") as sim:
        config = failing_config(tmp_path, sim, sink)
        assert pollerd("once", "--config", str(config)).returncode == 1
        sim.auth.consumer_key, sim.auth.consumer_secret = KEY, SECRET
        assert pollerd("once", "--config", str(config)).returncode == 0
        assert not [i for i in sink.ids() if i and ":alert.store_" in i]
