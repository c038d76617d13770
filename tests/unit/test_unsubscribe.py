"""One-click unsubscribe (RFC 8058): tokens, the email headers and footer against a real aiosmtpd
server, the endpoint over real HTTP on 127.0.0.1, suppression honoured by the channel, config."""

from __future__ import annotations

import asyncio
import contextlib
import email
import functools
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session

from pollerd.channels.base import ChannelContext, SendResult
from pollerd.channels.email import EmailChannel, message_id
from pollerd.config import ConfigErrors, minimal
from pollerd.model import Event, LineItem
from pollerd.runtime import build_channels, start_web
from pollerd.store import Store, open_store
from pollerd.templates import templates_for
from pollerd.unsubscribe import UnsubscribeLinks, is_suppressed, suppress, suppression_key
from pollerd.web.unsubscribe import UnsubscribeServer
from pollerd_sim.testing.events import paid_event
from pollerd_sim.testing.ports import free_port
from pollerd_sim.testing.smtp import smtp_server

AT = datetime(2026, 11, 22, 23, 30, tzinfo=UTC)
SECRET = "an-unsubscribe-secret-of-some-length"
PUBLIC = "https://pollerd.example.com/alerts"
LINKS = UnsubscribeLinks(SECRET, PUBLIC)
TO = ["ops@example.com", "Owner <Owner+shop@example.com>"]


def sample() -> Event:
    return paid_event(
        "Eve",
        items=(LineItem("Mug", 2, "20.00"),),
        email="e***@example.com",
        admin_url="https://shop.example.com/wp-admin/post.php?post=1001&action=edit",
        at=AT,
        payment_method_title="Card",
    )


# SMTP ---------------------------------------------------------------------------------------


class Inbox:
    def __init__(self) -> None:
        self.raw: list[bytes] = []
        self.rcpts: list[list[str]] = []

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.raw.append(envelope.content)
        self.rcpts.append(list(envelope.rcpt_tos))
        return "250 Message accepted"

    def messages(self) -> list[EmailMessage]:
        parsed = [email.message_from_bytes(raw, policy=default_policy) for raw in self.raw]
        return [m for m in parsed if isinstance(m, EmailMessage)]


def channel(
    port: int,
    store: Store | None = None,
    *,
    links: bool = True,
    locale: str = "en",
    templates: Path | None = None,
) -> EmailChannel:
    options = {"host": "127.0.0.1", "port": port, "security": "none", "timeout": "5s",
               "sender": "pollerd <alerts@example.com>", "to": TO}  # fmt: skip
    ctx = ChannelContext(
        "mail",
        options,
        None,  # type: ignore[arg-type]
        locale=locale,
        suppressed=functools.partial(is_suppressed, store) if store is not None else None,
        unsubscribe_link=LINKS.link if links else None,
        templates=templates_for(templates),
    )
    return EmailChannel(ctx)


def copies(target: EmailChannel) -> list[tuple[str, str]]:
    """(text part, HTML part) of each per-recipient copy `render` stores, "\n" line ends."""
    found = []
    for _, raw in target.parcels(target.render(sample())):
        msg = email.message_from_string(raw, policy=default_policy)
        assert isinstance(msg, EmailMessage)
        text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        page = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
        found.append((text.replace("\r\n", "\n"), page.replace("\r\n", "\n")))
    return found


def send(target: EmailChannel, rendered: str | None = None) -> SendResult:
    event = sample()
    return asyncio.run(target.send(event, rendered or target.render(event)))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = open_store(f"sqlite:///{tmp_path / 'pollerd.db'}")
    yield db
    db.close()


# tokens -------------------------------------------------------------------------------------


