"""Rate budgets and digests in the delivery loop, on a real SQLite store against `ChatSim`,
whose robots refuse exactly as the real services do past their limits (WeCom 45009, DingTalk
130101 and a 10-minute block). One fake clock drives the loop, its limiter and the sim's rate
windows, so a flash sale of minutes runs in well under a second of real time."""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from pollerd.channels.base import Budget, Channel, ChannelContext, SendResult
from pollerd.channels.dingtalk import DingTalkChannel
from pollerd.channels.discord import CONTENT_LIMIT, DiscordChannel
from pollerd.channels.feishu import FeishuChannel
from pollerd.channels.slack import SECTION_LIMIT, SlackChannel
from pollerd.channels.telegram import TEXT_LIMIT, TelegramChannel
from pollerd.channels.wecom import MARKDOWN_BYTES, TEXT_BYTES, WeComChannel
from pollerd.config import DeliveryConfig
from pollerd.delivery import Deliverer, Limiter, Round
from pollerd.model import Event, LineItem, Order
from pollerd.store import Store, open_store
from pollerd.store import migrate as migrations
from pollerd_sim.chat import SIM_DINGTALK_SECRET, ChatSim
from tests.support.clocks import SecondsClock, due_clock

AT = datetime(2026, 11, 22, 9, 32, 36, tzinfo=UTC)
HOSTILE = "**x** <@all> @everyone [x](http://evil) <b>"


def order_event(n: int, kind: str = "order.created", *, name: str = "Jane D.") -> Event:
    order = Order(
        store="acme",
        platform="woocommerce",
        id=str(1000 + n),
        number=str(1000 + n),
        status="processing",
        created_at=AT,
        updated_at=AT,
        total="10.50" if n % 2 else "20.00",
        currency="EUR" if n % 3 else "USD",
        customer_name=name,
        line_items=(LineItem("Mug", 1, "10.50"),),
    )
    when = AT + timedelta(seconds=n)
    return Event(kind, "acme", "woocommerce", order.id, when, when, False, order.to_json())


def commit(store: Store, channel: str, events: list[Event]) -> None:
    store.commit_page("acme", [], [(e, [channel]) for e in events])


def rows(store: Store) -> list[dict[str, Any]]:
    return sorted(store.deliveries(limit=10_000), key=lambda r: r["id"])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'p.db'}")
    s.init_cursor("acme", AT)
    yield s
    s.close()


def named(received: list[Any]) -> set[str]:
    """The order numbers named in the messages a chat service received (any payload shape)."""
    return set(
        re.findall(r"#(\d+)", " ".join(json.dumps(r.json, ensure_ascii=False) for r in received))
    )


def codes(sim: ChatSim, service: str) -> list[int]:
    """The `errcode` of every answer the service gave by itself (not a forced failure)."""
    return [a.answer_json().get("errcode") for a in sim.attempts(service) if a.forced is None]


async def flash_sale(
    make: Callable[[httpx.AsyncClient], Channel],
    store: Store,
    clock: SecondsClock,
    *,
    batches: int = 10,
    per_batch: int = 10,
    every: float = 5.0,
) -> Deliverer:
    """`batches` × `per_batch` new orders, one batch every `every` seconds, the loop running
    once a second until every row is sent (or 20 fake minutes pass)."""
    async with httpx.AsyncClient() as http:
        channel = make(http)
        deliverer = Deliverer(
            store,
            {channel.name: channel},
            DeliveryConfig(),
            clock=clock,
            monotonic=clock,
            rng=random.Random(7),
        )
        start, fed = clock.now, 0
        for _ in range(1200):
            while fed < batches and clock.now - start >= fed * every:
                commit(
                    store,
                    channel.name,
                    [order_event(fed * per_batch + i) for i in range(per_batch)],
                )
                fed += 1
            await deliverer.run_once()
            if fed == batches and all(r["state"] == "sent" for r in rows(store)):
                break
            clock.now += 1.0
        return deliverer


