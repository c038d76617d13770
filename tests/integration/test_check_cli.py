"""`pollerd check` as a user meets it (issue 12): durations beyond reason are config errors,
a template bomb is a bounded template error, disabled stores are not probed, and channels are
probed without a message being sent. Real `pollerd` subprocesses against the simulators."""

from __future__ import annotations

from pathlib import Path

import pytest

from pollerd_sim import WebhookSink, WooSim
from pollerd_sim.harness import pollerd, write_config


@pytest.mark.parametrize(
    ("where", "key", "value", "bound"),
    [
        ("store", "interval", "100000000d", "at most 3650d"),
        ("store", "interval", "2d", "at most 1d"),
        ("pollerd", "retention", "99999999999d", "at most 3650d"),
    ],
)
def test_a_duration_beyond_reason_is_a_config_error(
    tmp_path: Path, sim: WooSim, sink: WebhookSink, where: str, key: str, value: str, bound: str
) -> None:
    if where == "store":
        config = write_config(tmp_path, sim.url, sink.url, store={key: value})
    else:
        config = write_config(tmp_path, sim.url, sink.url)
        text = config.read_text(encoding="utf-8")
        config.write_text(text.replace("[pollerd]\n", f'[pollerd]\n{key} = "{value}"\n', 1))
    for command in ("check", "once"):
        result = pollerd(command, "--config", str(config))
        assert result.returncode == 78, (command, result.stdout, result.stderr)
        name = f"stores[0].{key}" if where == "store" else f"pollerd.{key}"
        assert f"config: {name}: must be {bound} (" in result.stderr
        assert "Traceback" not in result.stderr
    assert not sim.request_log


DISABLED_AND_DEAD_HOOK = """
[[stores]]
name = "old-shop"
platform = "woocommerce"
url = "http://127.0.0.1:9"
consumer_key = "ck_old"
consumer_secret = "cs_old"
enabled = false

[[channels]]
name = "gone"
type = "webhook"
url = "http://127.0.0.1:9/hook"
secret = "env:TEST_HOOK_SECRET"

[[channels]]
name = "out"
type = "console"
"""


def test_check_skips_disabled_stores_and_probes_channels_without_sending(
    tmp_path: Path, sim: WooSim, sink: WebhookSink
) -> None:
    """Issue 12 item 9: `check` failed on a disabled store (which `run` never polls) and never
    probed a channel. Now: the disabled store is named and skipped, the sink's host is reached
    (TCP, no request: nothing is delivered), a dead host fails with its host:port."""
    config = write_config(tmp_path, sim.url, sink.url, extra=DISABLED_AND_DEAD_HOOK)
    result = pollerd("check", "--config", str(config))
    lines = result.stdout.splitlines()
    assert "- old-shop: disabled (enabled = false): not probed" in lines, result.stdout
    sink_at = sink.url.split("//")[1].split("/")[0]
    assert f"✓ channel hook (webhook): {sink_at} reachable, nothing sent" in lines
    assert any(line.startswith("✗ channel gone (webhook): 127.0.0.1:9: ") for line in lines)
    assert any(line.startswith("- channel out (console): not probed") for line in lines)
    assert result.returncode == 1, result.stdout + result.stderr  # the dead hook
    assert sink.attempts == []  # connected to, never posted to
    assert "Traceback" not in result.stderr

    config.write_text(config.read_text(encoding="utf-8").replace(
        'url = "http://127.0.0.1:9/hook"', f'url = "{sink.url}"'), encoding="utf-8")  # fmt: skip
    result = pollerd("check", "--config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
