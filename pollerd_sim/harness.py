"""Run real pollerd processes against the simulators: config files, environments, and a
`pollerd run` subprocess that is ready when it says READY=1 on its notify socket.

Shared by the tests, the benchmarks and anyone scripting a reproduction; nothing here is used
by the daemon itself.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

KEY, SECRET = "ck_test_0123456789", "cs_test_abcdefghijkl"
SHOPIFY_TOKEN = "shpat_test_0123456789abcdef"
HOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def write_config(
    path: Path,
    sim_url: str,
    sink_url: str,
    *,
    store: dict[str, Any] | None = None,
    delivery: dict[str, Any] | None = None,
    extra: str = "",
    platform: str = "woocommerce",
) -> Path:
    """A config with one store named "shop" (the sim: a `WooSim`, or a `ShopSim` with
    `platform="shopify"`) routed to one webhook (the sink)."""
    if platform == "shopify":
        head = [
            'platform = "shopify"',
            'shop = "acme.myshopify.com"',
            f'base_url = "{sim_url}"',
            *([] if "client_id" in (store or {}) else ['access_token = "env:TEST_SHOPIFY_TOKEN"']),
        ]
        defaults: dict[str, Any] = {"interval": "1s"}
    else:
        head = [
            'platform = "woocommerce"',
            f'url = "{sim_url}"',
            'consumer_key = "env:TEST_WC_KEY"',
            'consumer_secret = "env:TEST_WC_SECRET"',
        ]
        defaults = {
            "interval": "1s",
            "max_requests_per_minute": 6000,
            "backfill_requests_per_minute": 6000,
        }
    store_keys = {
        **defaults,
        "start_from": "2020-01-01T00:00:00Z",
        "timeout": "5s",
        **(store or {}),
    }
    delivery_keys = {"backoff_base": "100ms", "backoff_max": "1s", **(delivery or {})}

    def toml(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(value)
        if isinstance(value, list):
            return "[" + ", ".join(toml(v) for v in value) + "]"
        return '"' + str(value) + '"'

    lines = [
        "[pollerd]",
        'database = "sqlite:///pollerd.db"',
        "[pollerd.delivery]",
        *(f"{k} = {toml(v)}" for k, v in delivery_keys.items()),
        "[[stores]]",
        'name = "shop"',
        *head,
        *(f"{k} = {toml(v)}" for k, v in store_keys.items()),
        "[[channels]]",
        'name = "hook"',
        'type = "webhook"',
        f'url = "{sink_url}"',
        'secret = "env:TEST_HOOK_SECRET"',
        'timeout = "2s"',
        "[[routes]]",
        'events = ["order.*"]',
        'channels = ["hook"]',
        extra,
    ]
    path.mkdir(parents=True, exist_ok=True)
    config = path / "pollerd.toml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return config


def pollerd_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POLLERD_", "NOTIFY_"))}
    env.update(
        TEST_WC_KEY=KEY,
        TEST_WC_SECRET=SECRET,
        TEST_SHOPIFY_TOKEN=SHOPIFY_TOKEN,
        TEST_HOOK_SECRET=HOOK_SECRET,
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def pollerd(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """`python -m pollerd <args>` as a user would run it, from `cwd` (default: the caller's):
    nothing here assumes a source checkout, so it works as well from an installed wheel."""
    return subprocess.run(
        [sys.executable, "-m", "pollerd", *args],
        capture_output=True,
        text=True,
        env=env or pollerd_env(),
        timeout=timeout,
        cwd=cwd,
    )


class Daemon:
    """A real `pollerd run` subprocess, ready when it says READY=1 on its notify socket.

    With `keep_notify=True` the socket stays open after READY=1, and `wait_notice` reads the
    datagrams that follow (WATCHDOG=1, STATUS=, STOPPING=1, RELOADING=1...); `notices` keeps
    every datagram read, one string each."""

    def __init__(self, config: Path, tmp: Path, *, keep_notify: bool = False, **env: str) -> None:
        self.config = config
        self.sock_path = tmp / f"notify-{os.getpid()}-{time.monotonic_ns()}.sock"
        self.env = pollerd_env(NOTIFY_SOCKET=str(self.sock_path), **env)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tmp / "daemon.log"
        self.starts = 0
        self.keep_notify = keep_notify
        self.notify_sock: socket.socket | None = None
        self.notices: list[str] = []

    def wait_notice(self, want: Callable[[str], bool], timeout: float = 10.0) -> str | None:
        """The next datagram for which `want` is true (earlier ones are kept in `notices`), or
        None after `timeout` seconds."""
        assert self.notify_sock is not None, "start with keep_notify=True"
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.notify_sock.settimeout(left)
            try:
                data = self.notify_sock.recv(65536).decode("utf-8")
            except TimeoutError:
                return None
            self.notices.append(data)
            if want(data):
                return data
        return None

    def start(self, timeout: float = 30.0) -> None:
        if self.sock_path.exists():
            self.sock_path.unlink()
        if self.notify_sock is not None:
            self.notify_sock.close()
            self.notify_sock = None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(self.sock_path))
        sock.settimeout(timeout)
        self.starts += 1
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pollerd", "run", "--config", str(self.config)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.config.parent,
            )
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    data = sock.recv(65536).decode("utf-8")
                except TimeoutError:
                    break
                self.notices.append(data)
                if "READY=1" in data.split("\n"):
                    if self.keep_notify:
                        self.notify_sock = sock
                    return
            raise AssertionError(f"daemon never said READY=1; log:\n{self.output()}")
        finally:
            if self.notify_sock is not sock:
                sock.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.notify_sock is not None:
            self.notify_sock.close()
            self.notify_sock = None
