"""TOML config → typed, validated settings (DESIGN §7).

Unknown keys are errors: a typo must not silently disable a channel. Every problem becomes a
`ConfigError` line naming the key (`stores[0].consumer_secret`), the problem and the fix, and all
problems of a file are reported at once (`ConfigErrors`): fixing one per restart is misery.
Messages never echo pydantic's `input`: for a field typed `Secret` that is the secret itself.

`load()` and `minimal()` are the only ways in; both run `_build`, so `pollerd demo` gets exactly
the checks a hand-written file gets. The models check single values; `_cross_checks` checks what
spans tables (unique names, routes that name channels, each channel's own `Options`).
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import tomllib
import types
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic import model_validator as _model_validator
from pydantic_core import PydanticCustomError

from pollerd.errors import ConfigError
from pollerd.model import EVENT_TYPES
from pollerd.secrets import Secret, register_all, warn_inline

EXAMPLE = "see config.example.toml"
SYSTEM_CONFIG = Path("/etc/pollerd/pollerd.toml")
LOCAL_CONFIG = Path("pollerd.toml")
USER_KEYS = ("pollerd", "stores", "channels", "routes")  # the Settings fields a file may set

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
# Every duration is bounded here, so none can overflow timedelta, datetime arithmetic or a
# sleep later ("100000000d" passed the loader and crashed `run`); keys whose sane range is
# far shorter say so with `_at_most`.
LONGEST = timedelta(days=3650)
_LONGEST_WHY = "10 years is the longest duration pollerd accepts"


def parse_duration(value: Any) -> timedelta:
    """`"2s"`, `"5m"`, `"72h"`, `"1d"`, `"500ms"` → timedelta; ValueError explains the format
    or the bound (`LONGEST`)."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNITS[match.group(2)]  # "9"*400 is inf, not an error
    else:
        raise ValueError(
            f'{value!r} is not a duration (write a string such as "2s", "5m", "72h" or "1d")'
        )
    if not seconds <= LONGEST.total_seconds():
        raise ValueError(f"must be at most {_short(LONGEST)} ({_LONGEST_WHY})")
    return value if isinstance(value, timedelta) else timedelta(seconds=seconds)


def _short(span: timedelta) -> str:
    """A bound as the user would write it: "1d", "12h", "90s"."""
    seconds = span.total_seconds()
    for unit in ("d", "h", "m", "s"):
        if seconds >= _UNITS[unit] and seconds % _UNITS[unit] == 0:
            return f"{seconds / _UNITS[unit]:g}{unit}"
    return f"{seconds:g}s"


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def invalid(problem: str, fix: str = "", key: str = "") -> PydanticCustomError:
    """A validation error that keeps problem and fix apart for the report; `key` names the
    field when a whole-model check raises it (pydantic's loc then stops at the model)."""
    template = "{problem} ({fix})" if fix else "{problem}"
    return PydanticCustomError("pollerd", template, {"problem": problem, "fix": fix, "key": key})


def _at_least(minimum: timedelta, why: str) -> AfterValidator:
    def check(value: timedelta) -> timedelta:
        if value < minimum:
            raise invalid(f"must be at least {minimum.total_seconds():g}s", why)
        return value

    return AfterValidator(check)


