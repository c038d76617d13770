"""Property: any value for a known config key loads as a correct setting or fails as a
`ConfigError` naming that key (exit 78), never another exception (issue 12, item 12).

Inputs: a valid config (a WooCommerce and a Shopify store, a console and a webhook channel, a
route) written as TOML text, with 1-3 known keys set to random TOML values of every type.
"""

from __future__ import annotations

import json
import math
import tempfile
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pollerd.config import DeliveryConfig, GlobalConfig, Settings, load
from pollerd.errors import ConfigError
from pollerd.sources.shopify import ShopifyStore
from pollerd.sources.woocommerce import WooCommerceStore

pytestmark = pytest.mark.fault  # `-m fault` with POLLERD_FAULT_SCALE=nightly: 20x

SECRET = "s" * 32
SPAN = timedelta(days=3660)
"""The cursor arithmetic a start point meets (overlap, baseline horizon), ten years at most."""
BASE: dict[str, Any] = {
    "pollerd": {"database": "sqlite:///pollerd.db", "delivery": {}},
    "stores": [
        {
            "name": "woo",
            "platform": "woocommerce",
            "url": "https://shop.example.com",
            "consumer_key": "ck_" + "a" * 40,
            "consumer_secret": "cs_" + "b" * 40,
        },
        {
            "name": "shop",
            "platform": "shopify",
            "shop": "acme.myshopify.com",
            "access_token": SECRET,
        },
    ],
    "channels": [
        {"name": "console", "type": "console"},
        {"name": "hook", "type": "webhook", "url": "https://hooks.example.com/x", "secret": SECRET},
    ],
    "routes": [{"channels": ["console", "hook"]}],
}
ZONES = [None, UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12))]
CHANNEL_KEYS = ["name", "type", "locale", "timezone", "stream", "format"]
WEBHOOK_KEYS = ["url", "secret", "timeout", "headers"]
KEYS: list[tuple[tuple[Any, ...], str]] = [
    *((("pollerd",), k) for k in GlobalConfig.model_fields if k != "delivery"),
    *((("pollerd", "delivery"), k) for k in DeliveryConfig.model_fields),
    *((("stores", 0), k) for k in WooCommerceStore.model_fields),
    *((("stores", 1), k) for k in ShopifyStore.model_fields),
    *((("channels", 0), k) for k in CHANNEL_KEYS),
    *((("channels", 1), k) for k in WEBHOOK_KEYS),
    *((("routes", 0), k) for k in ("events", "stores", "channels", "test_orders")),
]

_SCALARS = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),  # TOML's integer range
    st.floats(),  # inf and nan are TOML too
    st.text(max_size=40),  # no surrogates by default: TOML text cannot hold them
    st.sampled_from(
        [
            "now",
            "",
            " ",
            "0s",
            "1s",
            "500ms",
            "-5m",
            "1.5h",
            "5 m",
            "72h",
            "1d",
            "10",
            "1e3s",
            "UTC",
            "Asia/Shanghai",
            "asia/shanghai",
            "en",
            "zh-CN",
            "DEBUG",
            "debug",
            "sqlite:///x.db",
            "postgresql+psycopg://u@h/db",
            "env:POLLERD_NOPE",
            "file:/nonexistent",
            "credential:nope",
            "http://",
            "https://",
            "https://[::1]:99999",
            "http://a:0",
            "https://shop.example.com/wp-json/wc/v3",
            "127.0.0.1:0",
            ":9464",
            "host:65536",
            "order.*",
            "order.paid",
            "alert.*",
            "nothing.*",
            "*",
            "1:" + "A" * 43 + "=",
            "2026-01-01T00:00:00Z",
            "2999-01-01T00:00:00Z",
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-12:00",
            "2026-01-01",
            "١٢s",
            "５m",
            "\x00",
            "é" * 70,
        ]
    ),
    st.datetimes(timezones=st.sampled_from(ZONES)),
    st.dates(),
    st.times(),
    st.integers(0, 10**6).map(lambda n: f"{n}{['ms', 's', 'm', 'h', 'd'][n % 5]}"),
)
VALUES = st.one_of(
    _SCALARS,
    st.lists(_SCALARS, max_size=3),
    st.dictionaries(st.sampled_from(["a", "url", "name", "X-Token"]), _SCALARS, max_size=2),
)


def _with(where: tuple[Any, ...], key: str, value: Any) -> dict[str, Any]:
    """BASE with one key set: the bugs the property found, tried on every run."""
    data = json.loads(json.dumps(BASE))
    node = data
    for part in where:
        node = node[part]
    node[key] = value
    return data


def toml(value: Any) -> str:
    """A TOML value (inline form) for a Python one."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("-inf" if value < 0 else "inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\\/", "/").replace("\x7f", "\\u007f")
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def document(data: dict[str, Any]) -> str:
    """The config as TOML text: [pollerd] and [pollerd.delivery] tables, [[arrays]] of the rest."""
    lines: list[str] = []

    def table(header: str, body: dict[str, Any]) -> None:
        lines.append(header)
        lines.extend(
            f"{k} = {toml(v)}"
            for k, v in body.items()
            if not isinstance(v, dict) or k != "delivery"
        )

    table("[pollerd]", {k: v for k, v in data["pollerd"].items() if k != "delivery"})
    table("[pollerd.delivery]", data["pollerd"]["delivery"])
    for section in ("stores", "channels", "routes"):
        for entry in data[section]:
            table(f"[[{section}]]", entry)
    return "\n".join(lines) + "\n"


@st.composite
def configs(draw: st.DrawFn) -> tuple[str, list[str]]:
    data = json.loads(json.dumps(BASE))
    changed = []
    for _ in range(draw(st.integers(1, 3))):
        where, key = draw(st.sampled_from(KEYS))
        node = data
        for part in where:
            node = node[part]
        node[key] = draw(VALUES)
        changed.append(key)
    return document(data), changed


def _load(text: str) -> Settings:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "pollerd.toml"
        path.write_text(text, encoding="utf-8")
        path.chmod(0o600)
        return load(path, env={})


def test_base_config_loads() -> None:
    settings = _load(document(BASE))
    assert [s.name for s in settings.stores] == ["woo", "shop"]


@given(configs())
@example((document(_with(("stores", 0), "start_from", "0001-01-01T00:00:00Z")), ["start_from"]))
def test_config_values(case: tuple[str, list[str]]) -> None:
    text, changed = case
    try:
        settings = _load(text)
    except ConfigError as exc:
        message = str(exc)
        assert any(key in message for key in changed) or "invalid TOML" in message, message
        assert "Traceback" not in message
        return
    # What loaded must be usable: every duration a real, non-negative span, and a start point
    # the cursor arithmetic (start - overlap, start - baseline horizon) can move back from.
    for model in (settings.pollerd, settings.pollerd.delivery, *settings.stores):
        for name in type(model).model_fields:
            value = getattr(model, name)
            if isinstance(value, timedelta):
                assert value >= timedelta(0), (name, value)
    for store in settings.stores:
        if isinstance(store.start_from, datetime):
            assert store.start_from - SPAN < store.start_from, store.start_from


@pytest.mark.parametrize(
    ("where", "key", "value"),
    [(("stores", 0), "interval", "99999999999d"), (("pollerd",), "retention", "99999999999d")],
)
def test_huge_durations_are_config_errors(where: tuple[Any, ...], key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=key):
        _load(document(_with(where, key, value)))
