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
from pollerd.model import Event, Order

AT = datetime(2026, 11, 22, 23, 30, tzinfo=UTC)


def sample() -> Event:
    order = Order(
        store="acme",
        platform="woocommerce",
        id="1001",
        number="1001",
        status="processing",
        created_at=AT,
        updated_at=AT,
        total="25.00",
        currency="USD",
        payment_method_title="Credit card",
        customer_email="j***@example.com",
    )
    return Event("order.paid", "acme", "woocommerce", "1001", AT, AT, False, order.to_json())


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
        "【acme】订单 #1001 已付款 · 25.00 USD · j***@example.com · 2026-11-23 07:30 北京时间\n"
        "  金额：25.00 USD\n"
        "  支付方式：Credit card\n"
        "  顾客：j***@example.com\n"
    )


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
