"""The command groups over pollerd's own records: the delivery outbox (`deliveries`), who
unsubscribed, each store's start point and bookmark (`cursor`) and the orders set aside
(`quarantine`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from pollerd.cli.root import ConfigOpt, fail, guard, load_settings, make_typer, on_store, parse_time
from pollerd.errors import EXIT_FAILED, EXIT_USAGE

deliveries_app = make_typer("Inspect and retry the delivery outbox.")
unsubscribes_app = make_typer("The email recipients who unsubscribed (one-click links).")
cursor_app = make_typer("Each store's start point and bookmark; move a start point.")
quarantine_app = make_typer(
    "Orders set aside because they do not read (a broken plugin, a bad field)."
)


@deliveries_app.command("list")
def deliveries_list(
    config: ConfigOpt = None,
    dead: Annotated[bool, typer.Option(help="Only dead letters.")] = False,
    channel: Annotated[str | None, typer.Option(help="Only this channel.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List recent deliveries (newest first)."""
    from zoneinfo import ZoneInfo

    from pollerd.status import list_deliveries, local_clock

    settings = guard(lambda: load_settings(config))
    rows = guard(lambda: list_deliveries(settings, dead=dead, channel=channel, limit=limit))
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        typer.echo("no deliveries" + (" in the dead-letter list" if dead else ""))
        return
    zone = settings.pollerd.timezone
    typer.echo(f"{'id':>6}  {'queued (' + zone + ')':<19} {'state':<7} {'channel':<14} event")
    for r in rows:
        # A later event of an order whose earlier one is a dead letter waits behind it.
        state = "held" if r.get("held_behind") or r.get("quiet") else r["state"]
        queued = datetime.fromisoformat(r["created_at"]).astimezone(ZoneInfo(zone))
        quiet = local_clock(r["quiet_until"], zone) if r.get("quiet") else ""
        typer.echo(
            f"{r['id']:>6}  {queued:%Y-%m-%d %H:%M:%S} {state:<7} {r['channel']:<14} "
            f"{r['event_id']:<48} "
            f"attempts={r['attempts']}"
            + (
                f"  held behind dead letter {r['held_behind']} (retry it to release)"
                if r.get("held_behind")
                else ""
            )
            + (f"  held until {quiet} (quiet hours)" if quiet else "")
            + (f"  in digest {r['digest']}" if r.get("digest") else "")
            + (f"  last error: {r['last_error']}" if r["last_error"] else "")
        )


