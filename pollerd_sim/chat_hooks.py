"""Incoming webhooks that say "no" with an HTTP status: Slack and Discord.

A refusal is a 4xx/5xx, each with its own body (research `notifications.md` §4.4, §4.6, §4.9):

- Slack: `200 ok` as plain text; errors are a plain-text code (`invalid_payload`, `no_text`,
  `channel_not_found`, …); 429 with `Retry-After`;
- Discord: `204`, or `200` + the message object with `?wait=true`; errors `{"message","code"}` and
  the nested `Invalid Form Body` (50035, e.g. content over 2 000 characters, a bad
  `allowed_mentions`); 429 with `retry_after` (seconds, float) in the body and the
  `X-RateLimit-*` headers.
"""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime
from typing import Any, ClassVar

from pollerd_sim.chat_limits import DISCORD, SLACK, RateWindows, whole_seconds
from pollerd_sim.chat_wire import ChatRequest, json_reply, text_reply
from pollerd_sim.wc_rest import Reply

Outcome = tuple[Reply, bool]


class Slack:
    """`POST {path}` of an incoming webhook (§4.4)."""

    name = "slack"
    faults = (
        "invalid_payload",
        "no_text",
        "channel_not_found",
        "channel_is_archived",
        "action_prohibited",
        "no_service",
        "429",
        "500",
    )
    statuses: ClassVar[dict[str, int]] = {
        "invalid_payload": 400,
        "no_text": 400,
        "channel_not_found": 404,
        "channel_is_archived": 410,
        "action_prohibited": 403,
        "no_service": 404,
    }

    def __init__(self, path: str, windows: RateWindows) -> None:
        self.path = path
        self.windows = windows

    def owns(self, path: str) -> bool:
        return path == self.path or path.startswith("/services/")

    def answer(self, req: ChatRequest, now: float, wall: float) -> Outcome:
        if req.path != self.path:
            return text_reply(404, "no_service"), False
        if req.method != "POST":
            return text_reply(405, "invalid_method"), False
        form = req.form
        if form is not None and "payload" in form:
            data = ChatRequest("POST", "", {}, {}, form["payload"].encode()).json
        else:
            data = req.json
        if not isinstance(data, dict):
            return text_reply(400, "invalid_payload"), False
        if not data.get("text") and not data.get("blocks") and not data.get("attachments"):
            return text_reply(400, "no_text"), False
        wait = self.windows.take(f"slack:{self.path}", SLACK, now)
        if wait:
            return self.too_many(whole_seconds(wait)), False
        return text_reply(200, "ok"), True

    @staticmethod
    def too_many(seconds: int) -> Reply:
        return text_reply(429, "rate_limited", [("Retry-After", str(seconds))])

    def fault(self, kind: str, retry_after: float | None) -> Reply:
        if kind == "429":
            return self.too_many(whole_seconds(retry_after or 1))
        if kind == "500":
            return text_reply(500, "Internal Server Error")
        return text_reply(self.statuses[kind], kind)


_DISCORD_PATH = re.compile(r"^/api(?:/v\d+)?/webhooks/([^/]+)/([^/]+)$")
_MENTION_KINDS = ("roles", "users", "everyone")


def _form_error(field: str, code: str, message: str) -> Reply:
    errors: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for part in reversed(field.split(".")):
        errors = {part: errors}
    return json_reply(400, {"code": 50035, "errors": errors, "message": "Invalid Form Body"})


def _embed_size(embed: dict[str, Any]) -> int:
    """Characters counted towards the 6 000 limit: title, description, field names and values,
    footer text, author name (Discord's embed limits)."""
    size = 0
    for key in ("title", "description"):
        size += len(str(embed.get(key) or ""))
    for item in embed.get("fields") or []:
        if isinstance(item, dict):
            size += len(str(item.get("name") or "")) + len(str(item.get("value") or ""))
    for key, sub in (("footer", "text"), ("author", "name")):
        if isinstance(embed.get(key), dict):
            size += len(str(embed[key].get(sub) or ""))
    return size


