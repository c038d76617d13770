"""Issue 11 item 16: one malformed order must not stop every alert of its store.

`pollerd once` subprocesses against the WooCommerce simulator serving one order whose `total` a
broken plugin set to "garbage", among good ones; alerts received by a real webhook sink."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pollerd_sim import WebhookSink, WooSim
from pollerd_sim.harness import KEY, SECRET, pollerd, write_config

ALERTS_ROUTE = '[[routes]]\nevents = ["alert.*"]\nchannels = ["hook"]\n'


def test_a_malformed_order_is_set_aside_and_the_others_go_on(
    tmp_path: Path, sink: WebhookSink
) -> None:
    with WooSim(consumer_key=KEY, consumer_secret=SECRET) as sim:
        config = write_config(tmp_path, sim.url, sink.url, extra=ALERTS_ROUTE)
        good = sim.create_order(payment_method="stripe", set_paid=True)
        bad = sim.create_order(payment_method="stripe", set_paid=True)
        sim.corrupt(bad, total="garbage")
        # Last modified an hour ago: once the bookmark has passed it, the overlap window no
        # longer lists it, so only the quarantine can bring it back.
        sim.set_modified([bad], datetime.now(UTC) - timedelta(hours=1))
        later = sim.create_order(payment_method="stripe", set_paid=True)

        first = pollerd("once", "--config", str(config))
        assert first.returncode == 0, first.stderr
        ids = Counter(sink.ids())
        # The others are announced; the malformed one is alerted once, never as "garbage".
        assert {f"shop:{good}:order.paid", f"shop:{later}:order.paid"} <= set(ids)
        assert f"shop:{bad}:alert.order_quarantined" in ids
        assert not any(i.startswith(f"shop:{bad}:order.") for i in ids)
        assert all(b"garbage" not in r.body for r in sink.receipts if b'"order.' in r.body)

        listed = pollerd("quarantine", "list", "--config", str(config))
        assert listed.returncode == 0, listed.stderr
        assert str(bad) in listed.stdout and "total" in listed.stdout
        status = json.loads(pollerd("status", "--json", "--config", str(config)).stdout)
        held = status["stores"][0]["quarantined"]
        assert [q["order_id"] for q in held] == [str(bad)]
        assert held[0]["field"] == "total" and held[0]["first_seen"]

        # The store goes on with the others.
        newest = sim.create_order(payment_method="stripe", set_paid=True)
        assert pollerd("once", "--config", str(config)).returncode == 0
        ids = Counter(sink.ids())
        assert f"shop:{newest}:order.paid" in ids
        assert ids[f"shop:{bad}:alert.order_quarantined"] == 1  # alerted once, not per pass

        # The plugin is fixed without touching the order (date_modified unchanged, an hour
        # behind the bookmark): only the quarantine's retry can find it.
        with sim.book.lock:
            record = sim.book.get(bad)
            record.overrides.clear()
            record.cache_json = None
        released = pollerd("once", "--config", str(config))
        assert released.returncode == 0, released.stderr
        ids = Counter(sink.ids())
        assert ids[f"shop:{bad}:order.created"] == 1 and ids[f"shop:{bad}:order.paid"] == 1
        assert max(ids.values()) == 1
        status = json.loads(pollerd("status", "--json", "--config", str(config)).stdout)
        assert status["stores"][0]["quarantined"] == []
        assert str(bad) not in pollerd("quarantine", "list", "--config", str(config)).stdout


def test_a_listing_row_that_does_not_read_is_set_aside_too(
    tmp_path: Path, sim: WooSim, sink: WebhookSink
) -> None:
    """A broken `date_modified_gmt` shows in the cheap listing already: that row is set aside
    and the rows around it go on (before: every pass of the store failed on it)."""
    config = write_config(tmp_path, sim.url, sink.url, extra=ALERTS_ROUTE)
    before = sim.create_order(payment_method="stripe", set_paid=True)
    bad = sim.create_order(payment_method="stripe", set_paid=True)
    sim.corrupt(bad, date_modified_gmt="yesterday")
    after = sim.create_order(payment_method="stripe", set_paid=True)
    result = pollerd("once", "--config", str(config))
    assert result.returncode == 0, result.stderr
    ids = Counter(sink.ids())
    assert {f"shop:{before}:order.paid", f"shop:{after}:order.paid"} <= set(ids)
    assert ids[f"shop:{bad}:alert.order_quarantined"] == 1
    listed = pollerd("quarantine", "list", "--json", "--config", str(config))
    [entry] = json.loads(listed.stdout)
    assert entry["order_id"] == str(bad) and entry["field"] == "date_modified_gmt"
