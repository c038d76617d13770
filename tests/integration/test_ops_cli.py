"""Operator safety through the real `pollerd` entry point (issue 11 items 4-8, 18): start
points, the database path, test sends, the demo on real channels, key rotation and local times.
"""

from __future__ import annotations

import re
import signal
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pollerd.crypto import generate
from pollerd.store import Store
from pollerd_sim import WebhookSink, WooSim
from pollerd_sim.harness import HOOK_SECRET, pollerd, pollerd_env, write_config
from tests.support import ROOT


def test_notify_test_ids_never_collide_with_a_real_order(
    tmp_path: Path, sim: WooSim, sink: WebhookSink
) -> None:
    config = write_config(tmp_path, sim.url, sink.url)
    for _ in range(2):
        result = pollerd("notify-test", "--channel", "hook", "--config", str(config))
        assert result.returncode == 0, result.stderr
    assert sink.wait_for(2, timeout=10)
    bodies = [receipt.json() for receipt in sink.receipts]
    ids = [body["id"] for body in bodies]
    assert len(set(ids)) == 2, ids  # a receiver deduping on ids shows both test sends
    for body, receipt in zip(bodies, sink.receipts, strict=True):
        assert body["test"] is True
        order_id = body["order"]["id"]
        assert re.fullmatch(r"notify-test-\d{8}T\d{6}Z-[0-9a-f]{6}", order_id), order_id
        assert body["id"] == f"shop:{order_id}:order.paid"
        assert receipt.headers["webhook-id"] == body["id"]


def _shanghai(config: Path) -> None:
    """The seller's zone, as a Chinese shop writes it."""
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("[pollerd]\n", '[pollerd]\ntimezone = "Asia/Shanghai"\n', 1))


def test_backfill_reads_a_date_in_the_configured_zone_and_says_so(
    tmp_path: Path, sim: WooSim, sink: WebhookSink
) -> None:
    config = write_config(tmp_path, sim.url, sink.url)
    _shanghai(config)
    result = pollerd(
        "backfill", "--store", "shop", "--since", "2026-11-01", "--until", "2026-11-02T12:00",
        "--config", str(config),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    assert "2026-11-01 00:00:00 Asia/Shanghai (2026-10-31T16:00:00Z)" in out, out
    assert "2026-11-02 12:00:00 Asia/Shanghai (2026-11-02T04:00:00Z)" in out, out
    asked = {a for r in sim.request_log for a in r["params"].get("modified_after", [])}
    assert asked == {"2026-10-31T15:59:59"}, asked  # modified_after is a strict >
    # An explicit offset is taken as written.
    result = pollerd(
        "backfill", "--store", "shop", "--since", "2026-11-01T00:00:00Z", "--config", str(config)
    )
    assert result.returncode == 0, result.stderr
    assert "2026-11-01 08:00:00 Asia/Shanghai (2026-11-01T00:00:00Z)" in result.stdout


def test_a_misspelt_database_folder_is_refused_not_created(
    tmp_path: Path, sim: WooSim, sink: WebhookSink
) -> None:
    config = write_config(tmp_path, sim.url, sink.url)
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("sqlite:///pollerd.db", "sqlite:///sate/pollerd.db"))
    for command in ("once", "status", "run"):
        result = pollerd(command, "--config", str(config), timeout=60)
        assert result.returncode == 78, (command, result.stdout, result.stderr)
        assert "pollerd.database" in result.stderr and str(tmp_path / "sate") in result.stderr
        assert "does not exist" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "sate").exists()


def test_a_new_database_is_announced_once(tmp_path: Path, sim: WooSim, sink: WebhookSink) -> None:
    config = write_config(tmp_path, sim.url, sink.url)
    looked = pollerd("status", "--config", str(config))  # a newcomer looks first
    assert "new database" in looked.stderr, looked.stderr
    first = pollerd("once", "--config", str(config))
    assert first.returncode == 0, first.stderr
    assert "WARNING" in first.stderr and "new database" in first.stderr, first.stderr
    assert str(tmp_path / "pollerd.db") in first.stderr
    assert "check [pollerd] database" in first.stderr
    again = pollerd("once", "--config", str(config))
    assert again.returncode == 0 and "new database" not in again.stderr, again.stderr