def test_flash_sale_to_wecom_never_exceeds_and_digests_the_backlog(store: Store) -> None:
    clock = due_clock()
    with ChatSim(clock=clock) as sim:

        def wecom(http: httpx.AsyncClient) -> Channel:
            return WeComChannel(ChannelContext("wecom", {"url": sim.endpoint("wecom")}, http))

        asyncio.run(flash_sale(wecom, store, clock))
        answers = codes(sim, "wecom")
        received = sim.received("wecom")

    assert 45009 not in answers and set(answers) == {0}
    done = rows(store)
    assert len(done) == 100 and {r["state"] for r in done} == {"sent"}
    # Waiting for a slot cost nothing: every row was attempted exactly once.
    assert {r["attempts"] for r in done} == {1}
    singles = [r for r in done if r["digest"] is None]
    digests = {r["digest"] for r in done} - {None}
    # The first minute's 20 slots went to single alerts, the rest of the sale to digests that
    # each NAME every alert they mark sent (issue 11: one digest of 80 named 10).
    assert len(singles) == 20 and len(digests) == len(received) - 20 >= 2
    assert named(received) == {str(1000 + n) for n in range(100)}
    text = received[20].json["markdown"]["content"]
    count = int(re.findall(r"Digest: (\d+) order alerts", text)[0])
    assert len(re.findall(r"#\d+", text)) == count and "more" not in text
    assert f"Total of {count} orders: " in text and "€" in text and "$" in text
    # The first digest went out once the window of the first 20 had passed (padded 5 %).
    assert received[20].at - received[0].at >= 63.0


def test_a_burst_of_200_to_one_wecom_group_is_one_digest_within_budget(store: Store) -> None:
    """The flash sale of the issue: 200 orders land in one poll for one WeCom group (20 a
    minute). Nothing is lost, no minute carries more than 20 sends, and the backlog goes out as
    one digest instead of ten minutes of single alerts."""
    clock = due_clock()
    with ChatSim(clock=clock) as sim:

        async def run() -> None:
            async with httpx.AsyncClient() as http:
                ctx = ChannelContext("wecom", {"url": sim.endpoint("wecom")}, http)
                channel = WeComChannel(ctx)
                deliverer = Deliverer(
                    store, {"wecom": channel}, DeliveryConfig(), clock=clock, monotonic=clock
                )
                commit(store, "wecom", [order_event(n) for n in range(200)])
                for _ in range(600):
                    await deliverer.run_once()
                    if all(r["state"] == "sent" for r in rows(store)):
                        return
                    clock.now += 1.0

        asyncio.run(run())
        messages = sim.received("wecom")
        sends = sorted(r.at for r in messages)
        answers = codes(sim, "wecom")

    done = rows(store)
    assert len(done) == 200 and {r["state"] for r in done} == {"sent"}
    assert set(answers) == {0}
    busiest = max(sum(1 for t in sends if start <= t < start + 60.0) for start in sends)
    assert busiest <= 20
    # A few digests (as many lines as WeCom's 4,096 bytes hold), every order named in one.
    assert 2 <= len({r["digest"] for r in done} - {None}) <= 10
    assert named(messages) == {str(1000 + n) for n in range(200)}


def test_flash_sale_to_dingtalk_never_hits_the_block(store: Store) -> None:
    clock = due_clock()
    with ChatSim(clock=clock) as sim:

        def dingtalk(http: httpx.AsyncClient) -> Channel:
            options = {"url": sim.endpoint("dingtalk"), "secret": SIM_DINGTALK_SECRET}
            return DingTalkChannel(ChannelContext("ding", options, http, locale="zh-CN"))

        asyncio.run(flash_sale(dingtalk, store, clock, batches=20, per_batch=5, every=3.0))
        answers = codes(sim, "dingtalk")
        received = sim.received("dingtalk")

    assert 130101 not in answers and set(answers) == {0}
    done = rows(store)
    assert len(done) == 100 and {r["state"] for r in done} == {"sent"}
    assert {r["attempts"] for r in done} == {1}
    assert len({r["digest"] for r in done} - {None}) >= 1
    digest = received[-1].json["markdown"]
    assert digest["title"].startswith("汇总：") and "另有" not in digest["text"]
    assert named(received) == {str(1000 + n) for n in range(100)}
    for first, later in zip(received, received[20:], strict=False):  # never 21 in 60 s
        assert later.at - first.at >= 60.0


