"""The root of the CLI: the typer app, its global options, and what every command shares.

Each command parses, calls one function, and turns the outcome into an exit code (0 ok, 1 a
store or delivery failed, 2 usage, 75 state dir locked, 78 bad config): `guard` turns pollerd's
own errors into one line and their exit code, `fail` says what was wrong with the command line.
The commands live by family in the sibling modules; `pollerd.cli` lists them in help order."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from pollerd import __version__
from pollerd.errors import EXIT_OK, EXIT_USAGE, PollerdError


def make_typer(help_text: str, **options: Any) -> typer.Typer:
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


app = make_typer(
    "Order alerts for Shopify and WooCommerce stores that cannot receive webhooks.",
    pretty_exceptions_enable=False,
)

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
        fail(f"--log-format must be auto, human, json or journal, not {log_format!r}", EXIT_USAGE)
    _state.update(config=config, log_level=log_level, log_format=log_format)


def fail(message: str, code: int) -> NoReturn:
    if _state.get("log_format") == "json":  # every line JSON when JSON was asked for
        from pollerd.log import error_line

        typer.echo(error_line(message, code), err=True)
    else:
        typer.echo(f"pollerd: {message}", err=True)
    raise typer.Exit(code)


def guard(fn: Callable[[], T]) -> T:
    """Turn pollerd's own errors into one clear line and the contract's exit code."""
    try:
        return fn()
    except PollerdError as exc:
        fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    raise AssertionError("unreachable")


def on_store(config: Path | None, use: Callable[[Any, Any], T]) -> T:
    """`use(settings, store)` on the configured database, closed after; a config or database
    error is one line and its exit code (the short commands that only read or edit rows)."""
    from pollerd.store import open_store

    settings = guard(lambda: load_settings(config))
    store = guard(lambda: open_store(settings.pollerd.database))
    try:
        return use(settings, store)
    finally:
        store.close()


def load_settings(config: Path | None = None) -> Any:
    from pollerd.config import load
    from pollerd.log import setup

    fmt = _state.get("log_format") or "auto"
    setup(level=_state.get("log_level") or "INFO", fmt=fmt)  # load's own warnings: redacted
    settings = load(config or _state.get("config"))
    setup(level=_state.get("log_level") or settings.pollerd.log_level, fmt=fmt)
    return settings


def parse_time(value: str, option: str, zone: str) -> datetime:
    """A CLI time: a date or a time without an offset is read in `[pollerd] timezone`."""
    from pollerd.localtime import EXAMPLES, parse_local

    try:
        return parse_local(value, zone)
    except ValueError:
        fail(
            f"{option}: {value!r} is not a time ({EXAMPLES}; without an offset it is read in "
            f"[pollerd] timezone, {zone})",
            EXIT_USAGE,
        )
