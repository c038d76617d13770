"""The two APIs among the chat services, refusing with an HTTP status: Telegram and Twilio.

Each puts the reason in its own body (research `notifications.md` §4.5, §4.7, §4.9):

- Telegram: `{"ok":false,"error_code":N,"description":…,"parameters":{"retry_after":S}}`, and
  `parse_mode` is really parsed (`chat_markup`): a bad tag is `400 can't parse entities`;
- Twilio: `201` + the message resource; errors `{"code","message","more_info","status"}`.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import re
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from pollerd_sim.chat_limits import TELEGRAM_CHAT, TELEGRAM_GROUP, RateWindows, whole_seconds
from pollerd_sim.chat_markup import MarkupError, parse_markup, utf16_len
from pollerd_sim.chat_wire import ChatRequest, json_reply
from pollerd_sim.wc_rest import Reply

Outcome = tuple[Reply, bool]


def _tg_error(code: int, description: str, parameters: dict[str, Any] | None = None) -> Reply:
    data: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        data["parameters"] = parameters
    return json_reply(code, data)


class Telegram:
    """`POST /bot{token}/sendMessage` (§4.5): JSON, form or query parameters, like the Bot API;
    `getMe` answers the bot (read-only)."""

    name = "telegram"
    faults = ("400_parse", "400_chat", "400_migrate", "401", "403_blocked", "429", "500")
    bot_id = 123456

    def __init__(self, token: str, chat: str, windows: RateWindows) -> None:
        self.token = token
        self.chat = chat
        self.windows = windows
        self._ids = itertools.count(1)

    def owns(self, path: str) -> bool:
        return path.startswith("/bot")

    def _params(self, req: ChatRequest) -> dict[str, Any]:
        params: dict[str, Any] = dict(req.query)
        data = req.json
        if isinstance(data, dict):
            params.update(data)
        elif (form := req.form) is not None:
            params.update(form)
        return params

    def answer(self, req: ChatRequest, now: float, wall: float) -> Outcome:
        token, _, method = req.path[len("/bot") :].partition("/")
        if token != self.token:
            return _tg_error(401, "Unauthorized"), False
        if method.lower() == "getme":  # read-only: what `pollerd check` calls
            me = {"id": self.bot_id, "is_bot": True, "first_name": "pollerd"}
            return json_reply(200, {"ok": True, "result": {**me, "username": "pollerd_bot"}}), False
        if method.lower() != "sendmessage":
            return _tg_error(404, "Not Found"), False
        params = self._params(req)
        chat_id = str(params.get("chat_id") or "")
        if not chat_id:
            return _tg_error(400, "Bad Request: chat_id is empty"), False
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            return _tg_error(400, "Bad Request: message text is empty"), False
        if chat_id != self.chat:
            return _tg_error(400, "Bad Request: chat not found"), False
        mode = params.get("parse_mode") or ""
        try:
            plain, entities = parse_markup(text, str(mode))
        except MarkupError as exc:
            return _tg_error(400, f"Bad Request: {exc}"), False
        if not plain.strip():
            return _tg_error(400, "Bad Request: message text is empty"), False
        if utf16_len(plain) > 4096:
            return _tg_error(400, "Bad Request: message is too long"), False
        rules = TELEGRAM_GROUP if chat_id.startswith("-") else TELEGRAM_CHAT
        wait = self.windows.take(f"telegram:{chat_id}", rules, now)
        if wait:
            return self.too_many(whole_seconds(wait)), False
        chat: dict[str, Any] = {"id": int(chat_id) if chat_id.lstrip("-").isdigit() else chat_id}
        chat["type"] = (
            "supergroup"
            if chat_id.startswith("-100")
            else "group"
            if chat_id.startswith("-")
            else "private"
        )
        message: dict[str, Any] = {
            "message_id": next(self._ids),
            "from": {
                "id": self.bot_id,
                "is_bot": True,
                "first_name": "pollerd",
                "username": "pollerd_bot",
            },
            "chat": chat,
            "date": int(wall),
            "text": plain,
        }
        if entities:
            message["entities"] = entities
        return json_reply(200, {"ok": True, "result": message}), True

    @staticmethod
    def too_many(seconds: int) -> Reply:
        return _tg_error(429, f"Too Many Requests: retry after {seconds}", {"retry_after": seconds})

    def fault(self, kind: str, retry_after: float | None) -> Reply:
        if kind == "429":
            return self.too_many(whole_seconds(retry_after or 5))
        replies = {
            "400_parse": (
                400,
                'Bad Request: can\'t parse entities: Unsupported start tag "br" at byte offset 0',
            ),
            "400_chat": (400, "Bad Request: chat not found"),
            "401": (401, "Unauthorized"),
            "403_blocked": (403, "Forbidden: bot was blocked by the user"),
            "500": (500, "Internal Server Error"),
        }
        if kind == "400_migrate":
            description = "Bad Request: group chat was upgraded to a supergroup chat"
            return _tg_error(400, description, {"migrate_to_chat_id": -1009876543210})
        return _tg_error(*replies[kind])


_NOT_SMS_CAPABLE = (
    "The From phone number {sender} is not a valid, SMS-capable inbound phone number or short "
    "code for your account."
)
_REGION_DISABLED = (
    "Permission to send an SMS has not been enabled for the region indicated by the 'To' number"
)
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà^{}\\[~]|€"
)


def sms_segments(body: str) -> int:
    """Segments Twilio bills: 160/153 GSM-7 characters, else 70/67 UCS-2 units (§4.7)."""
    if set(body) <= _GSM7:
        units = len(body) + sum(c in "^{}\\[~]|€" for c in body)
        single, multi = 160, 153
    else:
        units = utf16_len(body)
        single, multi = 70, 67
    return 1 if units <= single else -(-units // multi)


def _twilio_error(status: int, code: int, message: str) -> Reply:
    return json_reply(
        status,
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
    )


class Twilio:
    """`POST /2010-04-01/Accounts/{sid}/Messages.json`, Basic auth, form body (§4.7); `GET
    /2010-04-01/Accounts/{sid}.json` reads the account (what `pollerd check` calls)."""

    name = "twilio"
    faults = ("21211", "21610", "21606", "21408", "20003", "20429", "500")
    prefix = "/2010-04-01/Accounts/"

    def __init__(self, sid: str, token: str, sender: str) -> None:
        self.sid = sid
        self.token = token
        self.sender = sender
        self._ids = itertools.count(1)

    def owns(self, path: str) -> bool:
        return path.startswith(self.prefix)

    def _authorised(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return (user, password) == (self.sid, self.token)

    def answer(self, req: ChatRequest, now: float, wall: float) -> Outcome:
        if not self._authorised(req.headers.get("authorization", "")):
            return _twilio_error(401, 20003, "Authenticate"), False
        if req.path == f"{self.prefix}{self.sid}.json" and req.method == "GET":  # read-only
            return json_reply(200, {"sid": self.sid, "status": "active"}), False
        if req.path != f"{self.prefix}{self.sid}/Messages.json" or req.method != "POST":
            message = f"The requested resource {req.path} was not found"
            return _twilio_error(404, 20404, message), False
        form = req.form or {}
        to = form.get("To", "")
        if not to:
            return _twilio_error(400, 21604, "A 'To' phone number is required."), False
        if not _E164.match(to):
            return _twilio_error(400, 21211, f"Invalid 'To' Phone Number: {to}"), False
        sender = form.get("From", "")
        service = form.get("MessagingServiceSid", "")
        if not sender and not service:
            return _twilio_error(400, 21603, "A 'From' phone number is required."), False
        if sender and sender != self.sender:
            message = _NOT_SMS_CAPABLE.format(sender=sender)
            return _twilio_error(400, 21606, message), False
        body = form.get("Body", "")
        if not body and not form.get("MediaUrl"):
            return _twilio_error(400, 21602, "Message body is required."), False
        if len(body) > 1600:
            message = "The concatenated message body exceeds the 1600 character limit."
            return _twilio_error(400, 21617, message), False
        return json_reply(201, self._resource(to, sender, service, body, wall)), True

    def _resource(
        self, to: str, sender: str, service: str, body: str, wall: float
    ) -> dict[str, Any]:
        sid = f"SM{next(self._ids):032x}"
        created = format_datetime(datetime.fromtimestamp(wall, UTC), usegmt=True)
        uri = f"{self.prefix}{self.sid}/Messages/{sid}"
        return {
            "account_sid": self.sid,
            "api_version": "2010-04-01",
            "body": body,
            "date_created": created,
            "date_sent": None,
            "date_updated": created,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender or None,
            "messaging_service_sid": service or None,
            "num_media": "0",
            "num_segments": str(sms_segments(body)),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if service and not sender else "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": to,
            "uri": f"{uri}.json",
        }

    def fault(self, kind: str, retry_after: float | None) -> Reply:
        if kind == "20429":
            reply = _twilio_error(429, 20429, "Too Many Requests")
            if retry_after is not None:
                reply.headers.append(("Retry-After", str(whole_seconds(retry_after))))
            return reply
        replies = {
            "21211": (400, 21211, "Invalid 'To' Phone Number"),
            "21610": (400, 21610, "Attempt to send to unsubscribed recipient"),
            "21606": (400, 21606, _NOT_SMS_CAPABLE.format(sender=self.sender)),
            "21408": (400, 21408, _REGION_DISABLED),
            "20003": (401, 20003, "Authenticate"),
            "500": (500, 20500, "An internal server error has occurred"),
        }
        return _twilio_error(*replies[kind])
