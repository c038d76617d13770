"""Customer PII at rest, as a user runs pollerd: real `pollerd run` / `once` / `keygen` /
`rekey` / `prune` subprocesses against WooSim and ShopSim orders that carry real-looking
customer contacts. The SQLite file and its WAL are read as bytes, as a stolen disk would be."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pollerd.cli import app
from pollerd.crypto import CryptoError, KeyRing
from pollerd.model import Contact
from pollerd.store import Store
from pollerd_sim import ShopSim, WebhookSink, WooSim
from pollerd_sim.harness import KEY, SECRET, SHOPIFY_TOKEN, pollerd, pollerd_env, write_config

# first, last, email, phone: each order a different customer, one of them Chinese.
PEOPLE = [
    ("Ada", "Lovelace", "ada.lovelace@example.test", "+1 555 0100 731"),
    ("芳", "王", "wang.fang@example.cn", "+86 138 0013 8000"),
    ("Grace", "Hopper", "grace.hopper@navy.example", "+44 20 7946 0958"),
]
FULL = {email: Contact(f"{last}{first}" if last == "王" else f"{first} {last}", email, phone)
        for first, last, email, phone in PEOPLE}  # fmt: skip


def needles() -> list[bytes]:
    """Every form a fixture contact could take in clear: email and its local part, phone as
    given and digits only, full name and the family name (events keep only "Ada L.", "王*")."""
    found: list[bytes] = []
    for first, last, email, phone in PEOPLE:
        digits = re.sub(r"\D", "", phone)
        full = f"{last}{first}" if last == "王" else f"{first} {last}"
        found += [email, email.split("@")[0], phone, digits, full]
        found += [last] if last != "王" else []
    return [n.encode() for n in found]


def in_clear(data: bytes) -> list[str]:
    return [n.decode() for n in needles() if n in data]


def file_bytes(db: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (db, Path(f"{db}-wal")) if p.exists())


@contextmanager
def simulator(platform: str) -> Iterator[Any]:
    if platform == "shopify":
        with ShopSim(access_token=SHOPIFY_TOKEN) as shop:
            yield shop
    else:
        with WooSim(consumer_key=KEY, consumer_secret=SECRET) as woo:
            yield woo


def paid_order(sim: Any, person: tuple[str, str, str, str]) -> int:
    first, last, email, phone = person
    who = {"first_name": first, "last_name": last, "email": email, "phone": phone}
    if isinstance(sim, ShopSim):
        return sim.create_order(financial="PAID", **who)
    return sim.create_order(payment_method="stripe", set_paid=True, **who)


def configure(config: Path, **pollerd_keys: str) -> Path:
    """Add `[pollerd]` keys to a harness config (write_config has no parameter for them)."""
    text = config.read_text(encoding="utf-8")
    extra = "".join(f'{k} = "{v}"\n' for k, v in pollerd_keys.items())
    config.write_text(text.replace("[pollerd]\n", "[pollerd]\n" + extra, 1), encoding="utf-8")
    return config


def keygen(*args: str) -> str:
    """`pollerd keygen` in process (typer's runner): it reads no config and touches no file."""
    result = CliRunner().invoke(app, ["keygen", *args])
    assert result.exit_code == 0, result.stderr
    return result.stdout.strip()


def once(config: Path, key: str) -> None:
    result = pollerd("once", "--config", str(config), env=pollerd_env(TEST_PII_KEY=key))
    assert result.returncode == 0, result.stderr


def sealed_store(tmp: Path, key: str) -> Store:
    return Store(f"sqlite:///{tmp / 'pollerd.db'}", pii=KeyRing.parse(key))


# --- nothing in clear on disk, with and without pii_key ------------------------------------------


@pytest.mark.parametrize(
    ("platform", "sealed"),
    [("shopify", True), ("shopify", False), ("woocommerce", False)],
    ids=["shopify-pii-key", "shopify-no-pii-key", "woocommerce-no-pii-key"],
)  # WooCommerce with pii_key: test_rotation_with_rekey_through_the_cli (through `once`)
def test_no_customer_contact_in_clear_in_the_database_or_its_wal(
    tmp_path: Path, sink: WebhookSink, daemon_factory: Any, platform: str, sealed: bool
) -> None:
    db = tmp_path / "pollerd.db"
    key = keygen("--id", "4")
    with simulator(platform) as sim:
        ids = [paid_order(sim, person) for person in PEOPLE]
        config = write_config(tmp_path, sim.url, sink.url, platform=platform)
        if sealed:
            configure(config, pii_key="env:TEST_PII_KEY")
        daemon = daemon_factory(config, TEST_PII_KEY=key)
        daemon.start()
        assert sink.wait_for(2 * len(PEOPLE), timeout=30), daemon.output()  # created + paid
        assert Path(f"{db}-wal").stat().st_size > 0  # read while the daemon writes through it
        assert in_clear(file_bytes(db)) == []
        assert daemon.stop() == 0
    assert in_clear(file_bytes(db)) == []
    assert b"a***@example.test" in db.read_bytes()  # the masked events are there, not hidden
    assert in_clear(b"".join(r.body for r in sink.receipts)) == []  # masked on the wire too
    assert in_clear(daemon.output().encode()) == []
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT order_id, key_id FROM contact ORDER BY id").fetchall()
    if not sealed:
        assert rows == []
        return
    assert rows == [(str(i), 4) for i in ids]
    store = sealed_store(tmp_path, key)
    assert [store.contact("shop", str(i)) for i in ids] == list(FULL.values())
    with sqlite3.connect(db) as conn:  # a thief moves Ada's sealed email onto Wang Fang's order
        conn.execute(
            "UPDATE contact SET email = (SELECT email FROM contact WHERE order_id = ?) "
            "WHERE order_id = ?",
            (str(ids[0]), str(ids[1])),
        )
    with pytest.raises(CryptoError, match=f"contact.email of shop:{ids[1]} does not open"):
        store.contact("shop", str(ids[1]))
    assert store.contact("shop", str(ids[0])) == FULL[PEOPLE[0][2]]
    store.close()


# --- retention -----------------------------------------------------------------------------------


def test_once_and_prune_apply_retention(tmp_path: Path, sim: WooSim, sink: WebhookSink) -> None:
    db = tmp_path / "pollerd.db"
    config = configure(write_config(tmp_path, sim.url, sink.url), pii_key="env:TEST_PII_KEY")
    env = pollerd_env(TEST_PII_KEY=keygen())
    paid_order(sim, PEOPLE[0])
    assert pollerd("once", "--config", str(config), env=env).returncode == 0

    def kept() -> tuple[int, int, int]:
        with sqlite3.connect(db) as conn:
            bodies = conn.execute("SELECT COUNT(*) FROM delivery WHERE body IS NOT NULL")
            contacts = conn.execute("SELECT COUNT(*) FROM contact")
            events = conn.execute("SELECT COUNT(*) FROM event")
            return bodies.fetchone()[0], contacts.fetchone()[0], events.fetchone()[0]

    assert kept() == (2, 1, 2)  # within the default 72 h: bodies and the contact stay
    configure(config, retention="0s")
    pruned = pollerd("prune", "--config", str(config), env=env)
    assert pruned.returncode == 0, pruned.stderr
    assert "pruned 2 message bodies and 1 sealed contacts older than 0 h" in pruned.stdout
    assert kept() == (0, 0, 2)  # event metadata stays
    paid_order(sim, PEOPLE[1])
    assert pollerd("once", "--config", str(config), env=env).returncode == 0
    assert len(sink.receipts) == 4 and kept() == (0, 0, 4)  # `once` pruned at its end


# --- keygen and rotation -------------------------------------------------------------------------


def test_keygen_prints_a_fresh_key_and_how_to_configure_it() -> None:
    result = pollerd("keygen", "--id", "3")  # once as a real process: stdout is the key alone
    assert result.returncode == 0
    assert re.fullmatch(r"3:[A-Za-z0-9+/]{43}=\n", result.stdout)  # stdout: the key alone
    KeyRing.parse(result.stdout)
    assert "pii_key" in result.stderr and "pollerd rekey" in result.stderr
    assert "--id 4" in result.stderr  # the next id, for a rotation
    assert result.stdout.strip()[2:] not in result.stderr
    assert keygen("--id", "3") != result.stdout.strip()
    refused = CliRunner().invoke(app, ["keygen", "--id", "0"])
    assert refused.exit_code == 2 and refused.stdout == ""


def test_rotation_with_rekey_through_the_cli(
    tmp_path: Path, sim: WooSim, sink: WebhookSink
) -> None:
    config = configure(write_config(tmp_path, sim.url, sink.url), pii_key="env:TEST_PII_KEY")
    old, new = keygen("--id", "1"), keygen("--id", "2")
    ids = [paid_order(sim, person) for person in PEOPLE]
    once(config, old)
    assert in_clear(file_bytes(tmp_path / "pollerd.db")) == []

    def rekey(ring: str, *args: str) -> Any:
        return pollerd("rekey", "--config", str(config), *args, env=pollerd_env(TEST_PII_KEY=ring))

    rotated = rekey(f"{new} {old}", "--batch", "2")
    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout.splitlines() == [
        "re-sealing with key 2; left under old keys: key 1: 3 rows",
        "re-sealed 2; left under old keys: key 1: 1 rows",
        "re-sealed 3; left under old keys: none",
        "done: 3 re-sealed with key 2; key(s) 1 can be dropped from pii_key",
    ]
    assert rekey(new).stdout.strip() == "nothing to re-seal: every sealed contact uses key 2"
    store = sealed_store(tmp_path, new)  # the old key is no longer needed to open anything
    assert [store.contact("shop", str(i)) for i in ids] == list(FULL.values())
    store.close()

    # A row that does not open is named (not shown), the others still rotate, exit 1.
    more = [paid_order(sim, person) for person in PEOPLE[:2]]
    once(config, old)
    with sqlite3.connect(tmp_path / "pollerd.db") as conn:
        assert conn.execute("SELECT key_id FROM contact ORDER BY id").fetchall() == [
            (2,), (2,), (2,), (1,), (1,)
        ]  # fmt: skip
        conn.execute(
            "UPDATE contact SET phone = (SELECT phone FROM contact WHERE order_id = ?) "
            "WHERE order_id = ?",
            (str(more[1]), str(more[0])),
        )
    failed = rekey(f"{new} {old}")
    assert failed.returncode == 1
    assert f"contact.phone of shop:{more[0]} does not open" in failed.stderr
    assert "left under old keys: key 1: 1 rows" in failed.stdout
    assert in_clear((failed.stdout + failed.stderr).encode()) == []
    dropped = rekey(new)  # the old key removed too early: the message says what to do
    assert dropped.returncode == 1 and "which pii_key no longer holds" in dropped.stderr


def test_rekey_without_pii_key_is_a_config_error(
    tmp_path: Path, sim: WooSim, sink: WebhookSink
) -> None:
    config = write_config(tmp_path, sim.url, sink.url)
    result = pollerd("rekey", "--config", str(config))
    assert result.returncode == 78 and "pollerd.pii_key: not set" in result.stderr
