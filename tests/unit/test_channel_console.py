"""`console` channel: text for people, exact event JSON for scripts, on the chosen stream."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from pollerd.channels.base import ChannelContext
from pollerd.channels.console import ConsoleChannel
from pollerd.model import Event, LineItem
from pollerd_sim.testing.events import paid_event

AT = datetime(2026, 11, 22, 23, 30, tzinfo=UTC)
HOSTILE = "<s>**x** @everyone [x](http://evil)"
ADMIN = "https://shop.example.com/wp-admin/post.php?post=1001&action=edit"


def sample(
    name: str | None = None,
    *,
    email: str | None = "j***@example.com",
    items: tuple[LineItem, ...] = (),
    number: str = "1001",
    admin_url: str | None = None,
) -> Event:
    return paid_event(
        name,
        items=items,
        email=email,
        number=number,
        order_id=number,
        admin_url=admin_url,
        currency="USD",
        at=AT,
        payment_method_title="Credit card",
    )


def channel(options: Any = None, **ctx: Any) -> ConsoleChannel:
    return ConsoleChannel(ChannelContext("console", options or {}, None, **ctx))  # type: ignore[arg-type]


def test_text_is_summary_and_indented_detail(capsys: pytest.CaptureFixture[str]) -> None:
    ch = channel(timezone="Asia/Shanghai", locale="zh-CN")
    event = sample()
    result = asyncio.run(ch.send(event, ch.render(event)))
    assert result.kind == "ok"
    out = capsys.readouterr()
    assert out.err == ""
    assert out.out == (
        "【acme】订单 #1001 已付款 · US$25.00 · j***@example.com · 2026年11月23日 07:30 北京时间\n"
        "  金额：US$25.00\n"
        "  支付方式：Credit card\n"
        "  顾客：j***@example.com\n"
    )


def test_text_in_english_with_items_and_link() -> None:
    event = sample(items=(LineItem("Mug", 2, "20.00"),), admin_url=ADMIN)
    assert channel().render(event) == (
        "[acme] Order #1001 paid · $25.00 · j***@example.com · Nov 22, 2026 23:30 UTC\n"
        "  Total: $25.00\n"
        "  Payment: Credit card\n"
        "  Customer: j***@example.com\n"
        "  2 × Mug\n"
        f"  Open: {ADMIN}"
    )


def test_hostile_customer_and_item_are_inert() -> None:
    """The journal is read in terminals and log viewers that link URLs and may forward lines
    to chat: no tag, mention or link from order data; markdown stays literal text."""
    event = sample(HOSTILE, email=None, items=(LineItem("*big* <b>", 1, "25.00"),))
    rendered = channel().render(event)
    head, *details = rendered.split("\n")
    assert "· ＜s＞**x** ＠everyone [x](http：//evil) ·" in head
    assert "  1 × *big* ＜b＞" in details
    assert "<" not in rendered and "@everyone" not in rendered and "http://" not in rendered


def test_300_items_show_ten_and_count_the_rest() -> None:
    items = tuple(LineItem(f"Sticker {n}", 1, "0.10") for n in range(300))
    lines = channel().render(sample(items=items, admin_url=ADMIN)).split("\n")
    assert [line for line in lines if "Sticker" in line] == [
        f"  1 × Sticker {n}" for n in range(10)
    ]
    assert lines[-2:] == ["  … (+290 items)", f"  Open: {ADMIN}"]


def test_digest_is_one_block_or_event_json_lines() -> None:
    events = [sample(number=str(n)) for n in (1001, 1002, 1003)]
    assert channel().render_digest(events) == (
        "Digest: 3 order alerts\n"
        "  Total of 3 orders: $75.00\n"
        "  [acme] Order #1001 paid · $25.00 · j***@example.com · Nov 22, 2026 23:30 UTC\n"
        "  [acme] Order #1002 paid · $25.00 · j***@example.com · Nov 22, 2026 23:30 UTC\n"
        "  [acme] Order #1003 paid · $25.00 · j***@example.com · Nov 22, 2026 23:30 UTC"
    )
    as_json = channel({"format": "json"}).render_digest(events)
    assert [json.loads(line) for line in as_json.split("\n")] == [e.to_json() for e in events]


def test_json_is_the_event_body_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    ch = channel({"stream": "stderr", "format": "json"})
    event = sample()
    rendered = ch.render(event)
    assert rendered == event.body()
    assert asyncio.run(ch.send(event, rendered)).kind == "ok"
    out = capsys.readouterr()
    assert out.out == ""
    assert json.loads(out.err) == event.to_json() and out.err.count("\n") == 1


def test_accepts_a_validated_options_instance(capsys: pytest.CaptureFixture[str]) -> None:
    options = ConsoleChannel.Options(format="json")
    ch = channel(options)
    assert ch.options is options
    assert ch.render(sample()).startswith("{")


def test_options_are_strict() -> None:
    with pytest.raises(ValidationError):
        ConsoleChannel.Options.model_validate({"stream": "stdlog"})
    with pytest.raises(ValidationError):
        ConsoleChannel.Options.model_validate({"colour": True})


def test_a_closed_stream_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr("sys.stdout", Broken())
    result = asyncio.run(channel().send(sample(), "x"))
    assert result.kind == "retry" and "Broken pipe" in result.detail
