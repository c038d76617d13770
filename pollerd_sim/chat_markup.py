"""Telegram's `parse_mode` parsers (HTML, MarkdownV2, legacy Markdown), after TDLib's.

The Bot API really parses the text: an unknown or unbalanced tag, or an unescaped MarkdownV2
reserved character, makes `sendMessage` fail with `400 Bad Request: can't parse entities: …`
(research `notifications.md` §4.5; the fix a channel must apply is to resend without
`parse_mode`). The messages and their *byte offsets* (UTF-8, into the text as sent) follow TDLib's
wording (`td/telegram/MessageEntity.cpp`). Entity offsets and lengths in the result are UTF-16
code units, like the Bot API's `MessageEntity`.

HTML: tags `b strong i em u ins s strike del tg-spoiler span(class=tg-spoiler) a(href) code pre
blockquote tg-emoji`; entities `&lt; &gt; &amp; &quot;` and numeric ones (any other `&` is kept
as text, as TDLib does).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any

HTML_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_ENTITY = re.compile(r"&(#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|lt|gt|amp|quot);")
_TAG_CHARS = re.compile(r"[a-zA-Z0-9-]*")
_SPACE = " \t\r\n"
V2_RESERVED = "_*[]()~`>#+-=|{}.!"
_V2_NAMES = {
    "*": "Bold",
    "_": "Italic",
    "__": "Underline",
    "~": "Strikethrough",
    "||": "Spoiler",
    "[": "TextUrl",
    "`": "Code",
    "```": "Pre",
}
_V2_TYPES = {
    "*": "bold",
    "_": "italic",
    "__": "underline",
    "~": "strikethrough",
    "||": "spoiler",
}


class MarkupError(ValueError):
    """The text does not parse; `str()` is the Bot API description after "Bad Request: "."""

    def __init__(self, detail: str, *, prefix: str = "can't parse entities: ") -> None:
        super().__init__(prefix + detail)


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def parse_markup(text: str, mode: str) -> tuple[str, list[dict[str, Any]]]:
    """The plain text and the entities of `text` under `parse_mode` `mode` ("" = none).

    Raises `MarkupError` with the Bot API's description (`unsupported parse_mode` included)."""
    kind = mode.lower()
    if kind == "":
        return text, []
    if kind == "html":
        return _Parser(text).html()
    if kind == "markdownv2":
        return _Parser(text).markdown_v2()
    if kind == "markdown":
        return _Parser(text).markdown()
    raise MarkupError("unsupported parse_mode", prefix="")