def test_a_full_budget_makes_rows_wait_without_cost(store: Store) -> None:
    clock = due_clock()
    with ChatSim(clock=clock) as sim:

        async def go() -> None:
            async with httpx.AsyncClient() as http:
                ch = WeComChannel(ChannelContext("wecom", {"url": sim.endpoint("wecom")}, http))
                deliverer = Deliverer(
                    store, {"wecom": ch}, DeliveryConfig(), clock=clock, monotonic=clock
                )
                commit(store, "wecom", [order_event(i) for i in range(15)])
                first = await deliverer.run_once()
                assert (first.sent, first.waiting) == (15, 0)
                commit(store, "wecom", [order_event(i) for i in range(15, 25)])
                second = await deliverer.run_once()
                assert (second.sent, second.waiting, second.claimed) == (5, 5, 5)
                clock.now += 30
                third = await deliverer.run_once()
                assert (third.sent, third.waiting, third.claimed) == (0, 5, 0)
                waiting = [r for r in rows(store) if r["state"] == "pending"]
                assert len(waiting) == 5 and {r["attempts"] for r in waiting} == {0}
                assert {r["last_error"] for r in waiting} == {None}
                # `once` (drain) ends instead of spinning on rows its budget cannot take.
                assert (await deliverer.drain()).claimed == 0
                clock.now += 34  # 64 s after the first sends: past the padded minute
                last = await deliverer.run_once()
                assert (last.sent, last.waiting) == (5, 0)

        asyncio.run(go())
        assert set(codes(sim, "wecom")) == {0}
    assert {r["state"] for r in rows(store)} == {"sent"}
    assert {r["digest"] for r in rows(store)} == {None}


def test_a_failed_digest_leaves_every_row_due_with_back_off(store: Store) -> None:
    clock = due_clock()
    with ChatSim(clock=clock) as sim:
        sim.fail("wecom", "-1")  # "system busy": retryable

        async def go() -> None:
            async with httpx.AsyncClient() as http:
                ch = WeComChannel(ChannelContext("wecom", {"url": sim.endpoint("wecom")}, http))
                deliverer = Deliverer(
                    store,
                    {"wecom": ch},
                    DeliveryConfig(),
                    clock=clock,
                    monotonic=clock,
                    rng=random.Random(1),
                )
                commit(store, "wecom", [order_event(i) for i in range(25)])
                failed = await deliverer.run_once()
                assert (failed.sent, failed.retried, failed.digests) == (0, 25, 0)
                after = rows(store)
                assert {r["state"] for r in after} == {"pending"}
                assert {r["digest"] for r in after} == {None}
                assert {r["attempts"] for r in after} == {1}
                assert len({r["next_at"] for r in after}) == 1  # backing off together
                assert all("system busy" in r["last_error"] for r in after)
                clock.now += 61  # past the back-off (≤ 5 s) and the slot the failure used
                again = await deliverer.run_once()
                assert (again.sent, again.digests) == (25, 1)

        asyncio.run(go())
        assert len(sim.received("wecom")) == 1
    done = rows(store)
    assert {r["state"] for r in done} == {"sent"} and {r["attempts"] for r in done} == {2}
    assert len({r["digest"] for r in done}) == 1


def test_a_digest_refused_as_a_message_falls_back_to_single_sends(store: Store) -> None:
    clock = due_clock()
    with ChatSim(clock=clock) as sim:
        sim.fail("wecom", "40008", count=2)  # markdown refused, then its text fallback too

        async def go() -> None:
            async with httpx.AsyncClient() as http:
                ch = WeComChannel(ChannelContext("wecom", {"url": sim.endpoint("wecom")}, http))
                deliverer = Deliverer(
                    store, {"wecom": ch}, DeliveryConfig(), clock=clock, monotonic=clock
                )
                commit(store, "wecom", [order_event(i) for i in range(25)])
                await deliverer.run_once()
                assert deliverer.no_digest == {"wecom"}
                assert {r["attempts"] for r in rows(store)} == {0}  # the digest's fault
                clock.now += 1
                singles = await deliverer.run_once()
                assert singles.sent == 19  # one slot went to the refused digest

        asyncio.run(go())
        assert 45009 not in codes(sim, "wecom")


