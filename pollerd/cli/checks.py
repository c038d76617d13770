"""Setting up and looking: `init` writes the example config; `check`, `render` and `notify-test`
try a config without queueing anything; `status` shows what the running pollerd has done."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from pollerd.cli.root import ConfigOpt, guard, load_settings
from pollerd.errors import EXIT_FAILED, EXIT_OK


def init(
    path: Annotated[
        Path,
        typer.Argument(metavar="PATH", help="Where to write it (e.g. /etc/pollerd/pollerd.toml)."),
    ] = Path("pollerd.toml"),
) -> None:
    """Write the commented example config (every key, its default and why) to start from;
    never overwrites a file."""
    from pollerd.example import write_example

    written = guard(lambda: write_example(path))
    typer.echo(
        f"wrote {written}: fill in [[stores]], [[channels]] and [[routes]] (secrets as env:, "
        f"file: or credential: references), then run `pollerd check --config {written}`"
    )


def status(
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show each store's cursor and errors and each channel's outbox; exit 1 if unhealthy."""
    from pollerd.status import collect, render

    report = guard(lambda: collect(load_settings(config)))
    if as_json:
        typer.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        render(report)
    raise typer.Exit(EXIT_OK if report["healthy"] else EXIT_FAILED)


CHECK_HELP = (
    "Validate the config, render user templates, probe stores and channels; send nothing.\n\n"
    "Renders every user template against a sample of every event. Probes each enabled store "
    "read-only (auth, API version); a disabled store is listed, not probed. Probes each "
    "channel without sending: a TCP/TLS connection for webhooks and chat robots, Telegram "
    "getMe, the Twilio account, SMTP EHLO+STARTTLS+AUTH without MAIL FROM; console and "
    "Apprise channels are not probed (notify-test sends a real sample).\n\n"
    "Exit 0 if all pass, 1 if any fails, 78 if the config is invalid."
)


def check(config: ConfigOpt = None) -> None:
    from pollerd.status import check_all

    ok = guard(lambda: asyncio.run(check_all(load_settings(config), typer.echo)))
    raise typer.Exit(EXIT_OK if ok else EXIT_FAILED)


def notify_test(
    channel: Annotated[str, typer.Option(help="The channel to send a sample alert to.")],
    config: ConfigOpt = None,
) -> None:
    """Send a sample (test) order alert through one channel, bypassing the outbox."""
    from pollerd.status import send_sample

    ok = guard(lambda: asyncio.run(send_sample(load_settings(config), channel, typer.echo)))
    raise typer.Exit(EXIT_OK if ok else EXIT_FAILED)


def render(
    channel: Annotated[str, typer.Option(help="The channel whose message to show.")],
    event: Annotated[
        str, typer.Option(help="The event type: order.paid, order.created, ..., digest.")
    ] = "order.paid",
    raw: Annotated[
        bool, typer.Option("--raw", help="Email: the MIME wire form, not the decoded text.")
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Print the message a channel would send for a sample event (its format, locale and
    templates); nothing is sent or queued."""
    from pollerd.status import preview, readable

    settings = guard(lambda: load_settings(config))
    message = guard(lambda: asyncio.run(preview(settings, channel, event)))
    typer.echo(message if raw else readable(message))
    typer.echo(f"(a sample {event} as {channel} would send it; nothing was sent)", err=True)
