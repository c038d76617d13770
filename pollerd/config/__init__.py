"""TOML config → typed, validated settings (DESIGN §7), in four rooms:

- `types`: durations, bounded validators, `invalid`, `StrictModel`, `Secret`: what channel and
  platform plugins import for their own keys (importing only it keeps them out of a cycle);
- `models`: the tables (`[pollerd]`, `[[stores]]` base, `[[channels]]`, `[[routes]]`,
  `Settings`); each platform's own store model lives with its plugin (`pollerd.sources`);
- `loader`: finding, reading and validating a file (`load`, `minimal`);
- `explain`: pydantic's errors as `config: key: problem (fix)` lines.

The names below are what the rest of pollerd imports."""

from __future__ import annotations

from pollerd.config.explain import ConfigErrors
from pollerd.config.loader import LOCAL_CONFIG, SYSTEM_CONFIG, find_config, load, minimal
from pollerd.config.models import (
    USER_KEYS,
    ChannelConfig,
    DeliveryConfig,
    GlobalConfig,
    RouteConfig,
    Settings,
    StoreConfig,
    sqlite_file,
)
from pollerd.config.types import EXAMPLE, Duration, StrictModel, invalid, parse_duration

__all__ = [
    "EXAMPLE",
    "LOCAL_CONFIG",
    "SYSTEM_CONFIG",
    "USER_KEYS",
    "ChannelConfig",
    "ConfigErrors",
    "DeliveryConfig",
    "Duration",
    "GlobalConfig",
    "RouteConfig",
    "Settings",
    "StoreConfig",
    "StrictModel",
    "find_config",
    "invalid",
    "load",
    "minimal",
    "parse_duration",
    "sqlite_file",
]
