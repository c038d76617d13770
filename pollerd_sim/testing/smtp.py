"""A real SMTP server on 127.0.0.1 (aiosmtpd) for the email channel: an `Inbox` that accepts
or refuses, LOGIN checked against `PASSWORD` (`authenticate`), and a throwaway CA and server
certificate for STARTTLS and implicit TLS (`make_certs`).

aiosmtpd is a test extra (`pip install pollerd[test]`), imported only when a server starts or a
login is checked, so the channel rigs import without it."""

from __future__ import annotations

import contextlib
import email
import ipaddress
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pollerd_sim.testing.ports import free_port

if TYPE_CHECKING:
    from aiosmtpd.smtp import SMTP as SMTPServer
    from aiosmtpd.smtp import AuthResult, Envelope, Session

PASSWORD = "s3cret-Passw0rd"


@dataclass(frozen=True)
class Certs:
    ca: Path  # trust anchor for ca_file
    chain: Path  # server certificate (127.0.0.1, localhost), signed by the CA
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.chain, self.key)
        return context


def make_certs(out: Path) -> Certs:
    """A throwaway CA and a server certificate for 127.0.0.1 (and localhost) in `out`, as a
    private mail server has."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pollerd test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    certs = Certs(out / "ca.pem", out / "server.pem", out / "server.key")
    certs.ca.write_bytes(ca.public_bytes(pem))
    certs.chain.write_bytes(leaf.public_bytes(pem))
    certs.key.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return certs


class Inbox:
    """aiosmtpd handler: accepts mail (recording whether it came over TLS), or refuses given
    recipients / the DATA with a configured reply.

    Messages are parsed when `messages` is read, not on receipt: the server runs in a thread
    of the sender's process, whose CPU the tests should not spend twice."""

    def __init__(self, refuse: dict[str, str] | None = None, data_reply: str = "") -> None:
        self.refuse = refuse or {}
        self.data_reply = data_reply
        self._messages: list[EmailMessage] = []
        self.envelopes: list[Envelope] = []
        self.over_tls: list[bool] = []

    @property
    def messages(self) -> list[EmailMessage]:
        """Every accepted message, parsed (one list, extended as mail arrives)."""
        for envelope in self.envelopes[len(self._messages) :]:
            assert isinstance(envelope.content, bytes)
            parsed = email.message_from_bytes(envelope.content, policy=default_policy)
            assert isinstance(parsed, EmailMessage)
            self._messages.append(parsed)
        return self._messages

    def clear(self) -> None:
        """Forget what was received and accept everything again (one server, many tests)."""
        self.refuse, self.data_reply = {}, ""
        self._messages.clear()
        self.envelopes.clear()
        self.over_tls.clear()

    async def handle_RCPT(
        self, server: SMTPServer, session: Session, envelope: Envelope, address: str, _: Any
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        if self.data_reply:
            return self.data_reply
        # session.ssl is set by STARTTLS only; the transport also knows implicit TLS.
        transport = server.transport
        tls = session.ssl is not None or (
            transport is not None and transport.get_extra_info("ssl_object")
        )
        self.envelopes.append(envelope)
        self.over_tls.append(bool(tls))
        return "250 Message accepted"


def authenticate(
    server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    from aiosmtpd.smtp import AuthResult, LoginPassword

    good = isinstance(data, LoginPassword) and (data.login, data.password) == (
        b"alerts",
        PASSWORD.encode(),
    )
    return AuthResult(success=good, handled=False)  # False: aiosmtpd sends the 535 itself


@contextlib.contextmanager
def smtp_server(handler: Any, **kwargs: Any) -> Iterator[int]:
    """A server on a free port for the time of the block, mail going to `handler` (an
    `Inbox` to see what arrived; aiosmtpd's `Sink` to accept and keep nothing, as a benchmark
    wants); `kwargs` go to aiosmtpd's `Controller` (`tls_context`, `authenticator`, ...)."""
    from aiosmtpd.controller import Controller

    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()
