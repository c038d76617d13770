"""What a new user trips on in the CLI (issue 12 item 13), through the real entry point:
help that reads in 80 columns, errors for ids and channels that do not exist, a way to see a
message without sending it, a config to start from, and times that read the same everywhere."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Sink

from pollerd_sim import WebhookSink, WooSim
from pollerd_sim.harness import pollerd, pollerd_env, write_config
from tests.support import ROOT


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_help_is_plain_text_with_h_and_every_option_explained() -> None:
    for command in ([], ["deliveries", "list"], ["unsubscribes", "list"], ["keygen"]):
        result = pollerd(*command, "-h", env=pollerd_env(COLUMNS="80"))
        assert result.returncode == 0, (command, result.stderr)
        assert "<bool>" not in result.stdout, command
        assert max(map(len, result.stdout.splitlines())) <= 80, command
    listing = pollerd("deliveries", "list", "--help").stdout
    assert re.search(r"--limit \S+\s+\S", listing), listing  # a help text after the type
    assert re.search(r"--json\s+\S", listing), listing
    assert re.search(r"--json\s+\S", pollerd("unsubscribes", "list", "--help").stdout)
    # Rich markup ate "[pollerd]" and left two spaces: "a new AES-256-GCM key for  pii_key".
    keygen = pollerd("keygen", "--help").stdout
    assert "[pollerd] pii_key" in keygen and "for  pii_key" not in keygen, keygen


def test_shell_completion_is_offered() -> None:
    result = pollerd("--show-completion", "bash")
    assert result.returncode == 0, result.stderr
    assert "complete" in result.stdout and "pollerd" in result.stdout.lower()


def test_retry_of_an_unknown_id_or_channel_is_a_usage_error(
    tmp_path: Path, sim: WooSim, sink: WebhookSink
) -> None:
    config = write_config(tmp_path, sim.url, sink.url)
    assert pollerd("once", "--config", str(config)).returncode == 0
    unknown = pollerd("deliveries", "retry", "999999", "--config", str(config))
    assert unknown.returncode == 2, unknown.stdout + unknown.stderr
    assert "999999" in unknown.stderr and "deliveries list" in unknown.stderr
    nope = pollerd("deliveries", "retry", "--channel", "nope", "--config", str(config))
    assert nope.returncode == 2, nope.stdout + nope.stderr
    assert "nope" in nope.stderr and "hook" in nope.stderr  # the channels that exist
    assert pollerd("deliveries", "retry", "--config", str(config)).returncode == 0  # no dead: fine


def test_deliveries_list_shows_times_and_its_json_uses_iso_8601(
    tmp_path: Path, sim: WooSim, sink: WebhookSink
) -> None:
    config = write_config(tmp_path, sim.url, sink.url)
    sim.create_order(payment_method="stripe", set_paid=True)
    assert pollerd("once", "--config", str(config)).returncode == 0
    rows = json.loads(pollerd("deliveries", "list", "--json", "-c", str(config)).stdout)
    assert rows and all(isinstance(r["created_at"], str) for r in rows), rows
    for row in rows:
        for key in ("created_at", "sent_at", "next_at"):
            if row[key] is not None:
                assert datetime.fromisoformat(row[key]).utcoffset() is not None, (key, row)
    human = pollerd("deliveries", "list", "-c", str(config)).stdout
    stamp = rows[0]["created_at"][:16].replace("T", " ")  # to the minute, in UTC
    assert stamp in human, human


def test_status_reads_in_80_columns_through_a_pipe(
    tmp_path: Path, sim: WooSim, sink: WebhookSink
) -> None:
    config = write_config(tmp_path, sim.url, sink.url)
    assert pollerd("once", "--config", str(config)).returncode == 0
    write_config(tmp_path, f"http://127.0.0.1:{_free_port()}", sink.url)  # same file
    pollerd("once", "--config", str(config))  # fails: nothing listens there
    result = pollerd("status", "--config", str(config), env=pollerd_env(COLUMNS="80"))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert "woocommerce" in result.stdout and "woocom…" not in result.stdout, result.stdout
    assert len(lines) <= 20, result.stdout
    assert max(map(len, lines)) <= 80
    said = " ".join(result.stdout.split())  # the error in full, wrapped at the width
    assert "! shop: failing since" in said and "connection refused" in said, said


def test_render_prints_what_a_channel_would_send_without_sending(
    tmp_path: Path, sim: WooSim, sink: WebhookSink
) -> None:
    config = write_config(tmp_path, sim.url, sink.url)
    result = pollerd("render", "--event", "order.paid", "--channel", "hook", "-c", str(config))
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["type"] == "order.paid" and body["order"]["id"] == "1001"
    assert sink.receipts == []
    assert not (tmp_path / "pollerd.db").exists()  # nothing queued either
    bad = pollerd("render", "--event", "order.payed", "--channel", "hook", "-c", str(config))
    assert bad.returncode == 2 and "order.paid" in bad.stderr, bad.stderr
    nope = pollerd("render", "--event", "order.paid", "--channel", "nope", "-c", str(config))
    assert nope.returncode == 2 and "hook" in nope.stderr, nope.stderr


def test_init_writes_the_commented_example_config(tmp_path: Path) -> None:
    target = tmp_path / "etc" / "pollerd.toml"
    missing = pollerd("status", "--config", str(target))
    assert missing.returncode == 78 and "pollerd init PATH" in missing.stderr, missing.stderr
    result = pollerd("init", str(target))
    assert result.returncode == 0, result.stderr
    text = target.read_text(encoding="utf-8")
    assert text == (ROOT / "config.example.toml").read_text(encoding="utf-8")
    tomllib.loads(text)
    assert "pollerd check --config" in result.stdout
    again = pollerd("init", str(target))
    assert again.returncode == 1 and "exists" in again.stderr
    assert target.read_text(encoding="utf-8") == text


def test_the_package_ships_the_example_config(tmp_path: Path) -> None:
    """What a wheel holds of a pure-Python package is what `build_py` copies (the venv has no
    `wheel`, so the wheel itself is not built here)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "config.example.toml"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "pollerd", src / "pollerd", symlinks=True)
    built = subprocess.run(
        [sys.executable, "-c", "import setuptools; setuptools.setup()", "-q", "build_py",
         "--build-lib", str(tmp_path / "lib")],
        cwd=src, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    shipped = tmp_path / "lib" / "pollerd" / "config.example.toml"
    assert not shipped.is_symlink()
    assert shipped.read_text(encoding="utf-8") == (ROOT / "config.example.toml").read_text(
        encoding="utf-8"
    )


@pytest.fixture
def smtp() -> Iterator[int]:
    port = _free_port()
    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def test_notify_test_by_email_says_accepted_once(
    tmp_path: Path, sim: WooSim, sink: WebhookSink, smtp: int
) -> None:
    extra = "\n".join(
        [
            "[[channels]]",
            'name = "mail"',
            'type = "email"',
            'host = "127.0.0.1"',
            f"port = {smtp}",
            'security = "none"',
            'sender = "pollerd <alerts@example.com>"',
            'to = ["ops@example.com", "owner@example.com"]',
        ]
    )
    config = write_config(tmp_path, sim.url, sink.url, extra=extra)
    result = pollerd("notify-test", "--channel", "mail", "--config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "accepted accepted" not in result.stdout, result.stdout
    assert "accepted for 2 recipients" in result.stdout, result.stdout
    shown = pollerd("render", "--channel", "mail", "--event", "order.refunded", "-c", str(config))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("Subject: [shop] ") and "=?utf-8?" not in shown.stdout
    assert "To: ops@example.com, owner@example.com" in shown.stdout and "$59.90" in shown.stdout
    raw = pollerd("render", "--channel", "mail", "--raw", "-c", str(config)).stdout
    assert "MIME-Version: 1.0" in raw and "Content-Transfer-Encoding" in raw


def test_a_reload_of_a_found_config_does_not_blame_config_option(
    tmp_path: Path, sim: WooSim, sink: WebhookSink
) -> None:
    """`pollerd run` in a folder with ./pollerd.toml (no --config), the file moved away, then
    SIGHUP: the refusal said "(named by --config)", an option nobody gave."""
    config = write_config(tmp_path, sim.url, sink.url)
    sock_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(sock_path))
        sock.settimeout(30)
        with (tmp_path / "run.log").open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "pollerd", "run"],
                cwd=tmp_path,
                env=pollerd_env(NOTIFY_SOCKET=str(sock_path)),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            while "READY=1" not in sock.recv(65536).decode().split("\n"):
                pass
            config.rename(tmp_path / "moved-away.toml")
            proc.send_signal(signal.SIGHUP)
            seen = ""
            while "reload" not in seen.lower() or "READY=1" not in seen.split("\n"):
                seen = sock.recv(65536).decode()  # RELOADING=1, then STATUS=... READY=1
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
    out = (tmp_path / "run.log").read_text(errors="replace")
    assert "reload refused" in out, out
    assert "named by --config" not in out and "the file this pollerd started with" in out, out
