"""`pollerd check` as a user meets it (issue 12): durations beyond reason are config errors,
a template bomb is a bounded template error, disabled stores are not probed, and channels are
probed without a message being sent. Real `pollerd` subprocesses against the simulators."""

from __future__ import annotations

from pathlib import Path

import pytest

from pollerd.sim import WebhookSink, WooSim
from pollerd.sim.harness import pollerd, write_config


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
