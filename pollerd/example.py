"""The commented example config, shipped inside the package so that `pip install pollerd`
has it: every config error tells the user to start from it, and `pollerd init` writes it out.

In the source tree `pollerd/config.example.toml` is a symlink to the root file; a wheel holds
a copy (setuptools follows the link)."""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

from pollerd.errors import PollerdError


def example_text() -> str:
    return files("pollerd").joinpath("config.example.toml").read_text(encoding="utf-8")


def write_example(path: Path) -> Path:
    """Write the example to `path` (its missing folders too) and return the absolute path.
    Never overwrites: a config someone edited is worth more than a fresh template. The file
    gets the usual 0644 (under umask): a `DynamicUser=` service must read it, and secrets
    belong in credentials or the environment, not in this file."""
    path = path.expanduser().absolute()
    if path.exists() or path.is_symlink():
        raise PollerdError(
            f"init: {path} already exists; edit it, or move it away and run `pollerd init` "
            "again (nothing was written)"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(example_text())
    except OSError as exc:
        raise PollerdError(
            f"init: cannot write {path}: {exc.strerror or exc} (pick a folder you can write, "
            "or run it as the folder's owner, e.g. with sudo for /etc/pollerd)"
        ) from exc
    return path
