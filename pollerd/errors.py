"""The error tree and exit codes.

Every failure is typed once, at the edge that sees it (HTTP status *and* body), so the rest of
the code only asks "retry or give up, and how long to wait". Both edges speak one vocabulary:
**retryable** (`Retryable`, with `retry_after` seconds or None) or **permanent** (`Permanent`,
with a `scope` saying how much is broken: `message`, `recipient` or `channel` for a channel;
`order` or `store` for a source). Every exception class pollerd defines is below; the ones
defined elsewhere are drawn by module path and derive from a class of this module.

    Exception
    ├── Retryable (mixin: retry_after)          "not now": the outbox / the poll tries again
    ├── Permanent (mixin: scope)                "not until a person changes something"
    ├── ControlFlow                             raised and caught inside one module, never
    │   │                                       shown to a person, never a PollerdError
    │   ├── web.BadRequest(status)              an unsubscribe request answered 4xx
    │   ├── templates.fit.DigestTooLong         a digest cannot name every alert it holds
    │   ├── templates.sandbox.TooLarge          a template over a bound (also jinja2's
    │   │                                       SecurityError, so `check` lists it)
    │   ├── sources.ratelimit.TooSoon(wait)     a pause longer than one call may sleep
    │   └── sources.shopify.bulk._UrlGone       a bulk result URL that no longer serves
    └── PollerdError                            exit 1 unless the class says otherwise
        ├── ConfigError(field, problem, fix)    exit 78 (EX_CONFIG): systemd must not restart-loop
        │   ├── SecretError                     missing env var / file / systemd credential
        │   └── config.explain.ConfigErrors     every problem of one config file at once
        ├── plugins.UnknownPlugin(known)        no plugin of that name (also a KeyError)
        ├── startpoint.UsageError               exit 2: a start point the command cannot take
        ├── status.UnknownName                  exit 2: no such channel / event type
        ├── store.backup.NotSQLite              exit 2: `backup` on PostgreSQL
        ├── crypto.CryptoError                  a key ring that cannot be used, a seal that
        │                                       does not open
        ├── StoreError                          database unusable, migration failed   → exit 1
        │   ├── StoreFull                       disk full: passes by itself           → exit 1
        │   ├── StoreReadOnly                   owner/mode/read-only mount: setup     → exit 78
        │   └── DamagedDatabase                 quick_check failed: restore a backup  → exit 65
        ├── LockHeld                            another pollerd owns the state dir    → exit 75
        ├── SourceError(store)                  the store API edge (pollerd/sources)
        │   ├── RetryableSourceError            + Retryable: 429, 5xx, WAF 403 pages, timeouts,
        │   │   │                               bad JSON, transport failures (pollerd.http)
        │   │   ├── BlockedSourceError          a WAF's 403 page: backs off like an auth error
        │   │   ├── sources.shopify.bulk.BulkOperationFailed
        │   │   └── sources.shopify.client.ShopifyServerError
        │   ├── PermanentSourceError            + Permanent, scope "store" (or "order"): auth,
        │   │   │                               unsupported version, 404 site, bad request
        │   │   └── sources.shopify.client.ShopifyAccessDenied
        │   ├── sources.base.FeedUnavailable    an optional feed the credentials may not read
        │   ├── sources.payload.OrderPayloadError   one order the API sent malformed
        │   ├── sources.shopify.bulk.BulkFileError  a bulk result file that does not parse
        │   └── sources.shopify.client.CostTooHigh  a query over Shopify's per-query cost
        └── ChannelError(detail)                the receiver edge (pollerd/channels)
            ├── RetryableChannelError           + Retryable: timeouts, transport failures,
            │                                   429, 5xx, an API code meaning "busy"
            ├── PermanentChannelError           + Permanent, scope message | recipient |
            │                                   channel (hold every delivery of the channel)
            └── channels.base.ProbeFailed       `pollerd check` could not reach a receiver

The delivery loop works with `channels.base.SendResult`, the value form of the same
vocabulary (`ok`, `retry` with `retry_after`, `permanent` with `scope`): `SendResult.of(error)`
turns a `ChannelError` into one, and a channel's `send` may raise one instead of returning it.
"""

from __future__ import annotations

from typing import Literal

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_DAMAGED = 65  # EX_DATAERR: in RestartPreventExitStatus, a restart cannot repair a file
EXIT_LOCKED = 75  # EX_TEMPFAIL
EXIT_CONFIG = 78  # EX_CONFIG

