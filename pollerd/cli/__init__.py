"""`pollerd` on the command line: the command table and `main` (the `pollerd` entry point and
`python -m pollerd`).

The commands are registered here, in the order `pollerd --help` lists them (typer keeps the
order of registration), so that where a command's code lives (by family: `running`, `checks`,
`upkeep`, `records`) does not reorder the help. What every command shares is in `root`.
"""

from __future__ import annotations

import sys

from pollerd.cli import alerts, checks, records, running, upkeep
from pollerd.cli.root import app
from pollerd.errors import EXIT_OK, PollerdError

__all__ = ["app", "main"]

app.command()(running.run)
app.command()(running.once)
app.command()(running.backfill)
app.command()(checks.status)
app.command(help=checks.CHECK_HELP)(checks.check)
app.command("notify-test")(checks.notify_test)
app.command()(checks.render)
app.command()(checks.init)
app.command()(upkeep.keygen)
app.command()(upkeep.rekey)
app.command()(upkeep.prune)
app.command()(upkeep.backup)
app.command()(running.demo)
app.command()(running.sim)
app.add_typer(records.deliveries_app, name="deliveries")
app.add_typer(records.unsubscribes_app, name="unsubscribes")
app.add_typer(records.cursor_app, name="cursor")
app.add_typer(records.quarantine_app, name="quarantine")
app.add_typer(alerts.alerts_app, name="alerts")


def main() -> None:
    try:
        app()
    except SystemExit as exc:
        code = exc.code
        # click reports usage errors with exit 2 already; make sure config errors raised while
        # parsing are not swallowed as 1.
        raise SystemExit(code if code is not None else EXIT_OK) from None
    except PollerdError as exc:  # pragma: no cover - guard catches these first
        print(f"pollerd: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
