"""Injected failures of the kinds a WooCommerce shop's host puts in front of the REST API.

WooCommerce itself has no rate limit on wc/v3, but hosts, WAFs and proxies do (research §1.7):
nginx `limit_req` answers 429, with or without `Retry-After` (it is optional, RFC 6585 §4);
Cloudflare/Wordfence answer 403 with an HTML page; PHP fatals give WordPress's JSON 500; upstream
trouble gives nginx's 502/503 pages; slow hosts take seconds per page; broken proxies truncate
bodies or drop the connection. Each kind is served either to the next `count` requests or with
probability `rate` per request (seeded, so a failing test replays).
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

FAULT_KINDS = ("429", "403html", "500", "502", "503", "slow", "malformed", "reset")

_NGINX_PAGE = (
    "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{code} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
WAF_PAGE = (
    '<!DOCTYPE html>\n<html lang="en-US">\n<head><title>Attention Required! | Cloudflare</title>'
    '</head>\n<body>\n<div id="cf-wrapper"><h1>Sorry, you have been blocked</h1>\n'
    "<h2>You are unable to access this website</h2>\n<p>This website is using a security service "
    "to protect itself from online attacks. The action you just performed triggered the security "
    "solution.</p>\n<p>Cloudflare Ray ID: <strong>8f2c1d0e9a7b6c5d</strong></p></div>\n</body>\n"
    "</html>\n"
)
WP_FATAL = {
    "code": "internal_server_error",
    "message": '<p>There has been a critical error on this website.</p><p><a href="https://'
    'wordpress.org/documentation/article/faq-troubleshooting/">Learn more about troubleshooting '
    "WordPress.</a></p>",
    "data": {"status": 500},
    "additional_errors": [],
}
"""WordPress's fatal-error handler answers REST requests with this JSON (WP ≥ 5.2)."""


def nginx_page(code: int, reason: str) -> bytes:
    return _NGINX_PAGE.format(code=code, reason=reason).encode()


@dataclass
class Fault:
    kind: str
    count: int | None = None
    rate: float | None = None
    retry_after: int | str | None = None
    delay: float | None = None


class FaultPlan:
    """The faults in force, in the order they were added; thread-safe."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._rng = random.Random(seed)
        self.counts: dict[str, int] = {}

    def add(
        self,
        kind: str,
        *,
        count: int | None = None,
        rate: float | None = None,
        retry_after: int | str | None = None,
        delay: float | None = None,
    ) -> Fault:
        """Serve `kind` to the next `count` requests, or with probability `rate` each (both:
        probabilistic, at most `count` times). Neither given means the next request only."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULT_KINDS)}")
        if rate is not None and not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        if count is None and rate is None:
            count = 1
        if kind == "slow" and delay is None:
            delay = 2.0
        fault = Fault(kind, count, rate, retry_after, delay)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self) -> Fault | None:
        """The fault to serve to this request, if any, counted as served."""
        with self._lock:
            for fault in list(self._faults):
                if fault.rate is not None and self._rng.random() >= fault.rate:
                    continue
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                self.counts[fault.kind] = self.counts.get(fault.kind, 0) + 1
                return fault
        return None

    def served(self) -> dict[str, int]:
        """Faults served so far, by kind (a copy)."""
        with self._lock:
            return dict(self.counts)

    @property
    def active(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)
