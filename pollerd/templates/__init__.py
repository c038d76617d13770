"""The words of an alert, from Jinja2 templates per event × locale × flavour (`engine`), with the
per-flavour escapers (`escape`). See `engine` for where templates come from and what keeps them
safe; the README's "Templates" section is the user's guide."""

from pollerd.templates.engine import (
    DIGEST_LINES,
    EVENTS,
    FALLBACK,
    FLAVOURS,
    LOCALES,
    MAX_ITEMS,
    DigestTooLong,
    Footer,
    Message,
    Templates,
    admin_url,
    clean,
    complete_digests,
    context,
    lang,
    local_time,
    money,
    templates_for,
)

__all__ = [
    "DIGEST_LINES",
    "EVENTS",
    "FALLBACK",
    "FLAVOURS",
    "LOCALES",
    "MAX_ITEMS",
    "DigestTooLong",
    "Footer",
    "Message",
    "Templates",
    "admin_url",
    "clean",
    "complete_digests",
    "context",
    "lang",
    "local_time",
    "money",
    "templates_for",
]