def _at_most(maximum: timedelta, why: str) -> AfterValidator:
    def check(value: timedelta) -> timedelta:
        if value > maximum:
            raise invalid(f"must be at most {_short(maximum)}", why)
        return value

    return AfterValidator(check)


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        close = difflib.get_close_matches(value, _zones(), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        fix = f'{hint}e.g. "Asia/Shanghai", "Europe/Berlin" or "UTC"'
        raise invalid(f"{value!r} is not an IANA time zone", fix) from None
    return value


def _start_from(value: Any) -> Any:
    """ "now" or an aware time: a naive one would silently mean the server's local zone."""
    if value == "now":
        return "now"
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = datetime.fromisoformat(value.strip())
    if isinstance(value, datetime) and value.utcoffset() is not None:
        if value.year < 1970:  # year 1 passed, then `start - overlap` crashed the first pass
            raise invalid(f"{value.isoformat()} is before 1970", 'use "now" or a later time')
        if value > datetime.now(UTC):
            # The cursor would start there and be stored: nothing before it ever alerts, while
            # `check` and `status` say ok, and a later correction of this key changes nothing.
            raise invalid(
                f"{value.isoformat()} is in the future: no change before it would ever alert",
                'use "now" (alerts start at the first run) or a past time with an offset',
            )
        return value
    raise invalid(
        'must be "now" or an RFC 3339 time with an offset',
        'e.g. "2026-01-01T00:00:00+08:00" or "2026-01-01T00:00:00Z"',
    )


def _database(value: str) -> str:
    scheme, sep, _ = value.partition("://")
    if sep and (scheme == "sqlite" or scheme.startswith(("sqlite+", "postgresql"))):
        return value
    raise invalid(  # the URL is not echoed: a PostgreSQL URL may carry a password
        "must be a sqlite:/// or postgresql+psycopg:// URL",
        'e.g. "sqlite:///pollerd.db" (relative to this file) or '
        '"postgresql+psycopg://pollerd@db.internal/pollerd"',
    )


def _listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if sep and host and port.isdigit() and 0 < int(port) < 65536:
        return value
    raise invalid("must be host:port", 'e.g. "127.0.0.1:9464"')


def _public_url(value: str) -> str:
    """Where pollerd's own HTTP endpoint is reachable from the outside, without a trailing `/`
    (links append `/unsubscribe`). A path prefix is fine (behind a reverse proxy)."""
    if not value.isascii() or not value.isprintable():
        raise invalid("must be printable ASCII", "write an IDN host in punycode (xn--...)")
    parts = urlsplit(value.strip())
    try:
        valid = bool(parts.hostname) and parts.port != 0
    except ValueError:  # a port that is not a number in range
        valid = False
    if parts.scheme not in ("http", "https") or not valid:
        raise invalid(
            "must be an http:// or https:// address", 'e.g. "https://pollerd.example.com"'
        )
    if parts.username or parts.password:
        raise invalid("must not contain a user or password", "links must work without a login")
    if parts.query or parts.fragment:
        raise invalid("must not have a query string or fragment", "give the base address only")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _long_secret(value: Secret) -> Secret:
    if len(value.get()) < 16:
        raise invalid("is shorter than 16 characters", "create one with `openssl rand -base64 32`")
    return value


def _pii_key(value: Secret) -> Secret:
    """A key ring that cannot seal is refused at start (exit 78), not at the first order."""
    from pollerd.crypto import CryptoError, KeyRing

    try:
        KeyRing.parse(value.get())
    except CryptoError as exc:  # the message names the entry, never the key
        raise invalid(str(exc).removeprefix("pii_key").lstrip(": ")) from None
    return value


_API_PATHS = ("/wp-json", "/wp-admin", "/index.php", "/wp-login.php", "/xmlrpc.php")


def _site_url(value: str) -> str:
    """The WordPress site address without a trailing `/` (sources append the API path). The
    URL is never echoed whole: a pasted API URL may carry the keys in its query string."""
    parts = urlsplit(value.strip())
    try:
        valid = bool(parts.hostname) and parts.port != 0
    except ValueError:  # a port that is not a number in range
        valid = False
    if parts.scheme not in ("http", "https") or not valid:
        raise invalid("must be an http:// or https:// address", 'e.g. "https://shop.example.com"')
    if parts.username or parts.password:
        raise invalid("must not contain a user or password", "keys go in consumer_key/_secret")
    path = parts.path.rstrip("/")
    for marker in _API_PATHS:
        at = path.lower().find(marker)
        if at >= 0:
            site = urlunsplit((parts.scheme, parts.netloc, path[:at], "", ""))
            fix = f"give the site address, not the API URL: {site}"
            raise invalid(f"points into WordPress ({marker}), not at the site", fix)
    if parts.query or parts.fragment:
        fix = 'give the site address only, e.g. "https://shop.example.com"'
        raise invalid("must not have a query string", fix)
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _event_glob(value: str) -> str:
    if value.startswith("alert.") or any(fnmatchcase(t, value) for t in EVENT_TYPES):
        return value
    close = difflib.get_close_matches(value, EVENT_TYPES, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    fix = f"{hint}known: {', '.join(EVENT_TYPES)}, order.*, alert.*"
    raise invalid(f"{value!r} matches no event", fix)


_ONE_SECOND = "polling faster than once a second only burns the rate limit"
_TWO_SECONDS = (
    "modified_after is a strict > at one-second precision: less can miss an order "
    "changed in the cursor's second"
)
_DAY, _YEAR = timedelta(days=1), timedelta(days=365)
_DAILY = "a store polled less than daily is not an alert; use the sweeps for old orders"
_OVERLAP = "each pass re-reads every order changed in the overlap"
_REQUEST = "a request hanging longer holds up every other one behind it"
_SWEEP = (
    "a sweep reads every order changed in its window: a longer one reads the whole history "
    "each time"
)
_NOTICE = "a fault noticed later than that is noticed too late to act on"
TimeZone = Annotated[str, AfterValidator(_time_zone)]
Interval = Annotated[Duration, _at_least(timedelta(seconds=1), _ONE_SECOND), _at_most(_DAY, _DAILY)]
Overlap = Annotated[
    Duration, _at_least(timedelta(seconds=2), _TWO_SECONDS), _at_most(_DAY, _OVERLAP)
]
Timeout = Annotated[Duration, _at_most(timedelta(hours=1), _REQUEST)]
Sweep = Annotated[Duration, _at_most(_YEAR, _SWEEP)]
Noticed = Annotated[Duration, _at_most(timedelta(days=30), _NOTICE)]
StoreName = Annotated[str, Field(pattern=r"^[a-z0-9_-]{1,64}$")]
StartFrom = Annotated[Literal["now"] | datetime, BeforeValidator(_start_from)]
EventGlob = Annotated[str, AfterValidator(_event_glob)]


class _Strict(BaseModel):
    # hide_input_in_errors: a literal secret that fails a check must not print in str(error)
    model_config = ConfigDict(
        extra="forbid", frozen=True, arbitrary_types_allowed=True, hide_input_in_errors=True
    )


_STALE_ALERT = "an alert delivered a year late is no alert"
_WAIT = (
    "waiting longer between two attempts only delays the alert; dead_after decides when to give up"
)
_BACKOFF = "a store that works again would wait that long before it is polled"


class DeliveryConfig(_Strict):
    """The outbox's retry policy. `dead_after` (72 h, the README's horizon) decides when a
    delivery gives up; `max_attempts` 0 (the default) adds no cap of its own: 25 attempts at a
    30-minute back-off gave up after about 4 hours, not 72."""

    max_attempts: int = Field(0, ge=0)
    dead_after: Annotated[Duration, _at_most(_YEAR, _STALE_ALERT)] = timedelta(hours=72)
    backoff_base: Annotated[Duration, _at_most(timedelta(hours=1), _WAIT)] = timedelta(seconds=5)
    backoff_max: Annotated[Duration, _at_most(_DAY, _WAIT)] = timedelta(minutes=30)
    concurrency: int = Field(8, ge=1, le=256)
    send_timeout: Timeout = timedelta(seconds=30)
    # A channel whose every attempt failed for this long is "failing": alert.channel_failing on
    # the other channels, `status` and /healthz unhealthy (a broken one is held at once).
    failing_after: Noticed = timedelta(minutes=15)


class GlobalConfig(_Strict):
    database: Annotated[str, AfterValidator(_database)] = "sqlite:///pollerd.db"
    timezone: TimeZone = "UTC"
    locale: Literal["en", "zh-CN"] = "en"
    pii_key: Annotated[Secret, AfterValidator(_pii_key)] | None = None
    retention: Duration = timedelta(hours=72)
    metrics_listen: Annotated[str, AfterValidator(_listen)] | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    public_url: Annotated[str, AfterValidator(_public_url)] | None = None
    listen: Annotated[str, AfterValidator(_listen)] | None = None
    unsubscribe_secret: Annotated[Secret, AfterValidator(_long_secret)] | None = None
    templates: Path | None = None  # a folder of templates overriding the built-in ones
    delivery: DeliveryConfig = DeliveryConfig()
    # A store failing this long without a successful pass sends alert.store_failing (once per
    # episode; alert.store_recovered when it heals). "0s": at the first failed pass.
    store_failing_after: Noticed = timedelta(minutes=10)
    # Errors only a person can fix (401/403, a WAF page, a wrong URL) are retried less and
    # less often, up to this; retryable ones (5xx, timeouts) keep the store's interval.
    store_backoff_max: Annotated[Interval, _at_most(_DAY, _BACKOFF)] = timedelta(minutes=15)

    @_model_validator(mode="after")
    def _unsubscribe_needs_secret(self) -> GlobalConfig:
        """Links cannot be made (public_url) nor checked (listen) without the secret."""
        if self.unsubscribe_secret is None and (self.public_url or self.listen):
            why = "public_url" if self.public_url else "listen"
            fix = (
                'add unsubscribe_secret = "env:POLLERD_UNSUBSCRIBE_SECRET" holding 32 random '
                f"bytes, e.g. from `openssl rand -base64 32`; or remove {why}"
            )
            raise invalid(f"missing ({why} is set)", fix, key="unsubscribe_secret")
        return self


class WooCommerceStore(_Strict):
    name: StoreName
    platform: Literal["woocommerce"]
    url: Annotated[str, AfterValidator(_site_url)]
    consumer_key: Secret
    consumer_secret: Secret
    auth: Literal["auto", "basic", "oauth", "query"] = "auto"
    interval: Interval = timedelta(seconds=10)
    overlap: Overlap = timedelta(minutes=5)
    start_from: StartFrom = "now"
    pay_on_delivery_methods: list[str] = ["cod"]
    max_requests_per_minute: int = Field(120, ge=1)
    timeout: Timeout = timedelta(seconds=30)
    user_agent: str = "pollerd/0.1 (+order alerts; polling wc/v3)"
    sweep_hourly: Sweep = timedelta(hours=24)
    sweep_daily: Sweep = timedelta(hours=72)
    # First run: orders modified this long before the start point are recorded (silently) so a
    # later change without a date of its own (a cancellation) is diffed against a known state.
    baseline_horizon: Duration = timedelta(days=90)
    enabled: bool = True


class ShopifyStore(_Strict):
    """A Shopify store, polled through the GraphQL Admin API (or REST, the legacy fallback)."""

    name: StoreName
    platform: Literal["shopify"]
    shop: str
    access_token: Secret | None = None
    client_id: str | None = None
    client_secret: Secret | None = None
    api: Literal["graphql", "rest"] = "graphql"
    api_version: str = "2026-10"
    base_url: str | None = None
    interval: Interval = timedelta(seconds=2)
    overlap: Overlap = timedelta(minutes=5)
    start_from: StartFrom = "now"
    max_budget: float = Field(0.5, gt=0, le=1)
    timeout: Timeout = timedelta(seconds=30)
    user_agent: str = "pollerd/0.1 (+order alerts; polling Shopify Admin API)"
    sweep_hourly: Sweep = timedelta(hours=24)
    sweep_daily: Sweep = timedelta(hours=72)
    deletions: bool = True  # read the events feed for destroyed orders (2024-10+)
    disputes: bool = True  # read Shopify Payments disputes (read_shopify_payments_disputes)
    enabled: bool = True

    @_model_validator(mode="after")
    def _has_credentials(self) -> ShopifyStore:
        if self.access_token is None and (self.client_id is None or self.client_secret is None):
            fix = f"add access_token, or client_id + client_secret; {EXAMPLE}"
            raise invalid("missing", fix, key="access_token")
        return self


StoreConfig = Annotated[WooCommerceStore | ShopifyStore, Field(discriminator="platform")]


class ChannelConfig(_Strict):
    """`name` and `type` here; every other key is validated by the channel's own `Options`
    (the result is `Settings.channel_options[name]`, the one place code should read options).
    The raw keys stay as extras only so `model_dump()` can rebuild the table (`pollerd demo`
    does); they are hidden from repr because an inline secret would print."""

    model_config = ConfigDict(
        extra="allow", frozen=True, arbitrary_types_allowed=True, hide_input_in_errors=True
    )
    name: StoreName
    type: str
    locale: Literal["en", "zh-CN"] | None = None
    timezone: TimeZone | None = None

    def __repr_args__(self) -> Any:
        return [
            (key, value)
            for key, value in super().__repr_args__()
            if key in ChannelConfig.model_fields
        ]


class RouteConfig(_Strict):
    events: list[EventGlob] = ["order.*"]
    stores: list[str] = ["*"]
    channels: list[str]
    test_orders: Literal["mark", "skip"] = "mark"


class Settings(_Strict):
    pollerd: GlobalConfig = GlobalConfig()
    stores: list[StoreConfig] = []
    channels: list[ChannelConfig] = []
    routes: list[RouteConfig] = []
    path: Path | None = None  # the file this came from; relative paths resolve against it
    channel_options: dict[str, Any] = {}  # channel name → validated Options instance (or dict)

    @property
    def base_dir(self) -> Path:
        """Where relative paths start: the config file's directory (cwd for `minimal`)."""
        return self.path.parent if self.path is not None else Path.cwd()

    @property
    def state_dir(self) -> Path:
        """Where the lock file goes: beside the SQLite file, else beside the config file."""
        file = sqlite_file(self.pollerd.database)
        return self.base_dir if file is None else (self.base_dir / file).parent

    @property
    def stores_by_name(self) -> dict[str, WooCommerceStore | ShopifyStore]:
        return {store.name: store for store in self.stores}

    @property
    def channels_by_name(self) -> dict[str, ChannelConfig]:
        return {channel.name: channel for channel in self.channels}

    def options_of(self, channel: str) -> dict[str, Any]:
        """A channel's options as the dict `ChannelContext.options` carries; secrets stay
        `Secret` objects rather than being dumped to strings."""
        options = self.channel_options.get(channel, {})
        if isinstance(options, BaseModel):
            return {name: getattr(options, name) for name in type(options).model_fields}
        return dict(options)


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL as written (maybe relative); None for other engines and for
    in-memory databases, which have no directory of their own."""
    scheme, _, rest = url.partition("://")
    if scheme != "sqlite" and not scheme.startswith("sqlite+"):
        return None
    name = rest.removeprefix("/").partition("?")[0]
    return Path(name) if name and name != ":memory:" else None


def _absolute_database(url: str, base: Path) -> str:
    """`sqlite:///rel.db` is relative to the config file, not to wherever systemd started us."""
    file = sqlite_file(url)
    if file is None or file.is_absolute():
        return url
    scheme, _, rest = url.partition("://")
    query = rest.partition("?")[2]
    return f"{scheme}:///{(base / file).absolute()}" + (f"?{query}" if query else "")


class ConfigErrors(ConfigError):
    """Every problem of one config, a `config: key: problem (fix)` line each. `field`,
    `problem` and `fix` are the first problem's; `problems` holds them all."""

    def __init__(self, problems: list[ConfigError]) -> None:
        first = problems[0]
        super().__init__(first.field, first.problem, first.fix)
        self.problems = problems
        self.args = ("\n".join(str(problem) for problem in problems),)


def find_config(
    explicit: Path | None,
    *,
    env: Mapping[str, str] | None = None,
    named_by: str = "named by --config",
) -> Path:
    """`--config PATH`, else `$POLLERD_CONFIG`, else `./pollerd.toml`, else the system file.
    A path the user named must exist: falling through to another file would be a surprise.
    `named_by` says where `explicit` came from when it was not `--config` (a reload re-reads
    the file it found at start, perhaps ./pollerd.toml)."""
    env = os.environ if env is None else env
    named = [(explicit, named_by)] if explicit is not None else []
    if env.get("POLLERD_CONFIG"):
        named.append((Path(env["POLLERD_CONFIG"]), "named by $POLLERD_CONFIG"))
    for path, source in named[:1]:
        if not path.is_file():
            what = "is not a file" if path.exists() else "does not exist"
            fix = "check the path, or write the example there with `pollerd init PATH`"
            raise ConfigError(str(path), f"{what} ({source})", fix)
        return path
    for path in (LOCAL_CONFIG, SYSTEM_CONFIG):
        if path.is_file():
            return path
    raise ConfigError(
        "",
        f"no config file found (searched --config, $POLLERD_CONFIG, ./{LOCAL_CONFIG}, "
        f"{SYSTEM_CONFIG})",
        "write the commented example (config.example.toml) with `pollerd init` "
        f"(./{LOCAL_CONFIG}) or `pollerd init {SYSTEM_CONFIG}`, and edit it",
    )


def load(
    path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    named_by: str = "named by --config",
) -> Settings:
    """Find, parse and validate the config; every problem raises `ConfigError` (exit 78).
    `env` only steers discovery (`$POLLERD_CONFIG`); secrets resolve from the real environment.
    """
    path = find_config(path, env=env, named_by=named_by).absolute()
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        fix = "make it readable by the user pollerd runs as"
        raise ConfigError(str(path), f"cannot read: {exc.strerror}", fix) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), f"not UTF-8 (byte {exc.start})", "save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:  # the text names line/column, never file content
        text = str(exc)
        where = re.search(r"\(at line (\d+), column (\d+)\)", text)
        problem = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)$", "", text)
        at = f"line {where.group(1)}, column {where.group(2)}" if where else "the end"
        fix = 'fix the syntax; strings need quotes, e.g. interval = "10s"'
        raise ConfigError(str(path), f"invalid TOML at {at}: {problem}", fix) from None
    settings = _build(data, path)
    warn_inline(settings, path)
    return settings


