"""Channel registry: built-ins and third-party channels load the same way, through the
`pollerd.channels` entry-point group, lazily, with a clear error for unknown types."""

from __future__ import annotations

from pollerd.channels.base import Channel
from pollerd.plugins import Registry

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

CHANNELS: Registry[type[Channel]] = Registry(
    "pollerd.channels",
    noun="channel type",
    builtin=BUILTIN,
    accept=lambda cls: isinstance(cls, type) and issubclass(cls, Channel),
    what="pollerd Channel",
)


def known_types() -> dict[str, str]:
    """type name → "module:Class"; entry points may add types, built-ins always work (even
    from a source checkout that was never pip-installed)."""
    return CHANNELS.names()


def channel_class(kind: str) -> type[Channel]:
    """Load the class for a channel `type`; KeyError names the known types."""
    return CHANNELS.load(kind, names=known_types())
