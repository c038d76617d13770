"""The channel contract's rigs: each channel type pointed at its loopback receiver (ChatSim for
the robots and chat APIs, WebhookSink for the webhook and the Apprise bridge, aiosmtpd for
email, the standard stream for the console), with the receiver's failure table, the options
with a wrong credential, and the hostile fragments its flavour would obey.

A rig is a function `Receivers -> ChannelRig`. The built-in channels' rigs are below, listed in
`BUILTIN`; a channel of another distribution declares its own in the `pollerd.channel_rigs`
entry-point group (`<type> = "<module>:<function>"`), and `CHANNEL_RIGS` (the same registry
helper that finds the channels) finds both. A rig that needs a receiver of its own starts it on
`Receivers.stack`, which is closed when the test ends.

The failure tables are what the receivers answer (research `notifications.md` §4.9); the
classification expected of each row is the contract, not a channel's own class names.
`bench/channels.py` uses the same rigs' options for its throughput figures.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

from pollerd.plugins import Registry
from pollerd_sim.chat import (
    SIM_DINGTALK_SECRET,
    SIM_FEISHU_SECRET,
    SIM_TELEGRAM_TOKEN,
    SIM_TWILIO_TOKEN,
    ChatSim,
)
from pollerd_sim.sink import WebhookSink
from pollerd_sim.testing.events import CUSTOMER
from pollerd_sim.testing.ports import free_port
from pollerd_sim.testing.smtp import PASSWORD, Certs, Inbox

if TYPE_CHECKING:
    import pytest

HOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
WRONG = "wrong-credential-0000"
FORGED = "[acme] Order #9999 refunded"  # what a newline in a name would put on a line of its own
HOSTILE = f"{CUSTOMER}\n{FORGED}"
# The hostile text's own tags, mention and link as a flavour would obey them. Items are named
# "*big* <b> 0", …: "<b> 0" is the customer's tag, never pollerd's own bold.
CHAT_LIVE = ("<s>", "<b> 0", "@everyone", "http://evil", "[x](")


@dataclass(frozen=True)
class Failure:
    """One row of a receiver's failure table: `arrange` makes the next answer a failure, the
    channel must say `kind` ("retry" | "permanent") with `scope`, and `retry_after` when the
    receiver named a wait."""

    label: str
    arrange: Callable[[], None]
    kind: str
    scope: str = "message"
    retry_after: float | None = None


@dataclass
class ChannelRig:
    """A channel pointed at its loopback receiver."""

    options: dict[str, Any]
    texts: Callable[[], list[str]]
    """Every text the receiver accepted, in the form the receiver interprets it."""
    failures: Sequence[Failure] = ()
    wrong_secret: dict[str, Any] | None = None
    """The options with one credential wrong; None: the channel holds no credential."""
    live: tuple[str, ...] = CHAT_LIVE
    """Fragments of the hostile text that must not reach the receiver as they are."""
    verbatim: bool = False
    """The receiver gets data, not markup (a webhook's JSON): the name arrives unchanged."""
    secrets: tuple[str, ...] = ()
    budget_limited: bool = True
    """Whether the receiver enforces a rate limit (then a budget must be published)."""


@dataclass
class Mailbox:
    """An SMTP server's inbox and port; `certs` None: it speaks no TLS and checks no login."""

    inbox: Inbox
    port: int
    certs: Certs | None = None


@dataclass
class Receivers:
    """The loopback receivers a rig may point its channel at, running for the whole suite
    (each test starts them clean); `stack` holds what a rig starts for one test only."""

    chat: ChatSim
    sink: WebhookSink
    mail: Mailbox
    capsys: pytest.CaptureFixture[str] | None = None
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)


RigFactory = Callable[[Receivers], ChannelRig]


# one rig per channel type -------------------------------------------------------