class _Inbox:
    """A loopback SMTP server's handler that keeps what it accepted."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return "250 Message accepted"


def _accept_login(*_: Any) -> Any:
    from aiosmtpd.smtp import AuthResult

    return AuthResult(success=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_demo_runs_on_the_example_config_and_marks_every_event_a_test(
    tmp_path: Path, sink: WebhookSink
) -> None:
    """`pollerd demo --config` on a copy of config.example.toml (its routes filter stores that
    the demo does not have, and skip test orders): the demo's orders reach the configured
    webhook and mailbox, every one marked `test: true`."""
    from aiosmtpd.controller import Controller

    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    text = text.replace('"https://hooks.example.com/pollerd"', f'"{sink.url}"')
    inbox, port = _Inbox(), _free_port()
    text = text.replace('host = "smtp.example.com"', 'host = "127.0.0.1"')
    text = text.replace("port = 587", f"port = {port}").replace(
        'security = "starttls"', 'security = "none"'
    )
    config = tmp_path / "pollerd.toml"
    config.write_text(text, encoding="utf-8")
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "smtp_password").write_text("smtp-demo-password")
    env = pollerd_env(
        HOOK_SECRET=HOOK_SECRET, WC_KEY="ck_unused", WC_SECRET="cs_unused",
        SHOPIFY_TOKEN="shpat_unused", POLLERD_PII_KEY=generate(1),
        CREDENTIALS_DIRECTORY=str(credentials),
    )  # fmt: skip
    smtp = Controller(
        inbox, hostname="127.0.0.1", port=port, auth_require_tls=False,
        authenticator=_accept_login,
    )  # fmt: skip
    smtp.start()
    try:
        result = pollerd(
            "demo", "--config", str(config), "--seconds", "8", "--rate", "600", env=env
        )
    finally:
        smtp.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    bodies = [receipt.json() for receipt in sink.receipts]
    assert bodies, result.stdout + result.stderr
    assert {body["store"] for body in bodies} <= {"demo-store", "demo-shopify"}
    assert all(body["test"] is True for body in bodies), [b["id"] for b in bodies if not b["test"]]
    assert inbox.messages, result.stderr
    assert "[demo-store]" in result.stdout  # the demo's own console still prints


def test_rekey_refuses_to_drop_a_key_the_running_daemon_still_seals_with(
    tmp_path: Path, sim: WooSim, sink: WebhookSink, daemon_factory: Any
) -> None:
    """keygen's rotation as a user follows it: new key first, `rekey` while the daemon still
    runs with the old ring. The old key is not droppable until the daemon restarts."""
    old, new = generate(1), generate(2)
    ring = tmp_path / "pii_key"
    ring.write_text(old)
    ring.chmod(0o600)
    config = write_config(tmp_path, sim.url, sink.url, store={"start_from": "now"})
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("[pollerd]\n", f'[pollerd]\npii_key = "file:{ring}"\n', 1))
    daemon = daemon_factory(config)
    daemon.start()
    sim.create_order(payment_method="stripe", set_paid=True, email="ada@example.test")
    assert sink.wait_for(2, timeout=30), daemon.output()
    ring.write_text(f"{new} {old}")  # step 2 of the rotation; the daemon is not restarted
    early = pollerd("rekey", "--config", str(config))
    assert early.returncode == 1, early.stdout + early.stderr
    assert "can be dropped" not in early.stdout, early.stdout
    assert f"pid {daemon.proc.pid}" in early.stderr and "still seals" in early.stderr
    assert "key 1" in early.stderr and "restart" in early.stderr, early.stderr
    assert daemon.stop() == 0
    daemon.start()  # the restart the instructions ask for: now it seals with key 2
    sim.create_order(payment_method="stripe", set_paid=True, email="grace@example.test")
    assert sink.wait_for(4, timeout=30), daemon.output()
    done = pollerd("rekey", "--config", str(config))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "key(s) 1 can be dropped" in done.stdout, done.stdout
    assert daemon.stop() == 0
    help_text = pollerd("keygen", "--id", "2").stderr
    assert "restart pollerd" in help_text and "reload pollerd" not in help_text


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_future_start_from_is_refused_at_load(
    tmp_path: Path, sim: WooSim, sink: WebhookSink
) -> None:
    future = _iso(datetime.now(UTC) + timedelta(days=30))
    config = write_config(tmp_path, sim.url, sink.url, store={"start_from": future})
    for command in ("check", "status", "once"):
        result = pollerd(command, "--config", str(config))
        assert result.returncode == 78, (command, result.stdout, result.stderr)
        assert "stores[0].start_from" in result.stderr and "future" in result.stderr
        assert '"now"' in result.stderr  # the fix


def test_a_changed_start_from_warns_and_cursor_set_moves_the_start_point(
    tmp_path: Path, sim: WooSim, sink: WebhookSink, daemon_factory: Any
) -> None:
    """The issue's case: a cursor stored with a start point in the future hides every alert;
    correcting start_from changes nothing but now says so, and `cursor set` moves it."""
    config = write_config(tmp_path, sim.url, sink.url, store={"start_from": "now"})
    before = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=2)
    store = Store(f"sqlite:///{tmp_path / 'pollerd.db'}")  # what an older pollerd left behind
    store.init_cursor("shop", before + timedelta(days=30))
    store.close()
    order = sim.create_order(payment_method="stripe", set_paid=True)
    assert pollerd("once", "--config", str(config)).returncode == 0
    assert not sink.receipts  # hidden: the start point is in the future
    status = pollerd("status", "--json", "--config", str(config))
    assert status.returncode == 1 and '"start point in the future"' in status.stdout

    # start_from now names a real moment: it differs from the stored one, so say so.
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace('start_from = "now"', f'start_from = "{_iso(before)}"'))
    for command in ("once", "check"):
        warned = pollerd(command, "--config", str(config))
        out = warned.stdout + warned.stderr
        assert "start_from" in out and "cursor set --store shop" in out, (command, out)
    assert warned.returncode == 1 and "is in the future" in warned.stdout  # check
    assert not sink.receipts

    shown = pollerd("cursor", "show", "--store", "shop", "--config", str(config))
    assert shown.returncode == 0 and _iso(before + timedelta(days=30)) in shown.stdout
    daemon = daemon_factory(config)
    daemon.start()
    try:
        busy = pollerd(
            "cursor", "set", "--store", "shop", "--start-from", _iso(before), "-c", str(config)
        )
        assert busy.returncode == 75 and "stop" in busy.stderr, busy.stderr
    finally:
        assert daemon.stop() == 0
    future = _iso(datetime.now(UTC) + timedelta(days=1))
    refused = pollerd("cursor", "set", "--store", "shop", "--start-from", future, "-c", str(config))
    assert refused.returncode == 2 and "future" in refused.stderr
    moved = pollerd(
        "cursor", "set", "--store", "shop", "--start-from", _iso(before), "-c", str(config)
    )
    assert moved.returncode == 0, moved.stderr
    assert f"{_iso(before + timedelta(days=30))}Z" not in moved.stdout  # one Z, from describe
    assert "→" in moved.stdout and "backfill" in moved.stdout, moved.stdout
    again = pollerd("once", "--config", str(config))
    assert again.returncode == 0 and "cursor set" not in again.stderr, again.stderr
    assert sink.wait_for(2, timeout=10)
    assert {f"shop:{order}:order.created", f"shop:{order}:order.paid"} == set(sink.ids())


def test_a_reload_that_changes_start_from_warns_once(
    tmp_path: Path, sim: WooSim, sink: WebhookSink, daemon_factory: Any
) -> None:
    first = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    config = write_config(tmp_path, sim.url, sink.url, store={"start_from": _iso(first)})
    daemon = daemon_factory(config, keep_notify=True)
    daemon.start()
    try:
        assert "cursor set" not in daemon.output()
        text = config.read_text(encoding="utf-8")
        later = _iso(first + timedelta(hours=1))
        config.write_text(text.replace(_iso(first), later))
        daemon.proc.send_signal(signal.SIGHUP)
        ready = daemon.wait_notice(lambda n: "READY=1" in n.split("\n"), timeout=30)
        assert ready is not None, daemon.output()
        sim.create_order(payment_method="stripe", set_paid=True)
        assert sink.wait_for(2, timeout=30), daemon.output()  # it still polls, from the cursor
    finally:
        assert daemon.stop() == 0
    out = daemon.output()
    assert out.count(f"cursor set --store shop --start-from {later}") == 1, out
