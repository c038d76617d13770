"""`email` channel against a real aiosmtpd server on 127.0.0.1: plain, STARTTLS and implicit TLS
with a certificate made here, authentication, and the server's refusals."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from pollerd.channels.base import ChannelContext
from pollerd.channels.email import EmailChannel, message_id
from pollerd.model import Event, LineItem
from pollerd.templates import templates_for
from pollerd_sim.testing.events import paid_event
from pollerd_sim.testing.ports import free_port
from pollerd_sim.testing.sending import send_events
from pollerd_sim.testing.smtp import (
    PASSWORD,
    Certs,
    Inbox,
    authenticate,
    make_certs,
    smtp_server,
)

AT = datetime(2026, 11, 22, 23, 30, tzinfo=UTC)
HOSTILE = "<s>**x** @everyone [x](http://evil)"
ADMIN = "https://shop.example.com/wp-admin/post.php?post=1001&action=edit"


def sample(
    name: str = "<s>Eve</s> & co",
    *,
    email: str | None = "e***@example.com",
    items: tuple[LineItem, ...] = (LineItem("Mug <script>alert(1)</script>", 2, "20.00"),),
) -> Event:
    return paid_event(
        name, items=items, email=email, admin_url=ADMIN, at=AT, payment_method_title="Card <b>"
    )


# the server: pollerd_sim/testing/smtp.py ----------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def deliver(port: int, event: Event | None = None, *, times: int = 1, **options: Any) -> list[Any]:
    """Render once and send `times` times, as the outbox does; returns results (and channel)."""
    base = {
        "host": "127.0.0.1",
        "port": port,
        "sender": "pollerd <alerts@example.com>",
        "to": ["ops@example.com", "Owner <owner@example.com>"],
        "timeout": "5s",
    }

    def make(_: httpx.AsyncClient) -> EmailChannel:  # SMTP: the channel takes no HTTP client
        return EmailChannel(ChannelContext("mail", {**base, **options}, None, "Asia/Shanghai"))  # type: ignore[arg-type]

    return list(send_events(make, [event or sample()], times=times).results)


# tests --------------------------------------------------------------------------------------


def test_plain_delivery_builds_the_whole_message() -> None:
    inbox = Inbox()
    event = sample()
    with smtp_server(inbox) as port:
        [result] = deliver(port, event, security="none")
    assert result.kind == "ok", result.detail
    [envelope] = inbox.envelopes
    assert envelope.mail_from == "alerts@example.com"
    assert envelope.rcpt_tos == ["ops@example.com", "owner@example.com"]
    [msg] = inbox.messages
    assert msg.get_content_type() == "multipart/alternative"
    types = [part.get_content_type() for part in msg.iter_parts()]
    assert types == ["text/plain", "text/html"]
    expected_id = "<" + hashlib.sha256(b"acme:1001:order.paid").hexdigest()[:32] + "@pollerd>"
    assert msg["Message-ID"] == expected_id == message_id(event.id)
    subject = templates_for().render(
        event.to_json(), flavour="email_text", timezone="Asia/Shanghai"
    )
    assert msg["Subject"] == subject.title
    assert msg["Subject"] == (
        "[acme] Order #1001 paid · €25.00 · e***@example.com · Nov 23, 2026 07:30 CST"
    )
    assert msg["From"] == "pollerd <alerts@example.com>"
    assert msg["To"] == "ops@example.com, Owner <owner@example.com>"
    assert msg["Date"] == "Mon, 23 Nov 2026 07:30:00 +0800"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert inbox.over_tls == [False]
    text, _ = parts(msg)
    assert text.startswith(msg["Subject"] + "\n\n")  # the email_text flavour: summary, details
    assert "Customer: ＜s＞Eve＜/s＞ & co · e***@example.com" in text
    assert "2 × Mug ＜script＞alert(1)＜/script＞" in text
    assert f"Open: {ADMIN}" in text
    assert "-- " not in text  # no unsubscribe footer without a public_url


def test_html_escapes_every_order_value() -> None:
    inbox = Inbox()
    with smtp_server(inbox) as port:
        deliver(port, security="none")
    html = inbox.messages[0].get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "&lt;s&gt;Eve&lt;/s&gt; &amp; co" in html
    assert "<s>" not in html and "<script>" not in html and "<b>" not in html
    assert "Card &lt;b&gt;" in html
    assert '<a href="https://shop.example.com/wp-admin/post.php?post=1001&amp;action=edit">' in html


def test_message_is_7bit_and_stable_across_resends() -> None:
    inbox = Inbox()
    event = sample(name="张三 <s>")
    with smtp_server(inbox) as port:
        results = deliver(port, event, times=2, security="none")
    assert [r.kind for r in results] == ["ok", "ok"]
    first, second = inbox.messages
    assert first["Message-ID"] == second["Message-ID"] == message_id(event.id)
    assert inbox.envelopes[0].content == inbox.envelopes[1].content
    assert all(byte < 128 for byte in inbox.envelopes[0].content)  # type: ignore[union-attr]
    html = first.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "张三 &lt;s&gt;" in html


def test_zh_cn_subject_survives_encoding() -> None:
    inbox = Inbox()
    event = sample()
    with smtp_server(inbox) as port:
        channel = EmailChannel(
            ChannelContext(
                "mail",
                {
                    "host": "127.0.0.1",
                    "port": port,
                    "security": "none",
                    "sender": "运维 <alerts@example.com>",
                    "to": ["ops@example.com"],
                },
                None,  # type: ignore[arg-type]
                "Asia/Shanghai",
                "zh-CN",
            )
        )
        result = asyncio.run(channel.send(event, channel.render(event)))
    assert result.kind == "ok"
    assert inbox.messages[0]["Subject"].startswith("【acme】订单 #1001 已付款 · €25.00")
    assert inbox.messages[0]["Subject"].endswith("2026年11月23日 07:30 北京时间")
    assert inbox.messages[0]["From"] == "运维 <alerts@example.com>"


def parts(msg: EmailMessage) -> tuple[str, str]:
    """(text part, HTML part) of a delivered message, with "\n" line ends."""
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    page = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    return text.replace("\r\n", "\n"), page.replace("\r\n", "\n")


def test_hostile_customer_and_item_reach_every_part_inert() -> None:
    """No tag, bold, mention or link from order data: not in the Subject (the name is the
    summary's customer when there is no email), the text part or the HTML part."""
    inbox = Inbox()
    event = sample(name=HOSTILE, email=None, items=(LineItem("*big* <b>", 1, "25.00"),))
    with smtp_server(inbox) as port:
        [result] = deliver(port, event, security="none")
    assert result.kind == "ok", result.detail
    [msg] = inbox.messages
    text, page = parts(msg)
    for shown in (msg["Subject"], text):
        assert "＜s＞**x** ＠everyone [x](http：//evil)" in shown
        assert "<" not in shown and "@everyone" not in shown and "http://evil" not in shown
    assert "1 × *big* ＜b＞" in text
    assert "&lt;s&gt;**x** @everyone [x](http：//evil)" in page
    assert "1 × *big* &lt;b&gt;" in page
    assert "<s>" not in page and "<b>" not in page and "http://evil" not in page
    assert page.count("<strong>") == 1  # pollerd's own summary line, nothing else bold
    assert page.count("<a ") == 1 and f'<a href="{ADMIN.replace("&", "&amp;")}">' in page


def test_300_items_list_ten_and_count_the_rest() -> None:
    """An alert is not an invoice: at most 10 line items, then "… (+N items)"; the admin link
    stays, and it is still one message (email has no byte limit to fit)."""
    inbox = Inbox()
    items = tuple(LineItem(f"Sticker {n}", 1, "0.10") for n in range(300))
    with smtp_server(inbox) as port:
        [result] = deliver(port, sample(items=items), security="none")
    assert result.kind == "ok", result.detail
    [msg] = inbox.messages
    text, page = parts(msg)
    assert text.count("1 × Sticker") == 10 and "1 × Sticker 9\n" in text
    assert "… (+290 items)" in text and f"Open: {ADMIN}" in text
    assert page.count("<li>1 × Sticker") == 10 and "<li>… (+290 items)</li>" in page
    assert f'<a href="{ADMIN.replace("&", "&amp;")}">' in page


def test_starttls_with_trusted_ca_file(certs: Certs) -> None:
    inbox = Inbox()
    with smtp_server(inbox, tls_context=certs.server_context(), require_starttls=True) as port:
        [result] = deliver(port, ca_file=str(certs.ca))
    assert result.kind == "ok", result.detail
    assert inbox.over_tls == [True]


def test_starttls_with_untrusted_certificate_is_refused(certs: Certs) -> None:
    inbox = Inbox()
    with smtp_server(inbox, tls_context=certs.server_context(), require_starttls=True) as port:
        [result] = deliver(port)  # verify = true, system CAs only
    assert (result.kind, result.scope) == ("permanent", "channel")
    assert "not trusted" in result.detail and "ca_file" in result.detail
    assert inbox.messages == []


def test_unreadable_ca_file_is_a_channel_problem(certs: Certs, tmp_path: Path) -> None:
    garbled = tmp_path / "ca.pem"
    garbled.write_text("not a certificate\n")
    with smtp_server(Inbox(), tls_context=certs.server_context()) as port:
        [result] = deliver(port, ca_file=str(garbled))
    assert (result.kind, result.scope) == ("permanent", "channel")
    assert "cannot load ca_file" in result.detail


def test_verify_false_accepts_any_certificate(certs: Certs) -> None:
    inbox = Inbox()
    with smtp_server(inbox, tls_context=certs.server_context(), require_starttls=True) as port:
        [result] = deliver(port, verify=False)
    assert result.kind == "ok" and inbox.over_tls == [True]


def test_starttls_required_but_not_offered() -> None:
    inbox = Inbox()
    with smtp_server(inbox) as port:  # no tls_context: the server offers no STARTTLS
        [result] = deliver(port)
    assert (result.kind, result.scope) == ("permanent", "channel")
    assert "does not offer STARTTLS; refusing to send in clear" in result.detail
    assert inbox.messages == []


def test_implicit_tls(certs: Certs) -> None:
    inbox = Inbox()
    with smtp_server(inbox, ssl_context=certs.server_context()) as port:
        [result] = deliver(port, security="tls", ca_file=str(certs.ca))
    assert result.kind == "ok", result.detail
    assert inbox.over_tls == [True]


def test_implicit_tls_against_a_plain_port() -> None:
    with smtp_server(Inbox()) as port:
        [result] = deliver(port, security="tls")
    assert (result.kind, result.scope) == ("permanent", "channel")
    assert "no TLS on this port" in result.detail


def test_login_over_starttls(certs: Certs) -> None:
    inbox = Inbox()
    server = {"tls_context": certs.server_context(), "authenticator": authenticate}
    with smtp_server(inbox, auth_required=True, **server) as port:
        [good] = deliver(port, ca_file=str(certs.ca), username="alerts", password=PASSWORD)
        [bad] = deliver(port, ca_file=str(certs.ca), username="alerts", password="wrong-pass")
    assert good.kind == "ok", good.detail
    assert (bad.kind, bad.scope) == ("permanent", "channel"), bad.detail
    assert "'alerts'" in bad.detail and "535" in bad.detail
    assert PASSWORD not in bad.detail and "wrong-pass" not in bad.detail
    assert len(inbox.messages) == 1


@pytest.mark.parametrize(
    ("refuse", "kind", "scope"),
    [
        ({"ops@example.com": "550 5.1.1 no such user", "owner@example.com": "550 no"},
         "permanent", "recipient"),
        ({"ops@example.com": "450 4.2.1 mailbox busy", "owner@example.com": "550 no"},
         "retry", "message"),
    ],
)  # fmt: skip
def test_every_recipient_refused(refuse: dict[str, str], kind: str, scope: str) -> None:
    with smtp_server(Inbox(refuse)) as port:
        [result] = deliver(port, security="none")
    assert (result.kind, result.scope) == (kind, scope)
    assert "ops@example.com" in result.detail


def test_some_recipients_refused_is_still_sent() -> None:
    inbox = Inbox({"owner@example.com": "550 5.1.1 no such user"})
    with smtp_server(inbox) as port:
        [result] = deliver(port, security="none")
    assert result.kind == "ok"
    assert "1 of 2" in result.detail and "owner@example.com (550)" in result.detail
    assert inbox.envelopes[0].rcpt_tos == ["ops@example.com"]


@pytest.mark.parametrize(
    ("reply", "kind"),
    [("554 5.7.1 rejected as spam", "permanent"), ("451 4.3.0 try later", "retry")],
)
def test_data_refused(reply: str, kind: str) -> None:
    with smtp_server(Inbox(data_reply=reply)) as port:
        [result] = deliver(port, security="none")
    assert (result.kind, result.scope) == (kind, "message")
    assert reply[:3] in result.detail


def test_nothing_listening_is_retried() -> None:
    [result] = deliver(free_port(), security="none")
    assert result.kind == "retry" and "ConnectionRefusedError" in result.detail


# options ------------------------------------------------------------------------------------

BASE = {"host": "smtp.example.com", "sender": "alerts@example.com", "to": ["ops@example.com"]}


def test_option_defaults() -> None:
    options = EmailChannel.Options.model_validate(BASE)
    assert (options.port, options.security, options.verify) == (587, "starttls", True)
    assert options.timeout.total_seconds() == 30 and options.ca_file is None
    assert options.username is None and options.password is None


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"to": []}, "at least one address"),
        ({"to": ["not an address"]}, "is not one email address"),
        ({"sender": "a@example.com\r\nBcc: x@example.com"}, "line break"),
        ({"password": "x"}, "username is not"),
        ({"username": "alerts"}, "missing (username is set)"),
        ({"username": "u", "password": "p", "security": "none"}, "unencrypted"),
        ({"security": "ssl"}, "'starttls', 'tls' or 'none'"),
        ({"ca_file": "ca.pem"}, "absolute path"),
        ({"ca_file": "/nonexistent/ca.pem"}, "not a readable file"),
        ({"port": 0}, "greater than or equal to 1"),
        ({"timeout": "soon"}, "not a duration"),
        ({"cc": ["x@example.com"]}, "Extra inputs"),
    ],
)
def test_options_are_validated(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError) as caught:
        EmailChannel.Options.model_validate({**BASE, **options})
    assert problem in str(caught.value)


