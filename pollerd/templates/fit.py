"""From a template and its variables to one message that fits the channel: render, append
the footer no template can drop, and shorten until the channel's `fits` says yes.

A message too long for the channel is shortened by showing fewer line items ("… (+N items)"),
then the brief form, then cut, and is never split into several messages. A digest rendered
under `complete_digests` must name every alert it stands for, or it raises `DigestTooLong`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2 import Template, TemplateError, TemplateSyntaxError

from pollerd.errors import ControlFlow
from pollerd.templates.escape import ESCAPERS, link
from pollerd.templates.format import labels, lang
from pollerd.templates.sandbox import bounded, join_bounded

MAX_ITEMS = 10  # more line items than this become "… (+N items)": an alert is not an invoice
DIGEST_LINES = 10  # alerts a preview digest shows one by one; the rest are "… and M more"
_COMPLETE: ContextVar[bool] = ContextVar("pollerd_complete_digests", default=False)

# What a template can raise while rendering: a user template's bug falls back to the built-in
# one at send time (`Templates._fit`) and is reported by `pollerd check` (`check.problems`).
RENDER_ERRORS = (TemplateError, ArithmeticError, TypeError, ValueError, LookupError)


class DigestTooLong(ControlFlow):
    """A digest cannot name every alert it stands for within the channel's limit (raised only
    under `complete_digests`): the sender names fewer and leaves the rest for the next one."""


@contextmanager
def complete_digests() -> Iterator[None]:
    """Digests rendered inside name EVERY alert or raise `DigestTooLong`: a digest marks its
    rows sent, so a row it does not name would never be named anywhere (issue 11: a flash
    sale's digest of 40 named 10 and said "… and 30 more"). The delivery loop renders in this
    mode; previews (`pollerd check`, goldens) keep the "… and M more" form."""
    token = _COMPLETE.set(True)
    try:
        yield
    finally:
        _COMPLETE.reset(token)


@dataclass(frozen=True)
class Message:
    """A rendered alert: `title` is one line (mail subject, DingTalk/Feishu title, the digest
    line of this event); `body` is the whole message in the flavour, footer included."""

    title: str
    body: str


@dataclass(frozen=True)
class Footer:
    """What the framework appends to every message of a channel, whatever the template says:
    `before` + link to `url` + `after` (e.g. the one-click unsubscribe link of an email)."""

    before: str
    url: str
    after: str = ""


def where(exc: BaseException, default: str) -> str:
    """`file:line` of the template line that raised `exc` (the innermost template frame: an
    include or a layout, not only the event template), else `default`."""
    if isinstance(exc, TemplateSyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}"
    where = default
    tb = exc.__traceback__
    while tb is not None:
        template = tb.tb_frame.f_globals.get("__jinja_template__")  # how Jinja's debug finds it
        if isinstance(template, Template) and template.filename:
            where = f"{template.filename}:{template.get_corresponding_lineno(tb.tb_lineno)}"
        tb = tb.tb_next
    return where


def _render(template: Template, values: dict[str, Any], flavour: str, locale: str) -> Message:
    """Body and title of `template`: the title is its `title` block (inherited blocks count),
    else the first line of the body."""
    words = labels(locale)
    hidden = values.get("hidden", 0)
    key = "digest_more" if values.get("type") == "digest" else "more"
    more = words[f"{key}_one" if hidden == 1 and f"{key}_one" in words else key]
    variables = {
        **values,
        "t": words,
        "locale": lang(locale),
        "layout": f"layout/{flavour}.j2",
        "more": more.format(count=hidden) if hidden else "",
    }
    with bounded():  # one template cannot take the daemon's memory or time (sandbox.py)
        ctx = template.new_context(variables)
        body = join_bounded(template.root_render_func(ctx)).strip("\n")
        blocks = ctx.blocks.get("title")
        title = join_bounded(blocks[0](ctx)).strip() if blocks else body.split("\n", 1)[0]
    return Message(title=" ".join(title.split()), body=body)


def footer_markup(flavour: str, footer: Footer, locale: str) -> str:
    """The footer in the flavour; plain-text flavours get the "-- " signature separator."""
    escape = ESCAPERS[flavour]
    line = escape(footer.before) + link(flavour, footer.url) + escape(footer.after)
    if flavour == "email_html":
        return f"<hr><p><small>{line}</small></p>"
    if flavour in ("text", "email_text", "sms"):
        return f"-- \n{line}"
    return line


def _with_footer(message: Message, flavour: str, footer: Footer | None, locale: str) -> Message:
    if footer is None:
        return message
    mark = footer_markup(flavour, footer, locale)
    body = message.body
    if flavour == "email_html" and "</body>" in body:
        head, _, tail = body.rpartition("</body>")
        return Message(message.title, f"{head}{mark}</body>{tail}")
    return Message(message.title, f"{body}\n\n{mark}")


def shrink(
    template: Template,
    values: dict[str, Any],
    flavour: str,
    locale: str,
    fits: Callable[[Message], bool] | None,
    footer: Footer | None,
) -> Message:
    """The fullest rendering that `fits`: all items (at most MAX_ITEMS), then fewer; then the
    brief form (summary, "… (+N items)", link); then the summary loses its time, customer, …
    from the end; as a last resort the body is cut at a line and then within it ("…")."""

    def attempt(changes: dict[str, Any]) -> Message:
        rendered = _render(template, {**values, **changes}, flavour, locale)
        return _with_footer(rendered, flavour, footer, locale)

    items = values["items"]
    if values.get("type") == "digest" and _COMPLETE.get():
        message = attempt({"items": items, "hidden": 0})
        if fits is None or fits(message):
            return message
        raise DigestTooLong(f"{len(items)} alerts do not fit in one {flavour} message")
    fullest = min(len(items), MAX_ITEMS)
    if fits is None:  # no limit (a preview, `pollerd check`): the fullest rendering
        return attempt({"items": items[:fullest], "hidden": len(items) - fullest})
    for shown in range(fullest, -1, -1):
        message = attempt({"items": items[:shown], "hidden": len(items) - shown})
        if fits(message):
            return message
    tail = values.get("tail", [])
    brief = {"items": [], "hidden": len(items), "before": [], "after": [], "brief": True}
    for keep in range(len(tail), -1, -1):
        message = attempt({**brief, "tail": tail[:keep]})
        if fits(message):
            return message
    bare = _render(template, {**values, **brief, "tail": []}, flavour, locale)
    return _cut(bare, flavour, footer, locale, fits)


def _cut(
    message: Message,
    flavour: str,
    footer: Footer | None,
    locale: str,
    fits: Callable[[Message], bool],
) -> Message:
    """Absurd input only (each value is capped, so this needs a tiny limit): drop whole lines
    between the summary and the last line (the order link), then from the end, then shorten
    the last one; the footer is always kept."""

    def ok(lines: list[str], title: str = message.title) -> bool:
        body = Message(title, "\n".join(lines))
        return fits(_with_footer(body, flavour, footer, locale))

    lines = message.body.split("\n")
    title = message.title
    while len(lines) > 2 and not ok(lines):
        lines.pop(-2)
    while len(lines) > 1 and not ok(lines):
        lines.pop()
    last, low, high = lines[-1], 0, len(lines[-1])
    while low < high:
        middle = (low + high + 1) // 2
        if ok([*lines[:-1], last[:middle] + "…"]):
            low = middle
        else:
            high = middle - 1
    lines[-1] = last[:low] + "…" if low < len(last) else last
    if not ok(lines) and title:
        title = title[: max(1, len(title) // 2)] + "…"
    return _with_footer(Message(title, "\n".join(lines)), flavour, footer, locale)
