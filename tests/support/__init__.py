"""What the tests share, one copy each; product code and the simulators never import from here.

- `ROOT`: the source checkout (the tests read its README, config.example.toml and conftest);
- `clocks`: FakeTime (a source's clock and sleep), SecondsClock, WallClock, due_clock;
- `transports`: RecordingTransport, a real httpx transport that records the wire;
- `events`: paid_event / line_items, the order alert of the channel tests, and the hostile
  CUSTOMER and ITEM;
- `sending`: send_events, the outbox's render-once-send-n loop for one channel;
- `smtp`: a real aiosmtpd server (Inbox, LOGIN, a throwaway CA) for the email channel;
- `loopback`: free_port;
- `channel_rigs`: each registered channel pointed at its loopback receiver, for the channel
  contract suite (tests/contract/test_channels.py).
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
"""The source checkout: the tests read its README, config.example.toml and conftest."""