def test_token_is_personal_and_checked() -> None:
    token = LINKS.token("mail", "ops@example.com")
    assert len(token) == 43 and "=" not in token  # 32 bytes, base64url, unpadded
    assert LINKS.verify("mail", "OPS@example.com ", token)  # addresses compare lowercased
    assert not LINKS.verify("mail", "owner@example.com", token)
    assert not LINKS.verify("other", "ops@example.com", token)
    assert not LINKS.verify("mail", "ops@example.com", token[:-1] + "A")
    assert not LINKS.verify("mail", "ops@example.com", "")
    assert not UnsubscribeLinks("another-secret-entirely!").verify("mail", "ops@example.com", token)
    link = urlsplit(LINKS.link("mail", "Owner+shop@example.com"))
    assert (link.scheme, link.netloc, link.path) == ("https", "pollerd.example.com",
                                                     "/alerts/unsubscribe")  # fmt: skip
    query = parse_qs(link.query)
    assert query == {"c": ["mail"], "r": ["owner+shop@example.com"],
                     "t": [LINKS.token("mail", "owner+shop@example.com")]}  # fmt: skip


# email --------------------------------------------------------------------------------------


def test_each_recipient_gets_a_personal_one_click_link() -> None:
    inbox = Inbox()
    with smtp_server(inbox) as port:
        target = channel(port)
        rendered = target.render(sample())
        first, second = send(target, rendered), send(target, rendered)
    assert first.kind == second.kind == "ok", first.detail
    assert "accepted for 2 recipients" in first.detail
    assert inbox.rcpts == [["ops@example.com"], ["Owner+shop@example.com"]] * 2
    assert inbox.raw[:2] == inbox.raw[2:]  # a resend is the same bytes
    addresses = ["ops@example.com", "Owner+shop@example.com"]
    for raw, msg, address, to in zip(inbox.raw, inbox.messages(), addresses, TO, strict=False):
        link = LINKS.link("mail", address)
        # One unfolded line, not RFC 2047 words: a client cannot use an encoded URL.
        assert f"\r\nList-Unsubscribe: <{link}>\r\n".encode() in raw
        assert b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in raw
        assert all(byte < 128 for byte in raw)
        assert msg["To"] == to
        assert msg["Message-ID"] == message_id(sample().id)
        text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert f"Stop these alerts for {address}: {link}" in text
        page = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
        href = link.replace("&", "&amp;")
        assert f'<a href="{href}">{href}</a>' in page


def test_footer_closes_both_parts() -> None:
    """The text part ends with a "-- " signature block, the HTML part with a small line after a
    rule, right before </body>: the footer comes after the template's own content."""
    addresses = ["ops@example.com", "Owner+shop@example.com"]
    for (text, page), address in zip(copies(channel(1)), addresses, strict=True):
        link = LINKS.link("mail", address)
        href = link.replace("&", "&amp;")
        assert text.endswith(f"\n\n-- \nStop these alerts for {address}: {link}\n")
        assert page.rstrip().endswith(
            f'<hr><p><small>Stop these alerts for {address}: <a href="{href}">{href}</a>'
            "</small></p></body></html>"
        )


def test_footer_wording_follows_the_locale() -> None:
    [(text, page), _] = copies(channel(1, locale="zh-CN"))
    link = LINKS.link("mail", "ops@example.com")
    assert text.endswith(f"-- \n不再向 ops@example.com 发送这些提醒：{link}\n")
    assert "<small>不再向 ops@example.com 发送这些提醒：<a href=" in page


def test_a_user_template_cannot_drop_the_footer(tmp_path: Path) -> None:
    """The templates folder is the user's; the unsubscribe link is the law's (RFC 8058 and
    bulk-sender rules), so it is appended after whatever the template renders."""
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "order.paid.email_text.j2").write_text("Paid: {{ number }}\n")
    (tmp_path / "en" / "order.paid.email_html.j2").write_text(
        "<html><body><p>Paid: {{ number }}</p></body></html>\n"
    )
    for text, page in copies(channel(1, templates=tmp_path)):
        assert text.startswith("Paid: #1001\n\n-- \nStop these alerts for ")
        assert page.startswith("<html><body><p>Paid: #1001</p><hr><p><small>Stop these alerts")
        assert page.rstrip().endswith("</small></p></body></html>")


