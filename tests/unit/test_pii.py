"""Customer PII at rest: the normalisers capture the full contact beside the masked fields, the
store seals it (or drops it without `pii_key`), retention prunes bodies and contacts, and
`rekey` rotates keys. Real SQLite files, real recorded payloads; the file bytes are grepped."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from pollerd.config import ConfigErrors, load
from pollerd.crypto import CryptoError, KeyRing, generate
from pollerd.errors import ConfigError
from pollerd.model import Contact, Event, Order, Snapshot, full_name
from pollerd.sources.shopify import rest_normalize as shopify_rest_normalize
from pollerd.sources.shopify.normalize import normalize_order
from pollerd.sources.woocommerce import normalize as woocommerce
from pollerd.store import Store, open_store
from pollerd.store.db import Rekeyed

ROOT = Path(__file__).resolve().parents[2]
T = datetime(2026, 11, 22, 9, 32, 36, tzinfo=UTC)
PEOPLE = {
    "1": Contact("Ada Lovelace", "ada.lovelace@example.test", "+1 555 0100 731"),
    "2": Contact("王芳", "wang.fang@example.cn", "+86 138 0013 8000"),
    "3": Contact(None, "only.mail@example.test", None),
}
SECRETS_IN_CLEAR = [
    v.encode() for c in PEOPLE.values() for v in (c.name, c.email, c.phone) if v
] + [b"13800138000", b"15550100731"]


def order(oid: str, contact: Contact | None) -> Order:
    return Order(
        store="s", platform="woocommerce", id=oid, number=oid, status="processing",
        created_at=T, updated_at=T, total="1.00", currency="USD",
        customer_email="a***@example.test", contact=contact,
    )  # fmt: skip


def page(store: Store, oids: list[str], contacts: dict[str, Contact | None]) -> None:
    """What `WindowWalk.apply_orders` commits for a page of new orders."""
    snaps = [Snapshot("s", oid, "processing", T, Decimal("0"), frozenset({"order.created"}))
             for oid in oids]  # fmt: skip
    events = [
        (Event("order.created", "s", "woocommerce", oid, T, T, False, order(oid, None).to_json()),
         ["hook"])
        for oid in oids
    ]  # fmt: skip
    store.commit_page("s", snaps, events, contacts=contacts)


def file_bytes(db: Path) -> bytes:
    """The database file and its WAL, as a disk thief would read them."""
    return b"".join(p.read_bytes() for p in (db, Path(f"{db}-wal")) if p.exists())


# --- normalisers ---------------------------------------------------------------------------------


def test_woocommerce_keeps_the_full_contact_beside_the_masked_fields() -> None:
    payload = json.loads((ROOT / "pollerd_sim/data/order_processing_paid_13.json").read_text())
    got = woocommerce.normalize(payload, store="s", site_url="https://shop.example")
    assert got.contact == Contact("Ada Lovelace", "ada@example.test", "+15550100")
    assert (got.customer_email, got.customer_phone, got.customer_name) == (
        "a***@example.test", "155****0100", "Ada L.",
    )  # fmt: skip
    # Neither the event JSON nor repr (what a log line or a traceback would show) has it.
    shown = json.dumps(got.to_json(), ensure_ascii=False) + repr(got) + str(got.contact)
    assert "ada@example.test" not in shown and "Lovelace" not in shown
    assert "+15550100" not in shown


def test_woocommerce_falls_back_to_the_shipping_phone_and_name() -> None:
    payload = json.loads((ROOT / "pollerd_sim/data/order_processing_paid_13.json").read_text())
    payload["billing"] = {"email": "", "phone": "", "first_name": "", "last_name": ""}
    payload["shipping"] = {"first_name": "芳", "last_name": "王", "phone": "13800138000"}
    got = woocommerce.normalize(payload, store="s", site_url="https://shop.example")
    assert got.contact == Contact("王芳", None, "13800138000")
    payload["shipping"] = {}
    assert woocommerce.normalize(payload, store="s", site_url="https://x").contact is None


def test_shopify_rest_and_graphql_capture_the_same_contact() -> None:
    payload = json.loads((ROOT / "tests/fixtures/shopify/rest_orders_list.json").read_text())
    payload = payload["orders"][0]
    rest = shopify_rest_normalize.normalize(payload, store="s", shop="apple.myshopify.com")
    node = shopify_rest_normalize.as_node(payload, store="s")
    graphql = normalize_order(node, store="s", shop="apple.myshopify.com")
    # The order's own email and phone win over the customer record's, as for the masked ones.
    assert (
        rest.contact
        == graphql.contact
        == Contact("Bob Norman", "bob.norman@hostmail.com", "+557734881234")
    )


def test_a_key_ring_shows_ids_only() -> None:
    key = generate(2)
    ring = KeyRing.parse(f"{key} {generate(1)}")
    assert repr(ring) == "KeyRing(current=2, ids=[1, 2])" and key[2:] not in repr(ring)


def test_full_name_keeps_cjk_order() -> None:
    assert full_name("Ada", "Lovelace") == "Ada Lovelace"
    assert full_name("芳", "王") == "王芳"
    assert full_name("", "") is None and full_name(None, 3) is None


# --- sealing in the store ------------------------------------------------------------------------


def test_without_pii_key_no_contact_reaches_the_file(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    store = open_store(f"sqlite:///{db}")
    store.init_cursor("s", T)
    page(store, list(PEOPLE), dict(PEOPLE))
    assert store.sealed_by_key() == {}
    with pytest.raises(CryptoError, match="pii_key is not set"):
        store.contact("s", "1")
    data = file_bytes(db)
    assert b"a***@example.test" in data  # the masked event payload is there...
    assert [s for s in SECRETS_IN_CLEAR if s in data] == []  # ...the contacts are not
    store.close()


def test_with_pii_key_contacts_are_sealed_and_open_to_the_right_values(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    store = open_store(f"sqlite:///{db}", pii_key=generate(7))
    store.init_cursor("s", T)
    page(store, list(PEOPLE), dict(PEOPLE))
    assert store.sealed_by_key() == {7: 3}
    for oid, contact in PEOPLE.items():
        assert store.contact("s", oid) == contact
    assert store.contact("s", "404") is None
    assert [s for s in SECRETS_IN_CLEAR if s in file_bytes(db)] == []
    raw = sqlite3.connect(db).execute("SELECT key_id, email FROM contact WHERE order_id='1'")
    key_id, blob = raw.fetchone()
    assert key_id == 7 and KeyRing.key_id(blob) == 7 and len(blob) == 2 + 1 + 12 + 25 + 16
    store.close()


@pytest.mark.parametrize(
    ("where", "moves"),
    [
        ("another order", "UPDATE contact SET email = (SELECT email FROM contact "
                          "WHERE order_id = '2') WHERE order_id = '1'"),
        ("another column", "UPDATE contact SET email = phone WHERE order_id = '1'"),
        ("another store", "UPDATE contact SET store = 't' WHERE order_id = '1'"),
    ],
)  # fmt: skip
def test_a_sealed_value_moved_elsewhere_does_not_open(
    tmp_path: Path, where: str, moves: str
) -> None:
    db = tmp_path / "p.db"
    store = open_store(f"sqlite:///{db}", pii_key=generate(1))
    page(store, list(PEOPLE), dict(PEOPLE))
    with sqlite3.connect(db) as conn:
        conn.execute(moves)
    opened_store = "t" if where == "another store" else "s"
    with pytest.raises(CryptoError, match="does not open") as err:
        store.contact(opened_store, "1")
    assert re.search(rf"contact\.(name|email) of {opened_store}:1 ", str(err.value))  # the row
    assert not any(s.decode() in str(err.value) for s in SECRETS_IN_CLEAR)  # ...not the data
    assert store.contact("s", "2") == PEOPLE["2"]  # the source row itself is intact
    store.close()


def test_a_contact_the_platform_no_longer_shows_is_forgotten(tmp_path: Path) -> None:
    """An order seen again without its customer (Shopify's customers/redact) loses ours; a
    changed contact replaces the old one."""
    store = open_store(f"sqlite:///{tmp_path / 'p.db'}", pii_key=generate())
    page(store, ["1", "2"], {"1": PEOPLE["1"], "2": PEOPLE["2"]})
    store.commit_page("s", [Snapshot("s", "1", "completed", T)], [], contacts={"1": None})
    changed = Contact("Ada King", "ada.king@example.test", None)
    store.commit_page("s", [Snapshot("s", "2", "completed", T)], [], contacts={"2": changed})
    assert store.contact("s", "1") is None and store.contact("s", "2") == changed
    store.close()


def test_bad_pii_keys_are_config_errors_without_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    short = "1:" + "QUFB" * 4  # 12 bytes
    with pytest.raises(ConfigError) as err:
        open_store(f"sqlite:///{tmp_path / 'p.db'}", pii_key=short)
    assert err.value.exit_code == 78 and "pollerd.pii_key" in str(err.value)
    assert "QUFB" not in str(err.value)
    config = tmp_path / "pollerd.toml"
    config.write_text('[pollerd]\npii_key = "env:TEST_PII_KEY"\n', encoding="utf-8")
    monkeypatch.setenv("TEST_PII_KEY", "2:" + "QUFB" * 4)
    with pytest.raises(ConfigErrors) as bad:  # refused at load: `check` and reloads see it
        load(config)
    assert "pollerd.pii_key: key 1 is 12 bytes, AES-256 needs 32" in str(bad.value)
    assert "QUFB" not in str(bad.value) and bad.value.exit_code == 78
    monkeypatch.setenv("TEST_PII_KEY", f"{generate(3)}\n{generate(2)}\n")  # a file's layout
    assert load(config).pollerd.pii_key is not None


# --- retention -----------------------------------------------------------------------------------


def deliveries(store: Store) -> dict[str, tuple[str, str | None]]:
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT order_id, state, body FROM delivery").all()
    return {r[0]: (r[1], r[2]) for r in rows}


def test_prune_drops_old_bodies_and_contacts_and_keeps_metadata(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'p.db'}", pii_key=generate())
    oids = ["old-sent", "old-dead", "new-sent", "pending", "old-sent-2", "old-sent-3"]
    page(store, oids, {oid: PEOPLE["1"] for oid in oids})
    now = time.time()
    ids = {r["event_id"].split(":")[1]: r["id"] for r in store.deliveries()}
    hours = 3600.0
    for oid, state, at in [
        ("old-sent", "sent", now - 73 * hours), ("old-sent-2", "sent", now - 100 * hours),
        ("old-sent-3", "sent", now - 80 * hours), ("new-sent", "sent", now - 71 * hours),
        ("old-dead", "dead", now - 73 * hours), ("pending", "pending", now - 99 * hours),
    ]:  # fmt: skip
        store.mark(ids[oid], state=state, attempts=1, body=f"body of {oid}", next_at=at)
        with store.tx() as conn:  # mark() stamps sent_at with the real clock
            conn.exec_driver_sql(
                "UPDATE delivery SET sent_at = ? WHERE id = ? AND state = 'sent'", (at, ids[oid])
            )
    with store.tx() as conn:  # two contacts last received 4 days ago, the rest just now
        conn.exec_driver_sql(
            "UPDATE contact SET sealed_at = ? WHERE order_id IN ('old-sent', 'old-dead')",
            (now - 96 * hours,),
        )
    retention = timedelta(hours=72)
    assert store.prune(now - 48 * hours, retention) == (0, 0)  # nothing is 72 h old yet then
    pruned = store.prune(now, retention, batch=2)  # 2 rows a transaction: several batches
    assert (pruned.bodies, pruned.contacts) == (4, 2)
    assert deliveries(store) == {
        "old-sent": ("sent", None), "old-sent-2": ("sent", None), "old-sent-3": ("sent", None),
        "old-dead": ("dead", None), "new-sent": ("sent", "body of new-sent"),
        "pending": ("pending", "body of pending"),  # to be resent byte-identical: kept
    }  # fmt: skip
    assert store.contact("s", "old-sent") is None and store.contact("s", "new-sent") is not None
    assert len(store.events()) == len(oids)  # event metadata and masked payloads stay
    assert store.prune(now, retention) == (0, 0)  # idempotent, and cheap when nothing is due
    store.close()


def test_pruned_bodies_and_contacts_leave_no_trace_in_the_file(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    store = open_store(f"sqlite:///{db}", pii_key=generate())
    page(store, ["1"], {"1": PEOPLE["1"]})
    did = store.deliveries()[0]["id"]
    marker = "RENDERED-BODY-" + "x" * 40
    store.mark(did, state="sent", attempts=1, body=marker)
    blob = sqlite3.connect(db).execute("SELECT email FROM contact").fetchone()[0]
    store.prune(time.time() + 1, timedelta(0))
    with sqlite3.connect(db) as conn:  # a checkpoint copies the WAL into the main file
        assert conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
    data = file_bytes(db)
    assert marker.encode() not in data and blob not in data  # secure_delete=FAST zeroed them
    store.close()


# --- rotation ------------------------------------------------------------------------------------


def seal_many(db: Path, key: str, n: int) -> dict[str, Contact]:
    store = open_store(f"sqlite:///{db}", pii_key=key)
    people = {str(i): Contact(f"Name {i}", f"person{i}@example.test", f"+1555{i:07d}")
              for i in range(1, n + 1)}  # fmt: skip
    page(store, list(people), dict(people))
    store.close()
    return people


def test_rekey_reseals_in_batches_and_resumes(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    old, new = generate(1), generate(2)
    people = seal_many(db, old, 5)
    store = open_store(f"sqlite:///{db}", pii_key=f"{new} {old}")
    ring = store.pii
    assert ring is not None
    seen: list[tuple[int, dict[int, int]]] = []

    def stop_after_first(report: Rekeyed) -> None:
        seen.append((report.resealed, dict(report.left)))
        raise KeyboardInterrupt  # an operator's Ctrl-C between batches

    with pytest.raises(KeyboardInterrupt):
        store.rekey(ring, batch=2, on_batch=stop_after_first)
    assert seen == [(2, {1: 3})] and store.sealed_by_key() == {1: 3, 2: 2}  # batch 1 committed
    report = store.rekey(ring, batch=2, on_batch=lambda r: seen.append((r.resealed, r.left)))
    assert seen[1:] == [(2, {1: 1}), (3, {})]
    assert (report.resealed, report.failed, report.left) == (3, [], {})
    store.close()
    only_new = open_store(f"sqlite:///{db}", pii_key=new)  # the old key can go now
    assert {oid: only_new.contact("s", oid) for oid in people} == people
    assert only_new.rekey(KeyRing.parse(new)).resealed == 0
    only_new.close()


def test_rekey_skips_and_names_rows_that_do_not_open(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    old, new = generate(1), generate(2)
    seal_many(db, old, 3)
    with sqlite3.connect(db) as conn:  # order 2's email swapped into order 1's row
        conn.execute("UPDATE contact SET email = (SELECT email FROM contact WHERE order_id='2') "
                     "WHERE order_id = '1'")  # fmt: skip
    store = open_store(f"sqlite:///{db}", pii_key=f"{new},{old}")
    assert store.pii is not None
    report = store.rekey(store.pii, batch=500)
    assert report.resealed == 2 and report.left == {1: 1}
    assert len(report.failed) == 1 and "contact.email of s:1 does not open" in report.failed[0]
    assert "person" not in report.failed[0]
    store.close()
