"""The typer app. Each command parses, calls one function, and turns the outcome into an exit
code (0 ok, 1 a store or delivery failed, 2 usage, 75 state dir locked, 78 bad config)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from pollerd import __version__
from pollerd.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, PollerdError


def _typer(help_text: str, **options: Any) -> typer.Typer:
    """Plain click help, not rich panels: rich markup ate "[pollerd]" from help texts (leaving
    two spaces), every flag showed a `<bool>` type, and boxes do not survive a pipe or a
    journal. `-h` is `--help` everywhere (click hands the names down to sub-commands)."""
    return typer.Typer(
        help=help_text,
        no_args_is_help=True,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
        **options,
    )


app = _typer(
    "Order alerts for Shopify and WooCommerce stores that cannot receive webhooks.",
    pretty_exceptions_enable=False,
)
deliveries_app = _typer("Inspect and retry the delivery outbox.")
app.add_typer(deliveries_app, name="deliveries")
unsubscribes_app = _typer("The email recipients who unsubscribed (one-click links).")
app.add_typer(unsubscribes_app, name="unsubscribes")
cursor_app = _typer("Each store's start point and bookmark; move a start point.")
app.add_typer(cursor_app, name="cursor")

T = TypeVar("T")
_state: dict[str, Any] = {"config": None}

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Config file (else $POLLERD_CONFIG, ./pollerd.toml, /etc/pollerd/pollerd.toml).",
    ),
]


def _version(value: bool) -> None:
    """Eager, so `pollerd --version` works without a command."""
    if value:
        typer.echo(f"pollerd {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    config: ConfigOpt = None,
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING, ERROR")] = None,
    log_format: Annotated[
        str,
        typer.Option(
            help="auto (journald under systemd, else human), human, json (one object per "
            "line) or journal (journald native protocol)."
        ),
    ] = "auto",
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version.", is_eager=True, callback=_version),
    ] = False,
) -> None:
    if log_format not in ("auto", "human", "json", "journal"):
        _fail(f"--log-format must be auto, human, json or journal, not {log_format!r}", EXIT_USAGE)
    _state.update(config=config, log_level=log_level, log_format=log_format)


def _fail(message: str, code: int) -> None:
    if _state.get("log_format") == "json":  # every line JSON when JSON was asked for
        from pollerd.log import error_line

        typer.echo(error_line(message, code), err=True)
    else:
        typer.echo(f"pollerd: {message}", err=True)
    raise typer.Exit(code)


def _guard(fn: Callable[[], T]) -> T:
    """Turn pollerd's own errors into one clear line and the contract's exit code."""
    try:
        return fn()
    except PollerdError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    raise AssertionError("unreachable")


def _on_store(config: Path | None, use: Callable[[Any, Any], T]) -> T:
    """`use(settings, store)` on the configured database, closed after; a config or database
    error is one line and its exit code (the short commands that only read or edit rows)."""
    from pollerd.store import open_store

    settings = _guard(lambda: _settings(config))
    store = _guard(lambda: open_store(settings.pollerd.database))
    try:
        return use(settings, store)
    finally:
        store.close()


def _settings(config: Path | None = None) -> Any:
    from pollerd.config import load
    from pollerd.log import setup

    fmt = _state.get("log_format") or "auto"
    setup(level=_state.get("log_level") or "INFO", fmt=fmt)  # load's own warnings: redacted
    settings = load(config or _state.get("config"))
    setup(level=_state.get("log_level") or settings.pollerd.log_level, fmt=fmt)
    return settings


def _parse_time(value: str, option: str, zone: str) -> datetime:
    """A CLI time: a date or a time without an offset is read in `[pollerd] timezone`."""
    from pollerd.localtime import EXAMPLES, parse_local

    try:
        return parse_local(value, zone)
    except ValueError:
        _fail(f"{option}: {value!r} is not a time ({EXAMPLES}; without an offset it is read in "
              f"[pollerd] timezone, {zone})", EXIT_USAGE)  # fmt: skip
        raise


@app.command()
def run(config: ConfigOpt = None) -> None:
    """Run the daemon: poll every store on its interval and deliver alerts until SIGTERM."""
    from pollerd import daemon

    raise typer.Exit(_guard(lambda: asyncio.run(daemon.run(_settings(config)))))


@app.command()
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
        _guard(lambda: asyncio.run(runtime.once(_settings(config), only_store=store, sweep=sweep)))
    )


@app.command()
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

    settings = _guard(lambda: _settings(config))
    zone = settings.pollerd.timezone
    start = _parse_time(since, "--since", zone)
    end = _parse_time(until, "--until", zone) if until else None
    if end is not None and end < start:
        _fail("--until is before --since", EXIT_USAGE)
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

        started = time.monotonic()
        report, sent = _guard(
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
    elapsed = time.monotonic() - started
    typer.echo(
        f"backfill {store}: {report.listed} orders listed, {report.fetched} fetched, "
        f"{report.events} events recorded{'' if notify else ' (no alerts: use --notify)'}, "
        f"{elapsed:.1f}s"
    )
    if sent is not None:
        typer.echo(f"sent {sent.sent}, to retry {sent.retried}, dead {sent.dead}")
        raise typer.Exit(EXIT_FAILED if (sent.retried or sent.dead or sent.held) else EXIT_OK)


@app.command()
def status(
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show each store's cursor and errors and each channel's outbox; exit 1 if unhealthy."""
    from pollerd.status import collect, render

    report = _guard(lambda: collect(_settings(config)))
    if as_json:
        typer.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        render(report)
    raise typer.Exit(EXIT_OK if report["healthy"] else EXIT_FAILED)


