"""`sms`: one text message per alert through Twilio Programmable Messaging (research §4.7).

Wire format: POST `{api_base}/2010-04-01/Accounts/{account_sid}/Messages.json`, HTTP Basic
`account_sid:auth_token`, form body `To`, `From` (or `MessagingServiceSid`), `Body`. A 201 with
the message's `sid` means Twilio *accepted* it; whether a handset got it arrives later by status
callback, which pollerd does not read yet.

SMS is paid per segment: 160 GSM-7 characters (153 each when concatenated, `^{}\\[~]|€` count
twice), or 70 UTF-16 units (67 each) as soon as one character is outside GSM-7, which any
Chinese text is. So the text is short and built to fit `max_segments` (default 2): the `sms`
template flavour is the summary's parts joined with " - " (its "·" is not GSM-7) and the admin
link on its own line; the template engine drops the time, then the customer, then the amount
while the link still fits, and drops the link only when nothing else would. The order's title is
always kept. SMS has no markup, but phones link URLs and apps treat `@name`, so order text comes
with mentions and schemes broken (the `text` escaping), on one clean line.

One channel sends to one number (`to`): the outcome of a send is then the outcome for that one
recipient, and a partial success cannot turn a retry into a duplicate.

Outcomes, from the status and Twilio's error JSON (`code`, `message`, `more_info`, `status`):

    201 (2xx) with a message sid             ok
    20429, 429                               retry, not before Retry-After ("never processed
                                             and always safe to retry", Twilio)
    5xx, connect error                       retry
    timeout after sending, reset             retry: the message may exist already, a duplicate
                                             SMS is cheaper than a missed order
    21610 unsubscribed (STOP), 21612, 21614  permanent, recipient: the number cannot or will
                                             not receive; only the person can change that
    20003 auth, 20404, 21606/21212/21659     permanent, channel: credentials, account, sender,
        sender, 21608 trial, 21408 region    trial or geo permissions; every message fails alike
    21211 invalid To, 21617, other 4xx       permanent, message
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, ClassVar
from urllib.parse import quote, urlsplit

import httpx
from pydantic import AfterValidator, Field, model_validator

from pollerd.channels.base import (
    Channel,
    ChannelOptions,
    ProbeFailed,
    SendResult,
    base_url,
    json_object,
)
from pollerd.config.types import Duration, invalid
from pollerd.http import excerpt, retry_after
from pollerd.model import Event
from pollerd.secrets import Secret
from pollerd.templates import Message

DEFAULT_API = "https://api.twilio.com"
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENDED = frozenset("\f^{}\\[~]|€")  # sent as ESC + char: two septets each
RECIPIENT_CODES = {
    21610: "the recipient texted STOP; they must text START to the sender to receive again",
    21612: "the number cannot be reached by SMS from this sender",
    21614: "the number is not a mobile number that can receive SMS",
}
CHANNEL_CODES = {
    20003: "check account_sid and auth_token",
    20404: "check account_sid",
    20005: "the Twilio account is suspended or closed",
    21212: "check sender (not a valid phone number, short code or sender id)",
    21606: "sender is not an SMS-capable number of this account: check sender",
    21659: "sender is not a Twilio number of this account: check sender",
    21608: "a trial account may only text verified numbers: verify to, or upgrade",
    21408: "enable SMS to this country in the Twilio console (Messaging → Geo permissions)",
}
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_SENDER = re.compile(r"^(\+[1-9]\d{6,14}|\d{3,8}|[A-Za-z0-9 ]{1,11})$")
MAY_HAVE_SENT = "the SMS may have been sent; retrying risks a duplicate rather than a missed alert"


def segments(text: str) -> int:
    """SMS segments `text` costs: GSM-7 when every character is in it, else UCS-2, never
    splitting an escape pair or a surrogate pair across two segments."""
    if all(c in GSM_BASIC or c in GSM_EXTENDED for c in text):
        units = [2 if c in GSM_EXTENDED else 1 for c in text]
        single, multi = 160, 153
    else:
        units = [2 if ord(c) > 0xFFFF else 1 for c in text]
        single, multi = 70, 67
    if sum(units) <= single:
        return 1
    count, used = 1, 0
    for unit in units:
        if used + unit > multi:
            count, used = count + 1, 0
        used += unit
    return count


def _account_sid(value: str) -> str:
    if not re.fullmatch(r"AC[0-9A-Za-z]+", value.strip()):
        raise invalid("must be the Account SID (AC…)", "copy it from the Twilio console")
    return value.strip()


def _phone(value: str) -> str:
    if not _E164.match(value.strip()):
        raise invalid(f"{value!r} is not an E.164 number", 'e.g. "+15551234567"')
    return value.strip()


def _sender(value: str) -> str:
    if not _SENDER.match(value.strip()):
        raise invalid(
            f"{value!r} is not a sender",
            'an E.164 number ("+15550001111"), a short code or an alphanumeric id (≤ 11)',
        )
    return value.strip()


class SmsChannel(Channel):
    """Texts each alert to one phone number through Twilio."""

    kind: ClassVar[str] = "sms"
    secret_fields: ClassVar[tuple[str, ...]] = ("auth_token",)
    flavour: ClassVar[str] = "sms"

    class Options(ChannelOptions):
        account_sid: Annotated[str, AfterValidator(_account_sid)]
        auth_token: Secret
        to: Annotated[str, AfterValidator(_phone)]
        sender: Annotated[str, AfterValidator(_sender)] | None = None
        messaging_service_sid: str | None = Field(None, pattern=r"^MG[0-9A-Za-z]+$")
        max_segments: int = Field(2, ge=1, le=10)
        api_base: Annotated[str, AfterValidator(base_url(DEFAULT_API))] = DEFAULT_API
        timeout: Duration = timedelta(seconds=15)

        @model_validator(mode="after")
        def _one_sender(self) -> SmsChannel.Options:
            if (self.sender is None) == (self.messaging_service_sid is None):
                raise invalid(
                    "needs exactly one of sender and messaging_service_sid",
                    'e.g. sender = "+15550001111"',
                    key="sender",
                )
            return self

    def render(self, event: Event) -> str:
        """The SMS body from the `sms` template, within `max_segments` (every segment is
        paid for, and a text cut by the carrier loses the link)."""
        return self.message(event, fits=self.fits).body

    def fits(self, message: Message) -> bool:
        """Whether `message` costs at most `max_segments` segments (GSM-7 or UCS-2)."""
        return segments(message.body) <= self.options.max_segments

    async def send(self, event: Event, rendered: str) -> SendResult:
        options = self.options
        form = {"To": options.to, "Body": rendered}
        if options.sender is not None:
            form["From"] = options.sender
        else:
            assert options.messaging_service_sid is not None
            form["MessagingServiceSid"] = options.messaging_service_sid
        url = f"{options.api_base}/2010-04-01/Accounts/{quote(options.account_sid)}/Messages.json"
        return await self.post(
            url,
            lambda response: self._classify(response, segments(rendered)),
            data=form,
            auth=(options.account_sid, options.auth_token.get()),
            unsure=MAY_HAVE_SENT,
        )

    def _classify(self, response: httpx.Response, parts: int) -> SendResult:
        status = response.status_code
        body = json_object(response)
        code = body.get("code") if body is not None else None
        code = code if isinstance(code, int) and not isinstance(code, bool) else None
        said = self.scrub(_said(response, body))
        what = f"{self.where()} answered HTTP {status}" + (f": {said}" if said else "")
        if 200 <= status < 300:
            sid = body.get("sid") if body is not None else None
            if isinstance(sid, str) and sid:
                state = body.get("status") if body is not None else None
                return SendResult.ok(f"sid {sid} ({state}), {parts} segment(s)")
            return SendResult.permanent(
                f"{what}; that is not Twilio's answer (no message sid): check api_base", "channel"
            )
        if status == 429 or code == 20429:
            return SendResult.retry(f"{what} (rate limited)", after=retry_after(response))
        if code in RECIPIENT_CODES:
            return SendResult.permanent(f"{what}; {RECIPIENT_CODES[code]}", scope="recipient")
        if code in CHANNEL_CODES:
            return SendResult.permanent(f"{what}; {CHANNEL_CODES[code]}", scope="channel")
        if status == 408 or status >= 500:
            return SendResult.retry(what)
        if 300 <= status < 400 or status in (401, 403, 404):
            fix = "check account_sid, auth_token and api_base"
            return SendResult.permanent(f"{what}; {fix}", scope="channel")
        if 400 <= status < 500:
            return SendResult.permanent(f"{what}; Twilio refused this message")
        return SendResult.retry(what)

    async def probe(self, timeout: float = 10.0) -> str:
        """GET the account resource: read-only, and proves account_sid + auth_token."""
        options = self.options
        url = f"{options.api_base}/2010-04-01/Accounts/{quote(options.account_sid)}.json"
        response = await self.probe_get(
            url, auth=(options.account_sid, options.auth_token.get()), timeout=timeout
        )
        if response.status_code != 200:
            fix = "check account_sid, auth_token and api_base"
            raise ProbeFailed(f"{self.where()}: account: HTTP {response.status_code} ({fix})")
        return "account readable (credentials accepted), nothing sent"

    def where(self) -> str:
        parts = urlsplit(self.options.api_base)
        return f"twilio {parts.scheme}://{parts.hostname}" + (
            f":{parts.port}" if parts.port else ""
        )

    def secrets(self) -> list[str]:
        return [self.options.auth_token.get()]


def _said(response: httpx.Response, body: dict[str, Any] | None) -> str:
    """Twilio's words: `code message` from its error JSON, else the body's start."""
    message, code = (body or {}).get("message"), (body or {}).get("code")
    if not isinstance(message, str):
        return excerpt(response)
    return excerpt(response, f"{code} {message}" if code else message)