class Discord:
    """`POST /api/webhooks/{id}/{token}[?wait=true]` (§4.6)."""

    name = "discord"
    faults = ("404_unknown_webhook", "401", "400", "429", "500")
    bucket = "5e2bd2a6a8f3c0b1d4e7f9a0b1c2d3e4"

    def __init__(self, webhook_id: str, token: str, windows: RateWindows) -> None:
        self.webhook_id = webhook_id
        self.token = token
        self.windows = windows
        self._ids = itertools.count(1)

    def owns(self, path: str) -> bool:
        return _DISCORD_PATH.match(path) is not None

    def answer(self, req: ChatRequest, now: float, wall: float) -> Outcome:
        match = _DISCORD_PATH.match(req.path)
        assert match is not None
        if match.group(1) != self.webhook_id:
            return json_reply(404, {"message": "Unknown Webhook", "code": 10015}), False
        if match.group(2) != self.token:
            return json_reply(401, {"message": "Invalid Webhook Token", "code": 50027}), False
        if req.method != "POST":
            return json_reply(405, {"message": "405: Method Not Allowed", "code": 0}), False
        data = req.json
        if not isinstance(data, dict):
            invalid = {"message": "The request body contains invalid JSON.", "code": 50109}
            return json_reply(400, invalid), False
        refusal = self._check(data)
        if refusal is not None:
            return refusal, False
        key = f"discord:{self.webhook_id}"
        wait = self.windows.take(key, DISCORD, now)
        if wait:
            return self.too_many(wait, wall), False
        used = self.windows.used(key, 2.0, now)
        headers = self._limit_headers(remaining=max(0, 5 - used), reset_after=2.0, wall=wall)
        if req.query.get("wait", "").lower() != "true":
            return Reply(204, b"", headers, "text/html; charset=utf-8"), True
        return json_reply(200, self._message(data, wall), headers), True

    def _check(self, data: dict[str, Any]) -> Reply | None:
        content = data.get("content")
        embeds = data.get("embeds") or []
        if not content and not embeds and not data.get("components"):
            return json_reply(400, {"message": "Cannot send an empty message", "code": 50006})
        if isinstance(content, str) and len(content) > 2000:
            return _form_error(
                "content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length."
            )
        if not isinstance(embeds, list) or len(embeds) > 10:
            return _form_error("embeds", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
        if sum(_embed_size(e) for e in embeds if isinstance(e, dict)) > 6000:
            message = "Embed size exceeds maximum size of 6000"
            return _form_error("embeds", "MAX_EMBED_SIZE_EXCEEDED", message)
        mentions = data.get("allowed_mentions")
        if mentions is None:
            return None
        if not isinstance(mentions, dict):
            return _form_error(
                "allowed_mentions",
                "MODEL_TYPE_CONVERT",
                "Only dictionaries may be used in a ModelType",
            )
        parse = mentions.get("parse", [])
        if not isinstance(parse, list):
            return _form_error(
                "allowed_mentions.parse",
                "LIST_TYPE_CONVERT",
                "Only iterables may be used in a ListType",
            )
        for index, kind in enumerate(parse):
            if kind not in _MENTION_KINDS:
                message = "Value must be one of ('roles', 'users', 'everyone')."
                return _form_error(f"allowed_mentions.parse.{index}", "ENUM_TYPE_COERCE", message)
        for kind in ("users", "roles"):
            if kind in parse and mentions.get(kind):
                message = f'parse:["{kind}"] and {kind}: [ids] are mutually exclusive.'
                return _form_error(
                    "allowed_mentions", "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE", message
                )
        return None

    def _message(self, data: dict[str, Any], wall: float) -> dict[str, Any]:
        content = str(data.get("content") or "")
        mentions = data.get("allowed_mentions")
        # Without allowed_mentions every mention in the text pings (what §4.6 warns about).
        may_ping_everyone = mentions is None or "everyone" in (mentions.get("parse") or [])
        snowflake = str((int(wall * 1000) - 1420070400000) << 22 | next(self._ids))
        stamp = datetime.fromtimestamp(wall, UTC).isoformat()
        return {
            "id": snowflake,
            "type": 0,
            "content": content,
            "channel_id": "222",
            "author": {
                "bot": True,
                "id": self.webhook_id,
                "username": str(data.get("username") or "pollerd"),
                "avatar": None,
                "discriminator": "0000",
            },
            "attachments": [],
            "embeds": data.get("embeds") or [],
            "mentions": [],
            "mention_roles": [],
            "mention_everyone": may_ping_everyone
            and ("@everyone" in content or "@here" in content),
            "pinned": False,
            "tts": bool(data.get("tts")),
            "timestamp": stamp,
            "edited_timestamp": None,
            "flags": 0,
            "components": [],
            "webhook_id": self.webhook_id,
        }

    def _limit_headers(
        self, remaining: int, reset_after: float, wall: float
    ) -> list[tuple[str, str]]:
        return [
            ("X-RateLimit-Bucket", self.bucket),
            ("X-RateLimit-Limit", "5"),
            ("X-RateLimit-Remaining", str(remaining)),
            ("X-RateLimit-Reset", f"{wall + reset_after:.3f}"),
            ("X-RateLimit-Reset-After", f"{reset_after:.3f}"),
        ]

    def too_many(self, wait: float, wall: float = 0.0) -> Reply:
        headers = [("Retry-After", str(whole_seconds(wait)))]
        headers += self._limit_headers(0, wait, wall)
        headers.append(("X-RateLimit-Scope", "user"))
        body = {
            "message": "You are being rate limited.",
            "retry_after": round(wait, 3),
            "global": False,
        }
        return json_reply(429, body, headers)

    def fault(self, kind: str, retry_after: float | None) -> Reply:
        if kind == "429":
            return self.too_many(retry_after or 1.0)
        if kind == "400":
            return _form_error(
                "content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length."
            )
        replies = {
            "404_unknown_webhook": (404, {"message": "Unknown Webhook", "code": 10015}),
            "401": (401, {"message": "Invalid Webhook Token", "code": 50027}),
            "500": (500, {"message": "500: Internal Server Error", "code": 0}),
        }
        return json_reply(*replies[kind])
