"""Config loading: every common mistake gets a message that names the key and the fix, and no
message ever carries a secret value."""

from __future__ import annotations

import importlib
import re
import sys
import tomllib
import types
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ConfigDict

import pollerd.channels
import pollerd.config
import pollerd.config.loader
from pollerd.channels.base import Channel
from pollerd.config import (
    ChannelConfig,
    ConfigErrors,
    Duration,
    GlobalConfig,
    RouteConfig,
    Settings,
    find_config,
    load,
    minimal,
    parse_duration,
)
from pollerd.config.reports import ReportConfig
from pollerd.crypto import generate
from pollerd.errors import EXIT_CONFIG, ConfigError
from pollerd.secrets import Secret
from pollerd.sources.shopify import ShopifyStore
from pollerd.sources.woocommerce import WooCommerceStore

ROOT = Path(__file__).resolve().parents[2]
INLINE_KEY = "ck_inline_TOPSECRET_0123456789"
ENV_SECRET = "cs_env_TOPSECRET_abcdefghij"
HOOK_SECRET = "whsec_env_TOPSECRET_klmnopq"


class FakeChannel(Channel):
    """Stands in for the webhook channel: strict `Options` with a secret and a duration."""

    kind = "fake"

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
        url: str
        secret: Secret
        timeout: Duration = timedelta(seconds=10)


class LaxChannel(Channel):
    """`Options` that would ignore unknown keys: the loader must still reject typos."""

    kind = "lax"

    class Options(BaseModel):
        room: str = "ops"


class PlainChannel(Channel):
    """No `Options`: keys pass through as a dict, `secret_fields` resolved."""

    kind = "plain"
    secret_fields: ClassVar[tuple[str, ...]] = ("token",)


FAKES = {"fake": FakeChannel, "lax": LaxChannel, "plain": PlainChannel}


