"""`console`: alerts on stdout/stderr, for `pollerd demo`, first runs and journald.

Under systemd, stdout is the journal, so this is also a zero-setup channel for a server that
only needs `journalctl -u pollerd` to show orders. `text` is the `text` template flavour laid out
for people: its summary line, then the detail lines indented (so an alert stands out in a busy
journal); `json` is the exact event JSON, one object per line, for `jq`.
"""

from __future__ import annotations

import sys
from typing import ClassVar, Literal

from pollerd.channels.base import Channel, ChannelOptions, SendResult
from pollerd.model import Event
from pollerd.templates import Message


class ConsoleChannel(Channel):
    """Writes each alert to a standard stream; there is no receiver that could refuse it."""

    kind: ClassVar[str] = "console"
    flavour: ClassVar[str] = "text"

    class Options(ChannelOptions):
        stream: Literal["stdout", "stderr"] = "stdout"
        format: Literal["text", "json"] = "text"

    def render(self, event: Event) -> str:
        if self.options.format == "json":
            return event.body()
        return _indented(self.message(event))

    def render_digest(self, events: list[Event]) -> str:
        """Many alerts at once: the `text` digest for people; for scripts, still each event's
        exact JSON on its own line (a `jq` pipeline has no use for a summary)."""
        if self.options.format == "json":
            return "\n".join(event.body() for event in events)
        return _indented(self.digest_message(events))

    async def send(self, event: Event, rendered: str) -> SendResult:
        # Looked up per send, not bound at start-up: tests and `pollerd demo` swap sys.stdout.
        stream = sys.stdout if self.options.stream == "stdout" else sys.stderr
        try:
            stream.write(rendered + "\n")
            stream.flush()  # a pipe or the journal would otherwise see alerts in bursts
        except OSError as exc:  # a closed pipe: retrying later is all that can help
            return SendResult.retry(f"cannot write to {self.options.stream}: {exc.strerror}")
        return SendResult.ok()


def _indented(message: Message) -> str:
    """The summary line as is and every detail line under it indented by two spaces; blank
    lines (a user template's spacing) are dropped so an alert stays one block."""
    head, *rest = message.body.split("\n")
    return "\n".join([head, *(f"  {line}" for line in rest if line.strip())])