@dataclass
class _Open:
    name: str
    start: int  # UTF-16 offset in the output
    at: int  # index in the input (for byte offsets in errors)
    attrs: dict[str, str] = field(default_factory=dict)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.out: list[str] = []
        self.u16 = 0
        self.entities: list[dict[str, Any]] = []

    def byte(self, index: int) -> int:
        return len(self.text[:index].encode("utf-8"))

    def emit(self, chars: str) -> None:
        self.out.append(chars)
        self.u16 += utf16_len(chars)

    def entity(self, kind: str, start: int, **extra: Any) -> None:
        if self.u16 > start:
            self.entities.append(
                {"offset": start, "length": self.u16 - start, "type": kind, **extra}
            )

    def result(self) -> tuple[str, list[dict[str, Any]]]:
        self.entities.sort(key=lambda e: (e["offset"], -e["length"]))
        return "".join(self.out), self.entities

    # -- HTML ------------------------------------------------------------------------------

    def html(self) -> tuple[str, list[dict[str, Any]]]:
        text, n, i = self.text, len(self.text), 0
        stack: list[_Open] = []
        while i < n:
            c = text[i]
            if c == "&":
                match = _ENTITY.match(text, i)
                self.emit(html.unescape(match.group()) if match else "&")
                i = match.end() if match else i + 1
            elif c != "<":
                self.emit(c)
                i += 1
            elif i + 1 < n and text[i + 1] == "/":
                i = self._end_tag(i, stack)
            else:
                i = self._start_tag(i, stack)
        if stack:
            raise MarkupError(f'Can\'t find end tag corresponding to start tag "{stack[-1].name}"')
        return self.result()

    def _start_tag(self, begin: int, stack: list[_Open]) -> int:
        text, n = self.text, len(self.text)
        name_end = _TAG_CHARS.match(text, begin + 1).end()  # type: ignore[union-attr]
        name = text[begin + 1 : name_end].lower()
        if name not in HTML_TAGS:
            raise MarkupError(f'Unsupported start tag "{name}" at byte offset {self.byte(begin)}')
        attrs: dict[str, str] = {}
        i = name_end
        while True:
            while i < n and text[i] in _SPACE:
                i += 1
            if i >= n:
                raise MarkupError(f"Unclosed start tag at byte offset {self.byte(begin)}")
            if text[i] == ">":
                i += 1
                break
            attr_end = i
            while attr_end < n and text[attr_end] not in _SPACE + "=>":
                attr_end += 1
            attr = text[i:attr_end].lower()
            i = attr_end
            while i < n and text[i] in _SPACE:
                i += 1
            if i >= n or text[i] != "=":
                if name == "blockquote" and attr == "expandable":
                    attrs[attr] = ""
                    continue
                raise MarkupError(
                    "Expected equal sign in declaration of an attribute of the tag "
                    f'"{name}" at byte offset {self.byte(begin)}'
                )
            i += 1
            while i < n and text[i] in _SPACE:
                i += 1
            if i < n and text[i] in "\"'":
                close = text.find(text[i], i + 1)
                if close < 0:
                    raise MarkupError(f"Unclosed start tag at byte offset {self.byte(begin)}")
                attrs[attr] = html.unescape(text[i + 1 : close])
                i = close + 1
            else:
                value_end = i
                while value_end < n and text[value_end] not in _SPACE + ">":
                    value_end += 1
                attrs[attr] = html.unescape(text[i:value_end])
                i = value_end
        if name == "span" and attrs.get("class") != "tg-spoiler":
            raise MarkupError(
                f'Tag "span" must have class "tg-spoiler" at byte offset {self.byte(begin)}'
            )
        stack.append(_Open(name, self.u16, begin, attrs))
        return i

    def _end_tag(self, begin: int, stack: list[_Open]) -> int:
        text, n = self.text, len(self.text)
        name_end = _TAG_CHARS.match(text, begin + 2).end()  # type: ignore[union-attr]
        name = text[begin + 2 : name_end].lower()
        if not stack:
            raise MarkupError(f"Unexpected end tag at byte offset {self.byte(begin)}")
        i = name_end
        while i < n and text[i] in _SPACE:
            i += 1
        if i >= n or text[i] != ">":
            raise MarkupError(f"Unclosed end tag at byte offset {self.byte(begin)}")
        top = stack.pop()
        if name != top.name:
            raise MarkupError(
                f"Unmatched end tag at byte offset {self.byte(begin)}, "
                f'expected "</{top.name}>", found "</{name}>"'
            )
        kind = HTML_TAGS[top.name]
        language = top.attrs.get("class", "")
        if (
            kind == "code"
            and stack
            and stack[-1].name == "pre"
            and language.startswith("language-")
        ):
            stack[-1].attrs["language"] = language[len("language-") :]
        elif kind == "text_link":
            if top.attrs.get("href"):
                self.entity(kind, top.start, url=top.attrs["href"])
        elif kind == "pre" and top.attrs.get("language"):
            self.entity(kind, top.start, language=top.attrs["language"])
        elif kind == "custom_emoji":
            self.entity(kind, top.start, custom_emoji_id=top.attrs.get("emoji-id", ""))
        elif kind == "blockquote" and "expandable" in top.attrs:
            self.entity("expandable_blockquote", top.start)
        else:
            self.entity(kind, top.start)
        return i + 1

    # -- MarkdownV2 ------------------------------------------------------------------------

    def markdown_v2(self) -> tuple[str, list[dict[str, Any]]]:
        text, n, i = self.text, len(self.text), 0
        stack: list[_Open] = []
        while i < n:
            c = text[i]
            if c == "\\" and i + 1 < n and 0 < ord(text[i + 1]) <= 126:
                self.emit(text[i + 1])
                i += 2
                continue
            if c == "`":
                i = self._v2_code(i)
                continue
            if c not in V2_RESERVED:
                self.emit(c)
                i += 1
                continue
            token = "__" if text.startswith("__", i) else "||" if text.startswith("||", i) else c
            open_names = [o.name for o in stack]
            if token in _V2_TYPES and token in open_names:
                if stack[-1].name != token:
                    top = stack[-1]
                    raise MarkupError(
                        f"Can't find end of {_V2_NAMES[top.name]} entity at byte offset "
                        f"{self.byte(top.at)}"
                    )
                top = stack.pop()
                self.entity(_V2_TYPES[token], top.start)
                i += len(token)
            elif token == "_" and "__" in open_names and stack[-1].name == "__":
                stack.append(_Open("_", self.u16, i))
                i += 1
            elif token in _V2_TYPES:
                stack.append(_Open(token, self.u16, i))
                i += len(token)
            elif c == "[":
                stack.append(_Open("[", self.u16, i))
                i += 1
            elif c == "]" and stack and stack[-1].name == "[":
                i = self._v2_link(i, stack.pop())
            elif c == ">" and (i == 0 or text[i - 1] == "\n"):
                i += 1  # a blockquote line
            else:
                raise MarkupError(
                    f"Character '{c}' is reserved and must be escaped with the preceding '\\'"
                )
        if stack:
            top = stack[-1]
            raise MarkupError(
                f"Can't find end of {_V2_NAMES[top.name]} entity at byte offset {self.byte(top.at)}"
            )
        return self.result()

    def _v2_code(self, begin: int) -> int:
        text, n = self.text, len(self.text)
        fence = "```" if text.startswith("```", begin) else "`"
        i = begin + len(fence)
        language = ""
        if fence == "```":
            line_end = text.find("\n", i)
            if line_end >= 0 and re.fullmatch(r"[A-Za-z0-9_+#-]*", text[i:line_end]):
                language, i = text[i:line_end], line_end + 1
        start = self.u16
        while i < n:
            if text[i] == "\\" and i + 1 < n and text[i + 1] in "`\\":
                self.emit(text[i + 1])
                i += 2
            elif text.startswith(fence, i):
                extra = {"language": language} if language else {}
                self.entity("pre" if fence == "```" else "code", start, **extra)
                return i + len(fence)
            else:
                self.emit(text[i])
                i += 1
        name = _V2_NAMES[fence]
        raise MarkupError(f"Can't find end of {name} entity at byte offset {self.byte(begin)}")

    def _v2_link(self, close: int, opened: _Open) -> int:
        text = self.text
        if not text.startswith("(", close + 1):
            return close + 1  # "[text]" without a URL is plain text
        end = close + 2
        url: list[str] = []
        while end < len(text) and text[end] != ")":
            if text[end] == "\\" and end + 1 < len(text):
                end += 1
            url.append(text[end])
            end += 1
        if end >= len(text):
            raise MarkupError(f"Can't find end of a URL at byte offset {self.byte(close + 2)}")
        self.entity("text_link", opened.start, url="".join(url))
        return end + 1

    # -- legacy Markdown -------------------------------------------------------------------

    def markdown(self) -> tuple[str, list[dict[str, Any]]]:
        text, n, i = self.text, len(self.text), 0
        while i < n:
            c = text[i]
            if c == "\\" and i + 1 < n and text[i + 1] in "_*`[":
                self.emit(text[i + 1])
                i += 2
                continue
            if c not in "_*`[":
                self.emit(c)
                i += 1
                continue
            begin = i
            end_mark = "```" if text.startswith("```", i) else "]" if c == "[" else c
            i += 1 if end_mark != "```" else 3
            end = text.find(end_mark, i)
            if end < 0:
                raise MarkupError(
                    f"Can't find end of the entity starting at byte offset {self.byte(begin)}"
                )
            start = self.u16
            self.emit(text[i:end])
            i = end + len(end_mark)
            kinds = {"_": "italic", "*": "bold", "`": "code", "```": "pre"}
            if end_mark == "]":
                url_match = re.compile(r"\(([^)]*)\)").match(text, i)
                if url_match:
                    self.entity("text_link", start, url=url_match.group(1))
                    i = url_match.end()
            else:
                self.entity(kinds[end_mark], start)
        return self.result()
