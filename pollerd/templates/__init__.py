"""The words of an alert, from Jinja2 templates per event × locale × flavour.

One idea a module: `format` (how a value reads: money, dates, zones, codes in words),
`context` (an event as template variables, masked), `loader` (where a template comes from and
the sandboxed environment: `Templates`, `templates_for`), `fit` (render, footer, shorten to
the channel's limit), `check` (what `pollerd check` asks of a user folder), with the
per-flavour escapers (`escape`) and the resource bounds (`sandbox`). The README's
"Templates" section is the user's guide.
"""

from pollerd.templates.context import context
from pollerd.templates.fit import (
    DIGEST_LINES,
    MAX_ITEMS,
    DigestTooLong,
    Footer,
    Message,
    complete_digests,
)
from pollerd.templates.format import LOCALES, admin_url, clean, lang, local_time, money
from pollerd.templates.loader import EVENTS, FALLBACK, FLAVOURS, Templates, templates_for

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
