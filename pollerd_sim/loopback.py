"""The loopback HTTP plumbing shared by the simulated store and the webhook sink.

Both are real HTTP servers (stdlib `ThreadingHTTPServer`) because pollerd's httpx clients must be
exercised through real sockets: keep-alive reuse, connection resets and timeouts only exist on a
wire. Three things the stdlib does not do on its own are done here:

- every response carries `Content-Length`, so HTTP/1.1 keep-alive works and httpx can reuse
  connections (a body without a length would force a close per request);
- a handler can *abort* a connection: close it with an RST and no response at all, which is what
  a crashed upstream or a flaky proxy looks like to a client;
- `stop()` closes idle keep-alive connections too, so a stopped server really stops answering
  (otherwise a pooled client connection would keep talking to a "stopped" server).
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import sys
import threading
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

JSON_TYPE = "application/json; charset=UTF-8"


class LoopbackServer(ThreadingHTTPServer):
    """A `ThreadingHTTPServer` that tracks its connections so they can be aborted or closed."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._conn_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._aborted: set[socket.socket] = set()
        self.owner: Any = None
        self.connections_accepted = 0
        """TCP connections accepted so far: tests prove keep-alive reuse with it."""

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conn_lock:
            self._connections.add(request)
            self.connections_accepted += 1
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self._connections.discard(request)
            aborted = request in self._aborted
            self._aborted.discard(request)
        if aborted:
            # No FIN first: close with SO_LINGER=0 so the peer sees a reset, not an orderly close.
            self.close_request(request)
        else:
            super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that vanishes mid-request (a daemon killed by the fault tests) is expected;
        anything else is still printed."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def abort(self, request: socket.socket) -> None:
        """Mark a connection to be reset (RST, no response) when its handler returns."""
        request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with self._conn_lock:
            self._aborted.add(request)

    def close_all(self) -> None:
        """Shut down every open connection, idle keep-alive ones included."""
        with self._conn_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class LoopbackHandler(BaseHTTPRequestHandler):
    """Request handler base: HTTP/1.1, silent, with helpers that always send a length."""

    protocol_version = "HTTP/1.1"
    server_version = "pollerd-sim"
    sys_version = ""
    # An idle keep-alive connection is dropped after this long (nginx's keepalive_timeout is 75 s).
    timeout = 75
    server: LoopbackServer

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in one write, and without Nagle: otherwise a delayed ACK on the
        # client adds ~40 ms to every keep-alive response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the stdlib's per-request stderr line; the owners keep their own logs."""

    def read_body(self) -> bytes:
        """Read exactly Content-Length bytes, so the next request on this connection parses."""
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def send_body(
        self,
        status: int,
        body: bytes,
        content_type: str = JSON_TYPE,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in headers or ():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        if self.command != "HEAD":
            self._headers_buffer.append(b"\r\n" + body)  # type: ignore[attr-defined]
            self.flush_headers()
        else:
            self.end_headers()

    def send_json(
        self, status: int, data: Any, headers: list[tuple[str, str]] | None = None
    ) -> None:
        body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
        self.send_body(status, body, JSON_TYPE, headers)

    def abort_connection(self) -> None:
        """Answer nothing and reset the connection (a dead upstream, a proxy dropping us)."""
        self.server.abort(self.connection)
        self.close_connection = True


class RoutedHandler(LoopbackHandler):
    """Hands each request to the owning service's `handle(method, path, query, headers, body)`,
    which returns a reply (`status`, `body`, `content_type`, `headers`, `reset`); a bug in the
    service becomes its `crash_reply()` (a 500 in the platform's own shape), never a hang."""

    def _serve(self) -> None:
        owner = self.server.owner
        body = self.read_body()
        split = urllib.parse.urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            reply = owner.handle(self.command, split.path, split.query, headers, body)
        except Exception:  # noqa: BLE001 - a simulator bug must show up as a 500, not a hang
            traceback.print_exc(file=sys.stderr)
            reply = owner.crash_reply()
        if reply.reset:
            self.abort_connection()
            return
        self.send_body(reply.status, reply.body, reply.content_type, reply.headers)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _serve


class LoopbackService:
    """A loopback server run from a daemon thread: `start()`, `stop()`, `.url`, `with`."""

    handler_class: type[LoopbackHandler] = LoopbackHandler

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._server: LoopbackServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT` (the real port once started)."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        if self._server is not None:
            return self
        server = LoopbackServer((self.host, self.port), self.handler_class)
        server.owner = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_all()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def connections_accepted(self) -> int:
        """TCP connections accepted since start (keep-alive clients reuse one)."""
        return self._server.connections_accepted if self._server is not None else 0

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