def test_without_public_url_one_message_goes_to_everyone() -> None:
    inbox = Inbox()
    with smtp_server(inbox) as port:
        result = send(channel(port, links=False))
    assert result.kind == "ok"
    assert inbox.rcpts == [["ops@example.com", "Owner+shop@example.com"]]
    assert b"List-Unsubscribe" not in inbox.raw[0]


def test_suppressed_recipients_are_skipped(store: Store) -> None:
    inbox = Inbox()
    with smtp_server(inbox) as port:
        target = channel(port, store)
        rendered = target.render(sample())  # rendered before the opt-out: still honoured
        suppress(store, "mail", "OWNER+shop@example.com")
        some = send(target, rendered)
        suppress(store, "mail", "ops@example.com")
        none = send(target, rendered)
    assert some.kind == "ok" and "1 unsubscribed, skipped" in some.detail, some.detail
    assert inbox.rcpts == [["ops@example.com"]]
    assert (none.kind, none.detail) == ("ok", "all recipients unsubscribed")
    assert len(inbox.raw) == 1


def test_suppression_is_per_channel(store: Store) -> None:
    suppress(store, "other", "ops@example.com")
    assert store.meta("suppressed:other:ops@example.com") is not None
    assert not is_suppressed(store, "mail", "ops@example.com")
    assert is_suppressed(store, "other", " Ops@Example.com")


# the endpoint -------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def endpoint(store: Store) -> Any:
    server = UnsubscribeServer(UnsubscribeLinks(SECRET), store)
    await server.start("127.0.0.1:0")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
            yield http
    finally:
        await server.close()


def local(link: str) -> str:
    parts = urlsplit(link)
    return f"{parts.path}?{parts.query}"


def test_get_shows_a_form_and_never_unsubscribes(store: Store) -> None:
    async def go() -> httpx.Response:
        async with endpoint(store) as http:
            return await http.get(local(LINKS.link("mail", "ops@example.com")))

    response = asyncio.run(go())
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    assert '<form method="post" action="?c=mail&amp;r=ops%40example.com&amp;t=' in response.text
    assert 'name="List-Unsubscribe" value="One-Click"' in response.text
    assert not is_suppressed(store, "mail", "ops@example.com")


def test_one_click_post_unsubscribes(store: Store) -> None:
    link = local(LINKS.link("mail", "ops@example.com"))

    async def go() -> list[httpx.Response]:
        async with endpoint(store) as http:
            form = await http.get(link)
            action = form.text.split('action="')[1].split('"')[0].replace("&amp;", "&")
            assert action == "?" + link.partition("?")[2]
            one_click = await http.post(link, content=b"List-Unsubscribe=One-Click",
                                        headers={"Content-Type":
                                                 "application/x-www-form-urlencoded"})  # fmt: skip
            again = await http.post(link, data={"List-Unsubscribe": "One-Click"})
            return [one_click, again]

    one_click, again = asyncio.run(go())
    assert one_click.status_code == again.status_code == 200
    assert "ops@example.com will no longer get alerts" in one_click.text
    assert is_suppressed(store, "mail", "ops@example.com")
    assert not is_suppressed(store, "mail", "owner+shop@example.com")


@pytest.mark.parametrize(
    "query",
    [
        "c=mail&r=ops%40example.com&t=AAAA",
        "c=mail&r=owner%40example.com&t={ops}",  # someone else's token
        "c=other&r=ops%40example.com&t={ops}",
        "c=mail&r=ops%40example.com",
        "",
    ],
)
def test_bad_token_is_forbidden(store: Store, query: str) -> None:
    query = query.replace("{ops}", LINKS.token("mail", "ops@example.com"))

    async def go() -> tuple[httpx.Response, httpx.Response]:
        async with endpoint(store) as http:
            url = f"/unsubscribe?{query}"
            return await http.get(url), await http.post(url, content=b"List-Unsubscribe=One-Click")

    got, posted = asyncio.run(go())
    assert got.status_code == posted.status_code == 403
    assert store.meta(suppression_key("mail", "ops@example.com")) is None
    assert store.meta(suppression_key("mail", "owner@example.com")) is None
    assert store.meta(suppression_key("other", "ops@example.com")) is None


