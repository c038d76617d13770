"""One way to find plugins of every kind (channels, platforms): an entry-point group maps a
name to "module:attribute", loaded only when first asked for (APScheduler 3.x's
`_create_plugin_instance` does the same for its triggers and executors).

Built-ins are listed as well as declared as entry points, so they work from a source checkout
that was never pip-installed; an installed package may add names but not take a built-in's.
An unknown name fails with one error that lists what is known, whatever the kind.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from pollerd.errors import PollerdError

__all__ = ["Registry", "UnknownPlugin"]

T = TypeVar("T")


class UnknownPlugin(PollerdError, KeyError):
    """No plugin of this kind has that name (or it is not of the expected kind). A `KeyError`
    so callers that looked up a dict before keep working; `str()` is the message itself."""

    def __init__(self, message: str, known: list[str]) -> None:
        super().__init__(message)
        self.known = known

    def __str__(self) -> str:
        return str(self.args[0])


class Registry(Generic[T]):
    """The plugins of one entry-point `group`. `noun` words the error ("no channel type
    'x'; known: ..."); `accept` says whether a loaded object is a plugin of this kind."""

    def __init__(
        self,
        group: str,
        *,
        noun: str,
        builtin: Mapping[str, str],
        accept: Any = None,
        what: str = "plugin",
    ) -> None:
        self.group = group
        self.noun = noun
        self.builtin = dict(builtin)
        self._accept = accept
        self.what = what
        self._names: dict[str, str] | None = None

    def names(self) -> dict[str, str]:
        """name → "module:attribute", built-ins first; read from the installed metadata once
        (`forget()` reads it again, e.g. after a test put a package on the path)."""
        if self._names is None:
            found = dict(self.builtin)
            for ep in entry_points(group=self.group):
                found.setdefault(ep.name, ep.value)
            self._names = found
        return self._names

    def forget(self) -> None:
        self._names = None

    def load(self, name: str, *, names: Mapping[str, str] | None = None) -> T:
        """The plugin called `name`, imported on first use. `UnknownPlugin` names the known
        ones (and is raised too for an object that is not a `what`); an ImportError of the
        plugin's own module propagates (it is installed but broken: the caller words that
        differently). `names` replaces the installed list (a test's fakes). Python caches the
        imports, so nothing is cached here."""
        names = self.names() if names is None else names
        if name not in names:
            known = sorted(names)
            raise UnknownPlugin(f"no {self.noun} {name!r}; known: {', '.join(known)}", known)
        module, _, attr = names[name].partition(":")
        found: Any = importlib.import_module(module)
        for part in attr.split(".") if attr else ():
            found = getattr(found, part)
        if self._accept is not None and not self._accept(found):
            message = f"{self.noun} {name!r} ({names[name]}) is not a {self.what}"
            raise UnknownPlugin(message, sorted(names))
        return found  # type: ignore[no-any-return]
