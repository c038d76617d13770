"""Test-only failpoints: the one switch tests use to make pollerd misbehave on purpose.

`POLLERD_FAILPOINT` names at most one; it is never set in production. A fault test that cannot
fail proves nothing, so each failpoint either re-creates a classic bug or hangs a loop, and a
test runs once against it to show it would catch it:

- `hang_delivery`  the delivery loop's first send hangs forever; the event loop runs on
                   (daemon: the watchdog pings must stop);
- `block_loop`     the event loop thread itself blocks at that point (daemon);
- `no_overlap`     sync reads from the bookmark with no overlap, the bug the kill test must
                   catch (tests/fault/test_kill.py).

The variable is read once, at import: a test sets it in the environment of the process it
starts.
"""

from __future__ import annotations

import os

FAILPOINT = os.environ.get("POLLERD_FAILPOINT", "")


def armed(name: str) -> bool:
    """Whether the failpoint `name` is switched on in this process."""
    return name == FAILPOINT