class Recorder(Channel):
    """A budgeted channel that records what the loop hands it."""

    kind = "recorder"

    def __init__(self, ctx: ChannelContext, windows: tuple[tuple[int, float], ...]) -> None:
        super().__init__(ctx)
        self.windows = windows
        self.digests: list[list[str]] = []
        self.singles: list[str] = []
        self.fail_digest = False

    def budget(self) -> Budget:
        return Budget("rec", self.windows)

    def render(self, event: Event) -> str:
        return event.id

    def render_digest(self, events: list[Event]) -> str:
        self.digests.append([e.id for e in events])
        return "digest"

    async def send(self, event: Event, rendered: str) -> SendResult:
        if rendered == "digest":
            return SendResult.retry("down") if self.fail_digest else SendResult.ok()
        self.singles.append(rendered)
        return SendResult.ok()


def recorder(windows: tuple[tuple[int, float], ...] = ((2, 60.0),)) -> Recorder:
    return Recorder(ChannelContext("rec", {}, httpx.AsyncClient()), windows)


def test_a_digest_keeps_per_order_order_and_never_overtakes_a_retry(store: Store) -> None:
    clock = due_clock()
    rec = recorder()
    commit(
        store,
        "rec",
        [
            order_event(1, "order.created"),
            order_event(2, "order.created"),
            order_event(1, "order.paid"),
            order_event(3, "order.created"),
            order_event(2, "order.paid"),
            order_event(3, "order.paid"),
        ],
    )
    # Order 2's first event is backing off: none of order 2 may go in this digest.
    first_of_2 = next(d for d in store.due(clock(), 10, ["rec"]) if d.order_id == "1002")
    store.mark(first_of_2.id, state="pending", attempts=1, body=None, next_at=clock() + 300)
    deliverer = Deliverer(store, {"rec": rec}, DeliveryConfig(), clock=clock, monotonic=clock)
    result = asyncio.run(deliverer.run_once())
    assert result.digests == 1 and result.sent == 4
    assert rec.digests == [
        [
            "acme:1001:order.created",
            "acme:1001:order.paid",
            "acme:1003:order.created",
            "acme:1003:order.paid",
        ]
    ]
    left = [r for r in rows(store) if r["state"] == "pending"]
    assert [r["event_id"] for r in left] == ["acme:1002:order.created", "acme:1002:order.paid"]
    assert {r["attempts"] for r in left} == {1, 0}


def test_single_sends_take_one_event_per_order_at_a_time(store: Store) -> None:
    clock = due_clock()
    rec = recorder(((10, 60.0),))
    commit(store, "rec", [order_event(1), order_event(1, "order.paid"), order_event(2)])
    deliverer = Deliverer(store, {"rec": rec}, DeliveryConfig(), clock=clock, monotonic=clock)
    asyncio.run(deliverer.run_once())
    assert rec.singles == ["acme:1001:order.created", "acme:1002:order.created"]
    asyncio.run(deliverer.run_once())
    assert rec.singles[-1] == "acme:1001:order.paid" and not rec.digests


def test_limiter_sliding_windows_on_an_injected_clock() -> None:
    clock = due_clock()
    limiter = Limiter(clock, pad=0.0)
    feishu = Budget("f", ((5, 1.0), (100, 60.0)))
    assert len(limiter.take(feishu, 10)) == 5 and limiter.free(feishu) == 0
    assert limiter.wait(feishu) == pytest.approx(1.0)
    for _ in range(19):  # 5 a second: the minute's 100 are used after 20 seconds
        clock.now += 1.0
        assert len(limiter.take(feishu, 10)) == 5
    clock.now += 1.0
    assert limiter.free(feishu) == 0
    assert limiter.wait(feishu) == pytest.approx(40.0)
    # A slot stamped at the answer runs its window from there.
    wecom = Budget("w", ((1, 60.0),))
    [slot] = limiter.take(wecom, 1)
    clock.now += 10.0
    limiter.stamp(slot)
    clock.now += 55.0
    assert limiter.free(wecom) == 0 and limiter.wait(wecom) == pytest.approx(5.0)
    clock.now += 5.0
    assert limiter.free(wecom) == 1
    # Padding keeps a window a little longer than published.
    padded = Limiter(clock, pad=0.05)
    padded.take(wecom, 1)
    clock.now += 60.0
    assert padded.free(wecom) == 0 and padded.wait(wecom) == pytest.approx(3.0)


