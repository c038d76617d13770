"""What only pollerd's own tests share, one copy each; product code and the simulators never
import from here. What the contract suites and the benchmarks need as well (the suites, their
rigs, the sample order alert, send_events, the SMTP server, free_port) is in
`pollerd_sim.testing`, where a plugin in another repository finds it too.

- `ROOT`: the source checkout (the tests read its README, config.example.toml and conftest);
- `clocks`: FakeTime (a source's clock and sleep), SecondsClock, WallClock, due_clock;
- `transports`: RecordingTransport, a real httpx transport that records the wire;
- `toyplatform`: a third platform written as a plugin outside pollerd would be, with its
  simulator and its source contract rig, installed through real entry points.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
"""The source checkout: the tests read its README, config.example.toml and conftest."""
