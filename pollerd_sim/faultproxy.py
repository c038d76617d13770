"""`FaultProxy`: a TCP proxy on 127.0.0.1 that breaks connections on purpose, between pollerd
and a simulator or the sink (research §B.6 row 13; Toxiproxy's toxics, which need a Go binary
this machine cannot install, in a hundred lines of threads).

Toxics, switchable at runtime (`set_toxic`), applied to each new connection:

- `none`       bytes pass both ways;
- `reset`      the connection is accepted, then reset (RST) before any answer;
- `half_open`  accepted and read, never answered nor closed (a peer that vanished): only the
               caller's own timeout ends the call;
- `slice`      the answer arrives one byte per write;
- `cut`        the answer's headers pass, then only `limit` bytes of its body, then the
               connection closes (the client sees fewer bytes than Content-Length);
- `truncate`   the same, but Content-Length is rewritten to `limit`: a complete HTTP answer
               whose JSON stops in the middle (a proxy or cache that cut it "cleanly");
- `slow`       every chunk of the answer waits `delay` seconds;
- `tls_fail`   the TLS handshake fails: the ClientHello is read and answered with a fatal
               `handshake_failure` alert (a server with no cipher, protocol or certificate the
               client accepts; a TLS-intercepting middlebox refusing the client).

With `tls` (a server-side `ssl.SSLContext`, e.g. `pollerd_sim.testing.smtp.make_certs(dir)
.server_context()`), the proxy terminates TLS, `url` is `https://`, and the client needs to
trust that certificate (httpx reads `SSL_CERT_FILE`); it then relays the plaintext to the
upstream, both directions in one thread (an SSL socket must not be read and written from two
threads at once). The toxics that act on the answer's bytes need the plaintext proxy; `none`,
`reset`, `half_open` and `tls_fail` work in both.

`connections` counts connections per toxic, so a test knows the fault was met.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import struct
import threading
import time
from typing import Any

TOXICS = ("none", "reset", "half_open", "slice", "cut", "truncate", "slow", "tls_fail")
PLAINTEXT_ONLY = ("slice", "cut", "truncate", "slow")
HANDSHAKE_FAILURE = bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28])
"""A TLS record (alert, TLS 1.2 framing, 2 bytes): level fatal (2), `handshake_failure` (40)."""


class FaultProxy:
    def __init__(
        self,
        upstream: str = "",
        *,
        toxic: str = "none",
        limit: int = 40,
        delay: float = 0.2,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """`upstream`: `http://host:port...` or `host:port` of the real server; may be given
        later (`point_to`) when the server must know the proxy's URL first (WooCommerce signs
        OAuth against the site's own address: `WooSim(home_url=proxy.url)`)."""
        self.upstream = ("127.0.0.1", 0)
        if upstream:
            self.point_to(upstream)
        self.toxic, self.limit, self.delay = toxic, limit, delay
        self.tls = tls
        self.connections: dict[str, int] = {}
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.set_toxic(toxic)

    def __enter__(self) -> FaultProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def point_to(self, upstream: str) -> None:
        target = upstream.split("://", 1)[-1].split("/", 1)[0]
        host, _, port = target.rpartition(":")
        self.upstream = (host, int(port))

    def set_toxic(
        self, toxic: str, *, limit: int | None = None, delay: float | None = None
    ) -> None:
        if toxic not in TOXICS:
            raise ValueError(f"unknown toxic {toxic!r}; known: {', '.join(TOXICS)}")
        if self.tls is not None and toxic in PLAINTEXT_ONLY:
            raise ValueError(f"toxic {toxic!r} acts on plaintext answers: use a proxy without tls")
        with self._lock:
            self.toxic = toxic
            self.limit = self.limit if limit is None else limit
            self.delay = self.delay if delay is None else delay

    def close(self) -> None:
        self._server.close()
        with self._lock:
            for conn in self._held:
                with contextlib.suppress(OSError):
                    conn.close()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self._server.accept()
                with self._lock:
                    toxic, limit, delay = self.toxic, self.limit, self.delay
                    self.connections[toxic] = self.connections.get(toxic, 0) + 1
                    self._held.append(client)
                threading.Thread(
                    target=self._serve, args=(client, toxic, limit, delay), daemon=True
                ).start()

    def _serve(self, client: socket.socket, toxic: str, limit: int, delay: float) -> None:
        if toxic == "reset":
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
            return
        if toxic == "half_open":
            with contextlib.suppress(OSError):
                while client.recv(65536):
                    pass  # read and drop; never answer, never close
            return
        if toxic == "tls_fail":
            with contextlib.suppress(OSError):
                client.settimeout(10)
                client.recv(65536)  # the ClientHello
                client.sendall(HANDSHAKE_FAILURE)
            _close(client)
            return
        if self.tls is not None:
            try:
                client.settimeout(10)
                client = self.tls.wrap_socket(client, server_side=True)
            except OSError:  # the client gave up, or did not trust us
                _close(client)
                return
        try:
            upstream = socket.create_connection(self.upstream, timeout=30)
        except OSError:
            client.close()
            return
        with self._lock:
            self._held.extend((client, upstream))
        if isinstance(client, ssl.SSLSocket):
            self._relay(client, upstream)
            return
        threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
        self._answer(upstream, client, toxic, limit, delay)

    @staticmethod
    def _relay(client: ssl.SSLSocket, upstream: socket.socket) -> None:
        """Plaintext both ways between a TLS client and the upstream, in this one thread,
        until either side closes."""
        other = {client: upstream, upstream: client}
        with contextlib.suppress(OSError):  # ssl.SSLError included
            while True:
                if client.pending():  # decrypted bytes select() cannot see
                    ready: list[socket.socket] = [client]
                else:
                    ready = select.select([client, upstream], [], [], 60)[0]
                if not ready:
                    break
                for src in ready:
                    data = src.recv(65536)
                    if not data:
                        raise ConnectionAbortedError
                    other[src].sendall(data)
        for sock in (client, upstream):
            _close(sock)

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        """Client → upstream, as it comes."""
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def _answer(
        self, upstream: socket.socket, client: socket.socket, toxic: str, limit: int, delay: float
    ) -> None:
        """Upstream → client, with the toxic."""
        head = b""
        body_sent = 0
        try:
            while data := upstream.recv(65536):
                if toxic == "slow":
                    time.sleep(delay)  # the toxic itself, not a synchronisation
                if toxic == "slice":
                    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    for i in range(len(data)):
                        client.sendall(data[i : i + 1])
                    continue
                if toxic in ("cut", "truncate"):
                    if b"\r\n\r\n" not in head:
                        head += data
                        if b"\r\n\r\n" not in head:
                            continue
                        headers, _, data = head.partition(b"\r\n\r\n")
                        limit = min(limit, _length(headers, limit))  # a short body: whole
                        if toxic == "truncate":
                            headers = _with_length(headers, limit)
                        client.sendall(headers + b"\r\n\r\n")
                    room = limit - body_sent
                    client.sendall(data[:room])
                    body_sent += min(room, len(data))
                    if body_sent >= limit:
                        break
                    continue
                client.sendall(data)
        except OSError:
            pass
        for sock in (client, upstream):  # shutdown first: it wakes the other thread's recv
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


def _length(headers: bytes, default: int) -> int:
    for line in headers.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return int(value)
    return default


def _with_length(headers: bytes, length: int) -> bytes:
    lines = [
        line
        for line in headers.split(b"\r\n")
        if not line.lower().startswith((b"content-length:", b"transfer-encoding:", b"connection:"))
    ]
    # Connection: close, or the client would send its next request on a connection that ends.
    return b"\r\n".join([*lines, b"Content-Length: %d" % length, b"Connection: close"])