def test_everything_else_is_not_found(store: Store) -> None:
    link = local(LINKS.link("mail", "ops@example.com"))

    async def go() -> list[int]:
        async with endpoint(store) as http:
            return [
                (await http.get("/")).status_code,
                (await http.get("/unsubscribe/x")).status_code,
                (await http.put(link)).status_code,
                (await http.delete(link)).status_code,
            ]

    assert asyncio.run(go()) == [404, 404, 404, 404]
    assert not is_suppressed(store, "mail", "ops@example.com")


def test_reflected_values_are_escaped(store: Store) -> None:
    address = '"<script>alert(1)</script>"@example.com'

    async def go() -> httpx.Response:
        async with endpoint(store) as http:
            return await http.get(local(LINKS.link("mail", address)))

    response = asyncio.run(go())
    assert response.status_code == 200
    assert "<script>" not in response.text
    assert "&quot;&lt;script&gt;alert(1)&lt;/script&gt;&quot;@example.com" in response.text
    assert "default-src 'none'" in response.headers["content-security-policy"]


def test_junk_and_oversized_requests_get_an_answer(store: Store) -> None:
    async def raw(payload: bytes) -> bytes:
        server = UnsubscribeServer(UnsubscribeLinks(SECRET), store)
        await server.start("127.0.0.1:0")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(payload)
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            return answer
        finally:
            await server.close()

    assert asyncio.run(raw(b"hello\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
    big = b"POST /unsubscribe HTTP/1.1\r\nContent-Length: 999999\r\n\r\n"
    assert asyncio.run(raw(big)).startswith(b"HTTP/1.1 413 ")


# end to end: link → POST → the channel skips ------------------------------------------------


def test_daemon_wiring_post_then_the_channel_skips(store: Store, tmp_path: Path) -> None:
    web_port = free_port()
    settings = minimal(
        f"sqlite:///{tmp_path / 'pollerd.db'}",
        [],
        [{"name": "mail", "type": "email", "host": "127.0.0.1", "port": 1, "security": "none",
          "sender": "alerts@example.com", "to": TO, "timeout": "5s"}],
        [],
        pollerd={"public_url": "http://127.0.0.1:1/", "listen": f"127.0.0.1:{web_port}",
                 "unsubscribe_secret": SECRET},
    )  # fmt: skip
    inbox = Inbox()

    async def go(smtp_port: int) -> tuple[int, SendResult]:
        web = await start_web(settings, store)
        assert web is not None and web.port == web_port
        try:
            async with httpx.AsyncClient() as http:
                target = build_channels(settings, http, store)["mail"]
                assert isinstance(target, EmailChannel)
                target.options = target.options.model_copy(update={"port": smtp_port})
                rendered = target.render(sample())
                copies = target.parcels(rendered)
                first = email.message_from_string(copies[0][1], policy=default_policy)
                link = first["List-Unsubscribe"].strip("<>")
                assert link.startswith("http://127.0.0.1:1/unsubscribe?c=mail&r=ops%40")
                url = link.replace("127.0.0.1:1", f"127.0.0.1:{web_port}")
                status = (await http.post(url, content=b"List-Unsubscribe=One-Click")).status_code
                return status, await target.send(sample(), rendered)
        finally:
            await web.close()

    with smtp_server(inbox) as smtp_port:
        status, result = asyncio.run(go(smtp_port))
    assert status == 200
    assert result.kind == "ok" and "1 unsubscribed, skipped" in result.detail
    assert inbox.rcpts == [["Owner+shop@example.com"]]


# config -------------------------------------------------------------------------------------


def settings_with(**pollerd: Any) -> Any:
    return minimal("sqlite:///pollerd.db", [], [], [], pollerd=pollerd)


def problems(**pollerd: Any) -> str:
    with pytest.raises(ConfigErrors) as caught:
        settings_with(**pollerd)
    return str(caught.value)


def test_config_accepts_and_normalises() -> None:
    cfg = settings_with(public_url="https://pollerd.example.com/x/", listen="127.0.0.1:8470",
                        unsubscribe_secret=SECRET).pollerd  # fmt: skip
    assert (cfg.public_url, cfg.listen) == ("https://pollerd.example.com/x", "127.0.0.1:8470")
    assert cfg.unsubscribe_secret is not None and str(cfg.unsubscribe_secret) == "****"
    assert settings_with().pollerd.public_url is None


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"public_url": "https://pollerd.example.com"},
         "config: pollerd.unsubscribe_secret: missing (public_url is set) (add unsubscribe_secret"),
        ({"listen": "127.0.0.1:8470"},
         "config: pollerd.unsubscribe_secret: missing (listen is set)"),
        ({"public_url": "ftp://pollerd.example.com", "unsubscribe_secret": SECRET},
         "config: pollerd.public_url: must be an http:// or https:// address"),
        ({"public_url": "https://user:pw@pollerd.example.com", "unsubscribe_secret": SECRET},
         "config: pollerd.public_url: must not contain a user or password"),
        ({"public_url": "https://pollerd.example.com/?a=1", "unsubscribe_secret": SECRET},
         "config: pollerd.public_url: must not have a query string"),
        ({"public_url": "https://bücher.example/", "unsubscribe_secret": SECRET},
         "config: pollerd.public_url: must be printable ASCII"),
        ({"listen": "8470", "unsubscribe_secret": SECRET},
         "config: pollerd.listen: must be host:port"),
        ({"public_url": "https://pollerd.example.com", "unsubscribe_secret": "short"},
         "config: pollerd.unsubscribe_secret: is shorter than 16 characters"),
        ({"public_url": "https://pollerd.example.com",
          "unsubscribe_secret": "env:POLLERD_TEST_NO_SUCH_VAR"},
         "config: pollerd.unsubscribe_secret: env var POLLERD_TEST_NO_SUCH_VAR is not set"),
    ],
)  # fmt: skip
def test_config_errors(keys: dict[str, Any], expected: str) -> None:
    text = problems(**keys)
    assert expected in text, text
    assert "short" not in text.replace("shorter", "")  # a secret is never echoed