ChannelScope = Literal["message", "recipient", "channel"]
"""How much a permanent channel failure covers: this delivery; the person it was for (they
opted out or blocked pollerd); or the destination itself (wrong key, removed hook: hold all)."""
SourceScope = Literal["order", "store"]
"""How much a permanent source failure covers: one order, or every request to the store."""


class Retryable(Exception):
    """Mixin: the other side said "not now". `retry_after` is its wait in seconds (already
    read through `pollerd.http.parse_retry_after`, so capped), or None for our own back-off."""

    retry_after: float | None = None


class Permanent(Exception):
    """Mixin: retrying will not help until a person changes something; `scope` says what."""

    scope: str = "message"


class ControlFlow(Exception):
    """Raised and caught inside one module (a pause, a bound, a bad request line): never
    shown to a person as a failure, so deliberately outside `PollerdError`."""


class PollerdError(Exception):
    exit_code = EXIT_FAILED


class ConfigError(PollerdError):
    """A config problem a person must fix; the message names the key, the problem and the fix."""

    exit_code = EXIT_CONFIG

    def __init__(self, field: str, problem: str, fix: str = "") -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        text = f"config: {field}: {problem}" if field else f"config: {problem}"
        if fix:
            text += f" ({fix})"
        super().__init__(text)


class SecretError(ConfigError):
    pass


class StoreError(PollerdError):
    pass


class StoreFull(StoreError):
    """The database cannot grow: its disk (or quota) is full. Temporary: the daemon waits it
    out; a one-shot command fails (exit 1) and the next timer run retries."""

    def __init__(self, path: str, free: int | None, message: str) -> None:
        self.path = path
        self.free = free
        super().__init__(message)


class StoreReadOnly(StoreError):
    """pollerd may not write its database (owner, mode, read-only mount): a setup error a
    person must fix, so exit 78 and systemd does not restart-loop on it."""

    exit_code = EXIT_CONFIG

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(message)


class DamagedDatabase(StoreError):
    """The SQLite file fails `PRAGMA quick_check` (or is no database at all). Nothing pollerd
    does can repair it, and working on would lose or repeat alerts: stop, say how to restore."""

    exit_code = EXIT_DAMAGED


class LockHeld(PollerdError):
    exit_code = EXIT_LOCKED


class SourceError(PollerdError):
    def __init__(self, store: str, message: str) -> None:
        self.store = store
        super().__init__(f"store {store}: {message}")


class RetryableSourceError(SourceError, Retryable):
    """The store (or something in front of it) said "not now"; never read this as "no orders"."""

    def __init__(self, store: str, message: str, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(store, message)


class BlockedSourceError(RetryableSourceError):
    """A firewall in front of the store refused us (a 403 HTML page). Retrying at the poll rate
    is what gets the server's IP blocked for good: the daemon backs off as for auth errors."""


class PermanentSourceError(SourceError, Permanent):
    """Retrying will not help until a person changes something (keys, permissions, version).
    `scope` is "store" (every request fails alike) unless the failure is one order's."""

    scope: str = "store"

    def __init__(self, store: str, message: str, *, scope: SourceScope | None = None) -> None:
        # Set only when given: the class default ("store") covers every other permanent one.
        if scope is not None:
            self.scope = scope
        super().__init__(store, message)


class ChannelError(PollerdError):
    """A send (or `pollerd check`) failed at the receiver edge. The message is the detail as
    `pollerd deliveries list` shows it: it names the destination by host only and never
    holds a credential (`pollerd.http.Edge` scrubs it)."""

    def __init__(self, detail: str, *, channel: str = "") -> None:
        self.channel = channel
        self.detail = detail
        super().__init__(detail)


class RetryableChannelError(ChannelError, Retryable):
    """The receiver (or the way to it) failed for now; the outbox retries, not before
    `retry_after` seconds when it is set."""

    def __init__(self, detail: str, *, retry_after: float | None = None, channel: str = "") -> None:
        self.retry_after = retry_after
        super().__init__(detail, channel=channel)


class PermanentChannelError(ChannelError, Permanent):
    """The receiver refused for good: this message (`message`), the person it was for
    (`recipient`), or every message of the channel (`channel`: the loop holds the channel)."""

    scope: ChannelScope

    def __init__(self, detail: str, *, scope: ChannelScope = "message", channel: str = "") -> None:
        self.scope = scope
        super().__init__(detail, channel=channel)
