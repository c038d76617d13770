"""The database's upkeep: the key that seals customer contacts (`keygen`, `rekey` after a
rotation), retention (`prune`) and copies (`backup`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from pollerd.cli.root import ConfigOpt, guard, load_settings
from pollerd.errors import EXIT_FAILED, EXIT_OK

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


def keygen(
    key_id: Annotated[
        int, typer.Option("--id", min=1, max=255, help="Key id (1-255); a new id per rotation.")
    ] = 1,
) -> None:
    """Print a new AES-256-GCM key for [pollerd] pii_key (ID:BASE64) and how to configure it."""
    from pollerd.crypto import generate

    typer.echo(generate(key_id))  # stdout holds the key alone, so it can be redirected
    typer.echo(KEYGEN_HELP.format(id=key_id, next=min(key_id + 1, 255)), err=True)


def rekey(
    config: ConfigOpt = None,
    batch: Annotated[int, typer.Option(min=1, help="Rows per transaction.")] = 500,
) -> None:
    """Re-seal stored customer contacts with the first key of pii_key (after a rotation);
    resumable, safe beside a running daemon. Exit 1 if a row does not open."""
    from pollerd.errors import ConfigError
    from pollerd.store import open_store

    def run() -> int:
        settings = load_settings(config)
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

    raise typer.Exit(guard(run))


def prune(config: ConfigOpt = None) -> None:
    """Apply [pollerd] retention now: drop message bodies and sealed contacts older than it
    (the daemon does this every few minutes, `once` at its end)."""
    from pollerd.store import open_store

    def run() -> int:
        settings = load_settings(config)
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

    raise typer.Exit(guard(run))


def backup(
    path: Annotated[
        Path, typer.Argument(help="The new file to write, or a folder to put a dated copy in.")
    ],
    config: ConfigOpt = None,
) -> None:
    """Copy the SQLite database consistently (SQLite's online backup), safe while pollerd
    runs; for PostgreSQL use pg_dump. The README's "Backups" says how to restore."""
    from pollerd.store.backup import backup as copy

    done = guard(lambda: copy(load_settings(config).pollerd.database, path))
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