def test_budgets_per_channel() -> None:
    http = httpx.AsyncClient()

    def ctx(options: dict[str, Any]) -> ChannelContext:
        return ChannelContext("c", options, http)

    wecom = WeComChannel(ctx({"key": "k-1"})).budget()
    assert wecom.windows == ((20, 60.0),) and "k-1" not in wecom.key
    assert WeComChannel(ctx({"key": "k-2"})).budget().key != wecom.key
    assert DingTalkChannel(ctx({"token": "t"})).budget().windows == ((20, 60.0),)
    assert FeishuChannel(ctx({"hook": "h"})).budget().windows == ((5, 1.0), (100, 60.0))
    slack = {"url": "https://hooks.slack.com/services/T0/B0/XYZ"}
    assert SlackChannel(ctx(slack)).budget().windows == ((1, 1.0),)
    discord = {"url": "https://discord.com/api/webhooks/1/tok"}
    assert DiscordChannel(ctx(discord)).budget().windows[0] == (5, 2.0)
    bot = "123456:ABC-telegram"
    group = TelegramChannel(ctx({"token": bot, "chat_id": "-1001234567890"})).budget()
    person = TelegramChannel(ctx({"token": bot, "chat_id": "4242"})).budget()
    assert group.windows == ((1, 1.0), (20, 60.0)) and person.windows == ((1, 1.0),)
    assert group.key != person.key and bot not in group.key
    assert group.capacity(60.0) == 20 and person.capacity(60.0) == 60


def events(count: int, **kw: Any) -> list[Event]:
    return [order_event(i, **kw) for i in range(count)]


def test_digest_words_in_english_and_chinese() -> None:
    class Plain(Channel):
        kind = "plain"

    def plain(locale: str, zone: str = "UTC") -> Plain:
        return Plain(ChannelContext("p", {}, httpx.AsyncClient(), timezone=zone, locale=locale))

    en = plain("en").digest_message(events(12))
    assert en.title.startswith("Digest: 12 order alerts")
    lines = en.body.splitlines()
    # Odd orders are 10.50, even 20.00; orders 0, 3, 6, 9 are in USD, the others in EUR.
    assert "Total of 12 orders: $61.00 · €122.00" in lines
    shown = [line for line in lines if line.startswith("[acme] ")]
    assert shown[0].startswith("[acme] New order #1000") and len(shown) == 10
    assert lines[-1] == "… and 2 more"
    zh = plain("zh-CN", "Asia/Shanghai").digest_message(events(3))
    assert zh.title.startswith("汇总：3 条订单通知") and "3 个订单合计：" in zh.body
    assert "北京时间" in zh.body and "另有" not in zh.body
    # An order with two events is counted once in the totals.
    pair = plain("en").digest_message([order_event(1), order_event(1, "order.paid")])
    assert "Total of 1 order: €10.50" in pair.body.splitlines()
    rendered = plain("zh-CN").render_digest(events(11))
    assert rendered.splitlines()[0].startswith("汇总：11 条订单通知")
    assert rendered.splitlines()[-1].startswith("…") and "另有 1 条" in rendered


