"""TOML config → typed, validated settings (DESIGN §7).

Unknown keys are errors: a typo must not silently disable a channel. Every problem becomes a
`ConfigError` whose message names the key (`stores[0].consumer_secret`), the problem and the fix,
and all problems of one file are reported together (`ConfigErrors`): fixing a config one restart
at a time is misery. Messages never echo a value a secret could hide in (pydantic's `input`).

`load()` and `minimal()` are the only ways in; both run `_build`, so `pollerd demo` gets exactly
the checks a hand-written file gets. The pydantic models check single values; `_cross_checks`
checks what spans tables (unique names, routes that name channels, channel `Options`).
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
import types
from collections.abc import Mapping
from datetime import datetime, timedelta
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
from pollerd.secrets import Secret

EXAMPLE = "see config.example.toml"
SYSTEM_CONFIG = Path("/etc/pollerd/pollerd.toml")
LOCAL_CONFIG = Path("pollerd.toml")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> timedelta:
    """`"2s"`, `"5m"`, `"72h"`, `"1d"`, `"500ms"` → timedelta; ValueError explains the format."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    raise ValueError(
        f"{value!r} is not a duration (write a string such as \"2s\", \"5m\", \"72h\" or \"1d\")"
    )


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def invalid(problem: str, fix: str = "", key: str = "") -> PydanticCustomError:
    """A validation error that keeps problem and fix apart, so the report can format both
    (and `key` names the field when a whole-model check raises it)."""
    return PydanticCustomError(
        "pollerd", "{problem} ({fix})" if fix else "{problem}", {"problem": problem, "fix": fix,
                                                                "key": key}
    )


def _at_least(minimum: timedelta, why: str) -> AfterValidator:
    def check(value: timedelta) -> timedelta:
        if value < minimum:
            raise invalid(f"must be at least {minimum.total_seconds():g}s", why)
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
        raise invalid(
            f"{value!r} is not an IANA time zone",
            f'{hint}e.g. "Asia/Shanghai", "Europe/Berlin" or "UTC"',
        ) from None
    return value


def _start_from(value: Any) -> Literal["now"] | datetime:
    """"now" or an aware time: a naive one would silently mean the server's local zone."""
    if value == "now":
        return "now"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            pass
    if isinstance(value, datetime) and value.utcoffset() is not None:
        return value
    raise invalid(
        'must be "now" or an RFC 3339 time with an offset',
        'e.g. "2026-01-01T00:00:00+08:00" or "2026-01-01T00:00:00Z"',
    )


def _database(value: str) -> str:
    scheme, sep, _ = value.partition("://")
    if sep and (scheme == "sqlite" or scheme.startswith(("sqlite+", "postgresql"))):
        return value
    raise invalid(
        "must be a sqlite:/// or postgresql+psycopg:// URL",
        'e.g. "sqlite:///pollerd.db" (relative to the config file) or '
        '"postgresql+psycopg://pollerd@db.internal/pollerd"',
    )


def _listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if sep and host and port.isdigit() and 0 < int(port) < 65536:
        return value
    raise invalid("must be host:port", 'e.g. "127.0.0.1:9464"')


_API_PATHS = ("/wp-json", "/wp-admin", "/index.php", "/wp-login.php", "/xmlrpc.php")


