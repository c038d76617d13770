"""Stopping `once` and `run` with real signals (issue 12 item 10).

`pollerd once` runs under `pollerd-once.service`, which systemd stops with SIGTERM: like `run`
it must finish the sends in flight, record them, start no new one and exit 0. A stop while a
store's pacing sleeps (nothing in flight) ends at once, and a second SIGINT/SIGTERM forces the
exit (a send cut there is resent with the same idempotency key: at-least-once still holds).

Every wait is on an event: the receiver's "a request arrived", pollerd's own log lines read
from its pipe, or the store simulator's "a request was answered".
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pollerd_sim import WooSim
from pollerd_sim.harness import pollerd_env, write_config
from pollerd_sim.loopback import LoopbackHandler, LoopbackService
from tests.support import ROOT

QUICK = 5.0  # seconds a stop may take when nothing is in flight (the interpreter's exit included)


class GateHandler(LoopbackHandler):
    def do_POST(self) -> None:
        gate: Gate = self.server.owner
        self.read_body()
        gate.arrive(self.headers.get("webhook-id"))
        if gate.release.wait(60):
            self.send_json(200, {"ok": True})


class Gate(LoopbackService):
    """A webhook receiver that holds every request until `release` is set: a send is
    provably in flight while `arrived` has fired and `release` has not."""

    handler_class = GateHandler

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self._cond = threading.Condition()
        self.ids: list[str | None] = []

    def arrive(self, webhook_id: str | None) -> None:
        with self._cond:
            self.ids.append(webhook_id)
            self._cond.notify_all()

    def wait_for(self, n: int, timeout: float = 30.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.ids) >= n, timeout=timeout)


class Proc:
    """A pollerd subprocess whose output is read line by line as it comes."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pollerd", *args],
            env=pollerd_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()

    def wait_line(self, text: str, timeout: float = 30.0) -> bool:
        with self._cond:
            return self._cond.wait_for(
                lambda: any(text in line for line in self.lines), timeout=timeout
            )

    def output(self) -> str:
        self._reader.join(timeout=5)
        with self._cond:
            return "".join(self.lines)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def gate() -> Iterator[Gate]:
    with Gate() as server:
        yield server
        server.release.set()


def started(*args: str, made: list[Proc]) -> Proc:
    proc = Proc(*args)
    made.append(proc)
    return proc


def patient_config(tmp_path: Path, sim: WooSim, gate: Gate, **delivery: Any) -> Path:
    """The harness config with a channel that waits for the gate as long as a test may."""
    config = write_config(tmp_path, sim.url, gate.url, delivery={"send_timeout": "60s", **delivery})
    text = config.read_text(encoding="utf-8").replace('timeout = "2s"', 'timeout = "60s"')
    config.write_text(text, encoding="utf-8")
    return config


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    made: list[Proc] = []
    yield made
    for proc in made:
        proc.close()


def test_sigterm_lets_once_finish_its_send_in_flight(
    tmp_path: Path, sim: WooSim, gate: Gate, procs: list[Proc]
) -> None:
    """Two alerts, one send at a time. SIGTERM while the first is in flight: it finishes and is
    recorded, the second is not started, exit 0. The next `once` sends only the second."""
    config = patient_config(tmp_path, sim, gate, concurrency=1)
    orders = [sim.create_order(payment_method="stripe") for _ in range(2)]
    once = started("once", "--config", str(config), made=procs)
    assert gate.wait_for(1), once.output()
    once.signal(signal.SIGTERM)
    assert once.wait_line("stopping: ", timeout=10), once.output()
    gate.release.set()  # the send in flight is answered after the stop was asked for
    assert once.proc.wait(30) == 0, once.output()
    assert len(gate.ids) == 1, gate.ids
    assert "Traceback" not in once.output()

    again = started("once", "--config", str(config), made=procs)
    assert again.proc.wait(30) == 0, again.output()
    assert sorted(map(str, gate.ids)) == sorted(f"shop:{o}:order.created" for o in orders)


@pytest.mark.parametrize("command", ["once", "run"])
def test_a_second_sigint_forces_the_exit(
    tmp_path: Path, sim: WooSim, gate: Gate, procs: list[Proc], command: str
) -> None:
    """Ctrl-C while a send hangs: pollerd waits for it; a second Ctrl-C exits now (killed by
    SIGINT, as a shell expects), and the cut send stays pending to be resent."""
    config = patient_config(tmp_path, sim, gate)
    sim.create_order(payment_method="stripe")
    proc = started(command, "--config", str(config), made=procs)
    assert gate.wait_for(1), proc.output()
    proc.signal(signal.SIGINT)
    assert proc.wait_line("stopping: ", timeout=10), proc.output()
    proc.signal(signal.SIGINT)
    asked = time.monotonic()
    code = proc.proc.wait(QUICK * 2)
    assert time.monotonic() - asked < QUICK, proc.output()
    assert code == -signal.SIGINT, proc.output()
    assert "forced" in proc.output()
    assert len(gate.ids) == 1

    gate.release.set()
    again = started("once", "--config", str(config), made=procs)
    assert again.proc.wait(30) == 0, again.output()
    assert len(gate.ids) == 2 and gate.ids[0] == gate.ids[1]  # resent, same idempotency key


@pytest.mark.parametrize("command", ["once", "run"])
def test_a_stop_during_a_pacing_wait_ends_at_once(
    tmp_path: Path, sim: WooSim, gate: Gate, procs: list[Proc], command: str
) -> None:
    """One request a minute: after the store's first answer pollerd sleeps ~60 s before the
    next. SIGTERM then: nothing is in flight, so pollerd exits 0 right away (it used to sleep
    the wait out, or die with 143 under `once`)."""
    gate.release.set()
    config = write_config(
        tmp_path, sim.url, gate.url, store={"max_requests_per_minute": 1, "interval": "1h"}
    )
    answered = threading.Event()
    handle = sim.handle

    def handled(*args: Any) -> Any:
        reply = handle(*args)
        answered.set()
        return reply

    sim.handle = handled  # type: ignore[method-assign]
    proc = started(command, "--config", str(config), made=procs)
    assert answered.wait(30), proc.output()
    asked = time.monotonic()
    proc.signal(signal.SIGTERM)
    code = proc.proc.wait(60)
    took = time.monotonic() - asked
    assert code == 0, proc.output()
    assert took < QUICK, f"stop took {took:.1f}s; log:\n{proc.output()}"
    assert "Traceback" not in proc.output()
