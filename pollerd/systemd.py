"""sd_notify with the standard library (after systemd's own MIT-0 example), and the watchdog.

The PyPI `sdnotify` package encodes Latin-1 and silently drops a Chinese `STATUS=` (research
§C.4, measured), so we send UTF-8 datagrams ourselves. The protocol is stable and documented as
the API ("it is also possible to reimplement the simple readiness notification protocol without
external dependencies", sd_notify(3)): one datagram of newline-separated `KEY=value` lines to the
`AF_UNIX` socket named by `$NOTIFY_SOCKET`, a leading `@` meaning the abstract namespace. Tests
bind such a socket themselves and wait for `READY=1` instead of sleeping.

Nothing here logs: this module is stdlib only and the daemon decides what a failed send means.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

MAX_STATUS = 500  # characters; `systemctl status` shows one line, and a datagram must stay small
SEND_TIMEOUT = 1.0
"""A full receive queue blocks a datagram send; the event loop sends these, so never for long."""


def supervised(env: Mapping[str, str] | None = None) -> bool:
    """True when a service manager asked for notifications (`$NOTIFY_SOCKET` is set)."""
    return bool((os.environ if env is None else env).get("NOTIFY_SOCKET"))


def notify(*states: str, env: Mapping[str, str] | None = None) -> bool:
    """Send `READY=1`, `STATUS=…`, `WATCHDOG=1`, `STOPPING=1`… as ONE datagram (systemd applies
    the lines of one datagram together, so `RELOADING=1` and `MONOTONIC_USEC=` must travel
    together). False when not supervised, when the address is of a kind we do not speak (`vsock:`)
    or when the send failed; it never raises, because a daemon must not die of its supervisor."""
    address = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
    if not address or address[0] not in ("/", "@"):
        return False
    if address[0] == "@":
        address = "\0" + address[1:]
    payload = "\n".join(_one_line(state) for state in states).encode("utf-8")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(SEND_TIMEOUT)
            sock.connect(address)
            sock.sendall(payload)
    except OSError:
        return False
    return True


def _one_line(state: str) -> str:
    """A newline inside a value would start a new (bogus) assignment: fold it, and keep STATUS
    short enough for one line of `systemctl status`."""
    state = " ".join(state.splitlines())
    if state.startswith("STATUS=") and len(state) > len("STATUS=") + MAX_STATUS:
        state = state[: len("STATUS=") + MAX_STATUS - 1] + "…"
    return state


def watchdog_interval(env: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """Seconds between `WATCHDOG=1` pings, or None when no watchdog is armed for this process.

    systemd sets `WATCHDOG_USEC` (from `WatchdogSec=`) and `WATCHDOG_PID`; a PID that is not ours
    means the variables were inherited from a parent and are not meant for us. The interval is half
    the timeout, as sd_watchdog_enabled(3) recommends ("every half of the time returned here")."""
    env = os.environ if env is None else env
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    owner = env.get("WATCHDOG_PID")
    if owner:
        try:
            if int(owner) != (os.getpid() if pid is None else pid):
                return None
        except ValueError:
            return None
    return usec / 2 / 1_000_000


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in µs, for `MONOTONIC_USEC=` beside `RELOADING=1` (systemd ≥ 253 uses it to
    match the reload to the request under `Type=notify-reload`)."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