def _site_url(value: str) -> str:
    """The WordPress site address, normalised without a trailing `/`; sources append the API
    path themselves. The URL is never echoed whole: a pasted URL may carry keys in its query."""
    parts = urlsplit(value.strip())
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise invalid("has an invalid port", 'e.g. "https://shop.example.com:8443"') from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid("must be an http:// or https:// address", 'e.g. "https://shop.example.com"')
    if parts.username or parts.password:
        raise invalid("must not contain a user or password", "put the keys in consumer_key and "
                      "consumer_secret")
    path = parts.path.rstrip("/")
    lowered = path.lower()
    for marker in _API_PATHS:
        at = lowered.find(marker)
        if at >= 0:
            site = urlunsplit((parts.scheme, parts.netloc, path[:at], "", ""))
            raise invalid(
                f"points into WordPress ({marker}), not at the site",
                f"give the site address, not the API URL: {site}",
            )
    if parts.query or parts.fragment:
        raise invalid("must not have a query string", "give the site address only, e.g. "
                      '"https://shop.example.com"; keys go in consumer_key/consumer_secret')
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _event_glob(value: str) -> str:
    if value.startswith("alert.") or any(fnmatchcase(t, value) for t in EVENT_TYPES):
        return value
    close = difflib.get_close_matches(value, EVENT_TYPES, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise invalid(f"{value!r} matches no event", f"{hint}known: {', '.join(EVENT_TYPES)}, "
                  "order.*, alert.*")


TimeZone = Annotated[str, AfterValidator(_time_zone)]
Interval = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    _at_least(timedelta(seconds=1), "polling faster than once a second only burns rate limit"),
]
Overlap = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    _at_least(timedelta(seconds=2), "modified_after is a strict > at one-second precision, so "
              "less than 2s can miss an order changed in the same second as the cursor"),
]
StoreName = Annotated[str, Field(pattern=r"^[a-z0-9_-]{1,64}$")]
StartFrom = Annotated[Literal["now"] | datetime, BeforeValidator(_start_from)]
EventGlob = Annotated[str, AfterValidator(_event_glob)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class DeliveryConfig(_Strict):
    max_attempts: int = Field(25, ge=1)
    dead_after: Duration = timedelta(hours=72)
    backoff_base: Duration = timedelta(seconds=5)
    backoff_max: Duration = timedelta(minutes=30)
    concurrency: int = Field(8, ge=1, le=256)
    send_timeout: Duration = timedelta(seconds=30)


class GlobalConfig(_Strict):
    database: Annotated[str, AfterValidator(_database)] = "sqlite:///pollerd.db"
    timezone: TimeZone = "UTC"
    locale: Literal["en", "zh-CN"] = "en"
    pii_key: Secret | None = None
    retention: Duration = timedelta(hours=72)
    metrics_listen: Annotated[str, AfterValidator(_listen)] | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    delivery: DeliveryConfig = DeliveryConfig()


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
    timeout: Duration = timedelta(seconds=30)
    user_agent: str = "pollerd/0.1 (+order alerts; polling wc/v3)"
    sweep_hourly: Duration = timedelta(hours=24)
    sweep_daily: Duration = timedelta(hours=72)
    enabled: bool = True


class ShopifyStore(_Strict):
    """Accepted so one config can describe a whole fleet; polling Shopify is issue 3's work."""

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
    enabled: bool = True

    @_model_validator(mode="after")
    def _has_credentials(self) -> ShopifyStore:
        if self.access_token is None and (self.client_id is None or self.client_secret is None):
            raise invalid("missing", "add access_token, or client_id + client_secret; "
                          + EXAMPLE, key="access_token")
        return self


StoreConfig = Annotated[WooCommerceStore | ShopifyStore, Field(discriminator="platform")]


class ChannelConfig(_Strict):
    """`name` and `type` here; every other key is validated by the channel's own `Options` and
    lives in `Settings.channel_options`, never here: a raw table could hold an inline secret and
    this model's repr would print it."""

    model_config = ConfigDict(extra="ignore", frozen=True, arbitrary_types_allowed=True)
    name: StoreName
    type: str
    locale: Literal["en", "zh-CN"] | None = None
    timezone: TimeZone | None = None


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
        """The directory for the lock file: next to the SQLite file, else beside the config."""
        file = sqlite_file(self.pollerd.database)
        if file is None:
            return self.base_dir
        return (self.base_dir / file).parent

    @property
    def stores_by_name(self) -> dict[str, WooCommerceStore | ShopifyStore]:
        return {store.name: store for store in self.stores}

    @property
    def channels_by_name(self) -> dict[str, ChannelConfig]:
        return {channel.name: channel for channel in self.channels}

    def options_of(self, channel: str) -> dict[str, Any]:
        """A channel's options as the plain dict `ChannelContext.options` carries; secrets stay
        `Secret` objects (not dumped to strings)."""
        options = self.channel_options.get(channel, {})
        if isinstance(options, BaseModel):
            return {name: getattr(options, name) for name in type(options).model_fields}
        return dict(options)


USER_KEYS = ("pollerd", "stores", "channels", "routes")  # Settings fields a file may set


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL (relative as written); None for other engines and
    for in-memory databases, which have no directory of their own."""
    scheme, _, rest = url.partition("://")
    if scheme != "sqlite" and not scheme.startswith("sqlite+"):
        return None
    name = rest.removeprefix("/").partition("?")[0]
    if not name or name == ":memory:":
        return None
    return Path(name)


def _absolute_database(url: str, base: Path) -> str:
    """`sqlite:///rel.db` is relative to the config file, not to wherever systemd started us."""
    file = sqlite_file(url)
    if file is None or file.is_absolute():
        return url
    scheme, _, rest = url.partition("://")
    query = rest.partition("?")[2]
    return f"{scheme}:///{(base / file).absolute()}" + (f"?{query}" if query else "")


class ConfigErrors(ConfigError):
    """All problems of one config, one `config: key: problem (fix)` line each; `field`,
    `problem` and `fix` are the first one's, `problems` has them all."""

    def __init__(self, problems: list[ConfigError]) -> None:
        first = problems[0]
        super().__init__(first.field, first.problem, first.fix)
        self.problems = problems
        self.args = ("\n".join(str(problem) for problem in problems),)


def find_config(explicit: Path | None, *, env: Mapping[str, str] | None = None) -> Path:
    """`--config PATH`, else `$POLLERD_CONFIG`, else `./pollerd.toml`, else the system file.
    A path the user named must exist: falling through to another file would be a surprise."""
    env = os.environ if env is None else env
    named = [("--config", explicit)] if explicit is not None else []
    if env.get("POLLERD_CONFIG"):
        named.append(("$POLLERD_CONFIG", Path(env["POLLERD_CONFIG"])))
    for source, path in named[:1]:
        if not path.is_file():
            what = "is not a file" if path.exists() else "does not exist"
            raise ConfigError(str(path), f"{what} (named by {source})",
                              f"check the path, or copy config.example.toml there")
        return path
    for path in (LOCAL_CONFIG, SYSTEM_CONFIG):
        if path.is_file():
            return path
    raise ConfigError(
        "",
        "no config file found (searched --config, $POLLERD_CONFIG, ./pollerd.toml, "
        f"{SYSTEM_CONFIG})",
        f"copy config.example.toml to {SYSTEM_CONFIG} or ./pollerd.toml and edit it",
    )


def load(path: Path | None = None, *, env: Mapping[str, str] | None = None) -> Settings:
    """Find, parse and validate the config; any problem raises `ConfigError` (exit 78).

    `env` only steers discovery (`$POLLERD_CONFIG`); secrets resolve from the real environment.
    """
    path = find_config(path, env=env).absolute()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read: {exc.strerror}",
                          "make it readable by the user pollerd runs as") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), f"not UTF-8 (byte {exc.start})",
                          "save the file as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        text = str(exc)
        where = re.search(r"\(at line (\d+), column (\d+)\)", text)
        problem = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)$", "", text)
        at = f"line {where.group(1)}, column {where.group(2)}: " if where else ""
        raise ConfigError(str(path), f"invalid TOML at {at}{problem}",
                          'fix the syntax; strings need quotes, e.g. interval = "10s"') from None
    return _build(data, path)