_CHECK_HELP = (
    "Validate the config, render user templates, probe stores and channels; send nothing.\n\n"
    "Renders every user template against a sample of every event. Probes each enabled store "
    "read-only (auth, API version); a disabled store is listed, not probed. Probes each "
    "channel without sending: a TCP/TLS connection for webhooks and chat robots, Telegram "
    "getMe, the Twilio account, SMTP EHLO+STARTTLS+AUTH without MAIL FROM; console and "
    "Apprise channels are not probed (notify-test sends a real sample).\n\n"
    "Exit 0 if all pass, 1 if any fails, 78 if the config is invalid."
)


@app.command(help=_CHECK_HELP)
def check(config: ConfigOpt = None) -> None:
    from pollerd.status import check_all

    ok = _guard(lambda: asyncio.run(check_all(_settings(config), typer.echo)))
    raise typer.Exit(EXIT_OK if ok else EXIT_FAILED)


@app.command("notify-test")
def notify_test(
    channel: Annotated[str, typer.Option(help="The channel to send a sample alert to.")],
    config: ConfigOpt = None,
) -> None:
    """Send a sample (test) order alert through one channel, bypassing the outbox."""
    from pollerd.status import send_sample

    ok = _guard(lambda: asyncio.run(send_sample(_settings(config), channel, typer.echo)))
    raise typer.Exit(EXIT_OK if ok else EXIT_FAILED)