def minimal(
    database: str,
    stores: list[dict[str, Any]],
    channels: list[dict[str, Any]],
    routes: list[dict[str, Any]],
    *,
    pollerd: Mapping[str, Any] | None = None,
) -> Settings:
    """Settings built in code (`pollerd demo`), validated exactly like a file; `pollerd` holds
    further `[pollerd]` keys (locale, timezone, ...)."""
    tables = {"stores": stores, "channels": channels, "routes": routes}
    return _build({"pollerd": {**(pollerd or {}), "database": database}, **tables}, None)


def _build(data: dict[str, Any], path: Path | None) -> Settings:
    problems: list[ConfigError] = []
    internal = {"path", "channel_options"}  # Settings fields set by code, never by a file
    for key in sorted(internal & set(data)):
        problems.append(ConfigError(key, *_unknown_key(key, list(USER_KEYS))))
    data = {key: value for key, value in data.items() if key not in internal}
    settings: Settings | None = None
    try:
        settings = Settings.model_validate({**data, "path": path})
    except ValidationError as exc:
        problems.extend(_problems_from(exc, Settings, ()))
    options, more = _cross_checks(data)
    problems.extend(more)
    if problems or settings is None:
        raise ConfigErrors(problems) from None
    database = _absolute_database(settings.pollerd.database, settings.base_dir)
    update: dict[str, Any] = {"database": database}
    if settings.pollerd.templates is not None:
        folder = settings.base_dir / settings.pollerd.templates
        update["templates"] = folder.resolve()
        problems.extend(_template_problems(folder))
        if problems:
            raise ConfigErrors(problems) from None
    pollerd = settings.pollerd.model_copy(update=update)
    built = settings.model_copy(update={"pollerd": pollerd, "channel_options": options})
    register_all(built)  # every secret of stores, channels and [pollerd] for the log redactor
    return built


