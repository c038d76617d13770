"""Secret references (`env:NAME`, `file:/path`, `credential:NAME`) and a `Secret` that never prints.

References are resolved once, when the config loads, so a missing secret is a config error
(exit 78) at start-up rather than a 401 an hour later. The resolved value lives only inside
`Secret`; `repr`, `str` and f-strings show `****`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import PydanticCustomError, core_schema

_ALL_SECRETS: set[str] = set()


class Secret:
    __slots__ = ("_ref", "_value")

    def __init__(self, value: str, ref: str = "") -> None:
        self._value = value
        self._ref = ref
        if len(value) >= 4:
            _ALL_SECRETS.add(value)

    def get(self) -> str:
        return self._value

    @property
    def ref(self) -> str:
        """Where it came from (`env:WC_SECRET`), safe to show; empty for inline literals."""
        return self._ref

    def __repr__(self) -> str:
        return f"Secret({self._ref or '****'!r})"

    def __str__(self) -> str:
        return "****"

    def __format__(self, spec: str) -> str:
        return "****"

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

        return core_schema.no_info_plain_validator_function(validate)


def resolve(ref: str) -> Secret:
    """Turn a reference into a Secret; LookupError says what is missing and how to fix it."""
    scheme, sep, rest = ref.partition(":")
    if not sep or scheme not in ("env", "file", "credential"):
        return Secret(ref)
    if scheme == "env":
        value = os.environ.get(rest)
        if not value:
            raise LookupError(
                f"env var {rest} is not set (export it, or use file:/path or credential:NAME)"
            )
        return Secret(value, ref)
    if scheme == "file":
        path = Path(rest)
    else:
        creds = os.environ.get("CREDENTIALS_DIRECTORY")
        if not creds:
            raise LookupError(
                f"credential {rest} requested but $CREDENTIALS_DIRECTORY is not set (run under "
                f"systemd with LoadCredential={rest}:/path, or use file:/path)"
            )
        path = Path(creds) / rest
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise LookupError(
            f"cannot read secret file {path}: {exc.strerror} (create it, readable by pollerd "
            "only: chmod 600)"
        ) from None
    if not value:
        raise LookupError(f"secret file {path} is empty (write the secret into it)")
    return Secret(value, ref)


def known_secret_values() -> frozenset[str]:
    """Every secret value resolved in this process, for the log redactor."""
    return frozenset(_ALL_SECRETS)
