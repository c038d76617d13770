"""TOML config → typed, validated settings (DESIGN §7).

Unknown keys are errors: a typo must not silently disable a channel. Every problem becomes a
`ConfigError` line naming the key (`stores[0].consumer_secret`), the problem and the fix, and all
problems of a file are reported at once (`ConfigErrors`).

`load()` and `minimal()` are the only ways in; both run `_build`, so `pollerd demo` gets exactly
the checks a hand-written file gets. The models check single values; each store table is checked
by the model of the platform it names (`_stores`); `_cross_checks` checks what spans tables
(unique names, routes that name channels, each channel's own `Options`).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pollerd.config.alerts import alert_problems, alert_tables
from pollerd.config.explain import (
    ConfigErrors,
    in_table_order,
    is_model,
    problems_from,
    unknown_key,
    user_keys,
)
from pollerd.config.models import USER_KEYS, ChannelConfig, Settings, sqlite_file
from pollerd.config.reports import check_reports, report_problems
from pollerd.config.types import EXAMPLE
from pollerd.errors import ConfigError
from pollerd.secrets import register_all, warn_inline

__all__ = ["LOCAL_CONFIG", "SYSTEM_CONFIG", "find_config", "load", "minimal"]

SYSTEM_CONFIG = Path("/etc/pollerd/pollerd.toml")
LOCAL_CONFIG = Path("pollerd.toml")


def _absolute_database(url: str, base: Path) -> str:
    """`sqlite:///rel.db` is relative to the config file, not to wherever systemd started us."""
    file = sqlite_file(url)
    if file is None or file.is_absolute():
        return url
    scheme, _, rest = url.partition("://")
    query = rest.partition("?")[2]
    return f"{scheme}:///{(base / file).absolute()}" + (f"?{query}" if query else "")


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
        problems.append(ConfigError(key, *unknown_key(key, list(USER_KEYS))))
    data = {key: value for key, value in data.items() if key not in internal}
    settings: Settings | None = None
    stores, store_problems = _stores(data.get("stores"))
    checked = {**data, "path": path} if stores is None else {**data, "path": path, "stores": stores}
    tables, alert_found = alert_tables(data.get("alerts"))
    store_problems += alert_found
    if tables is not None:
        alerts = [model for _, model in tables]
        checked["alerts"] = alerts
        intervals = {s.name: s.interval for s in stores or []}
        store_problems += alert_problems(alerts, intervals, [i for i, _ in tables])
    reports, report_tables = check_reports(data.get("reports"))
    store_problems += report_tables
    if reports is not None:
        checked["reports"] = [report for _, report in reports]
        names = {k: [str(t.get("name")) for _, t in _items(data.get(k), dict)]
                 for k in ("channels", "stores")}  # fmt: skip
        store_problems += report_problems(reports, names["channels"], names["stores"])
    try:
        settings = Settings.model_validate(checked)
    except ValidationError as exc:
        problems.extend(problems_from(exc, Settings, ()))
    # in the order pydantic would have reported them: [pollerd] first, then the stores
    later = [n for n, p in enumerate(problems) if re.split(r"[.\[]", p.field)[0] in USER_KEYS[1:]]
    at = later[0] if later else len(problems)
    problems[at:at] = store_problems
    options, more = _cross_checks(data)
    problems.extend(more)
    problems = in_table_order(in_table_order(problems, "alerts"), "reports")
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


def _stores(value: Any) -> tuple[list[Any] | None, list[ConfigError]]:
    """Each store table validated by the model of the platform it names. The list keeps the
    models, and leaves out entries with problems (reported here, under their own index); None
    when `stores` is not a list (then `Settings` says so)."""
    if not isinstance(value, list):
        return None, []
    from pollerd.sources import PLATFORMS  # late: platform models import config.types

    problems: list[ConfigError] = []
    stores: list[Any] = []
    for i, table in enumerate(value):
        if not isinstance(table, dict):
            problems.append(ConfigError(f"stores[{i}]", "must be a table", EXAMPLE))
            continue
        kind, known = table.get("platform"), sorted(PLATFORMS.names())
        choice = " or ".join(f'"{name}"' for name in known)
        if kind is None:
            fix = f"add platform = {choice}; {EXAMPLE}"
            problems.append(ConfigError(f"stores[{i}].platform", "missing", fix))
            continue
        if not isinstance(kind, str) or kind not in known:
            problems.append(ConfigError(f"stores[{i}].platform", f"must be {choice}", ""))
            continue
        try:
            model = PLATFORMS.load(kind).config
        except ImportError as exc:
            problem = f"platform {kind!r} cannot be loaded ({type(exc).__name__}: {exc})"
            fix = "reinstall pollerd, or the package that provides it"
            problems.append(ConfigError(f"stores[{i}].platform", problem, fix))
            continue
        try:
            stores.append(model.model_validate(table))
        except ValidationError as exc:
            problems.extend(problems_from(exc, model, ("stores", i)))
    return stores, problems


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
    options: Any = getattr(cls, "Options", None)
    if not is_model(options):
        for key in set(extras) & set(cls.secret_fields):
            try:
                extras[key] = resolve(extras[key]) if isinstance(extras[key], str) else extras[key]
            except LookupError as exc:
                problems.append(ConfigError(f"{at}.{key}", str(exc)))
        return extras if len(problems) == count else None
    if options.model_config.get("extra") not in ("forbid", "allow"):  # typos must not pass
        known = [*user_keys(ChannelConfig), *user_keys(options)]
        for key in [key for key in extras if key not in known]:
            problems.append(ConfigError(f"{at}.{key}", *unknown_key(key, known)))
            del extras[key]
    try:
        validated = options.model_validate(extras)
    except ValidationError as exc:
        problems.extend(problems_from(exc, options, ("channels", i)))
        return None
    return validated if len(problems) == count else None