def _chat_texts(sim: ChatSim, service: str) -> Callable[[], list[str]]:
    def texts() -> list[str]:
        found: list[str] = []
        for message in sim.received(service):
            payload = message.json if message.json is not None else message.form
            found.extend(strings(payload))
        return found

    return texts


def strings(value: Any) -> list[str]:
    """Every string in a JSON value (the texts a receiver shows, wherever the flavour puts
    them: markdown content, card elements, blocks, embeds, form fields)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in strings(item)]
    return []


def _chat_failures(
    sim: ChatSim, service: str, table: Sequence[tuple[str, str, str, float | None]]
) -> list[Failure]:
    def arrange(kind: str, after: float | None) -> Callable[[], None]:
        return lambda: sim.fail(service, kind, retry_after=after)

    rows = [Failure(kind, arrange(kind, after), result, scope, after)
            for kind, result, scope, after in table]  # fmt: skip
    rows.append(Failure("connection reset", arrange("reset", None), "retry"))
    return rows


def _chat(
    sim: ChatSim,
    service: str,
    options: dict[str, Any],
    table: Sequence[tuple[str, str, str, float | None]],
    wrong_secret: dict[str, Any],
    **more: Any,
) -> ChannelRig:
    """A channel to one of ChatSim's services; `table` rows are (ChatSim fault, result
    kind, scope, the Retry-After it must carry), and a dropped connection is always one more
    row (retryable)."""
    return ChannelRig(
        options,
        _chat_texts(sim, service),
        _chat_failures(sim, service, table),
        wrong_secret=wrong_secret,
        **more,
    )


def _hook(
    sim: ChatSim,
    service: str,
    credential: str,
    table: Sequence[tuple[str, str, str, float | None]],
    **more: Any,
) -> ChannelRig:
    """A robot or webhook whose only option is its URL, `credential` being the part of the
    URL that is the secret (a key, a token, a path)."""
    url = sim.endpoint(service)
    wrong = {"url": url.replace(credential, WRONG)}
    return _chat(sim, service, {"url": url}, table, wrong, **more)


def wecom(r: Receivers) -> ChannelRig:
    key = str(r.chat.config["wecom_key"])
    table = [
        ("93000", "permanent", "channel", None),  # invalid webhook url: the key was revoked
        ("45009", "retry", "message", 60.0),  # 20 a minute exceeded, in a 200 body
        ("-1", "retry", "message", None),  # system busy
        ("500", "retry", "message", None),
    ]
    return _hook(r.chat, "wecom", key, table, secrets=(key,))


def dingtalk(r: Receivers) -> ChannelRig:
    options = {"url": r.chat.endpoint("dingtalk"), "secret": SIM_DINGTALK_SECRET}
    table = [
        ("310000", "permanent", "channel", None),  # sign mismatch / keyword / IP
        ("300001", "permanent", "channel", None),  # token is not exist
        ("130101", "retry", "message", 600.0),  # send too fast: DingTalk's 10 min lock
        ("500", "retry", "message", None),
    ]
    wrong = {**options, "secret": "SEC" + WRONG}
    secrets = (SIM_DINGTALK_SECRET, r.chat.config["dingtalk_token"])
    return _chat(r.chat, "dingtalk", options, table, wrong, secrets=secrets)


def feishu(r: Receivers) -> ChannelRig:
    options = {"url": r.chat.endpoint("feishu"), "secret": SIM_FEISHU_SECRET}
    table = [
        ("19021", "permanent", "channel", None),  # sign match fail
        ("19022", "permanent", "channel", None),  # IP not allowed
        ("19024", "permanent", "channel", None),  # keyword not found
        ("11232", "retry", "message", 60.0),  # frequency limited, in a 200 body
        ("500", "retry", "message", None),
    ]
    wrong = {**options, "secret": WRONG}
    secrets = (SIM_FEISHU_SECRET, r.chat.config["feishu_hook"])
    return _chat(r.chat, "feishu", options, table, wrong, secrets=secrets)


def slack(r: Receivers) -> ChannelRig:
    path = str(r.chat.config["slack_path"])  # the hook's path is its credential
    table = [
        ("invalid_payload", "permanent", "message", None),
        ("channel_not_found", "permanent", "channel", None),
        ("channel_is_archived", "permanent", "channel", None),
        ("action_prohibited", "permanent", "channel", None),
        ("no_service", "permanent", "channel", None),  # the hook was revoked
        ("429", "retry", "message", 7.0),
        ("500", "retry", "message", None),
    ]
    live = ("<s>", "<b> 0", "<!everyone>", "@everyone", "http://evil")
    return _hook(r.chat, "slack", path.rsplit("/", 1)[1], table, live=live, secrets=(path,))


def telegram(r: Receivers) -> ChannelRig:
    options = {
        "token": SIM_TELEGRAM_TOKEN,
        "chat_id": r.chat.config["telegram_chat"],
        "api_base": r.chat.url,
    }
    table = [
        ("400_chat", "permanent", "channel", None),  # chat not found
        ("400_migrate", "permanent", "channel", None),  # group became a supergroup
        ("401", "permanent", "channel", None),
        ("403_blocked", "permanent", "recipient", None),  # the bot was blocked
        ("429", "retry", "message", 7.0),
        ("500", "retry", "message", None),
    ]
    wrong = {**options, "token": "123456:" + WRONG}
    live = ("<s>", "<b> 0", "@everyone", "http://evil")  # HTML mode: "[x](" is only text
    secrets = (SIM_TELEGRAM_TOKEN,)
    return _chat(r.chat, "telegram", options, table, wrong, live=live, secrets=secrets)


def discord(r: Receivers) -> ChannelRig:
    token = str(r.chat.config["discord_token"])
    table = [
        ("404_unknown_webhook", "permanent", "channel", None),
        ("401", "permanent", "channel", None),
        ("400", "permanent", "message", None),  # this message's form is invalid
        ("429", "retry", "message", 7.0),
        ("500", "retry", "message", None),
    ]
    # Discord shows "\\@everyone" as a literal "@everyone" that pings nobody.
    live = ("<s>", "<b> 0", " @everyone", "http://evil", "[x](")
    return _hook(r.chat, "discord", token, table, live=live, secrets=(token,))


def sms(r: Receivers) -> ChannelRig:
    options = {
        "account_sid": r.chat.config["twilio_sid"],
        "auth_token": SIM_TWILIO_TOKEN,
        "sender": r.chat.config["twilio_from"],
        "to": "+8613800001111",
        "api_base": r.chat.url,
    }
    table = [
        ("21211", "permanent", "message", None),  # invalid To number
        ("21610", "permanent", "recipient", None),  # the recipient replied STOP
        ("21606", "permanent", "channel", None),  # the From number cannot send
        ("21408", "permanent", "channel", None),  # region not enabled
        ("20003", "permanent", "channel", None),  # authentication
        ("20429", "retry", "message", None),
        ("500", "retry", "message", None),
    ]
    return _chat(
        r.chat,
        "twilio",
        options,
        table,
        {**options, "auth_token": WRONG},
        live=(),  # a text message interprets no markup; the forged line still must not appear
        secrets=(SIM_TWILIO_TOKEN,),
        # Twilio queues what it accepts (its limits are per sender and carrier); pollerd
        # publishes no budget for it.
        budget_limited=False,
    )


def _sink_failures(sink: WebhookSink, best_effort: bool) -> list[Failure]:
    def mode(name: str, after: int | None = None) -> Callable[[], None]:
        return lambda: sink.set_mode(name, retry_after=after)

    if best_effort:  # Apprise says only "sent or not": every failure is worth a retry
        return [Failure(m, mode(m), "retry") for m in ("500", "429", "410", "down")]
    return [
        Failure("500", mode("500"), "retry"),
        Failure("429", mode("429", 7), "retry", retry_after=7.0),
        Failure("410 Gone", mode("410"), "permanent", "channel"),
        Failure("connection dropped", mode("down"), "retry"),
    ]


def webhook(r: Receivers) -> ChannelRig:
    def texts() -> list[str]:
        return [receipt.body.decode() for receipt in r.sink.receipts]

    return ChannelRig(
        {"url": r.sink.url, "secret": HOOK_SECRET},
        texts,
        _sink_failures(r.sink, best_effort=False),
        # The signing secret is the receiver's to check; the sink does not, and 410 Gone is
        # how a receiver says "never again" (see the failure table).
        wrong_secret=None,
        live=(),
        verbatim=True,
        secrets=(HOOK_SECRET,),
        budget_limited=False,
    )


def apprise(r: Receivers) -> ChannelRig:
    def texts() -> list[str]:
        return [str(v) for receipt in r.sink.receipts for v in strings(receipt.json())]

    return ChannelRig(
        {"url": f"json://127.0.0.1:{r.sink.port}/apprise"},
        texts,
        _sink_failures(r.sink, best_effort=True),
        live=(),  # json:// carries plain text; a markup service escapes on Apprise's side
        budget_limited=False,
    )


def email(r: Receivers) -> ChannelRig:
    mail = r.mail
    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": mail.port,
        "sender": "pollerd <alerts@example.com>",
        "to": ["ops@example.com"],
        "timeout": "5s",
    }
    if mail.certs is None:
        options["security"] = "none"
    else:
        options.update(ca_file=str(mail.certs.ca), username="alerts", password=PASSWORD)

    def texts() -> list[str]:
        found: list[str] = []
        for message in mail.inbox.messages:
            found.append(str(message["Subject"]))
            html = message.get_body(("html",))
            if isinstance(html, EmailMessage):
                found.append(html.get_content())
        return found

    def refuse(reply: str) -> Callable[[], None]:
        def arrange() -> None:
            mail.inbox.data_reply = reply

        return arrange

    def nobody_listening() -> None:
        options["port"] = free_port()

    return ChannelRig(
        options,
        texts,
        [
            Failure("451 try later", refuse("451 4.3.0 try again later"), "retry"),
            Failure("554 refused", refuse("554 5.7.1 message refused"), "permanent"),
            Failure("nobody listening", nobody_listening, "retry"),
        ],
        wrong_secret={**options, "password": WRONG},
        live=("<s>", "<b> 0"),  # in the HTML part; the text part is plain
        secrets=(PASSWORD,),
        budget_limited=False,
    )


def console(r: Receivers) -> ChannelRig:
    written: list[str] = []
    capsys = r.capsys
    assert capsys is not None, "the console rig reads the captured standard output"

    def captured() -> list[str]:
        written.append(capsys.readouterr().out)
        return ["".join(written)]

    return ChannelRig({}, captured, live=(), budget_limited=False)


_HERE = "pollerd_sim.testing.channel_rigs"
BUILTIN = {
    "console": f"{_HERE}:console",
    "webhook": f"{_HERE}:webhook",
    "email": f"{_HERE}:email",
    "wecom": f"{_HERE}:wecom",
    "dingtalk": f"{_HERE}:dingtalk",
    "feishu": f"{_HERE}:feishu",
    "lark": f"{_HERE}:feishu",  # Feishu's international twin: the same robot protocol
    "slack": f"{_HERE}:slack",
    "telegram": f"{_HERE}:telegram",
    "discord": f"{_HERE}:discord",
    "sms": f"{_HERE}:sms",
    "apprise": f"{_HERE}:apprise",
}
"""channel type → its rig, for the built-in channels (others: the `pollerd.channel_rigs`
entry points)."""

CHANNEL_RIGS: Registry[RigFactory] = Registry(
    "pollerd.channel_rigs",
    noun="channel contract rig",
    builtin=BUILTIN,
    accept=callable,
    what="function Receivers -> ChannelRig",
)