def _template_problems(folder: Path) -> list[ConfigError]:
    """A templates folder that is missing, or holds a template that does not compile, is a
    config error at load time: a typo must not wait for the first order to show."""
    key = "pollerd.templates"
    if not folder.is_dir():
        fix = "create it, or point templates at the folder holding e.g. en/order.paid.text.j2"
        return [ConfigError(key, f"{folder} is not a folder", fix)]
    from pollerd.templates import templates_for

    return [
        ConfigError(key, problem, "fix the template, or delete it to use the built-in one")
        for problem in templates_for(folder).syntax_problems()
    ]


# pydantic errors → `config: key: problem (fix)` lines ---------------------------------------

_EXPECTED = {
    **dict.fromkeys(("int_type", "int_parsing"), "an integer"),
    **dict.fromkeys(("float_type", "float_parsing"), "a number"),
    **dict.fromkeys(("bool_type", "bool_parsing"), "true or false"),
    **dict.fromkeys(("dict_type", "model_type", "model_attributes_type"), "a table"),
    "int_from_float": "a whole number",
    "string_type": 'a string (in "quotes")',
    "list_type": 'a list, e.g. ["a", "b"]',
}
_BOUNDS = {"greater_than_equal": ("ge", "at least"), "less_than_equal": ("le", "at most"),
           "greater_than": ("gt", "more than"), "less_than": ("lt", "less than")}  # fmt: skip
