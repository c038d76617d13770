"""The peers as installed programs: one virtual environment each, outside the repository, and
one `sync()` that runs the peer's own CLI once from its saved state, as a scheduler would.

Nothing here imports a peer: each runs as a subprocess of its own interpreter, so none of their
(old, pinned) dependencies can reach pollerd's environment. Versions are the ones measured
against a real WooCommerce in research/peers-measured.md, plus tap-shopify's current release.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PINS = {
    "airbyte-source-woocommerce": "0.4.12",
    "tap-woocommerce": "0.1.2",
    "tap-woocommerce-v3": "0.3.4",
    "tap-shopify": "3.13.0",
}
DEFAULT_VENV_ROOT = Path.home() / ".cache" / "pollerd-peers"
_MARKER = "# pollerd peers bench CA\n"


@dataclass
class SyncRun:
    """One run of a tool: what it emitted and what it cost."""

    pairs: list[tuple[int, str]] = field(default_factory=list)  # (order id, status) emitted
    state: Any = None
    exit_code: int = 0
    wall_s: float = 0.0
    stderr_tail: str = ""
    secret_in_log_lines: int = 0


def ensure_venv(package: str, root: Path) -> tuple[Path, float]:
    """The package's venv under `root/<package>` (created and pip-installed at the pinned version
    when missing); returns (venv, seconds spent installing: 0 when it was cached)."""
    venv = root / package
    spec = f"{package}=={PINS[package]}"
    marker = venv / ".pollerd-peers-installed"
    if marker.exists() and marker.read_text().strip() == spec:
        return venv, 0.0
    started = time.monotonic()
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", spec],
        check=True,
    )
    marker.write_text(spec + "\n")
    return venv, time.monotonic() - started


def trust_in_certifi(venv: Path, cert: Path | None) -> None:
    """Append the bench CA to the venv's certifi bundle (`None`: remove it): the Airbyte CDK
    sends through `Session.send`, which ignores REQUESTS_CA_BUNDLE and SSL_CERT_FILE (measured:
    32.6 s of retries, then 0 records); the fix measured on the real store is exactly this."""
    bundles = list(venv.glob("lib/python*/site-packages/certifi/cacert.pem"))
    for bundle in bundles:
        text = bundle.read_text()
        if _MARKER in text:
            text = text[: text.index(_MARKER)]
        bundle.write_text(text + (_MARKER + cert.read_text() if cert is not None else ""))


def _env(cert: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POLLERD_", "VIRTUAL_ENV"))}
    env.update(REQUESTS_CA_BUNDLE=str(cert), SSL_CERT_FILE=str(cert), PYTHONUNBUFFERED="1")
    return env


def run_cli(cmd: list[str], env: dict[str, str], cwd: Path, secret: str) -> tuple[SyncRun, str]:
    """Run one peer CLI; (exit code, wall time, error tail, log lines holding `secret`; stdout)."""
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)
    run = SyncRun(exit_code=proc.returncode, wall_s=round(time.monotonic() - started, 2))
    run.stderr_tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
    run.secret_in_log_lines = sum(secret in line for line in proc.stderr.splitlines())
    return run, proc.stdout


class SingerTap:
    """tap-woocommerce and tap-woocommerce-v3: `<tap> -c config --catalog catalog [-s state]`;
    records are `RECORD` lines, the bookmark is the last `STATE` line's value."""

    def __init__(self, package: str, venv: Path, work: Path, config: dict[str, Any]) -> None:
        self.package = package
        self.exe = str(venv / "bin" / package)
        self.work = work
        self.config = work / "config.json"
        self.catalog = work / "catalog.json"
        self.state = work / "state.json"
        work.mkdir(parents=True, exist_ok=True)
        self.config.write_text(json.dumps(config))
        self.secret = str(config["consumer_secret"])

    def prepare(self, cert: Path) -> None:
        out = subprocess.run(
            [self.exe, "-c", str(self.config), "--discover"],
            capture_output=True,
            text=True,
            env=_env(cert),
            check=True,
            timeout=120,
        ).stdout
        catalog = json.loads(out)
        catalog["streams"] = [s for s in catalog["streams"] if s["tap_stream_id"] == "orders"]
        for stream in catalog["streams"]:
            stream["schema"]["selected"] = True
        self.catalog.write_text(json.dumps(catalog))

    def sync(self, cert: Path) -> SyncRun:
        cmd = [self.exe, "-c", str(self.config), "--catalog", str(self.catalog)]
        if self.state.exists():
            cmd += ["-s", str(self.state)]
        run, stdout = run_cli(cmd, _env(cert), self.work, self.secret)
        for line in stdout.splitlines():
            message = json_line(line)
            if message.get("type") == "RECORD" and message.get("stream") == "orders":
                record = message["record"]
                if "order_id" in record:
                    run.pairs.append((int(record["order_id"]), str(record["status"])))
            elif message.get("type") == "STATE":
                run.state = message["value"]
        if run.state is not None:
            self.state.write_text(json.dumps(run.state))
        return run