def _register(monkeypatch: pytest.MonkeyPatch, classes: dict[str, type[Channel]]) -> None:
    module = types.ModuleType("pollerd_test_fake_channels")
    for kind, cls in classes.items():
        setattr(module, f"{kind}_channel", cls)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    known = {**pollerd.channels.BUILTIN, **{k: f"{module.__name__}:{k}_channel" for k in classes}}
    monkeypatch.setattr(pollerd.channels, "known_types", lambda: known)


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("POLLERD_CONFIG", "WC_MISSING", "HOOK_MISSING"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WC_SECRET", ENV_SECRET)
    monkeypatch.setenv("HOOK_SECRET", HOOK_SECRET)
    _register(monkeypatch, FAKES)
    yield


STORE = f"""
[[stores]]
name = "acme-us"
platform = "woocommerce"
url = "https://shop.example.com/"
consumer_key = "{INLINE_KEY}"
consumer_secret = "env:WC_SECRET"
"""
CHANNELS = """
[[channels]]
name = "console"
type = "plain"

[[channels]]
name = "hook"
type = "fake"
url = "https://hooks.example.com/x"
secret = "env:HOOK_SECRET"
"""
ROUTE = """
[[routes]]
events = ["order.paid"]
channels = ["hook"]
"""
GOOD = STORE + CHANNELS + ROUTE


def write(tmp_path: Path, text: str, name: str = "pollerd.toml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def error_text(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, text))
    assert info.value.exit_code == EXIT_CONFIG
    message = str(info.value)
    for secret in (INLINE_KEY, ENV_SECRET, HOOK_SECRET, "ck_LEAK", "hunter2"):
        assert secret not in message
    assert all(line.startswith("config: ") for line in message.splitlines())
    return message


BAD = [
    ("unknown key", STORE + 'intervall = "10s"\n',
     ["stores[0].intervall: unknown key 'intervall' (did you mean 'interval'? see "
      "config.example.toml)"]),
    ("unknown key, nested", "[pollerd.delivery]\nmax_attempt = 3\n" + STORE,
     ["pollerd.delivery.max_attempt: unknown key", "did you mean 'max_attempts'?"]),
    ("unknown table", "[polerd]\n" + STORE, ["polerd: unknown key 'polerd'",
                                              "did you mean 'pollerd'?"]),
    ("internal field", 'path = "/tmp/x"\n' + STORE, ["path: unknown key 'path'"]),
    ("missing key", STORE.replace('url = "https://shop.example.com/"\n', ""),
     ["stores[0].url: missing (add it; see config.example.toml)"]),
    ("bad duration", STORE + 'interval = "5 minutes"\n',
     ["stores[0].interval: '5 minutes' is not a duration (write a string such as"]),
    ("bare number duration", STORE + "interval = 5\n", ["stores[0].interval: 5 is not a duration"]),
    ("interval too short", STORE + 'interval = "500ms"\n',
     ["stores[0].interval: must be at least 1s"]),
    ("overlap too short", STORE + 'overlap = "1s"\n',
     ["stores[0].overlap: must be at least 2s", "one-second precision"]),
    ("store name", STORE.replace('"acme-us"', '"Acme US"'),
     ["stores[0].name: must match [a-z0-9_-]"]),
    ("platform", STORE.replace('"woocommerce"', '"magento"'),
     ['stores[0].platform: must be "shopify" or "woocommerce"']),
    ("no platform", STORE.replace('platform = "woocommerce"\n', ""),
     ["stores[0].platform: missing", '"shopify" or "woocommerce"']),
    ("missing env secret", STORE.replace("env:WC_SECRET", "env:WC_MISSING"),
     ["stores[0].consumer_secret: env var WC_MISSING is not set (export it, or use file:/path "
      "or credential:NAME)"]),
    ("missing secret file", STORE.replace("env:WC_SECRET", "file:/nonexistent/wc"),
     ["stores[0].consumer_secret: cannot read secret file /nonexistent/wc"]),
    ("int type", "[pollerd.delivery]\nmax_attempts = \"many\"\n" + STORE,
     ["pollerd.delivery.max_attempts: must be an integer"]),
    ("bool type", STORE + 'enabled = "hunter2"\n', ["stores[0].enabled: must be true or false"]),
    ("list type", STORE + 'pay_on_delivery_methods = "cod"\n',
     ["stores[0].pay_on_delivery_methods: must be a list"]),
    ("bound", "[pollerd.delivery]\nconcurrency = 0\n" + STORE,
     ["pollerd.delivery.concurrency: must be at least 1"]),
    ("literal", STORE + 'auth = "digest"\n', ['stores[0].auth: must be "auto", "basic"']),
    ("secret type", STORE.replace('"env:WC_SECRET"', "12345"),
     ["stores[0].consumer_secret: must be a non-empty string"]),
    ("stores not a list", '[stores]\nname = "x"\n', ["stores: must be a list"]),
    ("time zone", '[pollerd]\ntimezone = "Asia/Shangai"\n' + STORE,
     ["pollerd.timezone: 'Asia/Shangai' is not an IANA time zone (did you mean "
      "'Asia/Shanghai'?"]),
    ("channel time zone", STORE + CHANNELS.replace('type = "plain"', 'type = "plain"\n'
                                                   'timezone = "Mars/Olympus"'),
     ["channels[0].timezone: 'Mars/Olympus' is not an IANA time zone"]),
    ("api url", STORE.replace("https://shop.example.com/", "https://shop.example.com/wp-json/"
                              "wc/v3/orders?consumer_key=ck_LEAK"),
     ["stores[0].url: ", "give the site address, not the API URL: https://shop.example.com)"]),
    ("query string", STORE.replace("example.com/", "example.com/?consumer_key=ck_LEAK"),
     ["stores[0].url: must not have a query string"]),
    ("not http", STORE.replace("https://", "ftp://"),
     ["stores[0].url: must be an http:// or https:// address"]),
    ("no scheme", STORE.replace("https://", ""),
     ["stores[0].url: must be an http:// or https:// address"]),
    ("user in url", STORE.replace("https://", "https://ck_LEAK:hunter2@"),
     ["stores[0].url: must not contain a user or password"]),
    ("naive start", STORE + 'start_from = "2026-01-01T00:00:00"\n',
     ['stores[0].start_from: must be "now" or an RFC 3339 time with an offset']),
    ("bad start", STORE + 'start_from = "yesterday"\n', ["stores[0].start_from: must be"]),
    ("naive toml start", STORE + "start_from = 2026-01-01T00:00:00\n",
     ["stores[0].start_from: must be"]),
    ("shopify credentials", '[[stores]]\nname = "s"\nplatform = "shopify"\nshop = "s.myshopify'
     '.com"\n', ["stores[0].access_token: missing (add access_token, or client_id + "
                 "client_secret"]),
    ("duplicate store", STORE + STORE, ["stores[1].name: 'acme-us' is already used by stores[0] "
                                        "(names must be unique)"]),
    ("duplicate channel", STORE + CHANNELS + CHANNELS,
     ["channels[2].name: 'console' is already used by channels[0]",
      "channels[3].name: 'hook' is already used by channels[1]"]),
    ("route channel", GOOD.replace('channels = ["hook"]', 'channels = ["hook", "ops"]'),
     ["routes[0].channels[1]: no channel named 'ops' (defined: console, hook)"]),
    ("route store", GOOD.replace("[[routes]]", "[[routes]]\nstores = [\"acme-eu\"]"),
     ["routes[0].stores[0]: 'acme-eu' matches no store (defined: acme-us)"]),
    ("route event", GOOD.replace('"order.paid"', '"order.payed"'),
     ["routes[0].events[0]: 'order.payed' matches no event (did you mean 'order.paid'? known: "
      "order.created, order.paid"]),
    ("route without channels", STORE + "[[routes]]\nevents = [\"order.paid\"]\n",
     ["routes[0].channels: missing"]),
    ("channel type", STORE + '[[channels]]\nname = "x"\ntype = "pigeon"\n',
     ["channels[0].type: no channel type 'pigeon'; known: apprise, console, dingtalk, discord, "
      "email, fake, feishu, lark, lax, plain, slack, sms, telegram, webhook, wecom"]),
    ("channel name", STORE + '[[channels]]\nname = "Ops Hook"\ntype = "plain"\n',
     ["channels[0].name: must match [a-z0-9_-]"]),
    ("channel option missing", GOOD.replace('url = "https://hooks.example.com/x"\n', ""),
     ["channels[1].url: missing (add it; see config.example.toml)"]),
    ("channel option typo", GOOD.replace("url =", "urll ="),
     ["channels[1].urll: unknown key 'urll' (did you mean 'url'?", "channels[1].url: missing"]),
    ("channel option duration", GOOD + '\n[[channels]]\nname = "h2"\ntype = "fake"\nurl = "u"\n'
     'secret = "hunter2"\ntimeout = "soon"\n', ["channels[2].timeout: 'soon' is not a duration"]),
    ("apprise robot scheme", STORE + '[[channels]]\nname = "x"\ntype = "apprise"\n'
     'url = "wecombot://hunter2"\n',
     ["channels[0].url: wecombot:// is not supported through Apprise: Apprise reports WeCom's "
      'HTTP 200 errcode failures as sent (use the native channel: type = "wecom")']),
    ("channel option secret", GOOD.replace("env:HOOK_SECRET", "env:HOOK_MISSING"),
     ["channels[1].secret: env var HOOK_MISSING is not set"]),
    ("lax options typo", STORE + '[[channels]]\nname = "x"\ntype = "lax"\nrom = "a"\n',
     ["channels[0].rom: unknown key 'rom' (did you mean 'room'?"]),
    ("plain channel secret", STORE + '[[channels]]\nname = "x"\ntype = "plain"\n'
     'token = "env:HOOK_MISSING"\n', ["channels[0].token: env var HOOK_MISSING is not set"]),
    ("database", '[pollerd]\ndatabase = "mysql://root:hunter2@db/x"\n' + STORE,
     ["pollerd.database: must be a sqlite:/// or postgresql+psycopg:// URL"]),
    ("metrics", '[pollerd]\nmetrics_listen = "9464"\n' + STORE,
     ["pollerd.metrics_listen: must be host:port"]),
    ("toml syntax", STORE + "interval = 10s\n", ["invalid TOML at line 8, column",
                                                'strings need quotes, e.g. interval = "10s"']),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_config_names_key_and_fix(tmp_path: Path, text: str, expected: list[str]) -> None:
    message = error_text(tmp_path, text)
    for part in expected:
        assert part in message


def test_every_problem_reported_at_once(tmp_path: Path) -> None:
    text = (
        '[pollerd]\ntimezone = "Nowhere"\n'
        + STORE.replace("env:WC_SECRET", "env:WC_MISSING")
        + 'intervall = "1s"\n'
        + ROUTE.replace('"hook"', '"nope"')
    )
    with pytest.raises(ConfigErrors) as info:
        load(write(tmp_path, text))
    lines = str(info.value).splitlines()
    assert [line.split(":")[1].strip() for line in lines] == [
        "pollerd.timezone",
        "stores[0].consumer_secret",
        "stores[0].intervall",
        "routes[0].channels[0]",
    ]
    assert info.value.field == "pollerd.timezone"
    assert len(info.value.problems) == 4


def test_alert_problems_come_in_table_order(tmp_path: Path) -> None:
    """Problems of several [[alerts]] tables are listed alerts[0], alerts[1], ... whichever
    check found them: a cross-table one (a glob matching no store, a window shorter than the
    poll interval) before a later table's own, each under its own index even when an
    earlier table was left out for its own problem."""
    tables = (
        '[[alerts]]\ntype = "unpaid_timeout"\nstores = ["nope*"]\n'  # cross-table
        '[[alerts]]\ntype = "high_value"\nthreshold = 5000\n'  # its own model
        '[[alerts]]\ntype = "big_orders"\n'  # unknown type
        '[[alerts]]\ntype = "order_burst"\nwindow = "1s"\n'  # cross-table, after two left out
    )
    store = STORE + 'interval = "10s"\n'
    with pytest.raises(ConfigErrors) as info:
        load(write(tmp_path, '[pollerd]\ntimezone = "Nowhere"\n' + store + CHANNELS + tables))
    fields = [p.field for p in info.value.problems]
    assert fields == [
        "pollerd.timezone",
        "alerts[0].stores[0]",
        "alerts[1].threshold",
        "alerts[2].type",
        "alerts[3].window",
    ]
    assert "shorter than the poll interval of store 'acme-us'" in str(info.value)


def test_good_minimal_config(tmp_path: Path) -> None:
    settings = load(write(tmp_path, GOOD))
    store = settings.stores_by_name["acme-us"]
    assert isinstance(store, WooCommerceStore)
    assert store.url == "https://shop.example.com"  # trailing slash stripped
    assert store.consumer_key.get() == INLINE_KEY
    assert store.consumer_secret.get() == ENV_SECRET
    assert store.interval == timedelta(seconds=10)
    assert settings.path == tmp_path / "pollerd.toml"
    assert settings.pollerd.database == f"sqlite:///{tmp_path / 'pollerd.db'}"
    assert settings.state_dir == tmp_path
    assert list(settings.channels_by_name) == ["console", "hook"]
    options = settings.channel_options["hook"]
    assert isinstance(options, FakeChannel.Options)
    assert options.secret.get() == HOOK_SECRET
    assert settings.channel_options["console"] == {}
    assert settings.options_of("hook")["url"] == "https://hooks.example.com/x"
    assert settings.routes == [RouteConfig(events=["order.paid"], channels=["hook"])]
    for secret in (INLINE_KEY, ENV_SECRET, HOOK_SECRET):
        assert secret not in repr(settings)


def test_channel_options_are_not_channel_config(tmp_path: Path) -> None:
    text = GOOD.replace('type = "plain"', 'type = "plain"\ntoken = "env:HOOK_SECRET"\n'
                        'room = "inline-value"')  # fmt: skip
    settings = load(write(tmp_path, text))
    console = settings.channels_by_name["console"]
    assert not hasattr(type(console), "token")
    assert "inline-value" not in repr(console)
    plain = settings.channel_options["console"]
    assert plain["room"] == "inline-value"
    assert isinstance(plain["token"], Secret) and plain["token"].get() == HOOK_SECRET


def test_shopify_store_is_accepted(tmp_path: Path) -> None:
    text = '[[stores]]\nname = "acme-eu"\nplatform = "shopify"\nshop = "acme.myshopify.com"\n'
    settings = load(write(tmp_path, text + 'access_token = "env:WC_SECRET"\nenabled = false\n'))
    assert isinstance(settings.stores[0], ShopifyStore)
    assert settings.stores[0].access_token == Secret(ENV_SECRET)


def test_start_from_accepts_offsets(tmp_path: Path) -> None:
    text = STORE + 'start_from = "2026-01-01T00:00:00+08:00"\n'
    assert load(write(tmp_path, text)).stores[0].start_from.utcoffset() == timedelta(hours=8)
    text = STORE + "start_from = 2026-01-01T00:00:00Z\n"
    assert load(write(tmp_path, text)).stores[0].start_from.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("database", "expected"),
    [
        ("sqlite:///data/pollerd.db", "sqlite:///{dir}/data/pollerd.db"),
        ("sqlite:///pollerd.db?timeout=5", "sqlite:///{dir}/pollerd.db?timeout=5"),
        ("sqlite:////var/lib/pollerd/pollerd.db", "sqlite:////var/lib/pollerd/pollerd.db"),
        ("postgresql+psycopg://pollerd@db/pollerd", "postgresql+psycopg://pollerd@db/pollerd"),
    ],
)
def test_database_resolution(tmp_path: Path, database: str, expected: str) -> None:
    path = write(tmp_path / "etc", f'[pollerd]\ndatabase = "{database}"\n' + STORE)
    settings = load(path)
    assert settings.pollerd.database == expected.format(dir=path.parent)
    if database.startswith("sqlite:///data"):
        assert settings.pollerd.database.startswith("sqlite:////")
        assert settings.state_dir == path.parent / "data"
    elif database.startswith("sqlite:////"):
        assert settings.state_dir == Path("/var/lib/pollerd")
    elif database.startswith("postgresql"):
        assert settings.state_dir == path.parent


def test_discovery_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    system = tmp_path / "etc" / "pollerd.toml"
    monkeypatch.setattr(pollerd.config.loader, "SYSTEM_CONFIG", system)
    with pytest.raises(ConfigError) as info:
        find_config(None)
    message = str(info.value)
    assert "$POLLERD_CONFIG" in message and "./pollerd.toml" in message
    assert str(system) in message and "config.example.toml" in message

    write(tmp_path / "etc", STORE)
    assert find_config(None) == system
    local = write(tmp_path, STORE)
    assert find_config(None) == Path("pollerd.toml")
    assert load().path == local

    chosen = write(tmp_path / "env", STORE.replace("acme-us", "from-env"))
    monkeypatch.setenv("POLLERD_CONFIG", str(chosen))
    assert find_config(None) == chosen
    assert load().stores[0].name == "from-env"
    explicit = write(tmp_path / "cli", STORE.replace("acme-us", "from-cli"))
    assert load(explicit).stores[0].name == "from-cli"
    assert load(env={"POLLERD_CONFIG": str(local)}).stores[0].name == "acme-us"

    monkeypatch.setenv("POLLERD_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match=r"missing\.toml: does not exist \(named by "):
        find_config(None)


def test_unreadable_and_syntax_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a file"):
        load(tmp_path)
    message = error_text(tmp_path, '[pollerd]\ntimezone = "UTC\n')
    assert str(tmp_path / "pollerd.toml") in message and "line 2, column" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500ms", timedelta(milliseconds=500)),
        ("2s", timedelta(seconds=2)),
        ("5m", timedelta(minutes=5)),
        ("72h", timedelta(hours=72)),
        ("1d", timedelta(days=1)),
        ("1.5h", timedelta(minutes=90)),
        (" 10s ", timedelta(seconds=10)),
        (timedelta(seconds=3), timedelta(seconds=3)),
    ],
)
def test_parse_duration(text: Any, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["5 minutes", 5, "", "5", "-5s", "5w", None])
def test_parse_duration_rejects(text: Any) -> None:
    with pytest.raises(ValueError, match=r"is not a duration \(write a string such as \"2s\""):
        parse_duration(text)


def test_minimal_runs_the_same_validation(tmp_path: Path) -> None:
    store = {"name": "demo", "platform": "woocommerce", "url": "http://127.0.0.1:8080",
             "consumer_key": "ck_demo", "consumer_secret": "cs_demo", "interval": "1s"}  # fmt: skip
    channels = [{"name": "console", "type": "plain"}]
    routes = [{"events": ["order.*"], "channels": ["console"]}]
    database = f"sqlite:///{tmp_path / 'pollerd.db'}"
    settings = minimal(database, [store], channels, routes, pollerd={"locale": "zh-CN"})
    assert settings.pollerd.locale == "zh-CN"
    assert settings.state_dir == tmp_path
    assert settings.channel_options == {"console": {}}
    with pytest.raises(ConfigError) as info:
        minimal(database, [{**store, "name": "Demo", "intervall": "1s"}], channels,
                [{"channels": ["nope"]}])  # fmt: skip
    assert str(info.value).splitlines() == [
        "config: stores[0].name: must match [a-z0-9_-] (1 to 64 lowercase letters, digits, _ or -)",
        "config: stores[0].intervall: unknown key 'intervall' (did you mean 'interval'? see "
        "config.example.toml)",
        "config: routes[0].channels[0]: no channel named 'nope' (defined: console)",
    ]


# the shipped example ----------------------------------------------------------------------


def _example_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    for name in set(re.findall(r'"env:([A-Z0-9_]+)"', text)):
        monkeypatch.setenv(name, f"value-of-{name.lower()}")
    monkeypatch.setenv("POLLERD_PII_KEY", generate(1))  # pii_key must be a usable key ring
    creds = tmp_path / "credentials"
    creds.mkdir()
    for name in set(re.findall(r'"credential:([A-Za-z0-9_]+)"', text)):
        (creds / name).write_text(f"value-of-{name}\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    real: dict[str, type[Channel]] = {}
    for kind in ("console", "webhook", "email"):
        try:  # the built-in channels may not exist yet in a partial checkout
            real[kind] = getattr(importlib.import_module(f"pollerd.channels.{kind}"),
                                 pollerd.channels.BUILTIN[kind].partition(":")[2])  # fmt: skip
        except ImportError:
            real[kind] = type(f"Missing{kind.title()}", (Channel,), {"kind": kind})
    _register(monkeypatch, {**FAKES, **real})


def test_example_config_validates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _example_env(tmp_path, monkeypatch)
    settings = load(ROOT / "config.example.toml")
    assert settings.pollerd.database == f"sqlite:///{ROOT / 'pollerd.db'}"
    assert {s.platform for s in settings.stores} == {"woocommerce", "shopify"}
    assert {c.type for c in settings.channels} == {"console", "webhook", "email"}
    assert set(settings.channel_options) == {c.name for c in settings.channels}


def _documented(model: type[BaseModel], text: str) -> set[str]:
    keys = {field.alias or name for name, field in model.model_fields.items()}
    return {key for key in keys if not re.search(rf"^#?\s*{re.escape(key)}\s*=", text, re.M)}


def test_example_documents_every_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    tomllib.loads(text)
    assert _documented(GlobalConfig, text) - {"delivery"} == set()
    assert "[pollerd.delivery]" in text
    for model in (pollerd.config.DeliveryConfig, WooCommerceStore, ShopifyStore, ChannelConfig,
                  RouteConfig):  # fmt: skip
        assert _documented(model, text) == set(), model.__name__
    assert _documented(Settings, text) <= {"pollerd", "stores", "channels", "routes", "alerts",
                                           "reports", "path", "channel_options"}  # fmt: skip
    assert _documented(ReportConfig, text) == set()  # each [[reports]] key, commented
    for kind in ("console", "webhook", "email"):
        try:
            cls = pollerd.channels.channel_class(kind)
        except ImportError:
            continue
        options = getattr(cls, "Options", None)
        if isinstance(options, type) and issubclass(options, BaseModel):
            assert _documented(options, text) == set(), kind


def test_example_chat_channels_validate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The commented chat-channel blocks of config.example.toml are real configs: uncommented,
    with plausible secrets, each validates against its channel's own options."""
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    start = text.index("# [[channels]]")
    end = text.index("# ----", start)
    blocks = "\n".join(
        line[2:] if (line.startswith("# ") and "=" in line) or line.startswith("# [[") else ""
        for line in text[start:end].splitlines()
    )
    env = {
        "WECOM_KEY": "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa",
        "DINGTALK_TOKEN": "abcdef0123456789",
        "DINGTALK_SECRET": "SECabcdef0123456789",
        "FEISHU_HOOK": "2b1d4d5e-0000-4f5e-9a3c-123456789abc",
        "FEISHU_SECRET": "feishu-secret",
        "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T000/B000/XXXX",
        "TELEGRAM_BOT_TOKEN": "123456:ABC-DEF",
        "DISCORD_WEBHOOK_URL": "https://discord.com/api/webhooks/111/token",
        "TWILIO_AUTH_TOKEN": "twilio-token",
        "APPRISE_URL": "json://127.0.0.1:9/hook",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = tmp_path / "chat.toml"
    config.write_text(blocks, encoding="utf-8")
    settings = load(config)
    kinds = {c.type for c in settings.channels}
    assert kinds == {
        *("wecom", "dingtalk", "feishu", "slack", "telegram", "discord", "sms", "apprise")
    }
    assert set(settings.channel_options) == {c.name for c in settings.channels}


def test_every_duration_is_bounded_at_load(tmp_path: Path) -> None:
    """Issue 12 item 5: `interval = "100000000d"` passed `check` and crashed `run` with an
    OverflowError; `"99999999999d"` crashed the loader itself. Both are config errors now,
    each naming its key and the bound, and so is a channel's timeout beyond reason."""
    text = GOOD.replace('consumer_secret = "env:WC_SECRET"\n',
                        'consumer_secret = "env:WC_SECRET"\ninterval = "100000000d"\n'
                        'overlap = "2d"\nsweep_daily = "2000d"\n')  # fmt: skip
    text = text.replace('secret = "env:HOOK_SECRET"\n', 'secret = "env:HOOK_SECRET"\n'
                        'timeout = "99999999999d"\n')  # fmt: skip
    text = '[pollerd]\nretention = "99999999999d"\n[pollerd.delivery]\nbackoff_max = "30d"\n' + text
    lines = error_text(tmp_path, text).splitlines()
    assert lines == [
        "config: pollerd.retention: must be at most 3650d (10 years is the longest duration "
        "pollerd accepts)",
        "config: pollerd.delivery.backoff_max: must be at most 1d (waiting longer between "
        "two attempts only delays the alert; dead_after decides when to give up)",
        "config: stores[0].interval: must be at most 3650d (10 years is the longest duration "
        "pollerd accepts)",
        "config: stores[0].overlap: must be at most 1d (each pass re-reads every order changed "
        "in the overlap)",
        "config: stores[0].sweep_daily: must be at most 365d (a sweep reads every order "
        "changed in its window: a longer one reads the whole history each time)",
        "config: channels[1].timeout: must be at most 3650d (10 years is the longest duration "
        "pollerd accepts)",
    ]


@pytest.mark.parametrize("text", ["3651d", "99999999999d", "9" * 400 + "ms"])
def test_parse_duration_refuses_what_would_overflow(text: str) -> None:
    with pytest.raises(ValueError, match=r"must be at most 3650d"):
        parse_duration(text)
