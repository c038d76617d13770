"""Where a template comes from, and the sandboxed Jinja2 environment it runs in.

Lookup: `{locale}/{event}.{flavour}.j2`, then the same for each fallback flavour
(`wecom → markdown → text`), then the flavour-neutral `{locale}/{event}.j2`; the event falls
back to its family (`order.on_hold` → `order`) and the locale to its parents
(`zh-CN → zh → en`). The user's folder (`[pollerd] templates`) is searched before the built-in
one at every step, so a user overrides exactly one file and inherits the rest. The built-in
event templates only say what happened (`{% block headline %}`); `layout/{flavour}.j2` lays the
order out for each flavour.

Safety is the framework's, not the template author's:
- the environment is sandboxed (templates come from a config folder, not from pollerd's code)
  and `StrictUndefined`: a misspelt variable is an error that `pollerd check` reports, not a
  silently empty alert;
- every `{{ value }}` is escaped for the flavour by a `finalize` hook (customer names are
  attacker-controlled); pollerd's own markup (`link()`, `b()`, macros) is `Markup`, which passes;
  `|raw` marks a trusted string. Values are also squeezed onto one line before that, so a
  newline in a name cannot forge a second alert line or a mail header;
- the unsubscribe/mute footer is appended after rendering (`fit`), so no template can drop it.
A user template that fails at send time falls back to the built-in one (logged), so a template
bug never loses an alert.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    FileSystemLoader,
    PackageLoader,
    StrictUndefined,
    Template,
    pass_context,
)
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from loguru import logger
from markupsafe import Markup

from pollerd.model import EVENT_TYPES, mask_email, mask_phone
from pollerd.templates.context import context, digest_context, mask_name
from pollerd.templates.escape import ESCAPERS, bold, link
from pollerd.templates.fit import RENDER_ERRORS, Footer, Message, shrink, where
from pollerd.templates.format import UNSAFE, admin_url, clean, lang, money, trusted
from pollerd.templates.reports import REPORT_EVENTS
from pollerd.templates.sandbox import BoundedSandbox, wrote
from pollerd.templates.seller import SELLER_EVENTS_ORDER

FLAVOURS = tuple(ESCAPERS)
EVENTS = (
    *EVENT_TYPES,
    "alert.channel_failing",
    "alert.store_failing",
    "alert.store_recovered",
    "alert.order_quarantined",
    *SELLER_EVENTS_ORDER,
    *REPORT_EVENTS,
    "digest",
)
# A flavour's fallbacks, for user templates: a `markdown` override serves every markdown chat.
FALLBACK: dict[str, tuple[str, ...]] = {
    "text": ("text",),
    "sms": ("sms", "text"),
    "email_text": ("email_text", "text"),
    "email_html": ("email_html",),
    "markdown": ("markdown", "text"),
    "wecom": ("wecom", "markdown", "text"),
    "dingtalk": ("dingtalk", "markdown", "text"),
    "feishu": ("feishu", "markdown", "text"),
    "discord": ("discord", "markdown", "text"),
    "slack": ("slack", "text"),
    "telegram": ("telegram", "text"),
}


def locale_chain(locale: str) -> tuple[str, ...]:
    """`zh-CN` → (zh-CN, zh, en): the folders searched, most specific first."""
    chain: list[str] = []
    parts = locale.replace("_", "-").split("-")
    for end in range(len(parts), 0, -1):
        chain.append("-".join(parts[:end]))
    if lang(locale) not in chain:
        chain.append(lang(locale))
    if "en" not in chain:
        chain.append("en")
    return tuple(chain)


def event_chain(kind: str) -> tuple[str, ...]:
    """`order.on_hold` → (order.on_hold, order): an event type the templates do not know yet
    still renders, through its family's generic template."""
    family = kind.split(".", 1)[0]
    return (kind, family) if family != kind else (kind,)