_NAME_PATTERN = r"^[a-z0-9_-]{1,64}$"


def _unwrap(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _literals(model: type[BaseModel], key: str | None = None) -> set[Any]:
    """Literal values of a model's fields (of `key` only, when given): a discriminated union
    puts the chosen member's tag into `loc`, and its error lists the allowed tags."""
    fields = model.model_fields
    chosen = [fields[key]] if key in fields else ([] if key else list(fields.values()))
    found = (get_args(f.annotation) for f in chosen if get_origin(f.annotation) is Literal)
    return {value for values in found for value in values}


def _members(tp: Any) -> list[Any]:
    if get_origin(tp) not in (Union, types.UnionType):
        return []
    return [_unwrap(m) for m in get_args(tp) if m is not type(None)]


def _locate(root: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[list[int | str], Any, Any]:
    """Follow `loc` through the model types. Returns the path as the user wrote it (union tags
    such as `woocommerce` dropped), the model owning the last key, and the type reached."""
    parts: list[int | str] = []
    tp: Any = root
    owner: Any = None
    for item in loc:
        tp = _unwrap(tp)
        members = _members(tp)
        tagged = [m for m in members if _is_model(m) and item in _literals(m)]
        if tagged:
            tp = tagged[0]
            continue
        if members:
            tp = members[0] if len(members) == 1 else None
        parts.append(item)
        owner, field = (tp, tp.model_fields.get(item)) if _is_model(tp) else (None, None)
        if isinstance(item, int):
            tp = get_args(tp)[0] if get_origin(tp) in (list, tuple) and get_args(tp) else None
        elif field is not None:
            tp = field.annotation
        else:
            tp = get_args(tp)[1] if get_origin(tp) is dict and get_args(tp) else None
    return parts, owner, _unwrap(tp)


def _dotted(parts: list[int | str]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _user_keys(model: type[BaseModel]) -> list[str]:
    if model is Settings:
        return list(USER_KEYS)
    return [field.alias or name for name, field in model.model_fields.items()]


def _unknown_key(key: str, known: list[str]) -> tuple[str, str]:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else f"known: {', '.join(known)}; "
    return f"unknown key {key!r}", hint + EXAMPLE


def _describe(err: Any, owner: Any, reached: Any) -> tuple[str, str, str]:
    """(problem, fix, key to append to the location), from the error's type and context only."""
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "pollerd":
        return ctx["problem"], ctx["fix"], ctx.get("key", "")
    if kind == "value_error":  # parse_duration's text already carries its fix
        return str(ctx.get("error", err["msg"])), "", ""
    if kind == "secret":  # Secret's own message: names the reference, never the value
        return err["msg"], "", ""
    if kind == "missing":
        return "missing", f"add it; {EXAMPLE}", ""
    if kind == "extra_forbidden":
        return (*_unknown_key(str(err["loc"][-1]), _user_keys(owner) if owner else []), "")
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        key = str(ctx.get("discriminator", "")).strip("'")
        tags = sorted({tag for m in _members(reached) if _is_model(m) for tag in _literals(m, key)})
        choice = " or ".join(f'"{tag}"' for tag in tags)
        if kind == "union_tag_not_found":
            return "missing", f"add {key} = {choice}; {EXAMPLE}", key
        return f"must be {choice}", "", key
    if kind == "string_pattern_mismatch":
        if ctx.get("pattern") == _NAME_PATTERN:
            return "must match [a-z0-9_-]", "1 to 64 lowercase letters, digits, _ or -", ""
        return f"must match {ctx.get('pattern')}", EXAMPLE, ""
    if kind == "literal_error":
        return f"must be {ctx['expected']}".replace("'", '"'), EXAMPLE, ""
    if kind in _BOUNDS:
        return f"must be {_BOUNDS[kind][1]} {ctx[_BOUNDS[kind][0]]}", EXAMPLE, ""
    if kind in _EXPECTED:
        return f"must be {_EXPECTED[kind]}", EXAMPLE, ""
    return err["msg"], EXAMPLE, ""


def _problems_from(
    exc: ValidationError, root: type[BaseModel], prefix: tuple[int | str, ...]
) -> list[ConfigError]:
    found: dict[str, ConfigError] = {}
    for err in exc.errors(include_url=False, include_input=False):
        parts, owner, reached = _locate(root, err["loc"])
        problem, fix, key = _describe(err, owner, reached)
        item = ConfigError(_dotted([*prefix, *parts, *([key] if key else [])]), problem, fix)
        found.setdefault(str(item), item)
    return list(found.values())


# checks that span tables ------------------------------------------------------------------


def _items(value: Any, kind: type) -> list[tuple[int, Any]]:
    """The well-formed entries of an array (tables or strings); pydantic reports the rest."""
    if not isinstance(value, list):
        return []
    return [(i, item) for i, item in enumerate(value) if isinstance(item, kind)]


def _names(section: str, tables: list[tuple[int, Any]]) -> tuple[list[str], list[ConfigError]]:
    first: dict[str, int] = {}
    problems = []
    for i, table in tables:
        name = table.get("name")
        if isinstance(name, str) and name in first:
            problem = f"{name!r} is already used by {section}[{first[name]}]"
            problems.append(ConfigError(f"{section}[{i}].name", problem, "names must be unique"))
        elif isinstance(name, str):
            first[name] = i
    return sorted(first), problems


def _cross_checks(data: dict[str, Any]) -> tuple[dict[str, Any], list[ConfigError]]:
    """Unique names, routes that point at real channels and stores, and each channel's own
    options. Works on the raw tables so these problems are reported alongside pydantic's."""
    stores, channels = _items(data.get("stores"), dict), _items(data.get("channels"), dict)
    store_names, problems = _names("stores", stores)
    channel_names, more = _names("channels", channels)
    problems += more
    for i, route in _items(data.get("routes"), dict):
        for j, name in _items(route.get("channels"), str):
            if name not in channel_names:
                fix = f"defined: {', '.join(channel_names) or 'none'}"
                problems.append(ConfigError(f"routes[{i}].channels[{j}]",
                                            f"no channel named {name!r}", fix))  # fmt: skip
        for j, glob in _items(route.get("stores"), str) if store_names else []:
            if not any(fnmatchcase(name, glob) for name in store_names):
                fix = f"defined: {', '.join(store_names)}"
                problems.append(ConfigError(f"routes[{i}].stores[{j}]",
                                            f"{glob!r} matches no store", fix))  # fmt: skip
    options: dict[str, Any] = {}
    for i, table in channels:
        if isinstance(table.get("type"), str):
            validated = _channel_options(i, table, problems)
            if validated is not None and isinstance(table.get("name"), str):
                options[table["name"]] = validated
    return options, problems


def _channel_options(i: int, table: dict[str, Any], problems: list[ConfigError]) -> Any:
    """Validate a channel's own keys with its class's `Options` (a plain dict, with the class's
    `secret_fields` resolved, when it has none). None when something is wrong."""
    from pollerd.channels import channel_class  # late: channel modules may import this one
    from pollerd.secrets import resolve

    kind, at, count = table["type"], f"channels[{i}]", len(problems)
    try:
        cls = channel_class(kind)
    except KeyError as exc:
        fix = "use a known type, or install the package that provides it"
        problems.append(ConfigError(f"{at}.type", str(exc.args[0]), fix))
        return None
    except ImportError as exc:
        problem = f"channel type {kind!r} cannot be loaded ({type(exc).__name__}: {exc})"
        fix = "reinstall pollerd, or the package that provides it"
        problems.append(ConfigError(f"{at}.type", problem, fix))
        return None
    extras = {key: value for key, value in table.items() if key not in ChannelConfig.model_fields}
    options = getattr(cls, "Options", None)
    if not _is_model(options):
        for key in set(extras) & set(cls.secret_fields):
            try:
                extras[key] = resolve(extras[key]) if isinstance(extras[key], str) else extras[key]
            except LookupError as exc:
                problems.append(ConfigError(f"{at}.{key}", str(exc)))
        return extras if len(problems) == count else None
    if options.model_config.get("extra") not in ("forbid", "allow"):  # typos must not pass
        known = [*_user_keys(ChannelConfig), *_user_keys(options)]
        for key in [key for key in extras if key not in known]:
            problems.append(ConfigError(f"{at}.{key}", *_unknown_key(key, known)))
            del extras[key]
    try:
        validated = options.model_validate(extras)
    except ValidationError as exc:
        problems.extend(_problems_from(exc, options, ("channels", i)))
        return None
    return validated if len(problems) == count else None
