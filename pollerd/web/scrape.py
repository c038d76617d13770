"""`/metrics` and `/healthz` on `[pollerd] metrics_listen`: what Prometheus and a load balancer
or uptime check read.

The HTTP endpoint runs in a daemon thread (`serve`), so the asyncio loop never waits for a
scraper, and a hung loop still answers `/healthz` (with 503, which is the point). `/healthz`
calls the daemon's `health()` from that thread: it must only read. `/metrics` exposes
`pollerd.metrics.current()`, looked up per request; until `serve()` (or `declare()`) is called
prometheus_client is not imported at all (see pollerd.metrics).
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from loguru import logger

from pollerd.errors import ConfigError
from pollerd.metrics import current

SCRAPE_TIMEOUT = 10.0  # seconds a scraper's connection may stay silent before it is dropped

HealthCheck = Callable[[], tuple[bool, dict[str, Any]]]
"""The daemon's `Health.check`: (healthy, detail), called from the server's thread."""


@dataclass
class MetricsServer:
    """The running endpoint; `close()` stops it and frees the port."""

    host: str
    port: int
    _server: Any  # a ThreadingMixIn WSGIServer
    _thread: threading.Thread

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve(listen: str, health: HealthCheck) -> MetricsServer:
    """Serve GET /metrics (Prometheus text, or OpenMetrics when asked) and GET /healthz on
    `listen` ("host:port"; port 0 picks a free one: see `.port`) from a daemon thread.

    /healthz answers 200 `{"status": "ok", ...}` when `health()` says healthy, else 503 with
    its dict (`{"status": "unhealthy", "reason": ...}` unless the dict says otherwise);
    a `health()` that raises is a 503 too. Raises ConfigError when the address cannot be
    bound, naming `pollerd.metrics_listen`."""
    host, port = _split(listen)
    current()  # counting starts now, if `declare()` has not started it already
    try:
        server = _make_server(host, port, _app(health))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            "pollerd.metrics_listen",
            f"cannot listen on {listen}: {exc}",
            "pick a free port (or stop what is using it) and a local address",
        ) from None
    if not _loopback(host):
        logger.warning(
            "metrics_listen {} is not a loopback address: /metrics and /healthz show store and "
            "channel names to anyone who can reach it; firewall it or use 127.0.0.1",
            listen,
        )
    bound = server.server_address
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.5}, name="pollerd-metrics"
    )
    thread.daemon = True
    thread.start()
    return MetricsServer(host, int(bound[1]), server, thread)


def _make_server(host: str, port: int, app: Callable[..., Iterable[bytes]]) -> Any:
    """A threading WSGI server (stdlib), imported here: `http.server` and friends cost ~2 MiB
    that a process without `metrics_listen` never needs."""
    from socketserver import TCPServer, ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True  # a scraper's open connection must not hold up shutdown
        allow_reuse_address = True
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        def server_bind(self) -> None:
            """As WSGIServer's, minus `socket.getfqdn()`: a reverse DNS lookup of the listen
            address that can take seconds (or hang) on a VPS with a slow resolver."""
            TCPServer.server_bind(self)
            self.server_name = str(self.server_address[0])
            self.server_port = self.server_address[1]
            self.setup_environ()

    class QuietHandler(WSGIRequestHandler):
        """No access log on stderr (it would bypass pollerd's log sinks and their redaction),
        and a read timeout, so a silent client cannot pin a thread."""

        timeout = SCRAPE_TIMEOUT

        def log_message(self, format: str, *args: Any) -> None:
            return

    return make_server(host, port, app, server_class=Server, handler_class=QuietHandler)


def _split(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(
            "pollerd.metrics_listen", f"{listen!r} is not host:port", 'e.g. "127.0.0.1:9464"'
        )
    return host, int(port)


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _app(health: HealthCheck) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", "/"), environ.get("REQUEST_METHOD", "GET")
        if path == "/metrics":
            # Looked up per request: `reset()` (tests) swaps the registry under a live server.
            from prometheus_client import make_wsgi_app

            return make_wsgi_app(current().registry)(environ, start_response)
        if path == "/healthz":
            if method not in ("GET", "HEAD"):
                return _reply(start_response, "405 Method Not Allowed", b"", [("Allow", "GET")])
            status, body = _health(health)
            payload = json.dumps(body, ensure_ascii=False, default=str).encode("utf-8")
            headers = [
                ("Content-Type", "application/json; charset=utf-8"),
                ("Cache-Control", "no-store"),
            ]
            return _reply(start_response, status, payload, headers, head=method == "HEAD")
        if path == "/":
            text = b"pollerd: /metrics (Prometheus), /healthz (200 healthy, 503 not)\n"
            return _reply(start_response, "200 OK", text, [("Content-Type", "text/plain")])
        return _reply(start_response, "404 Not Found", b"not found\n", [])

    return app


def _health(health: HealthCheck) -> tuple[str, dict[str, Any]]:
    try:
        healthy, detail = health()
    except Exception as exc:  # noqa: BLE001 - an unanswerable health check is unhealthy
        logger.warning("healthz: the health check failed: {}", type(exc).__name__)
        return "503 Service Unavailable", {
            "status": "unhealthy",
            "reason": f"health check failed: {type(exc).__name__}",
        }
    if healthy:
        return "200 OK", {"status": "ok", **{k: v for k, v in detail.items() if k != "status"}}
    return "503 Service Unavailable", {"status": "unhealthy", **detail}


def _reply(
    start_response: Callable[..., Any],
    status: str,
    body: bytes,
    headers: list[tuple[str, str]],
    *,
    head: bool = False,
) -> list[bytes]:
    start_response(status, [*headers, ("Content-Length", str(len(body)))])
    return [b"" if head else body]
