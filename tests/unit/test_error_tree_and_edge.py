"""One error tree, one outgoing-HTTP edge (issue 13 items 2 and 3).

The tree is complete: every exception class pollerd defines derives from `pollerd.errors` and
is drawn in its docstring. The edge names host:port on a transport failure, never lets a
caller's secret into a message or the DEBUG line, and the channels' `SendResult` is the value
form of the same retryable / permanent(scope) vocabulary."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import pkgutil
import socket
from typing import Any

import httpx
import pytest
from loguru import logger

import pollerd
from pollerd import errors
from pollerd.channels.base import SendResult
from pollerd.delivery.outcome import attempt
from pollerd.errors import (
    ChannelError,
    ControlFlow,
    Permanent,
    PermanentChannelError,
    PermanentSourceError,
    PollerdError,
    Retryable,
    RetryableChannelError,
    RetryableSourceError,
)
from pollerd.http import Edge

TOKEN = "bot-token-0123456789"
OPTIONAL = ("pollerd.channels.apprise_bridge",)  # needs the optional apprise package


def pollerd_exceptions() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(pollerd.__path__, "pollerd."):
        try:
            module = importlib.import_module(info.name)
        except ImportError:
            if info.name in OPTIONAL:
                continue
            raise
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == info.name:
                found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return list(found.values())


def test_every_exception_pollerd_defines_is_in_the_tree_and_drawn() -> None:
    roots = (PollerdError, ControlFlow, Retryable, Permanent)
    classes = pollerd_exceptions()
    assert len(classes) >= 30
    drawing = errors.__doc__ or ""
    for cls in classes:
        assert issubclass(cls, roots), f"{cls.__module__}.{cls.__qualname__} is outside the tree"
        assert cls.__qualname__ in drawing, f"{cls.__qualname__} is not drawn in errors.py"


def test_one_vocabulary_for_both_edges() -> None:
    assert not hasattr(errors, "FatalSourceError")  # one word for it: permanent
    source = PermanentSourceError("shop", "wrong key")
    assert isinstance(source, Permanent) and source.scope == "store"
    assert str(source) == "store shop: wrong key"
    busy = RetryableSourceError("shop", "429", retry_after=3.0)
    assert isinstance(busy, Retryable) and busy.retry_after == 3.0
    gone = PermanentChannelError("hook removed", scope="channel")
    assert isinstance(gone, Permanent) and isinstance(gone, ChannelError)
    assert isinstance(RetryableChannelError("reset"), Retryable)


@pytest.mark.parametrize(
    "result",
    [
        SendResult.retry("busy", after=60.0),
        SendResult.retry("reset"),
        SendResult.permanent("blocked", "recipient"),
        SendResult.permanent("hook removed", "channel"),
        SendResult.permanent("bad payload"),
    ],
)
def test_send_result_is_the_value_form_of_the_channel_errors(result: SendResult) -> None:
    error = result.error()
    assert isinstance(error, ChannelError)
    assert SendResult.of(error) == result
    assert SendResult.ok().error() is None


def test_a_raised_channel_error_is_taken_as_the_channel_says() -> None:
    async def refuse() -> SendResult:
        raise PermanentChannelError("hook removed", scope="channel")

    async def crash() -> SendResult:
        raise KeyError("bug")

    held = asyncio.run(attempt(refuse(), 5.0))
    assert (held.kind, held.scope, held.detail) == ("permanent", "channel", "hook removed")
    bug = asyncio.run(attempt(crash(), 5.0))
    assert bug.kind == "retry" and "KeyError" in bug.detail


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_transport_failure_is_retryable_names_host_port_and_no_secret() -> None:
    port = closed_port()
    lines: list[str] = []
    sink = logger.add(lines.append, level="DEBUG", format="{message}")
    seen: list[int | str] = []

    async def go() -> None:
        async with httpx.AsyncClient() as http:
            edge = Edge(http, "telegram http://127.0.0.1", lambda: [TOKEN], observe=seen.append)
            await edge.request("POST", f"http://127.0.0.1:{port}/bot{TOKEN}/send", timeout=2.0)

    try:
        with pytest.raises(RetryableChannelError) as caught:
            asyncio.run(go())
    finally:
        logger.remove(sink)
    text = str(caught.value)
    assert f"127.0.0.1:{port}" in text and "ConnectError" in text
    assert TOKEN not in text and all(TOKEN not in line for line in lines)
    assert any("telegram http://127.0.0.1: POST -> error" in line for line in lines)
    assert seen == ["error"]


def test_the_caller_classifies_and_the_debug_line_keeps_the_path_only_when_asked() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"retry-after": "7"}, text=f"slow down {TOKEN}")

    lines: list[str] = []
    sink = logger.add(lines.append, level="DEBUG", format="{message}")

    def classify(response: httpx.Response) -> Any:
        return response.status_code

    async def go(edge_kwargs: dict[str, Any]) -> Any:
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
            edge = Edge(http, "store shop", lambda: [TOKEN], **edge_kwargs)
            url = f"https://shop.example/wp-json/wc/v3/orders?page=2&consumer_key={TOKEN}"
            return await edge.send("GET", url, classify, timeout=2.0)

    try:
        assert asyncio.run(go({})) == 429
        assert asyncio.run(go({"log_path": True})) == 429
    finally:
        logger.remove(sink)
    assert lines[0].startswith("store shop: GET -> 429")
    assert lines[1].startswith("store shop: GET /wp-json/wc/v3/orders?page=2 -> 429")
    assert all(TOKEN not in line for line in lines)