class AirbyteSource:
    """airbyte-source-woocommerce: `source-woocommerce read --config --catalog [--state]` with a
    configured catalog of the `orders` stream, incremental on `date_modified_gmt`."""

    package = "airbyte-source-woocommerce"

    def __init__(
        self, venv: Path, work: Path, config: dict[str, Any], *, ca_in_certifi: bool = True
    ) -> None:
        self.ca_in_certifi = ca_in_certifi
        self.venv = venv
        self.exe = str(venv / "bin" / "source-woocommerce")
        self.work = work
        self.config = work / "config.json"
        self.catalog = work / "catalog.json"
        self.state = work / "state.json"
        work.mkdir(parents=True, exist_ok=True)
        self.config.write_text(json.dumps(config))
        self.secret = str(config["api_secret"])

    def prepare(self, cert: Path) -> None:
        trust_in_certifi(self.venv, cert if self.ca_in_certifi else None)
        out = subprocess.run(
            [self.exe, "discover", "--config", str(self.config)],
            capture_output=True,
            text=True,
            env=_env(cert),
            check=True,
            timeout=300,
        ).stdout
        streams = next(
            m["catalog"]["streams"]
            for m in map(json_line, out.splitlines())
            if m.get("type") == "CATALOG"
        )
        orders = next(s for s in streams if s["name"] == "orders")
        configured = {
            "streams": [
                {
                    "stream": orders,
                    "sync_mode": "incremental",
                    "destination_sync_mode": "append",
                    "cursor_field": orders.get("default_cursor_field", ["date_modified_gmt"]),
                }
            ]
        }
        self.catalog.write_text(json.dumps(configured))

    def sync(self, cert: Path) -> SyncRun:
        cmd = [self.exe, "read", "--config", str(self.config), "--catalog", str(self.catalog)]
        if self.state.exists():
            cmd += ["--state", str(self.state)]
        run, stdout = run_cli(cmd, _env(cert), self.work, self.secret)
        states: dict[str, Any] = {}
        for line in stdout.splitlines():
            message = json_line(line)
            if message.get("type") == "RECORD" and message["record"].get("stream") == "orders":
                data = message["record"]["data"]
                run.pairs.append((int(data["id"]), str(data["status"])))
            elif message.get("type") == "STATE":
                state = message["state"]
                name = state.get("stream", {}).get("stream_descriptor", {}).get("name", "")
                states[name] = state
            elif message.get("type") == "TRACE" and message.get("trace", {}).get("type") == "ERROR":
                run.stderr_tail = message["trace"]["error"].get("message", "")[:300]
        if states:
            run.state = list(states.values())
            self.state.write_text(json.dumps(run.state))
        return run


def json_line(line: str) -> dict[str, Any]:
    """One Singer/Airbyte message, or {} for anything else a peer prints to stdout."""
    if not line.startswith("{"):
        return {}
    try:
        value = json.loads(line)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