def minimal(
    database: str,
    stores: list[dict[str, Any]],
    channels: list[dict[str, Any]],
    routes: list[dict[str, Any]],
) -> Settings:
    """Settings built in code (`pollerd demo`), validated exactly like a file."""
    data = {"pollerd": {"database": database}, "stores": stores, "channels": channels,
            "routes": routes}
    return _build(data, None)


def _build(data: dict[str, Any], path: Path | None) -> Settings:
    problems: list[ConfigError] = []
    for key in set(data) - set(USER_KEYS):
        if key in Settings.model_fields:  # internal fields a file must not set
            problems.append(ConfigError(key, f"unknown key {key!r}", f"known: "
                                        f"{', '.join(USER_KEYS)}; {EXAMPLE}"))
            del data[key]
    settings: Settings | None = None
    try:
        settings = Settings.model_validate({**data, "path": path})
    except ValidationError as exc:
        problems.extend(_problems_from(exc, Settings, ""))
    options, more = _cross_checks(data)
    problems.extend(more)
    if problems or settings is None:
        raise ConfigErrors(problems) from None
    database = _absolute_database(settings.pollerd.database, settings.base_dir)
    return settings.model_copy(update={
        "pollerd": settings.pollerd.model_copy(update={"database": database}),
        "channel_options": options,
    })
