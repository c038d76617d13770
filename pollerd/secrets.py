"""Secret references and a `Secret` that never prints.

A secret in the config is one of (research §C.7, in order of preference):

1. `credential:NAME` (or `cred:NAME`): the file `$CREDENTIALS_DIRECTORY/NAME` that systemd
   provides from `LoadCredential=NAME:/path` (or `LoadCredentialEncrypted=`). Readable only by
   the service, not inherited by child processes, not visible over D-Bus.
2. `file:/path`: a file readable by its owner only. A file group or others can read is refused,
   as OpenSSH refuses such a key: the fix is `chmod 600`.
3. `env:NAME`: an environment variable; fine in a container or a shell. A credential of the
   same NAME wins when systemd provides one ("systemd credentials first"), so a unit can move a
   secret into `LoadCredential=NAME:` without editing the config. Under systemd
   (`$INVOCATION_ID`) reading the variable itself logs one warning per name: `Environment=` is
   readable through D-Bus (`systemctl show`) and inherited by every child process.
4. Anything else is the secret itself, written inline; `pollerd.config` warns when the config
   file holding it is readable by group or others.

References are resolved once, when the config loads, so a missing secret is a config error
(exit 78) at start-up rather than a 401 an hour later. The resolved value lives only inside
`Secret`: `repr`, `str`, f-strings and JSON dumps show `****`, and error messages name the
reference (`env:WC_SECRET`, the file path), never the value. Every value is also registered
for the log redactor (`known_secret_values`), percent-encoded forms included, since URLs carry
secrets encoded.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

from loguru import logger
from pydantic import BaseModel, GetCoreSchemaHandler
from pydantic_core import PydanticCustomError, core_schema

MASK = "****"
MIN_REDACTED_LENGTH = 4  # shorter values would mask ordinary words all over the logs
CREDENTIAL_SCHEMES = ("credential", "cred")
SCHEMES = ("env", "file", *CREDENTIAL_SCHEMES)
_ALL_SECRETS: set[str] = set()
_WARNED_ENV: set[str] = set()
_VERSION = 0  # bumped when a value is added, so the redactor rebuilds its pattern only then


def register(value: str) -> None:
    """Make the log redactor mask `value` and the forms it takes inside URLs."""
    global _VERSION
    if len(value) < MIN_REDACTED_LENGTH:
        return
    forms = {value, quote(value, safe=""), quote_plus(value)}
    if not forms <= _ALL_SECRETS:
        _ALL_SECRETS.update(forms)
        _VERSION += 1


class Secret:
    """A resolved secret. `get()` is the only way to the value; everything else masks it."""

    __slots__ = ("_ref", "_value")

    def __init__(self, value: str, ref: str = "") -> None:
        self._value = value
        self._ref = ref
        register(value)

    def get(self) -> str:
        return self._value

    @property
    def ref(self) -> str:
        """Where it came from (`env:WC_SECRET`), safe to show; empty for inline literals."""
        return self._ref

    @property
    def inline(self) -> bool:
        """Written into the config file itself rather than referenced."""
        return not self._ref

    def __repr__(self) -> str:
        return f"Secret({self._ref or MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        """Validation resolves references; errors carry the reference or a reason, never the
        value. `model_dump(mode="json")` shows `****`; python-mode dumps keep the `Secret`
        (so a table can be rebuilt without resolving it again)."""

        def validate(value: Any) -> Secret:
            if isinstance(value, Secret):
                return value
            if not isinstance(value, str) or not value:
                raise PydanticCustomError(
                    "secret",
                    "must be a non-empty string: a value, env:NAME, file:/path or credential:NAME",
                )
            try:
                return resolve(value)
            except LookupError as exc:
                raise PydanticCustomError("secret", str(exc)) from None

        return core_schema.no_info_plain_validator_function(
            validate,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda _value: MASK, when_used="json"
            ),
        )


def resolve(ref: str) -> Secret:
    """Turn a reference into a Secret; LookupError says what is missing and how to fix it."""
    scheme, sep, rest = ref.partition(":")
    if not sep or scheme not in SCHEMES:
        return Secret(ref)
    if scheme in CREDENTIAL_SCHEMES:
        return Secret(_credential(rest), ref)
    if scheme == "env":
        return Secret(_env(rest), ref)
    return Secret(_file(Path(rest)), ref)


def _credentials_dir() -> Path | None:
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    return Path(creds) if creds else None


def _valid_credential_name(name: str) -> bool:
    return bool(name) and "/" not in name and name not in (".", "..")


def _credential(name: str) -> str:
    if not _valid_credential_name(name):
        raise LookupError(
            f"credential name {name!r} is not valid (a file name without '/', as in "
            "LoadCredential=NAME:/path)"
        )
    folder = _credentials_dir()
    if folder is None:
        raise LookupError(
            f"credential {name} requested but $CREDENTIALS_DIRECTORY is not set (run under "
            f"systemd with LoadCredential={name}:/path, or use file:/path)"
        )
    path = folder / name
    if not path.is_file():
        present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        listed = ", ".join(present) if present else "none"
        raise LookupError(
            f"credential {name} is not in $CREDENTIALS_DIRECTORY (present: {listed}; add "
            f"LoadCredential={name}:/path to the unit)"
        )
    return _read(path)


def _env(name: str) -> str:
    folder = _credentials_dir()
    if folder is not None and _valid_credential_name(name) and (folder / name).is_file():
        return _read(folder / name)  # systemd credentials first
    value = os.environ.get(name)
    if not value:
        raise LookupError(
            f"env var {name} is not set (export it, or use file:/path or credential:NAME)"
        )
    if os.environ.get("INVOCATION_ID") and name not in _WARNED_ENV:
        _WARNED_ENV.add(name)
        logger.warning(
            "secret env:{name} is read from the environment under systemd, where Environment= "
            "is readable over D-Bus (systemctl show) and inherited by child processes; put it "
            "in a root-only file and add LoadCredential={name}:/etc/pollerd/{name} to the unit "
            "(a credential of that name then takes precedence, no config change needed)",
            name=name,
        )
    return value


def _file(path: Path) -> str:
    """Read a secret file, refusing one that group or others can open (the OpenSSH rule)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise LookupError(
            f"cannot read secret file {path}: {exc.strerror} (create it, readable by pollerd "
            "only: chmod 600)"
        ) from None
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if mode & 0o077:
            raise LookupError(
                f"secret file {path} is readable by group or others (mode "
                f"{stat.S_IMODE(mode):04o}); run `chmod 600 {path}`"
            )
        data = handle.read()
    return _decode(data, path)


