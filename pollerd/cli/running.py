"""The commands that run something: the daemon (`run`), one pass (`once`), a backfill, the demo
and a simulated store (`sim`). Each one hands its options to the module that does the work."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Annotated

import typer

from pollerd.cli.root import ConfigOpt, fail, guard, load_settings, parse_time
from pollerd.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE


def run(config: ConfigOpt = None) -> None:
    """Run the daemon: poll every store on its interval and deliver alerts until SIGTERM."""
    from pollerd import daemon

    raise typer.Exit(guard(lambda: asyncio.run(daemon.run(load_settings(config)))))


def once(
    config: ConfigOpt = None,
    store: Annotated[str | None, typer.Option(help="Only this store.")] = None,
    sweep: Annotated[
        bool, typer.Option(help="Also run the daily sweep now (reconcile after an incident).")
    ] = False,
) -> None:
    """Poll every store once, deliver what is due, exit (for cron or a systemd timer)."""
    from pollerd import runtime

    raise typer.Exit(
        guard(
            lambda: asyncio.run(runtime.once(load_settings(config), only_store=store, sweep=sweep))
        )
    )


def backfill(
    store: Annotated[str, typer.Option(help="The store to backfill.")],
    since: Annotated[
        str,
        typer.Option(
            help="Orders modified at or after this time: a date or time, read in [pollerd] "
            "timezone unless it has an offset (2026-11-01, 2026-11-01T08:30, ...Z)."
        ),
    ],
    until: Annotated[str | None, typer.Option(help="...and at or before this time.")] = None,
    notify: Annotated[bool, typer.Option(help="Also send alerts for what is found.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Record the state of past orders (never moves the live cursor; alerts only with --notify)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from pollerd import runtime
    from pollerd.localtime import describe

    settings = guard(lambda: load_settings(config))
    zone = settings.pollerd.timezone
    start = parse_time(since, "--since", zone)
    end = parse_time(until, "--until", zone) if until else None
    if end is not None and end < start:
        fail("--until is before --since", EXIT_USAGE)
    typer.echo(f"backfill {store}: orders modified from {describe(start, zone)}")
    typer.echo(f"  until {describe(end, zone) if end else 'now'}")
    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=False) as bar:
        # Hidden until the first page says how many orders the window holds: a bar at `0/?`
        # reads as "stuck" while the version gate and the first page are still on the way.
        task = bar.add_task(f"backfill {store}", total=None, visible=False)

        def progress(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total, visible=True)

        # A backfill allocates millions of short-lived objects (payload dicts, orders, rows)
        # and keeps few: at the default thresholds the cycle collector ran 1,300 times for
        # 20,000 orders, a fifth of the ingest time (bench/backfill.py); now about 250.
        thresholds = gc.get_threshold()
        gc.freeze()  # what the start-up built stays: not walked again by every full pass
        gc.set_threshold(10_000, 50, 100)
        started = time.monotonic()
        try:
            report, sent = guard(
                lambda: asyncio.run(
                    runtime.backfill(
                        settings,
                        store=store,
                        since=start,
                        until=end,
                        notify_channels=notify,
                        progress=progress,
                    )
                )
            )
        finally:
            gc.set_threshold(*thresholds)
            gc.unfreeze()
    elapsed = time.monotonic() - started
    typer.echo(
        f"backfill {store}: {report.listed} orders listed, {report.fetched} fetched, "
        f"{report.events} events recorded{'' if notify else ' (no alerts: use --notify)'}, "
        f"{elapsed:.1f}s"
    )
    if sent is not None:
        typer.echo(f"sent {sent.sent}, to retry {sent.retried}, dead {sent.dead}")
        raise typer.Exit(EXIT_FAILED if (sent.retried or sent.dead or sent.held) else EXIT_OK)


RATE_HELP = "Store actions per minute: new orders and changes to earlier ones (paid, refunded...)"


def demo(
    config: ConfigOpt = None,
    rate: Annotated[float, typer.Option(help=f"{RATE_HELP}, per store.")] = 40.0,
    seconds: Annotated[float | None, typer.Option(help="Stop after this long.")] = None,
    locale: Annotated[str, typer.Option(help="en or zh-CN")] = "en",
    timezone: Annotated[str, typer.Option(help="Time zone for the alerts.")] = "UTC",
) -> None:
    """Run pollerd against two embedded simulated stores, WooCommerce and Shopify; alerts
    print here (and go to the channels of --config, if given)."""
    from pollerd.demo import run_demo

    raise typer.Exit(
        guard(
            lambda: run_demo(config, rate=rate, seconds=seconds, locale=locale, timezone=timezone)
        )
    )


def sim(
    platform: Annotated[
        str, typer.Option(help="woocommerce or shopify (GraphQL + REST Admin API).")
    ] = "woocommerce",
    port: Annotated[int | None, typer.Option(help="Port on 127.0.0.1 (8088 / 8089).")] = None,
    token: Annotated[
        str | None,
        typer.Option(
            help="Shopify: the access token the simulator accepts (default: its built-in one)."
        ),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(help="WooCommerce: the consumer key it accepts (default: its built-in one)."),
    ] = None,
    secret: Annotated[
        str | None,
        typer.Option(help="WooCommerce: the consumer secret it accepts (default: its own)."),
    ] = None,
    site_timezone: Annotated[
        str | None, typer.Option(help="WooCommerce: the simulated site's time zone (default UTC).")
    ] = None,
    rate: Annotated[float, typer.Option(help=f"{RATE_HELP} (0 = none).")] = 0.0,
) -> None:
    """Serve a simulated store on loopback (admin API under /__sim/)."""
    from pollerd_sim import serve, serve_shopify

    if platform not in ("woocommerce", "shopify"):
        fail(f"--platform: {platform!r} is not a platform (woocommerce or shopify)", EXIT_USAGE)
    # An option the chosen simulator does not take is refused, not ignored: a newcomer who
    # passes --key to the Shopify simulator would otherwise debug an auth setup that is unused.
    theirs = {"--key": key, "--secret": secret, "--site-timezone": site_timezone}
    if platform == "woocommerce":
        theirs = {"--token": token}
    given = [name for name, value in theirs.items() if value is not None]
    if given:
        other = "WooCommerce" if platform == "shopify" else "Shopify"
        fail(
            f"{', '.join(given)}: only the {other} simulator takes "
            f"{'this option' if len(given) == 1 else 'these options'}; drop "
            f"{'it' if len(given) == 1 else 'them'} or use --platform {other.lower()}",
            EXIT_USAGE,
        )
    if platform == "shopify":
        serve_shopify(
            port=port or 8089, access_token=token or "shpat_sim_token", orders_per_minute=rate
        )
        return
    serve(
        port=port or 8088,
        consumer_key=key or "ck_sim",
        consumer_secret=secret or "cs_sim",
        site_timezone=site_timezone or "UTC",
        orders_per_minute=rate,
    )
