"""`telegram`: one Bot API `sendMessage` per alert, HTML formatted (research §4.5).

Wire format: POST `{api_base}/bot{token}/sendMessage` with JSON `chat_id`, `text`,
`parse_mode: "HTML"`, link previews off (an order URL would unfurl the shop's admin login).
The token is in the URL path, so details name the host only and are scrubbed of the token.

`render` stores two renderings of the message from the templates, `{"html": …, "plain": …}`:
the `telegram` flavour, where the engine HTML-escapes every order-derived value (`& < > " '`,
and `@name`/`http://` made lookalikes so Telegram does not turn them into a mention or a link)
and only `<b>` and the `<a href>` of the validated admin URL are ours; and the `text` flavour.
Should Telegram still answer "can't parse entities" (an escaping bug), the same send retries
at once with the plain one and no `parse_mode`: an alert in plain text beats a lost one.
Telegram allows 4096 characters after entity parsing; the HTML *source* is held to 4096 UTF-16
units, which is stricter, and so is the plain one, so neither can be too long. The engine shows
fewer line items ("… (+N items)") or the brief form until it fits, keeping the admin link; a
message is never split.

Outcomes, from the status and the JSON body (`ok`, `error_code`, `description`, `parameters`):

    ok: true                                  ok
    429                                       retry, not before parameters.retry_after
    5xx, timeout, connection error            retry
    400 can't parse entities                  resent as plain text in the same send
    400 + migrate_to_chat_id                  resent to the supergroup's id in the same send
                                              (remembered until restart; the detail says
                                              which chat_id to configure)
    400 chat not found / thread not found     permanent, channel: fix chat_id / thread
    other 400                                 permanent, message
    401, 404                                  permanent, channel: the token (or api_base) is
                                              wrong, every message would fail the same way
    403 bot was blocked by the user,          permanent, recipient: only that person can
        user is deactivated                   undo it
    other 403 (kicked, not a member, …)       permanent, channel: add the bot back
    2xx/3xx that is not the Bot API's JSON    permanent, channel: check api_base
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Annotated, Any, ClassVar
from urllib.parse import urlsplit

import httpx
from pydantic import AfterValidator, BeforeValidator

from pollerd.channels.base import (
    Budget,
    Channel,
    ChannelContext,
    ChannelOptions,
    ProbeFailed,
    SendResult,
    base_url,
    destination,
    json_object,
)
from pollerd.config.types import Duration, invalid
from pollerd.errors import ChannelError
from pollerd.http import excerpt, retry_after
from pollerd.model import Event
from pollerd.secrets import Secret
from pollerd.templates import Message

DEFAULT_API = "https://api.telegram.org"
TEXT_LIMIT = 4096  # characters of `text` after entity parsing (Bot API sendMessage)
_TOKEN = re.compile(r"^\d+:[A-Za-z0-9_-]+$")
_CHAT = re.compile(r"^(-?\d+|@[A-Za-z][A-Za-z0-9_]{3,})$")
_RECIPIENT_GONE = ("blocked by the user", "user is deactivated")


def _units(text: str) -> int:
    """Length in UTF-16 code units, the unit Telegram counts in (an emoji is 2)."""
    return len(text.encode("utf-16-le")) // 2


def _bot_token(value: Secret) -> Secret:
    if not _TOKEN.match(value.get().strip()):
        raise invalid("is not a bot token", 'the form is "123456789:AA…", as @BotFather shows it')
    return value


def _chat_id(value: Any) -> str:
    text = str(value).strip()
    if isinstance(value, bool) or not _CHAT.match(text):
        raise invalid(
            f"{text!r} is not a chat id",
            'e.g. -1001234567890 for a group or channel (they start with -100), or "@channelname"',
        )
    return text


class TelegramChannel(Channel):
    """Sends each alert to one Telegram chat (user, group, supergroup topic or channel)."""

    kind: ClassVar[str] = "telegram"
    flavour: ClassVar[str] = "telegram"
    secret_fields: ClassVar[tuple[str, ...]] = ("token",)

    class Options(ChannelOptions):
        token: Annotated[Secret, AfterValidator(_bot_token)]
        chat_id: Annotated[str, BeforeValidator(_chat_id)]
        api_base: Annotated[str, AfterValidator(base_url(DEFAULT_API))] = DEFAULT_API
        message_thread_id: int | None = None
        disable_notification: bool = False
        timeout: Duration = timedelta(seconds=10)

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        self._token = self.options.token.get().strip()
        self.chat_id = self.options.chat_id  # replaced when Telegram says the group migrated

    def render(self, event: Event) -> str:
        """`{"html", "plain"}`, JSON: both renderings `send` may need, each within the limit."""
        html_message = self.message(event, fits=_fits)
        plain = self.message(event, flavour="text", fits=_fits)
        return _stored(html_message, plain)

    def budget(self) -> Budget:
        # One chat: no more than 1 message a second; a group (negative id): also 20 a minute
        # (Bot FAQ, research §4.5). Keyed by bot and chat: another bot has its own limits.
        windows: tuple[tuple[int, float], ...] = ((1, 1.0),)
        if self.chat_id.startswith("-"):
            windows += ((20, 60.0),)
        return Budget(destination(self.kind, self._token, self.chat_id), windows)

    def render_digest(self, events: list[Event]) -> str:
        """The digest stored like one alert: HTML and its plain fallback, each within the limit."""
        html_message = self.digest_message(events, fits=_fits)
        plain = self.digest_message(events, flavour="text", fits=_fits)
        return _stored(html_message, plain)

    async def send(self, event: Event, rendered: str) -> SendResult:
        try:
            stored = json.loads(rendered)
            text_html, text_plain = str(stored["html"]), str(stored["plain"])
        except (ValueError, KeyError, TypeError):
            return SendResult.permanent("the stored message is not a telegram rendering")
        notes: list[str] = []
        try:
            answer = await self._post(text_html, parse_html=True)
            moved = _migrated_to(answer)
            if moved is not None:
                notes.append(
                    f"the group became a supergroup: set chat_id = {moved} (was {self.chat_id})"
                )
                self.chat_id = moved
                answer = await self._post(text_html, parse_html=True)
            said = _description(answer)
            if answer.status_code == 400 and "can't parse entities" in said.lower():
                notes.append(f"sent as plain text: Telegram refused the HTML ({said})")
                answer = await self._post(text_plain, parse_html=False)
            result = self._classify(answer)
        except ChannelError as exc:  # a transport failure at the edge: retry
            result = SendResult.of(exc)
        return _noted(result, notes)

    async def _post(self, text: str, *, parse_html: bool) -> httpx.Response:
        """One sendMessage call through the edge (a transport failure raises)."""
        payload: dict[str, Any] = {
            "chat_id": self.chat_id,
            "text": text,
            "link_preview_options": {"is_disabled": True},
        }
        if parse_html:
            payload["parse_mode"] = "HTML"
        if self.options.message_thread_id is not None:
            payload["message_thread_id"] = self.options.message_thread_id
        if self.options.disable_notification:
            payload["disable_notification"] = True
        return await self.edge.request(
            "POST",
            f"{self.options.api_base}/bot{self._token}/sendMessage",
            json=payload,
            timeout=self.options.timeout.total_seconds(),
        )

    def _classify(self, response: httpx.Response) -> SendResult:
        status = response.status_code
        body = json_object(response)
        said = self.scrub(_description(response))
        what = f"{self.where()} answered HTTP {status}" + (f": {said}" if said else "")
        if body is not None and body.get("ok") is True and 200 <= status < 300:
            message = body.get("result")
            number = message.get("message_id") if isinstance(message, dict) else None
            return SendResult.ok(f"message_id {number}" if number is not None else "ok")
        if status == 429:
            after = _retry_after(body) or retry_after(response)
            return SendResult.retry(f"{what} (flood control)", after=after)
        if status >= 500 or status == 408:
            return SendResult.retry(what)
        if status < 400:
            return SendResult.permanent(
                f"{what}; that is not the Bot API's answer: check api_base", scope="channel"
            )
        lowered = said.lower()
        if status in (401, 404):
            fix = "check the token (as @BotFather shows it) and api_base"
            return SendResult.permanent(f"{what}; {fix}", scope="channel")
        if status == 403:
            if any(reason in lowered for reason in _RECIPIENT_GONE):
                fix = "the recipient must unblock the bot (or /start it) before it can send again"
                return SendResult.permanent(f"{what}; {fix}", scope="recipient")
            fix = "add the bot to the chat again (with the right to post), or fix chat_id"
            return SendResult.permanent(f"{what}; {fix}", scope="channel")
        if status == 400 and "chat not found" in lowered:
            fix = "check chat_id, and that the bot was added to that chat"
            return SendResult.permanent(f"{what}; {fix}", scope="channel")
        if status == 400 and ("thread not found" in lowered or "topic" in lowered):
            fix = "check message_thread_id (the forum topic may have been deleted)"
            return SendResult.permanent(f"{what}; {fix}", scope="channel")
        return SendResult.permanent(f"{what}; Telegram refused this message")

    async def probe(self, timeout: float = 10.0) -> str:
        """getMe: read-only by design, and proves the token (it posts nothing to the chat)."""
        response = await self.probe_get(
            f"{self.options.api_base}/bot{self._token}/getMe", timeout=timeout
        )
        body = json_object(response) or {}
        if response.status_code != 200 or body.get("ok") is not True:
            said = self.scrub(str(body.get("description") or f"HTTP {response.status_code}"))
            raise ProbeFailed(f"{self.where()}: getMe: {said} (check token and api_base)")
        bot = (body.get("result") or {}).get("username", "?")
        return f"getMe: bot @{bot} (token accepted), nothing sent"

    def where(self) -> str:
        parts = urlsplit(self.options.api_base)
        return f"telegram {parts.scheme}://{parts.hostname}" + (
            f":{parts.port}" if parts.port else ""
        )

    def secrets(self) -> list[str]:
        """The token sits in every request URL; an error may quote it."""
        token = self.options.token.get().strip()
        return [token, token.partition(":")[2]]


def _fits(message: Message) -> bool:
    """Telegram's limit as the engine asks it, in the UTF-16 units Telegram counts."""
    return _units(message.body) <= TEXT_LIMIT


def _stored(html_message: Message, plain: Message) -> str:
    stored = {"html": html_message.body, "plain": plain.body}
    return json.dumps(stored, ensure_ascii=False, separators=(",", ":"))


def _description(response: httpx.Response) -> str:
    said = (json_object(response) or {}).get("description")
    return excerpt(response, said if isinstance(said, str) else None)


def _parameters(body: dict[str, Any] | None) -> dict[str, Any]:
    params = body.get("parameters") if body is not None else None
    return params if isinstance(params, dict) else {}


def _retry_after(body: dict[str, Any] | None) -> float | None:
    value = _parameters(body).get("retry_after")
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


def _migrated_to(response: httpx.Response) -> str | None:
    if response.status_code != 400:
        return None
    value = _parameters(json_object(response)).get("migrate_to_chat_id")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _noted(result: SendResult, notes: list[str]) -> SendResult:
    if not notes:
        return result
    detail_ = "; ".join([result.detail, *notes]) if result.detail else "; ".join(notes)
    return SendResult(result.kind, detail_, result.retry_after, result.scope)
