"""Cost of sealing customer PII at rest: AES-256-GCM seal/open of one 48-byte field, and what
it adds to the store's work (a page commit with three sealed fields per order, `rekey`, `prune`).

    python bench/crypto.py [--rounds 200000] [--orders 2000]

Prints one JSON object. Field timings are the best of 5 repeats of `--rounds` calls (the
steady-state cost, without scheduler noise); store timings use a real SQLite file in WAL mode
with synchronous=FULL, as pollerd runs it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import timeit
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from pollerd.crypto import KeyRing, generate
from pollerd.model import Contact, Snapshot
from pollerd.store import open_store
from pollerd.store.db import _sealed_row

FIELD = "王芳 <wang.fang@example.cn> +86 138 0013 80001"  # a name, an email and a phone
PLACE = {"table": "contact", "column": "email", "row": "acme-eu:5273485869312"}
PAGE = 50  # orders per page commit (WooCommerce pages hold up to 100, Shopify up to 250)
T = datetime(2026, 11, 22, 9, 32, 36, tzinfo=UTC)
T0 = T.timestamp()


def per_call_us(fn: Any, rounds: int) -> float:
    return min(timeit.repeat(fn, number=rounds, repeat=5)) / rounds * 1e6


def field_costs(rounds: int) -> dict[str, Any]:
    assert len(FIELD.encode()) == 48, len(FIELD.encode())
    ring = KeyRing.parse(generate(1))
    blob = ring.seal(FIELD, **PLACE)
    assert ring.open(blob, **PLACE) == FIELD
    contact = Contact("王芳", "wang.fang@example.cn", "+86 138 0013 8000")

    def seal_order() -> None:
        _sealed_row(ring, "acme-eu", "5273485869312", contact, T0)

    return {
        "field_bytes": 48,
        "sealed_bytes": len(blob),
        "seal_us": round(per_call_us(lambda: ring.seal(FIELD, **PLACE), rounds), 2),
        "open_us": round(per_call_us(lambda: ring.open(blob, **PLACE), rounds), 2),
        # the store's whole per-order work: name, email and phone sealed into a row
        "seal_order_contact_us": round(per_call_us(seal_order, rounds // 3), 2),
    }


def commit_pages(url: str, key: str | None, orders: int) -> float:
    """Milliseconds per page of `PAGE` orders (snapshots + a contact each), best of 5 runs."""
    best = float("inf")
    for run in range(5):
        store = open_store(url.replace(".db", f"-{run}.db"), pii_key=key)
        started = time.perf_counter()
        for start in range(0, orders, PAGE):
            ids = [str(i) for i in range(start, start + PAGE)]
            snaps = [Snapshot("s", i, "processing", T, Decimal("0")) for i in ids]
            contacts = {
                i: Contact("王芳", f"customer{i}@example.cn", f"+86 138 {int(i):08d}") for i in ids
            }
            store.commit_page("s", snaps, [], contacts=contacts)
        best = min(best, (time.perf_counter() - started) * 1000 / (orders / PAGE))
        store.close()
    return best


def store_costs(orders: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        plain = commit_pages(f"sqlite:///{Path(tmp) / 'plain.db'}", None, orders)
        old, new = generate(1), generate(2)
        sealed = commit_pages(f"sqlite:///{Path(tmp) / 'sealed.db'}", old, orders)
        store = open_store(f"sqlite:///{Path(tmp) / 'sealed-0.db'}", pii_key=f"{new} {old}")
        assert store.pii is not None
        started = time.perf_counter()
        report = store.rekey(store.pii)
        rekey_s = time.perf_counter() - started
        assert report.resealed == orders and not report.failed
        started = time.perf_counter()
        pruned = store.prune(time.time() + 1, retention=timedelta(0))
        prune_s = time.perf_counter() - started
        assert pruned.contacts == orders
        started = time.perf_counter()
        store.prune(time.time() + 1, retention=timedelta(0))
        idle_prune_ms = (time.perf_counter() - started) * 1000
        store.close()
    return {
        "page_orders": PAGE,
        "page_commit_ms_without_pii_key": round(plain, 2),
        "page_commit_ms_with_pii_key": round(sealed, 2),
        "rekey_rows_per_s": round(orders / rekey_s),
        "prune_rows_per_s": round(orders / prune_s),
        "prune_nothing_due_ms": round(idle_prune_ms, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200_000)
    parser.add_argument("--orders", type=int, default=2000)
    args = parser.parse_args()
    result = {"cipher": "AES-256-GCM", **field_costs(args.rounds), **store_costs(args.orders)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
