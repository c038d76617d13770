"""Fault matrix row 11 (research §B.6): errors in an HTTP 200, through a running pollerd.

WeCom, DingTalk and Feishu/Lark answer HTTP 200 whatever happened, with the outcome in the
body's code (research notifications.md §4.9); Slack, Telegram and Discord say it with the
status. One `pollerd run` has a channel of every chat type, each pointed at `ChatSim`, and one
order's alert goes to all of them through three phases:

1. each service answers once with its rate-limit code (in a 200 for the robots): every row
   stays pending, never sent, due again no sooner than the wait that code documents (the
   channel modules' tables: WeCom 45009 and Feishu 11232 60 s, DingTalk 130101 600 s, the
   others the 429's Retry-After);
2. made due again (`Store.retry`, what `pollerd deliveries retry` runs), each answers its
   invalid-key/token code: permanent for the channel, so the row is held, still not sent, and
   the channel is marked broken;
3. released, each service accepts: every channel delivers the alert exactly once.

The broken variant `status_only` (a robot's HTTP 200 taken as sent) marks the robots' rows sent
in phase 1 although no service accepted anything
(`test_the_errcode_test_catches_http_200_taken_as_sent`)."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pollerd.store import Store
from pollerd_sim import WebhookSink, WooSim
from pollerd_sim.chat import SIM_DINGTALK_SECRET, SIM_FEISHU_SECRET, SIM_TELEGRAM_TOKEN, ChatSim
from pollerd_sim.harness import KEY, SECRET, Daemon, write_config

pytestmark = pytest.mark.fault


@dataclass(frozen=True)
class Row:
    """A chat channel type, the ChatSim service it posts to, and its two failures."""

    type: str
    service: str
    retry: str  # ChatSim failure kind: a rate limit, retryable
    wait: float  # the wait that rate limit documents, seconds
    permanent: str  # ChatSim failure kind: an invalid key or token, permanent for the channel
    in_200: bool  # whether the service answers its failures with HTTP 200
    said: str  # what of the permanent answer the row's last error must quote


TABLE = (
    Row("wecom", "wecom", "45009", 60.0, "93000", True, "code 93000"),
    Row("dingtalk", "dingtalk", "130101", 600.0, "300001", True, "code 300001"),
    Row("feishu", "feishu", "11232", 60.0, "19021", True, "code 19021"),
    Row("lark", "feishu", "11232", 60.0, "19021", True, "code 19021"),  # Feishu's twin
    Row("slack", "slack", "429", 7.0, "no_service", False, "no_service"),
    Row("telegram", "telegram", "429", 7.0, "401", False, "401"),
    Row("discord", "discord", "429", 7.0, "404_unknown_webhook", False, "404"),
)
HEADER_WAIT = 7  # the Retry-After ChatSim's 429s carry here


def options(chat: ChatSim, row: Row) -> dict[str, str]:
    if row.type == "telegram":
        return {
            "token": SIM_TELEGRAM_TOKEN,
            "chat_id": str(chat.config["telegram_chat"]),
            "api_base": chat.url,
        }
    found = {"url": chat.endpoint(row.service)}
    if row.service == "dingtalk":
        found["secret"] = SIM_DINGTALK_SECRET
    if row.service == "feishu":
        found["secret"] = SIM_FEISHU_SECRET
    return found


def channels(chat: ChatSim) -> str:
    """A channel named after each row's type, and a route of every order event to them all."""
    lines: list[str] = []
    for row in TABLE:
        lines += ["[[channels]]", f'name = "{row.type}"', f'type = "{row.type}"']
        lines += [f'{k} = "{v}"' for k, v in options(chat, row).items()]
    names = ", ".join(f'"{row.type}"' for row in TABLE)
    return "\n".join([*lines, "[[routes]]", 'events = ["order.*"]', f"channels = [{names}]"])