@app.command()
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

    settings = _guard(lambda: _settings(config))
    message = _guard(lambda: asyncio.run(preview(settings, channel, event)))
    typer.echo(message if raw else readable(message))
    typer.echo(f"(a sample {event} as {channel} would send it; nothing was sent)", err=True)


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

    from pollerd.status import list_deliveries

    settings = _guard(lambda: _settings(config))
    rows = _guard(lambda: list_deliveries(settings, dead=dead, channel=channel, limit=limit))
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
        state = "held" if r.get("held_behind") else r["state"]
        queued = datetime.fromisoformat(r["created_at"]).astimezone(ZoneInfo(zone))
        typer.echo(
            f"{r['id']:>6}  {queued:%Y-%m-%d %H:%M:%S} {state:<7} {r['channel']:<14} "
            f"{r['event_id']:<48} "
            f"attempts={r['attempts']}"
            + (
                f"  held behind dead letter {r['held_behind']} (retry it to release)"
                if r.get("held_behind")
                else ""
            )
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

    problem, count = _on_store(config, retry)
    if problem:
        _fail(problem, EXIT_USAGE)
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

    settings = _guard(lambda: _settings(config))
    rows = _guard(lambda: show(settings, store))
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

    settings = _guard(lambda: _settings(config))
    zone = settings.pollerd.timezone
    if start_from.strip() == "now":
        when = datetime.now(UTC).replace(microsecond=0)
    else:
        when = _parse_time(start_from, "--start-from", zone)
    moved = _guard(lambda: move(settings, store, when))
    for line in explain(moved, settings.stores_by_name[store], zone):
        typer.echo(line)


KEYGEN_HELP = """\
Keep this key secret and backed up: it opens the sealed customer contacts, and without it
nobody can (pollerd included). Give it to pollerd as a systemd credential or a 0600 file:
  (umask 077; pollerd keygen --id {id} > /etc/pollerd/credentials/pii_key)
  [pollerd] pii_key = "credential:pii_key"    # pollerd.service: LoadCredential=pii_key:...
  (or pii_key = "file:/etc/pollerd/credentials/pii_key", or "env:POLLERD_PII_KEY")
To rotate: create a key with a new id (pollerd keygen --id {next}), put it FIRST and keep the old
one after it (e.g. "{next}:NEW {id}:OLD"), RESTART pollerd (systemctl restart pollerd: a reload
keeps the running key), run `pollerd rekey`, and drop the old key only when rekey says it can
be dropped; then restart again."""


@app.command()
def init(
    path: Annotated[
        Path,
        typer.Argument(metavar="PATH", help="Where to write it (e.g. /etc/pollerd/pollerd.toml)."),
    ] = Path("pollerd.toml"),
) -> None:
    """Write the commented example config (every key, its default and why) to start from;
    never overwrites a file."""
    from pollerd.example import write_example

    written = _guard(lambda: write_example(path))
    typer.echo(
        f"wrote {written}: fill in [[stores]], [[channels]] and [[routes]] (secrets as env:, "
        f"file: or credential: references), then run `pollerd check --config {written}`"
    )


@app.command()
def keygen(
    key_id: Annotated[
        int, typer.Option("--id", min=1, max=255, help="Key id (1-255); a new id per rotation.")
    ] = 1,
) -> None:
    """Print a new AES-256-GCM key for [pollerd] pii_key (ID:BASE64) and how to configure it."""
    from pollerd.crypto import generate

    typer.echo(generate(key_id))  # stdout holds the key alone, so it can be redirected
    typer.echo(KEYGEN_HELP.format(id=key_id, next=min(key_id + 1, 255)), err=True)


@app.command()
def rekey(
    config: ConfigOpt = None,
    batch: Annotated[int, typer.Option(min=1, help="Rows per transaction.")] = 500,
) -> None:
    """Re-seal stored customer contacts with the first key of pii_key (after a rotation);
    resumable, safe beside a running daemon. Exit 1 if a row does not open."""
    from pollerd.errors import ConfigError
    from pollerd.store import open_store

    def run() -> int:
        settings = _settings(config)
        if settings.pollerd.pii_key is None:
            raise ConfigError(
                "pollerd.pii_key",
                "not set: rekey re-seals with its first key",
                "create one with `pollerd keygen` and set pii_key",
            )
        store = open_store(settings.pollerd.database, pii_key=settings.pollerd.pii_key)
        try:
            ring = store.pii
            assert ring is not None
            in_use = _daemon_sealing(settings, store, ring.current)
            left = store.sealed_by_key()
            left.pop(ring.current, None)
            if not left:
                others = ", ".join(map(str, sorted(set(ring.keys) - {ring.current})))
                tail = f"; key(s) {others} can be dropped from pii_key" if others else ""
                tail = "" if in_use else tail
                typer.echo(
                    f"nothing to re-seal: every sealed contact uses key {ring.current}{tail}"
                )
                return _refuse_drop(in_use) if in_use else EXIT_OK
            typer.echo(f"re-sealing with key {ring.current}; left under old keys: {_keys(left)}")
            report = store.rekey(
                ring,
                batch=batch,
                on_batch=lambda r: typer.echo(
                    f"re-sealed {r.resealed}; left under old keys: {_keys(r.left)}"
                ),
            )
        finally:
            store.close()
        for problem in report.failed:
            typer.echo(f"pollerd rekey: {problem}", err=True)
        if report.failed:
            typer.echo(
                f"{len(report.failed)} value(s) did not open (named above) and stay under their "
                "old key until retention prunes them; add the key that sealed them to pii_key "
                "(after the first) and run rekey again",
                err=True,
            )
            return EXIT_FAILED
        if in_use:
            typer.echo(f"done: {report.resealed} re-sealed with key {ring.current}")
            return _refuse_drop(in_use)
        droppable = ", ".join(map(str, sorted(set(ring.keys) - {ring.current} - set(report.left))))
        tail = f"key(s) {droppable} can be dropped from pii_key" if droppable else "no old key left"
        typer.echo(f"done: {report.resealed} re-sealed with key {ring.current}; {tail}")
        return EXIT_OK

    raise typer.Exit(_guard(run))


@app.command()
def prune(config: ConfigOpt = None) -> None:
    """Apply [pollerd] retention now: drop message bodies and sealed contacts older than it
    (the daemon does this every few minutes, `once` at its end)."""
    from pollerd.store import open_store

    def run() -> int:
        settings = _settings(config)
        store = open_store(settings.pollerd.database)
        try:
            pruned = store.prune(time.time(), settings.pollerd.retention)
        finally:
            store.close()
        typer.echo(
            f"pruned {pruned.bodies} message bodies and {pruned.contacts} sealed contacts "
            f"older than {settings.pollerd.retention.total_seconds() / 3600:g} h"
        )
        return EXIT_OK

    raise typer.Exit(_guard(run))


@app.command()
def backup(
    path: Annotated[
        Path, typer.Argument(help="The new file to write, or a folder to put a dated copy in.")
    ],
    config: ConfigOpt = None,
) -> None:
    """Copy the SQLite database consistently (SQLite's online backup), safe while pollerd
    runs; for PostgreSQL use pg_dump. The README's "Backups" says how to restore."""
    from pollerd.store.backup import backup as copy

    done = _guard(lambda: copy(_settings(config).pollerd.database, path))
    typer.echo(
        f"backed up {done.source} to {done.target} ({done.size / 1e6:.1f} MB, checked); "
        f"restore: stop pollerd, copy it over {done.source.name}, delete "
        f"{done.source.name}-wal and -shm, start pollerd"
    )


def _daemon_sealing(settings: Any, store: Any, current: int) -> str | None:
    """Why no old key may be dropped yet, or None: a running `pollerd run` that still seals
    with another key than the first of pii_key (it reads pii_key only at start; a reload
    keeps the old ring) would put new contacts under the key about to be dropped."""
    from pollerd.store import StateLock

    pid = StateLock.of(settings).holder()
    if pid is None:
        return None
    sealing = store.sealing_key()
    who = f"the running pollerd (pid {pid})"
    if sealing == "unknown":
        return f"{who} did not record which key it seals with"
    if sealing is None or sealing == current:
        return None
    return f"{who} still seals new contacts with key {sealing}, not key {current}"


def _refuse_drop(why: str) -> int:
    typer.echo(
        f"pollerd rekey: no old key can be dropped yet: {why} (pii_key is read at start only). "
        "Restart it (systemctl restart pollerd), then run `pollerd rekey` again; keep every "
        "old key in pii_key until rekey says it can be dropped",
        err=True,
    )
    return EXIT_FAILED


def _keys(left: dict[int, int]) -> str:
    return ", ".join(f"key {k}: {n} rows" for k, n in sorted(left.items())) or "none"


RATE_HELP = "Store actions per minute: new orders and changes to earlier ones (paid, refunded...)"


@app.command()
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
        _guard(
            lambda: run_demo(config, rate=rate, seconds=seconds, locale=locale, timezone=timezone)
        )
    )