def test_chat_digests_escape_and_fit_their_limits() -> None:
    http = httpx.AsyncClient()
    many = events(400, name=HOSTILE * 3)

    def ctx(options: dict[str, Any], locale: str = "zh-CN") -> ChannelContext:
        return ChannelContext("c", options, http, locale=locale)

    markdown, text = json.loads(WeComChannel(ctx({"key": "k"})).render_digest(many))
    content = markdown["markdown"]["content"]
    assert (
        len(content.encode()) <= MARKDOWN_BYTES
        and len(text["text"]["content"].encode()) <= TEXT_BYTES
    )
    assert "<@all>" not in content and "**x**" not in content and "](http" not in content
    assert content.startswith("**汇总：400 条订单通知**") and "另有" in content

    ding, _ = json.loads(DingTalkChannel(ctx({"token": "t"})).render_digest(many))
    assert "<@all>" not in ding["markdown"]["text"] and ding["markdown"]["title"]

    tg = json.loads(
        TelegramChannel(ctx({"token": "1:A", "chat_id": "-1"}, "en")).render_digest(many)
    )
    assert tg["html"].startswith("<b>Digest: 400 order alerts</b>") and "<@all>" not in tg["html"]
    assert len(tg["html"].encode("utf-16-le")) // 2 <= TEXT_LIMIT
    assert "… and 390 more" in tg["plain"]

    slack = json.loads(
        SlackChannel(
            ctx({"url": "https://hooks.slack.com/services/T0/B0/XYZ"}, "en")
        ).render_digest(many)
    )
    body = slack["blocks"][1]["text"]["text"]
    assert "<@all>" not in body and "&lt;@all&gt;" in body and len(body) <= SECTION_LIMIT

    discord = DiscordChannel(
        ctx({"url": "https://discord.com/api/webhooks/1/tok"}, "en")
    ).render_digest(many)
    assert "<@all>" not in discord and len(discord) <= CONTENT_LIMIT


def test_migration_adds_the_digest_column_to_an_old_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:1])
    monkeypatch.setattr(migrations, "LATEST", 1)
    old = open_store(url)
    old.init_cursor("acme", AT)
    commit(old, "wecom", [order_event(1)])
    old.close()
    monkeypatch.undo()
    new = open_store(url)
    [row] = new.deliveries()
    assert row["digest"] is None and row["state"] == "pending"
    assert new.mark_digest([row["id"]], "dg-1-1-1") == 1
    assert new.mark_digest([row["id"]], "dg-again") == 0  # sent rows are never re-marked
    [row] = new.deliveries()
    assert (row["state"], row["digest"], row["attempts"]) == ("sent", "dg-1-1-1", 1)
    assert new.meta("schema_version") == str(migrations.LATEST) == "5"
    new.close()


def test_the_loop_sleeps_while_a_budget_is_spent_instead_of_spinning(store: Store) -> None:
    rec = recorder(((1, 60.0),))
    commit(store, "rec", [order_event(i) for i in range(3)])
    deliverer = Deliverer(store, {"rec": rec}, DeliveryConfig())
    deliverer.no_digest.add("rec")  # singles: one now, two waiting a minute for the budget
    rounds = 0
    real = deliverer.run_once

    async def counted(limit: int = 200, *, skip: set[int] | None = None) -> Any:
        nonlocal rounds
        rounds += 1
        return await real(limit, skip=skip)

    deliverer.run_once = counted  # type: ignore[method-assign]

    async def go() -> None:
        stop, wake = asyncio.Event(), asyncio.Event()
        loop = asyncio.create_task(deliverer.run(stop, wake))
        await asyncio.sleep(0.5)
        stop.set()
        await loop

    asyncio.run(go())
    assert rec.singles == ["acme:1000:order.created"]
    assert rounds <= 2  # a 1 s nap at most, not a busy loop over overdue rows


def test_next_due_ignores_rows_queued_behind_their_order(store: Store) -> None:
    commit(store, "rec", [order_event(1), order_event(1, "order.paid")])
    first = store.due(2e10, 10, ["rec"])[0]
    store.mark(first.id, state="pending", attempts=1, body=None, next_at=3e10)
    # The paid event is overdue but waits for the created one: the loop must not wake for it.
    assert store.next_due_at(["rec"]) == 3e10


def test_a_restart_remembers_the_last_minute_of_sends(store: Store) -> None:
    """A new process must not hand WeCom a fresh window: 15 sent just before the restart leave
    5 of the 20 a minute."""
    with ChatSim() as sim:

        async def go() -> tuple[Round, Round]:
            async with httpx.AsyncClient() as http:
                ch = WeComChannel(ChannelContext("wecom", {"url": sim.endpoint("wecom")}, http))
                commit(store, "wecom", [order_event(i) for i in range(15)])
                before = await Deliverer(store, {"wecom": ch}, DeliveryConfig()).run_once()
                commit(store, "wecom", [order_event(i) for i in range(15, 25)])
                after = await Deliverer(store, {"wecom": ch}, DeliveryConfig()).run_once()
                return before, after

        before, after = asyncio.run(go())
        assert set(codes(sim, "wecom")) == {0}
    assert before.sent == 15
    assert (after.sent, after.waiting) == (5, 5)


