"""`slack`: one incoming-webhook message per alert, mrkdwn in Block Kit sections (research §4.4).

Wire format: POST JSON `{"text", "blocks", "unfurl_links": false, "unfurl_media": false}` to the
hook URL. The URL is the credential (a `Secret`): details name its host only. `text` is what
notifications and old clients show: the plain (`text` flavour) summary, escaped for Slack.
`blocks` are two mrkdwn sections rendered from the `slack` templates: the summary in bold, then
everything after it (details, line items, the admin link as `<url|url>`). A section's text is
capped at 3000 characters by Slack, so the engine shows fewer line items ("… (+N items)"), then
the brief form, until both sections fit; the message is never split.

Order data is attacker-controlled (a shopper picks their own name); the engine escapes every
value for mrkdwn (`pollerd.templates.escape.escape_slack`): `&`, `<`, `>` as entities, so no
mention (`<!channel>`, `<@U…>`) or spoofed `<https://evil|Open order>` can start; `@channel`,
`@here`, `@everyone` broken with a word joiner (in case the hook's app turns `link_names` on);
`*`, `_`, `~` and backticks as lookalikes (mrkdwn has no escape for them); no URL autolinks.

Outcomes, from the status and the plain-text body Slack answers with:

    200 + `ok`                               ok
    429                                      retry, not before Retry-After
    408, 5xx, timeout, connection error      retry
    another 2xx body, 3xx                    permanent, channel: the url is not a Slack hook
    invalid_payload, no_text, invalid_blocks permanent, message: this payload is refused
    401 403 404 410, or a hook/channel code  permanent, channel: hook removed or revoked,
      (no_service, channel_is_archived, …)   channel archived; every message would fail
    other 4xx                                permanent, message
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Annotated, Any, ClassVar
from urllib.parse import urlsplit

import httpx
from pydantic import AfterValidator

from pollerd.channels.base import (
    Budget,
    Channel,
    ChannelContext,
    ChannelOptions,
    SendResult,
    destination,
    http_url,
)
from pollerd.config.types import Duration, invalid
from pollerd.http import excerpt, retry_after
from pollerd.model import Event
from pollerd.secrets import Secret
from pollerd.templates import Message
from pollerd.templates.escape import escape_slack

SECTION_LIMIT = 3000  # characters of one section block's text (Slack Block Kit reference)
MESSAGE_CODES = frozenset(
    {
        "invalid_payload",
        "no_text",
        "invalid_blocks",
        "invalid_blocks_format",
        "invalid_attachments",
        "too_many_attachments",
        "msg_too_long",
    }
)
CHANNEL_CODES = frozenset(
    {
        "channel_not_found",
        "channel_is_archived",
        "action_prohibited",
        "posting_to_general_channel_denied",
        "user_not_found",
        "no_service",
        "no_service_id",
        "no_active_hooks",
        "no_team",
        "team_disabled",
        "invalid_token",
        "invalid_auth",
        "token_revoked",
        "account_inactive",
    }
)
CHANNEL_STATUSES = frozenset({401, 403, 404, 410})
_FIX = "create a new incoming webhook for the Slack channel and set the channel's url"
_CODE = re.compile(r"^[a-z_]{2,64}$")


def _hook_url(value: Secret) -> Secret:
    """http(s) with a host. Never echoed: the path is the hook's token."""
    if not http_url(value.get()):
        raise invalid(
            "must be the incoming webhook URL Slack shows",
            'e.g. "https://hooks.slack.com/services/T…/B…/…", or env:SLACK_HOOK_URL',
        )
    return value


