"""End to end on PostgreSQL (`database = "postgresql+psycopg://…"`, issue 12 item 11): real
`pollerd once` / `run` / `deliveries` / `status` / `prune` subprocesses against the WooCommerce
simulator, alerts received by a real webhook sink, the state in a real PostgreSQL (the
`postgres` fixture: the server on 127.0.0.1:5432, a fresh schema of this test's own)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from pollerd.crypto import generate
from pollerd.store import open_store
from pollerd_sim import WebhookSink, WooSim
from pollerd_sim.harness import pollerd, pollerd_env, write_config

EMAIL = "grace.hopper@navy.example"


def test_once_run_and_the_cli_on_postgresql(
    tmp_path: Path, sim: WooSim, sink: WebhookSink, postgres: str, daemon_factory: Any
) -> None:
    key = generate()
    env = pollerd_env(TEST_PII_KEY=key)
    config = write_config(tmp_path, sim.url, sink.url)
    text = config.read_text(encoding="utf-8").replace(
        'database = "sqlite:///pollerd.db"',
        f'database = "{postgres}"\npii_key = "env:TEST_PII_KEY"',
    )
    config.write_text(text, encoding="utf-8")

    def cli(*args: str) -> Any:
        return pollerd(*args, "--config", str(config), env=env)

    card = sim.create_order(payment_method="stripe", email=EMAIL)
    bacs = sim.create_order(payment_method="bacs")
    first = cli("once")
    assert first.returncode == 0, first.stderr
    assert "new database" in first.stderr
    sim.set_status(card, "processing")
    sim.refund(card, "5.00", "damaged")
    assert cli("once").returncode == 0

    # A receiver that is down: the row is kept with its attempt, retried by hand, sent once.
    sink.set_mode("500")
    late = sim.create_order(payment_method="stripe", set_paid=True)
    assert cli("once").returncode == 1
    rows = {r["event_id"]: r for r in json.loads(cli("deliveries", "list", "--json").stdout)}
    assert rows[f"shop:{late}:order.created"]["state"] == "pending"
    assert rows[f"shop:{late}:order.created"]["attempts"] == 1
    sink.set_mode("ok")
    assert cli("deliveries", "retry", "--channel", "hook").returncode == 0
    assert cli("once").returncode == 0

    # The daemon on the same database: polls, sends, stops cleanly.
    daemon = daemon_factory(config, TEST_PII_KEY=key)
    daemon.start()
    live = sim.create_order(payment_method="stripe")
    assert sink.wait_for_ids({f"shop:{live}:order.created"}, timeout=30), daemon.output()
    assert daemon.stop() == 0, daemon.output()
    assert "Traceback" not in daemon.output()

    status = cli("status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    assert json.loads(status.stdout)["healthy"] is True
    assert cli("prune").returncode == 0

    counts = Counter(sink.ids())
    assert set(counts) == {
        f"shop:{card}:order.created",
        f"shop:{card}:order.paid",
        f"shop:{card}:order.partially_refunded",
        f"shop:{bacs}:order.created",
        f"shop:{late}:order.created",
        f"shop:{late}:order.paid",
        f"shop:{live}:order.created",
    }
    assert max(counts.values()) == 1, counts
    assert not list(tmp_path.glob("*.db*")), "no SQLite file beside a PostgreSQL config"

    # Contacts are sealed in PostgreSQL too: they open with the key, the table holds no clear.
    store = open_store(postgres, pii_key=key)
    try:
        contact = store.contact("shop", str(card))
        assert contact is not None and contact.email == EMAIL
    finally:
        store.close()
    url = make_url(postgres)
    with psycopg.connect(
        host=url.host, port=url.port, user=url.username, dbname=url.database, **url.query
    ) as conn:
        raw = b"".join(
            bytes(cell)
            for row in conn.execute("SELECT name, email, phone FROM contact")
            for cell in row
            if cell is not None
        )
    assert raw and EMAIL.encode() not in raw and b"Hopper" not in raw