def _finalize(flavour: str) -> Callable[[Any], Markup]:
    escape = ESCAPERS[flavour]

    def finalize(value: Any) -> Markup:
        if isinstance(value, Markup):
            wrote(value)
            return value
        if value is None:
            return trusted("")
        return trusted(wrote(escape(UNSAFE.sub(" ", str(value)))))

    return finalize


def _environment(folder: Path | None, flavour: str) -> ImmutableSandboxedEnvironment:
    loaders: list[BaseLoader] = []
    if folder is not None:
        loaders.append(FileSystemLoader(str(folder)))
    loaders.append(PackageLoader("pollerd", "templates"))
    env = BoundedSandbox(
        loader=ChoiceLoader(loaders),
        undefined=StrictUndefined,
        autoescape=True,  # so macros and blocks are Markup; `finalize` does the real escaping
        finalize=_finalize(flavour),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        auto_reload=False,
    )
    env.globals["flavour"] = flavour
    # "·" is not in GSM-7: one in an SMS makes it UCS-2, at 70 characters a segment.
    env.globals["sep"] = trusted(" - " if flavour == "sms" else " · ")
    env.globals["link"] = _linker(flavour)
    env.globals["b"] = lambda text: trusted(bold(flavour, _escaped(flavour, text)))
    env.filters["raw"] = lambda value: trusted(str(value))
    env.filters["money"] = _money_filter
    env.filters["mask_email"] = lambda value: mask_email(clean(value) or None) or ""
    env.filters["mask_phone"] = lambda value: mask_phone(clean(value) or None) or ""
    env.filters["mask_name"] = mask_name
    return env


def _linker(flavour: str) -> Callable[..., Markup]:
    """`link(url, label=None)` for templates: only an http(s) URL becomes a link (a template
    may hand it an order-derived value, and `javascript:` must never be clickable); otherwise
    the label alone is shown, escaped."""

    def make(url: Any, label: Any = None) -> Markup:
        target = admin_url(url)
        text = None if label is None else UNSAFE.sub(" ", str(label)).strip()
        if not target:
            return trusted(_escaped(flavour, text) if text else "")
        return trusted(link(flavour, target, text))

    return make


@pass_context
def _money_filter(ctx: Context, amount: Any, currency: Any = None) -> str:
    """`{{ total|money }}` in the order's currency, `{{ x|money("EUR") }}` in another one;
    formatted for the template's locale."""
    code = ctx.get("currency", "") if currency is None else currency
    return money(amount, code, locale=ctx.get("locale", "en"))


def _escaped(flavour: str, value: Any) -> str:
    if isinstance(value, Markup):
        return str(value)
    return ESCAPERS[flavour](UNSAFE.sub(" ", str(value)))


