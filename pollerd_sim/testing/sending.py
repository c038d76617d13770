"""Send alerts through a channel the way the outbox does, for the channel tests and the channel
contract suite: each event rendered ONCE, that rendering sent `times` times (a resend is the
stored rendering, byte for byte), through one channel on one shared HTTP client."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

from pollerd.channels.base import Channel, SendResult
from pollerd.model import Event


@dataclass(frozen=True)
class Sent:
    results: list[SendResult]
    rendered: list[str]  # one per event
    channel: Channel


def send_events(
    make: Callable[[httpx.AsyncClient], Channel],
    events: Sequence[Event],
    *,
    times: int = 1,
    transport: httpx.AsyncBaseTransport | None = None,
    close: bool = False,
) -> Sent:
    """`make` builds the channel on the shared client; `close` closes it afterwards."""

    async def go() -> Sent:
        async with httpx.AsyncClient(transport=transport) as http:
            channel = make(http)
            results: list[SendResult] = []
            rendered: list[str] = []
            try:
                for event in events:
                    rendered.append(channel.render(event))
                    results += [await channel.send(event, rendered[-1]) for _ in range(times)]
            finally:
                if close:
                    await channel.close()
            return Sent(results, rendered, channel)

    return asyncio.run(go())
