"""`console`: alerts on stdout/stderr, for `pollerd demo`, first runs and journald.

Under systemd, stdout is the journal, so this is also a zero-setup channel for a server that
only needs `journalctl -u pollerd` to show orders. `text` is the summary line plus indented
detail lines for people; `json` is the exact event JSON, one object per line, for `jq`.
"""

from __future__ import annotations

import sys
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from pollerd.channels.base import Channel, ChannelContext, SendResult
from pollerd.model import Event
from pollerd.templates import detail, summary


class ConsoleChannel(Channel):
    """Writes each alert to a standard stream; there is no receiver that could refuse it."""

    kind: ClassVar[str] = "console"

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        stream: Literal["stdout", "stderr"] = "stdout"
        format: Literal["text", "json"] = "text"

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        raw = ctx.options
        self.options = (
            raw if isinstance(raw, self.Options) else self.Options.model_validate(raw or {})
        )

    def render(self, event: Event) -> str:
        if self.options.format == "json":
            return event.body()
        data = event.to_json()
        lines = [summary(data, locale=self.ctx.locale, timezone=self.ctx.timezone)]
        lines += [
            f"  {line}" for line in detail(data, locale=self.ctx.locale, timezone=self.ctx.timezone)
        ]
        return "\n".join(lines)

    async def send(self, event: Event, rendered: str) -> SendResult:
        # Looked up per send, not bound at start-up: tests and `pollerd demo` swap sys.stdout.
        stream = sys.stdout if self.options.stream == "stdout" else sys.stderr
        try:
            stream.write(rendered + "\n")
            stream.flush()  # a pipe or the journal would otherwise see alerts in bursts
        except OSError as exc:  # a closed pipe: retrying later is all that can help
            return SendResult.retry(f"cannot write to {self.options.stream}: {exc.strerror}")
        return SendResult.ok()
