"""Order-derived text made inert for each message flavour, and pollerd's own markup per flavour.

Customer names, notes and item titles are written by shoppers, so every one of them is escaped
for the flavour it lands in before a template sees it (the changedetection.io GHSA-q8xq-qg4x-wphg
lesson): `<s>`, `**x**`, `@everyone`, `[x](http://evil)` reach the reader as text, never as a
tag, bold, a mention or a link.

Markdown dialects without documented backslash escapes (WeCom, DingTalk, Feishu cards, generic
markdown sent through Apprise) get lookalike characters instead:
`∗∗x∗∗ ＜＠all＞ ［x］(http：//evil)` renders the same in every client. Discord drops the
backslash before any punctuation, so it gets backslashes; Slack mrkdwn and Telegram HTML get
their entities.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from urllib.parse import quote

_LOOKALIKE = str.maketrans(
    {
        "\\": "＼",
        "*": "∗",
        "_": "＿",
        "`": "ˋ",
        "~": "～",
        "[": "［",
        "]": "］",
        "<": "＜",
        ">": "＞",
        "|": "｜",
    }
)
_ANGLES = str.maketrans({"<": "＜", ">": "＞"})
# '@' that starts a word (@all, @everyone, @13800001111), not the '@' of a (masked) email.
_MENTION = re.compile(r"(?<![\w.+*-])@(?=\w)")
_SCHEME = re.compile(r"(?<=[A-Za-z0-9]):(?=//)")  # http://evil → http：//evil: no autolink
_ENTITY = re.compile(r"&(?=#?\w+;)")  # DingTalk's markdown renders HTML entities
_SLACK_MENTION = re.compile(r"@(?=(?:channel|here|everyone)\b)", re.IGNORECASE)
_SLACK_MARK = str.maketrans({"*": "∗", "_": "＿", "~": "～", "`": "ˋ"})
_DISCORD = re.compile(r"([\\*_~`|><#\-\[\]():@])")


def escape_text(text: str) -> str:
    """Plain-text messages: no tags (Feishu parses `<at user_id=…>` in text), no @mentions,
    no autolinked URLs; markdown characters stay as they are."""
    return _SCHEME.sub("：", _MENTION.sub("＠", text)).translate(_ANGLES)


def escape_markdown(text: str) -> str:
    """WeCom/DingTalk/Feishu/generic markdown: inert in any markdown or HTML subset."""
    text = _SCHEME.sub("：", _MENTION.sub("＠", text))
    return _ENTITY.sub("＆", text).translate(_LOOKALIKE)


def escape_slack(text: str) -> str:
    """Slack mrkdwn: `& < >` as entities (the only escapes Slack has), emphasis characters as
    lookalikes, broadcast mentions broken, no autolinked URL."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _SCHEME.sub("：", _SLACK_MENTION.sub("@\u2060", text)).translate(_SLACK_MARK)


def escape_discord(text: str) -> str:
    """Discord markdown: every markdown, mention and link character backslash-escaped."""
    return _DISCORD.sub(r"\\\1", text)


def escape_html(text: str) -> str:
    """Email HTML and Telegram's HTML parse mode: `& < > " '` as entities."""
    return html.escape(text, quote=True)


def escape_email_html(text: str) -> str:
    """Email HTML: entities, and no autolinked URL (webmail and desktop clients turn a bare
    `http://…` in HTML text into a live link just as they do in plain text)."""
    return escape_html(_SCHEME.sub("：", text))


def escape_telegram(text: str) -> str:
    """Telegram HTML: entities, and no @username mention or autolinked URL either (Telegram
    clients turn both into live entities without any markup: `@boss` pings a group member)."""
    return escape_html(_SCHEME.sub("：", _MENTION.sub("＠", text)))


ESCAPERS: dict[str, Callable[[str], str]] = {
    "text": escape_text,
    "sms": escape_text,
    "email_text": escape_text,
    "markdown": escape_markdown,
    "wecom": escape_markdown,
    "dingtalk": escape_markdown,
    "feishu": escape_markdown,
    "slack": escape_slack,
    "discord": escape_discord,
    "telegram": escape_telegram,
    "email_html": escape_email_html,
}


def _href(url: str) -> str:
    return quote(url, safe="%/:=&?#+!$,;@*~-._")


def link(flavour: str, url: str, label: str | None = None) -> str:
    """pollerd's own link markup for a validated http(s) `url`; `label` is escaped text and
    defaults to the URL itself (a link shows where it goes: no "click here" hiding a target)."""
    if label is not None:
        text = ESCAPERS[flavour](label)
    elif flavour in ("markdown", "wecom", "dingtalk", "feishu"):
        text = url.translate(_LOOKALIKE)  # shown as typed, yet no markup can start in it
    elif flavour == "slack":
        text = url.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    else:
        text = html.escape(url, quote=True) if flavour in ("telegram", "email_html") else url
    if flavour in ("markdown", "wecom", "dingtalk", "feishu"):
        return f"[{text}]({_href(url)})"
    if flavour == "discord":
        return f"[{text}](<{_href(url)}>)" if label is not None else f"<{_href(url)}>"
    if flavour == "slack":
        target = _href(url).replace("|", "%7C").replace("&", "&amp;")
        return f"<{target}|{text}>"
    if flavour in ("telegram", "email_html"):
        return f'<a href="{html.escape(url, quote=True)}">{text}</a>'
    # Plain text: the URL itself, unescaped (it is validated http(s)); clients make it a link.
    return url if label is None else f"{text} {url}"


def bold(flavour: str, text: str) -> str:
    """Already escaped `text` in bold, where the flavour has bold."""
    if flavour in ("markdown", "wecom", "dingtalk", "feishu", "discord"):
        return f"**{text}**" if text else ""
    if flavour == "slack":
        return f"*{text}*" if text else ""
    if flavour in ("telegram", "email_html"):
        return f"<b>{text}</b>" if text else ""
    return text
