"""`email`: one RFC 5322 message per alert, sent over SMTP with TLS that is really checked.

The message is built once (`render`) and stored as text, so a resend is the same message: same
`Message-ID` (derived from the event id, so a duplicate after a crash is recognisable), same
`Date`, same bytes. It is 7-bit clean (quoted-printable bodies, RFC 2047 headers), so any
SMTP server takes it without SMTPUTF8 or 8BITMIME. The words come from the templates
(`pollerd.templates`): the `email_text` flavour gives the Subject (its title) and the text part,
`email_html` the HTML part; both escape every order value for their part.

Transport security is never opportunistic: `starttls` refuses to send when the server does not
offer STARTTLS (a man-in-the-middle can strip that capability; falling back would hand it the
password and the order), and certificates are verified unless `verify = false`. smtplib only
verifies with an explicit context (research §5.1: the Airflow bug), so one is always passed.
smtplib blocks, so a send runs in a worker thread.

Outcomes, by what the server said:

    250 after DATA (some recipients refused)   ok, the refused ones named in the detail
    4xx anywhere, timeout, connection error    retry
    535 auth, 5xx sender, no STARTTLS/AUTH,    permanent, channel: the config is wrong, so
    certificate not trusted, wrong TLS mode    every message would fail the same way
    all recipients refused (5xx)               permanent, recipient
    other 5xx                                  permanent, message
    every recipient unsubscribed               ok, nothing sent

One-click unsubscribe (RFC 8058, pollerd.unsubscribe): when the daemon hands the channel a link
maker (`[pollerd] public_url` is set), `render` makes one message per recipient, each with its
own `List-Unsubscribe: <https://...>` + `List-Unsubscribe-Post: List-Unsubscribe=One-Click` and
a footer line carrying the same link, and stores them together (a JSON list, so a resend is still
the same bytes). All copies share the event's Message-ID. The link header is written raw: the
email package would otherwise RFC 2047-encode a URL longer than one line, and a mail client
cannot use an encoded URL. Recipients who opted out are skipped at send time, so an opt-out also
stops messages rendered before it. One SMTP session carries every copy; if a copy fails after
others were accepted, the detail says who already has it (a retry resends to them too).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import smtplib
import ssl
from dataclasses import replace
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, parseaddr
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, Field, model_validator

from pollerd.channels.base import Channel, ChannelContext, ChannelOptions, ProbeFailed, SendResult
from pollerd.config.types import Duration, invalid
from pollerd.model import Event
from pollerd.secrets import Secret
from pollerd.templates import Footer, lang

_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
_PER_RECIPIENT = "pollerd-email/per-recipient/1"  # the stored form of per-recipient copies
_FOOTER = {
    "en": "Stop these alerts for {address}: {link}",
    "zh-CN": "不再向 {address} 发送这些提醒：{link}",
}
# Only raw headers (`set_raw`) are affected: header objects fold themselves either way.
_KEEP_RAW = policy.SMTP.clone(refold_source="none")
Parcel = tuple[list[str], str]  # envelope recipients, the message text


def message_id(event_id: str) -> str:
    """`<{32 hex}@pollerd>`: stable per event, so every resend carries the same Message-ID."""
    return f"<{hashlib.sha256(event_id.encode('utf-8')).hexdigest()[:32]}@pollerd>"


def _address(value: str) -> str:
    """`ops@example.com` or `Name <ops@example.com>`; one address, one line."""
    if any(c in value for c in "\r\n\0"):
        raise invalid("contains a line break", "write one address on one line")
    pairs = getaddresses([value])
    if len(pairs) != 1 or "@" not in pairs[0][1] or " " in pairs[0][1]:
        raise invalid(
            f"{value!r} is not one email address", 'e.g. "ops@example.com" or "Ops <ops@x.com>"'
        )
    return value.strip()


def _non_empty(value: list[str]) -> list[str]:
    if not value:
        raise invalid("must list at least one address", 'e.g. to = ["ops@example.com"]')
    return value


def _ca_file(value: Path) -> Path:
    """Absolute, because the daemon's working directory is not the config file's."""
    if not value.is_absolute():
        raise invalid("must be an absolute path", 'e.g. "/etc/pollerd/smtp-ca.pem"')
    if not value.is_file():
        raise invalid(f"{value} is not a readable file", "put the CA certificate (PEM) there")
    return value


Address = Annotated[str, AfterValidator(_address)]


class EmailChannel(Channel):
    """Sends a multipart (text + HTML) alert through one SMTP submission server."""

    kind: ClassVar[str] = "email"
    secret_fields: ClassVar[tuple[str, ...]] = ("password",)

    class Options(ChannelOptions):
        host: str = Field(min_length=1)
        port: int = Field(587, ge=1, le=65535)
        security: Literal["starttls", "tls", "none"] = "starttls"
        username: str | None = None
        password: Secret | None = None
        sender: Address
        to: Annotated[list[Address], AfterValidator(_non_empty)]
        verify: bool = True
        ca_file: Annotated[Path, AfterValidator(_ca_file)] | None = None
        timeout: Duration = timedelta(seconds=30)

        @model_validator(mode="after")
        def _credentials(self) -> EmailChannel.Options:
            if self.password is not None and not self.username:
                raise invalid("is set but username is not", "add username", key="password")
            if self.username and self.password is None:
                raise invalid("missing (username is set)", "add password", key="password")
            if self.username and self.security == "none" and self.host not in _LOOPBACK:
                raise invalid(
                    "would send the password unencrypted (security is none)",
                    'use security = "starttls" or "tls"',
                    key="security",
                )
            return self

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        self.envelope_from = parseaddr(self.options.sender)[1]
        self.recipients = [address for _, address in getaddresses(self.options.to)]

    def render(self, event: Event) -> str:
        """The whole message as 7-bit text with CRLF line ends, ready for DATA; with unsubscribe
        links, one such message per recipient, stored together as JSON."""
        link = self.ctx.unsubscribe_link
        if link is None:
            return self._message(event, ", ".join(self.options.to))
        copies = []
        for to, address in zip(self.options.to, self.recipients, strict=True):
            message = self._message(event, to, (address, link(self.name, address)))
            copies.append({"to": address, "message": message})
        return json.dumps({"format": _PER_RECIPIENT, "copies": copies})

    def _message(self, event: Event, to: str, unsubscribe: tuple[str, str] | None = None) -> str:
        """One message from the `email_text` (subject, text part) and `email_html` templates.
        The unsubscribe line is a footer the template engine appends to both parts after the
        template ran, so no user template can drop it; the engine escapes every order value
        for each part, so nothing here escapes again."""
        footer: Footer | None = None
        if unsubscribe is not None:
            address, url = unsubscribe
            before, _, after = _FOOTER[lang(self.ctx.locale)].partition("{link}")
            footer = Footer(
                before.replace("{address}", address), url, after.replace("{address}", address)
            )
        text = self.message(event, flavour="email_text", footer=footer)
        page = self.message(event, flavour="email_html", footer=footer)
        subject = text.title  # one line: the engine squeezes every value onto one
        zone = self.ctx.timezone
        msg = EmailMessage(policy=policy.SMTP)
        msg["Subject"] = subject
        msg["From"] = self.options.sender
        msg["To"] = to
        # The detection time, not the render time: the same event always renders the same.
        msg["Date"] = format_datetime(event.detected_at.astimezone(ZoneInfo(zone)))
        msg["Message-ID"] = message_id(event.id)
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies
        msg["X-Pollerd-Event"] = event.id
        if footer is not None:
            msg.set_raw("List-Unsubscribe", f"<{footer.url}>")  # the URL is ASCII, no CR/LF
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg.set_content(text.body + "\n", cte="quoted-printable")
        msg.add_alternative(page.body + "\n", subtype="html", cte="quoted-printable")
        return msg.as_string(policy=_KEEP_RAW)

    def parcels(self, rendered: str) -> list[Parcel]:
        """What to send: per-recipient copies of recipients still in `to` (removing someone
        from `to` stops copies rendered before), or the one message to every recipient."""
        if not rendered.startswith("{"):  # a message starts with a header, never with `{`
            return [(list(self.recipients), rendered)]
        current = {address.lower() for address in self.recipients}
        copies = json.loads(rendered)["copies"]
        return [([c["to"]], c["message"]) for c in copies if c["to"].lower() in current]

    async def send(self, event: Event, rendered: str) -> SendResult:
        parcels, skipped = self.parcels(rendered), 0
        if not parcels:
            return SendResult.ok("none of this message's recipients is still in `to`")
        suppressed = self.ctx.suppressed
        if suppressed is not None:  # checked here, on the loop, before the worker thread
            kept: list[Parcel] = []
            for recipients, message in parcels:
                live = [rcpt for rcpt in recipients if not suppressed(self.name, rcpt)]
                skipped += len(recipients) - len(live)
                if live:
                    kept.append((live, message))
            parcels = kept
        if not parcels:
            return SendResult.ok("all recipients unsubscribed")
        result = await asyncio.to_thread(self._send_blocking, parcels)
        if skipped and result.kind == "ok":
            result = replace(result, detail=f"{result.detail}; {skipped} unsubscribed, skipped")
        return result

    def _send_blocking(self, parcels: list[Parcel]) -> SendResult:
        accepted: list[str] = []
        result = self._classified(parcels, accepted)
        if result.kind != "ok" and accepted:
            already = ", ".join(accepted)
            detail_ = f"{result.detail}; already accepted for {already} (a retry resends to them)"
            result = replace(result, detail=detail_)
        return result

    def _classified(self, parcels: list[Parcel], accepted: list[str]) -> SendResult:
        try:
            return self._transact(parcels, accepted)
        except smtplib.SMTPAuthenticationError as exc:
            if 400 <= exc.smtp_code < 500:
                return SendResult.retry(self._said("login failed for now", exc))
            return SendResult.permanent(
                self._said(
                    f"the server rejected the login of {self.options.username!r}",
                    exc,
                    fix="check username and password",
                ),
                scope="channel",
            )
        except smtplib.SMTPSenderRefused as exc:
            if 400 <= exc.smtp_code < 500:
                return SendResult.retry(self._said("sender refused for now", exc))
            fix = "check that this account may send as the configured sender"
            what = f"the server refused the sender {self.envelope_from}"
            return SendResult.permanent(self._said(what, exc, fix=fix), scope="channel")
        except smtplib.SMTPNotSupportedError:
            return SendResult.permanent(
                f"{self.where()}: the server does not offer AUTH; remove username/password, "
                "or use the submission port with starttls/tls",
                scope="channel",
            )
        except smtplib.SMTPResponseException as exc:
            if 400 <= exc.smtp_code < 500:
                return SendResult.retry(self._said("temporary failure", exc))
            return SendResult.permanent(self._said("the server refused the message", exc))
        except smtplib.SMTPServerDisconnected as exc:
            return SendResult.retry(f"{self.where()}: connection closed ({exc})")
        except ssl.SSLCertVerificationError as exc:
            return SendResult.permanent(
                f"{self.where()}: the server's TLS certificate is not trusted "
                f"({exc.verify_message}); set ca_file to the CA that signed it, fix the "
                "server's certificate, or (not recommended) verify = false",
                scope="channel",
            )
        except ssl.SSLError as exc:
            if exc.reason in ("WRONG_VERSION_NUMBER", "UNKNOWN_PROTOCOL", "RECORD_LAYER_FAILURE"):
                return SendResult.permanent(
                    f"{self.where()}: no TLS on this port ({exc.reason}); use security = "
                    '"tls" for port 465 and "starttls" for 587',
                    scope="channel",
                )
            return SendResult.retry(f"{self.where()}: TLS failed ({exc.reason or exc})")
        except smtplib.SMTPException as exc:
            return SendResult.retry(f"{self.where()}: {type(exc).__name__}: {exc}")
        except TimeoutError:
            return SendResult.retry(f"{self.where()}: timed out after {self._timeout():g}s")
        except OSError as exc:
            return SendResult.retry(f"{self.where()}: {type(exc).__name__}: {exc}")
        except UnicodeEncodeError:  # the stored message must be 7-bit: render guarantees it
            return SendResult.permanent("the stored message is not 7-bit clean; re-render it")

    def _transact(self, parcels: list[Parcel], accepted: list[str]) -> SendResult:
        options = self.options
        timeout = self._timeout()
        try:
            context = self._tls_context() if options.security != "none" else None
        except (OSError, ssl.SSLError) as exc:  # a deleted or garbled ca_file: fix the config
            why = exc.strerror or getattr(exc, "reason", None) or str(exc)
            return SendResult.permanent(f"cannot load ca_file {options.ca_file}: {why}", "channel")
        smtp: smtplib.SMTP
        if options.security == "tls":
            smtp = smtplib.SMTP_SSL(options.host, options.port, timeout=timeout, context=context)
        else:
            smtp = smtplib.SMTP(options.host, options.port, timeout=timeout)
        # Not `with smtp`: its QUIT after a failed TLS handshake can raise a second error
        # that would hide the first; after a failure the socket is just closed.
        try:
            smtp.ehlo()
            if options.security == "starttls":
                if not smtp.has_extn("starttls"):
                    return SendResult.permanent(
                        f"{self.where()}: server does not offer STARTTLS; refusing to send in "
                        'clear (use the server\'s submission port, security = "tls" on 465, '
                        'or security = "none" only for a trusted local relay)',
                        scope="channel",
                    )
                smtp.starttls(context=context)
                smtp.ehlo()
            if options.username and options.password is not None:
                smtp.login(options.username, options.password.get())
            refused: dict[str, tuple[int, bytes]] = {}
            for recipients, message in parcels:
                try:
                    refused_now = smtp.sendmail(self.envelope_from, recipients, message)
                except smtplib.SMTPRecipientsRefused as exc:  # all of this copy's recipients
                    refused.update(exc.recipients)
                    continue
                refused.update(refused_now)
                accepted.extend(rcpt for rcpt in recipients if rcpt not in refused_now)
            with contextlib.suppress(smtplib.SMTPException, OSError):
                smtp.quit()  # the message is accepted; a rude goodbye changes nothing
        finally:
            smtp.close()
        if not accepted:
            return self._refused(refused)
        total = len(accepted) + len(refused)
        if refused:
            names = ", ".join(f"{rcpt} ({code})" for rcpt, (code, _) in refused.items())
            return SendResult.ok(
                f"accepted for {len(accepted)} of {total} recipients; refused: {names}"
            )
        return SendResult.ok(f"accepted for {total} recipients")

    def _refused(self, recipients: dict[str, tuple[int, bytes]]) -> SendResult:
        """Every recipient refused: retry if any refusal was temporary, else it is final."""
        names = "; ".join(
            f"{rcpt}: {code} {_text(reply)}" for rcpt, (code, reply) in recipients.items()
        )
        if any(400 <= code < 500 for code, _ in recipients.values()):
            return SendResult.retry(f"{self.where()}: recipients refused for now: {names}")
        detail_ = f"{self.where()}: every recipient was refused: {names}; check to"
        return SendResult.permanent(self.scrub(detail_), scope="recipient")

    async def probe(self, timeout: float = 10.0) -> str:
        """EHLO, STARTTLS (or implicit TLS), AUTH, QUIT: no MAIL FROM, so nothing is sent."""
        return await asyncio.to_thread(self._probe)

    def _probe(self) -> str:
        options = self.options
        smtp: smtplib.SMTP | None = None
        try:
            context = self._tls_context() if options.security != "none" else None
            if options.security == "tls":
                smtp = smtplib.SMTP_SSL(
                    options.host, options.port, timeout=self._timeout(), context=context
                )
            else:
                smtp = smtplib.SMTP(options.host, options.port, timeout=self._timeout())
            smtp.ehlo()
            done = ["EHLO"]
            if options.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise ProbeFailed(f"{self.where()}: the server does not offer STARTTLS")
                smtp.starttls(context=context)
                smtp.ehlo()
                done.append("STARTTLS")
            if options.username and options.password is not None:
                smtp.login(options.username, options.password.get())
                done.append("AUTH")
        except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
            raise ProbeFailed(self.scrub(f"{self.where()}: {type(exc).__name__}: {exc}")) from None
        finally:
            if smtp is not None:
                with contextlib.suppress(smtplib.SMTPException, OSError):
                    smtp.quit()
        return " + ".join(done) + " ok, no MAIL FROM: nothing sent"

    def _tls_context(self) -> ssl.SSLContext:
        """Built per send, so a renewed CA file is picked up without a restart."""
        cafile = str(self.options.ca_file) if self.options.ca_file else None
        context = ssl.create_default_context(cafile=cafile)
        if not self.options.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _timeout(self) -> float:
        return self.options.timeout.total_seconds()

    def where(self) -> str:
        return f"smtp {self.options.host}:{self.options.port}"

    def _said(self, what: str, exc: smtplib.SMTPResponseException, *, fix: str = "") -> str:
        text = f"{self.where()}: {what}: {exc.smtp_code} {_text(exc.smtp_error)}"
        return self.scrub(f"{text}; {fix}" if fix else text)

    def secrets(self) -> list[str]:
        """A server may echo what it was sent; the password never reaches a detail."""
        return [self.options.password.get()] if self.options.password else []


def _text(reply: Any) -> str:
    """A server reply on one short line."""
    if isinstance(reply, bytes):
        reply = reply.decode("utf-8", "replace")
    return " ".join(str(reply).split())[:200]
