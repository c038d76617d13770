"""Shared real parts: the simulated store, the webhook sink, config files, pollerd subprocesses.

Readiness is awaited on the daemon's own `READY=1` datagram (a unixgram NOTIFY_SOCKET), and
deliveries on the sink's condition variable: no sleeps as synchronisation.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pollerd.sim import WebhookSink, WooSim
from pollerd.sim.harness import (
    HOOK_SECRET,
    KEY,
    ROOT,
    SECRET,
    Daemon,
    pollerd,
    pollerd_env,
    write_config,
)

__all__ = ["HOOK_SECRET", "KEY", "ROOT", "SECRET", "pollerd", "pollerd_env", "write_config"]


@pytest.fixture
def sim() -> Iterator[WooSim]:
    with WooSim(consumer_key=KEY, consumer_secret=SECRET) as server:
        yield server


@pytest.fixture
def sink() -> Iterator[WebhookSink]:
    with WebhookSink() as server:
        yield server


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Any]:
    made: list[Daemon] = []

    def make(config: Path, **env: str) -> Daemon:
        d = Daemon(config, tmp_path, **env)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()
