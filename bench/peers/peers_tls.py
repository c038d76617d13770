"""A TLS-terminating loopback proxy with a throw-away self-signed certificate.

Every WooCommerce peer needs https: Airbyte and tap-woocommerce-v3 hard-code `https://`, and
tap-woocommerce sends Basic auth, which WooCommerce honours only when it sees HTTPS
(research/peers-measured.md, "How each peer reaches the store"). The simulators speak plain HTTP,
so this proxy sits in front of them exactly like the one used against the real store: TLS in,
plain HTTP out, `X-Forwarded-Proto: https` added, nothing else changed.

One optional rewrite exists and is named at construction: `path_map` (used to serve
tap-woocommerce's `wc/v2/orders` from the simulator's `wc/v3` route: WooCommerce's v3 orders
controller extends the v2 one and the `after`/`orderby=date` arguments that tap sends behave the
same in both, research/woocommerce.md §2).
"""

from __future__ import annotations

import datetime as dt
import http.client
import ipaddress
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "proxy-connection"}


def make_certificate(directory: Path, names: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """A self-signed CA-flagged certificate for 127.0.0.1, localhost and `names` (DNS names,
    e.g. the `acme.myshopify.com` tap-shopify hard-codes): (cert.pem, key.pem).

    The certificate is its own trust anchor, so the same file is the peers'
    `REQUESTS_CA_BUNDLE`/`SSL_CERT_FILE` and the proxy's server certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pollerd peers bench")])
    now = dt.datetime.now(dt.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    *(x509.DNSName(name) for name in names),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class _Forward(BaseHTTPRequestHandler):
    server: _ProxyServer

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the simulator keeps the request log that counts."""

    def _forward(self) -> None:
        proxy = self.server.proxy
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers["X-Forwarded-Proto"] = "https"
        upstream = http.client.HTTPConnection(proxy.target_host, proxy.target_port, timeout=120)
        try:
            upstream.request(self.command, proxy.path_map(self.path), body=body, headers=headers)
            answer = upstream.getresponse()
            payload = answer.read()
        except OSError:
            self.close_connection = True
            return
        finally:
            upstream.close()
        self.send_response(answer.status, answer.reason)
        for key, value in answer.getheaders():
            if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _forward


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    proxy: TlsProxy


class TlsProxy:
    """`https://127.0.0.1:<port>` → `http://<target_host>:<target_port>`.

    The listening socket is bound at construction, so `url` is known before the simulator
    behind it starts (WooCommerce signs and renders links against its own URL: the proxy's)."""

    def __init__(
        self,
        cert: Path,
        key: Path,
        *,
        path_map: Callable[[str], str] | None = None,
    ) -> None:
        self.target_host = "127.0.0.1"
        self.target_port = 0
        self.path_map = path_map or (lambda path: path)
        self._server = _ProxyServer(("127.0.0.1", 0), _Forward)
        self._server.proxy = self
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self, target_port: int) -> TlsProxy:
        self.target_port = target_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
