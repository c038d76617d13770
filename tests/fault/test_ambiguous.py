"""Fault matrix row 12 (research §B.6): ambiguous sends. The receiver reads a message and then
either answers only after the sender's timeout (`slow`: it accepted), resets the connection
after accepting it (`accept_reset`), or resets it without acting on it (`down`). From the
sender's side the three look alike: a request that left and got no answer.

What must hold, through real `pollerd once` runs and the checker: every ambiguous send is sent
again, with the same `webhook-id` and the same bytes; nothing is lost; the duplicates are
exactly the ambiguous sends the receiver had accepted (B.6: dups ≤ ambiguous sends), each one
byte-identical to the first copy (`same_body`: receiver dedupe on the id leaves 0), per order
in order.

The same run with "it left, so it arrived" (`unsure_is_sent`: a request that failed after it
left is taken as answered 200) never resends: the messages the receiver dropped are lost."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from pollerd_sim import WebhookSink, WooSim
from pollerd_sim.harness import KEY, SECRET, pollerd, pollerd_env, write_config
from pollerd_sim.testing.faults import Report
from tests.fault.rig import intact, sized, verdict

pytestmark = pytest.mark.fault
AMBIGUOUS = ("slow", "accept_reset", "down")  # the receiver's side of one ambiguous send
ACCEPTED = ("slow", "accept_reset")  # ...of which these acted on the message


@dataclass
class Ambiguous:
    codes: list[int]
    report: Report
    arrivals: dict[str, int]  # requests answered in each sink mode
    bodies: dict[str, set[bytes]]  # every body each webhook-id arrived with, any answer


def ambiguous(
    tmp: Path, *, orders: int, each: int, runs: int = 2, failpoint: str = ""
) -> Ambiguous:
    # The sink answers `slow` after 3 s; the channel's timeout in these configs is 2 s.
    with WooSim(consumer_key=KEY, consumer_secret=SECRET) as sim, WebhookSink(delay=3.0) as sink:
        config = write_config(tmp, sim.url, sink.url)
        for _ in range(orders):
            sim.create_order(payment_method="stripe", set_paid=True)
        sink.queue_modes(*AMBIGUOUS * each)  # the first sends, interleaved; then "ok"
        env = pollerd_env(**({"POLLERD_FAILPOINT": failpoint} if failpoint else {}))
        codes = []
        for _ in range(runs):  # the first run meets the faults; the second resends (due at once)
            result = pollerd("once", "--config", str(config), env=env, timeout=120)
            assert result.returncode in (0, 1), result.stderr[-2000:]
            codes.append(result.returncode)
        intact(tmp / "pollerd.db")
        # A `slow` request is recorded when its 3 s are up, after the sender gave up on it.
        assert sink.wait_for_attempts(sum(sink.arrivals.values()), timeout=30)
        bodies: dict[str, set[bytes]] = {}
        for attempt in sink.attempts:
            bodies.setdefault(attempt.webhook_id or "", set()).add(attempt.body)
        return Ambiguous(codes, verdict(sim, sink), dict(sink.arrivals), bodies)


def test_ambiguous_sends_are_resent_with_the_same_id_and_bytes(tmp_path: Path) -> None:
    run = ambiguous(tmp_path, orders=sized(100), each=sized(5))
    assert run.codes == [1, 0], run.codes  # failed and said so; then everything went out
    assert all(run.arrivals.get(m) == sized(5) for m in AMBIGUOUS), run.arrivals
    report = run.report
    assert not report.lost and not report.unexpected, report.summary()
    assert not report.order_violations, report.summary()
    assert report.expected == 2 * sized(100), report.summary()
    # Only what the receiver had accepted arrived twice, every copy byte-identical.
    accepted = sum(run.arrivals[m] for m in ACCEPTED)
    assert report.extra_copies == accepted, report.summary()
    assert all(d.same_body and d.copies == 1 for d in report.duplicated), report.duplicated
    # Every attempt of an event, answered or not, carried its one id and its one body.
    assert all(len(b) == 1 for b in run.bodies.values()), run.bodies.keys()
    print(f"row 12: {report.expected} events, {accepted} accepted ambiguous sends, resent")


def test_the_ambiguous_test_catches_a_send_taken_as_arrived(tmp_path: Path) -> None:
    run = ambiguous(tmp_path, orders=10, each=2, runs=1, failpoint="unsure_is_sent")
    # What the receiver dropped is gone (marked sent: no later run would resend it), and
    # nothing was resent: `not report.lost` above fails.
    assert run.codes == [0], run.codes
    assert len(run.report.lost) == run.arrivals["down"] == 2, run.report.summary()
    assert not run.report.duplicated, run.report.summary()
