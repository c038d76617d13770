"""Channel registry: built-ins and third-party channels load the same way, through the
`pollerd.channels` entry-point group, lazily, with a clear error for unknown types."""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from pollerd.channels.base import Channel

BUILTIN = {
    "console": "pollerd.channels.console:ConsoleChannel",
    "webhook": "pollerd.channels.webhook:WebhookChannel",
    "email": "pollerd.channels.email:EmailChannel",
    "wecom": "pollerd.channels.wecom:WeComChannel",
    "dingtalk": "pollerd.channels.dingtalk:DingTalkChannel",
    "feishu": "pollerd.channels.feishu:FeishuChannel",
    "lark": "pollerd.channels.feishu:LarkChannel",
    "slack": "pollerd.channels.slack:SlackChannel",
    "telegram": "pollerd.channels.telegram:TelegramChannel",
    "discord": "pollerd.channels.discord:DiscordChannel",
    "sms": "pollerd.channels.sms:SmsChannel",
    "apprise": "pollerd.channels.apprise_bridge:AppriseChannel",
}


@cache
def known_types() -> dict[str, str]:
    """type name → "module:Class"; entry points may add types, built-ins always work (even
    from a source checkout that was never pip-installed)."""
    found = dict(BUILTIN)
    for ep in entry_points(group="pollerd.channels"):
        found.setdefault(ep.name, ep.value)
    return found


def channel_class(kind: str) -> type[Channel]:
    """Load the class for a channel `type`; KeyError names the known types."""
    import importlib

    types = known_types()
    if kind not in types:
        raise KeyError(f"no channel type {kind!r}; known: {', '.join(sorted(types))}")
    module, _, attr = types[kind].partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, Channel)):
        raise KeyError(f"channel type {kind!r} ({types[kind]}) is not a pollerd Channel")
    return cls