@app.command()
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
        _fail(f"--platform: {platform!r} is not a platform (woocommerce or shopify)", EXIT_USAGE)
    # An option the chosen simulator does not take is refused, not ignored: a newcomer who
    # passes --key to the Shopify simulator would otherwise debug an auth setup that is unused.
    theirs = {"--key": key, "--secret": secret, "--site-timezone": site_timezone}
    if platform == "woocommerce":
        theirs = {"--token": token}
    given = [name for name, value in theirs.items() if value is not None]
    if given:
        other = "WooCommerce" if platform == "shopify" else "Shopify"
        _fail(
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


def main() -> None:
    try:
        app()
    except SystemExit as exc:
        code = exc.code
        # click reports usage errors with exit 2 already; make sure config errors raised while
        # parsing are not swallowed as 1.
        raise SystemExit(code if code is not None else EXIT_OK) from None
    except PollerdError as exc:  # pragma: no cover - _guard catches these first
        print(f"pollerd: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None


@unsubscribes_app.command("list")
def unsubscribes_list(
    config: ConfigOpt = None,
    channel: Annotated[str | None, typer.Option(help="Only this channel.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Who unsubscribed from which channel, and when (oldest first)."""
    from pollerd.unsubscribe import suppressions

    rows = _on_store(config, lambda _settings, store: suppressions(store, channel))
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

    removed = _on_store(config, lambda _settings, store: unsuppress(store, channel, address))
    if not removed:
        _fail(
            f"{address} has not unsubscribed from {channel} (see `pollerd unsubscribes list`)",
            EXIT_FAILED,
        )
    typer.echo(f"{address} gets {channel}'s alerts again")


quarantine_app = _typer("Orders set aside because they do not read (a broken plugin, a bad field).")
app.add_typer(quarantine_app, name="quarantine")


@quarantine_app.command("list")
def quarantine_list(
    config: ConfigOpt = None,
    store_name: Annotated[str | None, typer.Option("--store", help="Only this store.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """The set-aside orders, oldest first: why, and when first and last seen. Each pass retries
    them; one that reads again is released and announced as usual."""
    from pollerd.quarantine import held

    rows = _on_store(config, lambda _settings, store: held(store, store_name))
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

    dropped = _on_store(config, lambda _settings, store: drop(store, store_name, order_id))
    if not dropped:
        _fail(
            f"order {order_id} of store {store_name} is not set aside "
            "(see `pollerd quarantine list`)",
            EXIT_FAILED,
        )
    typer.echo(f"order {order_id} of store {store_name} is no longer retried")
