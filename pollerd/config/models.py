"""The config file's tables as models (DESIGN §7). Stores are their platform's business: each
platform plugin brings a `StoreConfig` subclass with its own keys (`pollerd.sources`), and
`Settings.stores` holds whichever one a table's `platform` named. A channel's own keys are
validated by its class's `Options` the same way (`Settings.channel_options`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal
from urllib.parse import urlunsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializeAsAny,
    model_validator,
)

from pollerd.config.alerts import AlertTable
from pollerd.config.reports import ReportConfig
from pollerd.config.types import (
    DAY,
    YEAR,
    Duration,
    EventGlob,
    Interval,
    Noticed,
    QuietHours,
    StoreName,
    StrictModel,
    Timeout,
    TimeZone,
    at_most,
    http_address,
    invalid,
)
from pollerd.secrets import Secret

__all__ = [
    "USER_KEYS",
    "ChannelConfig",
    "DeliveryConfig",
    "GlobalConfig",
    "RouteConfig",
    "Settings",
    "StoreConfig",
    "sqlite_file",
]

USER_KEYS = (
    "pollerd",
    "stores",
    "channels",
    "routes",
    "alerts",
    "reports",
)  # the Settings fields a file may set


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
    parts = http_address(value, "https://pollerd.example.com")
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


_STALE_ALERT = "an alert delivered a year late is no alert"
_WAIT = (
    "waiting longer between two attempts only delays the alert; dead_after decides when to give up"
)
_BACKOFF = "a store that works again would wait that long before it is polled"


class DeliveryConfig(StrictModel):
    """The outbox's retry policy. `dead_after` (72 h, the README's horizon) decides when a
    delivery gives up; `max_attempts` 0 (the default) adds no cap of its own: 25 attempts at a
    30-minute back-off gave up after about 4 hours, not 72."""

    max_attempts: int = Field(0, ge=0)
    dead_after: Annotated[Duration, at_most(YEAR, _STALE_ALERT)] = timedelta(hours=72)
    backoff_base: Annotated[Duration, at_most(timedelta(hours=1), _WAIT)] = timedelta(seconds=5)
    backoff_max: Annotated[Duration, at_most(DAY, _WAIT)] = timedelta(minutes=30)
    concurrency: int = Field(8, ge=1, le=256)
    send_timeout: Timeout = timedelta(seconds=30)
    # A channel whose every attempt failed for this long is "failing": alert.channel_failing on
    # the other channels, `status` and /healthz unhealthy (a broken one is held at once).
    failing_after: Noticed = timedelta(minutes=15)


class GlobalConfig(StrictModel):
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
    delivery: DeliveryConfig = DeliveryConfig.model_validate({})
    # A store failing this long without a successful pass sends alert.store_failing (once per
    # episode; alert.store_recovered when it heals). "0s": at the first failed pass.
    store_failing_after: Noticed = timedelta(minutes=10)
    # Errors only a person can fix (401/403, a WAF page, a wrong URL) are retried less and
    # less often, up to this; retryable ones (5xx, timeouts) keep the store's interval.
    store_backoff_max: Annotated[Interval, at_most(DAY, _BACKOFF)] = timedelta(minutes=15)

    @model_validator(mode="after")
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


class StoreConfig(StrictModel):
    """The keys every store has. A platform's model (a subclass, named by its plugin) adds its
    own and declares the common ones below with the defaults that suit it, each in the place
    the user reads it in `config.example.toml` (field order is the order of "known: ..." hints).
    `pollerd.sources.PLATFORMS` says which model a table's `platform` picks."""

    name: StoreName
    platform: str

    if TYPE_CHECKING:  # declared by each platform's model, read by the sync and the daemon
        interval: timedelta
        overlap: timedelta
        start_from: Literal["now"] | datetime
        timeout: timedelta
        user_agent: str
        sweep_hourly: timedelta
        sweep_daily: timedelta
        enabled: bool

    COMMON: ClassVar[tuple[str, ...]] = (
        "interval",
        "overlap",
        "start_from",
        "timeout",
        "user_agent",
        "sweep_hourly",
        "sweep_daily",
        "enabled",
    )

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """A platform model that forgets a common key fails when its plugin is imported, not
        at its first pass."""
        super().__pydantic_init_subclass__(**kwargs)
        missing = [key for key in cls.COMMON if key not in cls.model_fields]
        if missing:
            raise TypeError(f"{cls.__name__} lacks the store keys {', '.join(missing)}")


def _platform_model(value: Any) -> Any:
    """A store table given to `Settings` directly (not through `load`, which checks each table
    with its platform's model and reports problems one by one) becomes that model here."""
    if isinstance(value, dict) and isinstance(value.get("platform"), str):
        from pollerd.sources import PLATFORMS  # late: platform models import this module

        return PLATFORMS.load(value["platform"]).config.model_validate(value)
    return value


PlatformStore = SerializeAsAny[Annotated[StoreConfig, BeforeValidator(_platform_model)]]
"""A store table as its platform's model (SerializeAsAny: a dump shows the platform's keys,
not only the base model's)."""


class ChannelConfig(StrictModel):
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


# RUF012 below: pydantic copies field defaults; ruff cannot tell StrictModel is a pydantic model
# from this file.
class RouteConfig(StrictModel):
    events: list[EventGlob] = ["order.*"]  # noqa: RUF012
    stores: list[str] = ["*"]  # noqa: RUF012
    channels: list[str]
    test_orders: Literal["mark", "skip"] = "mark"
    # "22:00-08:00" local time, start inclusive, end exclusive (pollerd.routing): what this
    # route sends then waits for the end and goes out as one digest, unless it is urgent.
    quiet_hours: QuietHours | None = None
    urgent: list[EventGlob] = []  # noqa: RUF012  (types never held, beyond pollerd.urgency's)
    # The zone of quiet_hours; `Settings` fills in [pollerd] timezone when it is not given.
    timezone: TimeZone | None = None

    @model_validator(mode="after")
    def _quiet_keys(self) -> RouteConfig:
        """`urgent` and `timezone` only mean something with quiet hours: without them a typo'd
        `quiet_hours` key would leave a route the user believes quiet sending all night."""
        if self.quiet_hours is None:
            for key in ("urgent", "timezone"):
                if getattr(self, key):
                    fix = f'add quiet_hours = "22:00-08:00", or remove {key}'
                    raise invalid("has no effect without quiet_hours", fix, key=key)
        return self


class Settings(StrictModel):
    pollerd: GlobalConfig = GlobalConfig()
    stores: list[PlatformStore] = []  # noqa: RUF012
    channels: list[ChannelConfig] = []  # noqa: RUF012
    routes: list[RouteConfig] = []  # noqa: RUF012
    alerts: list[SerializeAsAny[AlertTable]] = []  # noqa: RUF012  (config/alerts.py)
    reports: list[ReportConfig] = []  # noqa: RUF012  (config/reports.py)
    path: Path | None = None  # the file this came from; relative paths resolve against it
    # channel name → validated Options instance (or dict)
    channel_options: dict[str, Any] = {}  # noqa: RUF012

    @model_validator(mode="after")
    def _route_zones(self) -> Settings:
        """A quiet route without its own `timezone` keeps `[pollerd] timezone`, written into
        the route so routing needs nothing but the route (the list is ours: a frozen model's
        fields cannot be reassigned, its list's items can)."""
        for i, route in enumerate(self.routes):
            if route.quiet_hours is not None and route.timezone is None:
                self.routes[i] = route.model_copy(update={"timezone": self.pollerd.timezone})
        return self

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
    def stores_by_name(self) -> dict[str, StoreConfig]:
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
