"""Backfill equivalence: the same scripted Shopify history (fixed clock, mixed statuses,
cancellations, fulfilments, unicode names, IPv4/IPv6/placeholder IPs, orders from before the
start point) backfilled twice with `--notify` and `pii_key`, then every table dumped without its
wall-clock columns (`detected_at`, `seen_at`, `written_at`, sealed bytes), so that two commits
can be compared row for row: a speed-up must change no event, id, payload or delivery.

    python bench/backfill_dump.py OUT.json [--orders 1500] [--mode bulk|pages]
    python bench/backfill_dump.py --compare BEFORE.json AFTER.json   # exit 1 if they differ

To dump an older commit: `git archive COMMIT | tar -x -C /tmp/old`, then run this script with
`PYTHONPATH=/tmp/old`.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import re
import sqlite3
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pollerd_sim import ShopSim, WebhookSink
from pollerd_sim.harness import SHOPIFY_TOKEN, pollerd_env, write_config

T0 = datetime(2026, 11, 1, tzinfo=UTC)
FINANCIAL = ("PENDING", "PAID", "AUTHORIZED", "PAID", "PARTIALLY_REFUNDED", "REFUNDED")
NAMES = (("Ada", "Lovelace"), ("芳", "王"), ("José", "Núñez"), ("", ""), ("Zoë", 'O"Brien'))
IPS = (None, "198.51.100.7", "::ffff:203.0.113.9", "0.0.0.0", "127.0.0.1", "2001:DB8::1", "x")
PII_KEY = "1:" + base64.b64encode(bytes(range(32))).decode()
DETECTED = re.compile(r'"detected_at":"[^"]*"')


def seed(sim: ShopSim, n: int) -> None:
    ids = []
    for i in range(n):
        first, last = NAMES[i % len(NAMES)]
        items = [
            {"name": f"Item ✓ {j}", "quantity": j + 1, "sku": f"S{j}", "price": "3.50"}
            for j in range(i % 4)
        ]
        ids.append(
            sim.create_order(
                financial=FINANCIAL[i % len(FINANCIAL)],
                total=f"{10 + i % 90}.{i % 100:02d}",
                email="" if i % 11 == 0 else f"Buyer{i % 37}@Example.test",
                phone="" if i % 13 == 0 else f"+1 555 01{i % 97:02d}",
                first_name=first,
                last_name=last,
                test=i % 17 == 0,
                ip=IPS[i % len(IPS)],
                created_at=T0 - timedelta(days=30) if i % 5 == 0 else None,
                gateway="manual" if i % 3 == 0 else "shopify_payments",
                items=items or None,
            )
        )
    for i, oid in enumerate(ids):
        if i % 7 == 1:
            sim.cancel(oid)
        if i % 9 == 3:
            sim.fulfill(oid)


def dump(db: sqlite3.Connection, receipts: int) -> dict[str, Any]:
    def rows(query: str) -> list[list[Any]]:
        return [list(r) for r in db.execute(query)]

    deliveries = rows(
        "SELECT id, event_seq, event_id, channel, store, order_id, state, attempts, quiet_until,"
        " body, digest, next_at = created_at FROM delivery ORDER BY id"
    )
    return {
        "snapshot": rows(
            "SELECT store, order_id, status, updated_at, refunded_total, fired FROM snapshot"
            " ORDER BY order_id"
        ),
        "event": [
            [*r[:-1], DETECTED.sub("", r[-1])]
            for r in rows(
                "SELECT seq, id, type, store, order_id, occurred_at, late, backfill, payload"
                " FROM event ORDER BY seq"
            )
        ],
        "delivery": [[*r[:9], DETECTED.sub("", r[9] or ""), *r[10:]] for r in deliveries],
        "order_fact": rows(
            "SELECT store, order_id, created_at, total, amount, currency, unpaid, cancelled,"
            " number FROM order_fact ORDER BY order_id"
        ),
        "blind_index": rows(
            "SELECT store, order_id, kind, hex(digest), created_at FROM blind_index"
            " ORDER BY order_id, kind"
        ),
        "contact": rows(
            "SELECT store, order_id, key_id, name IS NULL, email IS NULL, phone IS NULL"
            " FROM contact ORDER BY order_id"
        ),
        "meta": rows("SELECT key FROM meta ORDER BY key"),
        "cursor": rows("SELECT store, updated_at, order_id, start_at FROM cursor"),
        "receipts": [receipts],
    }


def run(out: Path, n: int, mode: str) -> None:
    tick = itertools.count()

    def clock() -> datetime:
        return T0 + timedelta(seconds=next(tick) // 3)

    with (
        tempfile.TemporaryDirectory() as tmp,
        ShopSim(access_token=SHOPIFY_TOKEN, clock=clock, seed=7) as sim,
        WebhookSink() as sink,
    ):
        seed(sim, n)
        store = {"start_from": "2026-10-15T00:00:00Z", "timeout": "60s"}
        config = write_config(Path(tmp), sim.url, sink.url, platform="shopify", store=store)
        text = config.read_text().replace("[pollerd]\n", f'[pollerd]\npii_key = "{PII_KEY}"\n', 1)
        config.write_text(text)
        since = T0 - timedelta(days=2) if mode == "pages" else datetime(2020, 1, 1, tzinfo=UTC)
        command = [sys.executable, "-m", "pollerd", "backfill", "--config", str(config)]
        command += ["--store", "shop", "--since", since.strftime("%Y-%m-%dT%H:%M:%SZ")]
        for _ in range(2):  # the second run replays everything: it must add nothing
            done = subprocess.run(
                [*command, "--notify"], env=pollerd_env(), capture_output=True, text=True
            )
            if done.returncode != 0:
                raise SystemExit(done.stderr[-3000:])
        with sqlite3.connect(Path(tmp) / "pollerd.db") as db:
            tables = dump(db, len(sink.receipts))
    out.write_text(json.dumps(tables, ensure_ascii=False, indent=0))
    print({name: len(rows) for name, rows in tables.items()})


def compare(before: Path, after: Path) -> int:
    a, b = json.loads(before.read_text()), json.loads(after.read_text())
    differ = [name for name in a if a[name] != b.get(name)]
    for name in differ:
        pairs = zip(a[name], b.get(name, []), strict=False)
        first = next(((i, x, y) for i, (x, y) in enumerate(pairs) if x != y), None)
        print(name, "rows", len(a[name]), len(b.get(name, [])), "first difference:", first)
    print("IDENTICAL" if not differ else f"{len(differ)} tables differ")
    return 1 if differ else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path)
    parser.add_argument("--orders", type=int, default=1500)
    parser.add_argument("--mode", choices=("bulk", "pages"), default="bulk")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args()
    if args.compare:
        return compare(*args.compare)
    if args.out is None:
        parser.error("OUT is required unless --compare")
    run(args.out, args.orders, args.mode)
    return 0


if __name__ == "__main__":
    sys.exit(main())