def test_login_without_tls_is_allowed_on_loopback() -> None:
    options = {**BASE, "host": "127.0.0.1", "security": "none", "username": "u", "password": "p"}
    assert EmailChannel.Options.model_validate(options).security == "none"


def probe(port: int, **options: Any) -> str | None:
    base = {"host": "127.0.0.1", "port": port, "sender": "alerts@example.com",
            "to": ["ops@example.com"], "timeout": "5s"}  # fmt: skip
    channel = EmailChannel(ChannelContext("mail", {**base, **options}, None))  # type: ignore[arg-type]
    return asyncio.run(channel.probe())


def test_check_probeauthenticates_without_sending(certs: Certs) -> None:
    """Issue 12 item 9: EHLO + STARTTLS + AUTH, then QUIT: no MAIL FROM, nothing delivered;
    a wrong password fails the probe without echoing it."""
    from pollerd.channels.base import ProbeFailed

    inbox = Inbox()
    server = {"tls_context": certs.server_context(), "authenticator": authenticate}
    with smtp_server(inbox, auth_required=True, **server) as port:
        said = probe(port, ca_file=str(certs.ca), username="alerts", password=PASSWORD)
        with pytest.raises(ProbeFailed, match="535") as info:
            probe(port, ca_file=str(certs.ca), username="alerts", password="wrong-pass")
    assert said == "EHLO + STARTTLS + AUTH ok, no MAIL FROM: nothing sent"
    assert "wrong-pass" not in str(info.value) and PASSWORD not in str(info.value)
    assert inbox.messages == [] and inbox.envelopes == []
