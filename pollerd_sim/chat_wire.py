"""What every simulated chat service shares: the parsed request and the reply builders.

A `ChatRequest` parses its body once, the way the services themselves do: JSON whatever the
`Content-Type` says (WeCom, Feishu, Slack and Discord all accept a body that parses), a form only
when it is declared `application/x-www-form-urlencoded` (Twilio and Telegram read forms).
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from pollerd_sim.loopback import JSON_TYPE
from pollerd_sim.wc_rest import Reply

TEXT_TYPE = "text/plain; charset=utf-8"
HTML_TYPE = "text/html; charset=utf-8"
_NOT_JSON = object()


@dataclass
class ChatRequest:
    """One request as a service handler sees it (`headers` keys lower-case)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    _json: Any = field(default=None, repr=False)
    _parsed: bool = field(default=False, repr=False)

    @classmethod
    def parse(cls, method: str, path: str, query: str, headers: dict[str, str], body: bytes) -> Any:
        # keep_blank_values: `?key=` must reach the key check as an empty key, not as "no key".
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        return cls(method, path, {k: v for k, v in reversed(pairs)}, headers, body)

    @property
    def json(self) -> Any | None:
        """The body as JSON, or None when it does not parse (or is empty)."""
        if not self._parsed:
            self._parsed = True
            try:
                self._json = json.loads(self.body) if self.body.strip() else _NOT_JSON
            except (ValueError, UnicodeDecodeError):
                self._json = _NOT_JSON
        return None if self._json is _NOT_JSON else self._json

    @property
    def form(self) -> dict[str, str] | None:
        """The body as a form (first value of each field) when declared as one, else None."""
        if "application/x-www-form-urlencoded" not in self.headers.get("content-type", ""):
            return None
        try:
            text = self.body.decode("utf-8")
        except UnicodeDecodeError:
            return None
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True)
        return {k: v for k, v in reversed(pairs)}


def json_reply(status: int, data: Any, headers: list[tuple[str, str]] | None = None) -> Reply:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return Reply(status, body, headers or [], JSON_TYPE)


def text_reply(status: int, text: str, headers: list[tuple[str, str]] | None = None) -> Reply:
    return Reply(status, text.encode(), headers or [], TEXT_TYPE)


def strings_in(value: Any, *, skip: frozenset[str] = frozenset()) -> list[str]:
    """Every string inside a JSON value (keys in `skip` left out): where the Chinese bots look
    for their custom keywords (anywhere in the message, titles included)."""
    found: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, dict):
            stack.extend(v for k, v in item.items() if k not in skip)
        elif isinstance(item, list):
            stack.extend(item)
    return found
