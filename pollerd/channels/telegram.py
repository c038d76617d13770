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
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

from pollerd.channels.base import (
    Budget,
    Channel,
    ChannelContext,
    ProbeFailed,
    SendResult,
    describe_transport,
    destination,
    json_object,
    retry_after_seconds,
)
from pollerd.config.types import Duration, invalid
from pollerd.model import Event
from pollerd.secrets import Secret
from pollerd.templates import Message

DEFAULT_API = "https://api.telegram.org"
TEXT_LIMIT = 4096  # characters of `text` after entity parsing (Bot API sendMessage)
_TOKEN = re.compile(r"^\d+:[A-Za-z0-9_-]+$")
_CHAT = re.compile(r"^(-?\d+|@[A-Za-z][A-Za-z0-9_]{3,})$")
_RECIPIENT_GONE = ("blocked by the user", "user is deactivated")
_EXCERPT = 200


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


def _api_base(value: str) -> str:
    parts = urlsplit(value.strip())
    try:
        valid = bool(parts.hostname) and parts.port != 0
    except ValueError:
        valid = False
    if parts.scheme not in ("http", "https") or not valid or parts.query or parts.fragment:
        raise invalid("must be an http:// or https:// URL without a query", f'e.g. "{DEFAULT_API}"')
    return value.strip().rstrip("/")


class TelegramChannel(Channel):
    """Sends each alert to one Telegram chat (user, group, supergroup topic or channel)."""

    kind: ClassVar[str] = "telegram"
    flavour: ClassVar[str] = "telegram"
    secret_fields: ClassVar[tuple[str, ...]] = ("token",)

    class Options(BaseModel):
        model_config = ConfigDict(
            extra="forbid", frozen=True, arbitrary_types_allowed=True, hide_input_in_errors=True
        )
        token: Annotated[Secret, AfterValidator(_bot_token)]
        chat_id: Annotated[str, BeforeValidator(_chat_id)]
        api_base: Annotated[str, AfterValidator(_api_base)] = DEFAULT_API
        message_thread_id: int | None = None
        disable_notification: bool = False
        timeout: Duration = timedelta(seconds=10)

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        raw = ctx.options
        self.options = (
            raw if isinstance(raw, self.Options) else self.Options.model_validate(raw or {})
        )
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
        answer = await self._post(text_html, parse_html=True)
        if isinstance(answer, SendResult):
            return answer
        moved = _migrated_to(answer)
        if moved is not None:
            notes.append(
                f"the group became a supergroup: set chat_id = {moved} (was {self.chat_id})"
            )
            self.chat_id = moved
            answer = await self._post(text_html, parse_html=True)
            if isinstance(answer, SendResult):
                return _noted(answer, notes)
        if answer.status_code == 400 and "can't parse entities" in _description(answer).lower():
            notes.append(f"sent as plain text: Telegram refused the HTML ({_description(answer)})")
            answer = await self._post(text_plain, parse_html=False)
            if isinstance(answer, SendResult):
                return _noted(answer, notes)
        return _noted(self._classify(answer), notes)

    async def _post(self, text: str, *, parse_html: bool) -> httpx.Response | SendResult:
        """One sendMessage call: the response, or the retry a transport failure means."""
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
        timeout = self.options.timeout.total_seconds()
        try:
            return await self.ctx.http.post(
                f"{self.options.api_base}/bot{self._token}/sendMessage",
                json=payload,
                timeout=timeout,
                follow_redirects=False,
            )
        except httpx.TimeoutException as exc:
            what = "connect timed out" if isinstance(exc, httpx.ConnectTimeout) else "no answer"
            return SendResult.retry(f"{self._where()}: {what} after {timeout:g}s")
        except httpx.TransportError as exc:
            return SendResult.retry(self._scrub(f"{self._where()}: {describe_transport(exc)}"))

    def _classify(self, response: httpx.Response) -> SendResult:
        status = response.status_code
        body = json_object(response)
        said = self._scrub(_description(response))
        what = f"{self._where()} answered HTTP {status}" + (f": {said}" if said else "")
        if body is not None and body.get("ok") is True and 200 <= status < 300:
            message = body.get("result")
            number = message.get("message_id") if isinstance(message, dict) else None
            return SendResult.ok(f"message_id {number}" if number is not None else "ok")
        if status == 429:
            after = _retry_after(body) or retry_after_seconds(response.headers.get("retry-after"))
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
        try:
            response = await self.ctx.http.get(
                f"{self.options.api_base}/bot{self._token}/getMe",
                timeout=timeout,
                follow_redirects=False,
            )
        except httpx.HTTPError as exc:
            raise ProbeFailed(self._scrub(f"{self._where()}: {describe_transport(exc)}")) from None
        body = json_object(response) or {}
        if response.status_code != 200 or body.get("ok") is not True:
            said = self._scrub(str(body.get("description") or f"HTTP {response.status_code}"))
            raise ProbeFailed(f"{self._where()}: getMe: {said} (check token and api_base)")
        bot = (body.get("result") or {}).get("username", "?")
        return f"getMe: bot @{bot} (token accepted), nothing sent"

    def _where(self) -> str:
        parts = urlsplit(self.options.api_base)
        return f"telegram {parts.scheme}://{parts.hostname}" + (
            f":{parts.port}" if parts.port else ""
        )

    def _scrub(self, text: str) -> str:
        """The token sits in every request URL; an error may quote it."""
        secret = self._token.partition(":")[2]
        for value in (self._token, secret):
            if len(value) >= 4:
                text = text.replace(value, "****")
        return text


def _fits(message: Message) -> bool:
    """Telegram's limit as the engine asks it, in the UTF-16 units Telegram counts."""
    return _units(message.body) <= TEXT_LIMIT


def _stored(html_message: Message, plain: Message) -> str:
    stored = {"html": html_message.body, "plain": plain.body}
    return json.dumps(stored, ensure_ascii=False, separators=(",", ":"))


def _description(response: httpx.Response) -> str:
    body = json_object(response)
    if body is not None and isinstance(body.get("description"), str):
        text = body["description"]
    else:
        text = response.text[: _EXCERPT * 4]
    return " ".join(text.split())[:_EXCERPT]


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
