"""Test-only failpoints: the one switch tests use to make pollerd misbehave on purpose.

`POLLERD_FAILPOINT` names failpoints, comma-separated; it is never set in production. A fault
test that cannot fail proves nothing, so each failpoint either re-creates a classic bug, hangs
a loop, or kills the process at a transaction boundary, and a test runs against it:

- `hang_delivery`  the delivery loop's first send hangs forever; the event loop runs on
                   (daemon: the watchdog pings must stop);
- `block_loop`     the event loop thread itself blocks at that point (daemon);
- `no_overlap`     sync reads from the bookmark with no overlap, the bug the kill test must
                   catch (tests/fault/test_kill.py);
- `mark_first`     the outbox marks a row sent before sending it (the dual write): a crash
                   between the two loses the alert (tests/fault/test_boundaries.py);
- `lenient_json`   the WooCommerce client reads a body that is not JSON as an empty list,
                   "no orders" (tests/fault/test_tcp_faults.py must catch it);
- `ignore_retry_after`
                   the WooCommerce client drops a `Retry-After` and asks again too soon
                   (tests/fault/test_api_storm.py);
- `ignore_throttle`
                   Shopify's budget is never consulted: the GraphQL cost model and the REST
                   call-bucket estimate say "send now" whatever pollerd's share
                   (`max_budget`), so only the server's THROTTLED/429 holds it back
                   (tests/fault/test_throttle.py);
- `pidfile_lock`   the state lock is a pid file instead of an flock: kill -9 leaves it
                   behind and no pollerd starts again (tests/fault/test_bounce.py, row 4);
- `dead_is_sent`   a delivery that gives up is marked sent, not dead: gone from the
                   dead-letter list, never retried (tests/fault/test_outage.py);
- `overlap_per_page`
                   a pass reads one page from `bookmark − overlap` and the bookmark follows
                   it: the overlap re-applied on every page, research §B.4's livelock
                   (tests/fault/test_ties.py);
- `no_backoff`     a failed delivery is due again at once, in lock-step with every other
                   (tests/fault/test_channel_outage.py);
- `unsure_is_sent` a request that failed after it left (no answer in time, the connection
                   reset while waiting) is taken as answered 200: "it left, so it arrived",
                   the ambiguous send never resent (tests/fault/test_ambiguous.py);
- `tls_is_permanent`
                   a channel takes a failed TLS handshake as a permanent refusal of the
                   message: dead-lettered at once (tests/fault/test_tcp_faults.py);
- `unpaced`        the store's request pacer keeps no spacing between requests (the ceiling
                   `max_requests_per_minute` ignored; tests/fault/test_api_storm.py);
- `status_only`    a chat robot's HTTP 200 is taken as sent whatever its errcode says
                   (tests/fault/test_errcode.py);
- `watchdog_thread`
                   WATCHDOG=1 also comes from a thread of its own that does not depend on the
                   event loop (Puma's, Sidekiq's way): a hung loop keeps pinging
                   (tests/fault/test_hung_loop.py);
- `commit_per_order`
                   a page is committed one order at a time, so a failure mid-page leaves part
                   of it behind (tests/fault/test_store_faults.py);
- `local_cursor`   the bookmark is pollerd's own clock at the start of the pass, not the
                   newest change the API returned (tests/fault/test_clock.py);
- injections, not bugs: `clock_skew:SECONDS` (e.g. `clock_skew:+3600`) moves pollerd's wall
  clock (`time.time`, so every timestamp pollerd takes, OAuth's included) that many seconds,
  as a system clock that is off would; `disk_full[:n]` lets every SQLite connection grow the
  file by n pages (default 1) past what it has (`PRAGMA max_page_count`): SQLite's own
  "database or disk is full" after that; `busy_timeout:n` waits n seconds for another
  writer's lock instead of 30;
- kill points (`kill_point`, research §B.6 row 2): `before_page_commit` (inside the page's
  transaction, every row written, not committed), `after_page_commit`,
  `after_send_before_mark` (the channel accepted, the row is not marked), `after_mark`,
  `mid_migration` (inside a migration's transaction), `mid_rekey` (inside a re-seal batch's
  transaction), `mid_bulk_import` (a bulk export's batch committed, the export not finished).
  `name:n` kills at the n-th pass through that point in the process (default the first).

The variable is read once, at import (`pollerd/__init__.py` imports this module first, so a
skewed clock is in place before any module binds `time.time`): a test sets it in the
environment of the process it starts.
"""

from __future__ import annotations

import os
import signal
import sys
import time

FAILPOINT = os.environ.get("POLLERD_FAILPOINT", "")
_ARMED: dict[str, int] = {
    name: int(nth or 1)
    for name, _, nth in (part.strip().partition(":") for part in FAILPOINT.split(","))
    if name
}
_passes: dict[str, int] = {}


def armed(name: str) -> bool:
    """Whether the failpoint `name` is switched on in this process."""
    return name in _ARMED


def kill_point(name: str) -> None:
    """SIGKILL this process here when `name` is armed and this is its n-th pass: what kill -9
    or the OOM killer does at the worst moment, made repeatable. Nothing runs after it (no
    finally, no atexit, no flush but stderr's own line saying where it died)."""
    if name not in _ARMED:
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] >= _ARMED[name]:
        sys.stderr.write(f"FAILPOINT {name}: SIGKILL at pass {_passes[name]} (test only)\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def value(name: str) -> int:
    """The number given with an armed failpoint (`name:n`; 1 when none was given), 0 when it
    is not armed."""
    return _ARMED.get(name, 0)


def clock_skew() -> int:
    """Seconds `clock_skew:SECONDS` adds to the wall clock; 0 when it is not armed."""
    return value("clock_skew")


if clock_skew():
    _real_time = time.time
    _SKEW = float(clock_skew())

    def _skewed_time() -> float:
        return _real_time() + _SKEW

    time.time = _skewed_time  # test-only: what a system clock off by SKEW seconds returns
