"""Ports on 127.0.0.1 for the test servers that cannot take port 0."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nobody listens on right now: for "nothing listening" cases, and for servers
    that cannot take port 0 (aiosmtpd's start-up probe connects to the port it was given)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