def rows(db: Path, event: str) -> dict[str, dict[str, Any]]:
    """The event's delivery rows by channel, with the channel's broken flag."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        conn.row_factory = sqlite3.Row
        found = conn.execute(
            "SELECT d.channel, d.state, d.attempts, d.next_at, d.last_error, s.broken "
            "FROM delivery d LEFT JOIN channel_state s ON s.channel = d.channel "
            "WHERE d.event_id = ?",
            (event,),
        ).fetchall()
    return {r["channel"]: dict(r) for r in found if r["channel"] != "hook"}


def wait_rows(
    db: Path, event: str, done: Callable[[dict[str, Any]], bool], daemon: Daemon
) -> dict[str, dict[str, Any]]:
    """The rows once `done` holds for every chat channel's row (polling rows: the outbox's
    state is the event), failing after 60 s."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = rows(db, event)
        if len(found) == len(TABLE) and all(done(r) for r in found.values()):
            return found
        time.sleep(0.1)
    raise AssertionError(f"rows never settled: {rows(db, event)}\n{daemon.output()[-3000:]}")


def attempted(row: dict[str, Any]) -> bool:
    return row["state"] != "pending" or row["attempts"] >= 1


def fail_each(chat: ChatSim, kind: Callable[[Row], str]) -> None:
    for row in TABLE:
        chat.fail(row.service, kind(row), retry_after=HEADER_WAIT)


def errcodes(tmp: Path, factory: Any, *, failpoint: str = "", phases: int = 3) -> dict[str, Any]:
    """Run the phases; returns each phase's rows by channel, and what ChatSim accepted."""
    seen: dict[str, Any] = {}
    with (
        WooSim(consumer_key=KEY, consumer_secret=SECRET) as woo,
        WebhookSink() as sink,
        ChatSim() as chat,
    ):
        config = write_config(tmp, woo.url, sink.url, extra=channels(chat))
        daemon = factory(config, **({"POLLERD_FAILPOINT": failpoint} if failpoint else {}))
        daemon.start()
        db = tmp / "pollerd.db"
        fail_each(chat, lambda row: row.retry)
        event = f"shop:{woo.create_order(payment_method='stripe')}:order.created"
        seen["retry"] = wait_rows(db, event, attempted, daemon)
        seen["retry_at"] = time.time()
        seen["accepted_then"] = len(chat.received())
        if phases >= 2:
            fail_each(chat, lambda row: row.permanent)
            store = Store(f"sqlite:///{db}")
            try:
                for row in TABLE:
                    store.retry(channel=row.type)
                seen["permanent"] = wait_rows(db, event, lambda r: bool(r["broken"]), daemon)
                seen["accepted_then_too"] = len(chat.received())
                for row in TABLE:
                    store.retry(channel=row.type)
            finally:
                store.close()
            seen["sent"] = wait_rows(db, event, lambda r: r["state"] == "sent", daemon)
            assert chat.wait_for(len(TABLE), timeout=30)
        seen["accepted"] = {s: len(chat.received(s)) for s in {row.service for row in TABLE}}
        seen["stats"] = chat.stats()
        assert daemon.stop() == 0
    return seen


def test_errcodes_in_200_are_never_sent_and_classed_as_documented(
    tmp_path: Path, daemon_factory: Any
) -> None:
    seen = errcodes(tmp_path, daemon_factory)
    assert seen["accepted_then"] == 0 and seen["accepted_then_too"] == 0
    for row in TABLE:
        retried = seen["retry"][row.type]
        assert retried["state"] == "pending" and retried["attempts"] == 1, (row, retried)
        assert (f"code {row.retry}" if row.in_200 else row.retry) in retried["last_error"], retried
        assert retried["next_at"] >= seen["retry_at"] + row.wait - 5, (row, retried)
        held = seen["permanent"][row.type]
        assert held["state"] == "pending" and held["broken"], (row, held)
        assert row.said in held["last_error"], (row, held)
        assert seen["sent"][row.type]["state"] == "sent"
    # every channel once: Feishu's service took the feishu and the lark channel's message
    assert seen["accepted"] == {"wecom": 1, "dingtalk": 1, "feishu": 2, "slack": 1,
                                "telegram": 1, "discord": 1}  # fmt: skip


def test_the_errcode_test_catches_http_200_taken_as_sent(
    tmp_path: Path, daemon_factory: Any
) -> None:
    seen = errcodes(tmp_path, daemon_factory, failpoint="status_only", phases=1)
    assert seen["accepted_then"] == 0
    taken = {t for t, r in seen["retry"].items() if r["state"] == "sent"}
    assert taken == {row.type for row in TABLE if row.in_200}, seen["retry"]
