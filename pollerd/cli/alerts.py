"""The `alerts` command group: the seller rules (`[[alerts]]`) seen from the command line.

`pollerd alerts test` is a dry run for tuning thresholds: the stored facts of the last days
replayed through the configured rules (`pollerd.alerts.replay`), printing what would have fired
and when, and how many alerts each rule would have raised per day. It only reads the database,
so it needs no lock and runs with the daemon stopped or running.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated

import typer

from pollerd.cli.root import ConfigOpt, fail, guard, load_settings, make_typer
from pollerd.errors import EXIT_USAGE

alerts_app = make_typer("The seller alert rules ([[alerts]]): a dry run over stored history.")

DAY = 86400.0


@alerts_app.command("test")
def alerts_test(
    days: Annotated[
        int, typer.Option(min=1, max=400, help="Replay the stored facts of this many days.")
    ] = 7,
    store: Annotated[str | None, typer.Option(help="Only this store.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Replay the last days' stored orders and disputes through the [[alerts]] rules and print
    what would have fired and when (a dry run: nothing is recorded or sent)."""
    from zoneinfo import ZoneInfo

    from pollerd.alerts.replay import Fired, per_day, replay
    from pollerd.alerts.seller import applies
    from pollerd.store import open_store

    settings = guard(lambda: load_settings(config))
    stores = [s for s in settings.stores if store is None or s.name == store]
    if store is not None and not stores:
        known = ", ".join(s.name for s in settings.stores) or "none"
        fail(f"--store: no store named {store!r} (known: {known})", EXIT_USAGE)
    if not settings.alerts:
        typer.echo("no [[alerts]] configured: no seller rule to test")
        return
    stores = [s for s in stores if any(applies(a, s.name) for a in settings.alerts)]
    if not stores:
        typer.echo("no [[alerts]] table applies to " + (store or "any configured store"))
        return
    zone = ZoneInfo(settings.pollerd.timezone)

    def local(epoch: float) -> datetime:
        return datetime.fromtimestamp(epoch, UTC).astimezone(zone)

    until = time.time()
    since = until - days * DAY

    def replayed() -> list[Fired]:
        db = open_store(settings.pollerd.database)
        try:
            return [
                f
                for cfg in stores
                for f in replay(
                    db, settings.alerts, cfg.name, cfg.platform, since=since, until=until
                )
            ]
        finally:
            db.close()

    fired = guard(replayed)
    fired.sort(key=lambda f: (f.at, f.alert.store, f.alert.type, f.alert.subject))
    typer.echo(
        f"dry run over the last {days} day(s) ({local(since):%Y-%m-%d %H:%M} to "
        f"{local(until):%Y-%m-%d %H:%M} {settings.pollerd.timezone}): nothing recorded or sent"
    )
    if not fired:
        typer.echo("no alert would have fired")
        return
    typer.echo("")
    typer.echo(
        f"{'when (' + settings.pollerd.timezone + ')':<20} {'store':<14} {'type':<24} subject"
    )
    for f in fired:
        a = f.alert
        typer.echo(f"{local(f.at):%Y-%m-%d %H:%M}     {a.store:<14} {a.type:<24} {a.subject}")
        typer.echo(f"{'':<20} {a.reason}")
    table = per_day(fired, lambda epoch: f"{local(epoch):%Y-%m-%d}")
    types = sorted({f.alert.type for f in fired})
    typer.echo("")
    typer.echo(f"{'day':<12}" + "".join(f"{t:>24}" for t in types) + f"{'total':>8}")
    for day in sorted(table):
        row = table[day]
        typer.echo(
            f"{day:<12}"
            + "".join(f"{row.get(t, 0):>24}" for t in types)
            + f"{sum(row.values()):>8}"
        )
    typer.echo(f"{len(fired)} alert(s) would have fired")