class Templates:
    """The templates of one configuration (built-in + an optional user folder): finds,
    renders, fits. One instance per folder is shared (`templates_for`)."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder
        self._envs: dict[str, ImmutableSandboxedEnvironment] = {}
        self._found: dict[tuple[str, str, str, bool], Template] = {}

    def env(self, flavour: str) -> ImmutableSandboxedEnvironment:
        if flavour not in ESCAPERS:
            raise ValueError(f"unknown flavour {flavour!r} (one of {', '.join(FLAVOURS)})")
        if flavour not in self._envs:
            self._envs[flavour] = _environment(self.folder, flavour)
        return self._envs[flavour]

    def candidates(self, kind: str, locale: str, flavour: str) -> list[str]:
        """Template names tried for (event, locale, flavour), in order."""
        names: list[str] = []
        for loc in locale_chain(locale):
            for name in event_chain(kind):
                names += [f"{loc}/{name}.{fl}.j2" for fl in FALLBACK[flavour]]
                names.append(f"{loc}/{name}.j2")
        return names

    def find(self, kind: str, locale: str, flavour: str, *, builtin: bool = False) -> Template:
        key = (kind, locale, flavour, builtin)
        found = self._found.get(key)
        if found is None:
            env = (builtin_templates() if builtin else self).env(flavour)
            found = env.select_template(self.candidates(kind, locale, flavour))
            self._found[key] = found
        return found

    def user_file(self, template: Template) -> bool:
        """Whether `template` (or nothing else) came from the user's folder."""
        if self.folder is None or template.filename is None:
            return False
        return Path(template.filename).resolve().is_relative_to(self.folder.resolve())

    # rendering -----------------------------------------------------------------------------
    def render(
        self,
        event: dict[str, Any],
        *,
        flavour: str,
        locale: str = "en",
        timezone: str = "UTC",
        fits: Callable[[Message], bool] | None = None,
        footer: Footer | None = None,
    ) -> Message:
        """`event` (the event JSON) as one message in `flavour`, shortened until `fits`."""
        values = context(event, locale=locale, timezone=timezone)
        return self._fit(
            str(event.get("type", "")), values, flavour, locale, timezone, fits, footer
        )

    def render_digest(
        self,
        events: Sequence[dict[str, Any]],
        *,
        flavour: str,
        locale: str = "en",
        timezone: str = "UTC",
        fits: Callable[[Message], bool] | None = None,
        footer: Footer | None = None,
    ) -> Message:
        """Many alerts as ONE message (a flash sale through a 20-a-minute robot): the count,
        the total per currency, one summary line per event (each the event's own title in
        `flavour`), as many as fit, "… and M more" for the rest."""
        values = digest_context(self, events, locale=locale, timezone=timezone, flavour=flavour)
        return self._fit("digest", values, flavour, locale, timezone, fits, footer)

    def title(self, event: dict[str, Any], *, locale: str = "en", timezone: str = "UTC") -> str:
        """The one-line summary of an event, as plain text (digest lines, logs, subjects)."""
        return self.render(event, flavour="text", locale=locale, timezone=timezone).title

    def _fit(
        self,
        kind: str,
        values: dict[str, Any],
        flavour: str,
        locale: str,
        timezone: str,
        fits: Callable[[Message], bool] | None,
        footer: Footer | None,
    ) -> Message:
        template = self.find(kind, locale, flavour)
        try:
            return shrink(template, values, flavour, locale, fits, footer)
        except RENDER_ERRORS as exc:
            # The failing file may be the user's even when `template` is built-in (a user
            # `layout/wecom.j2` under the built-in `en/order.paid.j2`): any user folder
            # earns the fallback; without one the bug is pollerd's and must surface.
            if self.folder is None:
                raise
            logger.error(
                "template {} failed ({}: {}); the built-in template was used instead",
                where(exc, template.filename or template.name or kind),
                type(exc).__name__,
                exc,
            )
            builtin = self.find(kind, locale, flavour, builtin=True)
            return shrink(builtin, values, flavour, locale, fits, footer)

    # checking (`pollerd check`, `pollerd render`: see check.py) ------------------------------
    def syntax_problems(self) -> list[str]:
        """`file:line: error` for every user template that does not compile."""
        from pollerd.templates.check import syntax_problems

        return syntax_problems(self)

    def problems(self, samples: Iterable[dict[str, Any]]) -> list[str]:
        """Every user template that does not compile or fails to render one of `samples`."""
        from pollerd.templates.check import problems

        return problems(self, samples)


@cache
def builtin_templates() -> Templates:
    """The built-in templates alone: what a failing user template falls back to."""
    return Templates(None)


@cache
def _for_folder(folder: Path) -> Templates:
    return Templates(folder)


def templates_for(folder: Path | None = None) -> Templates:
    """The shared Templates of a user folder (None: built-in only)."""
    return builtin_templates() if folder is None else _for_folder(folder.resolve())


def escape_for(flavour: str, text: str) -> str:
    """`text` escaped for `flavour` (for the few strings channels add outside templates)."""
    return ESCAPERS[flavour](text)