@deliveries_app.command("retry")
def deliveries_retry(
    ids: Annotated[
        list[int] | None, typer.Argument(metavar="ID", help="Delivery ids (default: all dead).")
    ] = None,
    channel: Annotated[str | None, typer.Option(help="All held/dead rows of this channel.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Make dead letters (or a held channel's rows) due again with fresh attempts."""
    from pollerd.status import retry_target_problem

    def retry(settings: Any, store: Any) -> tuple[str | None, int]:
        # "0 deliveries queued" and exit 0 for a mistyped id or channel read as success.
        problem = retry_target_problem(settings, store, ids or [], channel)
        return problem, 0 if problem else store.retry(ids=ids or None, channel=channel)

    problem, count = on_store(config, retry)
    if problem:
        fail(problem, EXIT_USAGE)
    typer.echo(
        f"{count} deliveries queued again; a running daemon sends them within a second, "
        "or run `pollerd once`"
    )


@cursor_app.command("show")
def cursor_show(
    store: Annotated[str | None, typer.Option(help="Only this store.")] = None,
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Each store's start point (nothing before it alerts), bookmark and start_from."""
    from pollerd.localtime import describe
    from pollerd.startpoint import show

    settings = guard(lambda: load_settings(config))
    rows = guard(lambda: show(settings, store))
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    zone = settings.pollerd.timezone

    def local(value: object) -> str:
        return describe(datetime.fromisoformat(str(value).replace("Z", "+00:00")), zone)

    for row in rows:
        if row["start_point"] is None:
            typer.echo(f"{row['store']}: never polled; starts at start_from = {row['start_from']}")
            continue
        typer.echo(
            f"{row['store']}: start point {local(row['start_point'])}; bookmark "
            f"{local(row['bookmark'])} order {row['bookmark_order'] or '-'}; "
            f"start_from = {row['start_from']}"
        )
        if row["note"]:
            typer.echo(f"  ! {row['note']}")


@cursor_app.command("set")
def cursor_set(
    store: Annotated[str, typer.Option(help="The store whose start point moves.")],
    start_from: Annotated[
        str,
        typer.Option(
            help='The new start point: "now", or a date or time (read in [pollerd] timezone '
            "unless it has an offset)."
        ),
    ],
    config: ConfigOpt = None,
) -> None:
    """Move a store's start point (and its bookmark) with the daemon stopped: the next pass
    alerts what changed since then and was not announced yet; nothing before it alerts."""
    from pollerd.startpoint import explain, move

    settings = guard(lambda: load_settings(config))
    zone = settings.pollerd.timezone
    if start_from.strip() == "now":
        when = datetime.now(UTC).replace(microsecond=0)
    else:
        when = parse_time(start_from, "--start-from", zone)
    moved = guard(lambda: move(settings, store, when))
    for line in explain(moved, settings.stores_by_name[store], zone):
        typer.echo(line)


@unsubscribes_app.command("list")
def unsubscribes_list(
    config: ConfigOpt = None,
    channel: Annotated[str | None, typer.Option(help="Only this channel.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Who unsubscribed from which channel, and when (oldest first)."""
    from pollerd.unsubscribe import suppressions

    rows = on_store(config, lambda _settings, store: suppressions(store, channel))
    if as_json:
        found = [{"channel": c, "address": a, "since": w} for c, a, w in rows]
        typer.echo(json.dumps(found, indent=2, ensure_ascii=False))
        return
    if not rows:
        typer.echo("nobody has unsubscribed" + (f" from {channel}" if channel else ""))
    for name, address, when in rows:
        typer.echo(f"{name:<14} {address:<40} since {when}")


@unsubscribes_app.command("remove")
def unsubscribes_remove(
    address: Annotated[str, typer.Argument(help="The email address to mail again.")],
    channel: Annotated[str, typer.Option(help="The channel the address unsubscribed from.")],
    config: ConfigOpt = None,
) -> None:
    """Subscribe an address again (it gets the alerts from now on; skipped ones stay skipped)."""
    from pollerd.unsubscribe import unsuppress

    removed = on_store(config, lambda _settings, store: unsuppress(store, channel, address))
    if not removed:
        fail(
            f"{address} has not unsubscribed from {channel} (see `pollerd unsubscribes list`)",
            EXIT_FAILED,
        )
    typer.echo(f"{address} gets {channel}'s alerts again")


@quarantine_app.command("list")
def quarantine_list(
    config: ConfigOpt = None,
    store_name: Annotated[str | None, typer.Option("--store", help="Only this store.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """The set-aside orders, oldest first: why, and when first and last seen. Each pass retries
    them; one that reads again is released and announced as usual."""
    from pollerd.quarantine import held

    rows = on_store(config, lambda _settings, store: held(store, store_name))
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        typer.echo("no order is set aside")
    for r in rows:
        typer.echo(
            f"{r['store']:<14} order {r['order_id']:<14} field {r['field']}: {r['problem']}  "
            f"(first seen {r['first_seen']}, last {r['last_seen']})"
            + (f"  {r['admin_url']}" if r.get("admin_url") else "")
        )


@quarantine_app.command("drop")
def quarantine_drop(
    order_id: Annotated[str, typer.Argument(help="The order id, as `quarantine list` shows it.")],
    store_name: Annotated[str, typer.Option("--store", help="The order's store.")],
    config: ConfigOpt = None,
) -> None:
    """Stop retrying a set-aside order (e.g. it was deleted in the shop). If it changes later,
    the next pass reads it again like any order."""
    from pollerd.quarantine import drop

    dropped = on_store(config, lambda _settings, store: drop(store, store_name, order_id))
    if not dropped:
        fail(
            f"order {order_id} of store {store_name} is not set aside "
            "(see `pollerd quarantine list`)",
            EXIT_FAILED,
        )
    typer.echo(f"order {order_id} of store {store_name} is no longer retried")
