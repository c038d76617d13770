"""sd_notify with the standard library (after systemd's own MIT-0 example).

The PyPI `sdnotify` package encodes Latin-1 and silently drops a Chinese `STATUS=` (research
§C.4, measured), so we send UTF-8 datagrams ourselves. Tests use the same socket protocol to
wait for READY=1 instead of sleeping.
"""

from __future__ import annotations

import os
import socket


def notify(*states: str) -> bool:
    """Send `READY=1`, `STATUS=…`, `STOPPING=1`…; False when not under a notify socket."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(states).encode("utf-8"))
    except OSError:
        return False
    return True
