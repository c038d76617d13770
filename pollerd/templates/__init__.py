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
    Footer,
    Message,
    Templates,
    admin_url,
    clean,
    context,
    lang,
    money,
    templates_for,
)
from pollerd.templates.legacy import (
    admin_link,
    cut_lines,
    detail,
    fit_items,
    local_time,
    more_items,
    summary,
)

__all__ = [
    "DIGEST_LINES",
    "EVENTS",
    "FALLBACK",
    "FLAVOURS",
    "LOCALES",
    "MAX_ITEMS",
    "Footer",
    "Message",
    "Templates",
    "admin_link",
    "admin_url",
    "clean",
    "context",
    "cut_lines",
    "detail",
    "fit_items",
    "lang",
    "local_time",
    "money",
    "more_items",
    "summary",
    "templates_for",
]