def _read(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LookupError(
            f"cannot read secret file {path}: {exc.strerror} (create it, readable by pollerd "
            "only: chmod 600)"
        ) from None
    return _decode(data, path)


def _decode(data: bytes, path: Path) -> str:
    try:
        value = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise LookupError(
            f"secret file {path} is not UTF-8 text (write the secret as text)"
        ) from None
    if not value:
        raise LookupError(f"secret file {path} is empty (write the secret into it)")
    return value


def secrets_in(value: Any) -> Iterator[Secret]:
    """Every `Secret` inside loaded settings: models (extras included), dicts, lists."""
    if isinstance(value, Secret):
        yield value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from secrets_in(getattr(value, name, None))
        yield from secrets_in(value.__pydantic_extra__ or {})
    elif isinstance(value, dict):
        for item in value.values():
            yield from secrets_in(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from secrets_in(item)


def register_all(settings: Any) -> int:
    """Register every secret of the settings (stores, channels, `[pollerd]`) for redaction.
    Construction registers too; this is the explicit guarantee for what a config holds.
    Returns how many secrets were found."""
    found = list(secrets_in(settings))
    for secret in found:
        register(secret.get())
    return len(found)


def registry_version() -> int:
    """Changes whenever `known_secret_values()` does."""
    return _VERSION


def known_secret_values() -> frozenset[str]:
    """Every secret value resolved in this process, for the log redactor."""
    return frozenset(_ALL_SECRETS)


def warn_inline(settings: Any, path: Path) -> bool:
    """A secret written into the config file is as safe as the file: warn (once per load) when
    group or others can read it. True when it warned."""
    inline = sum(1 for secret in secrets_in(settings) if secret.inline)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return False
    if not inline or not mode & 0o077:
        return False
    logger.warning(
        "config {} holds {} secret(s) written inline and is readable by group or others (mode "
        "{:04o}): run `chmod 600 {}`, or reference them as credential:NAME, file:/path or "
        "env:NAME",
        path,
        inline,
        mode,
        path,
    )
    return True
