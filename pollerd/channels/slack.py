"""`slack`: one incoming-webhook message per alert, mrkdwn in Block Kit sections (research §4.4).

Wire format: POST JSON `{"text", "blocks", "unfurl_links": false, "unfurl_media": false}` to the
hook URL. The URL is the credential (a `Secret`): details name its host only. `text` is what
notifications and old clients show (the summary); `blocks` are the summary in bold, the detail
lines, and the admin link as `<url>`. A section's text is capped at 3000 characters by Slack, so
line items that do not fit become one "… (+N items)" line; the message is never split.

Order data is attacker-controlled (a shopper picks their own name). mrkdwn has three control
characters, `&`, `<`, `>`; every mention (`<!channel>`, `<@U…>`) and every spoofed
`<https://evil|Open order>` needs `<`, so escaping those three neutralises them. `@channel`,
`@here` and `@everyone` typed as words are broken with a word joiner too, in case the hook's
app ever turns `link_names` on. `*`, `_`, `~` have no escape in mrkdwn: a name can make itself
bold, nothing more.

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
from pydantic import AfterValidator, BaseModel, ConfigDict

from pollerd.channels.base import (
    Budget,
    Channel,
    ChannelContext,
    Digest,
    SendResult,
    destination,
    retry_after_seconds,
)
from pollerd.config import Duration, invalid
from pollerd.model import Event
from pollerd.secrets import Secret
from pollerd.templates import admin_link, fit_items, summary

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
_MENTION = re.compile(r"@(?=(?:channel|here|everyone)\b)", re.IGNORECASE)
_CODE = re.compile(r"^[a-z_]{2,64}$")
_EXCERPT = 200


def escape(text: str) -> str:
    """Order text safe for mrkdwn: `& < >` as entities, broadcast mentions broken."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MENTION.sub("@\u2060", text)


def _link_target(url: str) -> str:
    """A validated http(s) URL inside `<…>`: `|`, `<`, `>` and spaces would end or split it."""
    for char, code in (("|", "%7C"), ("<", "%3C"), (">", "%3E"), (" ", "%20")):
        url = url.replace(char, code)
    return url.replace("&", "&amp;")


def _hook_url(value: Secret) -> Secret:
    """http(s) with a host. Never echoed: the path is the hook's token."""
    parts = urlsplit(value.get().strip())
    try:
        valid = bool(parts.hostname) and parts.port != 0
    except ValueError:
        valid = False
    if parts.scheme not in ("http", "https") or not valid:
        raise invalid(
            "must be the incoming webhook URL Slack shows",
            'e.g. "https://hooks.slack.com/services/T…/B…/…", or env:SLACK_HOOK_URL',
        )
    return value


class SlackChannel(Channel):
    """Posts one Block Kit message per alert to a Slack incoming webhook."""

    kind: ClassVar[str] = "slack"
    secret_fields: ClassVar[tuple[str, ...]] = ("url",)

    class Options(BaseModel):
        model_config = ConfigDict(
            extra="forbid", frozen=True, arbitrary_types_allowed=True, hide_input_in_errors=True
        )
        url: Annotated[Secret, AfterValidator(_hook_url)]
        timeout: Duration = timedelta(seconds=10)

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        raw = ctx.options
        self.options = (
            raw if isinstance(raw, self.Options) else self.Options.model_validate(raw or {})
        )
        self._url = self.options.url.get().strip()

    def render(self, event: Event) -> str:
        data = event.to_json()
        locale, zone = self.ctx.locale, self.ctx.timezone
        head = escape(summary(data, locale=locale, timezone=zone))
        blocks: list[dict[str, Any]] = [_section(_cut(f"*{head}*", SECTION_LIMIT))]
        lines = "\n".join(
            fit_items(
                data,
                locale=locale,
                timezone=zone,
                head=[],
                fits=lambda kept: len(escape("\n".join(kept))) <= SECTION_LIMIT,
            )
        )
        if lines:
            blocks.append(_section(_cut(escape(lines), SECTION_LIMIT)))
        link = admin_link(data, locale=locale)
        if link is not None:
            label, url = link
            before, _, after = label.partition("{value}")
            text = f"{escape(before)}<{_link_target(url)}>{escape(after)}"
            blocks.append(_section(text))
        payload = {"text": head, "blocks": blocks, "unfurl_links": False, "unfurl_media": False}
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))

    def budget(self) -> Budget:
        # "Posting messages: 1 per second, short bursts >1 allowed" (research §4.4).
        return Budget(destination(self.kind, self._url), ((1, 1.0),))

    def render_digest(self, events: list[Event]) -> str:
        digest = Digest.of(events, locale=self.ctx.locale, timezone=self.ctx.timezone)
        head = escape(digest.title)
        lines = digest.fit(lambda kept: len(escape("\n".join(kept[1:]))) <= SECTION_LIMIT)
        blocks = [_section(_cut(f"*{head}*", SECTION_LIMIT))]
        if lines[1:]:
            blocks.append(_section(_cut(escape("\n".join(lines[1:])), SECTION_LIMIT)))
        payload = {"text": head, "blocks": blocks, "unfurl_links": False, "unfurl_media": False}
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))

    async def send(self, event: Event, rendered: str) -> SendResult:
        timeout = self.options.timeout.total_seconds()
        try:
            response = await self.ctx.http.post(
                self._url,
                content=rendered.encode("utf-8"),
                headers={"content-type": "application/json; charset=utf-8"},
                timeout=timeout,
                follow_redirects=False,
            )
        except httpx.TimeoutException as exc:
            what = "connect timed out" if isinstance(exc, httpx.ConnectTimeout) else "no answer"
            return SendResult.retry(f"{self._where()}: {what} after {timeout:g}s")
        except httpx.TransportError as exc:
            return SendResult.retry(self._scrub(f"{self._where()}: {type(exc).__name__}: {exc}"))
        return self._classify(response)

    def _classify(self, response: httpx.Response) -> SendResult:
        status = response.status_code
        body = self._scrub(" ".join(response.text[: _EXCERPT * 4].split())[:_EXCERPT])
        what = f"{self._where()} answered HTTP {status}" + (f": {body}" if body else "")
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
                f"{self._where()} redirects (HTTP {status}); set the channel's url to the "
                "webhook URL Slack shows (redirects are not followed: a POST would lose its body)",
                scope="channel",
            )
        if status == 429:
            after = retry_after_seconds(response.headers.get("retry-after"))
            return SendResult.retry(f"{what} (rate limited: Slack allows ~1 message/s)", after)
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

    def _where(self) -> str:
        """The hook's origin only: its path is the credential."""
        parts = urlsplit(self._url)
        return f"slack {parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")

    def _scrub(self, text: str) -> str:
        """A proxy or an httpx error may quote the URL; none of its path reaches a detail."""
        path = urlsplit(self._url).path
        for value in (self._url, path, *[s for s in path.split("/") if len(s) >= 6]):
            if value:
                text = text.replace(value, "****")
        return text


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _json_ok(response: httpx.Response) -> bool:
    """Workflow-style hooks answer `{"ok": true}` instead of the plain `ok`."""
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("ok") is True


def _cut(text: str, limit: int) -> str:
    """A last resort for absurd input: keep `limit` characters, never half an entity."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"