class SlackChannel(Channel):
    """Posts one Block Kit message per alert to a Slack incoming webhook."""

    kind: ClassVar[str] = "slack"
    flavour: ClassVar[str] = "slack"
    secret_fields: ClassVar[tuple[str, ...]] = ("url",)

    class Options(ChannelOptions):
        url: Annotated[Secret, AfterValidator(_hook_url)]
        timeout: Duration = timedelta(seconds=10)

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        self._url = self.options.url.get().strip()

    def probe_url(self) -> str:
        return self.options.url.get().strip()

    def render(self, event: Event) -> str:
        """The webhook payload, JSON: the `slack` rendering as sections, the plain summary
        as the notification `text`."""
        message = self.message(event, fits=_fits)
        plain = self.message(event, flavour="text").title
        return _payload(plain, message)

    def budget(self) -> Budget:
        # "Posting messages: 1 per second, short bursts >1 allowed" (research §4.4).
        return Budget(destination(self.kind, self._url), ((1, 1.0),))

    def render_digest(self, events: list[Event]) -> str:
        """The digest in the same payload shape as one alert, held to the same limits."""
        message = self.digest_message(events, fits=_fits)
        plain = self.digest_message(events, flavour="text").title
        return _payload(plain, message)

    async def send(self, event: Event, rendered: str) -> SendResult:
        return await self.post(
            self._url,
            self._classify,
            content=rendered.encode("utf-8"),
            headers={"content-type": "application/json; charset=utf-8"},
        )

    def _classify(self, response: httpx.Response) -> SendResult:
        status = response.status_code
        body = excerpt(response, scrub=self.scrub)
        what = f"{self.where()} answered HTTP {status}" + (f": {body}" if body else "")
        if 200 <= status < 300:
            if body == "ok" or _json_ok(response):
                return SendResult.ok(f"HTTP {status} ok")
            return SendResult.permanent(
                f"{what}; that is not Slack's answer (`ok`): check that the channel's url is a "
                "Slack incoming webhook URL",
                scope="channel",
            )
        if 300 <= status < 400:
            return SendResult.permanent(
                f"{self.where()} redirects (HTTP {status}); set the channel's url to the "
                "webhook URL Slack shows (redirects are not followed: a POST would lose its body)",
                scope="channel",
            )
        if status == 429:
            wait = retry_after(response)
            return SendResult.retry(f"{what} (rate limited: Slack allows ~1 message/s)", wait)
        if status == 408 or status >= 500:
            return SendResult.retry(what)
        code = body if _CODE.match(body) else ""
        if code in MESSAGE_CODES:
            return SendResult.permanent(f"{what}; Slack refused this message's payload")
        if code in CHANNEL_CODES or status in CHANNEL_STATUSES:
            return SendResult.permanent(f"{what}; {_FIX}", scope="channel")
        if 400 <= status < 500:
            return SendResult.permanent(f"{what}; Slack refused this message")
        return SendResult.retry(what)  # 1xx as a final status: a broken proxy

    def where(self) -> str:
        """The hook's origin only: its path is the credential."""
        parts = urlsplit(self._url)
        return f"slack {parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")

    def secrets(self) -> list[str]:
        """A proxy or an httpx error may quote the URL; none of its path reaches a detail."""
        url = self.options.url.get().strip()
        path = urlsplit(url).path
        return [url, path, *[s for s in path.split("/") if len(s) >= 6]]


def _sections(body: str) -> list[str]:
    """The mrkdwn body as section texts: the bold summary (its first line), then the rest.
    Two sections, so the rest gets Slack's full 3000 characters next to a long summary."""
    head, _, rest = body.partition("\n")
    return [text for text in (head, rest.strip("\n")) if text]


def _fits(message: Message) -> bool:
    """Slack's limit as the engine asks it: every section at most SECTION_LIMIT characters."""
    return all(len(text) <= SECTION_LIMIT for text in _sections(message.body))


def _payload(plain: str, message: Message) -> str:
    """`text` is the notification (no markup but Slack's three entities); `blocks` the alert."""
    payload = {
        "text": escape_slack(plain),
        "blocks": [_section(text) for text in _sections(message.body)],
        "unfurl_links": False,
        "unfurl_media": False,
    }
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _json_ok(response: httpx.Response) -> bool:
    """Workflow-style hooks answer `{"ok": true}` instead of the plain `ok`."""
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("ok") is True