def test_a_recipient_who_opted_out_holds_the_channel_and_is_announced(store: Store) -> None:
    """Twilio 21610 (the number texted STOP) would refuse every later alert the same way: the
    channel is held (not one dead letter per alert) and the other routed channel is told once."""
    from pollerd.channels.console import ConsoleChannel
    from pollerd.channels.sms import SmsChannel
    from pollerd.config import RouteConfig

    with ChatSim() as sim:

        async def go() -> None:
            async with httpx.AsyncClient() as http:
                sms = SmsChannel(
                    ChannelContext(
                        "owner-sms",
                        {
                            "account_sid": sim.config["twilio_sid"],
                            "auth_token": sim.config["twilio_token"],
                            "sender": sim.config["twilio_from"],
                            "to": "+8613800138000",
                            "api_base": sim.url,
                        },
                        http,
                    )
                )
                ops = ConsoleChannel(ChannelContext("ops", {"stream": "stderr"}, http))
                routes = [RouteConfig(events=["alert.*"], channels=["ops", "owner-sms"])]
                deliverer = Deliverer(
                    store, {"owner-sms": sms, "ops": ops}, DeliveryConfig(), routes=routes
                )
                sim.fail("twilio", "21610", count=10)
                commit(store, "owner-sms", [order_event(i) for i in range(3)])
                await deliverer.drain()

        asyncio.run(go())
    states = [r["state"] for r in rows(store) if r["channel"] == "owner-sms"]
    assert states == ["pending"] * 3  # held, none dead
    assert "owner-sms" in store.broken_channels()
    alerts = [r for r in rows(store) if r["channel"] == "ops"]
    assert len(alerts) == 1 and alerts[0]["state"] == "sent"


def test_a_flash_sale_digest_names_every_order_it_marks_sent(store: Store) -> None:
    """Issue 11: 60 orders in 10 s to one WeCom robot gave 20 single alerts and one digest of
    40 that named 10 ("… and 30 more") and marked all 40 sent. Every order must be named."""
    clock = due_clock()
    with ChatSim(clock=clock) as sim:

        def wecom(http: httpx.AsyncClient) -> Channel:
            return WeComChannel(ChannelContext("wecom", {"url": sim.endpoint("wecom")}, http))

        asyncio.run(flash_sale(wecom, store, clock, batches=6, per_batch=10, every=2.0))
        received = sim.received("wecom")
    assert {r["state"] for r in rows(store)} == {"sent"}
    assert named(received) == {str(1000 + n) for n in range(60)}
    assert not any("more" in json.dumps(r.json) for r in received)


def test_1000_orders_to_one_wecom_robot_are_all_named_within_two_minutes(store: Store) -> None:
    """The bound the README states: at WeCom's 20 messages a minute, each digest naming as
    many orders as its 4,096 bytes hold, 1,000 orders are all named within 2 minutes."""
    clock = due_clock()
    with ChatSim(clock=clock) as sim:

        async def run() -> float:
            async with httpx.AsyncClient() as http:
                ctx = ChannelContext("wecom", {"url": sim.endpoint("wecom")}, http)
                deliverer = Deliverer(
                    store,
                    {"wecom": WeComChannel(ctx)},
                    DeliveryConfig(),
                    clock=clock,
                    monotonic=clock,
                )
                commit(store, "wecom", [order_event(n) for n in range(1000)])
                start = clock.now
                while not all(r["state"] == "sent" for r in rows(store)):
                    assert clock.now - start < 600, "not all sent in 10 minutes"
                    await deliverer.run_once()
                    clock.now += 1.0
                return clock.now - start

        took = asyncio.run(run())
        received = sim.received("wecom")
        answers = codes(sim, "wecom")
    assert set(answers) == {0}
    assert named(received) == {str(1000 + n) for n in range(1000)}
    assert took <= 120.0, took
    sends = sorted(r.at for r in received)
    assert max(sum(1 for t in sends if s <= t < s + 60.0) for s in sends) <= 20
