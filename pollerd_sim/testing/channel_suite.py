"""One contract every channel keeps, run against each channel and its loopback receiver
(STYLE.md: "one parametrised contract suite every source and every channel must pass"): what
the delivery loop relies on, whatever the destination.

`ChannelContract` is the suite, a pytest class to subclass in a test module; the subclass gives
the `kind` fixture (the channel type, or a parametrised one over several types). Each test gets
`channel_rig`, found by `CHANNEL_RIGS` (`pollerd_sim.testing.channel_rigs`: the built-in rigs,
and the `pollerd.channel_rigs` entry points of other distributions); a type without a rig fails,
naming what to add. pollerd's own tests/contract/test_channels.py subclasses it over every type
the `pollerd.channels` entry points register, so a channel gets this suite by being registered.
A channel in another repository runs it in its own tests:

    from pollerd_sim.testing import ChannelContract

    class TestPigeonChannel(ChannelContract):
        @pytest.fixture
        def kind(self) -> str:
            return "pigeon"

A rig is the channel's receiver (ChatSim for the robots and chat APIs, WebhookSink for the
webhook and the Apprise bridge, aiosmtpd for email, the standard stream for the console), the
options that reach it, the same options with a wrong credential, and the receiver's failure
table.

What each channel must show, observed at the receiver and in the `SendResult` (the delivery
loop's whole view of a send, not any class of the channel's own):
- a hostile customer and item (markup of every flavour, `@everyone`, a link, a newline that
  would forge a second alert line) reach the receiver inert;
- the longest alert the templates can make is accepted by a receiver that enforces its limit;
- every failure the receiver can give is classified: retryable (with the receiver's
  Retry-After when it names one) or permanent with a scope (message, recipient, channel);
- a wrong credential holds the channel (permanent, scope "channel"), without echoing it;
- a published budget never names a credential and is within what the receiver allows.
The channel's unit tests prove the details (exact escapes, fallbacks, signing); this suite is
the floor every channel, built-in or third-party, must stand on. It imports pytest, a test
extra; nothing outside the tests imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pollerd.channels import channel_class
from pollerd.channels.base import Channel, ChannelContext, SendResult
from pollerd.model import Event
from pollerd.plugins import UnknownPlugin
from pollerd_sim.chat import ChatSim
from pollerd_sim.sink import WebhookSink
from pollerd_sim.testing.channel_rigs import (
    CHANNEL_RIGS,
    HOSTILE,
    WRONG,
    ChannelRig,
    Mailbox,
    Receivers,
    strings,
)
from pollerd_sim.testing.events import ITEM, line_items, paid_event
from pollerd_sim.testing.sending import send_events
from pollerd_sim.testing.smtp import Certs, Inbox, authenticate, make_certs, smtp_server


def send(kind: str, options: dict[str, Any], *events: Event) -> list[SendResult]:
    """Render each event once and send it, as the outbox does; a fresh client per call."""

    def make(http: httpx.AsyncClient) -> Channel:
        return channel_class(kind)(ChannelContext(kind, options, http))

    return send_events(make, events, close=True).results


def budget(kind: str, options: dict[str, Any]) -> Any:
    async def go() -> Any:
        async with httpx.AsyncClient() as http:
            return channel_class(kind)(ChannelContext(kind, options, http)).budget()

    return asyncio.run(go())


def _json_strings(text: str) -> list[str]:
    return strings(json.loads(text))


class ChannelContract:
    """The suite; a subclass gives the `kind` fixture (see the module docstring). Its
    receivers run once per class, and each test starts them clean."""

    @pytest.fixture(scope="class")
    @classmethod
    def contract_chat(cls) -> Iterator[ChatSim]:
        with ChatSim() as sim:
            yield sim

    @pytest.fixture(scope="class")
    @classmethod
    def contract_sink(cls) -> Iterator[WebhookSink]:
        with WebhookSink() as receiver:
            yield receiver

    @pytest.fixture(scope="class")
    @classmethod
    def contract_certs(cls, tmp_path_factory: pytest.TempPathFactory) -> Certs:
        return make_certs(tmp_path_factory.mktemp("certs"))

    @pytest.fixture(scope="class")
    @classmethod
    def contract_mailbox(cls, contract_certs: Certs) -> Iterator[Mailbox]:
        inbox = Inbox()
        server = {"tls_context": contract_certs.server_context(), "authenticator": authenticate}
        with smtp_server(inbox, auth_required=True, **server) as port:
            yield Mailbox(inbox, port, contract_certs)

    @pytest.fixture
    def receivers(
        self,
        contract_chat: ChatSim,
        contract_sink: WebhookSink,
        contract_mailbox: Mailbox,
        capsys: pytest.CaptureFixture[str],
    ) -> Iterator[Receivers]:
        contract_chat.clear()
        contract_sink.clear()
        contract_sink.set_mode("ok")
        contract_mailbox.inbox.clear()
        with contextlib.ExitStack() as stack:
            yield Receivers(contract_chat, contract_sink, contract_mailbox, capsys, stack)

    @pytest.fixture
    def channel_rig(self, kind: str, receivers: Receivers) -> ChannelRig:
        try:
            make = CHANNEL_RIGS.load(kind)
        except UnknownPlugin:
            pytest.fail(
                f"channel type {kind!r} is registered but has no contract rig: declare one in "
                "the `pollerd.channel_rigs` entry-point group (a function Receivers -> "
                "ChannelRig; built-in channels: BUILTIN in pollerd_sim/testing/channel_rigs.py)"
            )
        return make(receivers)

    def test_hostile_text_reaches_the_receiver_inert(
        self, kind: str, channel_rig: ChannelRig
    ) -> None:
        """Customer and item text is attacker-controlled: no tag, mass mention or link of it is
        obeyed by the receiver's flavour, and its newline forges no line of its own."""
        event = paid_event(HOSTILE, items=line_items(2, ITEM), email="j***@example.com")
        [result] = send(kind, channel_rig.options, event)
        assert result.kind == "ok", result.detail
        texts = channel_rig.texts()
        assert texts, "the receiver got nothing"
        for text in texts:
            for fragment in channel_rig.live:
                assert fragment not in text, (fragment, text)
            for line in text.splitlines():  # the name stays on one line, with its own start
                assert "9999" not in line or "everyone" in line, (line, text)
        if channel_rig.verbatim:
            assert any(HOSTILE in _json_strings(text) for text in texts)

    def test_the_longest_alert_fits_the_receiver(self, kind: str, channel_rig: ChannelRig) -> None:
        """30 items of 175-character names and a 150-character CJK customer: the receivers that
        enforce a size (every chat service in ChatSim) must accept what the channel sends."""
        event = paid_event(
            "张" * 150, items=line_items(30, "超长的商品名称" * 25), email="z***@x.cn"
        )
        [result] = send(kind, channel_rig.options, event)
        assert result.kind == "ok", result.detail
        assert channel_rig.texts(), "the receiver accepted nothing"

    def test_every_failure_is_classified(self, kind: str, channel_rig: ChannelRig) -> None:
        """The receiver's failure table, row by row: what the delivery loop does next (retry
        after the named wait, or drop the message / the recipient / hold the channel) depends
        on nothing else; and no classification quotes a credential."""
        if not channel_rig.failures:
            pytest.skip(f"{kind} has no receiver that could refuse a message")
        for row in channel_rig.failures:
            row.arrange()
            [result] = send(kind, channel_rig.options, paid_event())
            got = (result.kind, result.scope if result.kind == "permanent" else "message")
            assert got == (row.kind, row.scope), (row.label, result)
            if row.retry_after is not None:
                assert result.retry_after == row.retry_after, (row.label, result)
            for secret in channel_rig.secrets:
                assert secret not in result.detail, (row.label, result.detail)

    def test_a_wrong_credential_holds_the_channel(self, kind: str, channel_rig: ChannelRig) -> None:
        if channel_rig.wrong_secret is None:
            pytest.skip(f"{kind} holds no credential its receiver checks")
        [result] = send(kind, channel_rig.wrong_secret, paid_event())
        assert (result.kind, result.scope) == ("permanent", "channel"), result
        assert WRONG not in result.detail
        assert not channel_rig.texts(), "a message went through with a wrong credential"

    def test_the_budget_is_published_without_credentials_and_honoured(
        self, kind: str, channel_rig: ChannelRig
    ) -> None:
        """A receiver with a rate limit needs a published Budget (the delivery loop paces by it,
        never past it); its key is logged, so it names no credential; and the tightest window's
        count, sent back to back, is within what the receiver allows (ChatSim enforces each
        service's published limits)."""
        published = budget(kind, channel_rig.options)
        if not channel_rig.budget_limited:
            assert published is None or published.windows, published
            pytest.skip(f"{kind}'s receiver enforces no rate limit pollerd must pace")
        assert published is not None, f"{kind}'s receiver has a rate limit: publish a Budget"
        for secret in channel_rig.secrets:
            assert secret not in published.key
        burst = min(count for count, _ in published.windows)
        results = send(
            kind, channel_rig.options, *(paid_event(number=f"{n}") for n in range(burst))
        )
        assert [r.kind for r in results] == ["ok"] * burst, [r.detail for r in results]