def test_operators_list_and_undo_opt_outs_from_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from pollerd.cli import app
    from pollerd.config import load
    from pollerd.store import open_store
    from pollerd_sim.harness import pollerd_env, write_config

    for name, value in pollerd_env().items():
        if name.startswith("TEST_"):
            monkeypatch.setenv(name, value)
    config = write_config(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9/hook")
    db = open_store(load(config).pollerd.database)
    suppress(db, "mail", "Ops@Example.com", datetime(2026, 11, 20, tzinfo=UTC))
    suppress(db, "other", "owner@example.com", datetime(2026, 11, 21, tzinfo=UTC))
    db.close()
    cli = CliRunner()

    listed = cli.invoke(app, ["unsubscribes", "list", "--json", "--config", str(config)])
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout) == [
        {"channel": "mail", "address": "ops@example.com", "since": "2026-11-20T00:00:00+00:00"},
        {"channel": "other", "address": "owner@example.com", "since": "2026-11-21T00:00:00+00:00"},
    ]
    only = cli.invoke(app, ["unsubscribes", "list", "--channel", "other", "-c", str(config)])
    assert "owner@example.com" in only.stdout and "ops@" not in only.stdout

    back = cli.invoke(app, ["unsubscribes", "remove", "ops@example.com", "--channel", "mail",
                            "--config", str(config)])  # fmt: skip
    assert back.exit_code == 0 and "gets mail's alerts again" in back.stdout
    db = open_store(load(config).pollerd.database)
    assert not is_suppressed(db, "mail", "ops@example.com")
    assert is_suppressed(db, "other", "owner@example.com")
    db.close()
    again = cli.invoke(app, ["unsubscribes", "remove", "ops@example.com", "--channel", "mail",
                             "--config", str(config)])  # fmt: skip
    assert again.exit_code == 1 and "has not unsubscribed" in again.output
